"""The TensorProto codec: TensorFlow's own decoding and encoding are the reference."""

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from tfs_bench.server import tensors

RNG = np.random.default_rng(0)

ARRAYS = [
    RNG.standard_normal((2, 3)).astype(np.float32),
    RNG.standard_normal((4,)).astype(np.float64),
    RNG.integers(0, 255, (2, 2, 3)).astype(np.uint8),
    RNG.integers(-5, 5, (3,)).astype(np.int8),
    RNG.integers(-5, 5, (3,)).astype(np.int16),
    RNG.integers(-5, 5, (3,)).astype(np.int32),
    RNG.integers(-5, 5, (3,)).astype(np.int64),
    np.array([1, 2**32 - 1], dtype=np.uint32),
    np.array([1, 2**64 - 1], dtype=np.uint64),
    np.array([True, False]),
    np.array([0.5, -2.0], dtype=np.float16),
    np.array([0.5, -2.0], dtype=ml_dtypes.bfloat16),
    np.array([1 + 2j], dtype=np.complex64),
    np.array([[b"a", b"\xff"]], dtype=object),
    np.zeros((0, 3), np.float32),
    np.float32(7.0).reshape(()),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_encoding_matches_tensorflows_typed_fields(array):
    ours = tensor_pb2.TensorProto()

    tensors.from_numpy(array, ours)

    assert not ours.tensor_content
    np.testing.assert_array_equal(tf.make_ndarray(ours), array)
    assert ours.dtype == tf.make_tensor_proto(array).dtype


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_decoding_reads_what_tensorflow_writes(array):
    proto = tf.make_tensor_proto(array)  # tensor_content for numeric arrays of more than one value

    decoded = tensors.to_numpy(proto)

    np.testing.assert_array_equal(decoded, array)
    assert decoded.dtype == array.dtype


def test_float_outputs_are_wire_identical_to_extending_the_field():
    array = RNG.standard_normal((3, 5)).astype(np.float32)
    ours, reference = tensor_pb2.TensorProto(), tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for size in array.shape:
        reference.tensor_shape.dim.add(size=size)
    reference.float_val.extend(array.ravel().tolist())

    tensors.from_numpy(array, ours)

    assert ours == reference


def test_typed_values_fill_like_tensor_from_proto():
    shape = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    shape.tensor_shape.dim.add(size=4)
    few = tensor_pb2.TensorProto()
    few.CopyFrom(shape)
    few.float_val.extend([1.0, 2.0])
    many = tensor_pb2.TensorProto()
    many.CopyFrom(shape)
    many.float_val.extend([1.0, 2.0, 3.0, 4.0, 5.0])

    np.testing.assert_array_equal(tensors.to_numpy(shape), [0, 0, 0, 0])
    np.testing.assert_array_equal(tensors.to_numpy(few), [1, 2, 2, 2])
    np.testing.assert_array_equal(tensors.to_numpy(many), [1, 2, 3, 4])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: setattr(t, "tensor_content", t.tensor_content[:-1]),
        lambda t: setattr(t.tensor_shape, "unknown_rank", True),
        lambda t: setattr(t.tensor_shape.dim[0], "size", -1),
        lambda t: setattr(t, "dtype", types_pb2.DT_RESOURCE),
    ],
    ids=["short_content", "unknown_rank", "unknown_dim", "unsupported_dtype"],
)
def test_malformed_protos_do_not_parse(mutate):
    proto = tf.make_tensor_proto(np.ones((2, 3), np.float32))
    mutate(proto)

    with pytest.raises(tensors.TensorParseError):
        tensors.to_numpy(proto)
