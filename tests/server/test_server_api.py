"""The server's gRPC and REST APIs against one real server subprocess serving the known-answer models."""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import psutil
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from server_support import Stubs, log_tail, start_embedded, write_config
from tfs_bench.export import known_answer
from tfs_bench.prometheus import parse_prometheus_text, sample_key

MODEL = known_answer.MODEL_NAME
X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
SOCKET = "grpc.sock"


@pytest.fixture(scope="module")
def api_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("api_server")


def labelled_model(base) -> str:
    """The config entry of MODEL: every version served, labels stable (1) and canary (2)."""
    return f"""  config {{
    name: "{MODEL}" base_path: "{base}" model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}"""


@pytest.fixture(scope="module")
def server(known_answer_dir, api_dir):
    tmp = api_dir
    base = known_answer_dir / MODEL
    config = write_config(tmp / "models.config", f"""
model_config_list {{
{labelled_model(base)}
  config {{ name: "latest" base_path: "{base}" model_platform: "tensorflow" }}
  config {{
    name: "latest_two" base_path: "{base}" model_platform: "tensorflow"
    model_version_policy {{ latest {{ num_versions: 2 }} }}
  }}
  config {{
    name: "specific_one" base_path: "{base}" model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 }} }}
  }}
}}""")
    monitoring = write_config(
        tmp / "monitoring.config", "prometheus_config { enable: true path: \"/metrics\" }"
    )
    flags = [
        f"--model_config_file={config}",
        f"--monitoring_config_file={monitoring}",
        f"--grpc_socket_path={tmp / SOCKET}",
        "--grpc_channel_arguments=grpc.max_concurrent_streams=100,grpc.primary_user_agent=tfs",
    ]
    server = start_embedded(flags, tmp, [MODEL])
    yield server
    assert server.stop() == 0, log_tail(server)


@pytest.fixture(scope="module")
def offloaded_server(known_answer_dir, tmp_path_factory):
    """The same models, every REST body parsed and every response encoded in a JSON worker process."""
    tmp = tmp_path_factory.mktemp("offloaded_server")
    base = known_answer_dir / MODEL
    config = write_config(tmp / "models.config", f"model_config_list {{\n{labelled_model(base)}\n}}")
    server = start_embedded([f"--model_config_file={config}", "--rest_json_offload_bytes=0", "--rest_json_workers=1"],
                            tmp, [MODEL])
    yield server
    assert server.stop() == 0, log_tail(server)


@pytest.fixture(params=["in_process", "offloaded"])
def rest_server(request):
    return request.getfixturevalue("server" if request.param == "in_process" else "offloaded_server")


@pytest.fixture(scope="module")
def stubs(server):
    stubs = Stubs(server)
    yield stubs
    stubs.close()


def make_request(model=MODEL, x=X, version=None, label=None, signature=None, output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    if signature is not None:
        request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    request.output_filter.extend(output_filter)
    return request


def typed_float_tensor(x: np.ndarray) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for size in x.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.float_val.extend(x.ravel().tolist())
    return tensor


def output(response, alias="y") -> np.ndarray:
    return tf.make_ndarray(response.outputs[alias])


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# Predict.


def test_predict_serves_the_latest_version_with_typed_outputs(stubs):
    response = stubs.prediction.Predict(make_request(), timeout=10)

    np.testing.assert_array_equal(output(response), known_answer.expected_output(X, version=2))
    tensor = response.outputs["y"]
    assert tensor.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in tensor.tensor_shape.dim] == [2, 3]
    assert not tensor.tensor_content and len(tensor.float_val) == 6
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"


@pytest.mark.parametrize(
    "spec, version",
    [({"version": 1}, 1), ({"version": 2}, 2), ({"label": "stable"}, 1), ({"label": "canary"}, 2)],
)
def test_predict_by_version_and_label(stubs, spec, version):
    response = stubs.prediction.Predict(make_request(**spec), timeout=10)

    np.testing.assert_array_equal(output(response), known_answer.expected_output(X, version=version))
    assert response.model_spec.version.value == version


def test_predict_other_signature_and_output_filter(stubs):
    request = make_request(signature="times_two", output_filter=["y"])

    response = stubs.prediction.Predict(request, timeout=10)

    np.testing.assert_array_equal(output(response), known_answer.expected_output(X, signature="times_two"))
    assert response.model_spec.signature_name == "times_two"


def test_predict_accepts_typed_float_val_inputs(stubs):
    request = make_request()
    request.inputs["x"].CopyFrom(typed_float_tensor(X))

    response = stubs.prediction.Predict(request, timeout=10)

    np.testing.assert_array_equal(output(response), known_answer.expected_output(X, version=2))


def test_messages_larger_than_grpcs_4_mib_default_pass_both_ways(stubs):
    x = np.arange(3 * 500_000, dtype=np.float32).reshape(-1, 3)  # 6 MB each way

    response = stubs.prediction.Predict(make_request(x=x, signature="times_two"), timeout=60)

    np.testing.assert_array_equal(output(response), 2 * x)


def test_predict_over_the_unix_socket(server, api_dir):
    with grpc.insecure_channel(f"unix:{api_dir / SOCKET}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(make_request(version=1), timeout=10)

    np.testing.assert_array_equal(output(response), known_answer.expected_output(X, version=1))


def _no_model_spec():
    request = make_request()
    request.ClearField("model_spec")
    return request


def _extra_input():
    request = make_request()
    request.inputs["z"].CopyFrom(tf.make_tensor_proto(X))
    return request


def _no_input():
    request = make_request()
    del request.inputs["x"]
    return request


def _renamed_input():
    request = _no_input()
    request.inputs["z"].CopyFrom(tf.make_tensor_proto(X))
    return request


def _truncated_content():
    request = make_request()
    request.inputs["x"].tensor_content = request.inputs["x"].tensor_content[:-4]
    return request


def _truncated_large_content():
    # Large enough that the server keeps the content outside the parsed message (predict_wire).
    request = make_request(x=np.ones((30_000, 3), dtype=np.float32))
    request.inputs["x"].tensor_content = request.inputs["x"].tensor_content[:-4]
    return request


def _unknown_rank():
    request = make_request()
    request.inputs["x"].tensor_shape.unknown_rank = True
    return request


@pytest.mark.parametrize(
    "build, code, message",
    [
        (_no_model_spec, grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
        (lambda: make_request(model="nope"), grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Latest(nope)"),
        (lambda: make_request(version=7), grpc.StatusCode.NOT_FOUND,
         f"Servable not found for request: Specific({MODEL}, 7)"),
        (lambda: make_request(model="specific_one", version=2), grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Specific(specific_one, 2)"),
        (lambda: make_request(label="beta"), grpc.StatusCode.INVALID_ARGUMENT,
         "Unrecognized servable version label: beta"),
        (lambda: make_request(signature="nope"), grpc.StatusCode.FAILED_PRECONDITION,
         'Serving signature key "nope" not found.'),
        (_extra_input, grpc.StatusCode.INVALID_ARGUMENT,
         "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. "
         "Missing but required: {}."),
        (_no_input, grpc.StatusCode.INVALID_ARGUMENT,
         "input size does not match signature: 0!=1 len({}) != len({x}). Sent extra: {}. "
         "Missing but required: {x}."),
        (_renamed_input, grpc.StatusCode.INVALID_ARGUMENT,
         "input tensor alias not found in signature: z. Inputs expected to be in the set {x}."),
        (lambda: make_request(output_filter=["nope"]), grpc.StatusCode.INVALID_ARGUMENT,
         "output tensor alias not found in signature: nope Outputs expected to be in the set {y}."),
        (lambda: make_request(output_filter=["y", "y"]), grpc.StatusCode.INVALID_ARGUMENT,
         "duplicate output tensor alias: y"),
        (lambda: make_request(x=X.astype(np.int32)), grpc.StatusCode.INVALID_ARGUMENT,
         "Expects arg[0] to be float but int32 is provided"),
        (lambda: make_request(x=X.astype(np.float64)), grpc.StatusCode.INVALID_ARGUMENT,
         "Expects arg[0] to be float but double is provided"),
        (_truncated_content, grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: x"),
        (_truncated_large_content, grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: x"),
        (_unknown_rank, grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: x"),
    ],
    ids=[
        "missing_model_spec", "unknown_model", "unknown_version", "version_not_in_policy",
        "unknown_label", "unknown_signature", "extra_input", "missing_input", "renamed_input",
        "unknown_output", "duplicate_output", "int32_for_float", "double_for_float",
        "truncated_tensor_content", "truncated_large_tensor_content", "unknown_rank",
    ],
)
def test_predict_errors_match_tf_serving(stubs, build, code, message):
    error = rpc_error(lambda: stubs.prediction.Predict(build(), timeout=10))

    assert error.code() == code
    assert error.details().startswith(message), error.details()


def test_a_shape_other_than_the_signatures_is_fed_as_tf_serving_feeds_it(stubs):
    # TF Serving checks no shape against the TensorInfo ([-1, 3] here); only the graph's ops can
    # refuse one, and this graph is elementwise.
    x = np.arange(8, dtype=np.float32).reshape(2, 4)

    response = stubs.prediction.Predict(make_request(x=x), timeout=10)

    np.testing.assert_array_equal(output(response), known_answer.expected_output(x, version=2))


@pytest.mark.parametrize(
    "model, versions",
    [(MODEL, [2, 1]), ("latest", [2]), ("latest_two", [2, 1]), ("specific_one", [1])],
)
def test_version_policies_choose_the_served_versions(stubs, model, versions):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model

    response = stubs.models.GetModelStatus(request, timeout=10)

    assert [s.version for s in response.model_version_status] == versions
    assert all(s.state == AVAILABLE for s in response.model_version_status)
    assert all(s.status.error_code == 0 and not s.status.error_message
               for s in response.model_version_status)


def test_model_status_of_one_version_and_of_a_label(stubs):
    by_version = get_model_status_pb2.GetModelStatusRequest()
    by_version.model_spec.name = MODEL
    by_version.model_spec.version.value = 1
    by_label = get_model_status_pb2.GetModelStatusRequest()
    by_label.model_spec.name = MODEL
    by_label.model_spec.version_label = "canary"

    assert [s.version for s in stubs.models.GetModelStatus(by_version).model_version_status] == [1]
    assert [s.version for s in stubs.models.GetModelStatus(by_label).model_version_status] == [2]


@pytest.mark.parametrize(
    "name, version, code, message",
    [
        ("nope", None, grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope"),
        (MODEL, 9, grpc.StatusCode.NOT_FOUND, f"Could not find version 9 of model {MODEL}"),
        (None, None, grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    ],
)
def test_model_status_errors(stubs, name, version, code, message):
    request = get_model_status_pb2.GetModelStatusRequest()
    if name is not None:
        request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version

    error = rpc_error(lambda: stubs.models.GetModelStatus(request, timeout=10))

    assert (error.code(), error.details()) == (code, message)


def test_model_metadata_holds_the_savedmodels_signature_defs(stubs):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    request.model_spec.version.value = 1

    response = stubs.prediction.GetModelMetadata(request, timeout=10)

    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_defs)
    assert {"serving_default", "times_two"} <= set(signature_defs.signature_def)
    serving = signature_defs.signature_def["serving_default"]
    assert serving.inputs["x"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in serving.inputs["x"].tensor_shape.dim] == [-1, 3]
    assert set(serving.outputs) == {"y"}
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 1)


@pytest.mark.parametrize(
    "fields, name, code, message",
    [
        ([], MODEL, grpc.StatusCode.INVALID_ARGUMENT,
         "GetModelMetadataRequest must specify at least one metadata_field"),
        (["signature_def", "other"], MODEL, grpc.StatusCode.INVALID_ARGUMENT,
         "Metadata field other is not supported"),
        (["signature_def"], "nope", grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Latest(nope)"),
        (["signature_def"], None, grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    ],
)
def test_model_metadata_errors(stubs, fields, name, code, message):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    if name is not None:
        request.model_spec.name = name

    error = rpc_error(lambda: stubs.prediction.GetModelMetadata(request, timeout=10))

    assert (error.code(), error.details()) == (code, message)


# REST.


def http(server, method, path, body=None):
    """(HTTP status, parsed JSON or text) of one request to the server's REST port."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(
        f"{server.rest_url}{path}", data=data, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, content_type, text = response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        status, content_type, text = e.code, e.headers["Content-Type"], e.read()
    return status, json.loads(text) if content_type == "application/json" else text.decode()


def _status_json(*versions):
    return {
        "model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in versions
        ]
    }


@pytest.mark.parametrize(
    "path, versions",
    [
        (f"/v1/models/{MODEL}", (2, 1)),
        (f"/v1/models/{MODEL}/versions/1", (1,)),
        (f"/v1/models/{MODEL}/labels/canary", (2,)),
        ("/v1/models/latest", (2,)),
    ],
)
def test_rest_model_status(server, path, versions):
    assert http(server, "GET", path) == (200, _status_json(*versions))


def test_rest_model_metadata(server):
    status, body = http(server, "GET", f"/v1/models/{MODEL}/labels/stable/metadata")

    assert status == 200
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    serving = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert serving["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert serving["method_name"] == "tensorflow/serving/predict"


@pytest.mark.parametrize(
    "path, body, expected",
    [
        (f"/v1/models/{MODEL}:predict", {"instances": X.tolist()},
         {"predictions": known_answer.expected_output(X, version=2).tolist()}),
        (f"/v1/models/{MODEL}:predict", {"instances": [{"x": row} for row in X.tolist()]},
         {"predictions": known_answer.expected_output(X, version=2).tolist()}),
        (f"/v1/models/{MODEL}/versions/1:predict", {"inputs": X.tolist()},
         {"outputs": known_answer.expected_output(X, version=1).tolist()}),
        (f"/v1/models/{MODEL}/labels/stable:predict", {"inputs": {"x": X.tolist()}},
         {"outputs": known_answer.expected_output(X, version=1).tolist()}),
        (f"/v1/models/{MODEL}:predict", {"signature_name": "times_two", "instances": X.tolist()},
         {"predictions": known_answer.expected_output(X, signature="times_two").tolist()}),
    ],
    ids=["row", "row_named", "columnar_version", "columnar_named_label", "signature"],
)
def test_rest_predict(rest_server, path, body, expected):
    assert http(rest_server, "POST", path, body) == (200, expected)


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        ("POST", "/v1/models/nope:predict", {"instances": [[1, 2, 3]]}, 404,
         "Servable not found for request: Latest(nope)"),
        ("POST", f"/v1/models/{MODEL}/versions/7:predict", {"instances": [[1, 2, 3]]}, 404,
         f"Servable not found for request: Specific({MODEL}, 7)"),
        ("POST", f"/v1/models/{MODEL}/labels/beta:predict", {"instances": [[1, 2, 3]]}, 400,
         "Unrecognized servable version label: beta"),
        ("POST", f"/v1/models/{MODEL}:predict", b"{not json", 400, "JSON Parse error"),
        ("POST", f"/v1/models/{MODEL}:predict", {"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}, 400,
         "Not both 'inputs' and 'instances' can be set"),
        ("POST", f"/v1/models/{MODEL}:predict", {"signature_name": "nope", "instances": [[1, 2, 3]]},
         400, 'Serving signature name: "nope" not found in signature def'),
        ("POST", f"/v1/models/{MODEL}:predict", {"inputs": {"z": [[1, 2, 3]]}}, 400,
         "input tensor alias not found in signature: z"),
        ("POST", f"/v1/models/{MODEL}:classify", {"examples": [{"x": 1.0}]}, 400,
         "No classification inputs found in SignatureDef: "),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("GET", "/v1/nothing/here", None, 400, "Malformed request: GET /v1/nothing/here"),
    ],
    ids=[
        "unknown_model", "unknown_version", "unknown_label", "bad_json", "both_formats",
        "unknown_signature", "unknown_input", "classify_on_a_predict_signature", "status_unknown_model",
        "status_no_name", "malformed",
    ],
)
def test_rest_errors(rest_server, method, path, body, status, message):
    got_status, got_body = http(rest_server, method, path, body)

    assert got_status == status
    assert got_body["error"].startswith(message), got_body


def json_workers(server) -> list[psutil.Process]:
    return [c for c in psutil.Process(server.pid).children() if "tfs_bench.server.json_worker" in c.cmdline()]


def test_large_bodies_go_to_a_json_worker_and_small_ones_stay_in_the_server(server, offloaded_server):
    body = {"instances": X.tolist()}
    assert http(offloaded_server, "POST", f"/v1/models/{MODEL}:predict", body)[0] == 200
    assert len(json_workers(offloaded_server)) == 1  # --rest_json_workers=1, started on first use
    assert http(server, "POST", f"/v1/models/{MODEL}:predict", body)[0] == 200
    assert json_workers(server) == []  # a body under --rest_json_offload_bytes (1 MiB) is parsed in place


def test_rest_outside_v1_is_not_found(server):
    status, body = http(server, "GET", "/healthz")

    assert status == 404 and "error" in body


def test_prometheus_metrics_on_the_rest_port(server, stubs):
    stubs.prediction.Predict(make_request(model="latest"), timeout=10)
    http(server, "POST", "/v1/models/latest:predict", {"instances": X.tolist()})
    http(server, "POST", "/v1/models/latest/versions/9:predict", {"instances": X.tolist()})

    status, text = http(server, "GET", "/metrics")

    assert status == 200
    samples = parse_prometheus_text(text)
    count = ":tensorflow:serving:request_count"
    assert samples[sample_key(count, {"model_name": "latest", "status": "OK"})] >= 2
    assert samples[sample_key(count, {"model_name": "latest", "status": "NOT_FOUND"})] >= 1
    for entrypoint in ("GRPC", "REST"):
        labels = {"model_name": "latest", "API": "Predict", "entrypoint": entrypoint}
        assert samples[sample_key(":tensorflow:serving:request_latency_count", labels)] >= 1
    runtime = {"model_name": "latest", "API": "Predict", "runtime": "TF1"}
    assert samples[sample_key(":tensorflow:serving:runtime_latency_count", runtime)] >= 2
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    assert any(key[0] == ":tensorflow:cc:saved_model:load_latency" for key in samples)
