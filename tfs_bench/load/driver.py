"""The load generator's library API: one run, a concurrency sweep, the PERSEUS ramp, the peak under an SLA.

    result = run_load(config)                        # one run to stability -> RunResult
    runs = sweep_concurrency(config, (1, 2, 4))      # closed loop, one run per level
    peak = find_peak(config, start_rps=50, sla_ms=100)
    ramp = perseus_ramp(config, qps_start=50, qps_delta=50, sla_ms=100)

Each run starts `config.workers` worker processes (tfs_bench.load.worker) that share the
schedule by index and write their own record files; this process reads those files as they
grow, asks every worker to flush at each window boundary, and summarises a window only once
every worker has flushed past its end, so windows cover all workers' records exactly. The
plan, commands and events they exchange are the records of tfs_bench.load.worker_protocol.
Statistics, windows, stability and verdicts come from the core modules (windows, verdict,
search); nothing here computes one.

A probe of the ramp or the peak search is one run at that rate (warm-up, windows to
stability, verdict). The request bodies are built once, before the first run.

In a sweep or a search, a run INVALID because of the host (Verdict.blames_the_host: the
generator was starved or sent late without being CPU-bound) is measured again, up to
`client_retries` times (default 2), each attempt in its own directory and listed in
summary.json with its `attempt` number; the last attempt is the one the sweep or search uses.
A moment of interference from the host then costs a repetition, not the experiment, while a
generator that is CPU-bound, or a host that is busy throughout, still ends INVALID.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

from tfs_bench.load import liveness
from tfs_bench.load import run_files
from tfs_bench.load import search
from tfs_bench.load import request_bodies
from tfs_bench.errors import ConfigError
from tfs_bench.errors import LoadError
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.config import scale_open_loop
from tfs_bench.load.config import with_concurrency
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.request_bodies import TenantRequests
from tfs_bench.load.run_files import ExperimentRun
from tfs_bench.load.run_files import ExperimentSettings
from tfs_bench.load.run_files import ExperimentSummary
from tfs_bench.load.run_files import PeakSettings
from tfs_bench.load.run_files import RampSettings
from tfs_bench.load.run_files import RateSweepSettings
from tfs_bench.load.run_files import RunManifest
from tfs_bench.load.run_files import RunSummary
from tfs_bench.load.run_files import SweepSettings
from tfs_bench.load.run_files import WorkerTotals
from tfs_bench.load.schedule import ArrivalCounter
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.schedule import split_evenly
from tfs_bench.load.search import PeakResult
from tfs_bench.load.search import ProbeOutcome
from tfs_bench.load.search import RampResult
from tfs_bench.load.search import SearchError
from tfs_bench.load.search import peak_under_sla
from tfs_bench.load.search import perseus_ramp as search_ramp
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.verdict import summarize_run
from tfs_bench.load.verdict import windows_for
from tfs_bench.load.windows import WARMUP_END
from tfs_bench.load.windows import GeneratorUsage
from tfs_bench.load.windows import WindowClock
from tfs_bench.load.windows import summarize_window
from tfs_bench.load.worker_protocol import TenantShare
from tfs_bench.load.worker_protocol import WorkerPlan
from tfs_bench.load.worker_pool import ProcessGroup
from tfs_bench.load.worker_pool import WorkerPlace
from tfs_bench.load.worker_pool import WorkerPool

DEFAULT_CLIENT_RETRIES = 2  # re-measurements of a run INVALID because of the host
START_LEAD_S = 0.05  # workers get the start time this far ahead, so they all begin on it
WORKER_START_TIMEOUT_S = 30.0  # a worker's own start-up (Python, grpc), on top of the connect timeout
_MAX_TICK_S = 0.05
_MAX_FLUSH_INTERVAL_S = 0.1
# About 100 event-loop lag probes per window, within these bounds (each wakes two threads).
_LAG_PROBES_PER_WINDOW = 100
_LAG_PROBE_INTERVAL_BOUNDS_S = (0.005, 0.05)


class LoadObserver:
    """Hears about runs as they progress; the binary prints, a library caller may ignore it."""

    def run_started(self, label: str, config: LoadConfig) -> None:
        pass

    def warmup_ended(self, label: str) -> None:
        pass

    def window_closed(self, label: str, window) -> None:
        pass

    def run_finished(self, label: str, result: RunResult) -> None:
        pass

    def run_failed(self, label: str, error: BaseException) -> None:
        """The run raised `error` after run_started; no run_finished follows."""

    def run_kept(self, label: str, result: RunResult) -> None:
        """--resume: the run was measured by an earlier attempt and is read back, not measured."""

    def run_repeated(self, label: str, result: RunResult, next_label: str) -> None:
        """`label` was INVALID because of the host (Verdict.blames_the_host): `next_label` re-measures it."""

    def workers_placed(self, label: str, workers: tuple[WorkerPlace, ...]) -> None:
        """The workers of a run on other machines (Ray) are started: their nodes and clock offsets."""


class ChainedObserver(LoadObserver):
    """Passes every event to each observer in turn (e.g. the binary's printer and a monitor)."""

    def __init__(self, *observers: LoadObserver):
        self._observers = observers

    def run_started(self, label: str, config: LoadConfig) -> None:
        for observer in self._observers:
            observer.run_started(label, config)

    def warmup_ended(self, label: str) -> None:
        for observer in self._observers:
            observer.warmup_ended(label)

    def window_closed(self, label: str, window) -> None:
        for observer in self._observers:
            observer.window_closed(label, window)

    def run_finished(self, label: str, result: RunResult) -> None:
        for observer in self._observers:
            observer.run_finished(label, result)

    def run_failed(self, label: str, error: BaseException) -> None:
        for observer in self._observers:
            observer.run_failed(label, error)

    def run_kept(self, label: str, result: RunResult) -> None:
        for observer in self._observers:
            observer.run_kept(label, result)

    def run_repeated(self, label: str, result: RunResult, next_label: str) -> None:
        for observer in self._observers:
            observer.run_repeated(label, result, next_label)

    def workers_placed(self, label: str, workers: tuple[WorkerPlace, ...]) -> None:
        for observer in self._observers:
            observer.workers_placed(label, workers)


# ----------------------------------------------------------------------------- public API


def run_load(
    config: LoadConfig,
    observer: LoadObserver | None = None,
    label: str = "run",
    invocation: Mapping[str, object] | None = None,
    resume: bool = False,
) -> RunResult:
    """One run of the config's traffic mix until every tenant is stable (or max_windows), in
    `config.output_dir`. Raises ConfigError (bad settings, refused directory), ModelError
    (model or signature not served) or LoadError (target unreachable, worker failure).

    `invocation` (e.g. the command line) is stored in run.json as it is. `resume` continues a
    run in `config.output_dir` started with the same settings: a finished one is read back, one
    that stopped part way is moved aside (`<dir>.interrupted-<k>`) and measured again.
    """
    observer = observer or LoadObserver()
    _join_cluster(config)
    if resume:
        directory, summary = run_files.reopen_for_resume(config.output_dir, RunManifest(config, {}, label=label))
        if isinstance(summary, run_files.RunSummary):
            observer.run_kept(label, summary.result)
            return summary.result
        run_files.move_aside(directory)
    else:
        run_files.check_output_dir(config.output_dir, config.overwrite)
    prepared = request_bodies.prepare(config)
    return _run(config, prepared, label, observer, invocation)


def sweep_concurrency(
    config: LoadConfig,
    levels: Sequence[int],
    observer: LoadObserver | None = None,
    tenant: str | None = None,
    invocation: Mapping[str, object] | None = None,
    client_retries: int = DEFAULT_CLIENT_RETRIES,
    resume: bool = False,
) -> tuple[RunResult, ...]:
    """Closed loop at each concurrency in turn (every tenant, or only `tenant`), one run each
    in `<output_dir>/concurrency-<N>`; `<output_dir>/summary.json` lists them all."""
    experiment = _Experiment(config, SweepSettings(tuple(levels), tenant), observer, invocation, client_retries, resume)
    results = []
    for level in levels:
        mix = with_concurrency(config.mix, level, tenant)
        results.append(experiment.run(f"concurrency-{level}", mix, concurrency=level))
    experiment.finish()
    return tuple(results)


def sweep_rates(
    config: LoadConfig,
    rates_rps: Sequence[float],
    observer: LoadObserver | None = None,
    tenant: str | None = None,
    invocation: Mapping[str, object] | None = None,
    client_retries: int = DEFAULT_CLIENT_RETRIES,
    resume: bool = False,
) -> tuple[RunResult, ...]:
    """Open loop at each rate in turn (the whole mix scaled to it, or only `tenant` at it), one
    run each in `<output_dir>/rate-<R>rps`; `<output_dir>/summary.json` lists them all."""
    _probe_mix(config.mix, tenant, rates_rps[0] if rates_rps else 1.0)  # refuses a mix without open-loop tenants
    experiment = _Experiment(config, RateSweepSettings(tuple(rates_rps), tenant), observer, invocation, client_retries,
                             resume)
    results = []
    for rate in rates_rps:
        results.append(experiment.run(f"rate-{rate:.6g}rps", _probe_mix(config.mix, tenant, rate), rate_rps=rate))
    experiment.finish()
    return tuple(results)


def find_peak(
    config: LoadConfig,
    start_rps: float,
    sla_ms: float,
    precision: float = search.DEFAULT_PRECISION,
    max_rate_rps: float | None = None,
    tenant: str | None = None,
    observer: LoadObserver | None = None,
    invocation: Mapping[str, object] | None = None,
    client_retries: int = DEFAULT_CLIENT_RETRIES,
    resume: bool = False,
) -> PeakResult:
    """The highest offered rate whose run is VALID with its SLA percentile ≤ `sla_ms`.

    With `tenant` None every open-loop tenant is scaled (the config's rates give the shares);
    otherwise only `tenant`'s rate varies and the others keep their rate or concurrency.
    Raises SearchError (with the probes) when the first probe fails.
    """
    _probe_mix(config.mix, tenant, start_rps)  # refuses a mix that cannot be probed before any file is written
    settings = PeakSettings(start_rps, sla_ms, precision, max_rate_rps, tenant)
    experiment = _Experiment(config, settings, observer, invocation, client_retries, resume)
    try:
        peak = peak_under_sla(experiment.probe(tenant), start_rps, sla_ms, precision, max_rate_rps)
    except SearchError as e:
        experiment.finish(error=str(e), probes=e.probes)
        raise
    experiment.finish(peak=peak)
    return peak


def perseus_ramp(
    config: LoadConfig,
    qps_start: float,
    qps_delta: float,
    sla_ms: float,
    patience: int = search.DEFAULT_PATIENCE,
    max_passes: int = search.DEFAULT_MAX_PASSES,
    tenant: str | None = None,
    observer: LoadObserver | None = None,
    invocation: Mapping[str, object] | None = None,
    client_retries: int = DEFAULT_CLIENT_RETRIES,
    resume: bool = False,
) -> RampResult:
    """PERSEUS: rates qps_start, +qps_delta, … until `patience` passes bring no throughput gain.

    `tenant` as in find_peak: None ramps the whole open-loop mix, a name ramps that tenant
    while the others hold their load (PERSEUS's two-tenant protocol).
    """
    _probe_mix(config.mix, tenant, qps_start)
    settings = RampSettings(qps_start, qps_delta, sla_ms, patience, max_passes, tenant)
    experiment = _Experiment(config, settings, observer, invocation, client_retries, resume)
    try:
        ramp = search_ramp(experiment.probe(tenant), qps_start, qps_delta, sla_ms, patience, max_passes=max_passes)
    except SearchError as e:
        experiment.finish(error=str(e), probes=e.probes)
        raise
    experiment.finish(ramp=ramp)
    return ramp


class _Experiment:
    """Several runs under one directory, with one summary.json rewritten after each run.

    Resumed, it replays the runs the summary already holds: a sweep skips its finished levels,
    and a search, whose next probe depends only on the outcomes before it, takes the same path
    through its recorded probes and measures from where it stopped. A run directory left part
    way is moved aside (`<label>.interrupted-<k>`) and measured again.
    """

    def __init__(
        self,
        config: LoadConfig,
        settings: ExperimentSettings,
        observer: LoadObserver | None,
        invocation: Mapping[str, object] | None,
        client_retries: int = DEFAULT_CLIENT_RETRIES,
        resume: bool = False,
    ):
        if client_retries < 0:
            raise ConfigError(f"client_retries must be >= 0, got {client_retries}")
        _join_cluster(config)
        manifest = RunManifest(config, invocation or {}, settings=settings)
        self._kept: dict[str, ExperimentRun] = {}
        self._started_at = run_files.now()
        if resume:
            self._dir, summary = run_files.reopen_for_resume(config.output_dir, manifest)
            if isinstance(summary, ExperimentSummary):
                self._kept = {run.label: run for run in summary.runs}
                self._started_at = summary.started_at
        else:
            run_files.check_output_dir(config.output_dir, config.overwrite)
        self._config = config
        self._prepared = request_bodies.prepare(config)
        self._settings = settings
        self._observer = observer or LoadObserver()
        if not resume:
            self._dir = run_files.claim_output_dir(config.output_dir, config.overwrite, manifest)
        self._runs: list[ExperimentRun] = []
        self._measurements = 0  # probes started, each counted once however often it was repeated
        self._client_retries = client_retries

    def run(self, label: str, mix, concurrency: int | None = None, rate_rps: float | None = None) -> RunResult:
        """Measures `mix` in <dir>/<label>; a run INVALID because of the host is measured again,
        up to `client_retries` times, each attempt in its own directory (<label>-retry<k>)."""
        attempt = 1
        while True:
            name = label if attempt == 1 else f"{label}-retry{attempt - 1}"
            kept = self._kept.pop(name, None)
            if kept is not None and (kept.concurrency, kept.rate_rps) == (concurrency, rate_rps):
                result = kept.result
                self._observer.run_kept(name, result)
            else:
                if (self._dir / name).exists():  # stopped part way by an earlier attempt of the experiment
                    run_files.move_aside(self._dir / name)
                config = dataclasses.replace(self._config, mix=mix, output_dir=str(self._dir / name), overwrite=False)
                result = _run(config, self._prepared, name, self._observer, None)
            self._runs.append(ExperimentRun(name, name, result, concurrency, rate_rps, attempt))
            self._write()
            if attempt > self._client_retries or not result.verdict.blames_the_host:
                return result
            attempt += 1
            self._observer.run_repeated(name, result, f"{label}-retry{attempt - 1}")

    def probe(self, tenant: str | None) -> Callable[[float], ProbeOutcome]:
        def probe(rate_rps: float) -> ProbeOutcome:
            label = f"probe-{self._measurements:02d}-{rate_rps:.6g}rps"
            self._measurements += 1
            result = self.run(label, _probe_mix(self._config.mix, tenant, rate_rps), rate_rps=rate_rps)
            return ProbeOutcome.from_run(result, tenant)

        return probe

    def finish(self, **outcome) -> None:
        """The last summary, with the outcome (ExperimentSummary's error/probes, peak or ramp)."""
        self._write(finished_at=run_files.now(), **outcome)

    def _write(self, **outcome) -> None:
        summary = ExperimentSummary(self._settings, self._started_at, tuple(self._runs), **outcome)
        run_files.write_summary(self._dir, summary)


def _probe_mix(mix: TrafficMix, tenant: str | None, rate_rps: float) -> TrafficMix:
    """The mix of one probe: every open-loop tenant scaled to `rate_rps` in all, or only `tenant` at it."""
    return scale_open_loop(mix, rate_rps) if tenant is None else mix.with_rate(tenant, rate_rps)


# ----------------------------------------------------------------------------- one run


def _run(
    config: LoadConfig,
    prepared: dict[str, TenantRequests],
    label: str,
    observer: LoadObserver,
    invocation: Mapping[str, object] | None,
) -> RunResult:
    run_dir = run_files.claim_output_dir(
        config.output_dir, config.overwrite, RunManifest(config, invocation or {}, label=label)
    )
    observer.run_started(label, config)
    started_at = run_files.now()
    windows = run_files.WindowLog(run_dir)
    plans = _worker_plans(config, prepared, run_dir)
    try:
        with WorkerPool(_open_workers(config, plans, run_dir)) as pool:
            if pool.places:
                observer.workers_placed(label, pool.places)
            measurement = _Measurement(config, pool, windows, label, observer)
            clock = measurement.run()
            stopped = pool.stop(max(plan.drain_timeout_s for plan in plans))
    except BaseException as e:
        # What was measured stays: windows.jsonl and the records are flushed as they come; the
        # marker says the run ended early and why, for `report` and for a reader of the files.
        run_files.mark_ended_early(run_dir, label, started_at, e, windows.count)
        observer.run_failed(label, e)  # e.g. the monitors stop their threads
        raise
    finally:
        windows.close()
    result = summarize_run(pool.records, clock.windows, config.policy, config.criteria)
    workers = tuple(_totals(link, stopped.get(link.index), run_dir) for link in pool.links)
    summary = RunSummary(
        label, started_at, run_files.now(), measurement.start_ns, clock.warmup_end_ns, clock.stop_reason, workers, result
    )
    run_files.write_summary(run_dir, summary)
    observer.run_finished(label, result)
    return result


def _join_cluster(config: LoadConfig) -> None:
    """With `config.ray_address`, joins the Ray cluster before anything is measured (fails fast)."""
    if config.ray_address is not None:
        from tfs_bench.load import ray_workers  # Ray is imported only by runs that ask for it

        ray_workers.connect(config.ray_address, config.connect_timeout_s)


def _open_workers(config: LoadConfig, plans: Sequence[WorkerPlan], run_dir: Path):
    """The run's workers: processes on this machine, or Ray actors' processes with `config.ray_address`."""
    if config.ray_address is None:
        return ProcessGroup(plans, run_dir)
    from tfs_bench.load import ray_workers  # Ray is imported only by runs that ask for it

    return ray_workers.RayGroup(plans, run_dir, config.ray_worker_cpus)


def _totals(link, stopped, run_dir: Path) -> WorkerTotals:
    """A worker's line in summary.json; a lost worker counts what was read of it and its last CPU time."""
    return WorkerTotals(
        link.index, run_files.records_path(run_dir, link.index).name, link.rows,
        stopped.cpu_s if stopped is not None else link.cpu_s, link.priority or "unknown",
        node=link.node, clock=link.clock, lost=link.lost,
    )


def _worker_plans(config: LoadConfig, prepared: dict[str, TenantRequests], run_dir: Path) -> list[WorkerPlan]:
    """Each worker's share: every W-th open-loop arrival, an even split of concurrencies and of the cap."""
    workers = config.workers
    caps = split_evenly(config.max_outstanding, workers)
    flush_interval_s = min(_MAX_FLUSH_INTERVAL_S, config.policy.window_s / 10)
    shortest, longest = _LAG_PROBE_INTERVAL_BOUNDS_S
    lag_probe_interval_s = min(max(config.policy.window_s / _LAG_PROBES_PER_WINDOW, shortest), longest)
    plans = []
    for w in range(workers):
        shares = []
        for load in config.mix.tenants:
            requests = prepared[load.tenant]
            shares.append(
                TenantShare(
                    tenant=load.tenant,
                    model=load.model,
                    target=requests.target,
                    batch_size=config.batch_size,
                    bodies=requests.bodies,
                    rest_path=requests.rest_path,
                    rate_rps=load.rate_rps,
                    arrival=load.arrival,
                    seed=load.seed,
                    concurrency=0 if load.open_loop else split_evenly(load.concurrency, workers)[w],
                    max_outstanding=caps[w],
                )
            )
        plans.append(
            WorkerPlan(
                worker=w,
                workers=workers,
                protocol=config.protocol,
                tenants=tuple(shares),
                records_path=str(run_files.records_path(run_dir, w)),
                flush_interval_s=flush_interval_s,
                request_timeout_s=config.request_timeout_s,
                connect_timeout_s=config.connect_timeout_s,
                lag_probe_interval_s=lag_probe_interval_s,
                priority=config.generator_priority,
            )
        )
    return plans


class _Measurement:
    """Drives the WindowClock over the workers' records: warm-up, windows, stop."""

    def __init__(self, config: LoadConfig, pool: WorkerPool, windows: run_files.WindowLog, label: str,
                 observer: LoadObserver):
        self._config = config
        self._pool = pool
        self._windows = windows
        self._label = label
        self._observer = observer
        self._offered = config.mix.offered_rates_rps()
        self._unwindowed: list[RequestRecord] = []  # read, and done at or after the last boundary
        self._sent_since_boundary = collections.Counter()
        self.start_ns: int | None = None
        self._arrivals = {
            t.tenant: ArrivalCounter(t.schedule()) for t in config.mix.tenants if t.open_loop
        }
        self._server = liveness.ServerWatch(config.request_timeout_s)

    def _scheduled(self, start_ns: int, end_ns: int) -> dict[str, int]:
        """Each open-loop tenant's arrivals intended in [start_ns, end_ns) (boundaries in order)."""
        counts = {}
        for tenant, counter in self._arrivals.items():
            before_start = counter.count_before(start_ns - self.start_ns)
            counts[tenant] = counter.count_before(end_ns - self.start_ns) - before_start
        return counts

    def run(self) -> WindowClock:
        pool, policy = self._pool, self._config.policy
        pool.wait_ready(self._config.connect_timeout_s + WORKER_START_TIMEOUT_S)
        self.start_ns = pool.start(START_LEAD_S)
        _wait_until_ns(self.start_ns)
        clock = WindowClock(windows_for(policy, self._config.criteria), time.perf_counter_ns)
        clock.start()
        tick_s = min(_MAX_TICK_S, policy.window_s / 20)
        cpu_at_last_boundary: dict[int, float] = {}
        wait_at_last_boundary: dict[int, float | None] = {}
        while not clock.done:
            self._take(pool.poll(tick_s))
            gone = self._server.gone(time.perf_counter_ns())
            if gone is not None:
                after = sum(w.end_ns > self._server.failing_since_ns for w in clock.windows)
                raise LoadError(f"{gone}; stopped after {self._windows.count} window(s), which are kept "
                                f"({after} of them ended after the first UNAVAILABLE)")
            boundary = clock.tick(min(self._sent_since_boundary[t] for t in self._offered))
            if boundary is None:
                continue
            marks, records = pool.mark(boundary.end_ns)
            in_window = self._close_boundary(records, boundary.end_ns)
            scheduled = self._scheduled(boundary.start_ns, boundary.end_ns)
            if boundary.kind == WARMUP_END:
                self._observer.warmup_ended(self._label)
            else:
                usage = tuple(
                    GeneratorUsage(
                        w,
                        max(m.cpu_s - cpu_at_last_boundary[w], 0.0),
                        m.loop_lag_p99_ms,
                        _difference(m.runqueue_wait_s, wait_at_last_boundary[w]),
                    )
                    for w, m in marks.items()
                )
                window = summarize_window(
                    boundary.index,
                    boundary.start_ns,
                    boundary.end_ns,
                    in_window,
                    self._offered,
                    policy,
                    usage,
                    scheduled,
                    tuple(link.index for link in pool.links if link.index not in marks),
                )
                self._windows.append(window)
                self._observer.window_closed(self._label, window)
                clock.close_window(window)
            cpu_at_last_boundary = {w: m.cpu_s for w, m in marks.items()}
            wait_at_last_boundary = {w: m.runqueue_wait_s for w, m in marks.items()}
        return clock

    def _take(self, records: list[RequestRecord]) -> None:
        self._server.observe(records)
        self._unwindowed += records
        self._sent_since_boundary.update(r.tenant for r in records if not r.dropped)

    def _close_boundary(self, records: list[RequestRecord], end_ns: int) -> list[RequestRecord]:
        """The records done before `end_ns` (all of them are here now); keeps the rest for later."""
        self._server.observe(records)
        self._unwindowed += records
        before = [r for r in self._unwindowed if r.done_ns < end_ns]
        self._unwindowed = [r for r in self._unwindowed if r.done_ns >= end_ns]
        self._sent_since_boundary = collections.Counter(r.tenant for r in self._unwindowed if not r.dropped)
        return before


def _difference(now: float | None, before: float | None) -> float | None:
    """A cumulative reading's growth since the last boundary (never negative); None if either is unknown."""
    return None if now is None or before is None else max(now - before, 0.0)


def _wait_until_ns(deadline_ns: int) -> None:
    remaining_s = (deadline_ns - time.perf_counter_ns()) / 1e9
    if remaining_s > 0:
        time.sleep(remaining_s)  # a deadline in the future, not a wait for another party
