"""`python -m tfs_bench.load`: its flag rules (parsed in this process), refusals, modes, files and output.

The flag rules are checked in-process (tests/binary_flags.py); a subprocess runs where the process
itself is under test: the exit status and message of a refusal, an unreachable target, the real runs.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from absl import app
from absl import flags

from binary_flags import BinaryFlags
from bench.server_faults import as_in_a_terminal
from conftest import REPO_ROOT
from conftest import run_env
from load_support import MODEL
from load_support import QUICK_FLAGS
from load_support import measured_dirs
from load_support import run_records
from load_support import run_summary
from server_support import poll_until
from tfs_bench.launch.ports import free_port
from tfs_bench.load import __main__ as load_binary


@pytest.fixture
def server(two_name_server):
    """The load tests' shared server (tests/conftest.py)."""
    return two_name_server


LOAD = BinaryFlags(load_binary)
CLI_TIMEOUT_S = 120


def load_cli(*args, timeout_s=CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "tfs_bench.load", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=run_env(), cwd=REPO_ROOT, timeout=timeout_s)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mode=open"], "--mode=open needs --rate"),
        (["--rate=10"], "--rate does not apply to --mode=closed (only to --mode=open or --mode=mlperf)"),
        (["--mode=ramp", "--qps_start=10"], "--mode=ramp needs --qps_delta and --sla_ms"),
        (["--mode=peak", "--qps_start=10"], "--mode=peak needs --sla_ms"),
        (["--mode=peak", "--qps_start=10", "--sla_ms=5", "--qps_delta=5"], "--qps_delta does not apply to --mode=peak"),
        (["--mode=open", "--rate=10", "--concurrency=2"], "--concurrency does not apply to --mode=open"),
        (["--mode=open", "--rate=10", "--ramp_patience=2"], "--ramp_patience does not apply to --mode=open"),
        (["--distribution=constant"], "--distribution does not apply to --mode=closed"),
        (["--max_outstanding=5"], "--max_outstanding does not apply to --mode=closed"),
        (["--mode=peak", "--qps_start=10", "--sla_ms=5", "--max_rate=5"], "--max_rate must be at least --qps_start"),
        (["--mode=open", "--rate=0"], "--rate must be > 0"),
        (["--concurrency=0,2"], "--concurrency takes integers >= 1"),
        (["--concurrency=2,2"], "--concurrency lists a level twice"),
        (["--models=m:2"], "--mode=closed gives every tenant the same concurrency"),
        (["--models=m@10.0.0.1:1"], "names no target"),
        (["--models="], "name at least one model"),
        (["--models=m,m"], "names the same tenant twice: m"),
        (["--target=localhost"], "is not host:port"),
        (["--target=127.0.0.1:1,127.0.0.1:1"], "--target lists a target twice"),
        (["--window_s=1"], "shorter than the minimum duration of 10 s"),
        (["--max_windows=2"], "max_windows must be at least 3"),
        (["--sla_percentile=97"], "--sla_percentile must be one of"),
        (["--stability_tolerance=1.5"], "stability_tolerance must be in (0, 1)"),
        (["--mode=open", "--rate=10", "--max_outstanding=1", "--workers=2"], "at least the number of workers (2)"),
        (["--workers=0"], "--workers=0: 0 is not an integer in the range [1, "),
        (["--input=images:/no/such/dir"], "is not a directory"),
        (["--input=video"], "--input must be 'random' or 'images:DIR'"),
        (["--protocol=http"], "--protocol=http: value should be one of <grpc|rest>"),
        (["--signature="], "--signature must not be empty"),
        (["--output_dir="], "--output_dir must not be empty"),
        (["--mode=open", "--rate=10", "--max_outstanding=0"], "--max_outstanding=0: 0 is not a positive integer"),
        (["--server_pids=tfs"], "--server_pids takes name=pid items"),
        (["--metrics_url=ftp://h/metrics"], "metrics URL must be http or https"),
    ],
)
def test_impossible_flags_are_refused_with_a_clear_message(args, message):
    assert message in LOAD.refusal("--models=m", *args)


def test_each_mode_with_its_flags_parses_and_leaves_nothing_to_the_next_command_line():
    with LOAD.parsed("--models=m", "--mode=open", "--rate=10", "--max_outstanding=4") as argv:
        assert argv == ["tfs_bench.load"]
        assert (flags.FLAGS.mode, flags.FLAGS.rate, flags.FLAGS.max_outstanding) == ("open", 10.0, 4)
    with LOAD.parsed("--models=m", "--mode=peak", "--qps_start=10", "--sla_ms=50", "--max_rate=20"):
        assert (flags.FLAGS.mode, flags.FLAGS.rate, flags.FLAGS.max_rate) == ("peak", None, 20.0)
    with LOAD.parsed("--models=m"):
        assert (flags.FLAGS.mode, flags.FLAGS.max_rate, flags.FLAGS.max_outstanding) == ("closed", None, None)
    assert "mode" not in flags.FLAGS  # back off the global FLAGS


def test_positional_arguments_are_refused():
    with pytest.raises(app.UsageError, match=r"unexpected arguments: \['extra'\]"):
        LOAD.run_main("--models=m", "extra")


def test_a_previous_run_is_not_overwritten_unless_asked(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    proc = load_cli("--models=m", f"--output_dir={tmp_path}")
    assert proc.returncode == 1
    assert f"output directory {tmp_path} holds a previous run; pass --overwrite to replace it" in proc.stderr


def test_a_directory_that_is_not_a_run_is_refused_even_with_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert "holds no load run" in LOAD.refusal("--models=m", f"--output_dir={tmp_path}", "--overwrite")
    assert (tmp_path / "notes.txt").exists()


def test_an_unreachable_target_is_reported_within_a_bound(tmp_path):
    target = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = load_cli(f"--target={target}", "--models=m", f"--output_dir={tmp_path / 'run'}", "--connect_timeout_s=3")
    assert proc.returncode == 1
    assert f"error: cannot reach target {target}" in proc.stderr
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_rest_to_the_grpc_port_and_grpc_to_the_rest_port_say_which_port_is_which(server, tmp_path):
    rest = load_cli(f"--target={server.grpc_target}", "--protocol=rest", f"--models={MODEL}",
                    f"--output_dir={tmp_path / 'rest'}")
    assert rest.returncode == 1 and "Traceback" not in rest.stderr
    assert rest.stderr.strip().splitlines()[-1] == (
        f"error: {server.grpc_target} does not answer HTTP/1.1 (no status line came back): a gRPC port? "
        "--protocol=rest needs the server's REST port (TF Serving's --rest_api_port); for its gRPC --port use "
        "--protocol=grpc"
    )
    grpc_ = load_cli(f"--target={server.rest_address}", f"--models={MODEL}", "--connect_timeout_s=2",
                     f"--output_dir={tmp_path / 'grpc'}")
    assert grpc_.returncode == 1 and "Traceback" not in grpc_.stderr
    assert grpc_.stderr.strip().splitlines()[-1] == (
        f"error: no gRPC connection to {server.rest_address} within 2 s: it answers HTTP/1.1, so it is likely a "
        "REST port (TF Serving's --rest_api_port); use --protocol=rest for it, or the server's gRPC --port"
    )


@pytest.mark.slow
def test_an_unknown_model_is_named_with_the_servers_not_found(server, tmp_path):
    proc = load_cli(f"--target={server.grpc_target}", "--models=no_such_model", f"--output_dir={tmp_path / 'run'}")
    assert proc.returncode == 1
    assert (
        f"error: model 'no_such_model' is not served at {server.grpc_target}: NOT_FOUND: "
        "Servable not found for request: Latest(no_such_model)"
    ) in proc.stderr


@pytest.mark.slow
def test_open_mode_writes_records_windows_and_summary_and_prints_progress(server, tmp_path):
    out = tmp_path / "run"
    proc = load_cli(
        f"--target={server.grpc_target}", f"--models={MODEL}", "--mode=open", "--rate=60",
        "--distribution=constant", "--sla_ms=500", f"--output_dir={out}", *QUICK_FLAGS,
    )
    assert proc.returncode == 0, proc.stderr

    summary = run_summary(out)
    windows = (out / "windows.jsonl").read_text().splitlines()
    result = summary["result"]
    assert len(windows) == len(result["windows"]) >= 3
    assert [json.loads(w)["index"] for w in windows] == list(range(len(windows)))
    records = run_records(out)
    assert len(records) == summary["workers"][0]["rows"] > 0
    assert sorted(p.name for p in out.iterdir()) == [
        "records-w0.csv", "run.json", "summary.json", "windows.jsonl", "worker-0.log"
    ]
    invocation = json.loads((out / "run.json").read_text())["invocation"]
    assert "--rate=60.0" in invocation["flagfile"].splitlines()

    lines = proc.stdout.splitlines()
    progress = [line for line in lines if line.startswith("[open-60rps] window ")]
    assert len(progress) == len(windows)
    assert "offered 60.0 achieved" in progress[0] and "generator cpu" in progress[0]
    assert any(line.startswith(f"open-60rps: {result['verdict']['valid'] and 'VALID' or 'INVALID'}") for line in lines)
    assert any(line.startswith(f"  {MODEL}  ") for line in lines)
    assert "SLA p95 <= 500 ms" in proc.stdout and lines[-1] == f"results: {out}"

    again = load_cli(f"--target={server.grpc_target}", f"--models={MODEL}", f"--output_dir={out}")
    assert again.returncode == 1 and "pass --overwrite" in again.stderr


@pytest.mark.slow
def test_closed_mode_over_rest_sweeps_the_concurrency_levels(server, tmp_path):
    out = tmp_path / "sweep"
    proc = load_cli(
        f"--target={server.rest_address}", "--protocol=rest", f"--models={MODEL}", "--concurrency=1,2",
        f"--output_dir={out}", *QUICK_FLAGS,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout

    summary = run_summary(out)
    assert summary["kind"] == "sweep" and measured_dirs(out) == ["concurrency-1", "concurrency-2"]
    assert all(run_records(out / f"concurrency-{n}") for n in (1, 2))
    sweep = proc.stdout.split("concurrency sweep:\n")[1].splitlines()
    assert [line.split(":")[0] for line in sweep[:2]] == ["  concurrency-1", "  concurrency-2"]


@pytest.mark.slow
def test_ramp_mode_adds_qps_delta_per_pass(server, tmp_path):
    out = tmp_path / "ramp"
    proc = load_cli(
        f"--target={server.grpc_target}", f"--models={MODEL}", "--mode=ramp",
        "--qps_start=100", "--qps_delta=100", "--sla_ms=2000", "--distribution=constant", "--ramp_patience=1",
        "--ramp_max_passes=2", f"--output_dir={out}", *QUICK_FLAGS,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout

    summary = run_summary(out)
    assert summary["kind"] == "ramp"
    assert [p["rate_rps"] for p in summary["ramp"]["passes"]] == [100.0, 200.0]
    assert measured_dirs(out) == ["probe-00-100rps", "probe-01-200rps"]
    assert all((out / r["dir"] / "records-w0.csv").exists() for r in summary["runs"])
    assert "PERSEUS ramp: best pass at" in proc.stdout


@pytest.mark.slow
def test_peak_mode_probes_up_to_the_cap(server, tmp_path):
    out = tmp_path / "peak"
    proc = load_cli(
        f"--target={server.grpc_target}", f"--models={MODEL}", "--mode=peak",
        "--qps_start=100", "--max_rate=200", "--sla_ms=2000", "--distribution=constant", f"--output_dir={out}",
        *QUICK_FLAGS,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout

    summary = run_summary(out)
    assert summary["kind"] == "peak" and summary["peak"]["peak_rps"] == 200.0
    assert [p["rate_rps"] for p in summary["peak"]["probes"]] == [100.0, 200.0]
    assert "peak under SLA (p95 <= 2000 ms): 200 rps offered" in proc.stdout


# Windows that never settle, so each level runs its 6 windows (3 s) and a signal lands inside one.
UNSETTLED = ("--window_s=0.5", "--window_min_requests=5", "--warmup_s=0.3", "--max_windows=6",
             "--stability_tolerance=0.001", "--min_duration_s=1", "--min_requests=10")


@pytest.mark.slow
def test_a_sweep_interrupted_by_ctrl_c_resumes_without_measuring_its_finished_levels_again(server, tmp_path):
    out = tmp_path / "sweep"
    # No re-measurement of a level the host spoiled: this test is about --resume, and a retry would add a run.
    flags = (f"--target={server.grpc_target}", f"--models={MODEL}", "--concurrency=1,2", f"--output_dir={out}",
             "--client_retries=0", *UNSETTLED)
    first = subprocess.Popen([sys.executable, "-m", "tfs_bench.load", *flags], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=run_env(), cwd=REPO_ROOT, start_new_session=True,
                             preexec_fn=as_in_a_terminal)
    try:
        poll_until(lambda: (out / "concurrency-2" / "windows.jsonl").is_file(), 60, "the second level's first window",
                   lambda: f" (exit {first.poll()})")
        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C in the terminal
        _, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, stderr
    assert f"continue with the same flags and --resume --output_dir={out}" in stderr
    before = run_summary(out)
    assert [r["label"] for r in before["runs"]] == ["concurrency-1"] and before.get("finished_at") is None
    assert (out / "concurrency-2" / "failure.json").is_file()
    level_1 = (out / "concurrency-1" / "summary.json").read_text()

    changed = load_cli(*flags, "--resume", "--concurrency=1,4")
    assert changed.returncode == 1
    assert "--resume continues a run with the settings it started with; these differ: settings.levels: was [1, 2], now [1, 4]" in changed.stderr

    resumed = load_cli(*flags, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[concurrency-1] measured before this --resume; read back:" in resumed.stdout
    assert "[concurrency-1] " not in resumed.stdout.replace("[concurrency-1] measured before", "")  # no window of it
    after = run_summary(out)
    assert [r["label"] for r in after["runs"]] == ["concurrency-1", "concurrency-2"] and after["finished_at"]
    assert (out / "concurrency-1" / "summary.json").read_text() == level_1  # not measured again
    assert (out / "concurrency-2" / "summary.json").is_file()
    assert (out / "concurrency-2.interrupted-1" / "failure.json").is_file()  # the stopped level, kept aside
    assert after["started_at"] == before["started_at"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--resume", "--overwrite"], "--resume continues the run in --output_dir and --overwrite replaces it: give one"),
        (["--resume"], "--resume needs --output_dir: the directory of the run to continue"),
    ],
)
def test_resume_flags_that_cannot_work_are_refused(args, message):
    assert message in LOAD.refusal("--models=m", *args)


def test_resume_of_a_directory_without_a_run_says_so(tmp_path):
    proc = load_cli("--target=127.0.0.1:1", f"--models={MODEL}", "--resume", f"--output_dir={tmp_path / 'none'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --resume: {tmp_path / 'none'} holds no load run to continue (no run.json)")
