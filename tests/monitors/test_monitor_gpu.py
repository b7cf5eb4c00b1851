"""The GPU sampler against a fake NVML module, and against the real one with or without a GPU."""

from fake_nvml import GIB, FakeNvml, FakeNvmlError, clock_from, device

from tfs_bench.monitors.gpu import GpuSampler
from tfs_bench.monitors.samples import GpuProcessMemory


def test_samples_every_device_in_nvml_units_converted():
    nvml = FakeNvml(
        [
            device(processes=[(300, 3 * GIB), (200, None)]),
            device(util=0, mem_util=0, used=0, total=40 * GIB, power_mw=61_000),
        ]
    )
    with GpuSampler(nvml, clock=clock_from()) as sampler:
        assert sampler.status.status == "ok" and sampler.status.device_count == 2
        first, second = sampler.sample()

    assert nvml.calls == ["init", "shutdown"]
    assert (first.t_ns, first.index) == (1_005, 0)  # midpoint of the clock reads around the queries
    assert first.utilisation_percent == 50.0 and first.memory_utilisation_percent == 20.0
    assert (first.memory_used_bytes, first.memory_total_bytes) == (4 * GIB, 80 * GIB)
    assert first.power_w == 123.456  # NVML reports milliwatts
    assert first.processes == (GpuProcessMemory(200, None), GpuProcessMemory(300, 3 * GIB))  # by pid
    assert not first.missing
    assert (second.index, second.power_w, second.memory_total_bytes, second.processes) == (
        1,
        61.0,
        40 * GIB,
        (),
    )


def test_a_process_listed_once_per_context_is_summed():
    nvml = FakeNvml([device(processes=[(7, GIB), (8, None), (7, 2 * GIB), (8, GIB)])])
    with GpuSampler(nvml) as sampler:
        (sample,) = sampler.sample()
    assert sample.processes == (GpuProcessMemory(7, 3 * GIB), GpuProcessMemory(8, None))


def test_a_board_without_power_readings_keeps_the_rest_of_its_sample():
    with GpuSampler(FakeNvml([device(power_mw=None)])) as sampler:
        (sample,) = sampler.sample()
    assert sample.power_w is None and not sample.missing and sample.utilisation_percent == 50.0


def test_init_failure_is_unavailable_with_the_reason_not_a_crash():
    nvml = FakeNvml([], init_error=FakeNvmlError("Driver Not Loaded"))
    with GpuSampler(nvml) as sampler:
        assert sampler.status.status == "unavailable"
        assert sampler.status.reason == "nvmlInit failed: FakeNvmlError: Driver Not Loaded"
        assert sampler.sample() == ()
    assert nvml.calls == ["init"]  # nothing to shut down


def test_no_gpu_is_unavailable_and_nvml_is_shut_down():
    nvml = FakeNvml([])
    with GpuSampler(nvml) as sampler:
        assert (sampler.status.status, sampler.status.reason) == ("unavailable", "NVML found no GPU")
        assert sampler.sample() == ()
    assert nvml.calls == ["init", "shutdown"]


def test_without_pynvml_the_sampler_is_unavailable():
    sampler = GpuSampler(None)
    assert sampler.open().reason == "pynvml (nvidia-ml-py) is not installed"
    assert sampler.status.status == "unavailable"


def test_an_error_mid_run_makes_that_sample_missing_and_the_next_one_recovers():
    nvml = FakeNvml([device(), device(util=90)])
    with GpuSampler(nvml) as sampler:
        nvml.failures[1] = FakeNvmlError("GPU is lost")
        good, lost = sampler.sample()
        assert not good.missing
        assert lost.missing and lost.error == "FakeNvmlError: GPU is lost"
        assert (lost.index, lost.utilisation_percent, lost.power_w, lost.processes) == (1, None, None, ())
        assert [s.utilisation_percent for s in sampler.sample()] == [50.0, 90.0]


# Every reason open() can give for a machine without a usable GPU.
UNAVAILABLE_REASONS = ("pynvml (nvidia-ml-py) is not installed", "nvmlInit failed: ", "listing GPUs failed: ",
                       "NVML found no GPU")


def test_real_nvml_on_this_machine_answers_without_raising():
    with GpuSampler() as sampler:
        samples = sampler.sample()
    status = sampler.status
    if status.status == "ok":  # a sample per GPU, in index order, each knowing its board's memory
        assert status.device_count >= 1 and status.reason is None
        assert [s.index for s in samples] == list(range(status.device_count))
        assert all(s.missing or s.memory_total_bytes > 0 for s in samples)
    else:  # no GPU: one of the reasons there can be, and nothing sampled
        assert status.status == "unavailable" and status.device_count == 0
        assert status.reason.startswith(UNAVAILABLE_REASONS), status.reason
        assert samples == ()
