"""Predict in-process: the loaded SavedModel, deadlines, batching, warm-up and the REST JSON formats."""

import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from tfs_bench.export import known_answer
from tfs_bench.server import json_tensors, predict, servables, warmup
from tfs_bench.server.batching import BatchingOptions, BatchScheduler
from tfs_bench.server.metrics import ServerMetrics
from tfs_bench.server.status import ServingError

X = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
WAIT_S = 10.0


@pytest.fixture(scope="module")
def version_two(known_answer_dir):
    return servables.load("half_plus_two", 2, str(known_answer_dir / "half_plus_two" / "2"))


class OneModel:
    def __init__(self, servable):
        self.servable = servable

    def find(self, name, version=None, label=None):
        return self.servable


def arrays(**inputs):
    return lambda signature: inputs


def test_loaded_version_precomputes_its_signatures(version_two):
    signature = version_two.signatures["serving_default"]

    assert set(version_two.signatures) == {"serving_default", "times_two"}
    assert signature.inputs["x"].dtype_name == "float"
    assert signature.output_aliases == ("y",)
    np.testing.assert_array_equal(signature.run({"x": X}, ("y",))["y"], known_answer.expected_output(X, 2))


def test_a_passed_deadline_fails_before_running(version_two):
    predictor = predict.Predictor(OneModel(version_two))
    call = predict.PredictCall(predict.ModelTarget("half_plus_two"), deadline_s=time.monotonic() - 1)

    with pytest.raises(ServingError) as info:
        predictor.predict(call, arrays(x=X))

    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_concurrent_requests_merge_into_one_tensorflow_call(version_two):
    metrics = ServerMetrics()
    options = BatchingOptions(max_batch_size=4, batch_timeout_micros=10_000_000, num_batch_threads=1)
    with BatchScheduler(options, metrics) as scheduler:
        predictor = predict.Predictor(OneModel(version_two), scheduler, metrics)
        call = predict.PredictCall(predict.ModelTarget("half_plus_two"))
        inputs = [np.full((1, 3), i, np.float32) for i in range(4)]
        results = [None] * 4

        def send(i):
            results[i] = predictor.predict(call, arrays(x=inputs[i])).outputs["y"]

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S)

    for x, y in zip(inputs, results):
        np.testing.assert_array_equal(y, known_answer.expected_output(x, 2))
    assert 'processed_batch_size_count{} 1' in metrics.render()  # one batch, one TF call


def _write_warmup(model_dir, requests):
    extra = model_dir / "assets.extra"
    extra.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(request)
            writer.write(log.SerializeToString())


def _request(x, signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "anything"  # warm-up records run against the version being loaded
    request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    return request


def test_warmup_replays_the_records(known_answer_dir, tmp_path):
    model_dir = shutil.copytree(known_answer_dir / "half_plus_two" / "1", tmp_path / "1")
    _write_warmup(model_dir, [_request(X), _request(X, "times_two")])

    assert warmup.replay(servables.load("m", 1, str(model_dir))) == 2


def test_a_failing_warmup_record_fails_the_load(known_answer_dir, tmp_path):
    model_dir = shutil.copytree(known_answer_dir / "half_plus_two" / "1", tmp_path / "1")
    _write_warmup(model_dir, [_request(X.astype(np.int32))])

    with pytest.raises(ServingError, match=r"Expects arg\[0\] to be float but int32 is provided"):
        warmup.replay(servables.load("m", 1, str(model_dir)))


def test_no_warmup_file_means_no_warmup(version_two):
    assert warmup.replay(version_two) == 0


def _two_io_signature():
    signature_def = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for alias, dtype in (("a", tf.float32), ("b", tf.string)):
        signature_def.inputs[alias].dtype = dtype.as_datatype_enum
        signature_def.outputs[f"{alias}_out"].dtype = dtype.as_datatype_enum
    return servables.Signature("two", signature_def)


def test_json_row_format_with_several_inputs_and_outputs():
    signature = _two_io_signature()
    body = json_tensors.parse_predict_body(
        b'{"instances": [{"a": [1, 2], "b": "x"}, {"a": [3, 4], "b": {"b64": "/w=="}}]}'
    )

    inputs = json_tensors.decoder(body)(signature)
    encoded = json_tensors.encode_outputs({"a_out": inputs["a"], "b_out": inputs["b"]}, body.format)

    assert inputs["a"].dtype == np.float32 and inputs["a"].shape == (2, 2)
    assert list(inputs["b"]) == [b"x", b"\xff"]
    assert encoded == {"predictions": [
        {"a_out": [1.0, 2.0], "b_out": "x"},
        {"a_out": [3.0, 4.0], "b_out": {"b64": "/w=="}},
    ]}


def test_json_columnar_format_with_several_inputs_and_outputs():
    signature = _two_io_signature()
    body = json_tensors.parse_predict_body(b'{"inputs": {"a": [[1, 2]], "b": ["x"]}}')

    inputs = json_tensors.decoder(body)(signature)
    encoded = json_tensors.encode_outputs({"a_out": inputs["a"], "b_out": inputs["b"]}, body.format)

    assert encoded == {"outputs": {"a_out": [[1.0, 2.0]], "b_out": ["x"]}}


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'{"instances": [[1, 2], 3]}', "inputs must be given by name"),
        (b'{"instances": [{"a": [1]}, {"b": "x"}]}', "same keys"),
        (b'{"inputs": {"a": [[1], [2, 3]], "b": ["x"]}}', "Failed to process element: a"),
        (b'{"inputs": {"a": [[1]], "b": [1]}}', "Failed to process element: b"),
        (b'{"instances": []}', "non-empty list"),
        (b'[1, 2]', "must be a JSON object"),
        (b'{}', "Missing 'inputs' or 'instances' key"),
    ],
)
def test_json_errors_are_invalid_argument(raw, message):
    with pytest.raises(ServingError) as info:
        json_tensors.decoder(json_tensors.parse_predict_body(raw))(_two_io_signature())

    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.message
