"""An experiment's run directory read back: its manifest, flags, journal and every load run.

    data = read_run(Path("runs/20261203T120020Z-quickstart"))
    data.step("cpu/dedicated/tiny_cnn/peak")          # the journal's StepRecord, or None
    data.operating_point("cpu/multi_model/balanced")  # the MeasuredRun the step's result names
    data.runs("cpu/dedicated/tiny_cnn/peak")          # every run the step measured (last attempts)

Nothing here measures or writes: `tfs_bench.report` re-renders from what the run left. A
step's runs come from its summary.json (a sweep, a rate sweep, or a peak search in the
directory its result names); a re-measured run counts by its last attempt, as the search used
it. A missing or unreadable file is a RunFileError naming it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

from tfs_bench.errors import RunFileError
from tfs_bench.load import run_files
from tfs_bench.load.records import read_records
from tfs_bench.load.resources_file import MonitoredWindow
from tfs_bench.load.resources_file import RESOURCES_FILE
from tfs_bench.load.resources_file import read_resources
from tfs_bench.load.verdict import RunResult
from tfs_bench.run.journal import StepRecord
from tfs_bench.run.journal import read_journal
from tfs_bench.run.manifest import ExperimentManifest
from tfs_bench.run.manifest import read_manifest

# The step ids tfs_bench.run.experiment gives, parsed back into (device, placement, kind, model).
_STEP_PATTERNS = (
    (re.compile(r"^(?P<device>[a-z]+)/dedicated/(?P<model>[^/]+)/(?P<kind>closed|peak)$"), "dedicated"),
    (re.compile(r"^(?P<device>[a-z]+)/(?P<kind>raw)/(?P<model>[^/]+)$"), None),
    (re.compile(r"^(?P<device>[a-z]+)/(?P<placement>multi_model|multi_process)/(?P<kind>perseus)/"
                r"(?P<fixed>[^/]+)-at-(?P<fraction>[0-9.]+)/(?P<model>[^/]+)$"), None),
    (re.compile(r"^(?P<device>[a-z]+)/(?P<placement>multi_model|multi_process)/(?P<kind>balanced)$"), None),
    (re.compile(r"^(?P<device>[a-z]+)/(?P<kind>reference)/(?P<model>[^/]+)/alone$"), "dedicated"),
    (re.compile(r"^(?P<device>[a-z]+)/(?P<kind>framework)/(?P<model>[^/]+)/(?P<variant>[^/]+)/closed$"), "dedicated"),
)


@dataclasses.dataclass(frozen=True)
class StepId:
    """What a step id says: device, placement (None for raw), kind, and the model it is about."""

    id: str
    device: str
    placement: str | None
    kind: str
    model: str | None = None  # perseus: the searched tenant; balanced: None
    fixed_model: str | None = None
    fraction: float | None = None
    variant: str | None = None

    @property
    def mix(self) -> str:
        """A shared step's mix in words: `balanced`, or `<fixed> at <f> of its peak + <searched> at its peak`."""
        if self.kind == "perseus":
            return f"{self.fixed_model} at {self.fraction:g} of its peak + {self.model} searched"
        return "balanced"


def parse_step_id(step_id: str) -> StepId:
    for pattern, placement in _STEP_PATTERNS:
        match = pattern.match(step_id)
        if match:
            groups = match.groupdict()
            fraction = groups.pop("fraction", None)
            return StepId(
                id=step_id, placement=groups.pop("placement", placement), fraction=float(fraction) if fraction else None,
                fixed_model=groups.pop("fixed", None), **groups,
            )
    raise RunFileError(f"step {step_id!r} in the journal is not a step tfs_bench.run makes")


@dataclasses.dataclass(frozen=True)
class MeasuredRun:
    """One load run of a step: its directory, how it was driven and its result."""

    step: StepId
    label: str
    dir: Path
    result: RunResult
    concurrency: int | None = None
    rate_rps: float | None = None

    @property
    def valid(self) -> bool:
        return self.result.verdict.valid

    def pooled_resources(self) -> list[MonitoredWindow]:
        """The resources.jsonl windows of the run's pooled windows ([] without monitoring)."""
        if not (self.dir / RESOURCES_FILE).is_file():
            return []
        pooled = set(self.result.pooled_windows)
        return [w for w in self.resources() if w.window in pooled]

    def response_times_ms(self, tenant: str) -> list[float]:
        """Response times (ms) of the tenant's successful requests that completed in the pooled windows."""
        windows = [w for w in self.result.windows if w.index in set(self.result.pooled_windows)]
        paths = sorted(self.dir.glob("records-w*.csv"))
        if not windows or not paths:
            return []
        spans = [(w.start_ns, w.end_ns) for w in windows]
        return [
            r.response_time_ns / 1e6
            for r in read_records(*paths)
            if r.tenant == tenant and r.ok and any(start <= r.done_ns < end for start, end in spans)
        ]

    def resources(self) -> list[MonitoredWindow]:
        if not (self.dir / RESOURCES_FILE).is_file():
            return []
        return [line for line in read_resources(self.dir) if isinstance(line, MonitoredWindow)]


def parse_flagfile(text: str) -> dict[str, str]:
    """`--name=value` lines → {name: value}; `--flag`/`--noflag` → "true"/"false"."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("--"):
            continue
        name, sep, value = line[2:].partition("=")
        if sep:
            values[name] = value
        elif name.startswith("no"):
            values[name[2:]] = "false"
        else:
            values[name] = "true"
    return values


@dataclasses.dataclass(frozen=True)
class UnfinishedRun:
    """A load run that stopped before its summary.json: its directory (relative to the
    experiment's), how it ended (failure.json's `failed`/`interrupted`, or `killed` when the
    process died without writing one), why, how many whole windows it kept, and whether
    `--resume` has since moved it aside to measure the step again."""

    dir: str
    ended: str
    reason: str
    windows: int
    moved_aside: bool

    def describe(self) -> str:
        again = "--resume measured the step again" if self.moved_aside else "--resume measures the step again"
        return (f"{self.dir}: {self.ended} ({self.reason}); {self.windows} window(s) kept in "
                f"{run_files.WINDOWS_FILE}, in none of the figures; {again}")


@dataclasses.dataclass(frozen=True)
class RunData:
    path: Path
    manifest: ExperimentManifest
    records: Mapping[str, StepRecord]  # in journal order
    _runs: dict[str, list["MeasuredRun"]] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def flags(self) -> dict[str, str]:
        return parse_flagfile(self.manifest.flagfile)

    @property
    def sla_ms(self) -> float:
        return float(self.flags.get("sla_ms", "750"))

    @property
    def sla_percentile(self) -> float:
        return float(self.flags.get("sla_percentile", "95"))

    @property
    def batch_size(self) -> int:
        return int(self.flags.get("batch_size", "1"))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(m for m in self.flags.get("models", "").split(",") if m)

    @property
    def name(self) -> str:
        return self.path.name

    def steps(self, kind: str | None = None, device: str | None = None) -> list[StepId]:
        ids = [parse_step_id(s) for s in self.records]
        return [s for s in ids if (kind is None or s.kind == kind) and (device is None or s.device == device)]

    def step(self, step_id: str) -> StepRecord | None:
        return self.records.get(step_id)

    def done(self, step_id: str) -> Mapping | None:
        """The result of a step that finished done, else None."""
        record = self.records.get(step_id)
        return record.result if record is not None and record.status == "done" else None

    def runs(self, step_id: str) -> list[MeasuredRun]:
        """Every run the step measured, in order (the last attempt of each); [] when none was.
        Each step's summaries are read once: every table asks for them."""
        if step_id not in self._runs:
            self._runs[step_id] = self._read_runs(step_id)
        return list(self._runs[step_id])

    def _read_runs(self, step_id: str) -> list[MeasuredRun]:
        record = self.records.get(step_id)
        if record is None or record.dir is None:
            return []
        step = parse_step_id(step_id)
        if step.kind == "raw":
            return []
        result = record.result or {}
        directories = [self.path / result["search_dir"]] if "search_dir" in result else self._searches(self.path / record.dir)
        runs = []
        for directory in directories:
            summary = run_files.read_summary(directory)
            for run in summary.measurements:
                runs.append(MeasuredRun(step, run.label, directory / run.dir, run.result, run.concurrency, run.rate_rps))
        return runs

    def _searches(self, step_dir: Path) -> list[Path]:
        """The sweep or search directories of a step: the step's own, or its `from-<rate>rps` restarts."""
        if (step_dir / run_files.SUMMARY_FILE).is_file():
            return [step_dir]
        return sorted(d for d in step_dir.glob("from-*rps") if (d / run_files.SUMMARY_FILE).is_file())

    def unfinished(self) -> list[UnfinishedRun]:
        """Every load run without a summary.json outside the finished steps' directories: the
        run a Ctrl-C or a kill stopped, and the partial directories `--resume` moved aside
        before measuring those steps again. (A failed step's failure.json is its journal error.)"""
        finished = [self.path / r.dir for r in self.records.values() if r.dir is not None]
        runs = []
        for path in sorted(self.path.rglob(run_files.WINDOWS_FILE)):
            directory = path.parent
            if (directory / run_files.SUMMARY_FILE).is_file():
                continue
            if any(directory == d or d in directory.parents for d in finished):
                continue
            relative = directory.relative_to(self.path)
            moved_aside = any(run_files.is_moved_aside(part) for part in relative.parts)
            if (directory / run_files.FAILURE_FILE).is_file():
                failure = run_files.read_failure(directory)
                ended, reason, windows = failure.ended, f"{failure.reason}, at {failure.ended_at}", failure.windows
            else:
                ended, reason = "killed", f"no {run_files.FAILURE_FILE}: the process died without writing one"
                windows = len(run_files.read_windows(directory))
            runs.append(UnfinishedRun(str(relative), ended, reason, windows, moved_aside))
        return runs

    def operating_point(self, step_id: str) -> MeasuredRun | None:
        """The run a done step's figures come from: a search's peak probe, a sweep's best (or only)
        VALID level; None when the step did not finish done."""
        result = self.done(step_id)
        if result is None:
            return None
        runs = self.runs(step_id)
        if "peak_rps" in result:
            matches = [r for r in runs if r.rate_rps == result["peak_rps"]]
            return matches[-1] if matches else None
        concurrency = result.get("best_concurrency", result.get("concurrency"))
        matches = [r for r in runs if r.concurrency == concurrency]
        return matches[-1] if matches else None


def read_run(run_dir: str | Path) -> RunData:
    """The run directory of an experiment (finished, or stopped part way: what finished is read)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunFileError(f"--run_dir {path} is not a directory")
    manifest = read_manifest(path)
    records = {r.step: r for r in read_journal(path)}
    return RunData(path, manifest, records)
