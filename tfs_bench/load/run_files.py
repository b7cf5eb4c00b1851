"""The load stage's files: their records and readers (the printed lines are in tfs_bench.load.console).

A run directory holds:
  run.json            a RunManifest: what was asked (written first; it marks a load run)
  records-w<k>.csv    worker k's request records (tfs_bench.load.records), appended and
                      flushed several times a window
  worker-<k>.log      worker k's stderr
  windows.jsonl       one WindowSummary per line, appended and flushed as each window closes
  summary.json        a RunSummary: the RunResult and the run's facts, written atomically at the end
  failure.json        instead of summary.json when the run did not finish: a RunFailure saying
                      why (the server went away, a worker failed, Ctrl-C) and how many windows
                      windows.jsonl kept
  resources.jsonl     with monitoring only (tfs_bench.load.resources_file)
A sweep or search directory holds run.json (a RunManifest with the experiment's settings),
summary.json (an ExperimentSummary of every run so far, rewritten atomically after each run)
and one run directory per run.

Each file has one record type with `schema_version` and one reader here (`read_manifest`,
`read_summary`, `read_windows`), which raises RunFileError naming the file (and line).

An existing directory is never written into: it is refused, or replaced whole with
`overwrite` when it holds a previous load run (run.json); a directory holding anything else is
never deleted.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar
from typing import TypeVar

from tfs_bench.errors import ConfigError
from tfs_bench.errors import RunFileError
from tfs_bench.errors import TfsBenchError
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.loadgen_log import LoadGenVerdict
from tfs_bench.load.search import JudgedProbe
from tfs_bench.load.search import PeakResult
from tfs_bench.load.search import RampResult
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.windows import STOP_MAX_WINDOWS
from tfs_bench.load.windows import STOP_STABLE
from tfs_bench.load.windows import WindowSummary

SCHEMA_VERSION = 1  # of run.json and summary.json (windows.jsonl lines carry WindowSummary's)
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
WINDOWS_FILE = "windows.jsonl"
FAILURE_FILE = "failure.json"
KIND_RUN = "run"
STOP_LOADGEN = "loadgen"  # --mode=mlperf: LoadGen ended the test (its minimum duration and queries met)
FAILED = "failed"
INTERRUPTED = "interrupted"
_T = TypeVar("_T")


def _check_schema(d: Mapping, what: str) -> None:
    if d.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unsupported {what} schema_version {d.get('schema_version')!r}")


# ----------------------------------------------------------------------------- experiment settings


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """A closed-loop sweep: one run per concurrency level, of every tenant or only `tenant`."""

    KIND: ClassVar[str] = "sweep"
    levels: tuple[int, ...]
    tenant: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "levels", tuple(self.levels))
        levels = self.levels
        if not levels or any(level < 1 for level in levels) or len(set(levels)) != len(levels):
            raise ConfigError(f"concurrency levels must be distinct and >= 1, got {list(levels)}")

    def to_json(self) -> dict:
        return {"levels": list(self.levels), "tenant": self.tenant}

    @classmethod
    def from_json(cls, d: Mapping) -> "SweepSettings":
        return cls(tuple(d["levels"]), d["tenant"])


@dataclasses.dataclass(frozen=True)
class PeakSettings:
    """A peak search (tfs_bench.load.search.peak_under_sla), of the whole mix or one tenant."""

    KIND: ClassVar[str] = "peak"
    start_rps: float
    sla_ms: float
    precision: float
    max_rate_rps: float | None = None
    tenant: str | None = None

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: Mapping) -> "PeakSettings":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class RampSettings:
    """A PERSEUS ramp (tfs_bench.load.search.perseus_ramp), of the whole mix or one tenant."""

    KIND: ClassVar[str] = "ramp"
    qps_start: float
    qps_delta: float
    sla_ms: float
    patience: int
    max_passes: int
    tenant: str | None = None

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: Mapping) -> "RampSettings":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class RateSweepSettings:
    """An open-loop sweep: one run per offered rate, of the whole mix or only `tenant`."""

    KIND: ClassVar[str] = "rate_sweep"
    rates_rps: tuple[float, ...]
    tenant: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "rates_rps", tuple(self.rates_rps))
        rates = self.rates_rps
        if not rates or any(not r > 0 for r in rates) or len(set(rates)) != len(rates):
            raise ConfigError(f"swept rates must be distinct and > 0, got {list(rates)}")

    def to_json(self) -> dict:
        return {"rates_rps": list(self.rates_rps), "tenant": self.tenant}

    @classmethod
    def from_json(cls, d: Mapping) -> "RateSweepSettings":
        return cls(tuple(d["rates_rps"]), d["tenant"])


ExperimentSettings = SweepSettings | PeakSettings | RampSettings | RateSweepSettings
_SETTINGS = {cls.KIND: cls for cls in (SweepSettings, PeakSettings, RampSettings, RateSweepSettings)}


# ----------------------------------------------------------------------------- run.json


@dataclasses.dataclass(frozen=True)
class RunManifest:
    """run.json: what a run, or an experiment of several runs, was asked to do.

    A single run has a `label`; an experiment has its `settings` (and `config` is the one its
    runs derive from). `invocation` (e.g. the command line and its flagfile) is kept as given.
    """

    config: LoadConfig
    invocation: Mapping[str, object]
    label: str | None = None
    settings: ExperimentSettings | None = None

    def __post_init__(self):
        object.__setattr__(self, "invocation", dict(self.invocation))
        if (self.label is None) == (self.settings is None):
            raise ValueError("a run manifest has either a run's label or an experiment's settings")
        if any(not isinstance(key, str) for key in self.invocation):
            raise ValueError(f"invocation keys must be strings, got {list(self.invocation)}")

    @property
    def kind(self) -> str:
        return KIND_RUN if self.settings is None else self.settings.KIND

    def to_json(self) -> dict:
        described = {"label": self.label} if self.settings is None else {"settings": self.settings.to_json()}
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            **described,
            "config": self.config.to_json(),
            "invocation": dict(self.invocation),
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "RunManifest":
        _check_schema(d, "run manifest")
        kind = d["kind"]
        if kind == KIND_RUN:
            return cls(LoadConfig.from_json(d["config"]), d["invocation"], label=d["label"])
        if kind not in _SETTINGS:
            raise ValueError(f"unknown run kind {kind!r}; expected one of {[KIND_RUN, *_SETTINGS]}")
        return cls(LoadConfig.from_json(d["config"]), d["invocation"], settings=_SETTINGS[kind].from_json(d["settings"]))


# ----------------------------------------------------------------------------- summary.json


@dataclasses.dataclass(frozen=True)
class WorkerTotals:
    """One worker process of a run: its record file, how many rows it wrote, its CPU time, and
    the CPU priority it ran at (tfs_bench.cpu_priority: "realtime", or "normal" with why).

    A worker on a Ray node also names the `node` and its `clock`: the offset of the node's
    monotonic clock from the driver's and the uncertainty of that offset (half the best round
    trip), in ns, measured before the run started; its records are on the driver's clock. A
    worker `lost` part way says why; its rows and CPU time are those read before the loss.
    """

    worker: int
    records_file: str  # relative to the run directory
    rows: int
    cpu_s: float
    priority: str = "normal"
    node: str | None = None
    clock: tuple[int, int] | None = None  # (offset_ns, uncertainty_ns)
    lost: str | None = None

    def __post_init__(self):
        if self.worker < 0 or self.rows < 0 or self.cpu_s < 0 or not self.records_file or not self.priority:
            raise ValueError(f"implausible worker totals: {self}")
        if self.clock is not None:
            object.__setattr__(self, "clock", tuple(self.clock))
            if len(self.clock) != 2 or self.clock[1] < 0:
                raise ValueError(f"a worker's clock is (offset_ns, uncertainty_ns >= 0), got {self.clock}")

    def to_json(self) -> dict:
        d = {
            "worker": self.worker,
            "records_file": self.records_file,
            "rows": self.rows,
            "cpu_s": self.cpu_s,
            "priority": self.priority,
        }
        if self.node is not None:
            d["node"] = self.node
        if self.clock is not None:
            d["clock_offset_ns"], d["clock_uncertainty_ns"] = self.clock
        if self.lost is not None:
            d["lost"] = self.lost
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> "WorkerTotals":
        clock = (d["clock_offset_ns"], d["clock_uncertainty_ns"]) if "clock_offset_ns" in d else None
        return cls(d["worker"], d["records_file"], d["rows"], d["cpu_s"], d.get("priority", "normal"),
                   d.get("node"), clock, d.get("lost"))


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """summary.json of one run: the result, when and how it ran, and each worker's totals.

    `started_at`/`finished_at` are UTC ISO-8601 wall-clock times; `start_ns` (when the workers
    began sending) and `warmup_end_ns` are on the records' perf_counter_ns clock.
    """

    KIND: ClassVar[str] = KIND_RUN
    label: str
    started_at: str
    finished_at: str
    start_ns: int
    warmup_end_ns: int
    stop_reason: str  # STOP_STABLE, STOP_MAX_WINDOWS or STOP_LOADGEN
    workers: tuple[WorkerTotals, ...]
    result: RunResult
    loadgen: LoadGenVerdict | None = None  # --mode=mlperf: LoadGen's own verdict beside the suite's

    def __post_init__(self):
        object.__setattr__(self, "workers", tuple(self.workers))
        if self.stop_reason not in (STOP_STABLE, STOP_MAX_WINDOWS, STOP_LOADGEN):
            raise ValueError(f"stop_reason must be {STOP_STABLE!r}, {STOP_MAX_WINDOWS!r} or {STOP_LOADGEN!r}, "
                             f"got {self.stop_reason!r}")
        if (self.stop_reason == STOP_LOADGEN) != (self.loadgen is not None):
            raise ValueError("LoadGen's verdict comes with a run LoadGen ended, and only with one")
        if [w.worker for w in self.workers] != list(range(len(self.workers))) or not self.workers:
            raise ValueError(f"a run summary lists workers 0, 1, …, got {[w.worker for w in self.workers]}")
        if not self.start_ns <= self.warmup_end_ns:
            raise ValueError(f"warm-up ended ({self.warmup_end_ns}) before the run started ({self.start_ns})")

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.KIND,
            "label": self.label,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "start_ns": self.start_ns,
            "warmup_end_ns": self.warmup_end_ns,
            "stop_reason": self.stop_reason,
            "workers": [w.to_json() for w in self.workers],
            "result": self.result.to_json(),
            **({} if self.loadgen is None else {"loadgen": self.loadgen.to_json()}),
        }

    @classmethod
    def from_json(cls, d: Mapping) -> "RunSummary":
        _check_schema(d, "run summary")
        if d["kind"] != cls.KIND:
            raise ValueError(f"not a run summary: kind {d['kind']!r}")
        return cls(
            label=d["label"],
            started_at=d["started_at"],
            finished_at=d["finished_at"],
            start_ns=d["start_ns"],
            warmup_end_ns=d["warmup_end_ns"],
            stop_reason=d["stop_reason"],
            workers=tuple(WorkerTotals.from_json(w) for w in d["workers"]),
            result=RunResult.from_json(d["result"]),
            loadgen=LoadGenVerdict.from_json(d["loadgen"]) if "loadgen" in d else None,
        )


@dataclasses.dataclass(frozen=True)
class RunFailure:
    """failure.json: a run that stopped before its summary, why, and what it kept.

    `ended` is FAILED (the server went away, a worker died, an error) or INTERRUPTED (Ctrl-C, a
    signal); `windows` is the number of windows windows.jsonl holds, all measured in full.
    """

    label: str
    started_at: str
    ended_at: str
    ended: str
    reason: str
    windows: int

    def __post_init__(self):
        if self.ended not in (FAILED, INTERRUPTED):
            raise ValueError(f"ended must be {FAILED!r} or {INTERRUPTED!r}, got {self.ended!r}")
        if not self.reason:
            raise ValueError("a run failure needs its reason")
        if self.windows < 0:
            raise ValueError(f"windows must be >= 0, got {self.windows}")

    def to_json(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, d: Mapping) -> "RunFailure":
        _check_schema(d, "run failure")
        return cls(d["label"], d["started_at"], d["ended_at"], d["ended"], d["reason"], d["windows"])


@dataclasses.dataclass(frozen=True)
class ExperimentRun:
    """One run of an experiment: a sweep's level (`concurrency`) or a probe (`rate_rps`)."""

    label: str
    dir: str  # the run's directory, relative to the experiment's
    result: RunResult
    concurrency: int | None = None
    rate_rps: float | None = None
    attempt: int = 1  # 2, 3, …: a re-measurement of a run INVALID because of the host

    def __post_init__(self):
        if (self.concurrency is None) == (self.rate_rps is None):
            raise ValueError(f"run {self.label!r} of an experiment has either a concurrency or a rate")
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 1:
            raise ValueError(f"run {self.label!r}: attempt must be an integer >= 1, got {self.attempt!r}")

    def to_json(self) -> dict:
        fact = {"concurrency": self.concurrency} if self.rate_rps is None else {"rate_rps": self.rate_rps}
        return {"label": self.label, "dir": self.dir, **fact, "attempt": self.attempt, "result": self.result.to_json()}

    @classmethod
    def from_json(cls, d: Mapping) -> "ExperimentRun":
        return cls(
            d["label"], d["dir"], RunResult.from_json(d["result"]), d.get("concurrency"), d.get("rate_rps"),
            d.get("attempt", 1),
        )


@dataclasses.dataclass(frozen=True)
class ExperimentSummary:
    """summary.json of a sweep or search, rewritten after each run.

    `finished_at` is None while it runs. A finished search has its outcome: `peak` or `ramp`,
    or `error` (why it could not start) with the `probes` it measured.
    """

    settings: ExperimentSettings
    started_at: str
    runs: tuple[ExperimentRun, ...]
    finished_at: str | None = None
    error: str | None = None
    probes: tuple[JudgedProbe, ...] = ()
    peak: PeakResult | None = None
    ramp: RampResult | None = None

    def __post_init__(self):
        object.__setattr__(self, "runs", tuple(self.runs))
        object.__setattr__(self, "probes", tuple(self.probes))
        outcomes = [name for name in ("error", "peak", "ramp") if getattr(self, name) is not None]
        if len(outcomes) > 1:
            raise ValueError(f"an experiment has at most one outcome, got {outcomes}")
        if outcomes and self.finished_at is None:
            raise ValueError(f"an experiment with its {outcomes[0]} has finished_at")
        allowed = {SweepSettings: (), RateSweepSettings: (), PeakSettings: ("error", "peak"), RampSettings: ("error", "ramp")}
        if outcomes and outcomes[0] not in allowed[type(self.settings)]:
            raise ValueError(f"a {self.kind} has no {outcomes[0]}")
        if self.probes and self.error is None:
            raise ValueError("probes are listed only with the error that stopped a search")
        for previous, run in zip((None, *self.runs), self.runs):
            if run.attempt > 1 and (previous is None or previous.attempt != run.attempt - 1):
                raise ValueError(f"run {run.label!r} is attempt {run.attempt} but does not follow attempt {run.attempt - 1}")
        swept = isinstance(self.settings, SweepSettings)
        if any((run.concurrency is not None) != swept for run in self.runs):
            raise ValueError(f"the runs of a {self.kind} are named by {'concurrency' if swept else 'rate'}")

    @property
    def kind(self) -> str:
        return self.settings.KIND

    @property
    def measurements(self) -> tuple[ExperimentRun, ...]:
        """The last attempt of each sweep level or probe, in order (the runs the outcome used)."""
        last: list[ExperimentRun] = []
        for run in self.runs:
            if run.attempt == 1:
                last.append(run)
            else:
                last[-1] = run
        return tuple(last)

    def to_json(self) -> dict:
        d = {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "settings": self.settings.to_json(),
            "started_at": self.started_at,
            "runs": [run.to_json() for run in self.runs],
        }
        if self.error is not None:
            d |= {"error": self.error, "probes": [p.to_json() for p in self.probes]}
        if self.peak is not None:
            d["peak"] = self.peak.to_json()
        if self.ramp is not None:
            d["ramp"] = self.ramp.to_json()
        if self.finished_at is not None:
            d["finished_at"] = self.finished_at
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> "ExperimentSummary":
        _check_schema(d, "experiment summary")
        if d["kind"] not in _SETTINGS:
            raise ValueError(f"not an experiment summary: kind {d['kind']!r}")
        return cls(
            settings=_SETTINGS[d["kind"]].from_json(d["settings"]),
            started_at=d["started_at"],
            runs=tuple(ExperimentRun.from_json(r) for r in d["runs"]),
            finished_at=d.get("finished_at"),
            error=d.get("error"),
            probes=tuple(JudgedProbe.from_json(p) for p in d.get("probes", ())),
            peak=PeakResult.from_json(d["peak"]) if "peak" in d else None,
            ramp=RampResult.from_json(d["ramp"]) if "ramp" in d else None,
        )


def _summary_from_json(d: Mapping) -> RunSummary | ExperimentSummary:
    _check_schema(d, "summary")
    return RunSummary.from_json(d) if d.get("kind") == KIND_RUN else ExperimentSummary.from_json(d)


# ----------------------------------------------------------------------------- directories and files


def records_path(run_dir: Path, worker: int) -> Path:
    return run_dir / f"records-w{worker}.csv"


def worker_log_path(run_dir: Path, worker: int) -> Path:
    return run_dir / f"worker-{worker}.log"


def check_output_dir(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuses a directory that holds anything but a previous run, or a previous run without `overwrite`."""
    directory = Path(path)
    if not directory.exists():
        return
    if not directory.is_dir():
        raise ConfigError(f"output {directory} exists and is not a directory")
    if not any(directory.iterdir()):
        return
    if not (directory / RUN_FILE).is_file():
        raise ConfigError(f"output directory {directory} is not empty and holds no load run ({RUN_FILE}); refusing to touch it")
    if not overwrite:
        raise ConfigError(f"output directory {directory} holds a previous run; pass --overwrite to replace it")


def claim_output_dir(path: str | os.PathLike, overwrite: bool, manifest: RunManifest) -> Path:
    """Creates the run directory (replacing a previous run when allowed) and writes run.json."""
    check_output_dir(path, overwrite)
    directory = Path(path)
    if (directory / RUN_FILE).is_file():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / RUN_FILE, manifest.to_json())
    return directory


_NOT_COMPARED = ("output_dir", "overwrite")  # where and how the run is written, not what it measures


def _flattened(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            out.update(_flattened(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _measured_settings(manifest: RunManifest) -> dict[str, object]:
    """Every setting that decides what a run measures, by its dotted key in run.json."""
    described = {"kind": manifest.kind, "label": manifest.label,
                 "settings": manifest.settings and manifest.settings.to_json(), "config": manifest.config.to_json()}
    return {key: value for key, value in _flattened(described).items() if key.split(".")[-1] not in _NOT_COMPARED}


def manifest_differences(before: RunManifest, now: RunManifest) -> list[str]:
    """What `now` would measure differently from `before`: "key: was A, now B" per setting."""
    old, new = _measured_settings(before), _measured_settings(now)
    return [f"{key}: was {old.get(key)!r}, now {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)]


def reopen_for_resume(path: str | os.PathLike, manifest: RunManifest) -> tuple[Path, RunSummary | ExperimentSummary | None]:
    """The run directory `--resume` continues, checked against what it was started with, and its
    summary so far (None when it has none). Raises ConfigError naming what does not match."""
    directory = Path(path)
    if not (directory / RUN_FILE).is_file():
        raise ConfigError(f"--resume: {directory} holds no load run to continue (no {RUN_FILE})")
    try:
        before = read_manifest(directory)
    except RunFileError as e:
        raise ConfigError(f"--resume: {e}") from None
    differences = manifest_differences(before, manifest)
    if differences:
        raise ConfigError("--resume continues a run with the settings it started with; these differ: "
                          + "; ".join(differences[:6]) + ("; …" if len(differences) > 6 else ""))
    if not (directory / SUMMARY_FILE).is_file():
        return directory, None
    try:
        return directory, read_summary(directory)
    except RunFileError as e:
        raise ConfigError(f"--resume: {e}") from None


_MOVED_ASIDE = re.compile(r"\.interrupted-[0-9]+$")


def move_aside(run_dir: Path) -> Path:
    """Renames a run that stopped part way to `<name>.interrupted-<k>` (kept, never reused)."""
    k = 1
    while run_dir.with_name(f"{run_dir.name}.interrupted-{k}").exists():
        k += 1
    aside = run_dir.with_name(f"{run_dir.name}.interrupted-{k}")
    run_dir.rename(aside)
    return aside


def is_moved_aside(name: str) -> bool:
    """Whether a directory name is one `move_aside` gave."""
    return _MOVED_ASIDE.search(name) is not None


def read_manifest(run_dir: str | os.PathLike) -> RunManifest:
    """run.json of a run or experiment directory; raises RunFileError."""
    return _read_json(Path(run_dir) / RUN_FILE, RunManifest.from_json)


def write_summary(run_dir: Path, summary: RunSummary | ExperimentSummary) -> None:
    write_json_atomic(run_dir / SUMMARY_FILE, summary.to_json())


def write_failure(run_dir: Path, failure: RunFailure) -> None:
    write_json_atomic(run_dir / FAILURE_FILE, failure.to_json())


def mark_ended_early(run_dir: Path, label: str, started_at: str, error: BaseException, windows: int) -> None:
    """failure.json for a run that `error` ended before its summary: INTERRUPTED for Ctrl-C or an
    exit, FAILED with the error's text otherwise. The windows measured stay where they are."""
    interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
    try:
        write_failure(run_dir, RunFailure(
            label, started_at, now(), INTERRUPTED if interrupted else FAILED,
            "interrupted" if interrupted else (str(error) or type(error).__name__), windows,
        ))
    except OSError:
        pass  # the disk failing too must not hide the error itself


def now() -> str:
    """The wall-clock time that stamps a run's start and end: UTC, ISO 8601, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_failure(run_dir: str | os.PathLike) -> RunFailure:
    """failure.json of a run that did not finish; raises RunFileError."""
    return _read_json(Path(run_dir) / FAILURE_FILE, RunFailure.from_json)


def read_summary(run_dir: str | os.PathLike) -> RunSummary | ExperimentSummary:
    """summary.json: a RunSummary for a run directory, an ExperimentSummary for a sweep or search."""
    return _read_json(Path(run_dir) / SUMMARY_FILE, _summary_from_json)


def write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class WindowLog:
    """windows.jsonl: one line per window, written whole and flushed."""

    def __init__(self, run_dir: Path):
        self._file = open(run_dir / WINDOWS_FILE, "a", encoding="utf-8")
        self.count = 0

    def append(self, window: WindowSummary) -> None:
        self._file.write(json.dumps(window.to_json()) + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        self._file.close()


def read_windows(run_dir: str | os.PathLike) -> list[WindowSummary]:
    """windows.jsonl, one WindowSummary a line (each checked for its schema_version)."""
    return read_jsonl(Path(run_dir) / WINDOWS_FILE, WindowSummary.from_json)


def _read_json(path: Path, parse: Callable[[Mapping], _T]) -> _T:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RunFileError(f"cannot read {path}: {e.strerror or e}") from None
    return _parsed(text, parse, str(path))


def read_jsonl(path: str | os.PathLike, parse: Callable[[Mapping], _T]) -> list[_T]:
    """Each line of an append-only JSONL file parsed into its record, in order.

    The writers append whole lines and flush, so only a crash mid-write leaves a last line without
    its newline: that line is skipped, as a truncated CSV row is. Any other bad line raises
    RunFileError naming the file and line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise RunFileError(f"cannot read {path}: {e.strerror or e}") from None
    lines = text.split("\n")[:-1]  # what follows the last newline is a line cut short, or nothing
    return [_parsed(line, parse, f"{path}:{number}") for number, line in enumerate(lines, start=1)]


def _parsed(text: str, parse: Callable[[Mapping], _T], where: str) -> _T:
    try:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"not a JSON object but {type(value).__name__}")
        return parse(value)
    except KeyError as e:
        raise RunFileError(f"{where}: no field {e}") from None
    except (ValueError, TypeError, TfsBenchError) as e:
        raise RunFileError(f"{where}: {e}") from None
