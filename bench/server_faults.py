"""A server that dies or hangs under load, and what the load generator makes of it.

  python -m bench.server_faults [--request_timeout_s=3] [--output=FILE.json]

Two scenarios, each against a fresh embedded server (half_plus_two), driven by
`python -m tfs_bench.load` in closed loop with 2 workers x 1 slot, and real signals:
- kill: SIGKILL of the server after two windows. Printed: how long the generator took to notice,
  its exit status and message, the windows kept, the UNAVAILABLE records sent meanwhile (the
  slots back off instead of spinning) and whether any worker outlived the run.
- hang: SIGSTOP of the server for --hang_s after two windows, then SIGCONT. Printed: the requests
  that timed out and how long each took, and how soon after SIGCONT the first request succeeded.
And two faults of the generator itself, against a healthy server:
- interrupt: SIGINT to the generator's process group after two windows (Ctrl-C in a terminal).
  Printed: exit status, its last line, the failure.json marker and the windows kept.
- parent_kill: SIGKILL of the generator's parent process after two windows. Printed: how soon its
  workers exit, whether their logs hold a traceback, and whether the files it left read back.
tests/load/test_server_faults.py runs each and checks each figure against its bound.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from absl import app
from absl import flags

from tfs_bench.export import known_answer
from tfs_bench.launch import launchers
from tfs_bench.load import records as records_lib
from tfs_bench.load import run_files


RUN = "concurrency-2"  # closed mode's one sweep level: its run directory
_POLL_S = 0.05
# Windows that never settle (tolerance 0.1%), so the run is still measuring when the fault comes.
_WINDOWS = ("--window_s=0.5", "--window_min_requests=5", "--warmup_s=0.3", "--stability_tolerance=0.001",
            "--min_duration_s=1", "--min_requests=10")


def start_server(work_dir: Path) -> launchers.RunningServer:
    base = known_answer.write_models(str(work_dir / "models"))
    spec = launchers.EmbeddedSpec(
        (f"--model_name={known_answer.MODEL_NAME}", f"--model_base_path={base}"),
        (known_answer.MODEL_NAME,), str(work_dir), rest=False,
    )
    return launchers.launch(spec)


def as_in_a_terminal() -> None:
    """Run in a child before it starts: SIGINT at its default, as for a terminal's foreground job,
    even when this process was started with it ignored (a script's background job is)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_load(server: launchers.RunningServer, out: Path, request_timeout_s: float, max_windows: int,
               env: dict | None = None, cwd: str | None = None) -> subprocess.Popen:
    # Its own session, so that a signal can go to its whole process group as a terminal's would.
    argv = [sys.executable, "-m", "tfs_bench.load", f"--target={server.grpc_target}",
            f"--models={known_answer.MODEL_NAME}", f"--output_dir={out}", f"--request_timeout_s={request_timeout_s}",
            "--workers=2", "--concurrency=2", f"--max_windows={max_windows}", *_WINDOWS]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                            start_new_session=True, preexec_fn=as_in_a_terminal)


def _windows_written(out: Path) -> int:
    path = out / RUN / run_files.WINDOWS_FILE
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for_windows(load: subprocess.Popen, out: Path, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while _windows_written(out) < count:
        if load.poll() is not None:
            raise RuntimeError(f"the load run ended early ({load.returncode}): {load.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} windows not written within {timeout_s} s")
        time.sleep(_POLL_S)  # pacing of a probe of a file


def records_of(run_dir: Path) -> list[records_lib.RequestRecord]:
    return records_lib.read_records(*sorted(run_dir.glob("records-w*.csv")))


def kill_scenario(server: launchers.RunningServer, out: Path, request_timeout_s: float, **popen) -> dict:
    load = start_load(server, out, request_timeout_s, max_windows=60, **popen)
    try:
        wait_for_windows(load, out, 2)
        workers = psutil.Process(load.pid).children(recursive=True)
        os.kill(server.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = load.communicate(timeout=request_timeout_s + 60)
        noticed_s = time.monotonic() - killed_at
    finally:
        if load.poll() is None:
            load.kill()
    run = out / RUN
    records = records_of(run)
    unavailable = [r for r in records if r.status_code == "UNAVAILABLE"]
    first_failure_ns = min((r.done_ns for r in unavailable), default=None)
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    return {
        "exit_status": load.returncode,
        "error": errors[-1] if errors else None,
        "traceback": "Traceback" in stderr,
        "noticed_after_s": round(noticed_s, 2),
        "windows_kept": len(run_files.read_windows(run)),
        "failure": run_files.read_failure(run).to_json() if (run / run_files.FAILURE_FILE).exists() else None,
        "summary_written": (run / run_files.SUMMARY_FILE).exists(),
        "workers": len(workers),
        "workers_left": sum(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers),
        "unavailable_records": len(unavailable),
        "not_ok_before_the_kill": sum(r.status_code != "OK" for r in records
                                      if first_failure_ns is None or r.done_ns < first_failure_ns),
    }


def hang_scenario(server: launchers.RunningServer, out: Path, request_timeout_s: float, hang_s: float,
                  **popen) -> dict:
    load = start_load(server, out, request_timeout_s, max_windows=12, **popen)
    try:
        wait_for_windows(load, out, 2)
        os.kill(server.pid, signal.SIGSTOP)
        time.sleep(hang_s)  # the fault's duration, not a synchronisation
        os.kill(server.pid, signal.SIGCONT)
        resumed_ns = time.perf_counter_ns()  # the records' clock (same host, same clock)
        _, stderr = load.communicate(timeout=120)
    finally:
        if load.poll() is None:
            load.kill()
    run = out / RUN
    records = records_of(run)
    timed_out = [r for r in records if r.status_code == "DEADLINE_EXCEEDED"]
    ok_after = [r.done_ns for r in records if r.status_code == "OK" and r.done_ns > resumed_ns]
    last_timeout_ns = max((r.done_ns for r in timed_out), default=0)
    return {
        "exit_status": load.returncode,
        "traceback": "Traceback" in stderr,
        "timed_out": len(timed_out),
        "timed_out_took_s": sorted({round((r.done_ns - r.sent_ns) / 1e9, 2) for r in timed_out}),
        "first_ok_after_resume_s": round((min(ok_after) - resumed_ns) / 1e9, 3) if ok_after else None,
        "not_ok_after_the_last_timeout": sum(r.status_code != "OK" for r in records if r.done_ns > last_timeout_ns),
        "windows": len(run_files.read_windows(run)),
        "summary_written": (run / run_files.SUMMARY_FILE).exists(),
    }


def interrupt_scenario(server: launchers.RunningServer, out: Path, request_timeout_s: float, **popen) -> dict:
    load = start_load(server, out, request_timeout_s, max_windows=60, **popen)
    try:
        wait_for_windows(load, out, 2)
        os.killpg(load.pid, signal.SIGINT)
        interrupted_at = time.monotonic()
        _, stderr = load.communicate(timeout=60)
        exited_s = time.monotonic() - interrupted_at
    finally:
        if load.poll() is None:
            load.kill()
    run = out / RUN
    lines = [line for line in stderr.splitlines() if line.strip()]
    return {
        "exit_status": load.returncode,
        "last_line": lines[-1] if lines else None,
        "traceback": "Traceback" in stderr,
        "exited_after_s": round(exited_s, 2),
        "windows_kept": len(run_files.read_windows(run)),
        "failure": run_files.read_failure(run).to_json() if (run / run_files.FAILURE_FILE).exists() else None,
        "summary_written": (run / run_files.SUMMARY_FILE).exists(),
        "records_readable": len(records_of(run)),
    }


def parent_kill_scenario(server: launchers.RunningServer, out: Path, request_timeout_s: float, **popen) -> dict:
    load = start_load(server, out, request_timeout_s, max_windows=60, **popen)
    try:
        wait_for_windows(load, out, 2)
        workers = psutil.Process(load.pid).children(recursive=True)
        load.kill()
        killed_at = time.monotonic()
        load.communicate(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=30)
        exited_s = time.monotonic() - killed_at
    finally:
        if load.poll() is None:
            load.kill()
    run = out / RUN
    logs = [p.read_text() for p in sorted(run.glob("worker-*.log"))]
    return {
        "workers": len(workers),
        "workers_left": len(alive),
        "workers_exited_after_s": round(exited_s, 2),
        "worker_log_tracebacks": sum("Traceback" in log for log in logs),
        "windows_readable": len(run_files.read_windows(run)),
        "records_readable": len(records_of(run)),
        "summary_written": (run / run_files.SUMMARY_FILE).exists(),
    }


def _define_flags():
    # Defined only when run as a script: the tests import the scenarios beside other binaries' flags.
    flags.DEFINE_float("request_timeout_s", 3.0, "The generator's request deadline.")
    flags.DEFINE_float("hang_s", 5.0, "How long the server stays stopped in the hang scenario.")
    flags.DEFINE_string("output", None, "Also write the figures here as JSON.")


def main(argv):
    del argv
    figures = {}
    timeout_s = flags.FLAGS.request_timeout_s
    scenarios = {
        "kill": lambda server, out: kill_scenario(server, out, timeout_s),
        "hang": lambda server, out: hang_scenario(server, out, timeout_s, flags.FLAGS.hang_s),
        "interrupt": lambda server, out: interrupt_scenario(server, out, timeout_s),
        "parent_kill": lambda server, out: parent_kill_scenario(server, out, timeout_s),
    }
    for name, scenario in scenarios.items():
        with tempfile.TemporaryDirectory(prefix=f"tfs_bench_faults_{name}_") as tmp:
            with start_server(Path(tmp)) as server:
                figures[name] = scenario(server, Path(tmp) / "run")
        print(json.dumps({name: figures[name]}, indent=2), flush=True)
    if flags.FLAGS.output:
        Path(flags.FLAGS.output).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    _define_flags()
    sys.exit(app.run(main))
