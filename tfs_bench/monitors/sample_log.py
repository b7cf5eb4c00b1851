"""The monitors' append-only sample file: one JSON object a line, flushed after each batch.

A line is `{"kind": ..., "phase": "baseline" | "run", "record": {...}}` with kind "cpu_sample",
"gpu_sample" or "gpu_status". A crash loses at most the batch being written; the reader skips
a last line cut short.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable

from tfs_bench.monitors.samples import GPU_OFF, CpuSample, GpuSample, GpuStatus, MonitorSamples

PHASES = ("baseline", "run")
_KINDS = {"cpu_sample": CpuSample, "gpu_sample": GpuSample, "gpu_status": GpuStatus}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}


class SampleLogWriter:
    """Appends records to `path` (created if absent); thread-safe."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, phase: str, records: Iterable[CpuSample | GpuSample | GpuStatus]) -> None:
        """Writes one batch and flushes it."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        lines = [
            json.dumps({"kind": _KIND_OF[type(r)], "phase": phase, "record": r.to_json()}, sort_keys=True)
            + "\n"
            for r in records
        ]
        with self._lock:
            self._file.writelines(lines)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> "SampleLogWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_sample_log(path: str | os.PathLike) -> tuple[GpuStatus, dict[str, MonitorSamples]]:
    """The last GPU status written (GPU_OFF if none) and the samples of each phase."""
    status = GPU_OFF
    cpu: dict[str, list] = {phase: [] for phase in PHASES}
    gpu: dict[str, list] = {phase: [] for phase in PHASES}
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                break  # cut short by a crash mid-write
            entry = json.loads(line)
            kind, phase = entry["kind"], entry["phase"]
            if kind not in _KINDS or phase not in PHASES:
                raise ValueError(f"{path}:{line_number}: unknown kind {kind!r} or phase {phase!r}")
            record = _KINDS[kind].from_json(entry["record"])
            if kind == "gpu_status":
                status = record
            else:
                (cpu if kind == "cpu_sample" else gpu)[phase].append(record)
    return status, {phase: MonitorSamples(tuple(cpu[phase]), tuple(gpu[phase])) for phase in PHASES}
