"""The load generator against a server that dies (SIGKILL) or hangs (SIGSTOP) mid-measurement.

Real subprocesses and real signals (bench/server_faults.py runs the scenarios and prints the
figures docs/reliability.md quotes): an embedded server, `python -m tfs_bench.load` with two
worker processes, and the run directory it leaves.
"""

import pytest

from bench import server_faults
from conftest import REPO_ROOT
from conftest import run_env
from tfs_bench.load import run_files

REQUEST_TIMEOUT_S = 3.0


@pytest.mark.slow
def test_a_killed_server_fails_the_measurement_within_the_deadline_and_keeps_its_windows(tmp_path):
    with server_faults.start_server(tmp_path) as server:
        got = server_faults.kill_scenario(server, tmp_path / "run", REQUEST_TIMEOUT_S, env=run_env(), cwd=REPO_ROOT)

    assert got["exit_status"] == 1 and not got["traceback"], got
    assert got["error"].startswith("error: the server stopped answering: all ")
    assert "ended UNAVAILABLE" in got["error"]
    assert f"; stopped after {got['windows_kept']} window(s), which are kept (" in got["error"]
    assert got["error"].endswith(" of them ended after the first UNAVAILABLE)")
    assert got["noticed_after_s"] < REQUEST_TIMEOUT_S + 10
    assert got["workers"] == 2 and got["workers_left"] == 0  # no orphans
    failure = got["failure"]
    assert failure["ended"] == run_files.FAILED and failure["windows"] == got["windows_kept"] >= 2
    assert failure["reason"] == got["error"].removeprefix("error: ")
    assert not got["summary_written"]
    # Closed-loop slots back off after UNAVAILABLE (1 ms doubling to 100 ms) instead of spinning:
    # 2 slots over the ~3 s deadline send about 70 (a loop without the pause sent ~19,000/s).
    assert 0 < got["unavailable_records"] < 300, got
    assert got["not_ok_before_the_kill"] == 0


@pytest.mark.slow
def test_a_hung_server_times_requests_out_and_the_run_recovers_when_it_resumes(tmp_path):
    with server_faults.start_server(tmp_path) as server:
        got = server_faults.hang_scenario(server, tmp_path / "run", REQUEST_TIMEOUT_S, hang_s=REQUEST_TIMEOUT_S + 2,
                                          env=run_env(), cwd=REPO_ROOT)

    assert got["exit_status"] == 0 and not got["traceback"], got
    assert got["timed_out"] >= 2  # each slot's request in flight, at least
    # Each timed-out request took its whole deadline, no more.
    assert all(REQUEST_TIMEOUT_S * 0.9 <= s < REQUEST_TIMEOUT_S + 2 for s in got["timed_out_took_s"]), got
    assert got["first_ok_after_resume_s"] is not None and got["first_ok_after_resume_s"] < 2
    assert got["not_ok_after_the_last_timeout"] == 0  # served normally once resumed
    assert got["windows"] == 12 and got["summary_written"]


@pytest.mark.slow
def test_ctrl_c_keeps_the_windows_marks_the_run_interrupted_and_exits_130_without_a_traceback(tmp_path):
    with server_faults.start_server(tmp_path) as server:
        got = server_faults.interrupt_scenario(server, tmp_path / "run", REQUEST_TIMEOUT_S, env=run_env(), cwd=REPO_ROOT)

    assert got["exit_status"] == 130 and not got["traceback"], got
    assert got["last_line"].startswith(f"interrupted: every window measured so far is kept in {tmp_path / 'run'}")
    failure = got["failure"]
    assert failure["ended"] == run_files.INTERRUPTED and failure["reason"] == "interrupted"
    assert failure["windows"] == got["windows_kept"] >= 2 and not got["summary_written"]
    assert got["records_readable"] > 0 and got["exited_after_s"] < 15


@pytest.mark.slow
def test_kill_9_of_the_generator_leaves_no_worker_behind_and_files_that_read_back(tmp_path):
    with server_faults.start_server(tmp_path) as server:
        got = server_faults.parent_kill_scenario(server, tmp_path / "run", REQUEST_TIMEOUT_S, env=run_env(), cwd=REPO_ROOT)

    assert got["workers"] == 2 and got["workers_left"] == 0, got
    assert got["worker_log_tracebacks"] == 0  # BrokenPipeError tracebacks before
    assert got["windows_readable"] >= 2 and got["records_readable"] > 0 and not got["summary_written"]
