"""ResourceMonitor: the sampling thread starts, stops and is joined; the idle baseline."""

import threading
import time

import pytest
from fake_nvml import FakeNvml, FakeNvmlError, device

from tfs_bench.monitors.cpu import CpuSampler
from tfs_bench.monitors.gpu import GpuSampler
from tfs_bench.monitors.samples import GPU_OFF
from tfs_bench.monitors.sampling import MonitorError, ResourceMonitor

THREAD_NAME = "tfs_bench-resource-monitor"


def monitor_threads():
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def poll(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        pause.wait(0.005)


@pytest.fixture
def gpu():
    nvml = FakeNvml([device()])
    with GpuSampler(nvml) as sampler:
        yield nvml, sampler


def test_start_samples_at_once_and_stop_joins_the_thread(gpu):
    _, gpu_sampler = gpu
    monitor = ResourceMonitor(CpuSampler({}), gpu_sampler, interval_s=0.02)
    monitor.start()
    assert len(monitor.samples().cpu) >= 1  # the first sample is taken before start() returns
    assert monitor.running and len(monitor_threads()) == 1

    # At least 3 samples over 0.2 s: /proc/stat counts in 10 ms ticks, so a shorter span can show
    # no CPU time at all and leave the utilisation unknown.
    poll(lambda: len(cpu := monitor.samples().cpu) >= 3 and cpu[-1].t_ns - cpu[0].t_ns >= 200_000_000)
    window_end_ns = time.perf_counter_ns()
    monitor.stop()

    assert monitor_threads() == [] and not monitor.running
    samples = monitor.samples()
    assert samples.cpu[-1].t_ns > window_end_ns  # the last sample is taken at stop
    assert len(samples.gpu) == len(samples.cpu)
    (window,) = monitor.windows([(samples.cpu[0].t_ns, window_end_ns)])
    assert window.system_cpu_utilisation_percent is not None and window.generator.cpu_s is not None
    assert window.gpus[0].utilisation_mean_percent == 50.0
    with pytest.raises(MonitorError, match="runs once"):
        monitor.start()
    monitor.stop()  # stopping again is harmless


def test_stop_raises_if_the_thread_does_not_end_in_time_and_can_be_retried(gpu):
    nvml, gpu_sampler = gpu
    monitor = ResourceMonitor(None, gpu_sampler, interval_s=0.01, stop_timeout_s=0.05)
    monitor.start()
    entered, release = threading.Event(), threading.Event()
    nvml.block = (entered, release)  # the thread's next GPU query hangs, as a hung driver would
    assert entered.wait(10)

    with pytest.raises(MonitorError, match="did not stop within 0.05 s"):
        monitor.stop()
    assert len(monitor_threads()) == 1

    release.set()
    monitor.stop()
    assert monitor_threads() == []


def test_a_failing_sampler_is_raised_at_stop():
    class Broken:
        calls = 0

        def sample(self):
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("psutil broke")

    monitor = ResourceMonitor(Broken(), None, interval_s=0.01)
    monitor.start()
    poll(lambda: monitor_threads() == [])  # the thread ends on the failure
    with pytest.raises(MonitorError, match="psutil broke"):
        monitor.stop()


def test_gpu_errors_mid_run_are_missing_samples_not_a_failure(gpu):
    nvml, gpu_sampler = gpu
    with ResourceMonitor(None, gpu_sampler, interval_s=0.01) as monitor:
        nvml.failures[0] = FakeNvmlError("Unknown Error")
        poll(lambda: any(s.missing for s in monitor.samples().gpu))
    assert [s.error for s in monitor.samples().gpu if s.missing] == ["FakeNvmlError: Unknown Error"]


def test_baseline_is_kept_apart_from_the_run(gpu):
    _, gpu_sampler = gpu
    monitor = ResourceMonitor(CpuSampler({}), gpu_sampler, interval_s=0.01)

    resources = monitor.baseline(0.03)

    baseline = monitor.samples("baseline")
    assert len(baseline.cpu) == 4 and len(baseline.gpu) == 4  # 1 + 0.03 / 0.01
    assert monitor.samples("run").cpu == ()
    assert resources == monitor.baseline_resources()
    assert (resources.start_ns, resources.end_ns) == (baseline.cpu[0].t_ns, baseline.cpu[-1].t_ns)
    assert resources.gpus[0].samples == 4 and resources.gpus[0].power_mean_w == 123.456
    with monitor:
        with pytest.raises(MonitorError, match="before start"):
            monitor.baseline(0.01)
    assert monitor.samples("baseline") == baseline


def test_without_samplers_or_gpu_the_status_is_off():
    monitor = ResourceMonitor()
    assert monitor.gpu_status == GPU_OFF
    with monitor:
        pass
    assert monitor.samples().cpu == () and monitor_threads() == []


@pytest.mark.parametrize("interval_s", [0, -1, 1.5])
def test_interval_must_be_at_most_a_second(interval_s):
    with pytest.raises(ValueError, match="interval_s"):
        ResourceMonitor(interval_s=interval_s)
