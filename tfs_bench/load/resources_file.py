"""`resources.jsonl`: its records and its reader.

The file holds an `IdleBaseline` line, then one `MonitoredWindow` line per measurement window
(CPU and memory of the server trees and the generator, GPU, the Prometheus deltas of each server
and the latency breakdown of each tenant), each flushed as written by `ResourceLog`. It is
written by the load stage's MonitoringObserver (tfs_bench.load.resource_log) and read by
`read_resources`, which needs neither the driver nor the monitors' samplers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from tfs_bench.load.run_files import read_jsonl
from tfs_bench.monitors.samples import (
    BREAKDOWN_STATUSES,
    GpuStatus,
    LatencyBreakdown,
    ServerMetricsDelta,
    WindowResources,
)

SCHEMA_VERSION = 2
RESOURCES_FILE = "resources.jsonl"


_UNMEASURED_STATUSES = ("missing", "no_requests", "ambiguous")
# A tenant's breakdown may also be "ambiguous": with several targets, its model timed on more
# than one metrics page that names no target.
TENANT_BREAKDOWN_STATUSES = (*BREAKDOWN_STATUSES, "ambiguous")


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
        if self.status not in TENANT_BREAKDOWN_STATUSES:
            raise ValueError(f"TenantBreakdown.status must be one of {TENANT_BREAKDOWN_STATUSES}, got {self.status!r}")

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


