"""resources.jsonl: its typed lines written by ResourceLog and read back by read_resources."""

import json

import pytest

from tfs_bench.errors import RunFileError
from tfs_bench.load.resources_file import RESOURCES_FILE
from tfs_bench.load.resources_file import IdleBaseline
from tfs_bench.load.resources_file import MonitoredWindow
from tfs_bench.load.resources_file import ResourceLog
from tfs_bench.load.resources_file import TenantBreakdown
from tfs_bench.load.resources_file import UrlMetricsDelta
from tfs_bench.load.resources_file import read_resources
from tfs_bench.monitors.breakdown import latency_breakdown
from tfs_bench.monitors.breakdown import metrics_delta
from tfs_bench.monitors.clipping import baseline_resources
from tfs_bench.monitors.clipping import clip_to_windows
from tfs_bench.monitors.samples import CpuSample
from tfs_bench.monitors.samples import GpuStatus
from tfs_bench.monitors.samples import MetricsSnapshot
from tfs_bench.monitors.samples import MonitorSamples
from tfs_bench.monitors.samples import ProcessSample
from tfs_bench.prometheus import parse_prometheus_text

S = 1_000_000_000
URL = "http://127.0.0.1:8501/monitoring/prometheus/metrics"
P = ":tensorflow:serving"
NO_GPU = GpuStatus("unavailable", "NVML Shared Library Not Found", 0)


def cpu_sample(t_s: float, cpu_s: float) -> CpuSample:
    def tree(name, pid):
        return ProcessSample(name, pid, True, (pid,), cpu_s, 1 << 20)

    return CpuSample(round(t_s * S), cpu_s, 2 * t_s, 2, tree("load_generator", 50), (tree("tfs", 100),))


def page(requests: int, request_us: float, runtime_us: float) -> str:
    return f"""{P}:request_count{{model_name="m",status="OK"}} {requests}
{P}:request_latency_sum{{model_name="m",API="predict",entrypoint="GRPC"}} {request_us}
{P}:request_latency_count{{model_name="m",API="predict",entrypoint="GRPC"}} {requests}
{P}:runtime_latency_sum{{model_name="m",API="predict",runtime="TF1"}} {runtime_us}
{P}:runtime_latency_count{{model_name="m",API="predict",runtime="TF1"}} {requests}
"""


def lines() -> list:
    samples = MonitorSamples(tuple(cpu_sample(t, t / 4) for t in (0, 1, 2, 3, 4)))
    baseline = IdleBaseline(NO_GPU, baseline_resources(MonitorSamples(samples.cpu[:2]), NO_GPU))
    first, second = clip_to_windows(samples, [(S, 2 * S), (2 * S, 3 * S)], NO_GPU)
    before = MetricsSnapshot(URL, S - 10, S + 10, parse_prometheus_text(page(100, 500_000.0, 400_000.0)))
    after = MetricsSnapshot(URL, 2 * S - 10, 2 * S + 10, parse_prometheus_text(page(300, 1.5e6, 1.2e6)))
    delta = metrics_delta(before, after)
    failed = metrics_delta(after, MetricsSnapshot(URL, 3 * S - 10, 3 * S + 10, None, "connection refused"))
    return [
        baseline,
        IdleBaseline(NO_GPU, None),
        MonitoredWindow(0, S, 2 * S, (UrlMetricsDelta(URL, delta),),
                        {"m": TenantBreakdown.measured(URL, latency_breakdown(delta, "m", 6500.0)),
                         "m@canary": TenantBreakdown("m", "no_requests", "no successful client request in the window")},
                        first),
        MonitoredWindow(1, 2 * S, 3 * S, (UrlMetricsDelta(URL, failed),),
                        {"m": TenantBreakdown.measured(URL, latency_breakdown(failed, "m", 6500.0))}, second),
        MonitoredWindow(2, 2 * S, 3 * S, (), {"m": TenantBreakdown("m", "missing", "no metrics URL was given")}, second),
    ]


def write(run_dir, records) -> None:
    log = ResourceLog(run_dir)
    for record in records:
        log.append(record)
    log.close()


def test_every_kind_of_line_reads_back_equal(tmp_path):
    written = lines()
    write(tmp_path, written)
    assert read_resources(tmp_path) == written
    assert written[2].breakdown["m"].breakdown.network_serialisation_us == 1500.0  # a real figure went through


def test_the_lines_keep_todays_fields(tmp_path):
    write(tmp_path, lines())
    baseline, _, window, failed, unmonitored = [json.loads(x) for x in (tmp_path / RESOURCES_FILE).read_text().splitlines()]
    assert list(baseline) == ["schema_version", "kind", "gpu_status", "resources"]
    assert list(window) == ["schema_version", "kind", "window", "start_ns", "end_ns", "server_metrics", "breakdown",
                            "resources"]
    assert window["server_metrics"][0]["url"] == URL and window["server_metrics"][0]["status"] == "ok"
    assert window["breakdown"]["m"]["url"] == URL and window["breakdown"]["m"]["status"] == "ok"
    assert window["breakdown"]["m@canary"] == {"model_name": "m", "status": "no_requests",
                                               "reason": "no successful client request in the window"}
    assert failed["breakdown"]["m"]["status"] == "missing" and "connection refused" in failed["breakdown"]["m"]["reason"]
    assert unmonitored["server_metrics"] == []


def test_a_line_cut_short_is_skipped_and_a_bad_line_is_named(tmp_path):
    written = lines()[:3]
    write(tmp_path, written)
    path = tmp_path / RESOURCES_FILE
    whole = path.read_text()
    path.write_text(whole + whole[:30])
    assert read_resources(tmp_path) == written
    path.write_text(whole + json.dumps({"schema_version": 1, "kind": "sample"}) + "\n")
    with pytest.raises(RunFileError, match=f"{RESOURCES_FILE}:4: unknown resources line kind 'sample'"):
        read_resources(tmp_path)
    window = json.loads(whole.splitlines()[2])
    path.write_text(whole + json.dumps(window | {"schema_version": 1}) + "\n")  # before the service-time rename
    with pytest.raises(RunFileError, match=f"{RESOURCES_FILE}:4: not a window line of schema_version 2"):
        read_resources(tmp_path)


def test_inconsistent_breakdowns_and_windows_are_refused():
    with pytest.raises(ValueError, match="unmeasured TenantBreakdown"):
        TenantBreakdown("m", "ok", None)
    with pytest.raises(ValueError, match="unmeasured TenantBreakdown"):
        TenantBreakdown("m", "missing", "")
    measured = lines()[2].breakdown["m"]
    with pytest.raises(ValueError, match="repeats its breakdown's"):
        TenantBreakdown("other", measured.status, measured.reason, URL, measured.breakdown)
    window = lines()[2]
    with pytest.raises(ValueError, match="must cover"):
        MonitoredWindow(0, S, 3 * S, (), {}, window.resources)
