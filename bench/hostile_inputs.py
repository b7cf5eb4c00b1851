"""Hypothesis strategies for hostile requests to a TF Serving front end (gRPC Predict and REST).

Shared by the property tests (tests/server/test_server_hostile.py, a small sample) and
bench/hostile_input.py (10,000 gRPC and 2,500 REST inputs). Each strategy mixes well-formed
requests with the faults an attacker or a broken client sends: wrong or unknown dtypes, value
counts that disagree with the shape, huge, negative or too many dimensions, oversized strings and
names, missing fields, unknown models, versions, labels and signatures; for REST, malformed and
deeply nested JSON, huge numbers, and paths with traversal, encodings and odd verbs.
"""

from __future__ import annotations

import json

import grpc
from hypothesis import strategies as st
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2

# What TF Serving may answer a client's mistake with. UNKNOWN (an uncaught exception in grpcio)
# and INTERNAL (a defect) are never among them.
CLIENT_ERROR_CODES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
})
# HTTP statuses of those codes, and of the REST front end's own refusals (411, 413, 414, 431).
REST_CLIENT_STATUSES = frozenset({200, 400, 404, 405, 411, 413, 414, 431, 501})

_DTYPES = sorted(value for name, value in types_pb2.DataType.items() if not name.endswith("_REF"))
_INT64_MAX = 2**63 - 1


def _sizes():
    return st.one_of(
        st.integers(0, 4),
        st.integers(-3, -1),
        st.sampled_from([2**26, 2**31, 2**40, 2**62, _INT64_MAX]),
    )


def _shapes():
    return st.one_of(
        st.lists(_sizes(), max_size=4),
        st.lists(st.integers(0, 2), min_size=60, max_size=80),  # numpy stops at 64 dimensions
    )


def _text(max_size: int = 16):
    return st.one_of(st.text(max_size=max_size), st.sampled_from(["x", "y", "serving_default", "m" * 20_000]))


def _mostly(draw, valid, hostile, share_valid: int = 3):
    """`valid` share_valid times in share_valid + 1, so most requests reach the deeper checks."""
    return draw(st.one_of(valid, hostile) if draw(st.integers(0, share_valid)) == 0 else valid)


@st.composite
def tensors(draw, tensor):
    """Fills the TensorProto `tensor` with a hostile mix of dtype, shape and values."""
    tensor.dtype = _mostly(draw, st.just(types_pb2.DT_FLOAT),
                           st.one_of(st.sampled_from(_DTYPES), st.integers(0, 400)), share_valid=1)
    if draw(st.integers(0, 9)) == 0:
        tensor.tensor_shape.unknown_rank = True
    for size in draw(_shapes()):
        tensor.tensor_shape.dim.add(size=size)
    kind = draw(st.sampled_from(["float", "float", "int", "int64", "string", "bool", "half", "content", "none"]))
    if kind == "float":
        tensor.float_val.extend(draw(st.lists(st.floats(width=32), max_size=12)))
    elif kind == "int":
        tensor.int_val.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=12)))
    elif kind == "int64":
        tensor.int64_val.extend(draw(st.lists(st.integers(-(2**63), _INT64_MAX), max_size=12)))
    elif kind == "string":
        tensor.string_val.extend(draw(st.lists(st.binary(max_size=64), max_size=12)))
        if draw(st.integers(0, 3)) == 0:
            tensor.string_val.append(b"s" * 200_000)
    elif kind == "bool":
        tensor.bool_val.extend(draw(st.lists(st.booleans(), max_size=12)))
    elif kind == "half":
        tensor.half_val.extend(draw(st.lists(st.integers(0, 2**31 - 1), max_size=12)))
    elif kind == "content":
        tensor.tensor_content = draw(st.binary(max_size=256))


@st.composite
def predict_requests(draw, model_name: str, input_alias: str = "x", output_alias: str = "y"):
    """PredictRequests aimed at `model_name`, most of them wrong in one or more ways.

    Most requests address the model correctly, so that their tensors reach decoding and the
    Session; a quarter of each envelope field (name, version, signature, aliases) is hostile.
    """
    request = predict_pb2.PredictRequest()
    if draw(st.integers(0, 19)):  # now and then no model_spec at all
        spec = request.model_spec
        spec.name = _mostly(draw, st.just(model_name), _text())
        choice = _mostly(draw, st.just("latest"), st.sampled_from(["version", "label"]))
        if choice == "version":
            spec.version.value = draw(st.one_of(st.just(1), st.integers(-(2**63), _INT64_MAX)))
        elif choice == "label":
            spec.version_label = draw(_text())
        spec.signature_name = _mostly(draw, st.sampled_from(["", "serving_default"]), _text())
    aliases = _mostly(draw, st.just([input_alias]), st.lists(st.one_of(st.just(input_alias), _text()), max_size=3))
    for alias in aliases:
        draw(tensors(request.inputs[alias]))
    if draw(st.integers(0, 3)) == 0:
        request.output_filter.extend(draw(st.lists(st.one_of(st.just(output_alias), _text()), max_size=2)))
    return request


def _json_values():
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8), st.fixed_dictionaries({"b64": st.text(max_size=8)}),
    )
    return st.recursive(leaves, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ), max_leaves=24)


@st.composite
def rest_bodies(draw) -> bytes:
    """Request bodies: predict-shaped JSON, arbitrary JSON, and raw text that is barely JSON."""
    kind = draw(st.sampled_from(["instances", "inputs", "examples", "any", "nested", "number", "raw"]))
    if kind == "instances":
        document = {"instances": draw(_json_values())}
    elif kind == "inputs":
        document = {"inputs": draw(_json_values()), "signature_name": draw(_json_values())}
    elif kind == "examples":
        document = {"examples": draw(_json_values()), "context": draw(_json_values())}
    elif kind == "any":
        document = draw(_json_values())
    elif kind == "nested":
        depth = draw(st.sampled_from([10, 100, 1_000, 20_000]))
        return b'{"instances": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
    elif kind == "number":
        number = draw(st.sampled_from(["1e400", "-1e400", "9" * 5000, "1" * 40, "NaN", "Infinity", "0x10"]))
        return f'{{"instances": [[{number}]]}}'.encode()
    else:
        return draw(st.binary(max_size=128))
    return json.dumps(document).encode()


@st.composite
def rest_paths(draw, model_name: str) -> tuple[str, str]:
    """(method, path): the API's routes, with unknown names, traversal, escapes and odd verbs."""
    name = draw(st.one_of(
        st.just(model_name),
        st.sampled_from(["..", "../../etc/passwd", "%2e%2e%2f%2e%2e", "%00", "%ff", "m" * 2_000, ""]),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="/?#:"),
                max_size=10),
    ))
    version = draw(st.sampled_from(["", "/versions/1", "/versions/99999999999999999999999",
                                    "/versions/-1", "/labels/stable", "/labels/%2e%2e"]))
    verb = draw(st.sampled_from([":predict", ":classify", ":regress", ":explode", "", "/metadata"]))
    method = draw(st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE"]))
    return method, f"/v1/models/{name}{version}{verb}"
