"""tfs_bench.report on the stored run: every section, INVALID results marked, tables as CSV and
Parquet, a page a browser renders, re-rendering, refusals, and two runs side by side."""

import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO_ROOT
from conftest import exactly
from conftest import run_env
from tfs_bench.analysis import tables
from tfs_bench.analysis.demand import parse_demand
from tfs_bench.analysis.prices import DEFAULT_PRICES
from tfs_bench.analysis.prices import read_prices
from tfs_bench.analysis.results import Costing
from tfs_bench.errors import ConfigError
from tfs_bench.load import run_files
from tfs_bench.report.build import MARKER
from tfs_bench.report.build import report_after_run
from tfs_bench.report.build import write_report
from tfs_bench.report.sections import SECTION_TITLES

RUN = REPO_ROOT / "tests" / "data" / "report_run"
COSTING = Costing(read_prices(DEFAULT_PRICES), parse_demand(["tiny_cnn=1000", "mobilenet_v2_small=200"]))
RUN_TABLES = ("placements", "serving_tax", "mixes", "interference", "runs", "breakdown", "resources", "framework")
COST_TABLES = ("unit_costs", "costs", "skipped")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return write_report([RUN], tmp_path_factory.mktemp("report") / "report", COSTING)


def test_every_section_is_there_in_markdown_and_html(report):
    markdown = report.markdown.read_text()
    html = report.html.read_text()
    assert markdown.startswith("# tfs_bench report\n\n## Headline\n")
    for title in SECTION_TITLES:
        assert f"\n## {title}\n" in markdown, title
        assert re.search(f'<h2 id="[a-z0-9-]+">{re.escape(title)}</h2>', html), title
    assert markdown.index(SECTION_TITLES[0]) < markdown.index(SECTION_TITLES[-1])


def test_the_headline_answers_which_placement_won_and_the_cheapest_fleet(report):
    lines = report.headline
    assert lines[0].startswith("on cpu, ") and " wins: the balanced mix on " in lines[0]
    assert lines[1].startswith("serving tax (served ÷ raw in-process TensorFlow throughput): tiny_cnn on cpu ")
    assert lines[2].startswith("cheapest for the demand tiny_cnn 1000/s + mobilenet_v2_small 200/s: ")
    costs = pd.read_csv(report.directory / "tables" / "costs.csv")
    assert f"{costs.iloc[0]['provider']} {costs.iloc[0]['instance']}: {costs.iloc[0]['machines']} machine(s)" in lines[2]
    assert "\n".join(f"- {line}" for line in lines) in report.markdown.read_text()


def test_invalid_results_are_shown_and_marked_never_dropped(report):
    markdown = report.markdown.read_text()
    failed = "cpu/multi_process/perseus/tiny_cnn-at-0.5/mobilenet_v2_small: failed: peak search cannot start"
    assert failed in markdown
    assert "| INVALID (not measured) |" in markdown  # the failed mix's rows in section 2
    assert "INVALID (alone: unstable)" in markdown  # a reference rate the host spoiled, section 8
    html = report.html.read_text()
    marked = re.findall(r'<tr class="invalid">(.*?)</tr>', html, flags=re.S)
    assert marked and all("INVALID" in row for row in marked)
    unmarked = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    assert not [row for row in unmarked if "INVALID" in row]


def test_a_dedicated_server_that_left_cores_idle_is_pointed_out(report):
    placements = pd.read_csv(report.directory / "tables" / "placements.csv")
    used = placements[placements["placement"] == "dedicated"]["servers_cpu_cores"].max()
    assert used < 0.75 * 2  # the stored run's servers used under 1.5 of its 2 cores
    assert f"> On cpu, each dedicated server used at most {used:.2f} of the machine's 2 cores at its peak" in (
        report.markdown.read_text())


def test_a_run_without_a_gpu_says_so_where_the_gpu_figures_would_be(report):
    markdown = report.markdown.read_text()
    assert markdown.count("> GPU: no GPU found: nvmlInit failed") == 2  # sections 1 and 5
    assert "> CPU vs GPU: no GPU found: " in markdown
    assert "no GPU found: no GPU found" not in markdown


def test_every_table_is_written_as_csv_and_parquet_with_its_schema(report):
    where = report.directory / "tables"
    for name in RUN_TABLES + COST_TABLES:
        csv = pd.read_csv(where / f"{name}.csv")
        parquet = tables.read_table(where / f"{name}.parquet")
        assert list(parquet.columns) == [c for c, _ in tables.SCHEMAS[name]] == list(csv.columns), name
        assert len(csv) == len(parquet), name
    assert sorted(p.name for p in report.tables) == sorted(f"{n}.{e}" for n in RUN_TABLES + COST_TABLES for e in ("csv", "parquet"))


def test_the_plots_are_beside_the_markdown_and_inside_the_html(report):
    markdown = report.markdown.read_text()
    html = report.html.read_text()
    assert len(report.plots) >= 7
    for plot in report.plots:
        assert plot.read_bytes().startswith(b"\x89PNG")
        assert f"(plots/{plot.name})" in markdown
    assert html.count('<img src="data:image/png;base64,') == len(report.plots)
    assert "plots/" not in html  # nothing outside the page is needed


def test_re_rendering_replaces_the_report_and_a_foreign_directory_is_refused(tmp_path):
    output = tmp_path / "report"
    write_report([RUN], output, COSTING)
    (output / "tables" / "stale.csv").write_text("left from before\n")
    write_report([RUN], output, Costing(COSTING.prices))
    assert not (output / "tables" / "stale.csv").exists() and (output / MARKER).is_file()
    assert not (output / "tables" / "costs.csv").exists()  # no demand this time: no fleet ranking
    assert "No demand given: pass --demand=MODEL=RATE,... to rank fleets." in (output / "report.md").read_text()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me\n")
    with pytest.raises(ConfigError, match=exactly(
            f"--output_dir {foreign} holds files that are not a tfs_bench report; refusing to replace them")):
        write_report([RUN], foreign, COSTING)
    assert (foreign / "notes.txt").read_text() == "keep me\n"


def test_two_runs_are_compared_side_by_side_never_pooled(tmp_path):
    other = tmp_path / "second-run"
    shutil.copytree(RUN, other)
    paths = write_report([RUN, other], tmp_path / "both", COSTING)
    markdown = paths.markdown.read_text()
    assert "### run report_run" in markdown and "### run second-run" in markdown
    assert "2 runs compared side by side (each option is labelled by its run); their measurements are never pooled." in markdown
    for name in ("report_run", "second-run"):
        assert (paths.directory / "tables" / name / "placements.parquet").is_file()
    units = pd.read_csv(paths.directory / "tables" / "unit_costs.csv")
    assert {label.split(" ")[0] for label in units["label"]} == {"report_run", "second-run"}
    with pytest.raises(ConfigError, match="two run directories have the same name: report_run, report_run"):
        write_report([RUN, RUN], tmp_path / "twice", COSTING)


def test_a_run_interrupted_part_way_is_reported_with_the_windows_it_kept(tmp_path):
    copy = tmp_path / "interrupted"
    shutil.copytree(RUN, copy)
    lines = (copy / "steps.jsonl").read_text().splitlines()
    (copy / "steps.jsonl").write_text("\n".join(lines[:14]) + "\n")  # Ctrl-C during the first framework step
    level = copy / "cpu/framework/tiny_cnn/server-default/closed/concurrency-1"
    (level / "summary.json").unlink()
    run_files.write_failure(level, run_files.RunFailure(
        "c1", "2026-12-04T10:00:00Z", "2026-12-04T10:00:07Z", run_files.INTERRUPTED, "interrupted", 3))
    markdown = write_report([copy], tmp_path / "report", COSTING).markdown.read_text()
    assert "steps: 13 done, 1 failed or skipped, 1 stopped part way; " in markdown
    assert ("- cpu/framework/tiny_cnn/server-default/closed/concurrency-1: interrupted (interrupted, at "
            "2026-12-04T10:00:07Z); 3 window(s) kept in windows.jsonl, in none of the figures; "
            "--resume measures the step again\n") in markdown


def test_a_report_that_fails_after_a_run_says_how_to_re_render(tmp_path):
    lines = []
    assert not report_after_run(tmp_path / "not-a-run", COSTING, out=lines.append)
    assert lines[0].startswith("error: the report could not be written (RunFileError: ")
    assert lines[0].endswith(f"re-render with: python -m tfs_bench.report --run_dir={tmp_path / 'not-a-run'}")


def report_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "tfs_bench.report", *args], capture_output=True, text=True,
                          env=run_env(), cwd=cwd, timeout=300)


def test_the_report_binary_takes_the_runs_demand_and_prices_from_any_directory(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    done = report_cli(f"--run_dir={run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "headline:"
    assert "cheapest for the demand tiny_cnn 1000/s + mobilenet_v2_small 200/s" in done.stdout  # the run's --demand
    assert f"report: {run / 'report' / 'report.md'}" in done.stdout
    again = report_cli(f"--run_dir={run}", "--demand=tiny_cnn=50", "--instances=AWS:c5.xlarge", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    costs = pd.read_csv(run / "report" / "tables" / "costs.csv")
    assert set(costs["instance"]) == {"c5.xlarge"} and (costs["demand_inferences_per_s"] == 50).all()


@pytest.mark.parametrize("args, message", [
    ([], "--run_dir is required"),
    (["--run_dir=/nonexistent/run"], "error: --run_dir /nonexistent/run is not a directory"),
    ([f"--run_dir={RUN}", "--demand=tiny_cnn"], "error: --demand takes MODEL=INFERENCES_PER_S items"),
    ([f"--run_dir={RUN}", "--instances=AWS:nosuch"], "error: --instances: AWS:nosuch is not in the price table"),
])
def test_the_report_binary_refuses_bad_input_by_name(args, message, tmp_path):
    done = report_cli(*args, cwd=tmp_path)
    assert done.returncode != 0 and message in done.stderr, done.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RENDER_PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const drawn = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.title = `drawn ${drawn} of ${images.length}; tables ${document.querySelectorAll("table").length}; `
    + `invalid rows ${document.querySelectorAll("tr.invalid").length}`;
});</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_a_headless_browser_draws_every_plot_of_the_page(report, tmp_path):
    page = tmp_path / "page.html"
    html = report.html.read_text()
    page.write_text(html.replace("</body>", RENDER_PROBE + "</body>"))
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    title = re.search(r"<title>(.*?)</title>", done.stdout)
    assert title, done.stderr[-2000:]
    images = html.count("<img ")
    tables_ = html.count("<table>")
    invalid = html.count('<tr class="invalid">')
    assert title.group(1) == f"drawn {images} of {images}; tables {tables_}; invalid rows {invalid}"
