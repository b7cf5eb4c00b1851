"""From run directories to a report directory.

    paths = write_report([Path("runs/…-quickstart")], Path("runs/…-quickstart/report"), costing)

Writes `report.md` (plots beside it in plots/), `report.html` (the same content, plots embedded),
and tables/ with every analysis table as CSV and Parquet: a run's tables in tables/ (in
tables/<run>/ when the report covers several runs) and the cost tables, over all runs, in tables/. A report directory
holds only what this writes, so re-rendering replaces it; any other directory is refused.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path

from tfs_bench.analysis import results
from tfs_bench.analysis import tables
from tfs_bench.analysis.run_data import RunData
from tfs_bench.analysis.run_data import read_run
from tfs_bench.errors import ConfigError
from tfs_bench.report import document
from tfs_bench.report import sections

REPORT_DIR = "report"  # under the run directory, where tfs_bench.run leaves it
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
TABLES_DIR = "tables"
MARKER = ".tfs_bench_report"  # marks a directory this module wrote, so re-rendering may replace it


@dataclasses.dataclass(frozen=True)
class ReportPaths:
    directory: Path
    markdown: Path
    html: Path
    plots: tuple[Path, ...]
    tables: tuple[Path, ...]
    headline: tuple[str, ...]


def latency_samples(data: RunData) -> tuple[dict, dict]:
    """Response times (ms) per model and operating point: each dedicated peak and each balanced mix."""
    samples: dict[str, dict[str, list[float]]] = {}
    valid: dict[tuple[str, str], bool] = {}
    for step in data.steps():
        if step.kind not in ("peak", "balanced"):
            continue
        run = data.operating_point(step.id)
        if run is None:
            continue
        point = f"{step.device} {step.placement}"
        for tenant in run.result.tenants:
            samples.setdefault(tenant, {})[point] = run.response_times_ms(tenant)
            valid[(tenant, point)] = run.result.tenants[tenant].verdict.valid
    return samples, valid


def _claim(directory: Path) -> None:
    if directory.exists():
        if not directory.is_dir():
            raise ConfigError(f"--output_dir {directory} exists and is not a directory")
        if any(directory.iterdir()) and not (directory / MARKER).exists():
            raise ConfigError(f"--output_dir {directory} holds files that are not a tfs_bench report; refusing to replace them")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("written by tfs_bench.report; re-rendering replaces this directory\n", encoding="utf-8")


def write_report(run_dirs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, costing: results.Costing) -> ReportPaths:
    if not run_dirs:
        raise ConfigError("--run_dir: give at least one run directory")
    runs = [read_run(d) for d in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"two run directories have the same name: {', '.join(names)}")
    reports = []
    for data in runs:
        frames = results.experiment_tables(data)
        samples, valid = latency_samples(data)
        reports.append(sections.RunReport(data, frames, samples, valid))
    cost_frames = results.cost_tables(runs, costing)
    blocks = sections.build_report(reports, cost_frames, costing)

    directory = Path(output_dir)
    _claim(directory)
    table_paths = []
    for report in reports:
        where = directory / TABLES_DIR / report.data.name if len(reports) > 1 else directory / TABLES_DIR
        table_paths += tables.write_tables(where, report.tables)
    table_paths += tables.write_tables(directory / TABLES_DIR, cost_frames)
    plots_dir = directory / document.PLOTS_DIR
    plots_dir.mkdir()
    plot_paths = []
    for block in blocks:
        if isinstance(block, document.Image):
            path = plots_dir / block.name
            path.write_bytes(block.png)
            plot_paths.append(path)
    title = "tfs_bench report: " + ", ".join(names)
    markdown = directory / REPORT_MD
    markdown.write_text(document.to_markdown(blocks), encoding="utf-8")
    page = directory / REPORT_HTML
    page.write_text(document.to_html(blocks, title), encoding="utf-8")
    headline = tuple(sections.headline(reports, cost_frames, costing))
    return ReportPaths(directory, markdown, page, tuple(plot_paths), tuple(table_paths), headline)


def summary_lines(paths: ReportPaths) -> list[str]:
    """What a command prints once a report is written: the headline, then where everything went."""
    return [
        "headline:", *(f"  {line}" for line in paths.headline),
        f"report: {paths.markdown}",
        f"        {paths.html} ({len(paths.plots)} plots embedded)",
        f"tables: {paths.directory / TABLES_DIR} ({len(paths.tables)} files)",
    ]


def report_after_run(run_dir: Path, costing: results.Costing, out: Callable[[str], None] = print) -> bool:
    """The last stage of tfs_bench.run: the report in <run_dir>/report. A failure here is printed
    with the command that re-renders it (the measurements stay as they are); returns success."""
    try:
        paths = write_report([run_dir], run_dir / REPORT_DIR, costing)
    except Exception as e:  # noqa: BLE001 - the run's measurements are on disk; say how to re-render
        out(f"error: the report could not be written ({type(e).__name__}: {e}); the measurements are kept; "
            f"re-render with: python -m tfs_bench.report --run_dir={run_dir}")
        return False
    for line in summary_lines(paths):
        out(line)
    return True
