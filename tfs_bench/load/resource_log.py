"""Resources and server metrics of a load run, per measurement window: `resources.jsonl`.

    with MonitoringObserver({"tfs": server_pid}, ["http://127.0.0.1:8501/monitoring/prometheus/metrics"]) as monitoring:
        run_load(config, ChainedObserver(printer, monitoring))

For each run it takes an idle baseline before the workers start, samples CPU (the server
process trees, and as the generator this process with its worker processes) and every GPU NVML sees while the run lasts,
and scrapes each Prometheus URL at warm-up end and at every window's end. `<run dir>/resources.jsonl`
gets an `IdleBaseline` line, then one `MonitoredWindow` line per window, each flushed;
`tfs_bench.load.resources_file` holds their records and `read_resources`, which reads them back.

A window's resources need a sample after its end, which the monitor takes on its own interval,
so a window's line is written once such a sample exists (at a later boundary, or at run end).
The monitor is stopped and joined in run_finished; a run that raises never calls run_finished,
so use the observer as a context manager (or call close()), which stops whatever is left.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence

import psutil

from tfs_bench import addresses
from tfs_bench.errors import ConfigError
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.worker_pool import WORKER_MODULE
from tfs_bench.load.driver import LoadObserver
from tfs_bench.monitors.breakdown import latency_breakdown, metrics_delta
from tfs_bench.monitors.cpu import CpuSampler
from tfs_bench.monitors.gpu import GpuSampler
from tfs_bench.monitors.samples import MetricsSnapshot, WindowResources
from tfs_bench.monitors.sampling import DEFAULT_INTERVAL_S, MAX_INTERVAL_S, ResourceMonitor
from tfs_bench.monitors.scrape import MetricsScraper
from tfs_bench.load.resources_file import IdleBaseline, MonitoredWindow, ResourceLog, TenantBreakdown, UrlMetricsDelta
from tfs_bench.load.windows import WindowSummary

DEFAULT_BASELINE_S = 1.0
_ENTRYPOINTS = {"grpc": "GRPC", "rest": "REST"}


def parse_server_pids(items: Iterable[str]) -> dict[str, int]:
    """`name=pid` items (a --server_pids list) as {name: pid}; raises ConfigError."""
    servers: dict[str, int] = {}
    for item in items:
        name, sep, pid = item.partition("=")
        name, pid = name.strip(), pid.strip()
        if not sep or not name or not pid.isdigit() or int(pid) < 1:
            raise ConfigError(f"--server_pids takes name=pid items with pid an integer >= 1, got {item!r}")
        if name in servers:
            raise ConfigError(f"--server_pids names {name!r} twice")
        if not psutil.pid_exists(int(pid)):
            raise ConfigError(f"--server_pids: {name}'s pid {pid} is not a running process")
        servers[name] = int(pid)
    return servers


@dataclasses.dataclass(frozen=True)
class MetricsSource:
    """A server's Prometheus page, and the load target (host:port) of that server when known.

    A tenant's latency breakdown comes from the page of the server it sends to: the source with
    its target, or, with no source naming a target, the one page that times its model.
    """

    url: str
    target: str | None = None

    def __post_init__(self):
        try:
            MetricsScraper(self.url)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def split_urls(values: Iterable[str], targets: Sequence[str] = ()) -> list[MetricsSource]:
    """`URL` or `TARGET=URL` items, repeated and/or comma-separated; raises ConfigError.

    TARGET (host:port) must be one of `targets` (normalised; when given), so a typo cannot
    leave a page with no tenant.
    """
    sources = []
    for item in (part.strip() for value in values for part in value.split(",")):
        if not item:
            continue
        head, sep, tail = item.partition("=")
        if sep and "://" not in head:
            target = addresses.normalize(head, "--metrics_url target")
            if targets and target not in targets:
                raise ConfigError(f"--metrics_url {item!r}: {target} is not one of the targets ({', '.join(targets)})")
            sources.append(MetricsSource(tail.strip(), target))
        else:
            sources.append(MetricsSource(item))
    urls = [s.url for s in sources]
    if len(set(urls)) != len(urls):
        raise ConfigError(f"--metrics_url lists a URL twice: {', '.join(urls)}")
    named = [s.target for s in sources if s.target is not None]
    if len(set(named)) != len(named):
        raise ConfigError(f"--metrics_url gives a target two pages: {', '.join(named)}")
    return sources


def is_load_worker(process: psutil.Process) -> bool:
    """Whether `process` is one of the load generator's worker processes (python -m tfs_bench.load.worker)."""
    return WORKER_MODULE in process.cmdline()


class MonitoringObserver(LoadObserver):
    """Monitors each run it hears about; see the module docstring for what it writes."""

    def __init__(
        self,
        servers: Mapping[str, int],
        metrics_urls: Sequence[str | MetricsSource] = (),
        *,
        baseline_s: float = DEFAULT_BASELINE_S,
        interval_s: float = DEFAULT_INTERVAL_S,
        gpu_factory=GpuSampler,
    ):
        if baseline_s < 0:
            raise ValueError(f"baseline_s must be >= 0, got {baseline_s}")
        if not 0 < interval_s <= MAX_INTERVAL_S:
            raise ValueError(f"interval_s must be in (0, {MAX_INTERVAL_S}], got {interval_s}")
        self._servers = dict(servers)
        self._sources = [u if isinstance(u, MetricsSource) else MetricsSource(u) for u in metrics_urls]
        self._baseline_s = baseline_s
        self._interval_s = interval_s
        self._gpu_factory = gpu_factory
        self._run: _MonitoredRun | None = None

    def run_started(self, label: str, config: LoadConfig) -> None:
        self.close()  # a previous run that raised, when the caller did not close us
        self._run = _MonitoredRun(
            config, self._servers, self._sources, self._baseline_s, self._interval_s, self._gpu_factory()
        )

    def warmup_ended(self, label: str) -> None:
        if self._run is not None:
            self._run.boundary()

    def window_closed(self, label: str, window: WindowSummary) -> None:
        if self._run is not None:
            self._run.window_closed(window)

    def run_finished(self, label: str, result) -> None:
        self.close()

    def run_failed(self, label: str, error: BaseException) -> None:
        self.close()

    def close(self) -> None:
        """Stops and joins the current run's monitor and writes its remaining windows; idempotent."""
        run, self._run = self._run, None
        if run is not None:
            run.finish()

    def __enter__(self) -> "MonitoringObserver":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _MonitoredRun:
    """One run's monitor, scrapes and file."""

    def __init__(
        self,
        config: LoadConfig,
        servers: Mapping[str, int],
        sources: Sequence[MetricsSource],
        baseline_s: float,
        interval_s: float,
        gpu: GpuSampler,
    ):
        self._sources = tuple(sources)
        self._scrapers = [MetricsScraper(s.url) for s in sources]
        self._entrypoint = _ENTRYPOINTS[config.protocol]
        self._models = {t.tenant: t.model for t in config.mix.tenants}
        self._targets = {t.tenant: t.target or config.targets[0] for t in config.mix.tenants}
        self._single_target = len(config.targets) == 1
        self._pending: list[_PendingWindow] = []  # windows waiting for a sample after their end
        self._last: list[MetricsSnapshot] | None = None
        self._log = ResourceLog(config.output_dir)
        self._gpu = gpu
        self._monitor = None
        try:
            self._gpu.open()  # never raises for a missing GPU: the status says why
            cpu = CpuSampler(servers, generator_pid=os.getpid(), generator_member=is_load_worker)
            monitor = ResourceMonitor(cpu, self._gpu, interval_s=interval_s)
            baseline = monitor.baseline(baseline_s)
            self._log.append(IdleBaseline(monitor.gpu_status, baseline))
            monitor.start()
            self._monitor = monitor
        except BaseException:
            self._gpu.close()
            self._log.close()
            raise

    def boundary(self) -> list[MetricsSnapshot] | None:
        """Scrapes every server; returns the previous boundary's snapshots (None before the first)."""
        before, self._last = self._last, [scraper.scrape() for scraper in self._scrapers]
        return before

    def window_closed(self, window: WindowSummary) -> None:
        before = self.boundary()
        deltas = [metrics_delta(b, a) for b, a in zip(before, self._last)] if before else []
        self._pending.append(_PendingWindow(
            window=window.index,
            start_ns=window.start_ns,
            end_ns=window.end_ns,
            server_metrics=tuple(UrlMetricsDelta(s.url, d) for s, d in zip(self._scrapers, deltas)),
            breakdown={tenant: self._breakdown(tenant, summary, deltas) for tenant, summary in window.tenants.items()},
        ))
        cpu = self._monitor.samples("run").cpu
        self._flush(cpu[-1].t_ns if cpu else None)

    def _breakdown(self, tenant: str, summary, deltas) -> TenantBreakdown:
        model = self._models[tenant]
        if not self._scrapers:
            return TenantBreakdown(model, "missing", "no metrics URL was given")
        client_ms = summary.service_time.mean_ms
        if client_ms is None:
            return TenantBreakdown(model, "no_requests", "no successful client request in the window")
        if not deltas:
            return TenantBreakdown(model, "missing", "no scrape at the window's start")
        target = self._targets[tenant]
        mine = [k for k, s in enumerate(self._sources) if s.target == target]
        if mine:  # the page of the server this tenant sends to
            (k,) = mine
            return TenantBreakdown.measured(
                self._sources[k].url, latency_breakdown(deltas[k], model, client_ms * 1000.0, self._entrypoint)
            )
        unnamed = [k for k, s in enumerate(self._sources) if s.target is None]
        if not unnamed:
            return TenantBreakdown(model, "missing", f"no metrics URL is given for target {target}")
        measured = [
            (self._sources[k].url, latency_breakdown(deltas[k], model, client_ms * 1000.0, self._entrypoint))
            for k in unnamed
        ]
        timing = [(u, b) for u, b in measured if b.status == "ok"]
        if len(timing) > 1 and not self._single_target:
            urls = ", ".join(u for u, _ in timing)
            return TenantBreakdown(
                model, "ambiguous",
                f"{model} is timed on several servers ({urls}); name each page's target: --metrics_url=TARGET=URL",
            )
        url, chosen = (timing or measured)[0]
        return TenantBreakdown.measured(url, chosen)

    def _flush(self, sampled_until_ns: int | None) -> None:
        windows = [(w.start_ns, w.end_ns) for w in self._pending]
        ready = [i for i, (_, end_ns) in enumerate(windows) if sampled_until_ns is not None and end_ns <= sampled_until_ns]
        if not ready:
            return
        resources = self._monitor.windows([windows[i] for i in ready])
        for i, window_resources in zip(ready, resources):
            self._log.append(self._pending[i].with_resources(window_resources))
        self._pending = self._pending[len(ready):]

    def finish(self) -> None:
        """Stops (joins) the monitor, writes every window left, releases NVML and the file."""
        try:
            if self._monitor is not None:
                self._monitor.stop()
                self._flush(max((w.end_ns for w in self._pending), default=None))
        finally:
            self._gpu.close()
            self._log.close()


@dataclasses.dataclass(frozen=True)
class _PendingWindow:
    """A MonitoredWindow but for its resources, which need a sample after the window's end."""

    window: int
    start_ns: int
    end_ns: int
    server_metrics: tuple[UrlMetricsDelta, ...]
    breakdown: Mapping[str, TenantBreakdown]

    def with_resources(self, resources: WindowResources) -> MonitoredWindow:
        return MonitoredWindow(self.window, self.start_ns, self.end_ns, self.server_metrics, self.breakdown, resources)
