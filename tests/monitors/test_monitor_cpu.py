"""The CPU sampler against real processes: a server-like tree whose child burns CPU and is reaped."""

import os
import selectors
import subprocess
import sys
import threading
import time

import pytest

from tfs_bench.monitors.cpu import CpuSampler, system_cpu_seconds

BURN_S = 0.3
# The child burns BURN_S of CPU (bounded by iterations too), then waits for a line on stdin so the
# test decides when it exits; the root reaps it, says so, and waits for stdin to close.
CHILD = f"""
import sys, time
for _ in range(10**9):
    if time.process_time() >= {BURN_S}:
        break
sys.stdin.readline()
"""
ROOT = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}])
print(child.pid, flush=True)
child.wait()
print("reaped", flush=True)
sys.stdin.read()
"""


def _readline(stream, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"no line within {timeout_s} s (got {data!r})")
            chunk = os.read(stream.fileno(), 1)
            if not chunk:
                raise AssertionError(f"stream closed (got {data!r})")
            data += chunk
    return data.decode().strip()


def _poll(sample, predicate, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while True:
        value = sample()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; last: {value}")
        pause.wait(0.01)


@pytest.fixture
def server_tree(python):
    root = subprocess.Popen([python, "-c", ROOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    try:
        child_pid = int(_readline(root.stdout))
        yield root, child_pid
    finally:
        if root.poll() is None:
            root.kill()
        root.wait(timeout=10)
        root.stdout.close()
        if not root.stdin.closed:
            root.stdin.close()


def test_tree_cpu_counts_live_children_then_reaped_ones(server_tree):
    root, child_pid = server_tree
    sampler = CpuSampler({"server": root.pid})

    first = sampler.sample().server("server")
    assert first.alive and first.pids[0] == root.pid and first.rss_bytes > 0

    busy = _poll(
        lambda: sampler.sample().server("server"), lambda p: child_pid in p.pids and p.cpu_s >= BURN_S
    )
    assert busy.cpu_s > first.cpu_s

    root.stdin.write(b"exit\n")  # the child reads it; the root is waiting for the child
    assert _readline(root.stdout) == "reaped"
    after = sampler.sample().server("server")
    assert child_pid not in after.pids
    assert after.cpu_s >= busy.cpu_s  # the reaped child's time stays in the tree

    root.stdin.close()
    gone = _poll(lambda: sampler.sample().server("server"), lambda p: not p.alive)  # zombie or reaped
    assert gone.pids == () and gone.cpu_s is None and gone.rss_bytes is None


def test_generator_counts_its_own_cpu_only(server_tree):
    root, _ = server_tree
    sampler = CpuSampler({"server": root.pid})
    before = sampler.sample()
    start = time.process_time()
    while time.process_time() - start < 0.2:
        pass
    after = sampler.sample()

    assert after.generator.pids == (os.getpid(),)
    assert root.pid not in after.generator.pids  # the servers the launcher started are not the generator
    assert after.generator.cpu_s - before.generator.cpu_s >= 0.2 - 0.02  # /proc counts 10 ms ticks
    assert after.generator.rss_bytes > 0


def test_generator_counts_the_worker_processes_it_selects_and_never_the_servers(server_tree):
    from tfs_bench.load.worker_pool import WORKER_MODULE
    from tfs_bench.load.resource_log import is_load_worker

    root, _ = server_tree
    # A worker-like child: the worker module's name on its command line, CPU burnt, then waiting.
    worker = subprocess.Popen([sys.executable, "-c", CHILD, WORKER_MODULE], stdin=subprocess.PIPE)
    try:
        sampler = CpuSampler({"server": root.pid}, generator_member=is_load_worker)
        alone = CpuSampler({"server": root.pid})
        burnt = _poll(sampler.sample, lambda s: s.generator.cpu_s is not None and worker.pid in s.generator.pids
                      and s.generator.cpu_s - alone.sample().generator.cpu_s >= BURN_S - 0.05)
        assert burnt.generator.pids == (os.getpid(), worker.pid)
        assert root.pid not in burnt.generator.pids and burnt.server("server").pids[0] == root.pid
        assert alone.sample().generator.pids == (os.getpid(),)
    finally:
        worker.stdin.close()
        worker.wait(timeout=10)


def test_system_counters_and_timestamps():
    ticks = iter([1_000, 3_000])
    sample = CpuSampler({}, clock=lambda: next(ticks)).sample()

    assert sample.t_ns == 2_000  # the midpoint of the reads
    assert sample.servers == ()
    assert 0 < sample.system_busy_s <= sample.system_total_s
    assert sample.logical_cpus == os.cpu_count()
    busy, total = system_cpu_seconds()
    assert busy >= sample.system_busy_s and total >= sample.system_total_s


def test_a_server_that_does_not_exist_is_reported_dead(python):
    done = subprocess.run(
        [python, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    sample = CpuSampler({"gone": int(done.stdout)}).sample()

    assert sample.server("gone").alive is False
