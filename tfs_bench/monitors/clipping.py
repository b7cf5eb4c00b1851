"""Clips monitor samples to measurement windows: pure functions of the samples and boundaries.

Rules (METHODOLOGY.md "Resources"; where it is silent, decided here):
- A window is half-open, [start_ns, end_ns), so a sample on a shared boundary counts once. GPU
  utilisation, memory utilisation and power are the mean, memory the maximum, of the samples
  inside the window that are not missing; a window without such a sample has None there.
- Cumulative counters (system busy/total CPU time, each tree's CPU seconds) are interpolated
  linearly between the two samples around each boundary (exact at a sample), so a window's CPU
  seconds do not depend on where samples fell. A boundary outside the sampled span, or next to a
  sample where the tree was not alive, gives None. A delta that goes backwards (a tree lost a
  child that exited unreaped) gives None rather than a negative number.
- A tree's GPU memory: on each device, the largest sum over the tree's processes (the pids seen
  in the window's CPU samples) at one sample; then summed over devices. Memory held by TF's
  allocator barely moves during a run, so per-device peaks add up to a fair peak.
- The idle baseline is aggregated the same way over its own samples, from its first to its last
  CPU sample inclusive, with all of its GPU samples; run samples never mix with it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from tfs_bench.monitors.samples import (
    CpuSample,
    GpuProcessMemory,
    GpuSample,
    GpuStatus,
    GpuWindow,
    MonitorSamples,
    ProcessSample,
    ProcessWindow,
    WindowResources,
)

GENERATOR = "load_generator"


def clip_to_windows(
    samples: MonitorSamples, windows: Sequence[tuple[int, int]], gpu_status: GpuStatus
) -> tuple[WindowResources, ...]:
    """Resources of each window [start_ns, end_ns), from the run's samples."""
    return tuple(_clip(samples, start_ns, end_ns, gpu_status) for start_ns, end_ns in windows)


def baseline_resources(samples: MonitorSamples, gpu_status: GpuStatus) -> WindowResources | None:
    """Resources over the whole idle baseline: from its first to its last CPU sample (GPU sample
    when there are no CPU samples), with every baseline GPU sample counted (a tick's GPU samples
    come just after its CPU sample). None with fewer than two samples to span."""
    times = [s.t_ns for s in samples.cpu] or [s.t_ns for s in samples.gpu]
    if len(times) < 2 or min(times) == max(times):
        return None
    return _clip(samples, min(times), max(times), gpu_status, baseline=True)


def _clip(
    samples: MonitorSamples, start_ns: int, end_ns: int, gpu_status: GpuStatus, *, baseline: bool = False
):
    def inside(t_ns: int) -> bool:
        return start_ns <= t_ns <= end_ns if baseline else start_ns <= t_ns < end_ns

    cpu = sorted(samples.cpu, key=lambda s: s.t_ns)
    cpu_inside = [s for s in cpu if inside(s.t_ns)]
    gpu_inside = list(samples.gpu) if baseline else [s for s in samples.gpu if inside(s.t_ns)]
    duration_s = (end_ns - start_ns) / 1e9
    counters = _Counters(cpu, start_ns, end_ns)

    busy_s = counters.delta(lambda s: s.system_busy_s)
    total_s = counters.delta(lambda s: s.system_total_s)
    system_percent = None
    if busy_s is not None and total_s:
        system_percent = min(100.0, 100.0 * busy_s / total_s)

    def window_of(name: str, pick: Callable[[CpuSample], ProcessSample | None]) -> ProcessWindow:
        return _process_window(name, pick, cpu, cpu_inside, gpu_inside, counters, duration_s)

    generator = window_of(GENERATOR, lambda s: s.generator) if cpu else None
    server_names = list(dict.fromkeys(p.name for s in cpu for p in s.servers))
    servers = tuple(window_of(name, lambda s, name=name: s.server(name)) for name in server_names)
    return WindowResources(
        start_ns=start_ns,
        end_ns=end_ns,
        cpu_samples=len(cpu_inside),
        system_cpu_utilisation_percent=system_percent,
        generator=generator,
        servers=servers,
        gpu_status=gpu_status,
        gpus=_gpu_windows(gpu_inside, gpu_status),
    )


_ROUNDING_S = 1e-6


class _Counters:
    """Cumulative counters of the CPU samples, read at the window's boundaries."""

    def __init__(self, cpu: list[CpuSample], start_ns: int, end_ns: int):
        self._cpu = cpu
        self._times = [s.t_ns for s in cpu]
        self._start_ns, self._end_ns = start_ns, end_ns

    def delta(self, value: Callable[[CpuSample], float | None]) -> float | None:
        """The counter's growth over the window; None when a boundary is outside the samples or
        the counter went back. A fall of at most _ROUNDING_S is floating-point rounding of an
        unchanged counter (CPU time is counted in 10 ms ticks), and reads as 0."""
        start = self._at(self._start_ns, value)
        end = self._at(self._end_ns, value)
        if start is None or end is None or end < start - _ROUNDING_S:
            return None
        return max(end - start, 0.0)

    def _at(self, t_ns: int, value: Callable[[CpuSample], float | None]) -> float | None:
        i = bisect.bisect_left(self._times, t_ns)
        if i < len(self._times) and self._times[i] == t_ns:
            return value(self._cpu[i])
        if i == 0 or i == len(self._times):
            return None
        before, after = self._cpu[i - 1], self._cpu[i]
        v0, v1 = value(before), value(after)
        if v0 is None or v1 is None:
            return None
        return v0 + (v1 - v0) * (t_ns - before.t_ns) / (after.t_ns - before.t_ns)


def _process_window(
    name: str,
    pick: Callable[[CpuSample], ProcessSample | None],
    cpu: list[CpuSample],
    cpu_inside: list[CpuSample],
    gpu_inside: list[GpuSample],
    counters: _Counters,
    duration_s: float,
) -> ProcessWindow:
    def cpu_s_of(sample: CpuSample) -> float | None:
        process = pick(sample)
        return process.cpu_s if process is not None else None

    found = [p for p in map(pick, cpu) if p is not None]
    alive_inside = [p for p in map(pick, cpu_inside) if p is not None and p.alive]
    cpu_s = counters.delta(cpu_s_of)
    pids = {pid for p in alive_inside for pid in p.pids}
    return ProcessWindow(
        name=name,
        root_pid=found[0].root_pid,
        cpu_s=cpu_s,
        cpu_utilisation_cores=None if cpu_s is None else cpu_s / duration_s,
        rss_max_bytes=max((p.rss_bytes for p in alive_inside), default=None),
        gpu_memory_max_bytes=_tree_gpu_memory(pids, gpu_inside),
    )


def _tree_gpu_memory(pids: set[int], gpu_inside: list[GpuSample]) -> int | None:
    peaks: dict[int, int] = {}
    for sample in gpu_inside:
        known = [p.used_bytes for p in sample.processes if p.pid in pids and p.used_bytes is not None]
        if known:
            peaks[sample.index] = max(peaks.get(sample.index, 0), sum(known))
    return sum(peaks.values()) if peaks else None


def _gpu_windows(gpu_inside: list[GpuSample], gpu_status: GpuStatus) -> tuple[GpuWindow, ...]:
    indices = sorted(set(range(gpu_status.device_count)) | {s.index for s in gpu_inside})
    return tuple(_gpu_window(index, [s for s in gpu_inside if s.index == index]) for index in indices)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _gpu_window(index: int, samples: list[GpuSample]) -> GpuWindow:
    usable = [s for s in samples if not s.missing]
    process_max: dict[int, int | None] = {}
    for sample in usable:
        for process in sample.processes:
            previous = process_max.get(process.pid)
            if process.used_bytes is None:
                process_max.setdefault(process.pid, None)
            else:
                process_max[process.pid] = max(previous or 0, process.used_bytes)
    powers = [s.power_w for s in usable if s.power_w is not None]
    return GpuWindow(
        index=index,
        samples=len(samples),
        missing_samples=len(samples) - len(usable),
        utilisation_mean_percent=_mean([s.utilisation_percent for s in usable]),
        memory_utilisation_mean_percent=_mean([s.memory_utilisation_percent for s in usable]),
        memory_used_max_bytes=max((s.memory_used_bytes for s in usable), default=None),
        memory_total_bytes=max((s.memory_total_bytes for s in usable), default=None),
        power_mean_w=_mean(powers),
        process_memory_max_bytes=tuple(
            GpuProcessMemory(pid, used) for pid, used in sorted(process_max.items())
        ),
    )
