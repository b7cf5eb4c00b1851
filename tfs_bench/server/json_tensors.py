"""JSON bodies of the REST predict API: row (`instances`) and columnar (`inputs`) formats.

JSON values take the dtype of the signature input they feed, as in TF Serving; strings are UTF-8
or `{"b64": "..."}`. Outputs come back as `predictions` (row) or `outputs` (columnar).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from tfs_bench.server import json_body
from tfs_bench.server import status
from tfs_bench.server.aliases import check_input_aliases

if TYPE_CHECKING:  # TensorFlow-free at run time: the JSON worker process imports this module
    from tfs_bench.server.servables import Signature

ROW = "row"
COLUMNAR = "columnar"


@dataclasses.dataclass(frozen=True)
class PredictBody:
    format: str
    data: Any  # the `instances` list or the `inputs` value
    signature_name: str = ""


def parse_predict_body(raw: bytes) -> PredictBody:
    body = json_body.parse(raw)
    if not isinstance(body, dict):
        raise status.invalid_argument("JSON Value: the request body must be a JSON object")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise status.invalid_argument("'signature_name' must be a string")
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise status.invalid_argument(
            "Not both 'inputs' and 'instances' can be set" if has_rows
            else "Missing 'inputs' or 'instances' key"
        )
    if has_rows:
        if not isinstance(body["instances"], list) or not body["instances"]:
            raise status.invalid_argument("Expecting 'instances' to be a non-empty list")
        return PredictBody(ROW, body["instances"], signature_name)
    return PredictBody(COLUMNAR, body["inputs"], signature_name)


def decoder(body: PredictBody) -> Callable[["Signature"], dict[str, np.ndarray]]:
    def decode(signature: "Signature") -> dict[str, np.ndarray]:
        columns = _rows_to_columns(body.data, signature) if body.format == ROW else _columns(body.data, signature)
        check_input_aliases(signature, list(columns))
        return {alias: _to_array(value, signature, alias) for alias, value in columns.items()}

    return decode


def _is_named(value) -> bool:
    # {"b64": ...} is a value, not a map of input names.
    return isinstance(value, dict) and set(value) != {"b64"}


def _only_input(signature: "Signature") -> str:
    if len(signature.inputs) != 1:
        raise status.invalid_argument(
            "inputs must be given by name for a signature with inputs "
            f"{{{','.join(signature.inputs)}}}"
        )
    return next(iter(signature.inputs))


def _rows_to_columns(instances: list, signature: "Signature") -> dict[str, list]:
    if not _is_named(instances[0]):
        return {_only_input(signature): instances}
    aliases = set(instances[0])
    for instance in instances:
        if not _is_named(instance) or set(instance) != aliases:
            raise status.invalid_argument(
                "Expecting all 'instances' to be objects with the same keys"
            )
    return {alias: [instance[alias] for instance in instances] for alias in sorted(aliases)}


def _columns(inputs, signature: "Signature") -> dict[str, Any]:
    return dict(inputs) if _is_named(inputs) else {_only_input(signature): inputs}


def _to_array(value, signature: "Signature", alias: str) -> np.ndarray:
    spec = signature.inputs[alias]
    try:
        if spec.numpy_dtype == object:
            return np.array(_strings(value), dtype=object)
        return np.asarray(value, dtype=spec.numpy_dtype)
    except (ValueError, TypeError, OverflowError, binascii.Error) as e:
        raise status.invalid_argument(
            f"Failed to process element: {status.clip_value(alias)} of 'inputs' as {spec.dtype_name}: "
            f"{status.clip_value(str(e), 300)}"
        ) from None
    except RecursionError:
        raise status.invalid_argument(
            f"Failed to process element: {status.clip_value(alias)} of 'inputs': it nests too deeply"
        ) from None


def _strings(value):
    if isinstance(value, list):
        return [_strings(item) for item in value]
    if isinstance(value, dict):
        return base64.b64decode(value["b64"], validate=True)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"expected a string, got {type(value).__name__}")


def encode_outputs(outputs: Mapping[str, np.ndarray], body_format: str) -> dict:
    values = {alias: _json_value(alias, array) for alias, array in outputs.items()}
    if body_format == COLUMNAR:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    batch_sizes = {len(value) if isinstance(value, list) else None for value in values.values()}
    if len(batch_sizes) != 1 or None in batch_sizes:
        raise status.invalid_argument(
            "Output tensors have different batch sizes; use the columnar ('inputs') format"
        )
    return {"predictions": [dict(zip(values, row)) for row in zip(*values.values())]}


def _json_value(alias: str, array: np.ndarray):
    if array.dtype != object:
        return array.tolist()
    return _string_values(alias, array.tolist())


def _string_values(alias: str, value):
    if isinstance(value, list):
        return [_string_values(alias, item) for item in value]
    # TF Serving's convention: outputs named *_bytes are binary and go out base64-encoded.
    if not alias.endswith("_bytes"):
        try:
            return value.decode()
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(value).decode()}
