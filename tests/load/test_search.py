import json

import pytest

from tfs_bench.errors import TfsBenchError
from tfs_bench.load.records import RequestRecord
from search_support import FakeServer
from tfs_bench.load.search import STOP_MAX_PASSES
from tfs_bench.load.search import STOP_NO_GAIN
from tfs_bench.load.search import JudgedProbe
from tfs_bench.load.search import PeakResult
from tfs_bench.load.search import ProbeOutcome
from tfs_bench.load.search import RampResult
from tfs_bench.load.search import SearchError
from tfs_bench.load.search import judge_probe
from tfs_bench.load.search import peak_under_sla
from tfs_bench.load.search import perseus_ramp
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.verdict import summarize_run
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import summarize_window

S = 1_000_000_000
MS = 1_000_000
SLA_MS = 750.0


def test_judging_a_probe():
    ok = ProbeOutcome(True, (), 10.0, 700.0)
    assert judge_probe(10.0, ok, SLA_MS).passed
    slow = judge_probe(10.0, ProbeOutcome(True, (), 10.0, 800.0), SLA_MS)
    assert not slow.passed and slow.failures == ("SLA percentile 800.00 ms > bound 750 ms",)
    bad = judge_probe(10.0, ProbeOutcome(False, ("late sends",), 10.0, 900.0), SLA_MS)
    assert bad.failures == ("late sends", "SLA percentile 900.00 ms > bound 750 ms")
    empty = judge_probe(10.0, ProbeOutcome(True, (), 0.0, None), SLA_MS)
    assert empty.failures == ("no successful request, so no SLA percentile",)


def test_probe_outcome_must_agree_with_its_reasons():
    with pytest.raises(ValueError, match="exactly when"):
        ProbeOutcome(True, ("x",), 1.0, 1.0)
    with pytest.raises(ValueError, match="exactly when"):
        ProbeOutcome(False, (), 1.0, 1.0)


# ----------------------------------------------------------------------------- peak under SLA


def test_peak_brackets_by_doubling_then_bisects():
    server = FakeServer(capacity_rps=37)
    result = peak_under_sla(server, start_rps=1.0, sla_bound_ms=SLA_MS, precision=0.05)
    # ×2 until 64 fails; bisect (32, 64) → 48 ✗ 40 ✗ 36 ✓ 38 ✗ 37 ✓; 38 − 37 ≤ 5% of 37.
    assert server.calls == [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37]
    assert [p.rate_rps for p in result.probes] == server.calls
    assert [p.passed for p in result.probes] == [True] * 6 + [False, False, False, True, False, True]
    assert result.peak_rps == 37 and result.bracketed
    assert result.lower.rate_rps == 37 and result.lower.outcome.throughput_rps == 37
    assert result.upper.rate_rps == 38 and result.upper.failures == ("SLA percentile 2000.00 ms > bound 750 ms",)
    assert result.upper.rate_rps - result.lower.rate_rps <= 0.05 * result.lower.rate_rps


def test_an_invalid_probe_fails_even_within_the_sla():
    server = FakeServer(capacity_rps=1000, invalid_above=20)  # e.g. the client saturates at 20
    result = peak_under_sla(server, start_rps=5.0, sla_bound_ms=SLA_MS, precision=0.1)
    assert server.calls == [5, 10, 20, 40, 30, 25, 22.5, 21.25]
    assert result.peak_rps == 20
    assert result.upper.rate_rps == 21.25 and result.upper.failures == ("unstable: p95 grew every window",)


def test_finer_precision_costs_more_probes():
    coarse = peak_under_sla(FakeServer(37), 1.0, SLA_MS, precision=0.2)
    fine = peak_under_sla(FakeServer(37), 1.0, SLA_MS, precision=0.01)
    # Coarse: (32, 64) → 48 ✗ 40 ✗ 36 ✓, and 40 − 36 ≤ 20% of 36.
    assert [p.rate_rps for p in coarse.probes][6:] == [64, 48, 40, 36]
    assert coarse.peak_rps == 36 and fine.peak_rps == 37
    assert len(coarse.probes) < len(fine.probes)


def test_peak_search_stops_at_its_rate_cap():
    server = FakeServer(capacity_rps=10_000)
    result = peak_under_sla(server, start_rps=5.0, sla_bound_ms=SLA_MS, max_rate_rps=15.0)
    assert server.calls == [5, 10, 15]
    assert result.peak_rps == 15 and not result.bracketed and result.upper is None


def test_peak_search_that_cannot_start_reports_its_probe():
    server = FakeServer(capacity_rps=0.5)
    with pytest.raises(SearchError) as caught:
        peak_under_sla(server, start_rps=1.0, sla_bound_ms=SLA_MS)
    assert isinstance(caught.value, TfsBenchError)  # binaries print it, without a traceback
    assert str(caught.value) == (
        "peak search cannot start: the first probe at 1 requests/s failed "
        "(SLA percentile 2000.00 ms > bound 750 ms); start lower or fix the reasons"
    )
    assert [p.rate_rps for p in caught.value.probes] == [1.0]


def test_peak_result_json():
    result = peak_under_sla(FakeServer(37), 1.0, SLA_MS)
    d = json.loads(json.dumps(result.to_json()))
    assert (d["peak_rps"], d["lower_rate_rps"], d["upper_rate_rps"], len(d["probes"])) == (37, 37, 38, 12)
    assert PeakResult.from_json(d) == result


def test_an_unbracketed_peak_round_trips_and_a_peak_naming_no_probe_is_refused():
    result = peak_under_sla(FakeServer(100), 10.0, SLA_MS, max_rate_rps=40.0)
    assert not result.bracketed
    assert PeakResult.from_json(json.loads(json.dumps(result.to_json()))) == result
    with pytest.raises(ValueError, match="lower end names rate 3.0, which 0 probes have"):
        PeakResult.from_json({**result.to_json(), "lower_rate_rps": 3.0})
    with pytest.raises(ValueError, match="bracketed exactly when"):
        PeakResult.from_json({**result.to_json(), "bracketed": True})


# ----------------------------------------------------------------------------- PERSEUS ramp


def test_ramp_stops_after_six_passes_without_gain_and_reports_the_best_valid_pass():
    server = FakeServer(capacity_rps=100, invalid_above=110)
    result = perseus_ramp(server, qps_start=20, qps_delta=20, sla_bound_ms=SLA_MS)
    assert server.calls == [20, 40, 60, 80, 100, 120, 140, 160, 180, 200, 220]
    assert result.stop_reason == STOP_NO_GAIN
    assert result.best.rate_rps == 100 and result.best.outcome.throughput_rps == 100
    assert result.sla_met
    assert [p.passed for p in result.passes] == [True] * 5 + [False] * 6


def test_ramp_patience():
    server = FakeServer(capacity_rps=100)
    perseus_ramp(server, qps_start=50, qps_delta=50, sla_bound_ms=SLA_MS, patience=2)
    assert server.calls == [50, 100, 150, 200]


def test_noise_at_saturation_is_not_a_gain_but_the_best_pass_is_the_highest():
    noisy = {20: 20.0, 40: 40.0, 60: 50.0, 80: 50.4, 100: 49.8, 120: 50.2, 140: 50.3, 160: 49.9, 180: 50.1}
    server = FakeServer(capacity_rps=50, throughput=noisy.__getitem__)
    result = perseus_ramp(server, qps_start=20, qps_delta=20, sla_bound_ms=SLA_MS)
    assert server.calls == [20, 40, 60, 80, 100, 120, 140, 160, 180]
    assert result.best.rate_rps == 80 and result.best.outcome.throughput_rps == 50.4
    assert not result.sla_met  # offered 80 > capacity 50: its queue, and its p95, grew


def test_slow_steady_growth_accumulates_into_gains():
    server = FakeServer(capacity_rps=float("inf"))  # throughput = rate, growing 0.6% a pass
    result = perseus_ramp(server, qps_start=100, qps_delta=0.6, sla_bound_ms=SLA_MS, max_passes=30)
    assert len(server.calls) == 30 and result.stop_reason == STOP_MAX_PASSES
    assert result.best.rate_rps == pytest.approx(100 + 29 * 0.6)


def test_ramp_rates_do_not_drift():
    server = FakeServer(capacity_rps=float("inf"))
    perseus_ramp(server, qps_start=0.1, qps_delta=0.1, sla_bound_ms=SLA_MS, max_passes=30)
    assert server.calls[-1] == 0.1 + 29 * 0.1


def test_ramp_that_cannot_start_reports_its_probe():
    server = FakeServer(capacity_rps=100, invalid_above=5)
    with pytest.raises(SearchError, match="ramp cannot start: the first probe at 10 requests/s failed") as caught:
        perseus_ramp(server, qps_start=10, qps_delta=10, sla_bound_ms=SLA_MS)
    assert len(caught.value.probes) == 1 and server.calls == [10]


def test_ramp_result_json():
    result = perseus_ramp(FakeServer(100, invalid_above=110), 20, 20, SLA_MS)
    d = json.loads(json.dumps(result.to_json()))
    assert (d["best_rate_rps"], d["sla_met"], d["stop_reason"], len(d["passes"])) == (100, True, "no_gain", 11)
    assert RampResult.from_json(d) == result
    with pytest.raises(ValueError, match="one of its VALID passes"):
        RampResult.from_json({**d, "best_rate_rps": 120})  # INVALID above 110


def test_a_judged_probe_round_trips_and_must_agree_with_its_failures():
    judged = judge_probe(10.0, ProbeOutcome(False, ("unstable",), 9.5, 800.0), SLA_MS)
    assert JudgedProbe.from_json(json.loads(json.dumps(judged.to_json()))) == judged
    with pytest.raises(ValueError, match="passes exactly when"):
        JudgedProbe(10.0, judged.outcome, True, judged.failures)


# ----------------------------------------------------------------------------- from a real run summary


def test_probe_outcome_from_a_run_result():
    policy = WindowPolicy()
    bounds = [0, 5 * S, 10 * S, 15 * S]
    records = []
    for k in range(3):
        for i in range(500):
            done = bounds[k] + i * 10 * MS
            for tenant, latency in (("a", 20 * MS), ("b", 900 * MS)):
                records.append(RequestRecord(tenant, tenant, done - latency, done - latency, done, 1, "OK", 8, 0))
    offered = {"a": 100.0, "b": 100.0}
    windows = [summarize_window(k, bounds[k], bounds[k + 1], records, offered, policy) for k in range(3)]
    run = summarize_run(records, windows, policy, ValidityCriteria())
    a = ProbeOutcome.from_run(run, "a")
    assert a == ProbeOutcome(True, (), 100.0, 20.0)
    assert not judge_probe(100.0, ProbeOutcome.from_run(run, "b"), SLA_MS).passed
    assert ProbeOutcome.from_run(run).throughput_rps == 200.0
    assert ProbeOutcome.from_json(json.loads(json.dumps(a.to_json()))) == a
