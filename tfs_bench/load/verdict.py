"""The result of one run: its stable windows pooled, and VALID or INVALID with the reasons.

The pooled result covers the last `stability_windows` windows (the ones stability was judged
on, whether or not they were stable): throughput = successful requests ÷ their total time, and
percentiles are recomputed over the pooled raw samples, never averaged across windows.

A run is VALID only when none of these holds (each is one `InvalidReason`):
  unstable           a tenant's last windows disagree on throughput or the SLA percentile
  too_short          the pooled windows last less than `min_duration_s`
  too_few_requests   a tenant completed fewer than `min_requests` successful requests in them
  errors             a tenant's error rate (non-OK replies ÷ sent) is ≥ `max_error_rate`
  late_sends         a tenant's late-send fraction is ≥ `max_late_fraction` (late: later than the
                     tenant's timing bound, max(1 ms, 5% of its median service time))
  dropped            a tenant's dropped fraction (dropped ÷ sent + dropped) is ≥ `max_dropped_fraction`
  client_saturated   in a pooled window a load-generator process was CPU-bound
  client_starved     in a pooled window the generator's event loop ran late beyond the timing
                     bound without being CPU-bound: the host kept it off the CPU
  workers_lost       a pooled window ended after a load worker was lost (a Ray actor or node gone):
                     its share of the load was not sent
Duration and the generator's state concern the whole run; the others each tenant. A tenant's verdict
carries the run's reasons too; the aggregate verdict is VALID only when every tenant's is.

A verdict *blames the host* when the generator was kept off the CPU (client_starved) or sent
late (late_sends) without being CPU-bound itself (no client_saturated): the host's other work,
not the system under test nor the generator's own load, spoiled the measurement, so measuring
again can succeed. Sweeps and searches re-measure such a run (tfs_bench.load.driver).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from collections.abc import Sequence

from tfs_bench.errors import ConfigError
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.windows import LoadSummary
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import WindowSummary
from tfs_bench.load.windows import instability_reasons
from tfs_bench.load.windows import records_between
from tfs_bench.load.windows import summarize_load
from tfs_bench.load.windows import total_offered_rate

SCHEMA_VERSION = 1
REASON_CODES = (
    "unstable",
    "too_short",
    "too_few_requests",
    "errors",
    "late_sends",
    "dropped",
    "client_saturated",
    "client_starved",
    "workers_lost",
)
HOST_INTERFERENCE_CODES = frozenset({"client_starved", "late_sends"})


@dataclasses.dataclass(frozen=True)
class ValidityCriteria:
    """The bounds a run must meet to be VALID (see the module docstring)."""

    min_duration_s: float = 10.0
    min_requests: int = 100
    max_error_rate: float = 0.01
    max_late_fraction: float = 0.01
    max_dropped_fraction: float = 0.01

    def __post_init__(self):
        if self.min_duration_s < 0 or self.min_requests < 0:
            raise ConfigError("min_duration_s and min_requests must be >= 0")
        for name in ("max_error_rate", "max_late_fraction", "max_dropped_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: dict) -> "ValidityCriteria":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def check_policy(policy: WindowPolicy, criteria: ValidityCriteria) -> None:
    """Refuses settings under which no run could be VALID (the pooled windows too short)."""
    if policy.stability_windows * policy.window_s < criteria.min_duration_s:
        raise ConfigError(
            f"{policy.stability_windows} pooled windows of {policy.window_s:g} s are shorter than the "
            f"minimum duration of {criteria.min_duration_s:g} s; lengthen the windows"
        )


def windows_for(policy: WindowPolicy, criteria: ValidityCriteria) -> WindowPolicy:
    """The windows a run measures: each also waits until every tenant has completed its share of
    `min_requests` (÷ the pooled windows, rounded up), so that stable pooled windows hold the
    minimum. A low-rate tenant of a mix (a few requests/s beside hundreds) then gets longer
    windows instead of a too_few_requests verdict; `window_max_s` still bounds each window."""
    share = -(-criteria.min_requests // policy.stability_windows)
    if share <= policy.window_min_requests:
        return policy
    return dataclasses.replace(policy, window_min_requests=share)


@dataclasses.dataclass(frozen=True)
class InvalidReason:
    code: str
    message: str

    def __post_init__(self):
        if self.code not in REASON_CODES:
            raise ValueError(f"reason code must be one of {REASON_CODES}, got {self.code!r}")

    def to_json(self) -> dict:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_json(cls, d: dict) -> "InvalidReason":
        return cls(code=d["code"], message=d["message"])


@dataclasses.dataclass(frozen=True)
class Verdict:
    reasons: tuple[InvalidReason, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "reasons", tuple(self.reasons))

    @property
    def valid(self) -> bool:
        return not self.reasons

    @property
    def label(self) -> str:
        return "VALID" if self.valid else "INVALID"

    @property
    def blames_the_host(self) -> bool:
        """INVALID because the generator was starved or late, not because it was CPU-bound."""
        codes = {r.code for r in self.reasons}
        return bool(codes & HOST_INTERFERENCE_CODES) and "client_saturated" not in codes

    def to_json(self) -> dict:
        return {"valid": self.valid, "reasons": [r.to_json() for r in self.reasons]}

    @classmethod
    def from_json(cls, d: dict) -> "Verdict":
        return cls(tuple(InvalidReason.from_json(r) for r in d["reasons"]))


@dataclasses.dataclass(frozen=True)
class TenantResult:
    pooled: LoadSummary
    verdict: Verdict

    def to_json(self) -> dict:
        return {"pooled": self.pooled.to_json(), "verdict": self.verdict.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> "TenantResult":
        return cls(pooled=LoadSummary.from_json(d["pooled"]), verdict=Verdict.from_json(d["verdict"]))


@dataclasses.dataclass(frozen=True)
class RunResult:
    sla_percentile: float
    windows: tuple[WindowSummary, ...]
    pooled_windows: tuple[int, ...]  # indices of the windows pooled
    tenants: dict[str, TenantResult]
    aggregate: LoadSummary
    verdict: Verdict  # VALID only when every tenant is

    def __post_init__(self):
        object.__setattr__(self, "windows", tuple(self.windows))
        object.__setattr__(self, "pooled_windows", tuple(self.pooled_windows))
        if not self.tenants:
            raise ValueError("a run has at least one tenant")

    def sla_latency_ms(self, tenant: str | None = None) -> float | None:
        """The pooled SLA percentile of response time, of one tenant or of all together."""
        pooled = self.aggregate if tenant is None else self.tenants[tenant].pooled
        return pooled.response_time.at(self.sla_percentile)

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "sla_percentile": self.sla_percentile,
            "verdict": self.verdict.to_json(),
            "pooled_windows": list(self.pooled_windows),
            "aggregate": self.aggregate.to_json(),
            "tenants": {name: t.to_json() for name, t in self.tenants.items()},
            "windows": [w.to_json() for w in self.windows],
        }

    @classmethod
    def from_json(cls, d: dict) -> "RunResult":
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported run result schema_version {d.get('schema_version')!r}")
        return cls(
            sla_percentile=d["sla_percentile"],
            windows=tuple(WindowSummary.from_json(w) for w in d["windows"]),
            pooled_windows=tuple(d["pooled_windows"]),
            tenants={name: TenantResult.from_json(t) for name, t in d["tenants"].items()},
            aggregate=LoadSummary.from_json(d["aggregate"]),
            verdict=Verdict.from_json(d["verdict"]),
        )


def summarize_run(
    records: Iterable[RequestRecord],
    windows: Sequence[WindowSummary],
    policy: WindowPolicy,
    criteria: ValidityCriteria,
) -> RunResult:
    """Pools the last windows' raw records and judges the run.

    `records` may hold every record of the run (warm-up included): only those that completed
    inside the pooled windows count. `windows` are the run's windows in order, contiguous.
    """
    _check_contiguous(windows)
    pooled = windows[-policy.stability_windows :]
    start_ns, end_ns = pooled[0].start_ns, pooled[-1].end_ns
    in_pool = records_between(records, start_ns, end_ns)
    offered = {t: _pooled_offered_rate([w.tenants[t] for w in pooled]) for t in windows[-1].tenants}
    scheduled = {t: _pooled_scheduled([w.tenants[t] for w in pooled]) for t in offered}
    tolerance = policy.timing_tolerance
    run_reasons = _run_reasons(pooled, criteria)
    tenants = {}
    aggregate_reasons = list(run_reasons)
    for tenant, rate in offered.items():
        summary = summarize_load(
            (r for r in in_pool if r.tenant == tenant), end_ns - start_ns, rate, scheduled[tenant], tolerance
        )
        own = _tenant_reasons(summary, [w.tenants[tenant] for w in windows], policy, criteria)
        tenants[tenant] = TenantResult(summary, Verdict(own + run_reasons))
        aggregate_reasons += _prefixed(own, tenant) if len(offered) > 1 else own
    return RunResult(
        sla_percentile=policy.sla_percentile,
        windows=tuple(windows),
        pooled_windows=tuple(w.index for w in pooled),
        tenants=tenants,
        aggregate=summarize_load(
            in_pool,
            end_ns - start_ns,
            total_offered_rate(offered.values()),
            _pooled_scheduled([w.aggregate for w in pooled]),
            tolerance,
        ),
        verdict=Verdict(tuple(aggregate_reasons)),
    )


def _check_contiguous(windows: Sequence[WindowSummary]) -> None:
    if not windows:
        raise ValueError("a run needs at least one measurement window")
    for k, window in enumerate(windows):
        if window.index != k:
            raise ValueError(f"window {k} has index {window.index}")
        if k and window.start_ns != windows[k - 1].end_ns:
            raise ValueError(f"window {k} does not start where window {k - 1} ends")
        if window.tenants.keys() != windows[0].tenants.keys():
            raise ValueError(f"window {k} has other tenants than window 0")


def _pooled_offered_rate(summaries: Sequence[LoadSummary]) -> float | None:
    """The duration-weighted mean offered rate; None for closed loop."""
    if any(s.offered_rate_rps is None for s in summaries):
        return None
    return sum(s.offered_rate_rps * s.duration_s for s in summaries) / sum(s.duration_s for s in summaries)


def _pooled_scheduled(summaries: Sequence[LoadSummary]) -> int | None:
    """The arrivals scheduled over the pooled windows; None when a window's are not known."""
    if any(s.scheduled is None for s in summaries):
        return None
    return sum(s.scheduled for s in summaries)


def _run_reasons(pooled: Sequence[WindowSummary], criteria: ValidityCriteria) -> tuple[InvalidReason, ...]:
    reasons = []
    duration_s = sum(w.duration_s for w in pooled)
    if duration_s < criteria.min_duration_s:
        reasons.append(
            InvalidReason("too_short", f"measured {duration_s:.1f} s < minimum {criteria.min_duration_s:g} s")
        )
    saturated = [w for w in pooled if w.client == "saturated"]
    if saturated:
        reasons.append(InvalidReason("client_saturated", _generator_message("was CPU-bound", saturated)))
    starved = [w for w in pooled if w.client == "starved"]
    if starved:
        reasons.append(
            InvalidReason("client_starved", _generator_message("ran late without being CPU-bound", starved))
        )
    lost = sorted({w for window in pooled for w in window.lost_workers})
    if lost:
        numbers = ", ".join(str(w.index) for w in pooled if w.lost_workers)
        reasons.append(InvalidReason(
            "workers_lost",
            f"load worker(s) {', '.join(map(str, lost))} were lost before window(s) {numbers} ended; "
            f"their share of the load was not sent",
        ))
    return tuple(reasons)


def _generator_message(what: str, windows: Sequence[WindowSummary]) -> str:
    """What the generator's processes did in those windows: CPU, loop lag against the bound, run-queue wait."""
    cpu = max((g.cpu_s / w.duration_s for w in windows for g in w.generator), default=0.0)
    lags = [(g.loop_lag_p99_ms, w.timing_bound_ms) for w in windows for g in w.generator if g.loop_lag_p99_ms is not None]
    waits = [g.runqueue_wait_s / w.duration_s for w in windows for g in w.generator if g.runqueue_wait_s is not None]
    details = [f"busiest worker at {cpu:.0%} of a core"]
    if lags:
        lag, bound = max(lags)
        details.append(f"event-loop lag p99 up to {lag:.2f} ms against a timing bound of {bound:.2f} ms")
    if waits:
        details.append(f"its threads waited up to {max(waits) * 1000:.0f} ms per second for a CPU")
    numbers = ", ".join(str(w.index) for w in windows)
    return f"the load generator {what} in window(s) {numbers} ({'; '.join(details)})"


def _tenant_reasons(
    pooled: LoadSummary,
    history: Sequence[LoadSummary],
    policy: WindowPolicy,
    criteria: ValidityCriteria,
) -> tuple[InvalidReason, ...]:
    reasons = [InvalidReason("unstable", text) for text in instability_reasons(history, policy)]
    if pooled.requests < criteria.min_requests:
        reasons.append(
            InvalidReason("too_few_requests", f"{pooled.requests} successful requests < minimum {criteria.min_requests}")
        )
    if pooled.sent and pooled.error_rate >= criteria.max_error_rate:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(pooled.errors_by_code.items()))
        reasons.append(
            InvalidReason("errors", f"error rate {pooled.error_rate:.2%} ≥ bound {criteria.max_error_rate:.2%} ({codes})")
        )
    if pooled.sent and pooled.late_fraction >= criteria.max_late_fraction:
        reasons.append(
            InvalidReason(
                "late_sends",
                f"{pooled.late_fraction:.2%} of sends were more than {pooled.late_threshold_ms:.2f} ms late "
                f"(bound {criteria.max_late_fraction:.2%})",
            )
        )
    if pooled.dropped and pooled.dropped_fraction >= criteria.max_dropped_fraction:
        reasons.append(
            InvalidReason(
                "dropped",
                f"{pooled.dropped} requests ({pooled.dropped_fraction:.2%}) dropped at the outstanding-request cap "
                f"(bound {criteria.max_dropped_fraction:.2%})",
            )
        )
    return tuple(reasons)


def _prefixed(reasons: Iterable[InvalidReason], tenant: str) -> list[InvalidReason]:
    return [InvalidReason(r.code, f"{tenant}: {r.message}") for r in reasons]
