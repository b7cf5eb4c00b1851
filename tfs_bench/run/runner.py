"""Runs an experiment's steps: launch each deployment's servers, measure, tear down, journal.

    runner = Runner(spec, where, run_dir, journal, progress)
    runner.run(steps)

Steps of one deployment run while its servers are up; the servers are stopped before the next
deployment starts (and when anything raises, Ctrl-C included). Every step ends as one journal
line: `done` with its result (the figures later steps and the analysis read), `failed` with the
error when its measurement could not give them (a search whose first probe failed, a server that
would not start), or `skipped` when a step it needs did not finish done. A failure never loses
what was measured: it is journalled and the experiment goes on.

Each load measurement is a sweep or search of tfs_bench.load.driver under `<run>/<step id>/`,
with `resources.jsonl` per run (server CPU and memory, GPU, and the server-side latency
breakdown from each server's own metrics page).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

from tfs_bench import addresses
from tfs_bench.errors import ConfigError
from tfs_bench.errors import LaunchError
from tfs_bench.errors import LoadError
from tfs_bench.errors import ModelError
from tfs_bench.errors import RunFileError
from tfs_bench.launch import launchers
from tfs_bench.launch import ports
from tfs_bench.load import driver
from tfs_bench.load import run_files
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.raw_throughput import RawRequest
from tfs_bench.load.raw_throughput import measure_in_fresh_process
from tfs_bench.load.resource_log import MetricsSource
from tfs_bench.load.resource_log import MonitoringObserver
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.schedule import tenant_seed
from tfs_bench.load.search import SearchError
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.monitors.scrape import metrics_url
from tfs_bench.plan import docker_deploy
from tfs_bench.plan import placement
from tfs_bench.plan import plan_files
from tfs_bench.plan import plan_record
from tfs_bench.run.experiment import Deployment
from tfs_bench.run.experiment import RunSpec
from tfs_bench.run.experiment import Step
from tfs_bench.run.experiment import closed_id
from tfs_bench.run.experiment import peak_id
from tfs_bench.run.experiment import reference_rate
from tfs_bench.run.journal import Journal
from tfs_bench.run.journal import StepRecord
from tfs_bench.run.progress import Progress

START_ATTEMPTS = 3  # a peak search whose first probe fails starts again from half the rate, this many starts in all
MIN_START_RPS = 1.0
_MEASUREMENT_ERRORS = (SearchError, LoadError, LaunchError, ModelError, RunFileError, ConfigError)


@dataclasses.dataclass(frozen=True)
class Where:
    """This host's side of an experiment: where exports are, and how servers are reached."""

    saved_models_dir: str
    server_binary: str | None = None  # --server=binary: tensorflow_model_server; docker: the docker client
    external_targets: Mapping[str, str] = dataclasses.field(default_factory=dict)  # plan server name -> gRPC host:port
    docker_image_tag: str = "latest"


class StepFailed(Exception):
    """A step cannot give its figures; the message says why (it goes to the journal)."""


class StoppedOnFailure(Exception):
    """A step failed and the runner was told to stop there (--stop_on_failure)."""


class Runner:
    def __init__(
        self,
        spec: RunSpec,
        where: Where,
        run_dir: Path,
        journal: Journal,
        progress: Progress,
        out: Callable[[str], None] = print,
        on_priority: Callable[[str], None] | None = None,
        stop_on_failure: bool = False,
    ):
        self._stop_on_failure = stop_on_failure
        self._spec = spec
        self._where = where
        self._dir = Path(run_dir)
        self._journal = journal
        self._progress = progress
        self._out = out
        self._on_priority = on_priority  # told what priority the generator's workers got, once
        self._priority_seen = False

    # -- the loop

    def run(self, steps: Sequence[Step]) -> None:
        for deployment, group in _by_deployment(steps):
            pending = [s for s in group if self._journal.finished(s.id) is None]
            for step in group:
                if step not in pending:
                    self._progress.skipped_before_start(step)
            if not pending:
                continue
            if deployment is None:
                for step in pending:
                    self._run_step(step, None)
                continue
            self._run_deployment(deployment, pending)

    def _run_deployment(self, deployment: Deployment, steps: list[Step]) -> None:
        servers = None
        try:
            for step in steps:
                if self._blocked(step) is None and servers is None:
                    try:
                        servers = self._launch(deployment)
                    except _MEASUREMENT_ERRORS as e:
                        self._fail_all(steps, f"the servers of {deployment.key} did not start: {e}")
                        return
                self._run_step(step, servers)
        finally:
            if servers is not None:
                for server in servers.values():
                    server.stop()

    def _fail_all(self, steps: list[Step], error: str) -> None:
        for step in steps:
            if self._journal.finished(step.id) is None:
                self._progress.started(step)
                self._record(step, "failed", error, started_at=_now(), took_s=0.0)

    def _blocked(self, step: Step) -> str | None:
        """Why the step cannot run (a step it needs did not finish done), or None."""
        for need in step.needs:
            record = self._journal.finished(need)
            if record is None or record.status != "done":
                state = "did not run" if record is None else record.status
                return f"needs {need}, which {state}" + (f": {record.error}" if record and record.error else "")
        return None

    def _run_step(self, step: Step, servers: Mapping[str, launchers.RunningServer] | None) -> None:
        self._progress.started(step)
        started_at, clock = _now(), _Stopwatch()
        blocked = self._blocked(step)
        if blocked is not None:
            self._record(step, "skipped", blocked, started_at=started_at, took_s=0.0)
            return
        step_dir = self._dir / step.id
        _move_aside(step_dir)
        step_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            result = self._measure(step, step_dir, servers)
        except (StepFailed, *_MEASUREMENT_ERRORS) as e:
            self._record(step, "failed", str(e), started_at=started_at, took_s=clock.seconds(), measured=step_dir.exists())
            return
        record = StepRecord(step.id, "done", started_at, _now(), clock.seconds(), step.id, result)
        self._journal.append(record)
        self._progress.finished(step, "done", _summary(step, result))

    def _record(self, step: Step, status: str, error: str, *, started_at: str, took_s: float, measured: bool = False) -> None:
        record = StepRecord(step.id, status, started_at, _now(), took_s, step.id if measured else None, {}, error)
        self._journal.append(record)
        self._progress.finished(step, status, error)
        if status == "failed" and self._stop_on_failure:
            raise StoppedOnFailure(f"step {step.id} failed")

    # -- servers

    def _launch(self, deployment: Deployment) -> dict[str, launchers.RunningServer]:
        spec, where = self._spec, self._where
        served = [deployment.served_name(m) for m in deployment.models]
        entries = tuple(placement.load_model_entry(n, os.path.abspath(os.path.join(where.saved_models_dir, n))) for n in served)
        batching = None
        if deployment.batching:
            batching = placement.BatchingSpec(
                max_batch_size=spec.framework.max_batch_size, batch_timeout_micros=spec.framework.batch_timeout_micros
            )
        servers_needed = 1 if deployment.hosting == "multi_model" else len(entries)
        plan = placement.make_plan(placement.PlanRequest(
            models=entries,
            hosting=deployment.hosting,
            device=deployment.device,
            batching=batching,
            threads=deployment.threads,
            cpu_cores=tuple(sorted(os.sched_getaffinity(0))),
            port_base=ports.free_port_base(servers_needed),
        ))
        deployment_dir = self._dir / deployment.key
        try:
            image = docker_deploy.image_name(where.docker_image_tag, gpu=deployment.device == "gpu")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        path = plan_files.write_plan(plan, deployment_dir / "plan", image)
        planned = plan_record.read_plan(path).servers
        specs = [self._launch_spec(server, deployment, deployment_dir) for server in planned]
        self._out(f"    starting {len(specs)} {spec.server} server(s) for {deployment.key}")
        running = launchers.launch_all(specs)
        servers = {s.name: r for s, r in zip(planned, running)}
        try:
            self._warm_up(deployment, servers, deployment_dir / "warm-up")
        except BaseException:
            for server in servers.values():
                server.stop()
            raise
        return servers

    def _warm_up(self, deployment: Deployment, servers, warm_dir: Path) -> None:
        """Every model of a fresh deployment served closed loop for `deployment_warmup_s`, its result unused.

        A model's first calls in a new server are slow (TensorFlow optimises and allocates on
        first use); without this, the first probe of a search meets them as a burst of multi-second
        latencies and fails for a reason that is not the rate. Kept in <deployment>/warm-up.
        """
        warmup_s = self._spec.deployment_warmup_s
        if warmup_s <= 0:
            return
        mix = TrafficMix(tuple(
            self._tenant(deployment.served_name(m), self._target(servers, deployment, m), concurrency=1)
            for m in deployment.models
        ))
        policy = WindowPolicy(
            window_s=warmup_s / 2, window_min_requests=0, warmup_s=warmup_s / 2, max_windows=1, stability_windows=1,
            sla_percentile=self._spec.sla_percentile,
        )
        config = dataclasses.replace(
            self._config(mix, servers, warm_dir), policy=policy, overwrite=True,  # a resumed run warms up again
            criteria=ValidityCriteria(min_duration_s=policy.window_s, min_requests=1),
        )
        driver.run_load(config, label="warm-up")

    def _launch_spec(self, server: plan_record.PlannedServer, deployment: Deployment, deployment_dir: Path):
        kind = self._spec.server
        if kind == "external":
            address = self._where.external_targets.get(server.name)
            if address is None:
                raise ConfigError(
                    f"--server=external needs the address of plan server {server.name!r}: "
                    f"--external_targets={server.name}=HOST:PORT"
                )
            return launchers.LaunchSpec("external", server, external_address=address)
        return launchers.LaunchSpec(
            kind,
            server,
            log_dir=str(deployment_dir / "logs"),
            binary_path=self._where.server_binary,
            nice=self._spec.server_nice,
            hide_gpus=deployment.device == "cpu",
        )

    # -- measurements

    def _measure(self, step: Step, step_dir: Path, servers) -> dict:
        if step.kind == "raw":
            return self._raw(step, step_dir)
        measure = {
            "closed": self._closed,
            "peak": self._peak,
            "perseus": self._perseus,
            "balanced": self._balanced,
            "reference": self._reference,
            "framework": self._framework,
        }[step.kind]
        with _Monitoring(servers, self._spec.idle_baseline_s) as monitoring:
            result = measure(step, step_dir, servers, monitoring.observer(self._out))
        self._note_priority(step_dir)
        return result

    def _config(self, mix: TrafficMix, servers, step_dir: Path) -> LoadConfig:
        spec = self._spec
        return LoadConfig(
            mix=mix,
            targets=tuple(s.grpc_target for s in servers.values()),
            output_dir=str(step_dir),
            batch_size=spec.batch_size,
            policy=spec.policy,
            criteria=spec.criteria,
            seed=spec.seed,
            generator_priority=spec.generator_priority,
        )

    def _tenant(self, model: str, target: str, **load) -> TenantLoad:
        """A tenant named by its model, with the run seed's stream for that name (tenant_seed)."""
        return TenantLoad(model, model, target=target, seed=tenant_seed(self._spec.seed, model), **load)

    def _target(self, servers, deployment: Deployment, model: str) -> str:
        served = deployment.served_name(model)
        for server in servers.values():
            if served in server.model_ready_s:
                return server.grpc_target
        raise StepFailed(f"no server of {deployment.key} serves {served}")

    def _closed(self, step, step_dir, servers, observer) -> dict:
        model = step.deployment.served_name(step.model)
        mix = TrafficMix((self._tenant(model, self._target(servers, step.deployment, step.model), concurrency=1),))
        results = driver.sweep_concurrency(
            self._config(mix, servers, step_dir), self._spec.concurrency, observer, client_retries=self._spec.client_retries
        )
        levels = [_level(c, r) for c, r in zip(self._spec.concurrency, results)]
        valid = [lv for lv in levels if lv["valid"]]
        best = max(valid, key=lambda lv: lv["throughput_rps"]) if valid else None
        return {
            "levels": levels,
            "best_concurrency": best["concurrency"] if best else None,
            "best_throughput_rps": best["throughput_rps"] if best else None,
        }

    def _best_closed(self, device: str, model: str) -> dict:
        result = self._journal.finished(closed_id(device, model)).result
        if result["best_concurrency"] is None:
            reasons = "; ".join(f"c={lv['concurrency']}: {', '.join(lv['invalid_reasons'])}" for lv in result["levels"])
            raise StepFailed(f"no closed-loop level of {model} on {device} was VALID ({reasons})")
        return result

    def _dedicated_peak(self, device: str, model: str) -> float:
        return self._journal.finished(peak_id(device, model)).result["peak_rps"]

    def _peak(self, step, step_dir, servers, observer) -> dict:
        best = self._best_closed(step.device, step.model)
        start = max(MIN_START_RPS, round(self._spec.peak_start_fraction * best["best_throughput_rps"], 1))
        target = self._target(servers, step.deployment, step.model)
        peak, search_dir, starts = self._search(
            step_dir, lambda rate: TrafficMix((self._tenant(step.model, target, rate_rps=rate),)), start, servers, observer
        )
        return {
            "search_dir": search_dir.relative_to(self._dir).as_posix(),
            "starts_rps": starts,
            "peak_rps": peak.peak_rps,
            "throughput_rps": peak.lower.outcome.throughput_rps,
            "sla_latency_ms": peak.lower.outcome.sla_latency_ms,
            "bracketed": peak.bracketed,
            "probes": len(peak.probes),
        }

    def _perseus(self, step, step_dir, servers, observer) -> dict:
        fixed, searched, device = step.fixed_model, step.model, step.device
        fixed_rate = round(step.fraction * self._dedicated_peak(device, fixed), 2)
        start = max(MIN_START_RPS, round(self._spec.peak_start_fraction * (1 - step.fraction) * self._dedicated_peak(device, searched), 1))
        fixed_target = self._target(servers, step.deployment, fixed)
        searched_target = self._target(servers, step.deployment, searched)
        peak, search_dir, starts = self._search(
            step_dir,
            lambda rate: TrafficMix((
                self._tenant(fixed, fixed_target, rate_rps=fixed_rate),
                self._tenant(searched, searched_target, rate_rps=rate),
            )),
            start, servers, observer, tenant=searched,
        )
        at_peak = _run_at(search_dir, peak.peak_rps)
        return {
            "fixed_model": fixed,
            "fixed_rate_rps": fixed_rate,
            "searched_model": searched,
            "search_dir": search_dir.relative_to(self._dir).as_posix(),
            "starts_rps": starts,
            "peak_rps": peak.peak_rps,
            "bracketed": peak.bracketed,
            "tenants": _tenant_figures(at_peak),
        }

    def _balanced(self, step, step_dir, servers, observer) -> dict:
        peaks = {m: self._dedicated_peak(step.device, m) for m in step.deployment.models}
        total_peak = sum(peaks.values())
        # Every model at the same share of its own dedicated peak; the search scales them together.
        start = max(MIN_START_RPS, round(self._spec.peak_start_fraction * total_peak / len(peaks), 1))
        targets = {m: self._target(servers, step.deployment, m) for m in peaks}
        peak, search_dir, starts = self._search(
            step_dir,
            lambda rate: TrafficMix(tuple(self._tenant(m, targets[m], rate_rps=rate * p / total_peak) for m, p in peaks.items())),
            start, servers, observer,
        )
        return {
            "shares": {m: p / total_peak for m, p in peaks.items()},
            "search_dir": search_dir.relative_to(self._dir).as_posix(),
            "starts_rps": starts,
            "peak_rps": peak.peak_rps,
            "bracketed": peak.bracketed,
            "tenants": _tenant_figures(_run_at(search_dir, peak.peak_rps)),
        }

    def _reference(self, step, step_dir, servers, observer) -> dict:
        rates = self._colocated_rates(step.device, step.model)
        if not rates:
            raise StepFailed(f"no shared operating point of {step.model} on {step.device} was measured, so no rate to repeat alone")
        target = self._target(servers, step.deployment, step.model)
        mix = TrafficMix((self._tenant(step.model, target, rate_rps=rates[0]),))
        results = driver.sweep_rates(
            self._config(mix, servers, step_dir), rates, observer, tenant=step.model, client_retries=self._spec.client_retries
        )
        return {
            "model": step.model,
            "rates": [
                {"offered_rate_rps": rate, **_tenant_figures(result)[step.model]}
                for rate, result in zip(rates, results)
            ],
        }

    def _colocated_rates(self, device: str, model: str) -> list[float]:
        """The offered rates of `model` at every shared operating point measured on `device`."""
        rates = set()
        for record in self._journal.records.values():
            tenants = record.result.get("tenants") if record.status == "done" else None
            if tenants and record.step.startswith(f"{device}/") and model in tenants:
                rates.add(reference_rate(tenants[model]["offered_rate_rps"]))
        return sorted(rates)

    def _search(self, step_dir: Path, mix_at, start: float, servers, observer, tenant: str | None = None):
        """The peak search from `start`; when its first probe fails, again from half the rate, up
        to START_ATTEMPTS starts (each search in <step>/from-<rate>rps). The start is a guess from
        other measurements, so a too-high guess costs a search, not the step. Returns (peak, its
        directory, the starts tried); raises the last SearchError."""
        starts = [start]
        while True:
            search_dir = step_dir / f"from-{start:g}rps"
            try:
                peak = driver.find_peak(
                    self._config(mix_at(start), servers, search_dir), start, self._spec.sla_ms,
                    precision=self._spec.peak_precision, tenant=tenant, observer=observer,
                    client_retries=self._spec.client_retries,
                )
                return peak, search_dir, starts
            except SearchError as e:
                if len(starts) == START_ATTEMPTS or start <= MIN_START_RPS:
                    raise SearchError(f"{e} (starts tried: {', '.join(f'{r:g}' for r in starts)} rps)", e.probes) from None
                start = max(MIN_START_RPS, round(start / 2, 1))
                starts.append(start)
                self._out(f"      the first probe at {starts[-2]:g} rps failed; searching again from {start:g} rps")

    def _framework(self, step, step_dir, servers, observer) -> dict:
        concurrency = self._best_closed(step.device, step.model)["best_concurrency"]
        model = step.deployment.served_name(step.model)
        mix = TrafficMix((self._tenant(model, self._target(servers, step.deployment, step.model), concurrency=concurrency),))
        (result,) = driver.sweep_concurrency(
            self._config(mix, servers, step_dir), (concurrency,), observer, client_retries=self._spec.client_retries
        )
        deployment = step.deployment
        return {
            "variant": deployment.variant,
            "threads": deployment.threads.to_json(),
            "batching": deployment.batching,
            "encoding": deployment.encoding,
            **_level(concurrency, result),
        }

    def _raw(self, step, step_dir) -> dict:
        spec = self._spec
        base = os.path.abspath(os.path.join(self._where.saved_models_dir, step.model))
        versions = placement.version_dirs(base)  # ModelError when there is none
        savedmodel = str(versions[max(versions)])
        step_dir.mkdir(parents=True)
        by_concurrency = []
        for concurrency in spec.concurrency:
            raw = measure_in_fresh_process(RawRequest(
                savedmodel=savedmodel, batch_size=spec.batch_size, duration_s=spec.raw_duration_s,
                warmup_s=spec.policy.warmup_s, concurrency=concurrency, seed=spec.seed,
            ))
            by_concurrency.append({"concurrency": concurrency, **dataclasses.asdict(raw)})
        best = max(by_concurrency, key=lambda r: r["images_per_s"])
        result = {"savedmodel": savedmodel, "by_concurrency": by_concurrency,
                  "best_concurrency": best["concurrency"], "best_images_per_s": best["images_per_s"]}
        run_files.write_json_atomic(step_dir / "raw.json", result)
        return result

    def _note_priority(self, step_dir: Path) -> None:
        if self._priority_seen or self._on_priority is None:
            return
        for summary_path in sorted(step_dir.rglob(run_files.SUMMARY_FILE)):
            summary = run_files.read_summary(summary_path.parent)
            workers = getattr(summary, "workers", ())
            if workers:
                self._priority_seen = True
                self._on_priority(workers[0].priority)
                return


# ----------------------------------------------------------------------------- helpers


def _by_deployment(steps: Sequence[Step]):
    """Consecutive steps of the same deployment, as (deployment, [steps])."""
    groups: list[tuple[Deployment | None, list[Step]]] = []
    for step in steps:
        if groups and groups[-1][0] == step.deployment:
            groups[-1][1].append(step)
        else:
            groups.append((step.deployment, [step]))
    return groups


def _move_aside(step_dir: Path) -> None:
    """A directory left by an interrupted attempt of this step is kept beside it, not reused."""
    if step_dir.exists():
        run_files.move_aside(step_dir)


def _level(concurrency: int, result: RunResult) -> dict:
    return {
        "concurrency": concurrency,
        "valid": result.verdict.valid,
        "invalid_reasons": [r.code for r in result.verdict.reasons],
        "throughput_rps": result.aggregate.throughput_rps,
        "sla_latency_ms": result.sla_latency_ms(),
        "p99_ms": result.aggregate.response_time.p99_ms,
    }


def _run_at(step_dir: Path, rate_rps: float) -> RunResult:
    """The run of a search at `rate_rps` (its last attempt)."""
    summary = run_files.read_summary(step_dir)
    for run in summary.measurements:
        if run.rate_rps == rate_rps:
            return run.result
    raise RunFileError(f"{step_dir}: no probe at {rate_rps} rps in summary.json")


def _tenant_figures(result: RunResult) -> dict:
    return {
        name: {
            "valid": tenant.verdict.valid,
            "offered_rate_rps": tenant.pooled.offered_rate_rps,
            "throughput_rps": tenant.pooled.throughput_rps,
            "sla_latency_ms": result.sla_latency_ms(name),
            "p99_ms": tenant.pooled.response_time.p99_ms,
        }
        for name, tenant in result.tenants.items()
    }


def _summary(step: Step, result: Mapping) -> str:
    if step.kind == "closed":
        best = result["best_throughput_rps"]
        return "no VALID level" if best is None else f"best {best:.1f} rps at concurrency {result['best_concurrency']}"
    if step.kind == "raw":
        return f"raw {result['best_images_per_s']:.1f} images/s at concurrency {result['best_concurrency']}"
    if step.kind == "framework":
        return f"{result['variant']}: {result['throughput_rps']:.1f} rps ({'VALID' if result['valid'] else 'INVALID'})"
    if step.kind == "reference":
        return f"{result['model']} alone at {len(result['rates'])} co-located rate(s)"
    if step.kind == "perseus":
        return f"{result['searched_model']} peaks at {result['peak_rps']:g} rps with {result['fixed_model']} at {result['fixed_rate_rps']:g} rps"
    return f"peak {result['peak_rps']:g} rps under the SLA"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _Stopwatch:
    def __init__(self):
        self._start = time.monotonic()

    def seconds(self) -> float:
        return round(time.monotonic() - self._start, 3)


class _Monitoring:
    """The resource monitor and metrics scrapes of one step's runs, stopped when the step ends."""

    def __init__(self, servers: Mapping[str, launchers.RunningServer], baseline_s: float):
        pids = {name: s.pid for name, s in servers.items() if s.pid is not None}
        sources = []
        for server in servers.values():
            if server.rest_address is not None:
                rest = addresses.parse(server.rest_address)
                sources.append(MetricsSource(metrics_url(rest.host, rest.port), server.grpc_target))
        self._monitor = MonitoringObserver(pids, sources, baseline_s=baseline_s)

    def observer(self, out: Callable[[str], None]) -> driver.LoadObserver:
        return driver.ChainedObserver(_RunLines(out), self._monitor)

    def __enter__(self) -> "_Monitoring":
        return self

    def __exit__(self, *exc_info) -> None:
        self._monitor.close()


class _RunLines(driver.LoadObserver):
    """One line per run of a step: its verdict, throughput and SLA latency."""

    def __init__(self, out: Callable[[str], None]):
        self._out = out

    def run_finished(self, label: str, result: RunResult) -> None:
        sla = result.sla_latency_ms()
        latency = "n/a" if sla is None else f"{sla:.1f} ms"
        reasons = "" if result.verdict.valid else " (" + ", ".join(r.code for r in result.verdict.reasons) + ")"
        self._out(f"      {label}: {result.verdict.label}{reasons}, {result.aggregate.throughput_rps:.1f} rps, SLA percentile {latency}")

    def run_repeated(self, label: str, result: RunResult, next_label: str) -> None:
        self._out(f"      {label}: the host kept the generator from its schedule; measuring again as {next_label}")
