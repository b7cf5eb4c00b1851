"""NVML is faked at the module seam: this machine has no GPU."""

import types

from tfs_bench import gpu_info


class _FakeNvml:
    def __init__(self, totals, init_error=None):
        self.totals, self.init_error, self.calls = totals, init_error, []

    def nvmlInit(self):
        self.calls.append("init")
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return len(self.totals)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetMemoryInfo(self, handle):
        return types.SimpleNamespace(total=self.totals[handle], used=0, free=self.totals[handle])


def test_total_memory_of_each_gpu():
    nvml = _FakeNvml([80 * 2**30, 40 * 2**30])
    assert gpu_info.total_memory_bytes(1, nvml=nvml) == 40 * 2**30
    assert nvml.calls == ["init", "shutdown"]
    assert gpu_info.total_memory_bytes(2, nvml=nvml) is None


def test_no_driver_means_unknown_not_a_crash():
    nvml = _FakeNvml([], init_error=RuntimeError("NVML Shared Library Not Found"))
    assert gpu_info.total_memory_bytes(nvml=nvml) is None


def test_real_nvml_on_this_machine_answers_without_raising():
    total = gpu_info.total_memory_bytes()
    assert total is None or total > 0
