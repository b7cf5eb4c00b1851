"""predict_wire: a PredictRequest read with its large tensor contents left in the received bytes
means exactly what protobuf's parse of the whole request means."""

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2

from tfs_bench.server import predict
from tfs_bench.server import predict_wire
from tfs_bench.server import tensors

LARGE = predict_wire.MIN_OUT_OF_BAND_BYTES
assert 8 * 64 * 64 * 3 * 4 >= LARGE, "the image batch below must be large"


def tensor_bytes(values: np.ndarray) -> bytes:
    proto = predict_pb2.PredictRequest().inputs["x"]  # a TensorProto
    proto.dtype = tensors.dtype_enum_of(values)
    for size in values.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = values.tobytes()
    return proto.SerializeToString()


def request_bytes(inputs: dict[str, np.ndarray], name="m", output_filter=()) -> bytes:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    for alias, values in inputs.items():
        request.inputs[alias].ParseFromString(tensor_bytes(values))
    request.output_filter.extend(output_filter)
    return request.SerializeToString()


def entry_bytes(alias: bytes, tensor: bytes) -> bytes:
    """One map entry of PredictRequest.inputs (field 2), written by hand."""
    entry = tensors.length_delimited(1, alias) + tensors.length_delimited(2, tensor)
    return tensors.length_delimited(2, entry)


def whole(received: predict_wire.ReceivedPredict) -> predict_pb2.PredictRequest:
    """The request with the contents put back where they came from."""
    request = predict_pb2.PredictRequest()
    request.CopyFrom(received.request)
    for alias, content in received.contents.items():
        request.inputs[alias].tensor_content = bytes(content)
    return request


def floats(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(count).astype(np.float32)


def test_a_large_content_is_a_view_of_the_received_bytes():
    images = floats(8 * 64 * 64 * 3).reshape(8, 64, 64, 3)  # 384 KiB
    data = request_bytes({"images": images}, output_filter=["scores"])

    received = predict_wire.parse(data)

    assert list(received.contents) == ["images"]
    assert received.request.inputs["images"].tensor_content == b""
    assert list(received.request.inputs["images"].tensor_shape.dim) == list(
        predict_pb2.PredictRequest.FromString(data).inputs["images"].tensor_shape.dim)
    assert received.request.model_spec.name == "m" and list(received.request.output_filter) == ["scores"]
    array = tensors.to_numpy(received.request.inputs["images"], content=received.contents["images"])
    np.testing.assert_array_equal(array, images)
    assert np.shares_memory(array, np.frombuffer(data, dtype=np.uint8))
    assert whole(received) == predict_pb2.PredictRequest.FromString(data)


@pytest.mark.parametrize("size, kept_out", [(LARGE - 1, False), (LARGE, True)], ids=["just below", "at"])
def test_contents_from_the_threshold_up_are_left_out(size, kept_out):
    data = request_bytes({"x": np.arange(size, dtype=np.uint8)})

    received = predict_wire.parse(data)

    assert ("x" in received.contents) == kept_out
    assert whole(received) == predict_pb2.PredictRequest.FromString(data)


def test_the_decoder_reads_left_out_contents_and_the_proto_for_the_rest():
    big, small = floats(LARGE // 4 + 5), floats(7, seed=1)
    received = predict_wire.parse(request_bytes({"big": big, "small": small}))

    class Signature:
        inputs = {"big": None, "small": None}

    arrays = predict.proto_decoder(received.request.inputs, contents=received.contents)(Signature())

    assert list(received.contents) == ["big"]
    np.testing.assert_array_equal(arrays["big"], big)
    np.testing.assert_array_equal(arrays["small"], small)


def test_a_left_out_content_that_does_not_match_the_shape_is_the_usual_parse_error():
    tensor = tensor_bytes(floats(LARGE // 4 + 1))
    shape_of_two = predict_pb2.PredictRequest().inputs["x"]
    shape_of_two.ParseFromString(tensor)
    shape_of_two.tensor_shape.dim[0].size = 2
    data = entry_bytes(b"x", shape_of_two.SerializeToString())

    received = predict_wire.parse(data)

    assert "x" in received.contents
    with pytest.raises(tensors.TensorParseError, match="tensor_content size does not match the shape"):
        tensors.to_numpy(received.request.inputs["x"], content=received.contents["x"])


def test_string_tensors_ignore_tensor_content_either_way():
    tensor = predict_pb2.PredictRequest().inputs["x"]
    tensor.dtype = types_pb2.DT_STRING
    tensor.tensor_shape.dim.add(size=1)
    tensor.string_val.append(b"kept")
    tensor.tensor_content = bytes(LARGE)
    received = predict_wire.parse(entry_bytes(b"x", tensor.SerializeToString()))

    array = tensors.to_numpy(received.request.inputs["x"], content=received.contents.get("x"))

    assert array.tolist() == [b"kept"]


@pytest.mark.parametrize("data", [
    # The same key twice: protobuf's map keeps the last entry.
    entry_bytes(b"x", tensor_bytes(floats(LARGE // 4))) + entry_bytes(b"x", tensor_bytes(floats(LARGE // 4, 2))),
    # tensor_content twice in one TensorProto: protobuf keeps the last.
    entry_bytes(b"x", tensor_bytes(floats(LARGE // 4)) + tensors.length_delimited(4, floats(LARGE // 4, 3).tobytes())),
    # A key written twice inside one entry.
    tensors.length_delimited(2, tensors.length_delimited(1, b"y") + tensors.length_delimited(1, b"x")
                             + tensors.length_delimited(2, tensor_bytes(floats(LARGE // 4)))),
    # An entry without its key (the empty string) or without its value (an empty TensorProto).
    tensors.length_delimited(2, tensors.length_delimited(2, tensor_bytes(floats(LARGE // 4)))),
    tensors.length_delimited(2, tensors.length_delimited(1, b"x")),
    # The key field as a varint (protobuf keeps it as an unknown field).
    tensors.length_delimited(2, b"\x08\x01" + tensors.length_delimited(2, tensor_bytes(floats(LARGE // 4)))),
    # An empty group (field 4, kept as unknown) before the entry.
    b"\x23\x24" + entry_bytes(b"x", tensor_bytes(floats(LARGE // 4))),
], ids=["repeated key", "repeated content", "key twice in an entry", "no key", "no value", "key as varint",
        "group"])
def test_requests_laid_out_otherwise_are_parsed_whole(data):
    received = predict_wire.parse(data)

    assert received.contents == {}
    assert received.request == predict_pb2.PredictRequest.FromString(data)


@pytest.mark.parametrize("data", [
    request_bytes({"x": floats(LARGE // 4)})[:-1],  # cut short inside the content
    request_bytes({"x": floats(LARGE // 4)})[:3],
    b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a length past every varint's end
    entry_bytes(b"\xff\xfe", tensor_bytes(floats(LARGE // 4))),  # a key that is not UTF-8
], ids=["truncated content", "truncated header", "overlong varint", "key not utf-8"])
def test_what_protobuf_refuses_is_refused_with_its_error(data):
    with pytest.raises(DecodeError):
        predict_pb2.PredictRequest.FromString(data)
    with pytest.raises(DecodeError):
        predict_wire.parse(data)


_ALIASES = st.sampled_from(["x", "images", "", "ü"])
_CONTENT_SIZES = st.sampled_from([0, 4, LARGE - 4, LARGE, LARGE + 12])


@st.composite
def _wire_requests(draw):
    """Requests assembled from pieces the way a client might write them, repeats included."""
    pieces = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["entry", "spec", "filter", "unknown"]))
        if kind == "entry":
            size = draw(_CONTENT_SIZES)
            tensor = tensor_bytes(floats(size // 4, seed=draw(st.integers(0, 3))))
            if draw(st.booleans()):
                tensor += tensors.length_delimited(4, bytes(draw(_CONTENT_SIZES)))
            pieces.append(entry_bytes(draw(_ALIASES).encode(), tensor))
        elif kind == "spec":
            pieces.append(tensors.length_delimited(1, tensors.length_delimited(1, draw(_ALIASES).encode())))
        elif kind == "filter":
            pieces.append(tensors.length_delimited(3, draw(_ALIASES).encode()))
        else:
            pieces.append(tensors.varint(draw(st.integers(4, 40)) << 3) + tensors.varint(draw(st.integers(0, 300))))
    return b"".join(pieces)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(_wire_requests())
def test_any_request_means_what_protobufs_parse_means(data):
    expected = predict_pb2.PredictRequest.FromString(data)

    received = predict_wire.parse(data)

    assert whole(received) == expected
    for alias, content in received.contents.items():
        assert len(content) >= LARGE
        assert received.request.inputs[alias].tensor_content == b""
