"""Loaded SavedModel versions: callable signatures with everything a request needs precomputed.

A request should cost TensorFlow's time, not ours, so all per-signature facts (input dtypes, alias
order, output names, the metadata reply) are derived once at load time.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from tfs_bench.server import status

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"


def dtype_name(dtype_enum: int) -> str:
    """TensorFlow's DataTypeString: DT_FLOAT -> "float", DT_INT32 -> "int32"."""
    return types_pb2.DataType.Name(dtype_enum).removeprefix("DT_").lower()


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    alias: str
    dtype_enum: int
    numpy_dtype: np.dtype

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype_enum)


def _spec(alias: str, dtype_enum: int) -> TensorSpec:
    return TensorSpec(alias, dtype_enum, np.dtype(tf.dtypes.as_dtype(dtype_enum).as_numpy_dtype))


class Signature:
    """One callable signature of a loaded version."""

    def __init__(self, name: str, function, signature_def):
        self.name = name
        self._function = function
        self.method_name = signature_def.method_name
        self.inputs: Mapping[str, TensorSpec] = {
            alias: _spec(alias, info.dtype) for alias, info in sorted(signature_def.inputs.items())
        }
        self.outputs: Mapping[str, TensorSpec] = {
            alias: _spec(alias, info.dtype) for alias, info in sorted(signature_def.outputs.items())
        }
        # TF names a dtype mismatch by the argument's position; positions follow sorted aliases.
        self.input_index = {alias: i for i, alias in enumerate(self.inputs)}
        self.output_aliases = tuple(self.outputs)

    def run(self, inputs: Mapping[str, np.ndarray], output_aliases: Sequence[str]) -> dict[str, np.ndarray]:
        """Runs the graph; `inputs` are already validated. Raises ServingError."""
        try:
            result = self._function(**inputs)
            return {alias: result[alias].numpy() for alias in output_aliases}
        except tf.errors.OpError as e:
            raise status.ServingError(status.code_from_number(e.error_code), e.message) from None
        except (TypeError, ValueError) as e:
            # The function's own input binding rejects shapes TF would reject inside the graph.
            raise status.invalid_argument(_without_arguments(str(e))) from None


def _without_arguments(message: str) -> str:
    # TF appends the full argument values, which can be megabytes of pixels.
    return message.split(" Received args:", 1)[0]


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedVersion:
    """An AVAILABLE-able version: its signatures and its metadata reply."""

    name: str
    version: int
    path: str
    signatures: Mapping[str, Signature]
    signature_def_any: any_pb2.Any  # GetModelMetadata's metadata["signature_def"], packed once
    module: object  # keeps the loaded TF objects alive while requests use the functions


def read_signature_defs(path: str):
    """The MetaGraph signature defs of saved_model.pb (what TF Serving reports as metadata)."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph.signature_def
    raise status.not_found(f"SavedModel at {path} has no MetaGraph tagged {SERVE_TAG!r}")


def load(name: str, version: int, path: str) -> LoadedVersion:
    """Loads one version; raises ServingError with the reason it cannot be served."""
    try:
        signature_defs = read_signature_defs(path)
        module = tf.saved_model.load(path, tags=[SERVE_TAG])
    except OSError as e:
        raise status.not_found(f"Could not load SavedModel at {path}: {e}") from None
    except tf.errors.OpError as e:
        raise status.ServingError(status.code_from_number(e.error_code), e.message) from None
    signatures = {
        key: Signature(key, function, signature_defs[key])
        for key, function in module.signatures.items()
        if key in signature_defs
    }
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in signature_defs.items():
        signature_def_map.signature_def[key].CopyFrom(signature_def)
    packed = any_pb2.Any()
    packed.Pack(signature_def_map)
    return LoadedVersion(name, version, path, signatures, packed, module)
