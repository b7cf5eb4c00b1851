"""Resources and server metrics of a load run, per measurement window: `resources.jsonl`.

    with MonitoringObserver({"tfs": server_pid}, ["http://127.0.0.1:8501/monitoring/prometheus/metrics"]) as monitoring:
        run_load(config, ChainedObserver(printer, monitoring))

For each run it takes an idle baseline before the workers start, samples CPU (the server
process trees and this process as the generator) and every GPU NVML sees while the run lasts,
and scrapes each Prometheus URL at warm-up end and at every window's end. `<run dir>/resources.jsonl`
gets an `IdleBaseline` line, then one `MonitoredWindow` line per window, each flushed;
`read_resources` reads them back.

A window's resources need a sample after its end, which the monitor takes on its own interval,
so a window's line is written once such a sample exists (at a later boundary, or at run end).
The monitor is stopped and joined in run_finished; a run that raises never calls run_finished,
so use the observer as a context manager (or call close()), which stops whatever is left.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import psutil

from tfs_bench.errors import ConfigError
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.driver import LoadObserver
from tfs_bench.monitors.breakdown import latency_breakdown, metrics_delta
from tfs_bench.monitors.cpu import CpuSampler
from tfs_bench.monitors.gpu import GpuSampler
from tfs_bench.monitors.samples import (
    BREAKDOWN_STATUSES,
    GpuStatus,
    LatencyBreakdown,
    MetricsSnapshot,
    ServerMetricsDelta,
    WindowResources,
)
from tfs_bench.monitors.sampling import DEFAULT_INTERVAL_S, MAX_INTERVAL_S, ResourceMonitor
from tfs_bench.monitors.scrape import MetricsScraper
from tfs_bench.load.run_files import read_jsonl
from tfs_bench.load.windows import WindowSummary

SCHEMA_VERSION = 1
RESOURCES_FILE = "resources.jsonl"
DEFAULT_BASELINE_S = 1.0
_ENTRYPOINTS = {"grpc": "GRPC", "rest": "REST"}


_UNMEASURED_STATUSES = ("missing", "no_requests")


def _check_schema(d: Mapping, kind: str) -> None:
    if d.get("schema_version") != SCHEMA_VERSION or d.get("kind") != kind:
        raise ValueError(
            f"not a {kind} line of schema_version {SCHEMA_VERSION}: "
            f"kind {d.get('kind')!r}, schema_version {d.get('schema_version')!r}"
        )


# ----------------------------------------------------------------------------- resources.jsonl


@dataclasses.dataclass(frozen=True)
class IdleBaseline:
    """The first line: the GPU monitoring status and the idle machine before the workers start
    (`resources` None when the baseline had too few samples)."""

    KIND: ClassVar[str] = "baseline"
    gpu_status: GpuStatus
    resources: WindowResources | None

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.KIND,
            "gpu_status": self.gpu_status.to_json(),
            "resources": self.resources.to_json() if self.resources else None,
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "IdleBaseline":
        _check_schema(d, cls.KIND)
        resources = WindowResources.from_json(d["resources"]) if d["resources"] is not None else None
        return cls(GpuStatus.from_json(d["gpu_status"]), resources)


@dataclasses.dataclass(frozen=True)
class UrlMetricsDelta:
    """One metrics URL's deltas over a window."""

    url: str
    delta: ServerMetricsDelta

    def to_json(self) -> dict:
        return {"url": self.url, **self.delta.to_json()}

    @classmethod
    def from_json(cls, d: Mapping) -> "UrlMetricsDelta":
        return cls(d["url"], ServerMetricsDelta.from_json(d))


@dataclasses.dataclass(frozen=True)
class TenantBreakdown:
    """A tenant's server-side latency breakdown in one window, or why there is none.

    Measured: the `LatencyBreakdown` of the server (`url`) whose metrics timed the tenant's
    model (its status may still say why it has no figures). Unmeasured: no metrics URL, no
    successful client request, or no scrape at the window's start ("missing"/"no_requests").
    """

    model_name: str
    status: str
    reason: str | None
    url: str | None = None
    breakdown: LatencyBreakdown | None = None

    def __post_init__(self):
        if self.breakdown is not None:
            b = self.breakdown
            if not self.url or (b.model_name, b.status, b.reason) != (self.model_name, self.status, self.reason):
                raise ValueError("a measured TenantBreakdown has a url and repeats its breakdown's model, status, reason")
        elif self.url is not None or self.status not in _UNMEASURED_STATUSES or not self.reason:
            raise ValueError(
                f"an unmeasured TenantBreakdown has no url, a status in {_UNMEASURED_STATUSES} and a reason; "
                f"got {self.status!r}, {self.reason!r}"
            )
        if self.status not in BREAKDOWN_STATUSES:
            raise ValueError(f"TenantBreakdown.status must be one of {BREAKDOWN_STATUSES}, got {self.status!r}")

    @classmethod
    def measured(cls, url: str, breakdown: LatencyBreakdown) -> "TenantBreakdown":
        return cls(breakdown.model_name, breakdown.status, breakdown.reason, url, breakdown)

    def to_json(self) -> dict:
        if self.breakdown is not None:
            return {"url": self.url, **self.breakdown.to_json()}
        return {"model_name": self.model_name, "status": self.status, "reason": self.reason}

    @classmethod
    def from_json(cls, d: Mapping) -> "TenantBreakdown":
        if "url" in d:
            return cls.measured(d["url"], LatencyBreakdown.from_json(d))
        return cls(d["model_name"], d["status"], d["reason"])


@dataclasses.dataclass(frozen=True)
class MonitoredWindow:
    """One measurement window: its resources, each server's metric deltas, each tenant's breakdown.

    `server_metrics` is empty for the first window when no scrape preceded it, and without
    metrics URLs; `resources` covers exactly [start_ns, end_ns).
    """

    KIND: ClassVar[str] = "window"
    window: int  # the WindowSummary's index in windows.jsonl
    start_ns: int
    end_ns: int
    server_metrics: tuple[UrlMetricsDelta, ...]
    breakdown: Mapping[str, TenantBreakdown]  # by tenant
    resources: WindowResources

    def __post_init__(self):
        object.__setattr__(self, "server_metrics", tuple(self.server_metrics))
        object.__setattr__(self, "breakdown", dict(self.breakdown))
        if self.window < 0 or (self.resources.start_ns, self.resources.end_ns) != (self.start_ns, self.end_ns):
            raise ValueError(f"window {self.window}'s resources must cover [{self.start_ns}, {self.end_ns})")

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.KIND,
            "window": self.window,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "server_metrics": [m.to_json() for m in self.server_metrics],
            "breakdown": {tenant: b.to_json() for tenant, b in self.breakdown.items()},
            "resources": self.resources.to_json(),
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "MonitoredWindow":
        _check_schema(d, cls.KIND)
        return cls(
            window=d["window"],
            start_ns=d["start_ns"],
            end_ns=d["end_ns"],
            server_metrics=tuple(UrlMetricsDelta.from_json(m) for m in d["server_metrics"]),
            breakdown={tenant: TenantBreakdown.from_json(b) for tenant, b in d["breakdown"].items()},
            resources=WindowResources.from_json(d["resources"]),
        )


ResourceLine = IdleBaseline | MonitoredWindow
_LINES = {cls.KIND: cls for cls in (IdleBaseline, MonitoredWindow)}


def _line_from_json(d: Mapping) -> ResourceLine:
    cls = _LINES.get(d.get("kind"))
    if cls is None:
        raise ValueError(f"unknown resources line kind {d.get('kind')!r}")
    return cls.from_json(d)


class ResourceLog:
    """resources.jsonl of one run: lines appended whole and flushed."""

    def __init__(self, run_dir: str | os.PathLike):
        self._file = open(Path(run_dir) / RESOURCES_FILE, "a", encoding="utf-8")

    def append(self, line: ResourceLine) -> None:
        self._file.write(json.dumps(line.to_json()) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_resources(run_dir: str | os.PathLike) -> list[ResourceLine]:
    """The lines of a run's resources.jsonl in order: the IdleBaseline, then MonitoredWindows.

    Raises RunFileError naming the file and line; a last line cut short by a crash is skipped.
    """
    return read_jsonl(Path(run_dir) / RESOURCES_FILE, _line_from_json)


# ----------------------------------------------------------------------------- the observer


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


def split_urls(values: Iterable[str]) -> list[str]:
    """Metrics URLs from repeated and/or comma-separated values; raises ConfigError."""
    urls = [url.strip() for value in values for url in value.split(",") if url.strip()]
    for url in urls:
        try:
            MetricsScraper(url)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if len(set(urls)) != len(urls):
        raise ConfigError(f"--metrics_url lists a URL twice: {', '.join(urls)}")
    return urls


class MonitoringObserver(LoadObserver):
    """Monitors each run it hears about; see the module docstring for what it writes."""

    def __init__(
        self,
        servers: Mapping[str, int],
        metrics_urls: Sequence[str] = (),
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
        self._scrapers = [MetricsScraper(url) for url in metrics_urls]
        self._baseline_s = baseline_s
        self._interval_s = interval_s
        self._gpu_factory = gpu_factory
        self._run: _MonitoredRun | None = None

    def run_started(self, label: str, config: LoadConfig) -> None:
        self.close()  # a previous run that raised, when the caller did not close us
        self._run = _MonitoredRun(
            config, self._servers, self._scrapers, self._baseline_s, self._interval_s, self._gpu_factory()
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
        scrapers: Sequence[MetricsScraper],
        baseline_s: float,
        interval_s: float,
        gpu: GpuSampler,
    ):
        self._scrapers = scrapers
        self._entrypoint = _ENTRYPOINTS[config.protocol]
        self._models = {t.tenant: t.model for t in config.mix.tenants}
        self._pending: list[_PendingWindow] = []  # windows waiting for a sample after their end
        self._last: list[MetricsSnapshot] | None = None
        self._log = ResourceLog(config.output_dir)
        self._gpu = gpu
        self._monitor = None
        try:
            self._gpu.open()  # never raises for a missing GPU: the status says why
            cpu = CpuSampler(servers, generator_pid=os.getpid())
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
        # Each URL is one server; the tenant's model is on the one that timed its requests.
        breakdowns: list[tuple[str, LatencyBreakdown]] = [
            (s.url, latency_breakdown(d, model, client_ms * 1000.0, self._entrypoint))
            for s, d in zip(self._scrapers, deltas)
        ]
        url, chosen = next(((u, b) for u, b in breakdowns if b.status == "ok"), breakdowns[0])
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
