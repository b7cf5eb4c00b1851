"""JSON bodies of the REST classify and regress APIs: `tf.Example`s written as JSON objects.

    {"signature_name": "...", "context": {feature: value}, "examples": [{feature: value}, ...]}

A feature's value is a scalar or a flat list of one kind, mapped as TF Serving maps it
(json_tensor.cc): strings and {"b64": "..."} to bytes_list, numbers written with a fraction or an
exponent (and NaN, Infinity) to float_list, other numbers and booleans to int64_list. Responses:
classify `{"results": [[[label, score], ...], ...]}` (a missing label is "", a missing score 0.0),
regress `{"results": [value, ...]}`. Error messages are TF Serving's, except that the request
echoed into them ("JSON Value: ...") is cut to `MAX_ECHO_CHARS`: a client's megabytes need not come
back to it in an error.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math

from tensorflow.core.example import example_pb2
from tensorflow.core.example import feature_pb2
from tensorflow_serving.apis import input_pb2

from tfs_bench.server import json_body
from tfs_bench.server import status

MAX_ECHO_CHARS = 1024
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_FLOAT32_MAX = 3.4028234663852886e38

INT64, FLOAT, BYTES = "int64", "float", "bytes"


@dataclasses.dataclass(frozen=True)
class ExamplesBody:
    signature_name: str
    input: input_pb2.Input


def _echo(document) -> str:
    text = json.dumps(document, indent=4)
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + " ..."


def _json_type(value) -> str:
    # rapidjson's type names, which TF Serving's messages use.
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def parse_examples_body(raw: bytes) -> ExamplesBody:
    """The body of a :classify or :regress request; raises ServingError (INVALID_ARGUMENT)."""
    if not raw.strip():
        raise status.invalid_argument("JSON Parse error: The document is empty")
    document = json_body.parse(raw)
    if not isinstance(document, dict):
        raise status.invalid_argument(f"JSON Value: {_echo(document)} Is not object")
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise status.invalid_argument(
            f"JSON Value: {_echo(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    if "examples" not in document:
        # TF Serving says "classify" for :regress too.
        raise status.invalid_argument(
            f"JSON Value: {_echo(document)} When method is classify, key 'examples' is expected "
            "and was not found"
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise status.invalid_argument(
            f"JSON Value: {_echo(document)} Expecting 'examples' value to be an list/array"
        )
    if not examples:
        raise status.invalid_argument(f"JSON Value: {_echo(document)} 'examples' value is an empty array")
    request_input = input_pb2.Input()
    if "context" in document:
        target = request_input.example_list_with_context
        _fill_example(document["context"], target.context)
        example_list = target.examples
    else:
        example_list = request_input.example_list.examples
    for value in examples:
        _fill_example(value, example_list.add())
    return ExamplesBody(signature_name, request_input)


def _fill_example(value, example: example_pb2.Example) -> None:
    if not isinstance(value, dict):
        raise status.invalid_argument(f"Example must be JSON object but got JSON {_json_type(value)}")
    for name, feature_value in value.items():
        _fill_feature(name, feature_value, example.features.feature[name])


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _kind(name: str, value) -> str:
    if isinstance(value, str) or _is_b64(value):
        return BYTES
    if isinstance(value, bool):
        return INT64
    if isinstance(value, int):
        if value > _INT64_MAX:
            raise status.invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        return INT64 if value >= _INT64_MIN else FLOAT  # rapidjson reads a smaller one as a double
    if isinstance(value, float):
        return FLOAT
    raise status.invalid_argument(
        f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
    )


def _fill_feature(name: str, value, feature: feature_pb2.Feature) -> None:
    values = value if isinstance(value, list) else [value]
    if not values:
        feature.SetInParent()  # a Feature with no kind, as TF Serving writes []
        return
    kind = _kind(name, values[0])
    for item in values[1:]:
        if _kind(name, item) != kind:
            raise status.invalid_argument(
                f"Unexpected element type in feature: {name} expecting type: {kind}"
            )
    if kind == BYTES:
        feature.bytes_list.value.extend(_bytes(item) for item in values)
    elif kind == INT64:
        feature.int64_list.value.extend(int(item) for item in values)
    else:
        floats = [float(item) for item in values]
        for item in floats:
            if math.isfinite(item) and abs(item) > _FLOAT32_MAX:
                raise status.invalid_argument(
                    f"Cannot convert JSON value: {item!r} to float without loss of precision."
                )
        feature.float_list.value.extend(floats)


def _bytes(value) -> bytes:
    if isinstance(value, str):
        return value.encode()
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise status.invalid_argument("Unable to base64 decode") from None


def classification_json(result) -> dict:
    """A ClassificationResult as TF Serving's REST API writes it (never empty: see Input)."""
    return {"results": [
        [[entry.label, entry.score] for entry in classifications.classes]
        for classifications in result.classifications
    ]}


def regression_json(result) -> dict:
    """A RegressionResult as TF Serving's REST API writes it (never empty: see Input)."""
    return {"results": [regression.value for regression in result.regressions]}
