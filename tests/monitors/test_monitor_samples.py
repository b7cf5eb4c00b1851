"""The monitor records: validated on construction, and their JSON forms round-trip."""

import dataclasses
import json
import math

import pytest

from tfs_bench.monitors.samples import (
    CpuSample,
    GpuProcessMemory,
    GpuSample,
    GpuStatus,
    LatencyBreakdown,
    LatencyDelta,
    MetricsSnapshot,
    ModelMetricsDelta,
    ProcessSample,
    ServerMetricsDelta,
    WindowResources,
)

ALIVE = ProcessSample("server", 10, True, (10, 11), 1.5, 4096)
DEAD = ProcessSample("server", 10, False, (), None, None)
CPU = CpuSample(5, 10.0, 40.0, 2, ProcessSample("load_generator", 3, True, (3,), 0.5, 100), (ALIVE,))
GPU = GpuSample(
    7, 0, 40.0, 10.0, 2**30, 2**34, 250.0, (GpuProcessMemory(11, 2**29), GpuProcessMemory(12, None))
)
DELTA = ServerMetricsDelta(
    start_ns=1,
    end_ns=2,
    status="ok",
    reason=None,
    models=(
        ModelMetricsDelta(
            "m", {"GRPC": LatencyDelta(2, 10.0)}, LatencyDelta(2, 6.0), {"OK": 2, "CANCELLED": 1}
        ),
    ),
    queuing_latency_by_pool={"p": LatencyDelta(2, 2.0)},
)
BREAKDOWN = LatencyBreakdown("m", "GRPC", "ok", None, 2, 7.0, 5.0, 3.0, 1.0, 2.0, 2.0, 1.0)


def round_trip(record):
    text = json.dumps(record.to_json(), allow_nan=False)
    assert json.loads(text)["schema_version"] == 2  # 2: the breakdown's client side is the service time
    return type(record).from_json(json.loads(text))


@pytest.mark.parametrize(
    "record",
    [
        CPU,
        GPU,
        GpuSample.missing_sample(9, 1, "NVMLError: lost"),
        GpuStatus("ok", None, 2),
        GpuStatus("unavailable", "no driver", 0),
        DELTA,
        BREAKDOWN,
        ServerMetricsDelta(1, 2, "counter_reset", "went down", (), {}),
    ],
)
def test_round_trip(record):
    assert round_trip(record) == record


def test_snapshot_round_trips_non_finite_values():
    key_inf, key_nan = ("a", frozenset()), ("b", frozenset({("x", "1")}))
    snapshot = MetricsSnapshot(
        "http://h:1/m", 10, 30, {key_inf: math.inf, key_nan: math.nan, ("c", frozenset()): 2.5}
    )
    restored = round_trip(snapshot)
    assert (
        restored.t_ns == 20
        and restored.samples[key_inf] == math.inf
        and math.isnan(restored.samples[key_nan])
    )
    assert restored.samples[("c", frozenset())] == 2.5
    assert round_trip(MetricsSnapshot("http://h:1/m", 10, 30, None, "HTTP 404 Not Found")).missing


def test_wrong_schema_version_is_refused():
    d = CPU.to_json()
    d["schema_version"] = 1
    with pytest.raises(ValueError, match="schema_version 1"):
        CpuSample.from_json(d)


def test_mappings_and_sequences_are_frozen():
    with pytest.raises(TypeError):
        DELTA.models[0].request_count_by_status["OK"] = 5
    assert isinstance(dataclasses.replace(CPU, servers=[ALIVE]).servers, tuple)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ProcessSample("s", 1, True, (1,), -0.1, 10), "cpu_s must be a finite number >= 0"),
        (lambda: ProcessSample("s", 1, True, (2,), 0.1, 10), "root first"),
        (lambda: ProcessSample("s", 1, False, (), 0.1, None), "dead process tree"),
        (lambda: CpuSample(1, 5.0, 4.0, 2, ALIVE, ()), "busy time exceeds total"),
        (lambda: CpuSample(1, 1.0, 4.0, 2, ALIVE, (ALIVE, ALIVE)), "server names repeat"),
        (lambda: GpuSample(1, 0, 101.0, 0.0, 1, 2, None, ()), "above 100"),
        (lambda: GpuSample(1, 0, None, None, None, None, 5.0, (), error="lost"), "must have no figures"),
        (lambda: GpuStatus("unavailable", None, 0), "has a reason"),
        (lambda: MetricsSnapshot("u", 5, 4, {}), "received before"),
        (lambda: MetricsSnapshot("u", 1, 2, None), "either samples or an error"),
        (lambda: LatencyDelta(-1, 0.0), "count must be a finite number >= 0"),
        (lambda: ServerMetricsDelta(1, 2, "missing", None, (), {}), "has a reason"),
        (
            lambda: LatencyBreakdown("m", "GRPC", "ok", None, 2, 7.0, None, 3.0, 1.0, None, 2.0, 1.0),
            "every figure",
        ),
        (lambda: WindowResources(5, 5, 0, None, None, (), GpuStatus("off", "x", 0), ()), "must end after"),
    ],
)
def test_invalid_records_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_missing_gpu_sample_constructor():
    sample = GpuSample.missing_sample(3, 1, "boom")
    assert sample.missing and sample.processes == () and sample.power_w is None
