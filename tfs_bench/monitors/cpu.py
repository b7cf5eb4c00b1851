"""One CPU sample: the machine's CPU counters, each server process tree and the load generator.

Process trees are found anew at every sample (`children(recursive=True)`), since a server may
start workers after the monitor begins. A tree's CPU time adds, for each live member, its own
user + system time and that of the children it has reaped (psutil's `children_user` /
`children_system`), so a child that exits and is waited for keeps counting; a child that exits
unreaped, or whose parent dies first, is lost from the tree (no API can recover it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import psutil

from tfs_bench.monitors.samples import CpuSample, ProcessSample

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def system_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of all logical CPUs since boot, counted as psutil.cpu_percent does."""
    fields = psutil.cpu_times()._asdict()
    # Linux counts guest time inside user and nice as well; do not count it twice.
    guest = fields.pop("guest", 0.0) + fields.pop("guest_nice", 0.0)
    idle = fields.pop("idle") + fields.pop("iowait", 0.0)
    # Summed from the busy fields, not total - idle: an unchanged busy time then reads back
    # identical, where a difference of larger sums would wobble in its last bits.
    busy = max(sum(fields.values()) - guest, 0.0)
    return busy, busy + idle


class CpuSampler:
    """Samples the machine, the named server process trees and the load generator's process.

    `servers` maps a name (e.g. the server's name in the plan) to its root pid. The generator is
    `generator_pid` (default: this process) and those of its descendants for which
    `generator_member` returns True (e.g. its load-worker processes), never the rest of its tree,
    since the servers the launcher starts are its children too. `clock` returns nanoseconds; a
    sample is stamped at the midpoint of its reads.
    """

    def __init__(
        self,
        servers: Mapping[str, int],
        *,
        generator_pid: int | None = None,
        generator_member: Callable[[psutil.Process], bool] | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
    ):
        self._clock = clock
        self._generator_member = generator_member
        self._servers = {name: (pid, _process_or_none(pid)) for name, pid in servers.items()}
        pid = os.getpid() if generator_pid is None else generator_pid
        self._generator = (pid, _process_or_none(pid))
        self._logical_cpus = psutil.cpu_count(logical=True) or 1

    def sample(self) -> CpuSample:
        before_ns = self._clock()
        busy_s, total_s = system_cpu_seconds()
        generator = _sample_process("load_generator", *self._generator, tree=False, member=self._generator_member)
        servers = tuple(
            _sample_process(name, pid, process, tree=True) for name, (pid, process) in self._servers.items()
        )
        after_ns = self._clock()
        return CpuSample(
            t_ns=(before_ns + after_ns) // 2,
            system_busy_s=busy_s,
            system_total_s=total_s,
            logical_cpus=self._logical_cpus,
            generator=generator,
            servers=servers,
        )


def _selected(member: Callable[[psutil.Process], bool], process: psutil.Process) -> bool:
    try:
        return member(process)
    except _GONE:
        return False  # it exited while being looked at


def _process_or_none(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except _GONE:
        return None


def _sample_process(
    name: str, pid: int, process: psutil.Process | None, *, tree: bool, member: Callable[[psutil.Process], bool] | None = None
) -> ProcessSample:
    """The process, with its whole tree (`tree`) or with the descendants `member` selects."""
    dead = ProcessSample(name, pid, False, (), None, None)
    # is_running() also compares the creation time, so a reused pid does not pass for our process.
    try:
        if process is None or not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
            return dead
    except _GONE:
        return dead
    try:
        members = [process] + (process.children(recursive=True) if tree or member else [])
    except _GONE:
        return dead
    if not tree and member is not None:
        members = [process] + [m for m in members[1:] if _selected(member, m)]
    pids, cpu_s, rss_bytes = [], 0.0, 0
    for i, member in enumerate(members):
        try:
            with member.oneshot():
                times = member.cpu_times()
                rss = member.memory_info().rss
        except _GONE:
            if i == 0:
                return dead
            continue  # a child that exited between listing and reading
        cpu_s += times.user + times.system
        if tree:
            cpu_s += getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)
        rss_bytes += rss
        pids.append(member.pid)
    return ProcessSample(name, pid, True, tuple(pids), cpu_s, rss_bytes)
