"""Loaded SavedModel versions: signatures run through a TensorFlow Session, as TF Serving runs them.

TF Serving loads every SavedModel, TF1- or TF2-exported, into a Session on the MetaGraph tagged
`serve`, and a request feeds the signature's input tensor names and fetches its output tensor
names. So does this module. It has three consequences that clients rely on:
- TF1 graphs work as exported: placeholders, `tf.io.parse_example` over serialized `tf.Example`s,
  tables initialised from assets (the loader feeds each asset's path inside this version);
- nothing checks a fed shape against the signature's TensorInfo: a `[1]`-shaped tensor fed to an
  input declared `[-1, 1]` runs, and only the graph's own ops can refuse a shape;
- a call costs TensorFlow's C++ Session::RunCallable, not the per-call argument binding of a
  restored `tf.function` (docs/performance.md has the profile before and after).

Each (fed tensors, fetched tensors) pair gets one callable, made on first use and reused.
The Session takes its thread pools and GPU options from TensorFlow's process configuration, which
`devices` sets before the first model loads.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from tfs_bench.server import status

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def dtype_name(dtype_enum: int) -> str:
    """TensorFlow's DataTypeString: DT_FLOAT -> "float", DT_INT32 -> "int32"."""
    return types_pb2.DataType.Name(dtype_enum).removeprefix("DT_").lower()


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    alias: str
    dtype_enum: int
    numpy_dtype: np.dtype
    tensor_name: str = ""

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype_enum)


def _spec(alias: str, info) -> TensorSpec:
    dtype = np.dtype(tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
    return TensorSpec(alias, info.dtype, dtype, info.name)


class SessionRunner:
    """Runs one Session by tensor names, with one Session::MakeCallable per (feeds, fetches)."""

    def __init__(self, session):
        self._session = session
        self._callables: dict[tuple[tuple[str, ...], tuple[str, ...]], object] = {}
        self._lock = threading.Lock()

    def run(self, feed_names: tuple[str, ...], feed_values, fetch_names: tuple[str, ...]) -> list:
        """Feeds `feed_values` (in `feed_names` order) and returns the fetches; raises ServingError."""
        key = (feed_names, fetch_names)
        call = self._callables.get(key) or self._make_callable(key)
        try:
            return call(*feed_values)
        except tf.errors.OpError as e:
            raise status.ServingError(status.code_from_number(e.error_code), e.message) from None

    def _make_callable(self, key):
        with self._lock:
            call = self._callables.get(key)
            if call is None:
                options = config_pb2.CallableOptions(feed=key[0], fetch=key[1])
                try:
                    # Session::MakeCallable: unlike Session.run it checks no fed shape in Python.
                    call = self._session._make_callable_from_options(options)  # pylint: disable=protected-access
                except tf.errors.OpError as e:
                    raise status.ServingError(status.code_from_number(e.error_code), e.message) from None
                self._callables[key] = call
            return call


class Signature:
    """One signature of a loaded version; `runner` is None only for request-parsing tests."""

    def __init__(self, name: str, signature_def, runner: SessionRunner | None = None):
        self.name = name
        self.definition = signature_def
        self.method_name = signature_def.method_name
        self.inputs: Mapping[str, TensorSpec] = {
            alias: _spec(alias, info) for alias, info in sorted(signature_def.inputs.items())
        }
        self.outputs: Mapping[str, TensorSpec] = {
            alias: _spec(alias, info) for alias, info in sorted(signature_def.outputs.items())
        }
        # TF names a dtype mismatch by the argument's position; positions follow sorted aliases.
        self.input_index = {alias: i for i, alias in enumerate(self.inputs)}
        self.output_aliases = tuple(self.outputs)
        self.runner = runner
        self._feed_aliases = tuple(self.inputs)
        self._feed_names = tuple(spec.tensor_name for spec in self.inputs.values())
        self._fetch_names: dict[tuple[str, ...], tuple[str, ...]] = {}

    def run(self, inputs: Mapping[str, np.ndarray], output_aliases: Sequence[str]) -> dict[str, np.ndarray]:
        """Runs the graph; `inputs` are already validated (aliases and dtypes). Raises ServingError."""
        outputs = tuple(output_aliases)
        fetch_names = self._fetch_names.get(outputs)
        if fetch_names is None:  # once per output set; a race only computes the same tuple twice
            fetch_names = self._fetch_names[outputs] = tuple(self.outputs[a].tensor_name for a in outputs)
        results = self.runner.run(
            self._feed_names, [inputs[alias] for alias in self._feed_aliases], fetch_names
        )
        return dict(zip(outputs, results))

    def debug_string(self) -> str:
        """The SignatureDef in protobuf text format, as TF Serving quotes it in its errors."""
        return text_format.MessageToString(self.definition)


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedVersion:
    """An AVAILABLE-able version: its signatures and its metadata reply."""

    name: str
    version: int
    path: str
    signatures: Mapping[str, Signature]
    signature_def_any: any_pb2.Any  # GetModelMetadata's metadata["signature_def"], packed once
    runner: SessionRunner  # the Session every signature runs in (MultiInference runs it directly)


def read_signature_defs(path: str):
    """The MetaGraph signature defs of saved_model.pb (what TF Serving reports as metadata)."""
    return _serve_meta_graph(_read_saved_model(path), path).signature_def


def _read_saved_model(path: str) -> saved_model_pb2.SavedModel:
    saved_model = saved_model_pb2.SavedModel()
    binary, text = (os.path.join(path, name) for name in SAVED_MODEL_FILES)
    try:
        if os.path.exists(binary):
            with open(binary, "rb") as f:
                saved_model.ParseFromString(f.read())
        elif os.path.exists(text):
            with open(text, encoding="utf-8") as f:
                text_format.Parse(f.read(), saved_model)
        else:
            raise status.not_found(  # TF's own wording
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}"
            )
    except status.ServingError:
        raise
    except Exception as e:  # a truncated or foreign file: protobuf's DecodeError, ParseError, OSError
        raise status.ServingError(
            grpc.StatusCode.DATA_LOSS, f"Could not parse SavedModel at {path}: {e}"
        ) from None
    return saved_model


def _serve_meta_graph(saved_model, path: str):
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    found = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise status.not_found(
        f"Could not find meta graph def matching supplied tags: {{ {SERVE_TAG} }}. "
        f"SavedModel at {path} has tag sets {found}"
    )


def _runnable(signature_def) -> bool:
    # A TF2 export's "__saved_model_init_op" fetches an op, not a tensor (dtype DT_INVALID), and a
    # sparse or composite TensorInfo has no single tensor name: metadata lists them, nothing runs them.
    infos = [*signature_def.inputs.values(), *signature_def.outputs.values()]
    return all(info.dtype != types_pb2.DT_INVALID and info.WhichOneof("encoding") == "name" for info in infos)


def load(name: str, version: int, path: str) -> LoadedVersion:
    """Loads one version into its own Session; raises ServingError with the reason it cannot."""
    signature_defs = read_signature_defs(path)
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    try:
        with graph.as_default():
            tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], path)
    except tf.errors.OpError as e:
        session.close()
        raise status.ServingError(status.code_from_number(e.error_code), e.message) from None
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        session.close()
        raise status.ServingError(
            grpc.StatusCode.INTERNAL, f"Could not load SavedModel at {path}: {e}"
        ) from None
    graph.finalize()  # requests only run it; nothing may add ops
    runner = SessionRunner(session)
    signatures = {
        key: Signature(key, definition, runner)
        for key, definition in signature_defs.items()
        if _runnable(definition)
    }
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in signature_defs.items():
        signature_def_map.signature_def[key].CopyFrom(signature_def)
    packed = any_pb2.Any()
    packed.Pack(signature_def_map)
    return LoadedVersion(name, version, path, signatures, packed, runner)
