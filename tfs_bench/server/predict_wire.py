"""A gRPC PredictRequest read without copying its large tensor_content bytes.

grpcio hands the server each request as one bytes object. Parsing it with protobuf copies every
tensor_content into the message, and each read of the field copies it again: for a batch of
eight 224 px float32 images that is 4.6 MiB twice, about 1.3 ms of CPU per request on the
development machine (`python -m bench.request_decode`, `docs/performance.md`).

`parse` walks the wire format of the request's top level, its inputs map and their TensorProtos.
Where an input holds one large tensor_content, that field is cut out of the bytes given to
protobuf and kept as a view into the received bytes; everything else (model spec, shapes, dtypes,
output filter, small or typed values) is parsed by protobuf as before. A request that is not
plainly laid out (a key or value field repeated within a map entry, an input key or a
tensor_content field repeated, a group, anything malformed) is parsed by protobuf whole, so its
meaning and its errors are protobuf's.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping

from tensorflow_serving.apis import predict_pb2

from tfs_bench.server import tensors

# The walk costs the same whatever the size, and protobuf's copies grow with it: below this the
# copies cost less (bench.request_decode), and the content stays in the message.
MIN_OUT_OF_BAND_BYTES = 256 * 1024

_LENGTH_DELIMITED = 2
_INPUTS = 2  # PredictRequest.inputs: map<string, TensorProto>, one entry {1: key, 2: value} each
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_TENSOR_CONTENT = 4  # TensorProto.tensor_content


_NONE_LEFT_OUT: Mapping[str, memoryview] = types.MappingProxyType({})


class ReceivedPredict(typing.NamedTuple):
    """A PredictRequest and the tensor_content of each input that was left out of it (by alias).

    A named tuple: every gRPC Predict makes one, and a small request should not pay for more.
    """

    request: predict_pb2.PredictRequest
    contents: Mapping[str, memoryview] = _NONE_LEFT_OUT


class _NotPlain(Exception):
    """The walk gives up; protobuf parses the whole request."""


def parse(data: bytes) -> ReceivedPredict:
    """The request in `data`; raises protobuf's DecodeError when it does not parse."""
    if len(data) < MIN_OUT_OF_BAND_BYTES:  # no content in it can be large: nothing to walk
        return ReceivedPredict(predict_pb2.PredictRequest.FromString(data))
    try:
        stripped, contents = _strip_contents(data)
    except _NotPlain:
        return ReceivedPredict(predict_pb2.PredictRequest.FromString(data))
    if not contents:
        return ReceivedPredict(predict_pb2.PredictRequest.FromString(data))
    return ReceivedPredict(predict_pb2.PredictRequest.FromString(stripped), contents)


def _strip_contents(data: bytes) -> tuple[bytes, dict[str, memoryview]]:
    view = memoryview(data)
    pieces: list[bytes | memoryview] = []
    contents: dict[str, memoryview] = {}
    keys: set[bytes] = set()
    kept = 0
    for field, wire, field_start, value_start, end in _fields(data, 0, len(data)):
        if field != _INPUTS or wire != _LENGTH_DELIMITED:
            continue
        key, rewritten, content = _entry(data, view, value_start, end)
        if key in keys:
            raise _NotPlain  # a repeated key: protobuf's map keeps the last one
        keys.add(key)
        if content is not None:
            pieces.append(view[kept:field_start])
            pieces.append(tensors.length_delimited(_INPUTS, rewritten))
            contents[_text(key)] = content
            kept = end
    pieces.append(view[kept:])
    return b"".join(pieces), contents


def _entry(data: bytes, view: memoryview, pos: int, end: int):
    """(key bytes, the entry re-encoded without its content, the content) of one inputs entry;
    the content is None when it stays in the message."""
    key = value = None
    for field, wire, _, value_start, value_end in _fields(data, pos, end):
        if field != _ENTRY_KEY and field != _ENTRY_VALUE:
            continue  # protobuf drops a map entry's unknown fields; so does the rewrite
        if wire != _LENGTH_DELIMITED or (key if field == _ENTRY_KEY else value) is not None:
            raise _NotPlain
        if field == _ENTRY_KEY:
            key = bytes(view[value_start:value_end])
        else:
            value = (value_start, value_end)
    if key is None or value is None:
        raise _NotPlain
    content = None
    for field, wire, field_start, value_start, value_end in _fields(data, *value):
        if field == _TENSOR_CONTENT:
            if content is not None or wire != _LENGTH_DELIMITED:
                raise _NotPlain  # protobuf keeps the last; not worth following
            content = (field_start, value_start, value_end)
    if content is None or content[2] - content[1] < MIN_OUT_OF_BAND_BYTES:
        return key, b"", None
    field_start, content_start, field_end = content
    tensor = b"".join((view[value[0]:field_start], view[field_end:value[1]]))
    rewritten = tensors.length_delimited(_ENTRY_KEY, key) + tensors.length_delimited(_ENTRY_VALUE, tensor)
    return key, rewritten, view[content_start:field_end]


def _text(key: bytes) -> str:
    try:
        return key.decode()
    except UnicodeDecodeError:
        raise _NotPlain from None  # protobuf refuses the request; let it say so


def _fields(data: bytes, pos: int, end: int) -> list[tuple[int, int, int, int, int]]:
    """(field, wire type, field start, value start, value end) of each field of the message in
    data[pos:end]; a length-delimited value starts after its length."""
    out = []
    while pos < end:
        field_start = pos
        tag, pos = _read_varint(data, pos, end)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise _NotPlain
        if wire == 0:
            value_start = pos
            pos = _read_varint(data, pos, end)[1]
        elif wire == _LENGTH_DELIMITED:
            length, value_start = _read_varint(data, pos, end)
            pos = value_start + length
        elif wire == 1 or wire == 5:
            value_start = pos
            pos += 8 if wire == 1 else 4
        else:
            raise _NotPlain  # groups (3, 4) and the unused wire types 6 and 7
        if pos > end:
            raise _NotPlain
        out.append((field, wire, field_start, value_start, pos))
    return out


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos < end and data[pos] < 0x80:  # most tags and lengths here: one byte
        return data[pos], pos + 1
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _NotPlain
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
