"""Load workers as Ray actors (`--ray_address`), on a real two-node Ray cluster started on this machine.

The cluster is Ray's own multi-node test cluster: two raylets, each a node with its own
processes, so actors placed on "different nodes" really are separate. Every run goes through
the CLI in a subprocess (the test process never joins the cluster). Worker k lands on node
k mod 2; one machine means one clock, so each measured offset must lie within its stated
uncertainty of zero.
"""

import itertools
import os
import signal
import subprocess
import sys

import psutil
import pytest
from ray import cluster_utils

from conftest import REPO_ROOT
from conftest import run_env
from load_support import MODEL
from load_support import QUICK_FLAGS
from load_support import max_in_flight
from load_support import run_records
from load_support import run_summary
from server_support import poll_until
from tfs_bench.load.run_files import read_manifest
from tfs_bench.load.run_files import read_windows
from tfs_bench.load.schedule import tenant_seed
from tfs_bench.load.windows import records_between


@pytest.fixture
def server(two_name_server):
    """The load tests' shared server (tests/conftest.py)."""
    return two_name_server


CLI_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def cluster():
    cluster = cluster_utils.Cluster(
        initialize_head=True, connect=False, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def ray_load(cluster, *args, **popen):
    argv = [sys.executable, "-m", "tfs_bench.load", f"--ray_address={cluster.address}", "--ray_worker_cpus=0.5", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env(),
                            cwd=REPO_ROOT, **popen)


def finished(proc) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_clocks_within_uncertainty(workers):
    nodes = {w["node"] for w in workers}
    assert len(nodes) == 2, workers  # spread over both nodes
    for w in workers:
        assert 0 < w["clock_uncertainty_ns"] < 50_000_000
        assert abs(w["clock_offset_ns"]) <= w["clock_uncertainty_ns"], w  # one machine: one clock


@pytest.mark.slow
def test_open_loop_workers_on_two_nodes_send_exactly_the_single_stream_schedule(cluster, server, tmp_path):
    out = tmp_path / "open"
    proc = finished(ray_load(
        cluster, f"--target={server.grpc_target}", f"--models={MODEL}", "--mode=open", "--rate=150",
        "--distribution=poisson", "--seed=5", "--workers=3", f"--output_dir={out}", *QUICK_FLAGS,
    ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 worker(s) on the Ray cluster at" in proc.stdout
    assert "[open-150rps] worker 2 on node " in proc.stdout

    summary = run_summary(out)
    workers = summary["workers"]
    assert_clocks_within_uncertainty(workers)
    assert workers[0]["node"] == workers[2]["node"] != workers[1]["node"]  # worker k on node k mod 2
    records = run_records(out)
    assert [w["rows"] for w in workers] == [sum(r.worker == k for r in records) for k in range(3)]
    # The union of the shares is the single-stream schedule, arrival for arrival, on the driver's clock:
    # each worker sent every third arrival up to when it was stopped.
    (tenant,) = read_manifest(out).config.mix.tenants
    assert (tenant.rate_rps, tenant.arrival, tenant.seed) == (150.0, "poisson", tenant_seed(5, MODEL))
    schedule = tenant.schedule()
    own = {k: sorted(r.intended_ns - summary["start_ns"] for r in records if r.worker == k) for k in range(3)}
    for k, offsets in own.items():
        assert offsets == list(itertools.islice(schedule.worker_offsets_ns(k, 3), len(offsets)))
    until = min(offsets[-1] for offsets in own.values())  # before every worker stopped
    union = sorted(o for offsets in own.values() for o in offsets if o <= until)
    assert union == list(itertools.takewhile(lambda o: o <= until, schedule.offsets_ns()))
    # Windows close over every worker's records, exactly as on one machine.
    windows = read_windows(out)
    assert all(len(w.generator) == 3 and not w.lost_workers for w in windows)
    for window in windows:
        assert window.aggregate.requests == sum(r.ok for r in records_between(records, window.start_ns, window.end_ns))
    assert summary["result"]["aggregate"]["achieved_rate_rps"] == pytest.approx(150, rel=0.25)


@pytest.mark.slow
def test_closed_loop_concurrency_is_split_over_the_ray_workers(cluster, server, tmp_path):
    out = tmp_path / "closed"
    proc = finished(ray_load(
        cluster, f"--target={server.grpc_target}", f"--models={MODEL}", "--mode=closed", "--concurrency=4",
        "--workers=2", "--client_retries=0", f"--output_dir={out}", *QUICK_FLAGS,
    ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    level = out / "concurrency-4"
    assert_clocks_within_uncertainty(run_summary(level)["workers"])
    records = run_records(level)
    assert {r.worker for r in records} == {0, 1}
    assert max_in_flight([r for r in records if r.worker == 0]) == 2
    assert max_in_flight([r for r in records if r.worker == 1]) == 2
    assert max_in_flight(records) <= 4


# Windows that never settle, so the run lasts its 8 windows (4 s) and the loss lands inside it.
UNSETTLED = ("--window_s=0.5", "--window_min_requests=5", "--warmup_s=0.3", "--max_windows=8",
             "--stability_tolerance=0.001", "--min_duration_s=1", "--min_requests=10")


def worker_actors(cluster_address: str) -> list[psutil.Process]:
    """The processes of this cluster's load-worker actors (Ray names them after the actor's class)."""
    return [p for p in psutil.process_iter(["cmdline"]) if any("ray::WorkerHost" in a for a in p.info["cmdline"] or ())]


def load_workers() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and "tfs_bench.load.worker" in p.info["cmdline"]]


@pytest.mark.slow
def test_a_lost_worker_is_marked_in_its_windows_and_nothing_else_is_lost(cluster, server, tmp_path):
    out = tmp_path / "lost"
    proc = ray_load(cluster, f"--target={server.grpc_target}", f"--models={MODEL}", "--mode=open", "--rate=100",
                    "--distribution=constant", "--workers=2", f"--output_dir={out}", *UNSETTLED)
    try:
        poll_until(lambda: (out / "windows.jsonl").is_file() and len((out / "windows.jsonl").read_text().splitlines()) >= 2,
                   60, "two windows", lambda: f" (exit {proc.poll()})")
        actors = worker_actors(cluster.address)
        assert len(actors) == 2, actors
        os.kill(actors[1].pid, signal.SIGKILL)  # the actor, as when its node goes away
        result = finished(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result.returncode == 0, result.stderr[-3000:]

    summary = run_summary(out)
    lost = [w for w in summary["workers"] if "lost" in w]
    assert len(lost) == 1 and "Ray actor" in lost[0]["lost"], summary["workers"]
    gone = lost[0]["worker"]
    kept = summary["workers"][1 - gone]
    records = run_records(out)
    assert lost[0]["rows"] == sum(r.worker == gone for r in records) > 0  # what it sent before the loss is kept
    assert kept["rows"] == sum(r.worker == 1 - gone for r in records)
    # Windows before the loss are whole; every window after it names the lost worker.
    marks = [w.lost_workers for w in read_windows(out)]
    first = marks.index((gone,))
    assert first >= 1 and all(m == () for m in marks[:first]) and all(m == (gone,) for m in marks[first:])
    assert len(marks) == 8  # the run went on to its last window
    reasons = {r["code"]: r["message"] for r in summary["result"]["verdict"]["reasons"]}
    assert f"load worker(s) {gone} were lost" in reasons["workers_lost"]
    # The other worker kept the schedule to the end; nothing of it is missing.
    survivor = sorted(r.intended_ns - summary["start_ns"] for r in records if r.worker == 1 - gone)
    (tenant,) = read_manifest(out).config.mix.tenants
    schedule = tenant.schedule()
    assert survivor == list(itertools.islice(schedule.worker_offsets_ns(1 - gone, 2), len(survivor)))
    assert max(r.done_ns for r in records if r.worker == 1 - gone) > read_windows(out)[-1].start_ns
    poll_until(lambda: not load_workers(), 30, "the load worker processes to exit",
               lambda: f" (still running: {[p.pid for p in load_workers()]})")


def test_a_ray_address_that_cannot_be_reached_is_one_clear_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tfs_bench.load", "--ray_address=127.0.0.1:1", f"--models={MODEL}",
         "--target=127.0.0.1:1", "--connect_timeout_s=1", f"--output_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, env=run_env(), cwd=REPO_ROOT, timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "127.0.0.1:1" in last
    assert "Traceback" not in proc.stderr


def test_times_go_to_the_node_and_come_back_exactly():
    from tfs_bench.load import ray_workers
    from tfs_bench.load.records import RequestRecord
    from tfs_bench.load.worker_protocol import FlushedEvent, MarkCommand, MarkEvent, StartCommand, StopCommand
    from tfs_bench.load.worker_protocol import StoppedEvent

    offset = -7_000_123  # the node's clock is behind the driver's
    assert ray_workers.to_node(StartCommand(50_000_000), offset) == StartCommand(42_999_877)
    assert ray_workers.to_node(MarkCommand(60_000_000), offset) == MarkCommand(52_999_877)
    assert ray_workers.to_node(StopCommand(), offset) == StopCommand()
    mark = MarkEvent(52_999_877, 53_000_000, 10, 0.5, 0.1, None)
    assert ray_workers.from_node(mark, offset) == MarkEvent(60_000_000, 60_000_123, 10, 0.5, 0.1, None)
    assert ray_workers.from_node(FlushedEvent(1_000, 3), offset) == FlushedEvent(7_001_123, 3)
    assert ray_workers.from_node(StoppedEvent(1_000, 3, 0.5), offset) == StoppedEvent(7_001_123, 3, 0.5)
    sent = RequestRecord("m", "m", 100, 150, 900, 1, "OK", 8, 2)
    assert ray_workers.record_from_node(sent, offset) == RequestRecord("m", "m", 7_000_223, 7_000_273, 7_001_023, 1,
                                                                       "OK", 8, 2)
    dropped = RequestRecord("m", "m", 100, None, 100, 1, "DROPPED", 0, 2)
    assert ray_workers.record_from_node(dropped, offset).sent_ns is None
