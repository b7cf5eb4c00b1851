import threading

import pytest

from tfs_bench.prometheus import parse_prometheus_text, sample_key
from tfs_bench.server.metrics import (
    BATCH_SIZE_LIMITS,
    LATENCY_LIMITS_US,
    QUEUING_LIMITS_US,
    ServerMetrics,
)

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"
PROCESSED = ":tensorflow:serving:batching_session:processed_batch_size"


def lines_of(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_bucket_limits_are_tf_servings():
    assert len(LATENCY_LIMITS_US) == 33
    assert LATENCY_LIMITS_US[:4] == (10.0, 18.0, 10.0 * 1.8 * 1.8, 10.0 * 1.8 * 1.8 * 1.8)
    assert len(QUEUING_LIMITS_US) == 52
    assert QUEUING_LIMITS_US[:2] == (100.0, 120.0)
    assert BATCH_SIZE_LIMITS == tuple(float(2**i) for i in range(14))


def test_empty_page_lists_the_metrics_tf_serving_registers_at_start():
    assert ServerMetrics().render() == (
        "# TYPE :tensorflow:cc:saved_model:load_attempt_count counter\n"
        "# TYPE :tensorflow:cc:saved_model:load_latency counter\n"
        f"# TYPE {QUEUING_LATENCY} histogram\n"
        "# TYPE :tensorflow:serving:request_count counter\n"
        f"# TYPE {REQUEST_LATENCY} histogram\n"
        f"# TYPE {RUNTIME_LATENCY} histogram\n"
    )


def test_histogram_lines_match_tf_servings_exporter():
    metrics = ServerMetrics()
    metrics.observe_runtime("resnet", "predict", "TF", 20.0)

    lines = lines_of(metrics.render(), RUNTIME_LATENCY)

    labels = 'model_name="resnet",API="predict",runtime="TF"'
    assert len(lines) == 33 + 1 + 2
    assert lines[:5] == [
        f'{RUNTIME_LATENCY}_bucket{{{labels},le="10"}} 0',
        f'{RUNTIME_LATENCY}_bucket{{{labels},le="18"}} 0',
        f'{RUNTIME_LATENCY}_bucket{{{labels},le="32.4"}} 1',
        f'{RUNTIME_LATENCY}_bucket{{{labels},le="58.32"}} 1',
        f'{RUNTIME_LATENCY}_bucket{{{labels},le="104.976"}} 1',
    ]
    assert lines[8] == f'{RUNTIME_LATENCY}_bucket{{{labels},le="1102"}} 1'  # 1101.996 to 6 digits
    assert lines[20] == f'{RUNTIME_LATENCY}_bucket{{{labels},le="1.27482e+06"}} 1'
    assert lines[-3:] == [
        f'{RUNTIME_LATENCY}_bucket{{{labels},le="+Inf"}} 1',
        f"{RUNTIME_LATENCY}_sum{{{labels}}} 20",
        f"{RUNTIME_LATENCY}_count{{{labels}}} 1",
    ]
    assert not any(line.startswith("# HELP") for line in metrics.render().splitlines())


def test_bucket_counts_are_cumulative_and_a_value_on_a_limit_counts_in_the_next_bucket():
    metrics = ServerMetrics()
    for latency_us in (99.9, 100.0, 119.9, 120.0, 1e11):  # queuing limits are 100, 120, 144, ...
        metrics.observe_queuing("pool", latency_us)

    samples = parse_prometheus_text(metrics.render())

    def bucket(le):
        labels = {"thread_pool_name": "pool", "le": le}
        return samples[sample_key(f"{QUEUING_LATENCY}_bucket", labels)]

    # TF's Histogram::Add uses upper_bound, so 100 and 120 count in the bucket above their limit.
    assert [bucket("100"), bucket("120"), bucket("144"), bucket("172.8")] == [1, 3, 4, 4]
    assert bucket("+Inf") == 5
    assert samples[sample_key(f"{QUEUING_LATENCY}_count", {"thread_pool_name": "pool"})] == 5
    # 1e11 + 439.8 to six significant digits.
    assert samples[sample_key(f"{QUEUING_LATENCY}_sum", {"thread_pool_name": "pool"})] == 1e11


def test_sum_prints_six_significant_digits_like_tf_serving():
    metrics = ServerMetrics()
    metrics.observe_runtime("m", "predict", "TF", 1234567.0)

    assert lines_of(metrics.render(), f"{RUNTIME_LATENCY}_sum") == [
        f'{RUNTIME_LATENCY}_sum{{model_name="m",API="predict",runtime="TF"}} 1.23457e+06'
    ]


def test_requests_are_all_counted_but_only_ok_ones_are_timed():
    metrics = ServerMetrics()
    metrics.observe_request("m", "predict", "GRPC", "OK", 100.0)
    metrics.observe_request("m", "predict", "GRPC", "OK", None)
    metrics.observe_request("m", "predict", "GRPC", "INVALID_ARGUMENT", 50.0)
    metrics.observe_request("m", "predict", "REST", "NOT_FOUND", 70.0)

    text = metrics.render()

    assert lines_of(text, ":tensorflow:serving:request_count{") == [
        ':tensorflow:serving:request_count{model_name="m",status="INVALID_ARGUMENT"} 1',
        ':tensorflow:serving:request_count{model_name="m",status="NOT_FOUND"} 1',
        ':tensorflow:serving:request_count{model_name="m",status="OK"} 2',
    ]
    assert lines_of(text, f"{REQUEST_LATENCY}_count") == [
        f'{REQUEST_LATENCY}_count{{model_name="m",API="predict",entrypoint="GRPC"}} 1'
    ]
    assert lines_of(text, f"{REQUEST_LATENCY}_sum") == [
        f'{REQUEST_LATENCY}_sum{{model_name="m",API="predict",entrypoint="GRPC"}} 100'
    ]


def test_labels_print_in_declaration_order_sorted_by_value_and_escaped():
    metrics = ServerMetrics()
    metrics.observe_request("zeta", "predict", "GRPC", "OK", 1.0)
    metrics.observe_request('a"b\\c', "predict", "GRPC", "OK", 1.0)

    assert lines_of(metrics.render(), ":tensorflow:serving:request_count{") == [
        ':tensorflow:serving:request_count{model_name="a\\"b\\\\c",status="OK"} 1',
        ':tensorflow:serving:request_count{model_name="zeta",status="OK"} 1',
    ]
    assert parse_prometheus_text(metrics.render())[
        sample_key(":tensorflow:serving:request_count", {"model_name": 'a"b\\c', "status": "OK"})
    ] == 1


def test_batch_histograms_appear_on_first_batch_and_record_padding():
    metrics = ServerMetrics()
    metrics.observe_batch(3, 4)
    metrics.observe_batch(4, 4)

    text = metrics.render()

    batch_les = ["1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024", "2048"]
    batch_les += ["4096", "8192", "+Inf"]
    # Both batches processed 4 rows, which TF counts under le="8".
    cumulative = [0, 0, 0] + [2] * 12
    assert lines_of(text, f"{PROCESSED}_") == [
        *(f'{PROCESSED}_bucket{{le="{le}"}} {n}' for le, n in zip(batch_les, cumulative)),
        f"{PROCESSED}_sum{{}} 8",
        f"{PROCESSED}_count{{}} 2",
    ]
    samples = parse_prometheus_text(text)
    input_size = ":tensorflow:serving:batching_session:input_batch_size"
    padding = ":tensorflow:serving:batching_session:padding_size"
    assert samples[sample_key(f"{input_size}_sum")] == 7
    assert samples[sample_key(f"{padding}_bucket", {"execution_batch_size": "4", "le": "1"})] == 1
    assert samples[sample_key(f"{padding}_count", {"execution_batch_size": "4"})] == 2
    assert samples[sample_key(f"{padding}_sum", {"execution_batch_size": "4"})] == 1


def test_observe_batch_rejects_processed_smaller_than_input():
    with pytest.raises(ValueError, match="0 <= input_batch_size <= processed_batch_size"):
        ServerMetrics().observe_batch(5, 4)


def test_model_loads_are_tf_saved_model_counters():
    metrics = ServerMetrics()
    metrics.observe_model_load("/models/resnet/1", 1500.4)
    metrics.observe_model_load("/models/resnet/1", 500.0)
    metrics.observe_model_load_failure("/models/bad/1")

    text = metrics.render()

    assert text.startswith(
        "# TYPE :tensorflow:cc:saved_model:load_attempt_count counter\n"
        ":tensorflow:cc:saved_model:load_attempt_count"
        '{model_path="/models/bad/1",status="fail"} 1\n'
        ":tensorflow:cc:saved_model:load_attempt_count"
        '{model_path="/models/resnet/1",status="success"} 2\n'
        "# TYPE :tensorflow:cc:saved_model:load_latency counter\n"
        ':tensorflow:cc:saved_model:load_latency{model_path="/models/resnet/1"} 2000\n'
    )


def test_render_round_trips_through_the_parser():
    metrics = ServerMetrics()
    metrics.observe_request("m", "predict", "GRPC", "OK", 250.0)
    metrics.observe_runtime("m", "predict", "TF", 200.0)
    metrics.observe_queuing("batch_threads", 30.0)
    metrics.observe_batch(1, 1)
    metrics.observe_model_load("/models/m/1", 10.0)
    text = metrics.render()

    samples = parse_prometheus_text(text)

    sample_lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(samples) == len(sample_lines) == 1 + 36 + 36 + 55 + 17 + 17 + 17 + 1 + 1
    assert samples[sample_key(REQUEST_COUNT, {"model_name": "m", "status": "OK"})] == 1
    request = {"model_name": "m", "API": "predict", "entrypoint": "GRPC"}
    assert samples[sample_key(f"{REQUEST_LATENCY}_bucket", {**request, "le": "188.957"})] == 0
    assert samples[sample_key(f"{REQUEST_LATENCY}_bucket", {**request, "le": "340.122"})] == 1
    runtime = {"model_name": "m", "API": "predict", "runtime": "TF"}
    assert samples[sample_key(f"{RUNTIME_LATENCY}_sum", runtime)] == 200
    queuing = {"thread_pool_name": "batch_threads", "le": "100"}
    assert samples[sample_key(f"{QUEUING_LATENCY}_bucket", queuing)] == 1


def test_concurrent_observations_are_all_counted():
    metrics = ServerMetrics()
    threads, per_thread = 8, 500
    start = threading.Barrier(threads)

    def observe():
        start.wait()
        for _ in range(per_thread):
            metrics.observe_request("m", "predict", "GRPC", "OK", 1.0)

    workers = [threading.Thread(target=observe) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    samples = parse_prometheus_text(metrics.render())
    labels = {"model_name": "m", "API": "predict", "entrypoint": "GRPC"}
    assert samples[sample_key(REQUEST_COUNT, {"model_name": "m", "status": "OK"})] == 4000
    assert samples[sample_key(f"{REQUEST_LATENCY}_count", labels)] == 4000
    assert samples[sample_key(f"{REQUEST_LATENCY}_sum", labels)] == 4000
