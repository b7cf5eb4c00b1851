"""Every VALID/INVALID bound exactly at, just inside and just outside, and the records' checks.

Companion of the verdict tests in test_windows.py. A run here is three 5 s windows of 400
requests each (1,200 attempts), so a count of faults is an exact fraction: 12 of 1,200 is 1%,
the default bound, and 12/1200 is the same double as 0.01 (both are the double nearest 1/100).
"""

import dataclasses
import json

import pytest

from conftest import exactly
from tfs_bench.errors import ConfigError
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.verdict import InvalidReason
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.verdict import Verdict
from tfs_bench.load.verdict import check_policy
from tfs_bench.load.verdict import windows_for
from tfs_bench.load.verdict import summarize_run
from tfs_bench.load.windows import GeneratorUsage
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import summarize_window

S = 1_000_000_000
MS = 1_000_000
POLICY = WindowPolicy()  # 5 s windows, 3 pooled, p95
BOUNDS = (0, 5 * S, 10 * S, 15 * S)
PER_WINDOW = 400
ATTEMPTS = 3 * PER_WINDOW


def record(done_ns, tenant="a", status="OK", late=False, latency_ms=10):
    intended = done_ns - latency_ms * MS
    if status == "DROPPED":
        return RequestRecord(tenant, tenant, done_ns, None, done_ns, 1, status, 0, 0)
    return RequestRecord(tenant, tenant, intended, intended + (2 * MS if late else 0), done_ns, 1, status, 8, 0)


def records_of(tenant="a", faults=0, fault=None, latency_ms=10):
    """1,200 attempts spread evenly over the three windows; `faults` of them, spread evenly too,
    made by `fault(done_ns, tenant)`."""
    step = 5 * S // PER_WINDOW
    faulty = set(range(0, ATTEMPTS, ATTEMPTS // faults)[:faults]) if faults else set()
    out = []
    for i in range(ATTEMPTS):
        done = BOUNDS[i // PER_WINDOW] + (i % PER_WINDOW) * step
        out.append(fault(done, tenant) if i in faulty else record(done, tenant, latency_ms=latency_ms))
    return out


def judge(records, criteria=ValidityCriteria(), generator=None, tenants=("a",), bounds=BOUNDS):
    offered = dict.fromkeys(tenants, 80.0)
    windows = [
        summarize_window(k, a, b, records, offered, POLICY, (generator or {}).get(k, ()))
        for k, (a, b) in enumerate(zip(bounds, bounds[1:]))
    ]
    return summarize_run(records, windows, POLICY, criteria)


def codes(result):
    return [r.code for r in result.verdict.reasons]


def unavailable(done, tenant):
    return record(done, tenant, status="UNAVAILABLE")


def late(done, tenant):
    return record(done, tenant, late=True)


def dropped(done, tenant):
    return record(done, tenant, status="DROPPED")


# ----------------------------------------------------------------------------- per-tenant bounds


@pytest.mark.parametrize("fault, code", [(unavailable, "errors"), (late, "late_sends"), (dropped, "dropped")])
@pytest.mark.parametrize("faults, invalid", [(11, False), (12, True), (13, True)], ids=["inside", "at", "outside"])
def test_error_late_and_dropped_bounds_are_reached_at_exactly_the_bound(fault, code, faults, invalid):
    result = judge(records_of(faults=faults, fault=fault))
    assert codes(result) == ([code] if invalid else [])


def test_a_drop_under_the_bound_is_no_reason():
    result = judge(records_of(faults=1, fault=dropped))
    assert result.verdict.valid and result.tenants["a"].pooled.dropped == 1


def test_exact_messages_at_the_bounds():
    errors = judge(records_of(faults=12, fault=unavailable)).verdict.reasons[0].message
    assert errors == "error rate 1.00% ≥ bound 1.00% (UNAVAILABLE: 12)"
    lateness = judge(records_of(faults=12, fault=late)).verdict.reasons[0].message
    assert lateness == "1.00% of sends were more than 1.00 ms late (bound 1.00%)"
    drops = judge(records_of(faults=12, fault=dropped)).verdict.reasons[0].message
    assert drops == "12 requests (1.00%) dropped at the outstanding-request cap (bound 1.00%)"


def test_every_error_code_is_listed_in_order():
    # 20 errors, alternately UNAVAILABLE (first) and ABORTED: listed by code, not by arrival.
    nth_error = iter(range(20))
    records = [
        dataclasses.replace(r, status_code="ABORTED") if r.status_code == "UNAVAILABLE" and next(nth_error) % 2 else r
        for r in records_of(faults=20, fault=unavailable)
    ]
    message = judge(records).verdict.reasons[0].message
    assert message == "error rate 1.67% ≥ bound 1.00% (ABORTED: 10, UNAVAILABLE: 10)"


@pytest.mark.parametrize(
    "min_requests, invalid", [(1_199, False), (1_200, False), (1_201, True)], ids=["inside", "at", "outside"]
)
def test_min_requests_is_met_by_exactly_that_many(min_requests, invalid):
    result = judge(records_of(), ValidityCriteria(min_requests=min_requests))
    assert codes(result) == (["too_few_requests"] if invalid else [])


@pytest.mark.parametrize(
    "min_duration_s, invalid", [(14.999, False), (15.0, False), (15.001, True)], ids=["inside", "at", "outside"]
)
def test_min_duration_is_met_by_exactly_that_long(min_duration_s, invalid):
    result = judge(records_of(), ValidityCriteria(min_duration_s=min_duration_s))
    assert codes(result) == (["too_short"] if invalid else [])


@pytest.mark.parametrize("min_duration_s, refused", [(15.0, False), (15.001, True)], ids=["at", "outside"])
def test_a_policy_exactly_as_long_as_the_minimum_is_accepted(min_duration_s, refused):
    criteria = ValidityCriteria(min_duration_s=min_duration_s)
    if refused:
        with pytest.raises(ConfigError, match="are shorter than the minimum duration"):
            check_policy(POLICY, criteria)
    else:
        check_policy(POLICY, criteria)  # 3 windows × 5 s = 15 s


# ----------------------------------------------------------------------------- client saturation


def test_saturated_windows_are_listed_by_index():
    usage = [GeneratorUsage(0, 4.6)]  # 92% of a core over 5 s
    message = judge(records_of(), generator={0: usage, 2: usage}).verdict.reasons[0].message
    assert message == "the load generator was CPU-bound in window(s) 0, 2 (busiest worker at 92% of a core)"


def test_a_window_marked_client_bound_without_usage_reads_zero_cpu():
    # A window read back from a file may say saturated with no generator usage recorded.
    records = records_of()
    windows = [summarize_window(k, a, b, records, {"a": 80.0}, POLICY) for k, (a, b) in enumerate(zip(BOUNDS, BOUNDS[1:]))]
    windows[1] = dataclasses.replace(windows[1], client="saturated")
    result = summarize_run(records, windows, POLICY, ValidityCriteria())
    assert [(r.code, r.message) for r in result.verdict.reasons] == [
        ("client_saturated", "the load generator was CPU-bound in window(s) 1 (busiest worker at 0% of a core)")
    ]


# ----------------------------------------------------------------------------- lost workers


def judge_lost(lost_by_window: dict[int, tuple[int, ...]]):
    records = records_of()
    windows = [
        summarize_window(k, a, b, records, {"a": 80.0}, POLICY, (), None, lost_by_window.get(k, ()))
        for k, (a, b) in enumerate(zip((-5 * S, *BOUNDS), BOUNDS))  # four windows: the first is not pooled
    ]
    return summarize_run(records, windows, POLICY, ValidityCriteria())


def test_a_worker_lost_before_a_pooled_window_ended_makes_the_run_invalid_naming_both():
    result = judge_lost({2: (1,), 3: (0, 1)})
    assert [(r.code, r.message) for r in result.verdict.reasons] == [(
        "workers_lost",
        "load worker(s) 0, 1 were lost before window(s) 2, 3 ended; their share of the load was not sent",
    )]
    assert result.tenants["a"].verdict.reasons == result.verdict.reasons  # a run reason: every tenant carries it
    assert not result.verdict.blames_the_host


def test_a_loss_only_in_a_window_that_is_not_pooled_is_no_reason():
    # Impossible in a real run (a lost worker stays lost), but the rule reads the pooled windows only.
    assert judge_lost({0: (3,)}).verdict.valid


# ----------------------------------------------------------------------------- criteria and records


def test_the_loosest_criteria_are_legal():
    # No minimum at all, and every fraction allowed up to 100%: half the requests failing is
    # then no reason (each window keeps 200 successes, so the run is still stable).
    criteria = ValidityCriteria(
        min_duration_s=0.0, min_requests=0, max_error_rate=1.0, max_late_fraction=1.0, max_dropped_fraction=1.0
    )
    result = judge(records_of(faults=600, fault=unavailable), criteria)
    assert result.verdict.valid and result.tenants["a"].pooled.error_rate == 0.5


@pytest.mark.parametrize(
    "kwargs",
    [{"min_duration_s": -0.001}, {"min_requests": -1}, {"min_duration_s": -1.0, "min_requests": -1}],
    ids=["duration", "requests", "both"],
)
def test_negative_minimums_are_refused(kwargs):
    with pytest.raises(ConfigError, match=exactly("min_duration_s and min_requests must be >= 0")):
        ValidityCriteria(**kwargs)


@pytest.mark.parametrize("name", ["max_error_rate", "max_late_fraction", "max_dropped_fraction"])
@pytest.mark.parametrize("value", [0.0, 1.5, 1.0001])
def test_fraction_bounds_outside_0_1_are_refused(name, value):
    with pytest.raises(ConfigError, match=exactly(f"{name} must be in (0, 1], got {value}")):
        ValidityCriteria(**{name: value})


def test_an_unknown_reason_code_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"^reason code must be one of \('unstable', .*\), got 'slow'$"):
        InvalidReason("slow", "x")


@pytest.mark.parametrize(
    "codes, blamed",
    [
        ((), False),
        (("client_starved",), True),
        (("late_sends",), True),
        (("client_starved", "unstable", "late_sends"), True),  # instability that followed the starved generator
        (("client_saturated",), False),  # the generator's own load: measuring again cannot help
        (("client_saturated", "late_sends"), False),
        (("client_starved", "client_saturated"), False),
        (("unstable",), False),
        (("errors", "dropped", "too_short", "too_few_requests"), False),
        (("workers_lost",), False),  # a worker gone is not a busy host
    ],
)
def test_only_a_starved_or_late_generator_that_was_not_cpu_bound_blames_the_host(codes, blamed):
    assert Verdict(tuple(InvalidReason(c, "m") for c in codes)).blames_the_host is blamed


def test_verdict_keeps_its_reasons_as_a_tuple_and_writes_them():
    reason = InvalidReason("too_short", "measured 1.0 s < minimum 10 s")
    verdict = Verdict([reason])
    assert verdict.reasons == (reason,)
    assert verdict.to_json() == {
        "valid": False,
        "reasons": [{"code": "too_short", "message": "measured 1.0 s < minimum 10 s"}],
    }
    assert Verdict().to_json() == {"valid": True, "reasons": []}


def test_run_result_keeps_tuples_and_needs_a_tenant():
    result = judge(records_of())
    again = dataclasses.replace(result, windows=list(result.windows), pooled_windows=[0, 1, 2])
    assert again.windows == result.windows and again.pooled_windows == (0, 1, 2)
    with pytest.raises(ValueError, match=exactly("a run has at least one tenant")):
        dataclasses.replace(result, tenants={})


@pytest.mark.parametrize("version, shown", [(2, "2"), (None, "None")])
def test_a_run_result_of_another_schema_is_refused_naming_it(version, shown):
    d = judge(records_of()).to_json()
    d["schema_version"] = version
    if version is None:
        del d["schema_version"]
    with pytest.raises(ValueError, match=exactly(f"unsupported run result schema_version {shown}")):
        RunResult.from_json(json.loads(json.dumps(d)))


def test_the_sla_latency_of_one_tenant_is_its_own():
    records = records_of("a", latency_ms=10) + records_of("b", latency_ms=30)
    result = judge(records, tenants=("a", "b"))
    # Every request of a takes 10 ms and of b 30 ms; together, p95 of the 2,400 is b's 30 ms.
    assert (result.sla_latency_ms("a"), result.sla_latency_ms("b"), result.sla_latency_ms()) == (10.0, 30.0, 30.0)


# ----------------------------------------------------------------------------- contiguous windows


def windows_of(records):
    return [summarize_window(k, a, b, records, {"a": 80.0}, POLICY) for k, (a, b) in enumerate(zip(BOUNDS, BOUNDS[1:]))]


def test_a_run_without_windows_is_refused():
    with pytest.raises(ValueError, match=exactly("a run needs at least one measurement window")):
        summarize_run([], [], POLICY, ValidityCriteria())


def test_windows_out_of_order_are_refused():
    records = records_of()
    windows = windows_of(records)
    with pytest.raises(ValueError, match=exactly("window 0 has index 1")):
        summarize_run(records, windows[1:], POLICY, ValidityCriteria())


def test_windows_with_other_tenants_are_refused():
    records = records_of()
    windows = windows_of(records)
    other = summarize_window(2, 10 * S, 15 * S, [], {"b": 80.0}, POLICY)
    with pytest.raises(ValueError, match=exactly("window 2 has other tenants than window 0")):
        summarize_run(records, windows[:2] + [other], POLICY, ValidityCriteria())


def test_each_window_waits_for_its_share_of_the_minimum_requests_per_tenant():
    policy = WindowPolicy(window_s=1.5, window_min_requests=20, stability_windows=3)
    raised = windows_for(policy, ValidityCriteria(min_requests=100))
    assert raised.window_min_requests == 34  # ⌈100 / 3⌉: three stable windows hold the minimum
    assert dataclasses.replace(raised, window_min_requests=20) == policy  # nothing else changes
    assert windows_for(policy, ValidityCriteria(min_requests=60)) is policy  # 20 × 3 already holds 60
    assert windows_for(policy, ValidityCriteria(min_requests=0)) is policy


# ----------------------------------------------------------------------------- a starved generator


def test_a_starved_generator_is_reported_with_its_cpu_loop_lag_and_runqueue_wait():
    # 10 ms service times: every window's timing bound is the 1 ms floor. The workers use 20% and
    # 10% of a core (not CPU-bound) while their loops lag 2.5 and 0.4 ms; their threads waited
    # 1 s and 3 s of the 5 s for a CPU (200 and 600 ms per second).
    usage = [
        GeneratorUsage(0, 1.0, loop_lag_p99_ms=2.5, runqueue_wait_s=1.0),
        GeneratorUsage(1, 0.5, loop_lag_p99_ms=0.4, runqueue_wait_s=3.0),
    ]
    result = judge(records_of(), generator={1: usage})
    assert [w.client for w in result.windows] == ["ok", "starved", "ok"]
    assert [(r.code, r.message) for r in result.verdict.reasons] == [(
        "client_starved",
        "the load generator ran late without being CPU-bound in window(s) 1 (busiest worker at 20% of a core; "
        "event-loop lag p99 up to 2.50 ms against a timing bound of 1.00 ms; "
        "its threads waited up to 600 ms per second for a CPU)",
    )]
    assert result.tenants["a"].verdict.reasons == result.verdict.reasons
    assert result.verdict.blames_the_host


# ----------------------------------------------------------------------------- what the pooled summaries carry


def test_pooled_summaries_carry_the_scheduled_arrivals_of_the_pooled_windows():
    records = records_of("a") + records_of("b")
    bounds = (-5 * S, *BOUNDS)  # four windows: the first (scheduled 999) is not pooled

    def run(scheduled_by_window):
        windows = [
            summarize_window(k, a, b, records, {"a": 80.0, "b": 80.0}, POLICY, (), scheduled_by_window[k])
            for k, (a, b) in enumerate(zip(bounds, bounds[1:]))
        ]
        return summarize_run(records, windows, POLICY, ValidityCriteria())

    known = run([{"a": 999, "b": 999}, {"a": 400, "b": 410}, {"a": 401, "b": 410}, {"a": 402, "b": 410}])
    assert (known.tenants["a"].pooled.scheduled, known.tenants["b"].pooled.scheduled) == (1203, 1230)
    assert known.aggregate.scheduled == 2433
    assert known.verdict.valid
    # b's arrivals are not known in one pooled window: b's pooled count and the aggregate's are None.
    partial = run([{"a": 999, "b": 999}, {"a": 400, "b": 410}, {"a": 401}, {"a": 402, "b": 410}])
    assert (partial.tenants["a"].pooled.scheduled, partial.tenants["b"].pooled.scheduled) == (1203, None)
    assert partial.aggregate.scheduled is None


def test_pooled_late_sends_are_judged_with_the_policys_timing_tolerance():
    # Every request takes 100 ms at the server and leaves 20 ms after its intended time: late
    # against the default bound (5% of the median, 5 ms), on time against a 50% one (50 ms).
    step = 5 * S // PER_WINDOW
    records = []
    for i in range(ATTEMPTS):
        done = BOUNDS[i // PER_WINDOW] + (i % PER_WINDOW) * step
        records.append(RequestRecord("a", "a", done - 120 * MS, done - 100 * MS, done, 1, "OK", 8, 0))

    def run(policy):
        windows = [
            summarize_window(k, a, b, records, {"a": 80.0}, policy) for k, (a, b) in enumerate(zip(BOUNDS, BOUNDS[1:]))
        ]
        return summarize_run(records, windows, policy, ValidityCriteria())

    wide = run(WindowPolicy(timing_tolerance=0.5))
    assert [(s.late, s.late_threshold_ms) for s in (wide.tenants["a"].pooled, wide.aggregate)] == [(0, 50.0), (0, 50.0)]
    assert wide.verdict.valid
    default = run(POLICY)
    assert [(s.late, s.late_threshold_ms) for s in (default.tenants["a"].pooled, default.aggregate)] == [
        (1200, 5.0), (1200, 5.0)
    ]
    assert codes(default) == ["late_sends"]
