"""NVML is faked at the module seam, and the real one is checked against the GPU sampler."""

from fake_nvml import FakeNvml
from tfs_bench.monitors.gpu import GpuSampler
from tfs_bench.plan import gpu_info


def test_total_memory_of_each_gpu():
    nvml = FakeNvml([{"total": 80 * 2**30, "used": 0}, {"total": 40 * 2**30, "used": 2**30}])
    assert gpu_info.total_memory_bytes(1, nvml=nvml) == 40 * 2**30
    assert nvml.calls == ["init", "shutdown"]
    assert gpu_info.total_memory_bytes(2, nvml=nvml) is None


def test_no_driver_means_unknown_not_a_crash():
    nvml = FakeNvml([], init_error=RuntimeError("NVML Shared Library Not Found"))
    assert gpu_info.total_memory_bytes(nvml=nvml) is None


def test_real_nvml_on_this_machine_agrees_with_the_gpu_sampler():
    # Two readers of the same driver: the plan's memory lookup and the load run's GPU sampler.
    total = gpu_info.total_memory_bytes()
    with GpuSampler() as sampler:
        samples = sampler.sample()
    if sampler.status.status == "ok":
        assert total is not None and total > 0 and total == samples[0].memory_total_bytes
    else:
        assert total is None
    assert gpu_info.total_memory_bytes(sampler.status.device_count) is None  # one past the last GPU
