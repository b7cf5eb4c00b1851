"""NVML is faked at the module seam: this machine has no GPU."""

from fake_nvml import FakeNvml
from tfs_bench.plan import gpu_info


def test_total_memory_of_each_gpu():
    nvml = FakeNvml([{"total": 80 * 2**30, "used": 0}, {"total": 40 * 2**30, "used": 2**30}])
    assert gpu_info.total_memory_bytes(1, nvml=nvml) == 40 * 2**30
    assert nvml.calls == ["init", "shutdown"]
    assert gpu_info.total_memory_bytes(2, nvml=nvml) is None


def test_no_driver_means_unknown_not_a_crash():
    nvml = FakeNvml([], init_error=RuntimeError("NVML Shared Library Not Found"))
    assert gpu_info.total_memory_bytes(nvml=nvml) is None


def test_real_nvml_on_this_machine_answers_without_raising():
    total = gpu_info.total_memory_bytes()
    assert total is None or total > 0
