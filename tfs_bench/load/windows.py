"""Measurement windows: warm-up, window boundaries, per-window summaries and stability.

Everything here is a pure function of request records and explicit boundaries, except
`WindowClock`, which reads an injected clock to tell the driver when warm-up and each window end
and when to stop. Boundaries are absolute `time.perf_counter_ns` values, the clock of the
records, so worker processes on one host share them.

- A request belongs to the window in which it completes: window k holds the records with
  start_k ≤ done_ns < end_k (a request completing exactly on a boundary belongs to the later
  window). Requests completing before the first window (warm-up) or after the last are excluded.
- A window ends at the first tick after `window_s` at which every tenant has completed at least
  `window_min_requests` requests in it, or after `window_max_s` whatever the count, so a stalled
  server cannot hang the run (such a short-of-requests window is judged by the verdict). The
  driver raises `window_min_requests` to each window's share of the verdict's `min_requests`
  (`verdict.windows_for`), so that a low-rate tenant of a mix gets longer windows, not too few requests.
- Warm-up ends likewise after `warmup_s` and `warmup_requests` (both, when both are given).
- Stable: for every tenant, each of the last `stability_windows` windows is within
  ±`stability_tolerance` of those windows' mean (bounds included, compared exactly), on
  throughput and on the SLA percentile of response time (perf_analyzer's rule, applied to both),
  with two corrections for chance, so that a healthy system is not judged unstable by the noise
  of its own arrival process:
  * open loop: throughput is judged per arrival scheduled in the window (completions ÷ the
    schedule's arrivals in [start, end)). Poisson arrivals put ~λT ± √(λT) requests in a window
    (±14% at 10 rps over 5 s); the ratio removes that noise and keeps what stability is about,
    whether the server completes what it is sent.
  * the SLA percentile of a window counts as within tolerance when its 95% confidence interval
    (tfs_bench.stats: order-statistic bounds) reaches the tolerance band around the mean; with
    many samples the interval is narrow and the rule is the plain one.
- The timing bound of a window is max(1 ms, `timing_tolerance` × the median service time of its
  fastest tenant): a send later than its tenant's bound is *late*, and event-loop lag is judged
  against the window's bound (1 ms of lag is an error against 2 ms of latency, noise against 500).
- The load generator's state in a window (`client`): "saturated" when a worker process used
  ≥ `client_cpu_saturation` of a core (it is CPU-bound: the generator limited the run);
  "starved" when a worker's event-loop lag p99 exceeded the window's timing bound while it was
  not CPU-bound (the host kept it off the CPU: its threads' run-queue wait, from
  /proc/<pid>/task/*/schedstat, says by how much); "ok" otherwise. A saturated or starved window
  is *client-bound*: its timing errors come from the generator, not the server.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from fractions import Fraction

from tfs_bench import stats
from tfs_bench.errors import ConfigError
from tfs_bench.load.records import GRPC_STATUS_CODES
from tfs_bench.load.records import LATE_SEND_THRESHOLD_NS
from tfs_bench.load.records import STATUS_OK
from tfs_bench.load.records import RequestRecord

SCHEMA_VERSION = 2
_NS_PER_S = 1_000_000_000
CLIENT_STATES = ("ok", "saturated", "starved")
WINDOW_MAX_FACTOR = 6


# ----------------------------------------------------------------------------- policy


@dataclasses.dataclass(frozen=True)
class WindowPolicy:
    """How a run is cut into warm-up and windows, and when it is stable (see the module docstring)."""

    window_s: float = 5.0
    window_min_requests: int = 50
    window_max_s: float = 30.0
    warmup_s: float = 2.0
    warmup_requests: int = 0
    max_windows: int = 10
    stability_windows: int = 3
    stability_tolerance: float = 0.10
    sla_percentile: float = 95.0
    client_cpu_saturation: float = 0.9  # of one core, per worker process
    timing_tolerance: float = 0.05  # of the median service time: the timing bound above 1 ms

    def __post_init__(self):
        if not 0 < self.window_s <= self.window_max_s:
            raise ConfigError(f"need 0 < window_s <= window_max_s, got {self.window_s} and {self.window_max_s}")
        if self.window_min_requests < 0 or self.warmup_requests < 0 or self.warmup_s < 0:
            raise ConfigError("warm-up and window minimums must be >= 0")
        if self.stability_windows < 1:
            raise ConfigError(f"stability_windows must be >= 1, got {self.stability_windows}")
        if self.max_windows < self.stability_windows:
            raise ConfigError(
                f"max_windows must be at least {self.stability_windows} (stability compares the last "
                f"{self.stability_windows} windows), got {self.max_windows}"
            )
        if not 0 < self.stability_tolerance < 1:
            raise ConfigError(f"stability_tolerance must be in (0, 1), got {self.stability_tolerance}")
        if not 0 < self.client_cpu_saturation <= 1:
            raise ConfigError(f"client_cpu_saturation must be in (0, 1], got {self.client_cpu_saturation}")
        if not 0 <= self.timing_tolerance < 1:
            raise ConfigError(f"timing_tolerance must be in [0, 1), got {self.timing_tolerance}")
        try:
            stats.percentile_field(self.sla_percentile)
        except ValueError as e:
            raise ConfigError(f"sla_percentile: {e}") from None

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: Mapping) -> "WindowPolicy":
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        return cls(**{name: d.get(name, default) if name == "timing_tolerance" else d[name] for name, default in defaults.items()})


# ----------------------------------------------------------------------------- summaries


@dataclasses.dataclass(frozen=True)
class GeneratorUsage:
    """What one load-generator process spent during a window."""

    worker: int
    cpu_s: float  # user + system CPU time of the process
    loop_lag_p99_ms: float | None = None  # p99 of the event loop's wake-up lag samples
    runqueue_wait_s: float | None = None  # time its threads waited for a CPU; None: not measured

    def __post_init__(self):
        if self.worker < 0 or self.cpu_s < 0 or (self.loop_lag_p99_ms or 0) < 0 or (self.runqueue_wait_s or 0) < 0:
            raise ValueError(f"implausible generator usage: {self}")

    def to_json(self) -> dict:
        return {
            "worker": self.worker,
            "cpu_s": self.cpu_s,
            "loop_lag_p99_ms": self.loop_lag_p99_ms,
            "runqueue_wait_s": self.runqueue_wait_s,
        }

    @classmethod
    def from_json(cls, d: dict) -> "GeneratorUsage":
        return cls(
            worker=d["worker"],
            cpu_s=d["cpu_s"],
            loop_lag_p99_ms=d["loop_lag_p99_ms"],
            runqueue_wait_s=d.get("runqueue_wait_s"),
        )


@dataclasses.dataclass(frozen=True)
class LoadSummary:
    """Requests that completed during `duration_s` (one window, or several pooled).

    Rates divide by the duration; fractions of nothing are 0. Latencies are over successful
    requests only; errors are counted by gRPC code, drops on their own. `scheduled` is how many
    arrivals the open-loop schedule intended in the interval (None: closed loop, or not known);
    `late` counts the sends later than `late_threshold_ms` (see late_threshold_ns).
    """

    duration_s: float
    requests: int  # completed with OK
    errors_by_code: dict[str, int]
    dropped: int
    late: int  # sent (OK or error) later than the timing bound after the intended time
    inferences: int  # sum of batch sizes of successful requests
    offered_rate_rps: float | None  # the schedule's rate; None in closed loop
    response_time: stats.LatencySummary
    service_time: stats.LatencySummary
    scheduled: int | None = None
    late_threshold_ms: float = LATE_SEND_THRESHOLD_NS / 1e6

    def __post_init__(self):
        if self.duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, got {self.duration_s}")
        if min(self.requests, self.dropped, self.late, self.inferences) < 0:
            raise ValueError(f"counts must be >= 0: {self}")
        for code, count in self.errors_by_code.items():
            if code not in GRPC_STATUS_CODES or code == STATUS_OK or count < 1:
                raise ValueError(f"errors_by_code holds non-OK gRPC codes with counts >= 1, got {code}: {count}")
        if self.late > self.sent:
            raise ValueError("more late sends than sends")
        if self.response_time.count != self.requests or self.service_time.count != self.requests:
            raise ValueError("latency summaries must cover exactly the successful requests")
        if self.scheduled is not None and self.scheduled < 0:
            raise ValueError(f"scheduled must be >= 0, got {self.scheduled}")
        if not self.late_threshold_ms >= LATE_SEND_THRESHOLD_NS / 1e6:
            raise ValueError(f"late_threshold_ms must be at least 1 ms, got {self.late_threshold_ms}")

    @property
    def errors(self) -> int:
        return sum(self.errors_by_code.values())

    @property
    def sent(self) -> int:
        return self.requests + self.errors

    @property
    def throughput_rps(self) -> float:
        return self.requests / self.duration_s

    @property
    def inferences_per_s(self) -> float:
        return self.inferences / self.duration_s

    @property
    def achieved_rate_rps(self) -> float:
        """Answered requests (OK or error, as counted where they completed) per second."""
        return self.sent / self.duration_s

    @property
    def completion_ratio(self) -> float | None:
        """Successful requests per arrival scheduled in the interval (open loop); None without a schedule."""
        return self.requests / self.scheduled if self.scheduled else None

    @property
    def error_rate(self) -> float:
        return self.errors / self.sent if self.sent else 0.0

    @property
    def late_fraction(self) -> float:
        return self.late / self.sent if self.sent else 0.0

    @property
    def dropped_fraction(self) -> float:
        attempted = self.sent + self.dropped
        return self.dropped / attempted if attempted else 0.0

    def to_json(self) -> dict:
        """Counts and settings, then the derived rates (for readers; from_json recomputes them)."""
        return {
            "duration_s": self.duration_s,
            "requests": self.requests,
            "errors": self.errors,
            "errors_by_code": dict(sorted(self.errors_by_code.items())),
            "dropped": self.dropped,
            "late": self.late,
            "inferences": self.inferences,
            "offered_rate_rps": self.offered_rate_rps,
            "scheduled": self.scheduled,
            "late_threshold_ms": self.late_threshold_ms,
            "achieved_rate_rps": self.achieved_rate_rps,
            "throughput_rps": self.throughput_rps,
            "inferences_per_s": self.inferences_per_s,
            "error_rate": self.error_rate,
            "late_fraction": self.late_fraction,
            "dropped_fraction": self.dropped_fraction,
            "response_time": self.response_time.to_json(),
            "service_time": self.service_time.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict) -> "LoadSummary":
        return cls(
            duration_s=d["duration_s"],
            requests=d["requests"],
            errors_by_code=dict(d["errors_by_code"]),
            dropped=d["dropped"],
            late=d["late"],
            inferences=d["inferences"],
            offered_rate_rps=d["offered_rate_rps"],
            response_time=stats.LatencySummary.from_json(d["response_time"]),
            service_time=stats.LatencySummary.from_json(d["service_time"]),
            scheduled=d.get("scheduled"),
            late_threshold_ms=d.get("late_threshold_ms", LATE_SEND_THRESHOLD_NS / 1e6),
        )


def late_threshold_ns(ok_records: Sequence[RequestRecord], timing_tolerance: float) -> int:
    """max(1 ms, timing_tolerance × the median service time of the successful requests)."""
    if not ok_records:
        return LATE_SEND_THRESHOLD_NS
    median_ns = stats.percentile(sorted(r.service_time_ns for r in ok_records), 50)
    return max(LATE_SEND_THRESHOLD_NS, math.floor(timing_tolerance * median_ns))


def summarize_load(
    records: Iterable[RequestRecord],
    duration_ns: int,
    offered_rate_rps: float | None,
    scheduled: int | None = None,
    timing_tolerance: float = WindowPolicy.timing_tolerance,
) -> LoadSummary:
    """The summary of the given records over a measured time of `duration_ns`."""
    ok, errors, dropped, sent = [], collections.Counter(), 0, []
    for record in records:
        if record.dropped:
            dropped += 1
            continue
        sent.append(record)
        if record.ok:
            ok.append(record)
        else:
            errors[record.status_code] += 1
    threshold_ns = late_threshold_ns(ok, timing_tolerance)
    late = sum(r.late(threshold_ns) for r in sent)
    return LoadSummary(
        duration_s=duration_ns / _NS_PER_S,
        requests=len(ok),
        errors_by_code=dict(sorted(errors.items())),
        dropped=dropped,
        late=late,
        inferences=sum(r.batch_size for r in ok),
        offered_rate_rps=offered_rate_rps,
        response_time=stats.summarize_latencies(r.response_time_ns for r in ok),
        service_time=stats.summarize_latencies(r.service_time_ns for r in ok),
        scheduled=scheduled,
        late_threshold_ms=threshold_ns / 1e6,
    )


@dataclasses.dataclass(frozen=True)
class WindowSummary:
    index: int  # 0 for the first window after warm-up
    start_ns: int
    end_ns: int
    tenants: dict[str, LoadSummary]
    aggregate: LoadSummary  # all tenants' requests together
    generator: tuple[GeneratorUsage, ...]  # one per worker process; empty when not measured
    client: str = "ok"  # one of CLIENT_STATES
    lost_workers: tuple[int, ...] = ()  # workers gone before the window ended (a Ray actor or node lost)

    def __post_init__(self):
        if self.index < 0 or self.end_ns <= self.start_ns:
            raise ValueError(f"window {self.index} needs start_ns < end_ns")
        if not self.tenants:
            raise ValueError("a window summarises at least one tenant")
        if self.client not in CLIENT_STATES:
            raise ValueError(f"client state must be one of {CLIENT_STATES}, got {self.client!r}")
        object.__setattr__(self, "generator", tuple(self.generator))
        object.__setattr__(self, "lost_workers", tuple(self.lost_workers))
        if list(self.lost_workers) != sorted(set(self.lost_workers)) or any(w < 0 for w in self.lost_workers):
            raise ValueError(f"lost_workers must be distinct worker indices in order, got {self.lost_workers}")

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / _NS_PER_S

    @property
    def client_bound(self) -> bool:
        """The generator, not the server, limited this window (saturated or starved)."""
        return self.client != "ok"

    @property
    def timing_bound_ms(self) -> float:
        """The window's bound on event-loop lag: the smallest late threshold among its tenants."""
        return min(s.late_threshold_ms for s in self.tenants.values())

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "index": self.index,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "client": self.client,
            "client_bound": self.client_bound,
            "generator": [g.to_json() for g in self.generator],
            "lost_workers": list(self.lost_workers),
            "aggregate": self.aggregate.to_json(),
            "tenants": {name: s.to_json() for name, s in self.tenants.items()},
        }

    @classmethod
    def from_json(cls, d: dict) -> "WindowSummary":
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported window summary schema_version {d.get('schema_version')!r}")
        return cls(
            index=d["index"],
            start_ns=d["start_ns"],
            end_ns=d["end_ns"],
            tenants={name: LoadSummary.from_json(s) for name, s in d["tenants"].items()},
            aggregate=LoadSummary.from_json(d["aggregate"]),
            generator=tuple(GeneratorUsage.from_json(g) for g in d["generator"]),
            client=d["client"],
            lost_workers=tuple(d.get("lost_workers", ())),  # absent before workers could be lost
        )


# ----------------------------------------------------------------------------- assignment


def window_policy(
    window_s: float = WindowPolicy.window_s,
    warmup_s: float = WindowPolicy.warmup_s,
    window_min_requests: int = WindowPolicy.window_min_requests,
    max_windows: int = WindowPolicy.max_windows,
    sla_percentile: float = WindowPolicy.sla_percentile,
    stability_tolerance: float = WindowPolicy.stability_tolerance,
) -> WindowPolicy:
    """A policy whose window also ends after WINDOW_MAX_FACTOR × window_s (at least the default
    window_max_s) whatever its request count, so a stalled server cannot hang a run."""
    return WindowPolicy(
        window_s=window_s,
        window_min_requests=window_min_requests,
        window_max_s=max(WindowPolicy.window_max_s, WINDOW_MAX_FACTOR * window_s),
        warmup_s=warmup_s,
        max_windows=max_windows,
        sla_percentile=sla_percentile,
        stability_tolerance=stability_tolerance,
    )


def records_between(records: Iterable[RequestRecord], start_ns: int, end_ns: int) -> list[RequestRecord]:
    """The records that completed in [start_ns, end_ns)."""
    return [r for r in records if start_ns <= r.done_ns < end_ns]


def client_state(
    generator: Iterable[GeneratorUsage], duration_s: float, timing_bound_ms: float, policy: WindowPolicy
) -> str:
    """"saturated" if a worker was CPU-bound, else "starved" if one's loop lag p99 exceeded the
    window's timing bound, else "ok" (see the module docstring)."""
    usages = list(generator)
    if any(u.cpu_s / duration_s >= policy.client_cpu_saturation for u in usages):
        return "saturated"
    if any(u.loop_lag_p99_ms is not None and u.loop_lag_p99_ms > timing_bound_ms for u in usages):
        return "starved"
    return "ok"


def summarize_window(
    index: int,
    start_ns: int,
    end_ns: int,
    records: Iterable[RequestRecord],
    offered_rates_rps: Mapping[str, float | None],
    policy: WindowPolicy,
    generator: Sequence[GeneratorUsage] = (),
    scheduled: Mapping[str, int | None] | None = None,
    lost_workers: Sequence[int] = (),
) -> WindowSummary:
    """Summarises the records that completed in [start_ns, end_ns), per tenant and together.

    `offered_rates_rps` names every tenant of the run (None for closed-loop tenants), so a tenant
    with nothing completed still gets a summary; a record of another tenant is an error.
    `scheduled` gives the open-loop tenants' arrivals intended in the window, when known;
    `lost_workers` the workers gone before it ended (their share was not sent).
    """
    in_window = records_between(records, start_ns, end_ns)
    by_tenant = _by_tenant(in_window, offered_rates_rps)
    duration_ns = end_ns - start_ns
    scheduled = scheduled or {}
    tolerance = policy.timing_tolerance
    tenants = {
        t: summarize_load(by_tenant[t], duration_ns, offered_rates_rps[t], scheduled.get(t), tolerance)
        for t in offered_rates_rps
    }
    counts = [scheduled.get(t) for t in offered_rates_rps]
    window = WindowSummary(
        index=index,
        start_ns=start_ns,
        end_ns=end_ns,
        tenants=tenants,
        aggregate=summarize_load(
            in_window,
            duration_ns,
            total_offered_rate(offered_rates_rps.values()),
            None if None in counts else sum(counts),
            tolerance,
        ),
        generator=tuple(generator),
        lost_workers=tuple(lost_workers),
    )
    state = client_state(generator, duration_ns / _NS_PER_S, window.timing_bound_ms, policy)
    return dataclasses.replace(window, client=state)


def total_offered_rate(rates_rps: Iterable[float | None]) -> float | None:
    """The sum of the tenants' offered rates; None when any tenant runs closed loop."""
    rates = list(rates_rps)
    return None if any(r is None for r in rates) else sum(rates)


def _by_tenant(
    records: Iterable[RequestRecord], tenants: Iterable[str]
) -> dict[str, list[RequestRecord]]:
    grouped: dict[str, list[RequestRecord]] = {t: [] for t in tenants}
    for record in records:
        if record.tenant not in grouped:
            raise ValueError(f"record of unknown tenant {record.tenant!r}; the run has {sorted(grouped)}")
        grouped[record.tenant].append(record)
    return grouped


# ----------------------------------------------------------------------------- stability


def instability_reasons(history: Sequence[LoadSummary], policy: WindowPolicy) -> tuple[str, ...]:
    """Why the last `stability_windows` summaries of one tenant are not stable (empty if they are)."""
    count = policy.stability_windows
    if len(history) < count:
        return (f"only {len(history)} measurement window(s); stability needs {count}",)
    last = history[-count:]
    p = policy.sla_percentile
    if all(s.scheduled for s in last):
        throughput = ("throughput per scheduled arrival", [(r, r, r) for r in (s.completion_ratio for s in last)])
    else:
        throughput = ("throughput", [(s.throughput_rps,) * 3 for s in last])
    percentile = (
        f"p{p:g} response time",
        [None if s.response_time.at(p) is None else (s.response_time.at(p), *s.response_time.interval(p)) for s in last],
    )
    # Compared exactly, with the tolerance read as the decimal it prints as: in floating point,
    # 110/100 − 1 exceeds 0.1 while 90/100 − 1 does not, so a window exactly 10% above the mean
    # would fail and one exactly 10% below would pass.
    tolerance = Fraction(str(policy.stability_tolerance))
    reasons = []
    for (name, values), beyond in ((throughput, ""), (percentile, ", even at the near end of each window's 95% confidence interval")):
        if any(v is None for v in values):
            reasons.append(f"{name}: a window among the last {count} had no successful request")
            continue
        low, high = _relative_spread(values)
        if low < -tolerance or high > tolerance:
            reasons.append(
                f"{name} of the last {count} windows ranged {float(low):+.1%} to {float(high):+.1%} of their mean"
                f"{beyond} (±{policy.stability_tolerance:.0%} allowed)"
            )
    return tuple(reasons)


def _relative_spread(values: Sequence[tuple[float, float, float]]) -> tuple[Fraction, Fraction]:
    """(min, max) over windows of how far each window's interval stays from the mean of the
    points, relative to that mean, exactly: a window whose interval (low, high) covers the mean
    contributes 0; all-zero points do not spread.

    Each value is (point, low, high) with low ≤ point ≤ high; without an interval all three are
    the point, and the result is min and max of point/mean − 1.
    """
    points = [Fraction(v[0]) for v in values]
    mean = sum(points) / len(points)
    if mean == 0:
        return Fraction(0), Fraction(0)
    gaps = []
    for _, low, high in values:
        low, high = Fraction(low), Fraction(high)
        gaps.append(low / mean - 1 if low > mean else high / mean - 1 if high < mean else Fraction(0))
    return min(gaps), max(gaps)


def tenants_stable(windows: Sequence[WindowSummary], policy: WindowPolicy) -> bool:
    tenants = windows[-1].tenants if windows else {}
    return bool(tenants) and all(
        not instability_reasons([w.tenants[t] for w in windows], policy) for t in tenants
    )


# ----------------------------------------------------------------------------- the clock

WARMUP_END = "warmup_end"
WINDOW_END = "window_end"
STOP_STABLE = "stable"
STOP_MAX_WINDOWS = "max_windows"


@dataclasses.dataclass(frozen=True)
class Boundary:
    """The end of warm-up (index −1) or of measurement window `index`."""

    kind: str
    index: int
    start_ns: int
    end_ns: int


class WindowClock:
    """Tells the driver when warm-up and each window end, and when to stop.

    The driver calls `start()` as load begins, then `tick(fewest_completed)` periodically with
    the number of requests completed since the last boundary by the tenant with the fewest. On a
    WINDOW_END boundary it summarises that window (`summarize_window`) and hands the summary to
    `close_window`, which says whether to stop; no tick may come in between.
    """

    def __init__(self, policy: WindowPolicy, clock: Callable[[], int]):
        self.policy = policy
        self._clock = clock
        self._phase_start_ns: int | None = None
        self._in_warmup = True
        self._pending: Boundary | None = None
        self._windows: list[WindowSummary] = []
        self.warmup_end_ns: int | None = None
        self.stop_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    @property
    def windows(self) -> tuple[WindowSummary, ...]:
        return tuple(self._windows)

    def start(self) -> int:
        if self._phase_start_ns is not None:
            raise RuntimeError("WindowClock already started")
        self._phase_start_ns = self._clock()
        return self._phase_start_ns

    def tick(self, fewest_completed: int) -> Boundary | None:
        if self._phase_start_ns is None:
            raise RuntimeError("tick before start()")
        if self._pending is not None:
            raise RuntimeError(f"window {self._pending.index} ended; close_window it before the next tick")
        if self.done:
            return None
        now = self._clock()
        if not self._phase_over(now - self._phase_start_ns, fewest_completed):
            return None
        if self._in_warmup:
            boundary = Boundary(WARMUP_END, -1, self._phase_start_ns, now)
            self._in_warmup = False
            self.warmup_end_ns = now
        else:
            boundary = Boundary(WINDOW_END, len(self._windows), self._phase_start_ns, now)
            self._pending = boundary
        self._phase_start_ns = now
        return boundary

    def _phase_over(self, elapsed_ns: int, completed: int) -> bool:
        p = self.policy
        if self._in_warmup:
            minimum_s, minimum_requests = p.warmup_s, p.warmup_requests
            cap_s = max(p.warmup_s, p.window_max_s)
        else:
            minimum_s, minimum_requests, cap_s = p.window_s, p.window_min_requests, p.window_max_s
        if elapsed_ns >= cap_s * _NS_PER_S:
            return True
        return elapsed_ns >= minimum_s * _NS_PER_S and completed >= minimum_requests

    def close_window(self, window: WindowSummary) -> bool:
        """Records the summary of the window that just ended; returns whether to stop."""
        pending = self._pending
        if pending is None or (window.index, window.start_ns, window.end_ns) != (
            pending.index,
            pending.start_ns,
            pending.end_ns,
        ):
            raise ValueError(f"window {window.index} [{window.start_ns}, {window.end_ns}) is not the one that ended")
        self._pending = None
        self._windows.append(window)
        if tenants_stable(self._windows, self.policy):
            self.stop_reason = STOP_STABLE
        elif len(self._windows) >= self.policy.max_windows:
            self.stop_reason = STOP_MAX_WINDOWS
        return self.done
