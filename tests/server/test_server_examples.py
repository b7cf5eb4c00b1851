"""TF1-style SavedModels, Classify, Regress and MultiInference against one real server subprocess.

The model is half_plus_two_tf1 (tfs_bench.export.tf1_known_answer): placeholders, ParseExample-
based classify/regress signatures, a label table read from an asset. Every answer is checked
against the known answer and every error against TF Serving's text, over gRPC on TCP, gRPC on a
Unix socket and REST.
"""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from server_support import Stubs, log_tail, start_embedded, write_config
from tfs_bench.export import known_answer
from tfs_bench.export import tf1_known_answer as tf1
from tfs_bench.prometheus import parse_prometheus_text, sample_key

MODEL = tf1.MODEL_NAME
TF2_MODEL = known_answer.MODEL_NAME
SOCKET = "grpc.sock"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("examples_server")


@pytest.fixture(scope="module")
def server(tf1_model_dir, known_answer_dir, run_dir):
    config = write_config(run_dir / "models.config", f"""
model_config_list {{
  config {{ name: "{MODEL}" base_path: "{tf1_model_dir / MODEL}" model_platform: "tensorflow" }}
  config {{ name: "{TF2_MODEL}" base_path: "{known_answer_dir / TF2_MODEL}" model_platform: "tensorflow" }}
}}""")
    monitoring = write_config(run_dir / "monitoring.config", 'prometheus_config { enable: true path: "/metrics" }')
    server = start_embedded(
        [f"--model_config_file={config}", f"--monitoring_config_file={monitoring}",
         f"--grpc_socket_path={run_dir / SOCKET}"],
        run_dir, [MODEL, TF2_MODEL],
    )
    yield server
    assert server.stop() == 0, log_tail(server)


@pytest.fixture(scope="module")
def stubs(server):
    stubs = Stubs(server)
    yield stubs
    stubs.close()


def example(**features) -> tf.train.Example:
    feature = {}
    for name, value in features.items():
        values = value if isinstance(value, list) else [value]
        if isinstance(values[0], bytes):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def with_examples(request, *examples, context=None):
    if context is None:
        request.input.example_list.examples.extend(examples)
    else:
        request.input.example_list_with_context.context.CopyFrom(context)
        request.input.example_list_with_context.examples.extend(examples)
    return request


def classify_request(signature, *examples, model=MODEL, context=None):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    return with_examples(request, *examples, context=context)


def regress_request(signature, *examples, model=MODEL, context=None):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    return with_examples(request, *examples, context=context)


def classes(result):
    return [[(c.label, round(c.score, 6)) for c in entry.classes] for entry in result.classifications]


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# Predict on a TF1 graph.


def predict_request(x: np.ndarray, model=MODEL) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    return request


@pytest.mark.parametrize("x", [np.array([2.0], np.float32), np.array([[2.0], [4.0]], np.float32)],
                         ids=["shape_1_to_a_-1_1_input", "shape_2_1"])
def test_predict_feeds_a_tf1_graph_as_tf_serving_does(stubs, x):
    # [2.0] -> [3.0] is TF Serving's answer for half_plus_two: no shape check, a Session feed.
    response = stubs.prediction.Predict(predict_request(x), timeout=10)

    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), tf1.expected("serving_default", x))
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == (MODEL, 1, "serving_default")


def test_predict_over_the_unix_socket(server, run_dir):
    with grpc.insecure_channel(f"unix:{run_dir / SOCKET}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(predict_request(np.array([6.0], np.float32)), timeout=10)

    assert tf.make_ndarray(response.outputs["y"]).tolist() == [5.0]


def test_metadata_lists_every_tf1_signature_with_its_method(stubs):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL

    response = stubs.prediction.GetModelMetadata(request, timeout=10)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_defs)

    methods = {key: d.method_name.rsplit("/", 1)[-1] for key, d in signature_defs.signature_def.items()}
    assert methods == {
        "serving_default": "predict", "regress_x_to_y": "regress", "regress_x_to_y2": "regress",
        "regress_x2_to_y3": "regress", "classify_x_to_y": "classify",
        "classify_x_to_labels": "classify", "classify_labels_only": "classify",
    }
    assert signature_defs.signature_def["classify_x_to_labels"].inputs["inputs"].name == "tf_example:0"


# Classify, Regress, MultiInference over gRPC.


def test_classify_with_labels_from_the_asset_and_scores(stubs):
    response = stubs.prediction.Classify(
        classify_request("classify_x_to_labels", example(x=1.0), example(x=4.0)), timeout=10
    )

    assert classes(response.result) == [
        [("negative", 2.5), ("positive", 3.5)],
        [("negative", 4.0), ("positive", 5.0)],
    ]
    assert (response.model_spec.name, response.model_spec.signature_name,
            response.model_spec.version.value) == (MODEL, "classify_x_to_labels", 1)


def test_classify_scores_only_and_labels_only(stubs):
    scores = stubs.prediction.Classify(classify_request("classify_x_to_y", example(x=6.0)), timeout=10)
    labels = stubs.prediction.Classify(classify_request("classify_labels_only", example(x=6.0)), timeout=10)

    assert classes(scores.result) == [[("", 5.0)]]
    assert classes(labels.result) == [[("negative", 0.0), ("positive", 0.0)]]


def test_the_context_is_merged_into_each_example_and_the_example_wins(stubs):
    context = example(x=10.0, x2=8.0)

    response = stubs.prediction.Regress(
        regress_request("regress_x2_to_y3", example(x2=2.0), example(x=1.0), context=context),
        timeout=10,
    )

    assert [r.value for r in response.result.regressions] == [
        tf1.expected("regress_x2_to_y3", 10.0, 2.0), tf1.expected("regress_x2_to_y3", 1.0, 8.0),
    ]


@pytest.mark.parametrize("signature", ["regress_x_to_y", "regress_x_to_y2"])
def test_regress(stubs, signature):
    response = stubs.prediction.Regress(regress_request(signature, example(x=3.0), example(x=-1.0)), timeout=10)

    assert [r.value for r in response.result.regressions] == [
        tf1.expected(signature, 3.0), tf1.expected(signature, -1.0),
    ]
    assert response.model_spec.signature_name == signature


def test_an_empty_signature_name_means_serving_default(stubs):
    # serving_default is a predict signature with input "x": the structural check refuses it.
    error = rpc_error(lambda: stubs.prediction.Regress(regress_request("", example(x=1.0)), timeout=10))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("No regression inputs found in SignatureDef: ")
    assert 'method_name: "tensorflow/serving/predict"' in error.details()


def multi_request(*tasks, model=MODEL, examples=(example(x=2.0),)):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in tasks:
        task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name = model
        task.model_spec.signature_name = signature
    request.input.example_list.examples.extend(examples)
    return request


def test_multi_inference_answers_each_task_in_order(stubs):
    response = stubs.prediction.MultiInference(
        multi_request(("regress_x_to_y2", "regress"), ("classify_x_to_labels", "classify"),
                      ("regress_x_to_y", "regress"), examples=(example(x=2.0), example(x=0.0))),
        timeout=10,
    )

    first, second, third = response.results
    assert [r.value for r in first.regression_result.regressions] == [4.0, 3.0]
    assert classes(second.classification_result) == [
        [("negative", 3.0), ("positive", 4.0)], [("negative", 2.0), ("positive", 3.0)],
    ]
    assert [r.value for r in third.regression_result.regressions] == [3.0, 2.0]
    assert [(r.model_spec.name, r.model_spec.signature_name, r.model_spec.version.value)
            for r in response.results] == [
        (MODEL, "regress_x_to_y2", 1), (MODEL, "classify_x_to_labels", 1), (MODEL, "regress_x_to_y", 1),
    ]


def test_classify_over_the_unix_socket(run_dir):
    with grpc.insecure_channel(f"unix:{run_dir / SOCKET}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Classify(classify_request("classify_x_to_y", example(x=0.0)), timeout=10)

    assert classes(response.result) == [[("", 2.0)]]


def _other_model_task():
    request = multi_request(("regress_x_to_y", "regress"), ("regress_x_to_y2", "regress"))
    request.tasks[1].model_spec.name = TF2_MODEL
    return request


def _empty_name_task():
    request = multi_request(("regress_x_to_y", "regress"), ("regress_x_to_y2", "regress"))
    request.tasks[1].model_spec.name = ""
    return request


INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "method, build, code, message",
    [
        ("Classify", lambda: classification_pb2.ClassificationRequest(), INVALID, "Missing ModelSpec"),
        ("Classify", lambda: classify_request("classify_x_to_y", model="nope"), grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Latest(nope)"),
        ("Classify", lambda: classify_request("classify_x_to_y"), INVALID, "Input is empty."),
        ("Classify", lambda: classify_request("classify_x_to_y", context=example(x=1.0)), INVALID,
         "Input is empty."),
        ("Classify", lambda: classify_request("nope", example(x=1.0)), INVALID,
         "No signature was found with the name: nope"),
        ("Classify", lambda: classify_request("regress_x_to_y", example(x=1.0)), INVALID,
         'Expected classification signature outputs to contain at least one of "classes" or "scores". '
         "Signature was: "),
        ("Regress", lambda: regress_request("classify_x_to_labels", example(x=1.0)), INVALID,
         "Expected one output Tensor."),
        ("Regress", lambda: regress_request("regress_x_to_y", example(x=1.0), model=TF2_MODEL), INVALID,
         "No signature was found with the name: regress_x_to_y"),
        ("Regress", lambda: regress_request("regress_x_to_y", example(x=b"text")), INVALID,
         "Name: <unknown>, Key: x, Index: 0.  Data types don't match."),
        ("Regress", lambda: regress_request("regress_x_to_y", example(x=[1.0, 2.0])), INVALID,
         "Name: <unknown>, Key: x, Index: 0.  Number of float values != expected."),
        ("MultiInference", lambda: multi_request(("regress_x_to_y", "regress"), ("regress_x_to_y", "regress")),
         INVALID, "Duplicate evaluation of signature: regress_x_to_y"),
        ("MultiInference", _other_model_task, INVALID,
         "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
        ("MultiInference", _empty_name_task, INVALID, "Found ModelSpec with an empty model name."),
        ("MultiInference", lambda: multi_request(("serving_default", "predict")), grpc.StatusCode.UNIMPLEMENTED,
         "Unsupported signature method_name: tensorflow/serving/predict"),
        ("MultiInference", lambda: multi_request(("nope", "regress")), INVALID,
         "Requested signature not found in model graph: nope"),
        ("MultiInference", lambda: multi_request(("regress_x_to_y", "regress"), examples=()), INVALID,
         "Input is empty."),
        ("MultiInference", lambda: inference_pb2.MultiInferenceRequest(), grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Latest()"),
    ],
    ids=[
        "missing_model_spec", "unknown_model", "empty_input", "context_without_examples",
        "unknown_signature", "classify_a_regression", "regress_a_classification",
        "signature_of_another_model", "bytes_for_a_float_feature", "two_values_for_a_feature_of_one",
        "duplicate_signature", "two_models", "empty_model_name", "predict_task", "unknown_task_signature",
        "multi_empty_input", "no_tasks",
    ],
)
def test_examples_errors_match_tf_serving(stubs, method, build, code, message):
    error = rpc_error(lambda: getattr(stubs.prediction, method)(build(), timeout=10))

    assert error.code() == code
    assert error.details().startswith(message), error.details()


# REST :classify and :regress.


def http(server, path, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.rest_url}{path}", data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize(
    "verb, body, expected",
    [
        ("classify", {"signature_name": "classify_x_to_labels", "examples": [{"x": 1.0}, {"x": [4.0]}]},
         {"results": [[["negative", 2.5], ["positive", 3.5]], [["negative", 4.0], ["positive", 5.0]]]}),
        ("classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 6.0}]},
         {"results": [[["", 5.0]]]}),
        ("classify", {"signature_name": "classify_labels_only", "examples": [{"x": 6.0}]},
         {"results": [[["negative", 0.0], ["positive", 0.0]]]}),
        ("regress", {"signature_name": "regress_x2_to_y3", "context": {"x": 1.0, "x2": 8.0},
                     "examples": [{"x2": 2.0}, {}]},
         {"results": [4.0, 7.0]}),
        ("regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0, "note": "text",
                                                                        "blob": {"b64": "/w=="}, "n": [1, 2]}]},
         {"results": [3.0]}),
    ],
    ids=["classify", "scores_only", "labels_only", "regress_with_context", "other_feature_kinds"],
)
def test_rest_classify_and_regress(server, verb, body, expected):
    assert http(server, f"/v1/models/{MODEL}/versions/1:{verb}", body) == (200, expected)


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"instances": [2.0, 4.0]}, {"predictions": [3.0, 4.0]}),
        ({"instances": [{"x": [2.0]}, {"x": [6.0]}]}, {"predictions": [[3.0], [5.0]]}),
        ({"inputs": {"x": [[2.0]]}}, {"outputs": [[3.0]]}),
        ({"inputs": [2.0]}, {"outputs": [3.0]}),
    ],
    ids=["row_scalars", "row_named", "columnar_named", "columnar_shape_1"],
)
def test_rest_predict_on_the_tf1_graph(server, body, expected):
    assert http(server, f"/v1/models/{MODEL}:predict", body) == (200, expected)


def test_rest_metadata_of_the_tf1_model(server):
    with urllib.request.urlopen(f"{server.rest_url}/v1/models/{MODEL}/metadata", timeout=10) as response:
        metadata = json.loads(response.read())

    signature_defs = metadata["metadata"]["signature_def"]["signature_def"]
    assert signature_defs["regress_x_to_y"]["method_name"] == "tensorflow/serving/regress"
    assert signature_defs["classify_x_to_labels"]["outputs"]["classes"]["dtype"] == "DT_STRING"
    assert metadata["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}


def test_rest_an_integer_feature_is_int64_which_a_float_feature_refuses(server):
    status, body = http(server, f"/v1/models/{MODEL}:regress",
                        {"signature_name": "regress_x_to_y", "examples": [{"x": 2}]})

    assert status == 400
    assert body["error"].startswith("Name: <unknown>, Key: x, Index: 0.  Data types don't match.")


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"[1]", "JSON Value: [\n    1\n] Is not object"),
        ({"signature_name": 7, "examples": [{}]}, "'signature_name' key must be a string value."),
        ({"signature_name": "regress_x_to_y"}, "When method is classify, key 'examples' is expected and was not found"),
        ({"examples": {"x": 1}}, "Expecting 'examples' value to be an list/array"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({"examples": [3]}, "Example must be JSON object but got JSON Number"),
        ({"context": [], "examples": [{}]}, "Example must be JSON object but got JSON Array"),
        ({"examples": [{"x": [1, 2.5]}]}, "Unexpected element type in feature: x expecting type: int64"),
        ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
        ({"examples": [{"x": [[1.0]]}]}, "Feature: x has element with unexpected JSON type: Array"),
        ({"examples": [{"x": 2**64}]}, "Feature: x has uint64 element. Only int64 is supported."),
        ({"examples": [{"x": {"b64": "!!"}}]}, "Unable to base64 decode"),
        ({"examples": [{"x": 1e39}]}, "Cannot convert JSON value: 1e+39 to float without loss of precision."),
    ],
    ids=["empty", "not_object", "signature_not_string", "no_examples", "examples_not_list", "no_example",
         "example_not_object", "context_not_object", "mixed_kinds", "null", "nested", "uint64",
         "bad_b64", "float_overflow"],
)
def test_rest_example_errors_match_tf_serving(server, body, message):
    status, reply = http(server, f"/v1/models/{MODEL}:regress", body)

    assert status == 400
    assert message in reply["error"], reply


def test_rest_echoes_at_most_a_kibibyte_of_the_request(server):
    status, reply = http(server, f"/v1/models/{MODEL}:classify", {"padding": "z" * 100_000})

    assert status == 400
    assert reply["error"].endswith("When method is classify, key 'examples' is expected and was not found")
    assert len(reply["error"]) < 1200


def test_examples_requests_are_counted_with_their_api(server, stubs):
    stubs.prediction.Classify(classify_request("classify_x_to_y", example(x=1.0)), timeout=10)
    http(server, f"/v1/models/{MODEL}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]})
    with urllib.request.urlopen(f"{server.rest_url}/metrics", timeout=10) as response:
        samples = parse_prometheus_text(response.read().decode())

    latency = ":tensorflow:serving:request_latency_count"
    assert samples[sample_key(latency, {"model_name": MODEL, "API": "Classify", "entrypoint": "GRPC"})] >= 1
    assert samples[sample_key(latency, {"model_name": MODEL, "API": "Regress", "entrypoint": "REST"})] >= 1
    runtime = ":tensorflow:serving:runtime_latency_count"
    assert samples[sample_key(runtime, {"model_name": MODEL, "API": "Classify", "runtime": "TF1"})] >= 1
