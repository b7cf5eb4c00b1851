"""`python -m tfs_bench.run`: an experiment end to end, refusals, and --resume after kill -9.

The experiments are small variants of the flagfiles in configs/ (short windows, few levels), on
stand-in exports: tiny_cnn exported under each name served, so the flagfile and the runner, not
the models, are under test; the uint8 variant is left for the run to export.
"""

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from conftest import REPO_ROOT
from conftest import run_env
from server_support import poll_until
from tfs_bench.run.journal import read_journal
from tfs_bench.run.manifest import read_manifest

CONFIGS = REPO_ROOT / "configs"
# Short windows, a search that starts at the closed loop's best rate, half a second of warm-up per deployment.
SHORT = (
    "--window_s=0.5",
    "--window_min_requests=10",
    "--warmup_s=0.3",
    "--max_windows=3",
    "--stability_tolerance=0.5",
    "--min_duration_s=1.5",
    "--min_requests=20",
    "--peak_precision=0.5",
    "--peak_start_fraction=1",
    "--raw_duration_s=1",
    "--idle_baseline_s=0.2",
    "--deployment_warmup_s=0.5",
)
TIMEOUT_S = 600


def run_cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfs_bench.run", *args], capture_output=True, text=True, env=run_env(), cwd=cwd,
        timeout=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """tiny_cnn exported under the names the experiments serve (not the uint8 variant: the run exports it)."""
    from tfs_bench.export import savedmodels

    saved_models = tmp_path_factory.mktemp("saved_models")
    for name in ("tiny_cnn", "mobilenet_v2_small"):
        savedmodels.export(savedmodels.ExportRequest("tiny_cnn", str(saved_models), export_name=name, measure_footprint=False))
    return saved_models


def journal_by_step(run_dir):
    return {r.step: r for r in read_journal(run_dir)}


def start_and_kill_when(flags, runs, cwd, step: str):
    """Starts `python -m tfs_bench.run *flags`, SIGKILLs it once `step` has begun (its directory
    exists after a finished step), waits for its servers to exit; returns the run directory and
    what the run printed."""
    log = cwd / "killed-run.log"  # a file, not a pipe: nothing read while it runs can block it
    with open(log, "w") as output:
        first = subprocess.Popen([sys.executable, "-m", "tfs_bench.run", *flags], stdout=output,
                                 stderr=subprocess.STDOUT, env=run_env(), cwd=cwd)

    def begun():
        assert first.poll() is None, log.read_text()[-3000:]
        dirs = list(runs.glob("*-*"))
        return dirs and read_journal(dirs[0]) and (dirs[0] / step).exists()

    try:
        poll_until(begun, TIMEOUT_S, f"a first step to finish and {step} to begin")
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.kill()
        first.wait(timeout=30)
    (run_dir,) = runs.glob("*-*")
    printed = log.read_text()

    def processes_of_the_run():  # its servers: their flags name the plan files in the run directory
        return [q.pid for q in psutil.process_iter(["cmdline"]) if any(str(run_dir) in a for a in q.info["cmdline"] or ())]

    poll_until(lambda: not processes_of_the_run(), 30, "the killed run's servers to exit",
               lambda: f" (still running: {processes_of_the_run()})")
    return run_dir, printed


@pytest.mark.slow
def test_the_quick_experiment_runs_every_stage_resumes_after_kill_9_and_keeps_its_record(saved, tmp_path):
    runs = tmp_path / "runs"
    flags = (f"--flagfile={CONFIGS / 'quickstart.flags'}", f"--saved_models_dir={saved}", f"--runs_dir={runs}",
             "--concurrency=1", "--placements=dedicated,multi_model", "--noframework_batching", "--framework_threads=",
             "--sla_ms=1000", *SHORT)
    # Killed (kill -9) once the second step has begun: the first is journaled, the second part way.
    run_dir, printed = start_and_kill_when(flags, runs, tmp_path, "cpu/dedicated/tiny_cnn/peak")
    assert "exporting tiny_cnn (uint8)" in printed and "(float32)" not in printed  # only what was missing
    assert "[1/13] cpu/dedicated/tiny_cnn/closed" in printed
    before = journal_by_step(run_dir)
    assert list(before) == ["cpu/dedicated/tiny_cnn/closed"] and read_manifest(run_dir).finished_at is None

    changed = run_cli(*flags, "--concurrency=2", "--resume", cwd=tmp_path)
    assert changed.returncode == 1 and "was --concurrency=1; now --concurrency=2" in changed.stderr

    proc = run_cli(*flags, "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    out = proc.stdout
    assert f"resuming {run_dir}: 1 step(s) already finished" in out
    assert "exporting" not in out and "[13/13] cpu/framework/tiny_cnn/uint8/closed" in out
    assert "headline figures" in out and f"results: {run_dir}" in out
    # The last stage: the report, its headline printed.
    assert f"report: {run_dir / 'report' / 'report.md'}" in out
    assert "cheapest for the demand tiny_cnn 2000/s + mobilenet_v2_small 400/s: " in out  # quickstart.flags' --demand
    report = (run_dir / "report" / "report.md").read_text()
    assert "## 9. Framework inefficiency" in report and "> GPU: no GPU found: " in report
    assert (run_dir / "report" / "tables" / "placements.parquet").is_file()

    steps = journal_by_step(run_dir)
    assert list(steps) == [
        "cpu/dedicated/tiny_cnn/closed", "cpu/dedicated/tiny_cnn/peak",
        "cpu/dedicated/mobilenet_v2_small/closed", "cpu/dedicated/mobilenet_v2_small/peak",
        "cpu/raw/tiny_cnn", "cpu/raw/mobilenet_v2_small",
        "cpu/multi_model/perseus/tiny_cnn-at-0.5/mobilenet_v2_small",
        "cpu/multi_model/perseus/mobilenet_v2_small-at-0.5/tiny_cnn",
        "cpu/multi_model/balanced",
        "cpu/reference/tiny_cnn/alone", "cpu/reference/mobilenet_v2_small/alone",
        "cpu/framework/tiny_cnn/server-default/closed", "cpu/framework/tiny_cnn/uint8/closed",
    ]
    assert all(r.status == "done" for r in steps.values()), {k: r.error for k, r in steps.items() if r.error}
    assert steps["cpu/dedicated/tiny_cnn/closed"] == before["cpu/dedicated/tiny_cnn/closed"]  # not measured again
    interrupted = sorted(p.name for p in (run_dir / "cpu/dedicated/tiny_cnn").glob("*.interrupted-*"))
    assert interrupted in ([], ["peak.interrupted-1"])  # the step killed part way, kept aside if it had begun

    peak = steps["cpu/dedicated/tiny_cnn/peak"].result
    closed = steps["cpu/dedicated/tiny_cnn/closed"].result
    assert peak["starts_rps"][0] == pytest.approx(closed["best_throughput_rps"], abs=0.1) and peak["peak_rps"] > 0
    assert peak["search_dir"] == f"cpu/dedicated/tiny_cnn/peak/from-{peak['starts_rps'][-1]:g}rps"
    perseus = steps["cpu/multi_model/perseus/tiny_cnn-at-0.5/mobilenet_v2_small"].result
    assert perseus["fixed_rate_rps"] == pytest.approx(0.5 * peak["peak_rps"], abs=0.01)
    assert set(perseus["tenants"]) == {"tiny_cnn", "mobilenet_v2_small"}
    balanced = steps["cpu/multi_model/balanced"].result
    assert sum(balanced["shares"].values()) == pytest.approx(1.0)
    # Each model alone again at every rate it was offered co-located (interference's reference).
    offered = sorted({round(r["tenants"]["tiny_cnn"]["offered_rate_rps"], 2) for r in (perseus, balanced,
                      steps["cpu/multi_model/perseus/mobilenet_v2_small-at-0.5/tiny_cnn"].result)})
    alone = steps["cpu/reference/tiny_cnn/alone"].result
    assert [r["offered_rate_rps"] for r in alone["rates"]] == pytest.approx(offered)
    assert all(r["throughput_rps"] > 0 for r in alone["rates"])
    assert steps["cpu/raw/tiny_cnn"].result["best_images_per_s"] > 0
    uint8 = steps["cpu/framework/tiny_cnn/uint8/closed"].result
    assert uint8["encoding"] == "uint8" and uint8["concurrency"] == 1

    # Every load measurement keeps its runs, with resources and the server's own breakdown.
    resources = list((run_dir / "cpu/multi_model/balanced").rglob("resources.jsonl"))
    assert resources
    window = json.loads(resources[0].read_text().splitlines()[-1])
    assert set(window["breakdown"]) == {"tiny_cnn", "mobilenet_v2_small"}

    manifest = read_manifest(run_dir)
    assert manifest.finished_at is not None and manifest.devices == ("cpu",) and len(manifest.resumed_at) == 1
    assert manifest.gpu_note.startswith("no GPU found") and "GPU sections are left out" in manifest.gpu_note
    assert {m.name for m in manifest.models} == {"tiny_cnn", "mobilenet_v2_small", "tiny_cnn_uint8"}
    assert all(m.sha256 and len(m.sha256) == 64 for m in manifest.models)
    assert manifest.co_location["server_nice"] == 10 and manifest.co_location["generator_priority_got"]
    assert manifest.tensorflow["version"].startswith("2.") and manifest.host["logical_cpus"] >= 1
    assert "--name=quickstart" in manifest.flagfile and "--concurrency=1" in manifest.flagfile
    assert (run_dir / "flags.txt").read_text().strip() == manifest.flagfile

    again = run_cli(f"--flagfile={CONFIGS / 'quickstart.flags'}", f"--run_dir={run_dir}", cwd=tmp_path)
    assert again.returncode == 1 and "refusing to overwrite it (continue it with --resume)" in again.stderr
    finished = run_cli(*flags, "--resume", cwd=tmp_path)
    assert finished.returncode == 1 and f"no unfinished run of 'quickstart' under {runs}" in finished.stderr


FAILING_SERVER = ("--server=binary", "--server_binary=/bin/false", "--placements=dedicated", "--noframework_batching",
                  "--framework_threads=", "--concurrency=1")


@pytest.mark.slow
def test_failed_steps_are_reported_and_make_the_run_exit_non_zero(saved, tmp_path):
    # Every server "exits with code 1" at once: each step needing one fails, and the run moves on
    # through the rest, which are skipped because they need a failed step's figures.
    run_dir = tmp_path / "runs" / "failing"
    proc = run_cli(f"--flagfile={CONFIGS / 'quickstart.flags'}", f"--saved_models_dir={saved}", f"--run_dir={run_dir}",
                   *FAILING_SERVER, *SHORT, cwd=tmp_path)
    steps = journal_by_step(run_dir)
    failed = [s for s, r in steps.items() if r.status == "failed"]
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert failed == ["cpu/dedicated/tiny_cnn/closed", "cpu/dedicated/tiny_cnn/peak",
                      "cpu/dedicated/mobilenet_v2_small/closed", "cpu/dedicated/mobilenet_v2_small/peak"]
    assert len(steps) == 8 and steps["cpu/framework/tiny_cnn/uint8/closed"].status == "skipped"
    assert steps["cpu/raw/tiny_cnn"].error.startswith("needs cpu/dedicated/tiny_cnn/closed, which failed: ")
    assert all("did not start: server 'tiny_cnn' (binary" in steps[s].error or "mobilenet_v2_small" in steps[s].error
               for s in failed)
    assert (f"error: {sum(r.status != 'done' for r in steps.values())} step(s) did not finish done (the journal, "
            f"{run_dir / 'steps.jsonl'}, says why); the report covers the others") in proc.stderr
    assert (run_dir / "report" / "report.md").is_file()
    assert read_manifest(run_dir).finished_at is not None


@pytest.mark.slow
def test_stop_on_failure_stops_at_the_first_failed_step_and_leaves_the_run_resumable(saved, tmp_path):
    run_dir = tmp_path / "runs" / "stopping"
    proc = run_cli(f"--flagfile={CONFIGS / 'quickstart.flags'}", f"--saved_models_dir={saved}", f"--run_dir={run_dir}",
                   *FAILING_SERVER, "--stop_on_failure", *SHORT, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-3000:]
    steps = journal_by_step(run_dir)
    assert [(s, r.status) for s, r in steps.items()] == [("cpu/dedicated/tiny_cnn/closed", "failed")]
    assert (f"stopped: step cpu/dedicated/tiny_cnn/closed failed (--stop_on_failure); 1 of 8 step(s) finished; "
            f"continue with the same flags and --resume --run_dir={run_dir}") in proc.stdout
    assert read_manifest(run_dir).finished_at is None  # not finished: --resume continues it
