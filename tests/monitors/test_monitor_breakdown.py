"""Per-window server metrics and the latency breakdown, from hand-written Prometheus pages."""

import pytest

from tfs_bench.monitors.breakdown import latency_breakdown, metrics_delta
from tfs_bench.monitors.samples import LatencyDelta, MetricsSnapshot
from tfs_bench.prometheus import parse_prometheus_text
from tfs_bench.server.metrics import ServerMetrics

URL = "http://127.0.0.1:8501/monitoring/prometheus/metrics"
P = ":tensorflow:serving"

BEFORE = f"""# TYPE {P}:batching_session:queuing_latency histogram
{P}:batching_session:queuing_latency_bucket{{thread_pool_name="batch_threads",le="100"}} 20
{P}:batching_session:queuing_latency_bucket{{thread_pool_name="batch_threads",le="+Inf"}} 100
{P}:batching_session:queuing_latency_sum{{thread_pool_name="batch_threads"}} 100000
{P}:batching_session:queuing_latency_count{{thread_pool_name="batch_threads"}} 100
# TYPE {P}:request_count counter
{P}:request_count{{model_name="resnet50",status="OK"}} 100
{P}:request_count{{model_name="resnet50",status="UNAVAILABLE"}} 2
# TYPE {P}:request_latency histogram
{P}:request_latency_bucket{{model_name="resnet50",API="predict",entrypoint="GRPC",le="+Inf"}} 100
{P}:request_latency_sum{{model_name="resnet50",API="predict",entrypoint="GRPC"}} 500000
{P}:request_latency_count{{model_name="resnet50",API="predict",entrypoint="GRPC"}} 100
# TYPE {P}:runtime_latency histogram
{P}:runtime_latency_sum{{model_name="resnet50",API="predict",runtime="TF1"}} 400000
{P}:runtime_latency_count{{model_name="resnet50",API="predict",runtime="TF1"}} 100
"""

# In the window: resnet50 served 200 more over gRPC (1e6 µs of request latency, 8e5 of runtime,
# 2e5 of queuing) and failed 3 more; mobilenet appeared, served over REST through two APIs.
AFTER = f"""# TYPE {P}:batching_session:queuing_latency histogram
{P}:batching_session:queuing_latency_sum{{thread_pool_name="batch_threads"}} 300000
{P}:batching_session:queuing_latency_count{{thread_pool_name="batch_threads"}} 300
# TYPE {P}:request_count counter
{P}:request_count{{model_name="mobilenet",status="OK"}} 4
{P}:request_count{{model_name="resnet50",status="DEADLINE_EXCEEDED"}} 1
{P}:request_count{{model_name="resnet50",status="OK"}} 300
{P}:request_count{{model_name="resnet50",status="UNAVAILABLE"}} 4
# TYPE {P}:request_latency histogram
{P}:request_latency_sum{{model_name="mobilenet",API="predict",entrypoint="REST"}} 3000
{P}:request_latency_count{{model_name="mobilenet",API="predict",entrypoint="REST"}} 3
{P}:request_latency_sum{{model_name="mobilenet",API="classify",entrypoint="REST"}} 1000
{P}:request_latency_count{{model_name="mobilenet",API="classify",entrypoint="REST"}} 1
{P}:request_latency_sum{{model_name="resnet50",API="predict",entrypoint="GRPC"}} 1.5e+06
{P}:request_latency_count{{model_name="resnet50",API="predict",entrypoint="GRPC"}} 300
# TYPE {P}:runtime_latency histogram
{P}:runtime_latency_sum{{model_name="mobilenet",API="predict",runtime="TF1"}} 2000
{P}:runtime_latency_count{{model_name="mobilenet",API="predict",runtime="TF1"}} 4
{P}:runtime_latency_sum{{model_name="resnet50",API="predict",runtime="TF1"}} 1.2e+06
{P}:runtime_latency_count{{model_name="resnet50",API="predict",runtime="TF1"}} 300
"""


def snapshot(text, t_ns):
    return MetricsSnapshot(URL, t_ns - 10, t_ns + 10, parse_prometheus_text(text))


def test_deltas_per_model_entrypoint_status_and_pool():
    delta = metrics_delta(snapshot(BEFORE, 1_000), snapshot(AFTER, 5_000))

    assert (delta.status, delta.reason, delta.start_ns, delta.end_ns) == ("ok", None, 1_000, 5_000)
    resnet, mobilenet = delta.model("resnet50"), delta.model("mobilenet")
    assert dict(resnet.request_latency_by_entrypoint) == {"GRPC": LatencyDelta(200, 1_000_000.0)}
    assert resnet.runtime_latency == LatencyDelta(200, 800_000.0)
    assert dict(resnet.request_count_by_status) == {"DEADLINE_EXCEEDED": 1, "OK": 200, "UNAVAILABLE": 2}
    assert dict(mobilenet.request_latency_by_entrypoint) == {"REST": LatencyDelta(4, 4000.0)}  # APIs summed
    assert dict(mobilenet.request_count_by_status) == {"OK": 4}
    assert dict(delta.queuing_latency_by_pool) == {"batch_threads": LatencyDelta(200, 200_000.0)}
    assert delta.queuing_latency.mean_us == 1000.0


def test_breakdown_of_the_client_mean_service_time():
    delta = metrics_delta(snapshot(BEFORE, 1_000), snapshot(AFTER, 5_000))
    breakdown = latency_breakdown(delta, "resnet50", client_mean_service_time_us=6500.0)

    assert (breakdown.status, breakdown.reason, breakdown.requests) == ("ok", None, 200)
    assert breakdown.request_latency_mean_us == 5000.0
    assert breakdown.runtime_latency_mean_us == 4000.0
    assert breakdown.network_serialisation_us == 1500.0  # client 6500 - request 5000
    assert breakdown.request_handling_us == 1000.0  # request 5000 - runtime 4000
    assert breakdown.batch_wait_us == breakdown.queuing_latency_mean_us == 1000.0

    rest = latency_breakdown(delta, "mobilenet", 1200.0, entrypoint="REST")
    assert (rest.request_latency_mean_us, rest.runtime_latency_mean_us) == (1000.0, 500.0)
    assert (rest.network_serialisation_us, rest.request_handling_us) == (200.0, 500.0)


def test_a_model_without_timed_requests_has_no_breakdown():
    delta = metrics_delta(snapshot(BEFORE, 1_000), snapshot(AFTER, 5_000))

    for model, entrypoint in [("resnet50", "REST"), ("unknown", "GRPC")]:
        breakdown = latency_breakdown(delta, model, 100.0, entrypoint=entrypoint)
        assert breakdown.status == "no_requests" and breakdown.request_latency_mean_us is None

    same = metrics_delta(snapshot(AFTER, 5_000), snapshot(AFTER, 9_000))
    assert latency_breakdown(same, "resnet50", 100.0).status == "no_requests"
    assert same.model("resnet50").runtime_latency == LatencyDelta(0, 0.0)


def test_counter_reset_is_reported_not_turned_negative():
    restarted = f"""{P}:request_count{{model_name="resnet50",status="OK"}} 7
{P}:request_latency_sum{{model_name="resnet50",API="predict",entrypoint="GRPC"}} 35000
{P}:request_latency_count{{model_name="resnet50",API="predict",entrypoint="GRPC"}} 7
"""
    delta = metrics_delta(snapshot(AFTER, 5_000), snapshot(restarted, 9_000))

    assert delta.status == "counter_reset" and delta.models == ()
    assert delta.reason.startswith(f"{P}:") and "the server restarted" in delta.reason
    breakdown = latency_breakdown(delta, "resnet50", 6500.0)
    assert (breakdown.status, breakdown.reason) == ("counter_reset", delta.reason)
    assert breakdown.network_serialisation_us is None and breakdown.request_handling_us is None


def test_a_counter_that_went_down_is_named():
    lower = AFTER.replace(
        f'{P}:request_count{{model_name="resnet50",status="OK"}} 300',
        f'{P}:request_count{{model_name="resnet50",status="OK"}} 299',
    )
    delta = metrics_delta(snapshot(AFTER, 5_000), snapshot(lower, 9_000))

    assert delta.reason == (
        f'{P}:request_count{{model_name="resnet50",status="OK"}} went down from 300 to 299; the server restarted'
    )


@pytest.mark.parametrize("failed", ["start", "end"])
def test_a_missing_scrape_makes_the_window_missing(failed):
    lost = MetricsSnapshot(URL, 4_990, 5_010, None, error="cannot reach the server: refused")
    good = snapshot(AFTER, 9_000)
    before, after = (lost, good) if failed == "start" else (good, lost)

    delta = metrics_delta(before, after)

    assert delta.status == "missing"
    assert delta.reason == f"the scrape at the window's {failed} failed: cannot reach the server: refused"
    assert latency_breakdown(delta, "resnet50", 1.0).status == "missing"


def test_pages_rendered_by_the_embedded_server():
    metrics = ServerMetrics()
    metrics.observe_request("m", "predict", "GRPC", "OK", 1000.0)
    before = snapshot(metrics.render(), 1_000)
    for request_us, runtime_us in [(3000.0, 2000.0), (5000.0, 3500.0)]:
        metrics.observe_request("m", "predict", "GRPC", "OK", request_us)
        metrics.observe_runtime("m", "predict", "TF1", runtime_us)
        metrics.observe_queuing("batch_threads", 250.0)
    metrics.observe_request("m", "predict", "GRPC", "INVALID_ARGUMENT", None)
    after = snapshot(metrics.render(), 2_000)

    delta = metrics_delta(before, after)
    breakdown = latency_breakdown(delta, "m", 4100.0)

    assert dict(delta.model("m").request_count_by_status) == {"INVALID_ARGUMENT": 1, "OK": 2}
    assert (breakdown.requests, breakdown.request_latency_mean_us, breakdown.runtime_latency_mean_us) == (
        2,
        4000.0,
        2750.0,
    )
    assert (breakdown.network_serialisation_us, breakdown.request_handling_us, breakdown.batch_wait_us) == (
        100.0,
        1250.0,
        250.0,
    )
