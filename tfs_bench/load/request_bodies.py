"""Predict request bodies, built once per tenant from the model's own metadata and then reused.

The signature's inputs (alias, dtype, shape) come from `GetModelMetadata` (gRPC) or
`GET /v1/models/<name>/metadata` (REST). Dimension 0 is the batch and takes `batch_size`;
every other dimension must be known. Contents are either seeded random values of the input's
dtype (floats uniform in [0, 255), integers in [0, 255] within the dtype's range, booleans
fair coins) or images from a local folder, decoded and resized (bilinear) to the input's
height and width, as pixels in [0, 255] of the input's dtype. A folder of n images gives
⌈n / batch_size⌉ distinct bodies (at most 64), which the workers send in turn.

Bodies are encoded once here and sent as raw bytes: a serialized `PredictRequest` with
`tensor_content` tensors for gRPC, a columnar JSON body (`{"inputs": …}`) for REST.

gRPC messages come from `tfs_bench.wire` (TF Serving's field numbers, compiled by
grpcio-tools), not from the tensorflow-serving-api wheel, whose protos import all of TensorFlow:
nothing in the load stage imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import math
import socket
import urllib.parse
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from PIL import UnidentifiedImageError

from tfs_bench import addresses
from tfs_bench.errors import ConfigError
from tfs_bench.errors import LoadError
from tfs_bench.errors import ModelError
from tfs_bench import wire
from tfs_bench.load.config import INPUT_IMAGES
from tfs_bench.load.config import InputSource
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.config import check_image_directory

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
MAX_BODIES = 64
SIGNATURE_DEF_FIELD = "signature_def"
# The TensorFlow dtypes the generator can synthesise, by TensorFlow's enum name.
NUMPY_DTYPES = {
    "DT_FLOAT": np.dtype(np.float32),
    "DT_DOUBLE": np.dtype(np.float64),
    "DT_HALF": np.dtype(np.float16),
    "DT_INT8": np.dtype(np.int8),
    "DT_INT16": np.dtype(np.int16),
    "DT_INT32": np.dtype(np.int32),
    "DT_INT64": np.dtype(np.int64),
    "DT_UINT8": np.dtype(np.uint8),
    "DT_UINT16": np.dtype(np.uint16),
    "DT_UINT32": np.dtype(np.uint32),
    "DT_UINT64": np.dtype(np.uint64),
    "DT_BOOL": np.dtype(np.bool_),
}
_PIXEL_MAX = 255


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One input of a signature as its metadata describes it."""

    alias: str
    dtype: str  # TensorFlow's enum name, e.g. "DT_FLOAT"
    shape: tuple[int, ...] | None  # -1 for an unknown dimension; None for an unknown rank


@dataclasses.dataclass(frozen=True)
class TenantRequests:
    """What a worker needs to send one tenant's requests."""

    tenant: str
    model: str
    target: str
    inputs: tuple[InputSpec, ...]
    bodies: tuple[bytes, ...]
    rest_path: str


def rest_predict_path(model: str) -> str:
    return f"/v1/models/{urllib.parse.quote(model, safe='')}:predict"


def prepare(config: LoadConfig) -> dict[str, TenantRequests]:
    """Every tenant's request bodies, from each model's metadata; raises a clear error when a
    target is unreachable (within the connect timeout), a model is not served, or its
    signature cannot be fed."""
    if config.input_source.kind == INPUT_IMAGES:
        check_image_directory(config.input_source.directory)
    for target in sorted({config.target_of(t) for t in config.mix.tenants}):
        check_reachable(target, config.connect_timeout_s)
    signatures: dict[tuple[str, str], dict[str, tuple[InputSpec, ...]]] = {}
    prepared = {}
    for load in config.mix.tenants:
        target = config.target_of(load)
        key = (target, load.model)
        if key not in signatures:
            signatures[key] = fetch_signatures(config.protocol, target, load.model, config.connect_timeout_s)
        inputs = select_signature(signatures[key], load.model, config.signature_name)
        batches = make_batches(inputs, config.batch_size, config.input_source, config.seed)
        if config.protocol == "grpc":
            bodies = tuple(encode_grpc(load.model, config.signature_name, inputs, b) for b in batches)
        else:
            bodies = tuple(encode_rest(config.signature_name, b) for b in batches)
        prepared[load.tenant] = TenantRequests(
            load.tenant, load.model, target, inputs, bodies, rest_predict_path(load.model)
        )
    return prepared


def check_reachable(target: str, timeout_s: float) -> None:
    """Opens and closes a TCP connection, so an unreachable target fails at once and clearly."""
    address = addresses.parse(target)
    host, port = address.host, address.port
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise LoadError(f"cannot reach target {target}: {e.strerror or e}") from None


# ----------------------------------------------------------------------------- metadata


def fetch_signatures(protocol: str, target: str, model: str, timeout_s: float) -> dict[str, tuple[InputSpec, ...]]:
    """Signature name → its inputs, as the server describes the model."""
    if protocol == "grpc":
        return _grpc_signatures(target, model, timeout_s)
    return _rest_signatures(target, model, timeout_s)


def select_signature(
    signatures: Mapping[str, tuple[InputSpec, ...]], model: str, signature_name: str
) -> tuple[InputSpec, ...]:
    try:
        return signatures[signature_name]
    except KeyError:
        known = ", ".join(sorted(s for s in signatures if not s.startswith("__"))) or "none"
        raise ModelError(f"model {model!r} has no signature {signature_name!r}; it has: {known}") from None


def _grpc_signatures(target: str, model: str, timeout_s: float) -> dict[str, tuple[InputSpec, ...]]:
    import grpc

    serving = wire.messages()
    request = serving.GetModelMetadataRequest()
    request.model_spec.name = model
    request.metadata_field.append(SIGNATURE_DEF_FIELD)
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise LoadError(f"no gRPC connection to {target} within {timeout_s:g} s{_why_not_grpc(target)}") from None
        get_metadata = channel.unary_unary(
            wire.method("GetModelMetadata"),
            request_serializer=serving.GetModelMetadataRequest.SerializeToString,
            response_deserializer=serving.GetModelMetadataResponse.FromString,
        )
        try:
            response = get_metadata(request, timeout=timeout_s)
        except grpc.RpcError as e:
            raise _metadata_error(model, target, e.code().name, e.details()) from None
    if SIGNATURE_DEF_FIELD not in response.metadata:
        raise LoadError(f"the server at {target} sent no {SIGNATURE_DEF_FIELD} metadata for model {model!r}")
    # The Any holds a tensorflow.serving.SignatureDefMap: the same bytes as ours (tests/load/test_wire.py).
    defs = serving.SignatureDefMap.FromString(response.metadata[SIGNATURE_DEF_FIELD].value)
    return {
        name: tuple(
            InputSpec(
                alias,
                _dtype_name(serving, info.dtype),
                None if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim),
            )
            for alias, info in sorted(signature.inputs.items())
        )
        for name, signature in defs.signature_def.items()
    }


def _dtype_name(serving, number: int) -> str:
    """TensorFlow's enum name of a dtype (DT_FLOAT, …); a number newer than serving.proto stays a number."""
    try:
        return serving.DataType.Name(number)
    except ValueError:
        return f"DataType {number}"


def _why_not_grpc(target: str) -> str:
    """A hint for a target gRPC could not reach: nothing listening, or an HTTP/1.1 server there."""
    address = addresses.parse(target)
    try:
        with socket.create_connection((address.host, address.port), timeout=2) as probe:
            probe.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n")
            answer = probe.recv(16)
    except OSError as e:
        return f" ({e.strerror or e})"
    if answer.startswith(b"HTTP/1."):
        return (": it answers HTTP/1.1, so it is likely a REST port (TF Serving's --rest_api_port); "
                "use --protocol=rest for it, or the server's gRPC --port")
    return ""


def _rest_signatures(target: str, model: str, timeout_s: float) -> dict[str, tuple[InputSpec, ...]]:
    address = addresses.parse(target)
    host, port = address.host, address.port
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", f"/v1/models/{urllib.parse.quote(model, safe='')}/metadata")
        response = connection.getresponse()
        body = response.read()
    except http.client.HTTPException:
        raise LoadError(
            f"{target} does not answer HTTP/1.1 (no status line came back): a gRPC port? --protocol=rest needs the "
            "server's REST port (TF Serving's --rest_api_port); for its gRPC --port use --protocol=grpc"
        ) from None
    except OSError as e:
        raise LoadError(f"GET metadata of {model!r} from {target} failed: {e}") from None
    finally:
        connection.close()
    try:
        document = json.loads(body)
    except ValueError:
        raise LoadError(f"{target} answered the metadata request for {model!r} with non-JSON (HTTP {response.status})") from None
    if response.status != 200:
        code = "NOT_FOUND" if response.status == 404 else f"HTTP {response.status}"
        raise _metadata_error(model, target, code, document.get("error", ""))
    signature_defs = document["metadata"][SIGNATURE_DEF_FIELD]["signature_def"]
    return {
        name: tuple(
            InputSpec(alias, info["dtype"], _json_shape(info.get("tensor_shape", {})))
            for alias, info in sorted(signature.get("inputs", {}).items())
        )
        for name, signature in signature_defs.items()
    }


def _json_shape(shape: Mapping) -> tuple[int, ...] | None:
    if shape.get("unknown_rank"):
        return None
    return tuple(int(d["size"]) for d in shape.get("dim", []))


def _metadata_error(model: str, target: str, code: str, details: str) -> Exception:
    if code == "NOT_FOUND":
        return ModelError(f"model {model!r} is not served at {target}: NOT_FOUND: {details}")
    return LoadError(f"GetModelMetadata for {model!r} at {target} failed: {code}: {details}")


# ----------------------------------------------------------------------------- contents


def batch_shape(spec: InputSpec, batch_size: int) -> tuple[int, ...]:
    """The input's shape with the batch dimension set; refuses unknown dimensions."""
    if spec.shape is None:
        raise ModelError(f"input {spec.alias!r} has an unknown rank; the generator cannot choose its shape")
    if not spec.shape:
        raise ModelError(f"input {spec.alias!r} is a scalar; it has no batch dimension for batch_size")
    if spec.shape[0] not in (-1, batch_size):
        raise ConfigError(f"input {spec.alias!r} has a fixed batch dimension {spec.shape[0]}; set batch_size to it")
    unknown = [k for k, size in enumerate(spec.shape[1:], start=1) if size < 0]
    if unknown:
        raise ModelError(
            f"input {spec.alias!r} has unknown dimension(s) {unknown} (shape {list(spec.shape)}); "
            "the generator cannot choose their sizes"
        )
    return (batch_size, *spec.shape[1:])


def numpy_dtype(spec: InputSpec) -> np.dtype:
    try:
        return NUMPY_DTYPES[spec.dtype]
    except KeyError:
        raise ModelError(
            f"input {spec.alias!r} has dtype {spec.dtype}, which the generator cannot synthesise "
            f"(it can: {', '.join(NUMPY_DTYPES)})"
        ) from None


def make_batches(
    inputs: Sequence[InputSpec], batch_size: int, source: InputSource, seed: int
) -> list[dict[str, np.ndarray]]:
    """The contents of each distinct request: alias → array of the input's dtype and shape."""
    if not inputs:
        raise ModelError("the signature has no inputs")
    if source.kind == INPUT_IMAGES:
        return image_batches(inputs, batch_size, source.directory)
    return [random_batch(inputs, batch_size, seed)]


def random_batch(inputs: Sequence[InputSpec], batch_size: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = {}
    for spec in inputs:
        shape, dtype = batch_shape(spec, batch_size), numpy_dtype(spec)
        if dtype.kind == "f":
            batch[spec.alias] = rng.uniform(0, _PIXEL_MAX, shape).astype(dtype)
        elif dtype.kind == "b":
            batch[spec.alias] = rng.integers(0, 2, shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            low, high = max(info.min, 0), min(info.max, _PIXEL_MAX)
            batch[spec.alias] = rng.integers(low, high, shape, endpoint=True).astype(dtype)
    return batch


def image_batches(inputs: Sequence[InputSpec], batch_size: int, directory: str) -> list[dict[str, np.ndarray]]:
    if len(inputs) != 1:
        raise ModelError(f"images need a signature with one input; it has {[s.alias for s in inputs]}")
    spec = inputs[0]
    shape, dtype = batch_shape(spec, batch_size), numpy_dtype(spec)
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise ModelError(
            f"input {spec.alias!r} of shape {list(spec.shape)} is not an image batch [batch, height, width, 1 or 3]"
        )
    paths = image_files(directory)[: MAX_BODIES * batch_size]
    images = load_images(paths, height=shape[1], width=shape[2], channels=shape[3])
    count = min(math.ceil(len(images) / batch_size), MAX_BODIES)
    return [
        {spec.alias: images[[(k * batch_size + j) % len(images) for j in range(batch_size)]].astype(dtype)}
        for k in range(count)
    ]


def image_files(directory: str) -> list[Path]:
    check_image_directory(directory)
    paths = sorted(p for p in Path(directory).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    return paths


def load_images(paths: Sequence[Path], height: int, width: int, channels: int) -> np.ndarray:
    """uint8 [n, height, width, channels]: each image converted to RGB (or L) and resized bilinearly."""
    mode = "RGB" if channels == 3 else "L"
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                resized = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        except (OSError, UnidentifiedImageError) as e:
            raise ConfigError(f"cannot read image {path}: {e}") from None
        arrays.append(np.asarray(resized, dtype=np.uint8).reshape(height, width, channels))
    return np.stack(arrays)


# ----------------------------------------------------------------------------- encodings


def encode_grpc(model: str, signature_name: str, inputs: Sequence[InputSpec], batch: Mapping[str, np.ndarray]) -> bytes:
    """A serialized PredictRequest with each input as little-endian `tensor_content`."""
    serving = wire.messages()
    request = serving.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    for spec in inputs:
        array = batch[spec.alias]
        tensor = request.inputs[spec.alias]
        tensor.dtype = serving.DataType.Value(spec.dtype)
        for size in array.shape:
            tensor.tensor_shape.dim.add(size=size)
        tensor.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return request.SerializeToString(deterministic=True)


def encode_rest(signature_name: str, batch: Mapping[str, np.ndarray]) -> bytes:
    """A columnar REST predict body; JSON numbers hold each value exactly for its dtype."""
    body = {"signature_name": signature_name, "inputs": {alias: array.tolist() for alias, array in batch.items()}}
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
