"""Server-side batching end to end: a real server with --enable_batching and Prometheus metrics."""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from server_support import Stubs, log_tail, start_embedded, write_config
from tfs_bench.export import known_answer
from tfs_bench.prometheus import parse_prometheus_text, sample_key

MODEL = known_answer.MODEL_NAME
WAIT_S = 30.0
BATCHING = ":tensorflow:serving:batching_session"


@pytest.fixture(scope="module")
def server(known_answer_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batching_server")
    batching = write_config(tmp / "batching.config", """
max_batch_size { value: 4 }
batch_timeout_micros { value: 1000000 }
max_enqueued_batches { value: 1 }
num_batch_threads { value: 1 }
allowed_batch_sizes: 2
allowed_batch_sizes: 4
""")
    monitoring = write_config(tmp / "monitoring.config", "prometheus_config { enable: true }")
    flags = [
        f"--model_name={MODEL}",
        f"--model_base_path={known_answer_dir / MODEL}",
        "--enable_batching",
        f"--batching_parameters_file={batching}",
        f"--monitoring_config_file={monitoring}",
        "--rest_api_timeout_in_ms=500",  # shorter than a batch's timeout
    ]
    server = start_embedded(flags, tmp, [MODEL])
    yield server
    assert server.stop() == 0, log_tail(server)


@pytest.fixture(scope="module")
def stubs(server):
    stubs = Stubs(server)
    yield stubs
    stubs.close()


def request_for(x):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    return request


def rows(n, start=0.0):
    return np.arange(start, start + 3 * n, dtype=np.float32).reshape(n, 3)


def metrics(server):
    url = f"{server.rest_url}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse_prometheus_text(response.read().decode())


def delta(before, after, name, labels=None):
    key = sample_key(name, labels)
    return after.get(key, 0) - before.get(key, 0)


def concurrently(stubs, inputs):
    """Sends every input at once; returns each response or RpcError, in order."""
    futures = [stubs.prediction.Predict.future(request_for(x), timeout=WAIT_S) for x in inputs]
    results = []
    for future in futures:
        try:
            results.append(future.result())
        except grpc.RpcError as e:
            results.append(e)
    return results


def test_concurrent_requests_merge_into_one_tensorflow_call(server, stubs):
    before = metrics(server)
    inputs = [rows(1, start=10 * i) for i in range(4)]

    results = concurrently(stubs, inputs)

    for x, response in zip(inputs, results):
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), known_answer.expected_output(x, 2))
    after = metrics(server)
    assert delta(before, after, f"{BATCHING}:input_batch_size_count") == 1
    assert delta(before, after, f"{BATCHING}:input_batch_size_sum") == 4
    queued = {"thread_pool_name": "batch_threads"}
    assert delta(before, after, f"{BATCHING}:queuing_latency_count", queued) == 4


def test_a_batch_is_padded_to_the_next_allowed_size_and_the_padding_dropped(server, stubs):
    before = metrics(server)
    x = rows(3)

    response = stubs.prediction.Predict(request_for(x), timeout=WAIT_S)

    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), known_answer.expected_output(x, 2))
    after = metrics(server)
    assert delta(before, after, f"{BATCHING}:input_batch_size_sum") == 3
    assert delta(before, after, f"{BATCHING}:processed_batch_size_sum") == 4
    assert delta(before, after, f"{BATCHING}:padding_size_sum", {"execution_batch_size": "4"}) == 1


def test_a_full_queue_answers_unavailable(stubs):
    # 3 + 2 rows do not fit one batch of 4, and the queue holds one batch: one task is refused.
    results = concurrently(stubs, [rows(3), rows(2)])

    errors = [r for r in results if isinstance(r, grpc.RpcError)]
    assert len(errors) == 1
    assert errors[0].code() == grpc.StatusCode.UNAVAILABLE
    assert errors[0].details().startswith(
        "The batch scheduling queue to which this task was submitted is full"
    )


def test_a_task_larger_than_the_largest_batch_is_invalid(stubs):
    with pytest.raises(grpc.RpcError) as info:
        stubs.prediction.Predict(request_for(rows(5)), timeout=WAIT_S)

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "Task size 5 is larger than maximum input batch size 4"


def rest_predict(server, x):
    body = json.dumps({"instances": x.tolist()}).encode()
    url = f"{server.rest_url}/v1/models/{MODEL}:predict"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=WAIT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rest_requests_are_batched_too(server):
    status, body = rest_predict(server, rows(4))  # a full batch runs at once

    assert status == 200
    np.testing.assert_array_equal(body["predictions"], known_answer.expected_output(rows(4), 2))


def test_a_deadline_passing_in_the_queue_is_deadline_exceeded(server, stubs):
    before = metrics(server)

    with pytest.raises(grpc.RpcError) as info:
        stubs.prediction.Predict(request_for(rows(1)), timeout=0.5)  # the batch waits 1 s
    status, body = rest_predict(server, rows(1))  # --rest_api_timeout_in_ms=500

    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert status == 504 and "Deadline exceeded" in body["error"]
    failed = {"model_name": MODEL, "status": "DEADLINE_EXCEEDED"}
    assert delta(before, metrics(server), ":tensorflow:serving:request_count", failed) == 2


def test_metrics_use_tf_servings_names(server):
    samples = metrics(server)

    runtime = {"model_name": MODEL, "API": "Predict", "runtime": "TF1"}
    assert samples[sample_key(":tensorflow:serving:runtime_latency_count", runtime)] >= 4
    assert samples[sample_key(":tensorflow:serving:request_count",
                              {"model_name": MODEL, "status": "UNAVAILABLE"})] >= 1
    assert samples[sample_key(":tensorflow:serving:request_count",
                              {"model_name": MODEL, "status": "INVALID_ARGUMENT"})] >= 1


@pytest.fixture(scope="module")
def wide_batch_server(known_answer_dir, tmp_path_factory):
    """max_batch_size 96 (more than 64 requests), a batch closes only when full or after 20 s."""
    tmp = tmp_path_factory.mktemp("wide_batching_server")
    batching = write_config(tmp / "batching.config", """
max_batch_size { value: 96 }
batch_timeout_micros { value: 20000000 }
num_batch_threads { value: 1 }
""")
    monitoring = write_config(tmp / "monitoring.config", "prometheus_config { enable: true }")
    flags = [
        f"--model_name={MODEL}",
        f"--model_base_path={known_answer_dir / MODEL}",
        "--enable_batching",
        f"--batching_parameters_file={batching}",
        f"--monitoring_config_file={monitoring}",
    ]
    server = start_embedded(flags, tmp, [MODEL])
    yield server
    assert server.stop() == 0, log_tail(server)


def test_a_batch_larger_than_64_one_row_requests_fills(wide_batch_server):
    # Each waiting request holds a gRPC handler thread; with a fixed pool of 64 the first batch
    # would close at its timeout holding 64 rows. The default thread count leaves room for 96.
    stubs = Stubs(wide_batch_server)
    try:
        before = metrics(wide_batch_server)
        results = concurrently(stubs, [rows(1, start=float(i)) for i in range(96)])
        after = metrics(wide_batch_server)
    finally:
        stubs.close()

    assert all(not isinstance(r, grpc.RpcError) for r in results), results
    processed = f"{BATCHING}:processed_batch_size"
    assert (delta(before, after, f"{processed}_count"), delta(before, after, f"{processed}_sum")) == (1, 96)
