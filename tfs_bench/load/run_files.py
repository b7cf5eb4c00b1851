"""The load stage's files and its human-readable lines.

A run directory holds:
  run.json            what was asked (written first; it marks the directory as a load run)
  records-w<k>.csv    worker k's request records, appended and flushed several times a window
  worker-<k>.log      worker k's stderr
  windows.jsonl       one WindowSummary per line, appended and flushed as each window closes
  summary.json        the RunResult and the run's facts, written atomically at the end
A sweep or search directory holds run.json, summary.json (every run's result, rewritten
atomically after each run) and one run directory per run.

An existing directory is never written into: it is refused, or replaced whole with
`overwrite` when it holds a previous load run (run.json); a directory holding anything else is
never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tfs_bench.errors import ConfigError
from tfs_bench.metric_registry import metric
from tfs_bench.load.search import PeakResult
from tfs_bench.load.search import RampResult
from tfs_bench.stats import percentile_field
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.windows import LoadSummary
from tfs_bench.load.windows import WindowSummary

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
WINDOWS_FILE = "windows.jsonl"


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


def claim_output_dir(path: str | os.PathLike, overwrite: bool, run: dict) -> Path:
    """Creates the run directory (replacing a previous run when allowed) and writes run.json."""
    check_output_dir(path, overwrite)
    directory = Path(path)
    if (directory / RUN_FILE).is_file():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / RUN_FILE, {"schema_version": SCHEMA_VERSION, **run})
    return directory


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

    def append(self, window: WindowSummary) -> None:
        self._file.write(json.dumps(window.to_json()) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_windows(run_dir: str | os.PathLike) -> list[WindowSummary]:
    lines = (Path(run_dir) / WINDOWS_FILE).read_text(encoding="utf-8").splitlines()
    return [WindowSummary.from_json(json.loads(line)) for line in lines if line]


# ----------------------------------------------------------------------------- text


def _fmt(name: str, value) -> str:
    return metric(name).format(value)


def format_window(label: str, window: WindowSummary, sla_percentile: float) -> str:
    """One progress line: the window's aggregate and the generator's own load."""
    s = window.aggregate
    field = percentile_field(sla_percentile)
    parts = [
        f"[{label}] window {window.index}",
        f"{window.duration_s:.2f} s",
        _fmt("throughput_rps", s.throughput_rps),
    ]
    if s.offered_rate_rps is not None:
        parts.append(f"offered {s.offered_rate_rps:.1f} achieved {s.achieved_rate_rps:.1f} rps")
    parts += [
        f"p50 {_fmt('p50_ms', s.response_time.p50_ms)}",
        f"p{sla_percentile:g} {_fmt(field, s.response_time.at(sla_percentile))}",
        f"errors {s.errors}",
        f"late {_fmt('late_fraction', s.late_fraction)}",
        f"dropped {s.dropped}",
    ]
    if window.generator:
        cpu = max(g.cpu_s for g in window.generator) / window.duration_s
        lags = [g.loop_lag_p99_ms for g in window.generator if g.loop_lag_p99_ms is not None]
        parts.append(f"generator cpu {_fmt('generator_cpu_fraction', cpu)}")
        if lags:
            parts.append(f"loop lag p99 {_fmt('loop_lag_p99_ms', max(lags))}")
    if window.client_bound:
        parts.append("CLIENT-BOUND")
    return "  ".join(parts)


_COLUMNS = ("tenant", "throughput", "offered", "achieved", "p50", "p90", "p95", "p99", "p99.9", "max",
            "errors", "late", "dropped")


def _row(name: str, s: LoadSummary) -> tuple[str, ...]:
    rt = s.response_time
    return (
        name,
        _fmt("throughput_rps", s.throughput_rps),
        "closed" if s.offered_rate_rps is None else _fmt("offered_rate_rps", s.offered_rate_rps),
        _fmt("achieved_rate_rps", s.achieved_rate_rps),
        *(_fmt(f, getattr(rt, f)) for f in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms", "max_ms")),
        str(s.errors),
        _fmt("late_fraction", s.late_fraction),
        str(s.dropped),
    )


def _table(rows: Iterable[tuple[str, ...]]) -> list[str]:
    rows = [_COLUMNS, *rows]
    widths = [max(len(r[k]) for r in rows) for k in range(len(_COLUMNS))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def format_result(label: str, result: RunResult, sla_ms: float | None = None) -> str:
    """The human summary of one run: verdict, per-tenant and aggregate rows, reasons."""
    pooled = result.aggregate
    lines = [
        f"{label}: {result.verdict.label}  ({len(result.windows)} windows, pooled "
        f"{', '.join(map(str, result.pooled_windows))}: {pooled.duration_s:.1f} s; response time = done - intended)"
    ]
    rows = [_row(name, t.pooled) for name, t in result.tenants.items()]
    if len(result.tenants) > 1:
        rows.append(_row("all", pooled))
    lines += _table(rows)
    if sla_ms is not None:
        latency = result.sla_latency_ms()
        met = latency is not None and latency <= sla_ms
        lines.append(
            f"  SLA p{result.sla_percentile:g} <= {sla_ms:g} ms: {'met' if met else 'NOT met'} "
            f"({_fmt(percentile_field(result.sla_percentile), latency)})"
        )
    lines += [f"  INVALID: {r.code}: {r.message}" for r in result.verdict.reasons]
    return "\n".join(lines)


def format_runs(runs: Iterable[tuple[str, RunResult]]) -> str:
    """One line per run of a sweep: verdict, throughput and the SLA percentile of response time."""
    lines = []
    for label, result in runs:
        latency = result.sla_latency_ms()
        field = percentile_field(result.sla_percentile)
        lines.append(
            f"  {label}: {result.verdict.label:7}  {_fmt('throughput_rps', result.aggregate.throughput_rps)}  "
            f"p{result.sla_percentile:g} {_fmt(field, latency)}"
        )
    return "\n".join(lines)


def format_peak(peak: PeakResult, sla_percentile: float, sla_ms: float) -> str:
    bracket = (
        f"between {peak.lower.rate_rps:g} (passed) and {peak.upper.rate_rps:g} rps (failed)"
        if peak.upper is not None
        else "not bracketed: the highest rate allowed passed"
    )
    return (
        f"peak under SLA (p{sla_percentile:g} <= {sla_ms:g} ms): {peak.peak_rps:g} rps offered, "
        f"{_fmt('throughput_rps', peak.lower.outcome.throughput_rps)} measured; {bracket}; "
        f"{len(peak.probes)} probes, precision {peak.precision:.0%}"
    )


def format_ramp(ramp: RampResult, sla_percentile: float, sla_ms: float) -> str:
    best = ramp.best
    return (
        f"PERSEUS ramp: best pass at {best.rate_rps:g} rps offered: "
        f"{_fmt('throughput_rps', best.outcome.throughput_rps)}, "
        f"p{sla_percentile:g} {_fmt(percentile_field(sla_percentile), best.outcome.sla_latency_ms)} "
        f"(SLA {sla_ms:g} ms {'met' if ramp.sla_met else 'NOT met'}); "
        f"{len(ramp.passes)} passes, stopped: {ramp.stop_reason}"
    )
