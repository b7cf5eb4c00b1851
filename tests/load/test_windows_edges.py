"""Stability, client-bound marking and every record's validation exactly at their bounds.

Companion of test_windows.py. Records and policies are built inside each test (not in
parametrize lists), so each check runs the code under test when the test runs.
"""

import dataclasses
import json
from fractions import Fraction

import pytest

from conftest import exactly
from tfs_bench.errors import ConfigError
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.windows import GeneratorUsage
from tfs_bench.load.windows import LoadSummary
from tfs_bench.load.windows import WindowClock
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import WindowSummary
from tfs_bench.load.windows import _relative_spread
from tfs_bench.load.windows import instability_reasons
from tfs_bench.load.windows import client_state
from tfs_bench.load.windows import late_threshold_ns
from tfs_bench.load.windows import summarize_load
from tfs_bench.load.windows import summarize_window
from tfs_bench.load.windows import tenants_stable
from tfs_bench.load.windows import window_policy
from tfs_bench.stats import summarize_latencies

S = 1_000_000_000
MS = 1_000_000


def load(requests: int, p95_ms: float = 10.0) -> LoadSummary:
    """One second with `requests` successes, all taking `p95_ms` (so throughput = requests)."""
    latency = summarize_latencies([round(p95_ms * MS)] * requests)
    return LoadSummary(1.0, requests, {}, 0, 0, requests, None, latency, latency)


# ----------------------------------------------------------------------------- stability ±10%, both sides

# Three windows whose mean is 100: the first is off by the given percentage, the other two
# share the rest equally, so only the first can reach the bound.
SPREADS = {
    "+9% (inside)": ((109, 95.5, 95.5), True),
    "+10% (at)": ((110, 95, 95), True),
    "+11% (outside)": ((111, 94.5, 94.5), False),
    "-9% (inside)": ((91, 104.5, 104.5), True),
    "-10% (at)": ((90, 105, 105), True),
    "-11% (outside)": ((89, 105.5, 105.5), False),
}


@pytest.mark.parametrize("case", list(SPREADS))
def test_throughput_stability_at_each_side_of_the_tolerance(case):
    values, stable = SPREADS[case]
    # Throughput is requests per second, so whole numbers: scale by 2 (mean 200, same ratios).
    history = [load(round(2 * v)) for v in values]
    reasons = instability_reasons(history, WindowPolicy())
    assert [r.partition(" of the last")[0] for r in reasons] == ([] if stable else ["throughput"])


@pytest.mark.parametrize("case", list(SPREADS))
def test_sla_percentile_stability_at_each_side_of_the_tolerance(case):
    values, stable = SPREADS[case]
    history = [load(200, p95_ms=v / 10) for v in values]  # p95 of 10.9, 9.55, 9.55 ms and so on
    reasons = instability_reasons(history, WindowPolicy())
    assert [r.partition(" of the last")[0] for r in reasons] == ([] if stable else ["p95 response time"])


def test_the_message_gives_both_sides_of_the_spread():
    reasons = instability_reasons([load(222), load(189), load(189)], WindowPolicy())
    # Mean 200: 222 is +11.0%, 189 is −5.5%.
    assert reasons == ("throughput of the last 3 windows ranged -5.5% to +11.0% of their mean (±10% allowed)",)


def test_another_tolerance_is_compared_exactly_too():
    # ±5%: 105 and 95 around a mean of 100 are exactly at the bound, 106 is over it.
    policy = WindowPolicy(stability_tolerance=0.05)
    assert instability_reasons([load(105), load(95), load(100)], policy) == ()
    assert instability_reasons([load(106), load(94), load(100)], policy) != ()


def test_a_window_without_success_is_reported_once_the_throughput_is_judged():
    # Throughput (two windows of 100, one of 0) is judged as well as the missing p95.
    reasons = instability_reasons([load(100), load(100), load(0)], WindowPolicy())
    assert reasons == (
        "throughput of the last 3 windows ranged -100.0% to +50.0% of their mean (±10% allowed)",
        "p95 response time: a window among the last 3 had no successful request",
    )


def test_no_windows_are_never_stable():
    assert tenants_stable([], WindowPolicy()) is False


# ----------------------------------------------------------------------------- the generator's state


@pytest.mark.parametrize(
    "cpu_s, state",
    [(4.45, "ok"), (4.5, "saturated"), (4.55, "saturated"), (1.0, "ok")],
    ids=["inside", "at", "outside", "low"],
)
def test_client_cpu_saturation_is_per_second_of_the_window(cpu_s, state):
    # 5 s windows: 4.5 CPU-seconds is 90% of a core, the bound; 1 CPU-second is 20%.
    assert client_state([GeneratorUsage(0, cpu_s)], 5.0, 1.0, WindowPolicy()) == state


@pytest.mark.parametrize(
    "lag_ms, bound_ms, state",
    [(0.99, 1.0, "ok"), (1.0, 1.0, "ok"), (1.01, 1.0, "starved"), (24.9, 25.0, "ok"), (25.1, 25.0, "starved")],
    ids=["inside", "at", "outside", "inside a relative bound", "outside a relative bound"],
)
def test_event_loop_lag_beyond_the_timing_bound_is_starvation(lag_ms, bound_ms, state):
    assert client_state([GeneratorUsage(0, 0.0, loop_lag_p99_ms=lag_ms)], 5.0, bound_ms, WindowPolicy()) == state


def test_a_cpu_bound_generator_is_saturated_whatever_its_lag():
    usage = [GeneratorUsage(0, 0.1, loop_lag_p99_ms=9.0), GeneratorUsage(1, 4.6, loop_lag_p99_ms=0.1)]
    assert client_state(usage, 5.0, 1.0, WindowPolicy()) == "saturated"


def test_the_timing_bound_is_1_ms_or_5_percent_of_the_median_service_time():
    # Service times 10, 20 and 30 ms: the median is 20 ms, 5% of it is 1 ms, exactly the floor;
    # 100, 200, 300 ms give 10 ms. A send 10 ms late is late against the first, not the second.
    def records(scale):
        return [RequestRecord("m", "a", i * S, i * S + 10 * MS + 1, i * S + 10 * MS + 1 + scale * k * MS, 1, "OK", 8, 0)
                for i, k in enumerate((1, 2, 3))]
    fast = summarize_window(0, 0, 10 * S, records(10), {"a": None}, WindowPolicy())
    slow = summarize_window(0, 0, 10 * S, records(100), {"a": None}, WindowPolicy())
    assert (fast.tenants["a"].late_threshold_ms, fast.tenants["a"].late) == (1.0, 3)
    assert (slow.tenants["a"].late_threshold_ms, slow.tenants["a"].late) == (10.0, 3)
    assert fast.timing_bound_ms == 1.0 and slow.timing_bound_ms == 10.0


# ----------------------------------------------------------------------------- window_policy


@pytest.mark.parametrize("window_s, window_max_s", [(2.0, 30.0), (5.0, 30.0), (10.0, 60.0)])
def test_window_policy_caps_a_window_at_six_times_its_length_but_never_below_30_s(window_s, window_max_s):
    policy = window_policy(window_s=window_s, warmup_s=1.5, window_min_requests=7, max_windows=4,
                           sla_percentile=99.0, stability_tolerance=0.2)
    assert policy == WindowPolicy(window_s=window_s, window_min_requests=7, window_max_s=window_max_s, warmup_s=1.5,
                                  max_windows=4, sla_percentile=99.0, stability_tolerance=0.2)


def test_window_policy_defaults_are_the_policys():
    assert window_policy() == WindowPolicy()


# ----------------------------------------------------------------------------- policy bounds


def test_the_tightest_legal_policy():
    # Windows under 1 s, a window as long as its cap, no minimum requests, one window judged
    # (and at most one), a tolerance just under 1, saturation only at a whole core.
    policy = WindowPolicy(window_s=0.5, window_max_s=0.5, window_min_requests=0, warmup_requests=0, warmup_s=0.0,
                          stability_windows=1, max_windows=1, stability_tolerance=0.999, client_cpu_saturation=1.0)
    assert (policy.window_s, policy.max_windows) == (0.5, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window_s": 0.0}, "need 0 < window_s <= window_max_s, got 0.0 and 30.0"),
        ({"window_s": 30.5}, "need 0 < window_s <= window_max_s, got 30.5 and 30.0"),
        ({"window_min_requests": -1}, "warm-up and window minimums must be >= 0"),
        ({"warmup_requests": -1}, "warm-up and window minimums must be >= 0"),
        ({"warmup_s": -0.1}, "warm-up and window minimums must be >= 0"),
        ({"stability_windows": 0}, "stability_windows must be >= 1, got 0"),
        (
            {"stability_windows": 4, "max_windows": 3},
            "max_windows must be at least 4 (stability compares the last 4 windows), got 3",
        ),
        ({"stability_tolerance": 0.0}, "stability_tolerance must be in (0, 1), got 0.0"),
        ({"stability_tolerance": 1.0}, "stability_tolerance must be in (0, 1), got 1.0"),
        ({"stability_tolerance": 1.5}, "stability_tolerance must be in (0, 1), got 1.5"),
        ({"client_cpu_saturation": 0.0}, "client_cpu_saturation must be in (0, 1], got 0.0"),
        ({"client_cpu_saturation": 1.5}, "client_cpu_saturation must be in (0, 1], got 1.5"),
        (
            {"sla_percentile": 97.0},
            "sla_percentile: percentile 97.0 is not reported; choose one of (50.0, 90.0, 95.0, 99.0, 99.9)",
        ),
    ],
)
def test_each_policy_bound_on_its_own(kwargs, message):
    with pytest.raises(ConfigError, match=exactly(message)):
        WindowPolicy(**kwargs)


def test_as_many_windows_as_stability_compares_is_enough():
    assert WindowPolicy(stability_windows=3, max_windows=3).max_windows == 3


# ----------------------------------------------------------------------------- generator usage


def test_idle_generator_usage_is_plausible():
    assert GeneratorUsage(0, 0.0).loop_lag_p99_ms is None
    assert GeneratorUsage(0, 0.0, loop_lag_p99_ms=0.0).loop_lag_p99_ms == 0.0


@pytest.mark.parametrize(
    "args", [(-1, 1.0, None), (0, -0.5, None), (0, 1.0, -0.1), (-1, -0.5, -0.1)], ids=["worker", "cpu", "lag", "all"]
)
def test_each_implausible_generator_usage_is_refused(args):
    with pytest.raises(ValueError, match=r"^implausible generator usage: GeneratorUsage\(worker="):
        GeneratorUsage(*args)


# ----------------------------------------------------------------------------- load summaries


def test_a_load_summary_needs_a_duration():
    empty = summarize_latencies([])
    with pytest.raises(ValueError, match=exactly("duration_s must be > 0, got 0.0")):
        LoadSummary(0.0, 0, {}, 0, 0, 0, None, empty, empty)


@pytest.mark.parametrize("field", ["requests", "dropped", "late", "inferences"])
def test_each_negative_count_is_refused(field):
    ok = load(1)
    with pytest.raises(ValueError, match=r"^counts must be >= 0: LoadSummary\("):
        dataclasses.replace(ok, **{field: -1})


@pytest.mark.parametrize(
    "errors, shown", [({"OK": 1}, "OK: 1"), ({"BOGUS": 1}, "BOGUS: 1"), ({"ABORTED": 0}, "ABORTED: 0")]
)
def test_errors_by_code_hold_real_non_ok_codes_that_happened(errors, shown):
    with pytest.raises(ValueError, match=exactly(f"errors_by_code holds non-OK gRPC codes with counts >= 1, got {shown}")):
        dataclasses.replace(load(1), errors_by_code=errors)


def test_more_late_sends_than_sends_is_refused():
    with pytest.raises(ValueError, match=exactly("more late sends than sends")):
        dataclasses.replace(load(1), late=2)
    assert dataclasses.replace(load(1), late=1).late_fraction == 1.0  # every send late is possible


@pytest.mark.parametrize("field", ["response_time", "service_time"])
def test_each_latency_summary_must_cover_the_successes(field):
    with pytest.raises(ValueError, match=exactly("latency summaries must cover exactly the successful requests")):
        dataclasses.replace(load(2), **{field: summarize_latencies([MS])})


# ----------------------------------------------------------------------------- windows


def window(**overrides) -> WindowSummary:
    fields = dict(index=0, start_ns=0, end_ns=S, tenants={"a": load(1)}, aggregate=load(1), generator=(),
                  client="ok")
    return WindowSummary(**{**fields, **overrides})


@pytest.mark.parametrize(
    "overrides, message",
    [({"index": -1}, "window -1 needs start_ns < end_ns"), ({"end_ns": 0}, "window 0 needs start_ns < end_ns")],
)
def test_a_window_needs_an_index_and_a_length(overrides, message):
    with pytest.raises(ValueError, match=exactly(message)):
        window(**overrides)


def test_a_window_needs_a_tenant():
    with pytest.raises(ValueError, match=exactly("a window summarises at least one tenant")):
        window(tenants={})


def test_a_window_keeps_its_generator_usage_as_a_tuple():
    usage = GeneratorUsage(0, 0.5)
    assert window(generator=[usage]).generator == (usage,)


@pytest.mark.parametrize("version, shown", [(1, "1"), (None, "None")])
def test_a_window_of_another_schema_is_refused_naming_it(version, shown):
    d = summarize_window(0, 0, S, [], {"a": None}, WindowPolicy()).to_json()
    if version is None:
        del d["schema_version"]
    else:
        d["schema_version"] = version
    with pytest.raises(ValueError, match=exactly(f"unsupported window summary schema_version {shown}")):
        WindowSummary.from_json(json.loads(json.dumps(d)))


# ----------------------------------------------------------------------------- the clock


class FakeClock:
    def __init__(self):
        self.now_ns = 0

    def __call__(self):
        return self.now_ns


def test_the_clock_knows_no_warmup_end_until_warmup_ends():
    clock = FakeClock()
    windows = WindowClock(WindowPolicy(), clock)
    windows.start()
    assert windows.warmup_end_ns is None and windows.tick(0) is None and windows.warmup_end_ns is None
    clock.now_ns = 2 * S
    assert windows.tick(0).kind == "warmup_end" and windows.warmup_end_ns == 2 * S


def test_starting_twice_and_ticking_before_start_are_refused_by_name():
    windows = WindowClock(WindowPolicy(), FakeClock())
    with pytest.raises(RuntimeError, match=exactly("tick before start()")):
        windows.tick(0)
    windows.start()
    with pytest.raises(RuntimeError, match=exactly("WindowClock already started")):
        windows.start()


# ----------------------------------------------------------------------------- lost workers


def _ok_window(lost=()):
    records = [RequestRecord("a", "a", k * MS, k * MS, k * MS + MS, 1, "OK", 8, 0) for k in range(10)]
    return summarize_window(0, 0, 5 * S, records, {"a": 80.0}, WindowPolicy(), (), None, lost)


def test_a_window_keeps_its_lost_workers_through_json_and_reads_files_from_before_them():
    window = _ok_window([1, 4])
    assert window.lost_workers == (1, 4)
    written = window.to_json()
    assert written["lost_workers"] == [1, 4]
    assert WindowSummary.from_json(json.loads(json.dumps(written))) == window
    del written["lost_workers"]  # windows.jsonl written before workers could be lost
    assert WindowSummary.from_json(written).lost_workers == ()
    assert _ok_window().to_json()["lost_workers"] == []


@pytest.mark.parametrize("lost", [(2, 1), (1, 1), (-1,), (0, 0)])
def test_lost_workers_out_of_order_repeated_or_negative_are_refused(lost):
    with pytest.raises(ValueError, match=r"^lost_workers must be distinct worker indices in order, got "):
        dataclasses.replace(_ok_window(), lost_workers=lost)


def test_a_lost_worker_list_in_order_is_kept_as_a_tuple():
    assert dataclasses.replace(_ok_window(), lost_workers=[0, 3]).lost_workers == (0, 3)


# ----------------------------------------------------------------------------- fields added later: exact bounds and JSON


def test_generator_usage_writes_and_reads_its_runqueue_wait():
    usage = GeneratorUsage(2, 1.5, loop_lag_p99_ms=3.25, runqueue_wait_s=0.75)
    written = usage.to_json()
    assert written == {"worker": 2, "cpu_s": 1.5, "loop_lag_p99_ms": 3.25, "runqueue_wait_s": 0.75}
    assert GeneratorUsage.from_json(json.loads(json.dumps(written))) == usage
    del written["runqueue_wait_s"]  # written before the run-queue wait was measured
    assert GeneratorUsage.from_json(written) == GeneratorUsage(2, 1.5, loop_lag_p99_ms=3.25, runqueue_wait_s=None)


def test_scheduled_may_be_zero_but_not_negative():
    assert dataclasses.replace(load(1), scheduled=0).scheduled == 0  # a window in which no arrival was due
    with pytest.raises(ValueError, match=exactly("scheduled must be >= 0, got -1")):
        dataclasses.replace(load(1), scheduled=-1)


def test_the_late_threshold_is_at_least_exactly_1_ms():
    assert dataclasses.replace(load(1), late_threshold_ms=1.0).late_threshold_ms == 1.0
    with pytest.raises(ValueError, match=exactly("late_threshold_ms must be at least 1 ms, got 0.9999995")):
        dataclasses.replace(load(1), late_threshold_ms=0.9999995)


def test_a_load_summary_writes_and_reads_its_schedule_and_late_threshold():
    summary = dataclasses.replace(load(3), scheduled=4, late_threshold_ms=2.5)
    written = summary.to_json()
    assert list(written) == [
        "duration_s", "requests", "errors", "errors_by_code", "dropped", "late", "inferences", "offered_rate_rps",
        "scheduled", "late_threshold_ms", "achieved_rate_rps", "throughput_rps", "inferences_per_s", "error_rate",
        "late_fraction", "dropped_fraction", "response_time", "service_time",
    ]
    assert (written["scheduled"], written["late_threshold_ms"]) == (4, 2.5)
    assert LoadSummary.from_json(json.loads(json.dumps(written))) == summary
    del written["scheduled"], written["late_threshold_ms"]  # written before either field existed
    old = LoadSummary.from_json(written)
    assert old.scheduled is None and old.late_threshold_ms == 1.0
    assert old == dataclasses.replace(summary, scheduled=None, late_threshold_ms=1.0)


def test_timing_tolerance_may_be_zero_but_must_stay_under_one():
    assert WindowPolicy(timing_tolerance=0.0).timing_tolerance == 0.0  # the bound is then 1 ms
    for value in (1.0, 1.5, -0.01):
        with pytest.raises(ConfigError, match=exactly(f"timing_tolerance must be in [0, 1), got {value}")):
            WindowPolicy(timing_tolerance=value)


def test_a_policy_written_before_timing_tolerance_reads_the_default_and_every_other_field_is_required():
    policy = WindowPolicy(window_s=4.0, timing_tolerance=0.2)
    written = policy.to_json()
    assert WindowPolicy.from_json(json.loads(json.dumps(written))) == policy
    assert WindowPolicy.from_json(written).timing_tolerance == 0.2
    del written["timing_tolerance"]
    assert WindowPolicy.from_json(written) == dataclasses.replace(policy, timing_tolerance=0.05)
    written = WindowPolicy().to_json()
    del written["window_s"]
    with pytest.raises(KeyError, match=exactly("'window_s'")):
        WindowPolicy.from_json(written)


def test_an_unknown_client_state_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match=exactly("client state must be one of ('ok', 'saturated', 'starved'), got 'busy'")):
        window(client="busy")


def test_a_saturated_window_writes_that_it_was_client_bound_and_reads_back_unchanged():
    records = [RequestRecord("a", "a", k * MS, k * MS, k * MS + MS, 1, "OK", 8, 0) for k in range(10)]
    saturated = summarize_window(0, 0, 5 * S, records, {"a": 80.0}, WindowPolicy(),
                                 [GeneratorUsage(0, 4.6, loop_lag_p99_ms=0.5, runqueue_wait_s=0.25)])
    assert saturated.client == "saturated"
    written = saturated.to_json()
    assert list(written) == ["schema_version", "index", "start_ns", "end_ns", "client", "client_bound", "generator",
                             "lost_workers", "aggregate", "tenants"]
    assert (written["client"], written["client_bound"]) == ("saturated", True)
    assert WindowSummary.from_json(json.loads(json.dumps(written))) == saturated
    assert (_ok_window().to_json()["client"], _ok_window().to_json()["client_bound"]) == ("ok", False)


# ----------------------------------------------------------------------------- scheduled arrivals and the timing tolerance


def _sent(tenant, k, delay_ms, service_ms):
    """The k-th request of `tenant`, intended at k ms, sent `delay_ms` later, taking `service_ms`."""
    intended = k * MS
    return RequestRecord(tenant, tenant, intended, intended + delay_ms * MS, intended + (delay_ms + service_ms) * MS,
                         1, "OK", 8, 0)


def test_each_tenant_keeps_its_scheduled_arrivals_and_the_aggregate_their_sum():
    records = [_sent("a", k, 0, 10) for k in range(3)] + [_sent("b", k, 0, 10) for k in range(2)]
    rates = {"a": 1.0, "b": 2.0}
    both = summarize_window(0, 0, 5 * S, records, rates, WindowPolicy(), (), {"a": 4, "b": 7})
    assert (both.tenants["a"].scheduled, both.tenants["b"].scheduled, both.aggregate.scheduled) == (4, 7, 11)
    assert both.tenants["a"].completion_ratio == 0.75
    one = summarize_window(0, 0, 5 * S, records, rates, WindowPolicy(), (), {"a": 4})
    assert (one.tenants["a"].scheduled, one.tenants["b"].scheduled, one.aggregate.scheduled) == (4, None, None)
    assert summarize_load(records, 5 * S, 3.0, 6).scheduled == 6


def test_the_policys_timing_tolerance_sets_every_tenants_and_the_aggregates_late_threshold():
    # Service times of 100 ms: the bound is 5 ms at the default 5%, 50 ms at 50%. Tenant a's
    # sends leave 20 ms late, b's on time.
    records = [_sent("a", k, 20, 100) for k in range(2)] + [_sent("b", k, 0, 100) for k in range(2)]
    rates = {"a": None, "b": None}
    wide = summarize_window(0, 0, 5 * S, records, rates, WindowPolicy(timing_tolerance=0.5))
    default = summarize_window(0, 0, 5 * S, records, rates, WindowPolicy())
    assert [(s.late, s.late_threshold_ms) for s in (wide.tenants["a"], wide.tenants["b"], wide.aggregate)] == [
        (0, 50.0), (0, 50.0), (0, 50.0)
    ]
    assert [(s.late, s.late_threshold_ms) for s in (default.tenants["a"], default.tenants["b"], default.aggregate)] == [
        (2, 5.0), (0, 5.0), (2, 5.0)
    ]


def test_the_late_threshold_uses_the_nearest_rank_median():
    # Of two samples the nearest-rank p50 is the first (rank ⌈0.5·2⌉ = 1): 5% of 100 ms, not of 300 ms.
    records = [_sent("a", 0, 0, 300), _sent("a", 1, 0, 100)]
    assert late_threshold_ns(records, 0.05) == 5_000_000
    assert late_threshold_ns([], 0.05) == 1_000_000


def test_an_unstable_completion_ratio_is_reported_per_scheduled_arrival():
    # 100 completions in each window: throughput is steady, but of 100, 100 and 150 arrivals
    # scheduled, so the ratios 1, 1 and 2/3 range -25% to +12.5% around their mean of 8/9.
    history = [dataclasses.replace(load(100), scheduled=n) for n in (100, 100, 150)]
    assert instability_reasons(history, WindowPolicy()) == (
        "throughput per scheduled arrival of the last 3 windows ranged -25.0% to +12.5% of their mean (±10% allowed)",
    )
    assert instability_reasons([load(100)] * 3, WindowPolicy()) == ()


def test_the_relative_spread_of_points_and_intervals_exactly():
    F = Fraction
    # The mean is of the points, not of the intervals' low ends: both windows cover 3.
    assert _relative_spread([(3, 1, 3), (3, 3, 3)]) == (F(0), F(0))
    # All-zero points do not spread.
    assert _relative_spread([(0, 0, 0)] * 3) == (F(0), F(0))
    # A mean of exactly 1 spreads like any other.
    assert _relative_spread([(0.5, 0.5, 0.5), (1, 1, 1), (1.5, 1.5, 1.5)]) == (F(-1, 2), F(1, 2))
    # Mean 2: an interval wholly below it counts from its high end (1.5/2 − 1), one above from its low end.
    assert _relative_spread([(1, 0.5, 1.5), (3, 3, 3)]) == (F(-1, 4), F(1, 2))
    # Mean 2: an interval that covers it counts 0.
    assert _relative_spread([(1, 1, 3), (3, 3, 3)]) == (F(0), F(1, 2))
