"""`ResourceMonitor`: one background thread that samples CPU and GPU every interval.

One thread samples both, so a CPU sample and the GPU samples of the same tick are taken back to
back. The thread's timer is `Event.wait(interval)`, the same event that stop() sets, so stopping
never waits out an interval. Samples are kept in memory, for clipping to windows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

from tfs_bench.errors import TfsBenchError
from tfs_bench.monitors.cpu import CpuSampler
from tfs_bench.monitors.gpu import GpuSampler
from tfs_bench.ticker import Ticker
from tfs_bench.ticker import TickerError
from tfs_bench.monitors.samples import GPU_OFF, GpuStatus, MonitorSamples, WindowResources
from tfs_bench.monitors.clipping import baseline_resources, clip_to_windows

DEFAULT_INTERVAL_S = 0.5
MAX_INTERVAL_S = 1.0  # METHODOLOGY.md: GPU sampled at least every second


class MonitorError(TfsBenchError):
    """The monitor was misused, its thread failed, or it did not stop in time."""


class ResourceMonitor:
    """Samples `cpu` and `gpu` (either may be None) every `interval_s` seconds.

    baseline(duration_s) samples the idle machine before load, in the caller's thread. start()
    takes the first run sample before it returns and starts the thread; stop() sets the timer's
    event, and the thread takes a last sample before it ends, so windows that lie between start()
    and stop() have samples on both sides of their boundaries. stop() raises MonitorError if the
    thread is still alive after `stop_timeout_s` (call it again to keep waiting) or if sampling
    failed. The GPU sampler is opened and closed by its owner, not here.
    """

    def __init__(
        self,
        cpu: CpuSampler | None = None,
        gpu: GpuSampler | None = None,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        stop_timeout_s: float = 5.0,
    ):
        if not 0 < interval_s <= MAX_INTERVAL_S:
            raise ValueError(f"interval_s must be in (0, {MAX_INTERVAL_S}], got {interval_s}")
        if stop_timeout_s <= 0:
            raise ValueError(f"stop_timeout_s must be > 0, got {stop_timeout_s}")
        self._cpu, self._gpu = cpu, gpu
        self._interval_s = interval_s
        self._stop_timeout_s = stop_timeout_s
        self._lock = threading.Lock()
        self._ticker: Ticker | None = None
        self._started = False
        self._samples = {"baseline": ([], []), "run": ([], [])}

    @property
    def gpu_status(self) -> GpuStatus:
        return self._gpu.status if self._gpu is not None else GPU_OFF

    @property
    def running(self) -> bool:
        return self._ticker is not None

    def baseline(self, duration_s: float) -> WindowResources | None:
        """Samples for about `duration_s` (at least two samples) before load; returns their
        aggregate, also kept apart from the run's samples."""
        if self._started:
            raise MonitorError("the idle baseline must be taken before start()")
        if duration_s < 0:
            raise ValueError(f"duration_s must be >= 0, got {duration_s}")
        count = max(2, 1 + math.ceil(duration_s / self._interval_s))
        self._take("baseline")
        pacing = threading.Event()  # never set: the baseline is paced on the caller's thread
        for _ in range(count - 1):
            pacing.wait(self._interval_s)
            self._take("baseline")
        return self.baseline_resources()

    def start(self) -> None:
        if self._started:
            raise MonitorError("a ResourceMonitor runs once; make a new one")
        self._started = True
        self._take("run")
        # Paced from the previous sample's start, so slow samples do not stretch the interval;
        # one last sample at stop covers the end of the last window.
        self._ticker = Ticker(
            "tfs_bench-resource-monitor", self._interval_s, lambda: self._take("run"),
            paced=True, final_tick=True, stop_timeout_s=self._stop_timeout_s,
        )
        self._ticker.start()

    def stop(self) -> None:
        """Stops the thread and waits for it; a monitor never started or already stopped is left as is."""
        ticker = self._ticker
        if ticker is None:
            return
        try:
            ticker.stop()
        except TickerError as e:
            if ticker.running:
                raise MonitorError(f"the resource monitor: {e}") from None
            self._ticker = None
            raise MonitorError(f"resource sampling failed: {e.__cause__!r}") from e.__cause__
        self._ticker = None

    def __enter__(self) -> "ResourceMonitor":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def samples(self, phase: str = "run") -> MonitorSamples:
        with self._lock:
            cpu, gpu = self._samples[phase]
            return MonitorSamples(tuple(cpu), tuple(gpu))

    def windows(self, windows: Sequence[tuple[int, int]]) -> tuple[WindowResources, ...]:
        """Resources of each measurement window [start_ns, end_ns), from the run's samples."""
        return clip_to_windows(self.samples("run"), windows, self.gpu_status)

    def baseline_resources(self) -> WindowResources | None:
        return baseline_resources(self.samples("baseline"), self.gpu_status)

    def _take(self, phase: str) -> None:
        cpu_sample = self._cpu.sample() if self._cpu is not None else None
        gpu_samples = self._gpu.sample() if self._gpu is not None else ()
        with self._lock:
            cpu, gpu = self._samples[phase]
            if cpu_sample is not None:
                cpu.append(cpu_sample)
            gpu.extend(gpu_samples)
