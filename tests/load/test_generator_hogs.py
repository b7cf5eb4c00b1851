"""A load generator that really cannot keep time is caught, end to end, by the binary.

Two real faults, each against the real embedded server:
- saturated: a thread spinning inside each worker process (a sitecustomize on the workers'
  PYTHONPATH starts it) makes the generator CPU-bound. The run is INVALID client_saturated, and a
  sweep does not measure it again: more attempts cannot unload the generator's own process.
- starved: each worker process pins itself to one core at nice 19 (a sitecustomize again) beside
  a process that is busy on that core 20 ms out of every 40: the workers get the CPU they need,
  but late. The run is INVALID client_starved (not saturated: they use little CPU), the message
  gives their run-queue wait, and a search measures it again, once per allowed retry, before it
  gives up.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT
from conftest import run_env
from load_support import MODEL
from load_support import run_summary


@pytest.fixture
def server(two_name_server):
    """The load tests' shared server (tests/conftest.py)."""
    return two_name_server


# Short windows, as in the other binary tests, with enough requests per window at 20-40 rps.
HOG_FLAGS = (
    "--window_s=0.5",
    "--window_min_requests=5",
    "--warmup_s=0.3",
    "--max_windows=3",
    "--stability_tolerance=0.5",
    "--min_duration_s=1",
    "--min_requests=10",
)
SPINNING_WORKERS = '''
import sys
import threading

if "tfs_bench.load.worker" in sys.orig_argv:
    def _spin():
        while True:
            pass

    threading.Thread(target=_spin, name="cpu-hog", daemon=True).start()
'''


def load_cli(args, env) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "tfs_bench.load", *args, *HOG_FLAGS]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=180)


def reason_codes(run: dict) -> set[str]:
    return {r["code"] for r in run["result"]["verdict"]["reasons"]}


@pytest.mark.slow
def test_a_generator_busy_in_its_own_process_is_saturated_and_not_measured_again(server, tmp_path):
    env = site_dir(tmp_path, SPINNING_WORKERS)
    out = tmp_path / "sweep"
    proc = load_cli(
        [f"--target={server.grpc_target}", f"--models={MODEL}", "--concurrency=1", "--client_retries=2",
         f"--output_dir={out}"],
        env,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout

    runs = run_summary(out)["runs"]
    assert [r["dir"] for r in runs] == ["concurrency-1"], "a CPU-bound generator must not be measured again"
    assert "client_saturated" in reason_codes(runs[0])
    assert "INVALID: client_saturated: the load generator was CPU-bound" in proc.stdout
    assert "measuring again" not in proc.stdout


# Each worker pins itself to core 0 at nice 19 before it starts a thread (threads inherit both).
STARVED_WORKERS = '''
import os
import sys

if "tfs_bench.load.worker" in sys.orig_argv:
    os.sched_setaffinity(0, {0})
    os.nice(19)
'''
# Busy for 20 ms, idle for 20 ms, on core 0: the workers there get half the core, enough to keep
# up, but a timer that fires in a busy spell waits for it to end.
BURSTS = '''
import os
import time

os.sched_setaffinity(0, {0})
while True:
    end = time.perf_counter() + 0.02
    while time.perf_counter() < end:
        pass
    time.sleep(0.02)
'''


def site_dir(tmp_path, text: str):
    directory = tmp_path / "site"
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(textwrap.dedent(text))
    env = run_env()
    env["PYTHONPATH"] = os.pathsep.join([str(directory), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a second core for the server")
def test_a_generator_kept_off_its_core_is_starved_and_measured_again_before_the_search_gives_up(server, tmp_path):
    env = site_dir(tmp_path, STARVED_WORKERS)
    hog = subprocess.Popen([sys.executable, "-c", BURSTS])
    try:
        out = tmp_path / "peak"
        proc = load_cli(
            [f"--target={server.grpc_target}", f"--models={MODEL}", "--mode=peak", "--qps_start=20",
             "--sla_ms=5000", "--distribution=constant", "--generator_priority=normal", "--client_retries=1",
             f"--output_dir={out}"],
            env,
        )
    finally:
        hog.kill()
        hog.wait()
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert "peak search cannot start: the first probe at 20 requests/s failed" in proc.stderr

    runs = run_summary(out)["runs"]
    assert [(r["dir"], r["attempt"]) for r in runs] == [("probe-00-20rps", 1), ("probe-00-20rps-retry1", 2)]
    for run in runs:
        assert "client_starved" in reason_codes(run) and "client_saturated" not in reason_codes(run), reason_codes(run)
    assert "[probe-00-20rps] INVALID because of the host, not the server: measuring again as probe-00-20rps-retry1" in proc.stdout
    assert "waited up to" in proc.stdout  # the run-queue wait that says the host held the CPU
