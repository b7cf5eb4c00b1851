"""Shared by the load generator's tests: a known-answer server, short windows, and record checks."""

from __future__ import annotations

import json
from pathlib import Path

from server_support import start_embedded
from server_support import write_config
from tfs_bench.export import known_answer
from tfs_bench.launch.launchers import RunningServer
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.records import read_records
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.windows import WindowPolicy

MODEL = known_answer.MODEL_NAME
SECOND_NAME = "half_plus_two_b"  # the same SavedModel served under a second name
# Short windows keep each run to a few seconds; a loose stability tolerance keeps a busy CI box's
# noise from stretching runs (stability itself is tested in test_windows.py).
QUICK_POLICY = WindowPolicy(window_s=0.5, window_min_requests=10, warmup_s=0.3, max_windows=4, stability_tolerance=0.5)
QUICK_CRITERIA = ValidityCriteria(min_duration_s=1.5, min_requests=20)
QUICK_FLAGS = (
    "--window_s=0.5",
    "--window_min_requests=10",
    "--warmup_s=0.3",
    "--max_windows=4",
    "--stability_tolerance=0.5",
    "--min_duration_s=1.5",
    "--min_requests=20",
)


def start_two_name_server(known_answer_dir: Path, tmp: Path, *flags: str) -> RunningServer:
    """half_plus_two (latest version: y = 0.5x + 3) under two names, gRPC and REST."""
    base = known_answer_dir / MODEL
    config = write_config(
        tmp / "models.config",
        f"""model_config_list {{
  config {{ name: "{MODEL}" base_path: "{base}" model_platform: "tensorflow" }}
  config {{ name: "{SECOND_NAME}" base_path: "{base}" model_platform: "tensorflow" }}
}}""",
    )
    return start_embedded([f"--model_config_file={config}", *flags], tmp, [MODEL, SECOND_NAME])


def run_records(run_dir: Path) -> list[RequestRecord]:
    return read_records(*sorted(Path(run_dir).glob("records-w*.csv")))


def run_summary(run_dir: Path) -> dict:
    """summary.json as written, so tests also pin its field names (read_summary gives the records)."""
    return json.loads((Path(run_dir) / "summary.json").read_text())


def max_in_flight(records: list[RequestRecord], tenant: str | None = None) -> int:
    """The most requests of `tenant` (None: any) that were sent and not yet done at one time."""
    events = []
    for r in records:
        if not r.dropped and tenant in (None, r.tenant):
            events += [(r.sent_ns, 1), (r.done_ns, -1)]
    in_flight = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # a completion at t frees before a send at t
        in_flight += step
        peak = max(peak, in_flight)
    return peak


def measured_dirs(experiment_dir: Path) -> list[str]:
    """The directories of an experiment's measurements, one per sweep level or probe, in order.

    Checks how the repetitions of a run INVALID because of the host are laid out: attempt k + 1
    comes right after attempt k, in <dir>-retry<k>, and only when attempt k blamed the host
    (client_starved or late_sends without client_saturated).
    """
    dirs = []
    runs = run_summary(experiment_dir)["runs"]
    for previous, run in zip([None, *runs], runs):
        if run["attempt"] == 1:
            dirs.append(run["dir"])
            continue
        assert previous is not None and previous["attempt"] == run["attempt"] - 1, run["dir"]
        assert run["dir"] == f"{dirs[-1]}-retry{run['attempt'] - 1}"
        codes = {r["code"] for r in previous["result"]["verdict"]["reasons"]}
        assert codes & {"client_starved", "late_sends"} and "client_saturated" not in codes, (run["dir"], codes)
    return dirs
