"""What the monitors record: samples, per-window aggregates and the server latency breakdown.

All records are frozen and validated on construction. Top-level records (the ones written on
their own: samples, GPU status, window aggregates, metric snapshots and deltas, breakdowns) carry
`schema_version` in their JSON form and refuse any other version; nested records are serialised
inside them. Timestamps (`*_ns`) come from the load stage's monotonic clock
(`time.perf_counter_ns` unless a test injects another).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping

SCHEMA_VERSION = 2

GPU_STATUSES = ("ok", "unavailable", "off")
DELTA_STATUSES = ("ok", "missing", "counter_reset")
BREAKDOWN_STATUSES = ("ok", "missing", "counter_reset", "no_requests")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_nonnegative(owner: str, **values) -> None:
    """Each value must be a finite number >= 0, or None."""
    for name, value in values.items():
        if value is None:
            continue
        _require(
            _is_number(value) and math.isfinite(value) and value >= 0,
            f"{owner}.{name} must be a finite number >= 0 or None, got {value!r}",
        )


def _check_ints(owner: str, **values) -> None:
    for name, value in values.items():
        _require(
            value is None or (isinstance(value, int) and not isinstance(value, bool)),
            f"{owner}.{name} must be an int or None, got {value!r}",
        )


def _check_schema(d: Mapping, kind: str) -> None:
    if d.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unsupported {kind} schema_version {d.get('schema_version')!r}")


def _plain_fields(record) -> dict:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def _from_plain_fields(cls, d: Mapping):
    return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


# ----------------------------------------------------------------------------- CPU samples


@dataclasses.dataclass(frozen=True)
class ProcessSample:
    """A process tree (a root pid and its descendants, found anew at each sample).

    `cpu_s` is cumulative user + system time of the tree's live processes plus the children
    each of them has reaped (so a child that exited and was waited for still counts); `rss_bytes`
    sums the tree's resident sets (shared pages count once per process). A tree whose root is
    gone has `alive` False and no figures.
    """

    name: str
    root_pid: int
    alive: bool
    pids: tuple[int, ...]  # root first, as found at this sample
    cpu_s: float | None
    rss_bytes: int | None

    def __post_init__(self):
        object.__setattr__(self, "pids", tuple(self.pids))
        _require(bool(self.name), "ProcessSample.name must not be empty")
        _check_ints("ProcessSample", root_pid=self.root_pid, rss_bytes=self.rss_bytes)
        _check_nonnegative("ProcessSample", cpu_s=self.cpu_s, rss_bytes=self.rss_bytes)
        if self.alive:
            _require(
                self.cpu_s is not None and self.rss_bytes is not None and self.pids[:1] == (self.root_pid,),
                f"live process tree {self.name!r} needs cpu_s, rss_bytes and its root first in pids",
            )
        else:
            _require(
                self.cpu_s is None and self.rss_bytes is None and not self.pids,
                f"dead process tree {self.name!r} must have no pids, cpu_s or rss_bytes",
            )

    def to_json(self) -> dict:
        return {**_plain_fields(self), "pids": list(self.pids)}

    @classmethod
    def from_json(cls, d: Mapping) -> "ProcessSample":
        return cls(**{**{f.name: d[f.name] for f in dataclasses.fields(cls)}, "pids": tuple(d["pids"])})


@dataclasses.dataclass(frozen=True)
class CpuSample:
    """The machine's cumulative CPU counters and each watched process tree, at `t_ns`.

    `system_busy_s` and `system_total_s` are summed over all logical CPUs since boot (busy =
    total − idle − iowait, guest time not counted twice, as psutil.cpu_percent does), so the
    utilisation between two samples is Δbusy / Δtotal.
    """

    t_ns: int
    system_busy_s: float
    system_total_s: float
    logical_cpus: int
    generator: ProcessSample
    servers: tuple[ProcessSample, ...]

    def __post_init__(self):
        object.__setattr__(self, "servers", tuple(self.servers))
        _check_ints("CpuSample", t_ns=self.t_ns, logical_cpus=self.logical_cpus)
        _check_nonnegative("CpuSample", system_busy_s=self.system_busy_s, system_total_s=self.system_total_s)
        _require(self.system_busy_s <= self.system_total_s, "CpuSample: busy time exceeds total time")
        _require(self.logical_cpus >= 1, f"CpuSample.logical_cpus must be >= 1, got {self.logical_cpus}")
        names = [p.name for p in self.servers]
        _require(len(set(names)) == len(names), f"CpuSample: server names repeat: {names}")

    def server(self, name: str) -> ProcessSample | None:
        return next((p for p in self.servers if p.name == name), None)

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            **_plain_fields(self),
            "generator": self.generator.to_json(),
            "servers": [p.to_json() for p in self.servers],
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "CpuSample":
        _check_schema(d, "CpuSample")
        return cls(
            t_ns=d["t_ns"],
            system_busy_s=d["system_busy_s"],
            system_total_s=d["system_total_s"],
            logical_cpus=d["logical_cpus"],
            generator=ProcessSample.from_json(d["generator"]),
            servers=tuple(ProcessSample.from_json(p) for p in d["servers"]),
        )


# ----------------------------------------------------------------------------- GPU samples


@dataclasses.dataclass(frozen=True)
class GpuProcessMemory:
    """GPU memory of one process; `used_bytes` is None where NVML cannot tell (no permission,
    some virtualised or Windows drivers)."""

    pid: int
    used_bytes: int | None

    def __post_init__(self):
        _check_ints("GpuProcessMemory", pid=self.pid, used_bytes=self.used_bytes)
        _check_nonnegative("GpuProcessMemory", used_bytes=self.used_bytes)

    def to_json(self) -> dict:
        return _plain_fields(self)

    @classmethod
    def from_json(cls, d: Mapping) -> "GpuProcessMemory":
        return _from_plain_fields(cls, d)


@dataclasses.dataclass(frozen=True)
class GpuSample:
    """One GPU at `t_ns`. A sample with `error` set is missing: every figure is None.

    `utilisation_percent` and `memory_utilisation_percent` are NVML's: the share of the driver's
    last sampling period (1/6 s to 1 s by product) in which a kernel ran / device memory was read
    or written. `power_w` is None when the device does not report power.
    """

    t_ns: int
    index: int
    utilisation_percent: float | None
    memory_utilisation_percent: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    power_w: float | None
    processes: tuple[GpuProcessMemory, ...]
    error: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "processes", tuple(self.processes))
        _check_ints(
            "GpuSample",
            t_ns=self.t_ns,
            index=self.index,
            memory_used_bytes=self.memory_used_bytes,
            memory_total_bytes=self.memory_total_bytes,
        )
        _check_nonnegative(
            "GpuSample",
            index=self.index,
            utilisation_percent=self.utilisation_percent,
            memory_utilisation_percent=self.memory_utilisation_percent,
            memory_used_bytes=self.memory_used_bytes,
            memory_total_bytes=self.memory_total_bytes,
            power_w=self.power_w,
        )
        for name in ("utilisation_percent", "memory_utilisation_percent"):
            value = getattr(self, name)
            _require(value is None or value <= 100, f"GpuSample.{name} above 100: {value}")
        measured = (
            self.utilisation_percent,
            self.memory_utilisation_percent,
            self.memory_used_bytes,
            self.memory_total_bytes,
        )
        if self.error is None:
            _require(None not in measured, "GpuSample without error needs utilisation and memory")
        else:
            _require(
                all(v is None for v in measured) and self.power_w is None and not self.processes,
                "a missing GpuSample (error set) must have no figures",
            )

    @property
    def missing(self) -> bool:
        return self.error is not None

    @classmethod
    def missing_sample(cls, t_ns: int, index: int, error: str) -> "GpuSample":
        return cls(t_ns, index, None, None, None, None, None, (), error=error or "unknown error")

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            **_plain_fields(self),
            "processes": [p.to_json() for p in self.processes],
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "GpuSample":
        _check_schema(d, "GpuSample")
        fields = {f.name: d[f.name] for f in dataclasses.fields(cls)}
        fields["processes"] = tuple(GpuProcessMemory.from_json(p) for p in d["processes"])
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class GpuStatus:
    """Whether GPU monitoring works: "ok", "unavailable" (with the reason) or "off" (not asked)."""

    status: str
    reason: str | None
    device_count: int

    def __post_init__(self):
        _require(self.status in GPU_STATUSES, f"GpuStatus.status must be one of {GPU_STATUSES}")
        _check_ints("GpuStatus", device_count=self.device_count)
        if self.status == "ok":
            _require(
                self.reason is None and self.device_count >= 1, "an ok GpuStatus has devices and no reason"
            )
        else:
            _require(
                bool(self.reason) and self.device_count == 0,
                "a GpuStatus that is not ok has a reason and no devices",
            )

    def to_json(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, **_plain_fields(self)}

    @classmethod
    def from_json(cls, d: Mapping) -> "GpuStatus":
        _check_schema(d, "GpuStatus")
        return _from_plain_fields(cls, d)


GPU_OFF = GpuStatus("off", "GPU monitoring was not requested", 0)


# ----------------------------------------------------------------------------- windows


@dataclasses.dataclass(frozen=True)
class ProcessWindow:
    """A process tree over one window.

    `cpu_s` is the tree's CPU time inside the window (cumulative counters interpolated at the
    boundaries); `cpu_utilisation_cores` = cpu_s / window seconds (2.0 = two cores busy).
    `gpu_memory_max_bytes` sums, over devices, the largest memory the tree's processes held on
    that device at one sample; None when none of its processes was seen on a GPU.
    """

    name: str
    root_pid: int
    cpu_s: float | None
    cpu_utilisation_cores: float | None
    rss_max_bytes: int | None
    gpu_memory_max_bytes: int | None

    def __post_init__(self):
        _check_ints(
            "ProcessWindow",
            root_pid=self.root_pid,
            rss_max_bytes=self.rss_max_bytes,
            gpu_memory_max_bytes=self.gpu_memory_max_bytes,
        )
        _check_nonnegative(
            "ProcessWindow",
            cpu_s=self.cpu_s,
            cpu_utilisation_cores=self.cpu_utilisation_cores,
            rss_max_bytes=self.rss_max_bytes,
            gpu_memory_max_bytes=self.gpu_memory_max_bytes,
        )
        _require(
            (self.cpu_s is None) == (self.cpu_utilisation_cores is None),
            "ProcessWindow: cpu_s and cpu_utilisation_cores are both set or both None",
        )

    def to_json(self) -> dict:
        return _plain_fields(self)

    @classmethod
    def from_json(cls, d: Mapping) -> "ProcessWindow":
        return _from_plain_fields(cls, d)


@dataclasses.dataclass(frozen=True)
class GpuWindow:
    """One GPU over one window: means of utilisation and power, maxima of memory, over the
    samples inside the window that are not missing."""

    index: int
    samples: int
    missing_samples: int
    utilisation_mean_percent: float | None
    memory_utilisation_mean_percent: float | None
    memory_used_max_bytes: int | None
    memory_total_bytes: int | None
    power_mean_w: float | None
    process_memory_max_bytes: tuple[GpuProcessMemory, ...]  # per pid, sorted by pid

    def __post_init__(self):
        object.__setattr__(self, "process_memory_max_bytes", tuple(self.process_memory_max_bytes))
        _check_ints(
            "GpuWindow",
            index=self.index,
            samples=self.samples,
            missing_samples=self.missing_samples,
            memory_used_max_bytes=self.memory_used_max_bytes,
            memory_total_bytes=self.memory_total_bytes,
        )
        _check_nonnegative(
            "GpuWindow",
            samples=self.samples,
            missing_samples=self.missing_samples,
            utilisation_mean_percent=self.utilisation_mean_percent,
            memory_utilisation_mean_percent=self.memory_utilisation_mean_percent,
            memory_used_max_bytes=self.memory_used_max_bytes,
            memory_total_bytes=self.memory_total_bytes,
            power_mean_w=self.power_mean_w,
        )
        _require(self.missing_samples <= self.samples, "GpuWindow: more missing samples than samples")
        if self.samples == self.missing_samples:
            _require(
                self.utilisation_mean_percent is None and self.memory_used_max_bytes is None,
                "GpuWindow without a usable sample has no figures",
            )

    def to_json(self) -> dict:
        return {
            **_plain_fields(self),
            "process_memory_max_bytes": [p.to_json() for p in self.process_memory_max_bytes],
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "GpuWindow":
        fields = {f.name: d[f.name] for f in dataclasses.fields(cls)}
        fields["process_memory_max_bytes"] = tuple(
            GpuProcessMemory.from_json(p) for p in d["process_memory_max_bytes"]
        )
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class WindowResources:
    """Resources used in one measurement window [start_ns, end_ns) (or in the idle baseline, closed).

    `system_cpu_utilisation_percent` is busy over total CPU time of all logical CPUs (100 = every
    core busy). None marks a figure the samples cannot give (no sample on one side of a boundary,
    a process tree that was not alive there, GPU monitoring unavailable).
    """

    start_ns: int
    end_ns: int
    cpu_samples: int
    system_cpu_utilisation_percent: float | None
    generator: ProcessWindow | None
    servers: tuple[ProcessWindow, ...]
    gpu_status: GpuStatus
    gpus: tuple[GpuWindow, ...]

    def __post_init__(self):
        object.__setattr__(self, "servers", tuple(self.servers))
        object.__setattr__(self, "gpus", tuple(self.gpus))
        _check_ints(
            "WindowResources", start_ns=self.start_ns, end_ns=self.end_ns, cpu_samples=self.cpu_samples
        )
        _require(
            self.end_ns > self.start_ns, f"window must end after it starts: [{self.start_ns}, {self.end_ns}]"
        )
        _check_nonnegative(
            "WindowResources",
            cpu_samples=self.cpu_samples,
            system_cpu_utilisation_percent=self.system_cpu_utilisation_percent,
        )

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def server(self, name: str) -> ProcessWindow | None:
        return next((p for p in self.servers if p.name == name), None)

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            **_plain_fields(self),
            "generator": self.generator.to_json() if self.generator else None,
            "servers": [p.to_json() for p in self.servers],
            "gpu_status": self.gpu_status.to_json(),
            "gpus": [g.to_json() for g in self.gpus],
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "WindowResources":
        _check_schema(d, "WindowResources")
        return cls(
            start_ns=d["start_ns"],
            end_ns=d["end_ns"],
            cpu_samples=d["cpu_samples"],
            system_cpu_utilisation_percent=d["system_cpu_utilisation_percent"],
            generator=ProcessWindow.from_json(d["generator"]) if d["generator"] else None,
            servers=tuple(ProcessWindow.from_json(p) for p in d["servers"]),
            gpu_status=GpuStatus.from_json(d["gpu_status"]),
            gpus=tuple(GpuWindow.from_json(g) for g in d["gpus"]),
        )


# ----------------------------------------------------------------------------- server metrics

SampleKey = tuple[str, frozenset]


def _value_to_json(value: float):
    # JSON has no infinities or NaN; TF Serving prints them for non-finite histogram sums.
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _value_from_json(value) -> float:
    return float(value) if isinstance(value, str) else value


@dataclasses.dataclass(frozen=True)
class MetricsSnapshot:
    """A server's Prometheus page as parsed at one moment, or why it could not be had.

    The page was read between `requested_ns` and `received_ns`; `t_ns` is their midpoint.
    `samples` maps (metric name, frozenset of label items) to value, as
    `tfs_bench.prometheus.parse_prometheus_text` returns; None when the scrape failed.
    """

    url: str
    requested_ns: int
    received_ns: int
    samples: Mapping[SampleKey, float] | None
    error: str | None = None

    def __post_init__(self):
        _check_ints("MetricsSnapshot", requested_ns=self.requested_ns, received_ns=self.received_ns)
        _require(self.received_ns >= self.requested_ns, "MetricsSnapshot received before it was requested")
        _require(
            (self.samples is None) != (self.error is None), "MetricsSnapshot has either samples or an error"
        )
        if self.samples is not None:
            object.__setattr__(self, "samples", types.MappingProxyType(dict(self.samples)))

    @property
    def missing(self) -> bool:
        return self.samples is None

    @property
    def t_ns(self) -> int:
        return (self.requested_ns + self.received_ns) // 2

    def to_json(self) -> dict:
        samples = None
        if self.samples is not None:
            samples = [
                {"name": name, "labels": dict(sorted(labels)), "value": _value_to_json(value)}
                for (name, labels), value in sorted(
                    self.samples.items(), key=lambda kv: (kv[0][0], sorted(kv[0][1]))
                )
            ]
        return {
            "schema_version": SCHEMA_VERSION,
            "url": self.url,
            "requested_ns": self.requested_ns,
            "received_ns": self.received_ns,
            "samples": samples,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "MetricsSnapshot":
        _check_schema(d, "MetricsSnapshot")
        samples = None
        if d["samples"] is not None:
            samples = {
                (s["name"], frozenset(s["labels"].items())): _value_from_json(s["value"])
                for s in d["samples"]
            }
        return cls(d["url"], d["requested_ns"], d["received_ns"], samples, d["error"])


@dataclasses.dataclass(frozen=True)
class LatencyDelta:
    """A latency histogram's `_count` and `_sum` (µs) gained over a window."""

    count: int
    sum_us: float

    def __post_init__(self):
        _check_ints("LatencyDelta", count=self.count)
        _check_nonnegative("LatencyDelta", count=self.count, sum_us=self.sum_us)

    @property
    def mean_us(self) -> float | None:
        return self.sum_us / self.count if self.count else None

    def __add__(self, other: "LatencyDelta") -> "LatencyDelta":
        return LatencyDelta(self.count + other.count, self.sum_us + other.sum_us)

    def to_json(self) -> dict:
        return _plain_fields(self)

    @classmethod
    def from_json(cls, d: Mapping) -> "LatencyDelta":
        return _from_plain_fields(cls, d)


ZERO_LATENCY = LatencyDelta(0, 0.0)


def _frozen_mapping(mapping: Mapping, owner: str, check) -> Mapping:
    items = dict(sorted(mapping.items()))
    for key, value in items.items():
        _require(isinstance(key, str), f"{owner}: keys must be strings, got {key!r}")
        check(value)
    return types.MappingProxyType(items)


@dataclasses.dataclass(frozen=True)
class ModelMetricsDelta:
    """One model's server metrics gained over a window.

    `request_latency_by_entrypoint` ("GRPC", "REST") and `runtime_latency` are summed over their
    other labels (API, runtime); both count successful requests only. `request_count_by_status`
    counts every request by its status ("OK", "NOT_FOUND", ...).
    """

    model_name: str
    request_latency_by_entrypoint: Mapping[str, LatencyDelta]
    runtime_latency: LatencyDelta
    request_count_by_status: Mapping[str, int]

    def __post_init__(self):
        def check_latency(v):
            _require(isinstance(v, LatencyDelta), f"expected a LatencyDelta, got {v!r}")

        def check_count(v):
            _check_ints("ModelMetricsDelta", count=v)
            _check_nonnegative("ModelMetricsDelta", count=v)

        object.__setattr__(
            self,
            "request_latency_by_entrypoint",
            _frozen_mapping(self.request_latency_by_entrypoint, "ModelMetricsDelta", check_latency),
        )
        object.__setattr__(
            self,
            "request_count_by_status",
            _frozen_mapping(self.request_count_by_status, "ModelMetricsDelta", check_count),
        )

    def to_json(self) -> dict:
        return {
            "model_name": self.model_name,
            "request_latency_by_entrypoint": {
                k: v.to_json() for k, v in self.request_latency_by_entrypoint.items()
            },
            "runtime_latency": self.runtime_latency.to_json(),
            "request_count_by_status": dict(self.request_count_by_status),
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "ModelMetricsDelta":
        return cls(
            model_name=d["model_name"],
            request_latency_by_entrypoint={
                k: LatencyDelta.from_json(v) for k, v in d["request_latency_by_entrypoint"].items()
            },
            runtime_latency=LatencyDelta.from_json(d["runtime_latency"]),
            request_count_by_status=dict(d["request_count_by_status"]),
        )


@dataclasses.dataclass(frozen=True)
class ServerMetricsDelta:
    """A server's metrics gained between two snapshots (`start_ns`, `end_ns`: their `t_ns`).

    status "missing": a snapshot failed; "counter_reset": a counter went down or vanished (the
    server restarted), so no deltas are given. `queuing_latency_by_pool` is per batching thread
    pool: TF Serving does not label it by model.
    """

    start_ns: int
    end_ns: int
    status: str
    reason: str | None
    models: tuple[ModelMetricsDelta, ...]
    queuing_latency_by_pool: Mapping[str, LatencyDelta]

    def __post_init__(self):
        object.__setattr__(self, "models", tuple(sorted(self.models, key=lambda m: m.model_name)))
        object.__setattr__(
            self,
            "queuing_latency_by_pool",
            _frozen_mapping(
                self.queuing_latency_by_pool,
                "ServerMetricsDelta",
                lambda v: _require(isinstance(v, LatencyDelta), f"expected a LatencyDelta, got {v!r}"),
            ),
        )
        _check_ints("ServerMetricsDelta", start_ns=self.start_ns, end_ns=self.end_ns)
        _require(self.status in DELTA_STATUSES, f"ServerMetricsDelta.status must be one of {DELTA_STATUSES}")
        if self.status == "ok":
            _require(self.reason is None, "an ok ServerMetricsDelta has no reason")
        else:
            _require(
                bool(self.reason) and not self.models and not self.queuing_latency_by_pool,
                "a ServerMetricsDelta that is not ok has a reason and no deltas",
            )
        names = [m.model_name for m in self.models]
        _require(len(set(names)) == len(names), f"ServerMetricsDelta: models repeat: {names}")

    @property
    def queuing_latency(self) -> LatencyDelta:
        """Summed over thread pools."""
        return sum(self.queuing_latency_by_pool.values(), ZERO_LATENCY)

    def model(self, name: str) -> ModelMetricsDelta | None:
        return next((m for m in self.models if m.model_name == name), None)

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "status": self.status,
            "reason": self.reason,
            "models": [m.to_json() for m in self.models],
            "queuing_latency_by_pool": {k: v.to_json() for k, v in self.queuing_latency_by_pool.items()},
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "ServerMetricsDelta":
        _check_schema(d, "ServerMetricsDelta")
        return cls(
            start_ns=d["start_ns"],
            end_ns=d["end_ns"],
            status=d["status"],
            reason=d["reason"],
            models=tuple(ModelMetricsDelta.from_json(m) for m in d["models"]),
            queuing_latency_by_pool={
                k: LatencyDelta.from_json(v) for k, v in d["queuing_latency_by_pool"].items()
            },
        )


@dataclasses.dataclass(frozen=True)
class LatencyBreakdown:
    """Where one model's requests spent their time in one window (all µs, means over the window).

    The client side is the mean *service time* (send to reply, RequestRecord.service_time_ns),
    not the response time, which also counts the wait before the send: the server can only
    account for what happened after the request left the client.
    network_serialisation_us = client mean service time − server request latency;
    request_handling_us = request latency − runtime latency; batch_wait_us = batching queuing
    latency (server-wide: per thread pool, not per model; None without batching). Batch wait
    happens inside the runtime call, so it is part of runtime latency, not an extra term.
    Differences of means over slightly different request sets can be a little negative; they
    are reported as they are. Figures are None unless status is "ok".
    """

    model_name: str
    entrypoint: str
    status: str
    reason: str | None
    requests: int  # successful requests the server timed in the window
    client_mean_service_time_us: float
    request_latency_mean_us: float | None
    runtime_latency_mean_us: float | None
    queuing_latency_mean_us: float | None
    network_serialisation_us: float | None
    request_handling_us: float | None
    batch_wait_us: float | None

    def __post_init__(self):
        _require(
            self.status in BREAKDOWN_STATUSES, f"LatencyBreakdown.status must be one of {BREAKDOWN_STATUSES}"
        )
        _check_ints("LatencyBreakdown", requests=self.requests)
        _check_nonnegative(
            "LatencyBreakdown",
            requests=self.requests,
            client_mean_service_time_us=self.client_mean_service_time_us,
            request_latency_mean_us=self.request_latency_mean_us,
            runtime_latency_mean_us=self.runtime_latency_mean_us,
            queuing_latency_mean_us=self.queuing_latency_mean_us,
        )
        differences = (self.network_serialisation_us, self.request_handling_us)
        for value in differences:
            _require(
                value is None or (_is_number(value) and math.isfinite(value)),
                f"LatencyBreakdown: differences must be finite numbers, got {value!r}",
            )
        _require(
            self.batch_wait_us == self.queuing_latency_mean_us, "batch_wait_us is the queuing latency mean"
        )
        if self.status == "ok":
            _require(
                self.reason is None
                and None not in (self.request_latency_mean_us, self.runtime_latency_mean_us)
                and None not in differences,
                "an ok LatencyBreakdown has every figure but batch wait",
            )
        else:
            _require(
                bool(self.reason)
                and all(
                    v is None
                    for v in (
                        self.request_latency_mean_us,
                        self.runtime_latency_mean_us,
                        self.queuing_latency_mean_us,
                        *differences,
                    )
                ),
                "a LatencyBreakdown that is not ok has a reason and no figures",
            )

    def to_json(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, **_plain_fields(self)}

    @classmethod
    def from_json(cls, d: Mapping) -> "LatencyBreakdown":
        _check_schema(d, "LatencyBreakdown")
        return _from_plain_fields(cls, d)


# ----------------------------------------------------------------------------- collections


@dataclasses.dataclass(frozen=True)
class MonitorSamples:
    """The samples of one phase (the idle baseline, or the run), in the order taken."""

    cpu: tuple[CpuSample, ...] = ()
    gpu: tuple[GpuSample, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "cpu", tuple(self.cpu))
        object.__setattr__(self, "gpu", tuple(self.gpu))
