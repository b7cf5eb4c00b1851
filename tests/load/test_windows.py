import dataclasses
import json
import math

import pytest

from tfs_bench.errors import ConfigError
from tfs_bench.metric_registry import METRICS
from tfs_bench.load.records import RequestRecord
from tfs_bench.stats import LatencySummary
from tfs_bench.stats import summarize_latencies
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.verdict import check_policy
from tfs_bench.load.verdict import summarize_run
from tfs_bench.load.windows import STOP_MAX_WINDOWS
from tfs_bench.load.windows import STOP_STABLE
from tfs_bench.load.windows import WARMUP_END
from tfs_bench.load.windows import WINDOW_END
from tfs_bench.load.windows import Boundary
from tfs_bench.load.windows import GeneratorUsage
from tfs_bench.load.windows import LoadSummary
from tfs_bench.load.windows import WindowClock
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import WindowSummary
from tfs_bench.load.windows import instability_reasons
from tfs_bench.load.windows import records_between
from tfs_bench.load.windows import summarize_load
from tfs_bench.load.windows import summarize_window

S = 1_000_000_000
MS = 1_000_000
POLICY = WindowPolicy()  # 5 s windows, 3 for stability, SLA percentile 95


def req(done_ns, tenant="a", latency_ns=10 * MS, status="OK", late_ns=0, batch=1, worker=0) -> RequestRecord:
    intended = done_ns - latency_ns
    return RequestRecord(tenant, tenant, intended, intended + late_ns, done_ns, batch, status, 100, worker)


def drop(done_ns, tenant="a") -> RequestRecord:
    return RequestRecord(tenant, tenant, done_ns, None, done_ns, 1, "DROPPED", 0, 0)


def steady(start_ns, end_ns, count, tenant="a", fault=None) -> list[RequestRecord]:
    """`count` requests completing evenly over [start, end), latency 10..19 ms; every 50th one faulty."""
    step = (end_ns - start_ns) // count
    records = []
    for i in range(count):
        done = start_ns + i * step
        if fault and i % 50 == 25:
            records.append(fault(done, tenant))
        else:
            records.append(req(done, tenant, latency_ns=(10 + i % 10) * MS))
    return records


class FakeClock:
    def __init__(self, now_ns: int = 0):
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


# ----------------------------------------------------------------------------- assignment


def test_a_request_belongs_to_the_window_in_which_it_completes():
    bounds = [2 * S, 7 * S, 12 * S]
    warmup = req(2 * S - 1)
    first = [req(2 * S), req(7 * S - 1, latency_ns=6 * S)]  # sent during warm-up, done in window 0
    second = [req(7 * S), req(12 * S - 1)]
    after = req(12 * S)
    records = [warmup, *first, *second, after]
    assert [records_between(records, a, b) for a, b in zip(bounds, bounds[1:])] == [first, second]


# ----------------------------------------------------------------------------- one window


def test_window_summary_known_answer():
    records = [
        req(2 * S + 1, latency_ns=1 * MS),
        req(2 * S + 2, latency_ns=2 * MS, batch=8),
        req(2 * S + 3, latency_ns=3 * MS, late_ns=2 * MS),  # late: sent 2 ms after intended
        req(2 * S + 4, latency_ns=4 * MS),
        req(2 * S + 5, status="UNAVAILABLE"),
        req(2 * S + 6, status="UNAVAILABLE", late_ns=5 * MS),
        req(2 * S + 7, status="DEADLINE_EXCEEDED"),
        drop(2 * S + 8),
        req(4 * S, latency_ns=99 * MS),  # the next window's
    ]
    w = summarize_window(0, 2 * S, 4 * S, records, {"a": 5.0}, POLICY)
    a = w.tenants["a"]
    assert (a.requests, a.errors, a.sent, a.dropped, a.late, a.inferences) == (4, 3, 7, 1, 2, 11)
    assert a.errors_by_code == {"DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 2}
    assert a.duration_s == 2.0 and w.duration_s == 2.0
    assert a.throughput_rps == 2.0  # OK requests ÷ window time
    assert a.inferences_per_s == 5.5
    assert a.achieved_rate_rps == 3.5 and a.offered_rate_rps == 5.0
    assert a.error_rate == 3 / 7 and a.late_fraction == 2 / 7 and a.dropped_fraction == 1 / 8
    assert a.response_time == summarize_latencies([1 * MS, 2 * MS, 3 * MS, 4 * MS])
    assert a.service_time == summarize_latencies([1 * MS, 2 * MS, 1 * MS, 4 * MS])
    assert a.response_time.p50_ms == 2.0 and a.service_time.p50_ms == 1.0
    assert w.aggregate == a
    assert not w.client_bound


def test_window_summarises_every_tenant_and_all_together():
    records = [req(S + i, "a") for i in range(3)] + [req(S + 10, "b", status="INTERNAL")]
    w = summarize_window(0, S, 2 * S, records, {"a": 10.0, "b": None, "c": 1.0}, POLICY)
    assert [w.tenants[t].requests for t in "abc"] == [3, 0, 0]
    assert w.tenants["b"].errors_by_code == {"INTERNAL": 1}
    assert w.tenants["c"].response_time.count == 0 and w.tenants["c"].response_time.p95_ms is None
    assert w.aggregate.requests == 3 and w.aggregate.errors == 1
    assert w.aggregate.offered_rate_rps is None  # b runs closed loop


def test_record_of_an_unknown_tenant_is_refused():
    with pytest.raises(ValueError, match="unknown tenant 'z'"):
        summarize_window(0, 0, S, [req(10, "z")], {"a": None}, POLICY)


@pytest.mark.parametrize(
    "usage, state",
    [
        ([GeneratorUsage(0, 0.5)], "ok"),
        ([GeneratorUsage(0, 0.5), GeneratorUsage(1, 0.9)], "saturated"),  # one worker at 90% of a core
        ([GeneratorUsage(0, 0.89, loop_lag_p99_ms=0.99)], "ok"),
        ([GeneratorUsage(0, 0.1, loop_lag_p99_ms=1.0)], "ok"),  # lag at the 1 ms bound, not beyond it
        ([GeneratorUsage(0, 0.1, loop_lag_p99_ms=1.01)], "starved"),  # late beyond the bound, not CPU-bound
    ],
)
def test_client_bound_windows(usage, state):
    window = summarize_window(0, 0, S, [], {"a": None}, POLICY, usage)
    assert (window.client, window.client_bound) == (state, state != "ok")


def test_window_summary_json_round_trip():
    records = steady(0, 5 * S, 100, fault=lambda t, tenant: req(t, tenant, status="ABORTED"))
    w = summarize_window(0, 0, 5 * S, records, {"a": 20.0}, POLICY, [GeneratorUsage(0, 1.5, 0.2)])
    assert WindowSummary.from_json(json.loads(json.dumps(w.to_json()))) == w


def test_every_number_a_summary_reports_is_a_registered_metric():
    summary = summarize_load([req(5)], S, 1.0).to_json()
    numbers = {k for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    numbers |= set(summary["response_time"]) - {"count", "bounds_ms"}
    assert set(summary["response_time"]["bounds_ms"]) <= set(METRICS)
    assert numbers - {"late", "inferences"} <= set(METRICS)


# ----------------------------------------------------------------------------- stability


def fake_load(throughput_rps: float, p95_ms: float | None) -> LoadSummary:
    n = round(throughput_rps)
    latency = summarize_latencies([round(p95_ms * MS)] * n) if p95_ms is not None else summarize_latencies([])
    return LoadSummary(1.0, n, {}, 0, 0, n, None, latency, latency)


@pytest.mark.parametrize(
    "history, expected",
    [
        ([(100, 10.0), (105, 10.5), (95, 9.5)], ()),
        ([(300, 50.0), (100, 10.0), (105, 10.5), (95, 9.5)], ()),  # only the last 3 count
        ([(100, 10.0), (100, 10.0)], ("only 2 measurement window(s); stability needs 3",)),
        (
            [(100, 10.0), (100, 10.0), (130, 10.0)],
            ("throughput of the last 3 windows ranged -9.1% to +18.2% of their mean (±10% allowed)",),
        ),
        (
            [(100, 10.0), (100, 10.0), (100, 14.0)],
            ("p95 response time of the last 3 windows ranged -11.8% to +23.5% of their mean, even at the near end of "
             "each window's 95% confidence interval (±10% allowed)",),
        ),
        (
            [(100, 10.0), (0, None), (100, 10.0)],
            (
                "throughput of the last 3 windows ranged -100.0% to +50.0% of their mean (±10% allowed)",
                "p95 response time: a window among the last 3 had no successful request",
            ),
        ),
        ([(0, None), (0, None), (0, None)], ("p95 response time: a window among the last 3 had no successful request",)),
    ],
)
def test_stability_on_throughput_and_the_sla_percentile(history, expected):
    assert instability_reasons([fake_load(*h) for h in history], POLICY) == expected


# ----------------------------------------------------------------------------- the clock


def window_of(boundary: Boundary, rate_by_tenant: dict[str, int]) -> WindowSummary:
    records = []
    for tenant, count in rate_by_tenant.items():
        records += steady(boundary.start_ns, boundary.end_ns, count, tenant)
    return summarize_window(
        boundary.index, boundary.start_ns, boundary.end_ns, records, dict.fromkeys(rate_by_tenant), POLICY
    )


def test_clock_ends_warmup_then_windows_after_their_time_and_minimum_requests():
    clock = FakeClock(100 * S)
    wc = WindowClock(POLICY, clock)
    assert wc.start() == 100 * S
    clock.now_ns = 101 * S
    assert wc.tick(1_000) is None  # warm-up lasts 2 s
    clock.now_ns = 102 * S
    assert wc.tick(0) == Boundary(WARMUP_END, -1, 100 * S, 102 * S)
    assert wc.warmup_end_ns == 102 * S
    clock.now_ns = 107 * S - 1
    assert wc.tick(500) is None  # not 5 s yet
    clock.now_ns = 107 * S
    assert wc.tick(49) is None  # 5 s, but fewer than 50 requests
    clock.now_ns = 107 * S + 500 * MS
    boundary = wc.tick(50)
    assert boundary == Boundary(WINDOW_END, 0, 102 * S, 107 * S + 500 * MS)
    with pytest.raises(RuntimeError, match="close_window"):
        wc.tick(50)
    assert wc.close_window(window_of(boundary, {"a": 500})) is False
    clock.now_ns += 5 * S
    assert wc.tick(50) == Boundary(WINDOW_END, 1, 107 * S + 500 * MS, 112 * S + 500 * MS)


def drive(wc: WindowClock, clock: FakeClock, counts: list[dict[str, int]]) -> int:
    """Runs windows of 5 s with the given requests per tenant until the clock says stop."""
    wc.start()
    clock.now_ns += 2 * S
    assert wc.tick(0).kind == WARMUP_END
    for k, count in enumerate(counts):
        clock.now_ns += 5 * S
        boundary = wc.tick(min(count.values()))
        if wc.close_window(window_of(boundary, count)):
            return k + 1
    raise AssertionError("the clock never said stop")


def test_clock_stops_when_stable():
    clock = FakeClock()
    wc = WindowClock(POLICY, clock)
    # Windows 0-2 (900, 500, 520) are not stable; windows 1-3 (500, 520, 480) are.
    assert drive(wc, clock, [{"a": n} for n in (900, 500, 520, 480, 500)]) == 4
    assert wc.stop_reason == STOP_STABLE
    assert [w.tenants["a"].requests for w in wc.windows] == [900, 500, 520, 480]
    assert [w.start_ns for w in wc.windows] == [2 * S, 7 * S, 12 * S, 17 * S]
    clock.now_ns += 100 * S
    assert wc.tick(10_000) is None


def test_clock_stops_at_max_windows_when_never_stable():
    clock = FakeClock()
    wc = WindowClock(dataclasses.replace(POLICY, max_windows=4), clock)
    assert drive(wc, clock, [{"a": n} for n in (100, 200, 100, 200, 100)]) == 4
    assert wc.stop_reason == STOP_MAX_WINDOWS


def test_all_tenants_stop_together_when_every_tenant_is_stable():
    clock = FakeClock()
    wc = WindowClock(POLICY, clock)
    a = [500] * 6
    b = [100, 200, 100, 100, 100, 100]  # stable from windows 2-4 on
    assert drive(wc, clock, [{"a": x, "b": y} for x, y in zip(a, b)]) == 5
    assert wc.stop_reason == STOP_STABLE


def test_a_stalled_window_ends_at_window_max_s():
    clock = FakeClock()
    wc = WindowClock(POLICY, clock)
    wc.start()
    clock.now_ns = 2 * S
    wc.tick(0)
    clock.now_ns = 32 * S - 1
    assert wc.tick(0) is None
    clock.now_ns = 32 * S
    assert wc.tick(0) == Boundary(WINDOW_END, 0, 2 * S, 32 * S)


def test_warmup_by_requests():
    clock = FakeClock()
    wc = WindowClock(dataclasses.replace(POLICY, warmup_s=0.0, warmup_requests=100), clock)
    wc.start()
    clock.now_ns = 10 * S
    assert wc.tick(99) is None
    assert wc.tick(100) == Boundary(WARMUP_END, -1, 0, 10 * S)


def test_closing_another_window_than_the_one_that_ended_is_refused():
    clock = FakeClock()
    wc = WindowClock(POLICY, clock)
    wc.start()
    clock.now_ns = 2 * S
    wc.tick(0)
    clock.now_ns = 7 * S
    boundary = wc.tick(50)
    wrong = dataclasses.replace(boundary, end_ns=boundary.end_ns - 1)
    with pytest.raises(ValueError, match="not the one that ended"):
        wc.close_window(window_of(wrong, {"a": 50}))


def test_tick_before_start_is_refused():
    with pytest.raises(RuntimeError, match="before start"):
        WindowClock(POLICY, FakeClock()).tick(0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(window_s=0.0), dict(window_s=40.0), dict(stability_windows=11), dict(sla_percentile=97.0)],
)
def test_bad_policies_are_refused(kwargs):
    with pytest.raises(ConfigError):
        WindowPolicy(**kwargs)


# ----------------------------------------------------------------------------- pooled result and verdict

BOUNDS = [2 * S, 7 * S, 12 * S, 17 * S]


def run(fault=None, counts=(500, 500, 500), generator=None, criteria=ValidityCriteria(), bounds=BOUNDS, tenants=("a",)):
    records = steady(0, bounds[0], 300, "a")  # warm-up
    for tenant in tenants:
        for k, count in enumerate(counts):
            faulty = fault if tenant == tenants[-1] else None
            records += steady(bounds[k], bounds[k + 1], count, tenant, faulty)
    offered = dict.fromkeys(tenants, 100.0)
    windows = [
        summarize_window(k, a, b, records, offered, POLICY, (generator or {}).get(k, ()))
        for k, (a, b) in enumerate(zip(bounds, bounds[1:]))
    ]
    return records, summarize_run(records, windows, POLICY, criteria)


def test_a_steady_run_is_valid_and_pools_its_raw_samples():
    records, result = run()
    assert result.verdict.valid and result.verdict.label == "VALID"
    assert result.pooled_windows == (0, 1, 2)
    pooled = result.tenants["a"].pooled
    assert pooled.requests == 1500 and pooled.duration_s == 15.0 and pooled.throughput_rps == 100.0
    measured = [r for r in records if 2 * S <= r.done_ns < 17 * S]
    assert pooled.response_time == summarize_latencies(r.response_time_ns for r in measured)
    assert result.sla_latency_ms() == result.sla_latency_ms("a") == pooled.response_time.p95_ms
    assert result.aggregate == pooled


def test_pooled_throughput_divides_by_total_window_time_and_percentiles_are_recomputed():
    # Windows of 5, 6 and 4 s; the middle one slow. Mean of per-window p95s is not the pooled p95.
    bounds = [2 * S, 7 * S, 13 * S, 17 * S]
    records = steady(2 * S, 7 * S, 500) + steady(13 * S, 17 * S, 400)
    records += [req(7 * S + i * 10 * MS, latency_ns=100 * MS) for i in range(600)]
    windows = [summarize_window(k, a, b, records, {"a": 100.0}, POLICY) for k, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    result = summarize_run(records, windows, POLICY, ValidityCriteria())
    pooled = result.tenants["a"].pooled
    assert pooled.throughput_rps == 1500 / 15
    assert pooled.response_time.p95_ms == 100.0
    assert sum(w.tenants["a"].response_time.p95_ms for w in windows) / 3 != 100.0
    assert pooled.offered_rate_rps == 100.0


def test_only_the_last_windows_are_pooled():
    bounds = [2 * S, 7 * S, 12 * S, 17 * S, 22 * S]
    _, result = run(counts=(900, 500, 500, 500), bounds=bounds)
    assert result.pooled_windows == (1, 2, 3)
    assert result.tenants["a"].pooled.requests == 1500 and result.verdict.valid


def late(done, tenant):
    return req(done, tenant, late_ns=2 * MS)


@pytest.mark.parametrize(
    "kwargs, code, message",
    [
        (dict(counts=(500, 500, 700)), "unstable", "throughput of the last 3 windows ranged -11.8% to +23.5%"),
        (dict(criteria=ValidityCriteria(min_duration_s=20.0)), "too_short", "measured 15.0 s < minimum 20 s"),
        (dict(criteria=ValidityCriteria(min_requests=2000)), "too_few_requests", "1500 successful requests < minimum 2000"),
        (
            dict(fault=lambda done, tenant: req(done, tenant, status="UNAVAILABLE")),
            "errors",
            "error rate 2.00% ≥ bound 1.00% (UNAVAILABLE: 30)",
        ),
        (dict(fault=late), "late_sends", "2.00% of sends were more than 1.00 ms late (bound 1.00%)"),
        (dict(fault=drop), "dropped", "30 requests (2.00%) dropped at the outstanding-request cap"),
        (
            dict(generator={1: [GeneratorUsage(0, 1.0), GeneratorUsage(1, 4.8)]}),
            "client_saturated",
            "the load generator was CPU-bound in window(s) 1 (busiest worker at 96% of a core)",
        ),
    ],
)
def test_each_invalid_reason_on_its_own(kwargs, code, message):
    _, result = run(**kwargs)
    assert [r.code for r in result.verdict.reasons] == [code]
    assert result.verdict.reasons[0].message.startswith(message), result.verdict.reasons[0].message
    assert result.verdict.label == "INVALID"
    assert result.tenants["a"].verdict == result.verdict


def test_multi_tenant_verdicts_per_tenant_and_aggregate():
    _, result = run(tenants=("a", "b"), fault=lambda done, tenant: req(done, tenant, status="UNAVAILABLE"))
    assert result.tenants["a"].verdict.valid
    assert [r.code for r in result.tenants["b"].verdict.reasons] == ["errors"]
    assert not result.verdict.valid
    assert result.verdict.reasons[0].message.startswith("b: error rate 2.00%")
    assert result.aggregate.requests == 1500 + 1470
    assert result.aggregate.offered_rate_rps == 200.0
    assert result.tenants["b"].pooled.throughput_rps == 98.0


def test_run_reasons_reach_every_tenant_and_the_aggregate_once():
    _, result = run(tenants=("a", "b"), generator={2: [GeneratorUsage(0, 5.0, 3.0)]})
    for tenant in ("a", "b"):
        assert [r.code for r in result.tenants[tenant].verdict.reasons] == ["client_saturated"]
    assert [r.code for r in result.verdict.reasons] == ["client_saturated"]
    assert "event-loop lag p99 up to 3.00 ms" in result.verdict.reasons[0].message


def test_records_merged_from_workers_give_exactly_the_single_process_result():
    records, whole = run()
    by_worker = [
        [dataclasses.replace(r, worker=w) for i, r in enumerate(records) if i % 3 == w] for w in range(3)
    ]
    merged = by_worker[2] + by_worker[0] + by_worker[1]
    again = summarize_run(merged, whole.windows, POLICY, ValidityCriteria())
    assert again == whole


def test_run_result_json_round_trip():
    _, result = run(fault=drop, generator={0: [GeneratorUsage(0, 1.0, 0.1)]})
    text = json.dumps(result.to_json())
    assert RunResult.from_json(json.loads(text)) == result
    assert json.loads(text)["schema_version"] == 1


def test_windows_must_be_contiguous():
    records, result = run()
    gap = list(result.windows)
    gap[1] = dataclasses.replace(gap[1], start_ns=gap[1].start_ns + 1)
    with pytest.raises(ValueError, match="does not start where window 0 ends"):
        summarize_run(records, gap, POLICY, ValidityCriteria())


def test_a_policy_whose_pooled_windows_are_too_short_for_a_valid_run_is_refused():
    check_policy(POLICY, ValidityCriteria())
    with pytest.raises(ConfigError, match="shorter than the minimum duration of 10 s"):
        check_policy(dataclasses.replace(POLICY, window_s=3.0), ValidityCriteria())


def test_latency_summary_is_reused_for_empty_tenants():
    assert fake_load(0, None).response_time == LatencySummary(0, *[None] * 8)
    assert math.isclose(fake_load(10, 2.0).response_time.mean_ms, 2.0)
