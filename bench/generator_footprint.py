"""What the load generator costs before it sends anything: memory and start-up time.

  python -m bench.generator_footprint [--runs=3] [--output=FILE.json]

Against an embedded server (half_plus_two, gRPC), `python -m tfs_bench.load` is run as a user
would, each time as a fresh process, and measured from outside:
- start-up: `--models=no_such_model`, which fails on the server's NOT_FOUND as soon as the
  generator has started and asked for the model's metadata. Printed: the seconds from exec to
  exit and the process's peak RSS (VmHWM, sampled from /proc every 20 ms), median of --runs.
- run: a closed-loop run of three 0.5 s windows with 1 worker. Printed: wall seconds and the
  peak RSS of the parent and of its worker, median of --runs.
- whether the parent had TensorFlow mapped (libtensorflow in /proc/<pid>/maps while it ran).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from absl import app
from absl import flags

from bench.server_faults import start_server
from tfs_bench.export import known_answer

_RUN_FLAGS = ("--concurrency=1", "--window_s=0.5", "--window_min_requests=5", "--warmup_s=0.2", "--max_windows=3",
              "--stability_tolerance=0.5", "--min_duration_s=1", "--min_requests=5")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None  # the process has just exited


def _peak_rss_mib(pid: int) -> float | None:
    """VmHWM: the peak RSS of the process's own address space since its exec. (getrusage's
    ru_maxrss would also count the parent's pages at fork, here a parent that imported TensorFlow.)"""
    status = _read(f"/proc/{pid}/status")
    for line in (status or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def measure(argv: list[str], cwd: str | None = None) -> dict:
    """Runs argv to its end, sampling /proc every 20 ms: its wall time and exit status, the peak
    RSS of the process and of its largest child (its workers), and whether TensorFlow's library
    was mapped into it."""
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, cwd=cwd)
        parent_mib, child_mib, mapped = 0.0, 0.0, False
        while proc.poll() is None:
            parent_mib = max(parent_mib, _peak_rss_mib(proc.pid) or 0.0)
            mapped = mapped or "libtensorflow" in (_read(f"/proc/{proc.pid}/maps") or "")
            try:
                children = psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            for child in children:
                child_mib = max(child_mib, _peak_rss_mib(child.pid) or 0.0)
            time.sleep(0.02)  # pacing of a probe of /proc
        wall_s = time.perf_counter() - started
        stderr.seek(0)
        lines = stderr.read().decode(errors="replace").strip().splitlines()
    return {"wall_s": wall_s, "exit_status": proc.returncode, "peak_rss_mib": parent_mib,
            "worker_peak_rss_mib": child_mib, "tensorflow_mapped": mapped, "last_line": lines[-1] if lines else ""}


def main(argv):
    del argv
    runs = flags.FLAGS.runs
    load = [sys.executable, "-m", "tfs_bench.load"]
    with tempfile.TemporaryDirectory(prefix="tfs_bench_footprint_") as tmp:
        with start_server(Path(tmp)) as server:
            target = f"--target={server.grpc_target}"
            startups = [measure([*load, target, "--models=no_such_model", f"--output_dir={tmp}/s{i}"]) for i in range(runs)]
            full = [measure([*load, target, f"--models={known_answer.MODEL_NAME}", f"--output_dir={tmp}/r{i}",
                             *_RUN_FLAGS]) for i in range(runs)]
    for label, results in (("start-up to the first error", startups), ("one-window run", full)):
        if any(r["exit_status"] != (1 if results is startups else 0) for r in results):
            raise SystemExit(f"{label}: unexpected exit: {results}")
    figures = {
        "startup_s": statistics.median(r["wall_s"] for r in startups),
        "startup_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in startups),
        "startup_error": startups[0]["last_line"],
        "run_s": statistics.median(r["wall_s"] for r in full),
        "run_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in full),
        "run_worker_peak_rss_mib": statistics.median(r["worker_peak_rss_mib"] for r in full),
        "tensorflow_mapped": any(r["tensorflow_mapped"] for r in startups + full),
        "runs": runs,
    }
    print(f"start-up to the first error: {figures['startup_s']:.2f} s, peak RSS {figures['startup_peak_rss_mib']:.0f} MiB "
          f"({figures['startup_error']})")
    print(f"closed-loop gRPC run (3 windows of 0.5 s): {figures['run_s']:.2f} s, peak RSS of the parent "
          f"{figures['run_peak_rss_mib']:.0f} MiB, of its worker {figures['run_worker_peak_rss_mib']:.0f} MiB")
    print(f"TensorFlow loaded in the generator: {'yes' if figures['tensorflow_mapped'] else 'no'} "
          f"(median of {runs} runs each)")
    if flags.FLAGS.output:
        Path(flags.FLAGS.output).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    flags.DEFINE_integer("runs", 3, "Fresh generator processes per figure (the median is printed).", lower_bound=1)
    flags.DEFINE_string("output", None, "Also write the figures here as JSON.")
    sys.exit(app.run(main))
