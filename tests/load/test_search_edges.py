"""The search's bounds exactly at, just inside and just outside, and its JSON field by field.

Companion of test_search.py; these are the cases a one-character change in search.py (`>` for
`>=`, `or` for `and`, a renamed key) would otherwise slip through.
"""

import json

import pytest

from conftest import exactly
from search_support import FakeServer
from tfs_bench.load.search import STOP_MAX_PASSES
from tfs_bench.load.search import STOP_NO_GAIN
from tfs_bench.load.search import ProbeOutcome
from tfs_bench.load.search import SearchError
from tfs_bench.load.search import judge_probe
from tfs_bench.load.search import peak_under_sla
from tfs_bench.load.search import perseus_ramp


SLA_MS = 750.0


class Scripted:
    """A probe whose outcomes are given in order (throughput, SLA ms), all VALID."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = []

    def __call__(self, rate):
        self.calls.append(rate)
        throughput, sla_ms = self.outcomes[len(self.calls) - 1]
        return ProbeOutcome(True, (), throughput, sla_ms)


# ----------------------------------------------------------------------------- judging


@pytest.mark.parametrize(
    "sla_ms, passed",
    [(SLA_MS - 0.01, True), (SLA_MS, True), (SLA_MS + 0.01, False)],
    ids=["inside", "at", "outside"],
)
def test_the_sla_bound_is_inclusive(sla_ms, passed):
    assert judge_probe(10.0, ProbeOutcome(True, (), 10.0, sla_ms), SLA_MS).passed is passed


def test_probe_outcome_keeps_its_reasons_as_a_tuple():
    assert ProbeOutcome(False, ["late"], 1.0, 1.0).invalid_reasons == ("late",)


@pytest.mark.parametrize(
    "args, message",
    [
        ((True, ("x",), 1.0, 1.0), "a probe is VALID exactly when it has no invalid reasons"),
        ((False, (), 1.0, 1.0), "a probe is VALID exactly when it has no invalid reasons"),
        ((True, (), -1.0, 1.0), "throughput must be >= 0, got -1.0"),
    ],
)
def test_implausible_probe_outcomes_are_refused_with_their_reason(args, message):
    with pytest.raises(ValueError, match=exactly(message)):
        ProbeOutcome(*args)


def test_a_probe_with_no_throughput_is_plausible():
    assert ProbeOutcome(True, (), 0.0, None).throughput_rps == 0.0


def test_judged_probe_json_field_by_field():
    judged = judge_probe(12.5, ProbeOutcome(False, ("late",), 11.0, 800.0), SLA_MS)
    assert judged.to_json() == {
        "rate_rps": 12.5,
        "passed": False,
        "failures": ["late", "SLA percentile 800.00 ms > bound 750 ms"],
        "outcome": {"valid": False, "invalid_reasons": ["late"], "throughput_rps": 11.0, "sla_latency_ms": 800.0},
    }


def test_a_search_that_cannot_start_lists_every_failure_of_its_probe():
    server = FakeServer(capacity_rps=0.5, invalid_above=0.5)  # the first probe: INVALID and over the SLA
    with pytest.raises(SearchError) as caught:
        peak_under_sla(server, start_rps=1.0, sla_bound_ms=SLA_MS)
    assert str(caught.value) == (
        "peak search cannot start: the first probe at 1 requests/s failed "
        "(unstable: p95 grew every window; SLA percentile 2000.00 ms > bound 750 ms); "
        "start lower or fix the reasons"
    )


# ----------------------------------------------------------------------------- peak under SLA

PEAK_REFUSAL = "start_rps and sla_bound_ms must be > 0 and precision in (0, 1)"


@pytest.mark.parametrize(
    "start_rps, sla_bound_ms, precision",
    [(0.0, SLA_MS, 0.05), (1.0, 0.0, 0.05), (1.0, SLA_MS, 0.0), (1.0, SLA_MS, 1.0)],
    ids=["start_rps=0", "sla_bound_ms=0", "precision=0", "precision=1"],
)
def test_peak_search_refuses_each_bound_on_its_own(start_rps, sla_bound_ms, precision):
    server = FakeServer(capacity_rps=37)
    with pytest.raises(ValueError, match=exactly(PEAK_REFUSAL)):
        peak_under_sla(server, start_rps, sla_bound_ms, precision)
    assert server.calls == []


def test_peak_search_accepts_bounds_just_inside():
    # An SLA under 1 ms and a precision just under 1 are legitimate: the bounds are > 0 and < 1.
    probe = Scripted((1.0, 0.4), (2.0, 0.6), (1.5, 0.4))
    result = peak_under_sla(probe, start_rps=1.0, sla_bound_ms=0.5, precision=0.99)
    # 1 ✓, 2 ✗ (0.6 ms > 0.5 ms); 2 − 1 > 0.99 · 1, so 1.5 ✓; 2 − 1.5 ≤ 0.99 · 1.5: done.
    assert probe.calls == [1.0, 2.0, 1.5] and result.peak_rps == 1.5


def test_a_rate_cap_equal_to_the_start_is_one_probe():
    server = FakeServer(capacity_rps=100)
    result = peak_under_sla(server, start_rps=5.0, sla_bound_ms=SLA_MS, max_rate_rps=5.0)
    assert server.calls == [5.0] and result.peak_rps == 5.0 and not result.bracketed


def test_a_rate_cap_below_the_start_is_refused():
    with pytest.raises(ValueError, match=exactly("max_rate_rps 4.9 is below start_rps 5.0")):
        peak_under_sla(FakeServer(100), start_rps=5.0, sla_bound_ms=SLA_MS, max_rate_rps=4.9)


def test_bisection_stops_when_the_bracket_is_exactly_the_precision():
    server = FakeServer(capacity_rps=10)
    result = peak_under_sla(server, start_rps=1.0, sla_bound_ms=SLA_MS, precision=0.2)
    # ×2 until 16 fails; (8, 16) → 12 ✗, (8, 12) → 10 ✓; now 12 − 10 = 2.0 = 0.2 · 10 exactly
    # (both exact in binary floating point), which is within the precision: no probe at 11.
    assert server.calls == [1, 2, 4, 8, 16, 12, 10]
    assert (result.peak_rps, result.upper.rate_rps) == (10, 12)


def test_peak_result_json_field_by_field_when_bracketed():
    d = json.loads(json.dumps(peak_under_sla(FakeServer(10), 1.0, SLA_MS, precision=0.2).to_json()))
    assert len(d.pop("probes")) == 7
    assert d == {
        "peak_rps": 10,
        "peak_throughput_rps": 10,
        "bracketed": True,
        "precision": 0.2,
        "lower_rate_rps": 10,
        "upper_rate_rps": 12,
    }


def test_peak_result_at_the_rate_cap_field_by_field():
    server = FakeServer(capacity_rps=10_000)
    result = peak_under_sla(server, start_rps=5.0, sla_bound_ms=SLA_MS, precision=0.1, max_rate_rps=15.0)
    assert result.lower is result.probes[-1] and result.lower.rate_rps == 15.0
    d = json.loads(json.dumps(result.to_json()))
    assert [p["rate_rps"] for p in d.pop("probes")] == [5.0, 10.0, 15.0]
    assert d == {
        "peak_rps": 15.0,
        "peak_throughput_rps": 15.0,
        "bracketed": False,
        "precision": 0.1,
        "lower_rate_rps": 15.0,
        "upper_rate_rps": None,
    }


# ----------------------------------------------------------------------------- PERSEUS ramp

RAMP_REFUSAL = "qps_start, qps_delta and sla_bound_ms must be > 0, patience and max_passes >= 1"
GOOD_RAMP = dict(qps_start=10.0, qps_delta=10.0, sla_bound_ms=SLA_MS, patience=1, max_passes=1)


@pytest.mark.parametrize(
    "bad", [{"qps_start": 0.0}, {"qps_delta": 0.0}, {"sla_bound_ms": 0.0}, {"patience": 0}, {"max_passes": 0}],
    ids=lambda bad: next(iter(bad)),
)
def test_ramp_refuses_each_bound_on_its_own(bad):
    server = FakeServer(capacity_rps=100)
    with pytest.raises(ValueError, match=exactly(RAMP_REFUSAL)):
        perseus_ramp(server, **{**GOOD_RAMP, **bad})
    assert server.calls == []


def test_ramp_accepts_the_smallest_legal_settings():
    # patience = max_passes = 1 and an SLA under 1 ms: one pass, then the pass limit.
    probe = Scripted((10.0, 0.4))
    result = perseus_ramp(probe, **{**GOOD_RAMP, "sla_bound_ms": 0.5})
    assert probe.calls == [10.0] and result.stop_reason == STOP_MAX_PASSES and result.sla_met


@pytest.mark.parametrize(
    "second_rps, gained",
    [(149.999, False), (150.0, False), (150.001, True)],
    ids=["inside", "at", "outside"],
)
def test_a_gain_must_exceed_the_minimum_fraction(second_rps, gained):
    # min_gain_fraction 0.5 over 100 rps: the threshold 150 is exact in floating point. With
    # patience 1, a pass without gain ends the ramp; a gain lets a third pass run.
    probe = Scripted((100.0, 1.0), (second_rps, 1.0), (second_rps, 1.0))
    result = perseus_ramp(probe, 10.0, 10.0, SLA_MS, patience=1, min_gain_fraction=0.5, max_passes=3)
    assert len(probe.calls) == (3 if gained else 2)
    assert result.stop_reason == STOP_NO_GAIN


@pytest.mark.parametrize(
    "sla_ms, met", [(SLA_MS - 0.01, True), (SLA_MS, True), (SLA_MS + 0.01, False)], ids=["inside", "at", "outside"]
)
def test_the_ramp_meets_its_sla_at_the_bound(sla_ms, met):
    result = perseus_ramp(Scripted((10.0, sla_ms)), **GOOD_RAMP)
    assert result.sla_met is met


def test_ramp_result_json_field_by_field():
    result = perseus_ramp(Scripted((10.0, 1.0), (20.0, 1.0), (20.0, 1.0)), 10.0, 10.0, SLA_MS, patience=1)
    d = json.loads(json.dumps(result.to_json()))
    assert [p["rate_rps"] for p in d.pop("passes")] == [10.0, 20.0, 30.0]
    assert d == {
        "best_rate_rps": 20.0,
        "best_throughput_rps": 20.0,
        "sla_met": True,
        "stop_reason": "no_gain",
    }
