"""TensorProto <-> numpy, with TensorFlow's Tensor::FromProto / AsProtoField semantics.

Decoding reads `tensor_content` with np.frombuffer (no copy) and typed `*_val` fields through one
numpy conversion. Encoding writes typed fields (TF Serving's default for Predict); float and double
outputs are written as the packed wire bytes of the field and parsed by protobuf's C code, which is
about ten times faster than extending the repeated field element by element.
"""

from __future__ import annotations

import functools
import math

import ml_dtypes
import numpy as np
from tensorflow.core.framework import types_pb2

_DT = types_pb2.DataType

_NUMPY_DTYPE = {
    _DT.DT_FLOAT: np.dtype(np.float32),
    _DT.DT_DOUBLE: np.dtype(np.float64),
    _DT.DT_HALF: np.dtype(np.float16),
    _DT.DT_BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    _DT.DT_INT8: np.dtype(np.int8),
    _DT.DT_INT16: np.dtype(np.int16),
    _DT.DT_INT32: np.dtype(np.int32),
    _DT.DT_INT64: np.dtype(np.int64),
    _DT.DT_UINT8: np.dtype(np.uint8),
    _DT.DT_UINT16: np.dtype(np.uint16),
    _DT.DT_UINT32: np.dtype(np.uint32),
    _DT.DT_UINT64: np.dtype(np.uint64),
    _DT.DT_BOOL: np.dtype(np.bool_),
    _DT.DT_COMPLEX64: np.dtype(np.complex64),
    _DT.DT_COMPLEX128: np.dtype(np.complex128),
    _DT.DT_STRING: np.dtype(object),
}
_DTYPE_ENUM = {dtype: enum for enum, dtype in _NUMPY_DTYPE.items() if enum != _DT.DT_STRING}

_FIELD = {
    _DT.DT_FLOAT: "float_val",
    _DT.DT_DOUBLE: "double_val",
    _DT.DT_HALF: "half_val",
    _DT.DT_BFLOAT16: "half_val",
    _DT.DT_INT8: "int_val",
    _DT.DT_INT16: "int_val",
    _DT.DT_INT32: "int_val",
    _DT.DT_UINT8: "int_val",
    _DT.DT_UINT16: "int_val",
    _DT.DT_INT64: "int64_val",
    _DT.DT_UINT32: "uint32_val",
    _DT.DT_UINT64: "uint64_val",
    _DT.DT_BOOL: "bool_val",
    _DT.DT_COMPLEX64: "scomplex_val",
    _DT.DT_COMPLEX128: "dcomplex_val",
    _DT.DT_STRING: "string_val",
}
# Fields whose packed encoding is the little-endian array itself: (field number, wire dtype).
_PACKED_FIXED = {_DT.DT_FLOAT: (5, "<f4"), _DT.DT_DOUBLE: (6, "<f8")}
_HALF_BITS = (_DT.DT_HALF, _DT.DT_BFLOAT16)  # stored as their 16 bits in int32 half_val
_COMPLEX_PARTS = {_DT.DT_COMPLEX64: np.float32, _DT.DT_COMPLEX128: np.float64}


# TensorFlow fills a tensor whose typed values fall short of its shape (zeros, or the last value
# repeated), so a 45-byte request can ask for gigabytes. Filled elements, those not on the wire,
# are bounded by this many bytes per tensor unless the server is told otherwise.
DEFAULT_MAX_FILL_BYTES = 64 * 2**20
# numpy's limit on dimensions (TensorFlow's is 254; beyond 64 no model here could take it).
MAX_RANK = 64
_MAX_BYTES = 2**63 - 1  # numpy's limit on an array's size in bytes


class TensorParseError(ValueError):
    """The proto does not describe a tensor (TF's FromProto would fail)."""


class TensorLimitError(TensorParseError):
    """A well-formed tensor this server refuses to build; the message says which limit and why."""


def dtype_enum_of(array: np.ndarray) -> int:
    if array.dtype == object or array.dtype.kind in "SU":
        return _DT.DT_STRING
    try:
        return _DTYPE_ENUM[array.dtype]
    except KeyError:
        raise TensorParseError(f"numpy dtype {array.dtype} has no TensorFlow equivalent") from None


def numpy_dtype(dtype_enum: int) -> np.dtype:
    try:
        return _NUMPY_DTYPE[dtype_enum]
    except KeyError:
        raise TensorParseError(f"unsupported dtype {dtype_enum}") from None


def to_numpy(tensor, max_fill_bytes: int = DEFAULT_MAX_FILL_BYTES, content=None) -> np.ndarray:
    """Decodes a TensorProto; raises TensorParseError where TF's Tensor::FromProto fails.

    Raises TensorLimitError, before allocating anything, when the typed values fall short of the
    shape by more than `max_fill_bytes` of filled elements. `content`, when given, is the
    tensor's tensor_content held outside the proto (predict_wire), and the array is a view of it.
    """
    dtype = numpy_dtype(tensor.dtype)
    shape = _shape(tensor.tensor_shape)
    count = math.prod(shape)
    # numpy refuses such a shape even with a zero dimension in it (TensorFlow counts entries only).
    if math.prod(size for size in shape if size) * dtype.itemsize > _MAX_BYTES:
        raise TensorLimitError(f"shape {_shape_text(shape)} is too large for this server")
    # Each read of a bytes field hands out a new copy (1 ms for a batch of eight 224 px float32
    # images): read it once.
    if tensor.dtype == _DT.DT_STRING:
        content = b""
    elif content is None:
        content = tensor.tensor_content
    if content:
        if len(content) != count * dtype.itemsize:
            raise TensorParseError("tensor_content size does not match the shape")
        return np.frombuffer(content, dtype=dtype).reshape(shape)
    field = getattr(tensor, _FIELD[tensor.dtype])
    _check_fill(shape, count, len(field), dtype, max_fill_bytes)
    values = _typed_values(tensor, field, dtype)
    return _fill(values, count, dtype).reshape(shape)


def _shape(shape_proto) -> tuple[int, ...]:
    if shape_proto.unknown_rank:
        raise TensorParseError("a request tensor must have a known rank")
    if len(shape_proto.dim) > MAX_RANK:
        raise TensorLimitError(
            f"a tensor of rank {len(shape_proto.dim)}; this server takes at most {MAX_RANK} dimensions"
        )
    shape = tuple(dim.size for dim in shape_proto.dim)
    if any(size < 0 for size in shape):
        raise TensorParseError("a request tensor must have a fully known shape")
    return shape


def _check_fill(shape: tuple[int, ...], count: int, given: int, dtype: np.dtype, limit: int) -> None:
    filled = count - given
    if filled <= 0:
        return
    # Strings are filled with references to one empty string: a pointer each.
    filled_bytes = filled * dtype.itemsize
    if filled_bytes > limit:
        raise TensorLimitError(
            f"shape {_shape_text(shape)} holds {count} values but the request gives {given}; "
            f"filling the other {filled} would take {filled_bytes} bytes, more than this server's "
            f"--max_tensor_fill_bytes={limit}"
        )


def _shape_text(shape: tuple[int, ...]) -> str:
    text = "[" + ",".join(str(size) for size in shape[:8]) + (",...]" if len(shape) > 8 else "]")
    return text if len(text) <= 200 else text[:200] + "...]"


def _typed_values(tensor, field, dtype: np.dtype) -> np.ndarray:
    if tensor.dtype == _DT.DT_STRING:
        return np.array(list(field), dtype=object)
    if tensor.dtype in _HALF_BITS:
        return np.array(field, dtype=np.uint16).view(dtype)
    if tensor.dtype in _COMPLEX_PARTS:
        return np.array(field, dtype=_COMPLEX_PARTS[tensor.dtype]).view(dtype)
    return np.array(field, dtype=dtype)


def _fill(values: np.ndarray, count: int, dtype: np.dtype) -> np.ndarray:
    # Tensor::FromProto: no values means zeros, too few repeat the last one, extras are ignored.
    if values.size == count:
        return values
    if values.size == 0:
        return np.zeros(count, dtype=dtype) if dtype != object else np.full(count, b"", dtype=object)
    if values.size > count:
        return values[:count]
    return np.concatenate([values, np.repeat(values[-1:], count - values.size)])


def from_numpy(array: np.ndarray, tensor) -> None:
    """Writes `array` into the (empty) TensorProto `tensor` using typed fields."""
    dtype_enum = dtype_enum_of(array)
    if dtype_enum in _PACKED_FIXED:
        field_number, wire_dtype = _PACKED_FIXED[dtype_enum]
        raw = np.ascontiguousarray(array, dtype=wire_dtype).tobytes()
        tensor.MergeFromString(_tensor_bytes(dtype_enum, array.shape, field_number, raw))
        return
    tensor.dtype = dtype_enum
    for size in array.shape:
        tensor.tensor_shape.dim.add(size=size)
    flat = array.ravel()
    if dtype_enum in _HALF_BITS:
        flat = flat.view(np.uint16)
    elif dtype_enum in _COMPLEX_PARTS:
        flat = flat.view(_COMPLEX_PARTS[dtype_enum])
    elif dtype_enum == _DT.DT_STRING:
        flat = [value if isinstance(value, bytes) else str(value).encode() for value in flat]
        getattr(tensor, _FIELD[dtype_enum]).extend(flat)
        return
    getattr(tensor, _FIELD[dtype_enum]).extend(flat.tolist())


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


def _tensor_bytes(dtype_enum: int, shape: tuple[int, ...], field_number: int, raw: bytes) -> bytes:
    # TensorProto: dtype = 1 (varint), tensor_shape = 2 { dim = 2 { size = 1 } }, typed field packed.
    out = _tensor_header(dtype_enum, shape)
    return out + length_delimited(field_number, raw) if raw else out


@functools.lru_cache(maxsize=256)
def _tensor_header(dtype_enum: int, shape: tuple[int, ...]) -> bytes:
    """The dtype and shape fields; a model answers with a few shapes, so each is encoded once."""
    dims = b"".join(length_delimited(2, b"\x08" + varint(size)) for size in shape)
    return b"\x08" + varint(dtype_enum) + length_delimited(2, dims)
