"""A fake `pynvml` module for the monitors' tests: the narrowest seam, since no GPU is here."""

import types


class FakeNvmlError(Exception):
    pass


class FakeNotSupported(FakeNvmlError):
    pass


class FakeNvml:
    """The pynvml functions GpuSampler calls; devices are dicts of what NVML would report."""

    NVMLError = FakeNvmlError
    NVMLError_NotSupported = FakeNotSupported

    def __init__(self, devices, init_error=None):
        self.devices, self.init_error, self.calls = devices, init_error, []
        self.failures = {}  # device index -> exception raised by its next utilisation query
        self.block = None  # (entered, release) Events: utilisation queries wait on release

    def nvmlInit(self):
        self.calls.append("init")
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, handle):
        return self.devices[handle].get("name", "NVIDIA H200")

    def nvmlSystemGetDriverVersion(self):
        return "570.86.15"

    def nvmlDeviceGetUtilizationRates(self, handle):
        if self.block:
            entered, release = self.block
            entered.set()
            release.wait(10)
        if handle in self.failures:
            raise self.failures.pop(handle)
        device = self.devices[handle]
        return types.SimpleNamespace(gpu=device["util"], memory=device["mem_util"])

    def nvmlDeviceGetMemoryInfo(self, handle):
        device = self.devices[handle]
        return types.SimpleNamespace(
            total=device["total"], used=device["used"], free=device["total"] - device["used"]
        )

    def nvmlDeviceGetPowerUsage(self, handle):
        power = self.devices[handle]["power_mw"]
        if power is None:
            raise FakeNotSupported("Not Supported")
        return power

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [
            types.SimpleNamespace(pid=pid, usedGpuMemory=used)
            for pid, used in self.devices[handle]["processes"]
        ]


GIB = 2**30


def device(util=50, mem_util=20, used=4 * GIB, total=80 * GIB, power_mw=123_456, processes=()):
    return dict(
        util=util, mem_util=mem_util, used=used, total=total, power_mw=power_mw, processes=list(processes)
    )


def clock_from(start=1_000, step=10):
    counter = iter(range(start, 10**12, step))
    return lambda: next(counter)
