"""The rules that keep a healthy co-located run VALID and still catch a generator that cannot keep time:
stability per scheduled arrival, percentile stability within confidence bounds, the relative timing
bound, saturated vs starved, and the CPU priority of workers and launched servers."""

import dataclasses
import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import exactly
from tfs_bench import cpu_priority
from tfs_bench import stats
from tfs_bench.errors import ConfigError
from tfs_bench.launch.processes import ServerProcess
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.schedule import ArrivalCounter
from tfs_bench.load.schedule import ArrivalSchedule
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.verdict import summarize_run
from tfs_bench.load.windows import GeneratorUsage
from tfs_bench.load.windows import LoadSummary
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import instability_reasons
from tfs_bench.load.windows import summarize_window

S = 1_000_000_000
MS = 1_000_000
POLICY = WindowPolicy()


# ----------------------------------------------------------------------------- scheduled arrivals


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_the_counter_counts_exactly_the_schedules_arrivals_before_each_offset(arrival):
    schedule = ArrivalSchedule(37.0, arrival, seed=5)
    offsets = list(itertools.islice(schedule.offsets_ns(), 400))
    counter = ArrivalCounter(schedule)
    for t in (0, 1, offsets[3], offsets[3] + 1, 2 * S, 2 * S, 5 * S + 7):
        assert counter.count_before(t) == sum(o < t for o in offsets)


def test_the_counter_refuses_to_go_back():
    counter = ArrivalCounter(ArrivalSchedule(10.0, "constant"))
    counter.count_before(S)
    with pytest.raises(ValueError, match=exactly(f"offsets must not decrease: {S - 1} after {S}")):
        counter.count_before(S - 1)


def load(requests: int, scheduled: int | None, latencies_ms=None) -> LoadSummary:
    samples = [round(ms * MS) for ms in (latencies_ms or [10.0] * requests)]
    latency = stats.summarize_latencies(samples)
    return LoadSummary(5.0, requests, {}, 0, 0, requests, 10.0, latency, latency, scheduled=scheduled)


def test_poisson_counts_that_vary_by_chance_are_stable_per_scheduled_arrival():
    # 44, 50 and 58 completions in three 5 s windows at 10 rps: mean 50.67, so 44/50.67 − 1 = −13.2%
    # and 58/50.67 − 1 = +14.5%, the chance spread of a Poisson stream; each window completed what
    # was scheduled in it.
    counts = (44, 50, 58)
    assert instability_reasons([load(n, n) for n in counts], POLICY) == ()
    assert instability_reasons([load(n, None) for n in counts], POLICY) == (
        "throughput of the last 3 windows ranged -13.2% to +14.5% of their mean (±10% allowed)",
    )


def test_a_server_falling_behind_its_schedule_is_unstable():
    # 100%, 100% and 76% of the scheduled arrivals: mean 0.92, 0.76/0.92 − 1 = −17.4%, 1/0.92 − 1 = +8.7%.
    history = [load(50, 50), load(50, 50), load(38, 50)]
    assert instability_reasons(history, POLICY) == (
        "throughput per scheduled arrival of the last 3 windows ranged -17.4% to +8.7% of their mean (±10% allowed)",
    )


def test_windows_summarised_with_their_schedule_carry_it_and_its_ratio():
    records = [
        dataclasses.replace(r, intended_ns=r.done_ns - 5 * MS, sent_ns=r.done_ns - 5 * MS)
        for r in _ok_records([S + k * 100 * MS for k in range(9)])
    ]
    window = summarize_window(0, S, 2 * S, records, {"a": 10.0}, POLICY, scheduled={"a": 10})
    assert (window.tenants["a"].scheduled, window.tenants["a"].completion_ratio) == (10, 0.9)
    assert window.aggregate.scheduled == 10
    closed = summarize_window(0, S, 2 * S, records, {"a": None}, POLICY)
    assert (closed.tenants["a"].scheduled, closed.tenants["a"].completion_ratio, closed.aggregate.scheduled) == (
        None, None, None)


def _ok_records(done_ns):
    return [RequestRecord("m", "a", d - 10 * MS, d - 10 * MS, d, 1, "OK", 8, 0) for d in done_ns]


# ----------------------------------------------------------------------------- percentile bounds


def test_percentile_bounds_hold_the_percentile_and_narrow_with_more_samples():
    for n in (1, 2, 20, 50, 1000, 100_000):
        for p in stats.REPORTED_PERCENTILES:
            low, high = stats.rank_bounds(p, n)
            assert 1 <= low <= stats.rank_of(p, n) <= high <= n
    # p95 of 50 samples: 47.5 ∓ 1.96·√(47.5·0.05) = 47.5 ∓ 3.02 → ranks 44..51, clipped to 50.
    assert stats.rank_bounds(95, 50) == (44, 50)
    # p95 of 10,000: 9500 ∓ 1.96·√475 = 9500 ∓ 42.7 → 9457..9543.
    assert stats.rank_bounds(95, 10_000) == (9457, 9543)


def test_a_tail_percentile_of_few_samples_is_judged_within_its_confidence_interval():
    rng = np.random.default_rng(3)
    # Three windows of 50 exponential latencies (mean 20 ms): their p95s differ by chance.
    few = [load(50, 50, list(rng.exponential(20.0, 50))) for _ in range(3)]
    p95 = [w.response_time.p95_ms for w in few]
    assert max(p95) / (sum(p95) / 3) - 1 > 0.10  # the points alone would fail ±10%
    assert instability_reasons(few, POLICY) == ()
    # The same spread with 20,000 samples a window is real, and stays unstable.
    base = sorted(rng.exponential(20.0, 20_000))
    many = [load(20_000, 20_000, [x * scale for x in base]) for scale in (0.8, 1.0, 1.2)]
    (reason,) = instability_reasons(many, POLICY)
    assert reason.startswith("p95 response time of the last 3 windows ranged")
    assert reason.endswith("even at the near end of each window's 95% confidence interval (±10% allowed)")


@pytest.mark.parametrize(
    "bounds, message",
    [
        ({"p50_ms": (1.0, 2.0)}, "bounds_ms needs an interval for each of"),
        ({**{f: (1.0, 4.0) for f in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms")}, "p50_ms": (2.5, 4.0)},
         "p50_ms 2.0 lies outside its bounds [2.5, 4.0]"),
    ],
)
def test_latency_bounds_must_cover_every_percentile_and_hold_it(bounds, message):
    good = stats.summarize_latencies([1 * MS, 2 * MS, 3 * MS, 4 * MS])
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dataclasses.replace(good, bounds_ms=bounds)


def test_summaries_written_before_bounds_existed_read_back_without_them():
    d = stats.summarize_latencies([1 * MS, 2 * MS]).to_json()
    del d["bounds_ms"]
    old = stats.LatencySummary.from_json(d)
    assert old.bounds_ms is None and old.interval(95) == (2.0, 2.0)


# ----------------------------------------------------------------------------- saturated vs starved


def _run_with(usage: GeneratorUsage):
    records = _ok_records([k * 50 * MS for k in range(1, 200)])
    windows = [
        summarize_window(i, i * 3 * S + 1, (i + 1) * 3 * S + 1, records, {"a": None}, POLICY, (usage,))
        for i in range(3)
    ]
    return summarize_run(records, windows, POLICY, ValidityCriteria(min_duration_s=0, min_requests=0))


def test_a_starved_generator_is_named_with_its_lag_bound_and_cpu_wait():
    result = _run_with(GeneratorUsage(0, 0.3, loop_lag_p99_ms=4.0, runqueue_wait_s=1.5))
    (reason,) = [r for r in result.verdict.reasons if r.code.startswith("client")]
    assert reason.code == "client_starved"
    assert reason.message == (
        "the load generator ran late without being CPU-bound in window(s) 0, 1, 2 (busiest worker at 10% of a core; "
        "event-loop lag p99 up to 4.00 ms against a timing bound of 1.00 ms; its threads waited up to 500 ms per "
        "second for a CPU)"
    )


def test_a_cpu_bound_generator_is_saturated_not_starved():
    result = _run_with(GeneratorUsage(0, 2.9, loop_lag_p99_ms=4.0, runqueue_wait_s=0.0))
    assert [r.code for r in result.verdict.reasons] == ["client_saturated"]


def test_a_generator_on_time_is_neither():
    assert _run_with(GeneratorUsage(0, 0.3, loop_lag_p99_ms=0.4, runqueue_wait_s=0.01)).verdict.valid


# ----------------------------------------------------------------------------- priorities


def _priority_in_child(requested: str, as_nobody: bool) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import os
        from tfs_bench import cpu_priority
        from tfs_bench.errors import ConfigError
        if {as_nobody}:
            os.setgid(65534); os.setuid(65534)
        try:
            got = cpu_priority.set_generator_priority({requested!r})
        except ConfigError as e:
            print("ERROR", e)
        else:
            print(got, os.sched_getscheduler(0) == os.SCHED_FIFO)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)


def test_normal_priority_changes_nothing():
    assert _priority_in_child("normal", False).stdout.split() == ["normal", "False"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to grant and then drop the real-time privilege")
def test_realtime_is_granted_where_permitted_and_refused_or_declined_where_not():
    assert _priority_in_child("realtime", False).stdout.split() == ["realtime", "True"]
    assert _priority_in_child("auto", False).stdout.split() == ["realtime", "True"]
    assert _priority_in_child("auto", True).stdout.strip() == "normal (realtime not permitted: Operation not permitted) False"
    refused = _priority_in_child("realtime", True).stdout
    assert refused.startswith("ERROR --generator_priority=realtime: SCHED_FIFO is not permitted here")


@pytest.mark.parametrize("nice", [-1, 20, 1.5, True])
def test_server_niceness_is_checked(nice):
    with pytest.raises(ConfigError, match=exactly(f"server nice must be an integer in 0..19, got {nice!r}")):
        cpu_priority.check_nice(nice)


def test_a_launched_server_runs_at_the_niceness_asked_for(tmp_path):
    argv = [sys.executable, "-c", "import os; print('niceness', os.nice(0))"]
    base = os.nice(0)
    process = ServerProcess("nice-probe", argv, tmp_path, env=dict(os.environ), nice=7)
    assert process.wait(60) == 0
    assert f"niceness {base + 7}" in process.log_tail()
