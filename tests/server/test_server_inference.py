"""Classify/Regress in-process: signature checks, output checks, batching, warm-up, and loading."""

import dataclasses
import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, prediction_log_pb2, regression_pb2

from tfs_bench.export import tf1_known_answer as tf1
from tfs_bench.server import inference, options, predict, servables, warmup
from tfs_bench.server.batching import BatchingOptions, BatchScheduler
from tfs_bench.server.status import ServingError

MODEL = tf1.MODEL_NAME


@pytest.fixture(scope="module")
def tf1_version(tf1_model_dir):
    return servables.load(MODEL, 1, str(tf1_model_dir / MODEL / "1"))


class OneModel:
    def __init__(self, servable):
        self.servable = servable

    def find(self, name, version=None, label=None):
        return self.servable


def example(x: float) -> tf.train.Example:
    return tf.train.Example(features=tf.train.Features(
        feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
    ))


def regress_request(signature: str, *xs: float) -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(example(x) for x in xs)
    return request


def classify_request(signature: str, *xs: float) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    request.input.example_list.examples.extend(example(x) for x in xs)
    return request


def serving_error(call) -> ServingError:
    with pytest.raises(ServingError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def with_predict_method(tf1_version):
    """tf1_version plus "as_predict": classify_x_to_y's tensors under method_name predict."""
    definition = type(tf1_version.signatures["classify_x_to_y"].definition)()
    definition.CopyFrom(tf1_version.signatures["classify_x_to_y"].definition)
    definition.method_name = "tensorflow/serving/predict"
    signatures = {**tf1_version.signatures,
                  "as_predict": servables.Signature("as_predict", definition, tf1_version.runner)}
    return dataclasses.replace(tf1_version, signatures=signatures)


def test_method_name_check_is_off_by_default_as_in_tf_serving(with_predict_method):
    # TF Serving's --enable_signature_method_name_check defaults to false: a signature of the
    # right structure classifies whatever its method_name says.
    service = inference.Inference(predict.Predictor(OneModel(with_predict_method)))

    response = service.classify(classify_request("as_predict", 4.0))

    assert [c.score for c in response.result.classifications[0].classes] == [4.0]


def test_with_the_method_name_check_a_predict_signature_cannot_classify(with_predict_method):
    service = inference.Inference(predict.Predictor(OneModel(with_predict_method)), method_name_check=True)

    error = serving_error(lambda: service.classify(classify_request("as_predict", 4.0)))

    assert (error.code, error.message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict",
    )


def test_the_method_name_check_names_both_methods(tf1_version):
    with_check = inference.Inference(predict.Predictor(OneModel(tf1_version)), method_name_check=True)

    error = serving_error(lambda: with_check.regress(regress_request("classify_x_to_y", 1.0)))

    assert (error.code, error.message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/classify",
    )


def test_without_the_check_a_classify_signature_of_one_output_regresses_nothing(tf1_version):
    without = inference.Inference(predict.Predictor(OneModel(tf1_version)))

    error = serving_error(lambda: without.regress(regress_request("classify_x_to_y", 1.0)))

    assert error.message.startswith("No regression outputs found in SignatureDef: ")


@pytest.mark.parametrize(
    "outputs, message",
    [
        ({"scores": np.zeros(2, np.float32)}, "Expected Tensor shape: [batch_size num_classes] but got [2]"),
        ({"scores": np.zeros((2, 1), np.float64)}, "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE"),
        ({"scores": np.zeros((3, 1), np.float32)}, "Expected scores output batch size of 2. Got: 3"),
        ({"classes": np.full((2, 1), 7, np.int64)}, "Expected classes Tensor of DT_STRING. Got: DT_INT64"),
        ({"classes": np.full((2, 3), b"a", object), "scores": np.zeros((2, 2), np.float32)},
         "Tensors class and score should match in dim_size(1). Got 3 vs. 2"),
    ],
    ids=["rank", "scores_dtype", "scores_batch", "classes_dtype", "widths"],
)
def test_classification_outputs_are_checked_as_tf_serving_checks_them(outputs, message):
    error = serving_error(lambda: inference.fill_classification(outputs, 2, classification_pb2.ClassificationResult()))

    assert (error.code, error.message) == (grpc.StatusCode.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(
    "values, message",
    [
        (np.zeros((2, 2), np.float32),
         "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got [2,2]"),
        (np.zeros(3, np.float32), "Input batch size did not match output batch size: 2 vs. 3"),
        (np.zeros(2, np.int32), "Expected output Tensor of DT_FLOAT.  Got: DT_INT32"),
    ],
    ids=["shape", "batch", "dtype"],
)
def test_regression_outputs_are_checked_as_tf_serving_checks_them(values, message):
    error = serving_error(lambda: inference.fill_regression({"outputs": values}, 2, regression_pb2.RegressionResult()))

    assert error.message == message


def test_a_regression_output_of_shape_batch_by_one_is_accepted():
    result = regression_pb2.RegressionResult()

    inference.fill_regression({"outputs": np.array([[1.5], [2.5]], np.float32)}, 2, result)

    assert [r.value for r in result.regressions] == [1.5, 2.5]


def test_concurrent_regressions_batch_through_the_shared_scheduler(tf1_version):
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1))
    try:
        service = inference.Inference(predict.Predictor(OneModel(tf1_version), scheduler))
        response = service.regress(regress_request("regress_x_to_y", 2.0, 6.0))
    finally:
        scheduler.close(10.0)

    assert [r.value for r in response.result.regressions] == [3.0, 5.0]


def test_warmup_replays_classify_and_regress_logs(tf1_model_dir, tmp_path):
    version_dir = tmp_path / "1"
    shutil.copytree(tf1_model_dir / MODEL / "1", version_dir)
    logs = [
        prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(
            request=classify_request("classify_x_to_labels", 1.0))),
        prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(
            request=regress_request("regress_x_to_y", 1.0))),
    ]
    (version_dir / "assets.extra").mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(version_dir / warmup.WARMUP_FILE)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())

    assert warmup.replay(servables.load(MODEL, 1, str(version_dir))) == 2


def test_the_asset_is_found_inside_a_moved_version(tf1_model_dir, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(tf1_model_dir / MODEL / "1", moved)
    loaded = servables.load(MODEL, 1, str(moved))

    labels = loaded.signatures["classify_labels_only"].run(
        {"inputs": np.array([example(0.0).SerializeToString()], object)}, ("classes",)
    )
    assert labels["classes"].tolist() == [[b"negative", b"positive"]]


def test_a_corrupt_saved_model_fails_to_load_with_the_reason(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff not a protobuf")

    error = serving_error(lambda: servables.load("m", 1, str(tmp_path)))

    assert error.code == grpc.StatusCode.DATA_LOSS
    assert error.message.startswith(f"Could not parse SavedModel at {tmp_path}: ")


def test_a_directory_without_a_saved_model_names_what_is_missing(tmp_path):
    error = serving_error(lambda: servables.load("m", 1, str(tmp_path)))

    assert (error.code, error.message) == (
        grpc.StatusCode.NOT_FOUND,
        f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {tmp_path}",
    )


@pytest.mark.parametrize(
    "requested, cpus, batching, expected",
    [
        (12, 2, None, 12),
        (0, 2, None, options.GRPC_MIN_THREADS),
        (0, 32, None, 128),
        (0, 2, BatchingOptions(max_batch_size=128, num_batch_threads=2), 384),
        (0, 2, BatchingOptions(max_batch_size=8, num_batch_threads=2), options.GRPC_MIN_THREADS),
        (0, 2, BatchingOptions(max_batch_size=1000, num_batch_threads=2), options.GRPC_MAX_DEFAULT_THREADS),
    ],
    ids=["explicit", "two_cores", "four_per_core", "batches_can_fill", "small_batches", "bounded"],
)
def test_grpc_handler_threads(requested, cpus, batching, expected):
    assert options.grpc_handler_threads(requested, cpus, batching) == expected
