"""`python -m tfs_bench.load --mode=mlperf`: MLPerf LoadGen drives our transport against a real server.

LoadGen's own verdict depends on the machine (its early-stopping rule wants hundreds of queries
under the bound), so the tests check that the summary adopts whatever LoadGen wrote in its own
summary file, that every query LoadGen counted is one of our records, and that the suite's
windows and verdict cover the same requests.
"""

import re
import subprocess
import sys

import pytest

from binary_flags import BinaryFlags
from conftest import REPO_ROOT
from conftest import run_env
from load_support import MODEL
from load_support import max_in_flight
from load_support import run_records
from load_support import run_summary
from tfs_bench.load import __main__ as load_binary
from tfs_bench.load.run_files import read_windows
from tfs_bench.load.windows import records_between


@pytest.fixture
def server(two_name_server):
    """The load tests' shared server (tests/conftest.py)."""
    return two_name_server


LOAD = BinaryFlags(load_binary)
SHORT = ("--window_s=0.5", "--warmup_s=0.3", "--min_duration_s=1.5", "--min_requests=20")


def mlperf_cli(*args) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "tfs_bench.load", "--mode=mlperf", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=run_env(), cwd=REPO_ROOT, timeout=180)


def loadgen_summary_line(run_dir, name: str) -> str:
    text = (run_dir / "mlperf" / "mlperf_log_summary.txt").read_text()
    return re.search(rf"^{re.escape(name)}\s*: (.*)$", text, re.M).group(1).strip()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_the_server_scenario_is_judged_by_loadgen_and_by_the_suite_over_the_same_requests(server, tmp_path, protocol):
    out = tmp_path / "server"
    target = server.grpc_target if protocol == "grpc" else server.rest_address
    proc = mlperf_cli(f"--target={target}", f"--protocol={protocol}", f"--models={MODEL}", "--mlperf_scenario=Server",
                      "--rate=150", "--sla_ms=100", f"--output_dir={out}", *SHORT)
    assert proc.returncode == 0, proc.stderr[-3000:]

    summary = run_summary(out)
    loadgen = summary["loadgen"]
    assert loadgen["scenario"] == "Server" and loadgen["log_dir"] == "mlperf"
    assert loadgen["validity"] == loadgen_summary_line(out, "Result is")  # adopted as LoadGen wrote it
    ours = "VALID" if summary["result"]["verdict"]["valid"] else "INVALID"
    assert f"MLPerf LoadGen (Server): {loadgen['validity']}; the suite: {ours}" in proc.stdout
    assert loadgen["results"]["effective_target_qps"] == 150
    assert loadgen["results"]["effective_target_latency_ns"] == 100_000_000
    # LoadGen's minimum duration covers the suite's warm-up and three pooled windows.
    assert loadgen["results"]["effective_min_duration_ms"] == 1800
    # Every query LoadGen issued is one of our records, answered correctly.
    records = run_records(out)
    assert len(records) == loadgen["results"]["result_query_count"] == summary["workers"][0]["rows"]
    assert all(r.ok and r.response_bytes > 0 for r in records)
    completed = loadgen["results"]["result_completed_samples_per_sec"]
    assert completed == pytest.approx(float(loadgen_summary_line(out, "Completed samples per second")), abs=0.01)
    assert completed == pytest.approx(150, rel=0.2)
    # The suite's windows start after the warm-up, and each counts exactly the records done in it.
    windows = read_windows(out)
    assert len(windows) >= 3 and windows[0].start_ns == summary["warmup_end_ns"]
    assert summary["warmup_end_ns"] - summary["start_ns"] == 300_000_000
    for window in windows:
        assert window.aggregate.requests == len(records_between(records, window.start_ns, window.end_ns))
        assert window.aggregate.offered_rate_rps == 150.0
    assert summary["stop_reason"] == "loadgen" and summary["label"] == "mlperf-Server"
    assert (out / "mlperf" / "mlperf_log_detail.txt").is_file()


@pytest.mark.slow
def test_single_stream_sends_one_query_at_a_time(server, tmp_path):
    out = tmp_path / "single"
    proc = mlperf_cli(f"--target={server.grpc_target}", f"--models={MODEL}", "--mlperf_scenario=SingleStream",
                      f"--output_dir={out}", *SHORT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = run_records(out)
    assert max_in_flight(records) == 1
    summary = run_summary(out)
    assert len(records) == summary["loadgen"]["results"]["result_query_count"]
    assert summary["result"]["aggregate"]["offered_rate_rps"] is None  # a closed loop of one


@pytest.mark.parametrize("args, message", [
    (["--mode=mlperf", "--rate=10"], "--mlperf_scenario=Server needs --sla_ms"),
    (["--mode=mlperf", "--mlperf_scenario=Offline"], "--mlperf_scenario=Offline needs --rate"),
    (["--mode=mlperf", "--mlperf_scenario=Offline", "--rate=10", "--sla_ms=5"],
     "--sla_ms does not apply to --mlperf_scenario=Offline"),
    (["--mode=mlperf", "--mlperf_scenario=SingleStream", "--workers=2"],
     "--mode=mlperf runs LoadGen in this process: leave --workers at 1 and --ray_address out"),
    (["--mode=mlperf", "--mlperf_scenario=SingleStream", "--resume", "--output_dir=x"],
     "--resume does not apply to --mode=mlperf: a LoadGen test runs whole (start it again)"),
    (["--mode=open", "--rate=5", "--mlperf_scenario=Server"],
     "--mlperf_scenario does not apply to --mode=open (only to --mode=mlperf)"),
    (["--mode=mlperf", "--mlperf_scenario=SingleStream", "--distribution=constant"],
     "--distribution does not apply to --mode=mlperf"),
])
def test_mlperf_flags_that_cannot_work_are_refused(args, message):
    assert message in LOAD.refusal("--models=m", *args)


def test_two_models_are_refused_before_anything_is_sent(server, tmp_path):
    proc = mlperf_cli(f"--target={server.grpc_target}", f"--models={MODEL},half_plus_two_b", "--mlperf_scenario=SingleStream",
                      f"--output_dir={tmp_path / 'two'}", *SHORT)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: --mode=mlperf measures one model; got 2 tenants"
    assert not (tmp_path / "two").exists()
