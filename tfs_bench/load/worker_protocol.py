"""What the driver and its worker processes say to each other: the plan, commands and events.

One JSON object per line on the worker's pipes. Parent → worker on stdin: the `WorkerPlan`, then
a `StartCommand`, any number of `MarkCommand`s and a `StopCommand`. Worker → parent on its
stdout: a `ReadyEvent` once connected, `FlushedEvent`s as it writes records, one `MarkEvent`
per mark, a `StoppedEvent` at the end, or an `ErrorEvent` that ends it.

    {"schema_version": 1, "worker": 0, ...}                 the plan (tenants carry base64 bodies)
    {"cmd": "start", "start_ns": ...}  {"cmd": "mark", "end_ns": ...}  {"cmd": "stop"}
    {"event": "ready", "priority"}  {"event": "flushed", "watermark_ns", "rows"}
    {"event": "mark", "end_ns", "watermark_ns", "rows", "cpu_s", "loop_lag_p99_ms", "runqueue_wait_s"}
    {"event": "stopped", "watermark_ns", "rows", "cpu_s"}  {"event": "error", "message"}

`rows` is how many records the worker has written to its file so far, and a watermark W says
every record done before W is among them. Both sides import this module; the driver never
imports the worker's process module. A malformed message raises ValueError naming it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from typing import ClassVar

from tfs_bench.cpu_priority import GENERATOR_PRIORITIES

SCHEMA_VERSION = 2


def _check_count(owner: str, **values) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{owner}.{name} must be an integer >= 0, got {value!r}")


def _check_seconds(owner: str, **values) -> None:
    for name, value in values.items():
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise ValueError(f"{owner}.{name} must be a number >= 0, got {value!r}")


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class TenantShare:
    """One tenant as one worker runs it."""

    tenant: str
    model: str
    target: str
    batch_size: int
    bodies: tuple[bytes, ...]
    rest_path: str
    rate_rps: float | None = None  # the tenant's whole rate; the worker takes every W-th arrival
    arrival: str = "poisson"
    seed: int = 0
    concurrency: int = 0  # this worker's closed-loop slots (0 with an open-loop tenant)
    max_outstanding: int = 1  # this worker's cap on the tenant's requests in flight (open loop)

    def __post_init__(self):
        object.__setattr__(self, "bodies", tuple(self.bodies))
        if not self.bodies:
            raise ValueError(f"tenant {self.tenant!r} has no request body")
        if self.rate_rps is not None and self.concurrency:
            raise ValueError(f"tenant {self.tenant!r} cannot be open and closed loop at once")
        if self.concurrency < 0 or self.max_outstanding < 1:
            raise ValueError(f"tenant {self.tenant!r}: concurrency >= 0 and max_outstanding >= 1 required")

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["bodies"] = [base64.b64encode(b).decode("ascii") for b in self.bodies]
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> "TenantShare":
        fields = {f.name: d[f.name] for f in dataclasses.fields(cls)}
        fields["bodies"] = tuple(base64.b64decode(b) for b in d["bodies"])
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class WorkerPlan:
    """Everything one worker process needs: its index, its tenants' shares and where to write."""

    worker: int
    workers: int
    protocol: str
    tenants: tuple[TenantShare, ...]
    records_path: str
    flush_interval_s: float = 0.1
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    drain_timeout_s: float = 5.0  # at stop, how long requests in flight may still complete
    lag_probe_interval_s: float = 0.05
    priority: str = "auto"  # tfs_bench.cpu_priority.GENERATOR_PRIORITIES

    def __post_init__(self):
        object.__setattr__(self, "tenants", tuple(self.tenants))
        if self.priority not in GENERATOR_PRIORITIES:
            raise ValueError(f"priority must be one of {GENERATOR_PRIORITIES}, got {self.priority!r}")
        if not 0 <= self.worker < self.workers:
            raise ValueError(f"worker must be in [0, {self.workers}), got {self.worker}")

    def to_json(self) -> dict:
        d = {"schema_version": SCHEMA_VERSION, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}
        d["tenants"] = [t.to_json() for t in self.tenants]
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> "WorkerPlan":
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported worker plan schema_version {d.get('schema_version')!r}")
        fields = {f.name: d[f.name] for f in dataclasses.fields(cls)}
        fields["tenants"] = tuple(TenantShare.from_json(t) for t in d["tenants"])
        return cls(**fields)


# ----------------------------------------------------------------------------- messages


class _Message:
    """A command or event: its tag under `_TAG_KEY`, then its fields in declaration order."""

    _TAG_KEY: ClassVar[str]
    TAG: ClassVar[str]

    def to_json(self) -> dict:
        return {self._TAG_KEY: self.TAG, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    @classmethod
    def from_json(cls, d: Mapping):
        if d.get(cls._TAG_KEY) != cls.TAG:
            raise ValueError(f"not a {cls.TAG!r} message: {dict(d)!r}")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in d]
        if missing:
            raise ValueError(f"{cls._TAG_KEY} {cls.TAG!r} lacks {', '.join(missing)}: {dict(d)!r}")
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


class _Command(_Message):
    _TAG_KEY = "cmd"


class _Event(_Message):
    _TAG_KEY = "event"


@dataclasses.dataclass(frozen=True)
class StartCommand(_Command):
    """Start sending at `start_ns` (perf_counter_ns, shared by every worker on the host)."""

    TAG = "start"
    start_ns: int

    def __post_init__(self):
        _check_count("StartCommand", start_ns=self.start_ns)


@dataclasses.dataclass(frozen=True)
class MarkCommand(_Command):
    """Flush every record done before `end_ns` (a window boundary) and report usage."""

    TAG = "mark"
    end_ns: int

    def __post_init__(self):
        _check_count("MarkCommand", end_ns=self.end_ns)


@dataclasses.dataclass(frozen=True)
class StopCommand(_Command):
    """Stop sending, drain, write the rest and exit."""

    TAG = "stop"


@dataclasses.dataclass(frozen=True)
class ReadyEvent(_Event):
    """Connected to every target; waiting for the start command at `priority` (what it got)."""

    TAG = "ready"
    priority: str

    def __post_init__(self):
        if not isinstance(self.priority, str) or not self.priority:
            raise ValueError(f"ReadyEvent.priority must be a non-empty string, got {self.priority!r}")


@dataclasses.dataclass(frozen=True)
class FlushedEvent(_Event):
    """Records were written: `rows` in all, every one done before `watermark_ns` among them."""

    TAG = "flushed"
    watermark_ns: int
    rows: int

    def __post_init__(self):
        _check_count("FlushedEvent", watermark_ns=self.watermark_ns, rows=self.rows)


@dataclasses.dataclass(frozen=True)
class MarkEvent(_Event):
    """The answer to a mark: flushed past `end_ns`, with the process's CPU time and loop lag."""

    TAG = "mark"
    end_ns: int
    watermark_ns: int
    rows: int
    cpu_s: float  # user + system CPU time of the process since it started
    loop_lag_p99_ms: float | None  # p99 event-loop lag since the previous mark; None without samples
    runqueue_wait_s: float | None  # its live threads' total run-queue wait so far; None: unknown

    def __post_init__(self):
        _check_count("MarkEvent", end_ns=self.end_ns, watermark_ns=self.watermark_ns, rows=self.rows)
        _check_seconds(
            "MarkEvent", cpu_s=self.cpu_s, loop_lag_p99_ms=self.loop_lag_p99_ms, runqueue_wait_s=self.runqueue_wait_s
        )


@dataclasses.dataclass(frozen=True)
class StoppedEvent(_Event):
    """Every record is written (`rows` in all); the process exits next."""

    TAG = "stopped"
    watermark_ns: int
    rows: int
    cpu_s: float

    def __post_init__(self):
        _check_count("StoppedEvent", watermark_ns=self.watermark_ns, rows=self.rows)
        _check_seconds("StoppedEvent", cpu_s=self.cpu_s)


@dataclasses.dataclass(frozen=True)
class ErrorEvent(_Event):
    """The worker failed with a complete, printable message (a TfsBenchError's) and exits."""

    TAG = "error"
    message: str

    def __post_init__(self):
        if not isinstance(self.message, str):
            raise ValueError(f"ErrorEvent.message must be a string, got {self.message!r}")


Command = StartCommand | MarkCommand | StopCommand
Event = ReadyEvent | FlushedEvent | MarkEvent | StoppedEvent | ErrorEvent
COMMANDS = {cls.TAG: cls for cls in (StartCommand, MarkCommand, StopCommand)}
EVENTS = {cls.TAG: cls for cls in (ReadyEvent, FlushedEvent, MarkEvent, StoppedEvent, ErrorEvent)}


def command_from_json(d: Mapping) -> Command:
    return _from_json(d, "cmd", COMMANDS)


def event_from_json(d: Mapping) -> Event:
    return _from_json(d, "event", EVENTS)


def _from_json(d, key: str, kinds: Mapping[str, type]):
    cls = kinds.get(d.get(key)) if isinstance(d, Mapping) else None
    if cls is None:
        raise ValueError(f"unknown worker {'command' if key == 'cmd' else 'event'}: {d!r}")
    return cls.from_json(d)


# ----------------------------------------------------------------------------- lines


def encode(message: WorkerPlan | Command | Event) -> bytes:
    """One message as the line that goes down a pipe."""
    return (json.dumps(message.to_json()) + "\n").encode("utf-8")


def decode_command(line: bytes) -> Command:
    return command_from_json(_decode(line))


def decode_event(line: bytes) -> Event:
    return event_from_json(_decode(line))


def decode_plan(line: bytes) -> WorkerPlan:
    return WorkerPlan.from_json(_decode(line))


def _decode(line: bytes) -> dict:
    try:
        return json.loads(line)
    except ValueError as e:
        raise ValueError(f"not a JSON message ({e}): {line[:200]!r}") from None
