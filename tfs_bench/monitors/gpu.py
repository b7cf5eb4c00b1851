"""One GPU sample per device, from NVML.

`nvml` parameters take the `pynvml` module (from nvidia-ml-py); tests pass a fake with the same
functions, the narrowest seam between us and the driver. No NVML, no driver or no GPU makes the
sampler "unavailable" with the reason; an NVML error while sampling makes that device's sample
missing and the next sample tries again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tfs_bench.monitors.samples import GpuProcessMemory, GpuSample, GpuStatus

_UNSET = object()


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _import_pynvml():
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


class GpuSampler:
    """Samples every GPU NVML sees. Use as a context manager, or call open() and close().

    `status` is "unavailable" (with the reason) until open() succeeds; `sample()` then returns
    one GpuSample per device (a missing one carries the NVML error), or () when unavailable.
    """

    def __init__(self, nvml=_UNSET, *, clock: Callable[[], int] = time.perf_counter_ns):
        self._nvml = _import_pynvml() if nvml is _UNSET else nvml
        self._clock = clock
        self._handles: list = []
        self._initialised = False
        self.status = GpuStatus("unavailable", "NVML has not been opened", 0)

    def open(self) -> GpuStatus:
        """Initialises NVML and finds the devices; never raises for a missing GPU or driver."""
        if self._initialised:
            return self.status
        nvml = self._nvml
        if nvml is None:
            self.status = GpuStatus("unavailable", "pynvml (nvidia-ml-py) is not installed", 0)
            return self.status
        try:
            nvml.nvmlInit()
        except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.status = GpuStatus("unavailable", f"nvmlInit failed: {_error_text(e)}", 0)
            return self.status
        self._initialised = True
        try:
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception as e:
            self.close()
            self.status = GpuStatus("unavailable", f"listing GPUs failed: {_error_text(e)}", 0)
            return self.status
        if not handles:
            self.close()
            self.status = GpuStatus("unavailable", "NVML found no GPU", 0)
            return self.status
        self._handles = handles
        self.status = GpuStatus("ok", None, len(handles))
        return self.status

    def close(self) -> None:
        if self._initialised:
            self._initialised = False
            self._handles = []
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # shutting down a driver that already went away is not our failure
                pass

    def __enter__(self) -> "GpuSampler":
        self.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def sample(self) -> tuple[GpuSample, ...]:
        return tuple(self._sample_device(index, handle) for index, handle in enumerate(self._handles))

    def _sample_device(self, index: int, handle) -> GpuSample:
        nvml = self._nvml
        before_ns = self._clock()
        try:
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            power_w = self._power_w(handle)
            processes = _merge_by_pid(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
            t_ns = (before_ns + self._clock()) // 2
            return GpuSample(
                t_ns=t_ns,
                index=index,
                utilisation_percent=float(rates.gpu),
                memory_utilisation_percent=float(rates.memory),
                memory_used_bytes=int(memory.used),
                memory_total_bytes=int(memory.total),
                power_w=power_w,
                processes=processes,
            )
        except Exception as e:
            return GpuSample.missing_sample((before_ns + self._clock()) // 2, index, _error_text(e))

    def _power_w(self, handle) -> float | None:
        not_supported = getattr(self._nvml, "NVMLError_NotSupported", None)
        try:
            return self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # NVML reports milliwatts
        except Exception as e:
            if not_supported is not None and isinstance(e, not_supported):
                return None  # some boards report no power; the rest of the sample is good
            raise


def _merge_by_pid(processes) -> tuple[GpuProcessMemory, ...]:
    # A process holding several contexts on one device is listed once per context.
    used: dict[int, int | None] = {}
    for process in processes:
        pid = int(process.pid)
        memory = None if process.usedGpuMemory is None else int(process.usedGpuMemory)
        if pid in used:
            memory = None if memory is None or used[pid] is None else used[pid] + memory
        used[pid] = memory
    return tuple(GpuProcessMemory(pid, used[pid]) for pid in sorted(used))
