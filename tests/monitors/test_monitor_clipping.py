"""Clipping samples to windows, on synthetic samples with exact expected values."""

import json

from tfs_bench.monitors.samples import (
    GPU_OFF,
    CpuSample,
    GpuProcessMemory,
    GpuSample,
    GpuStatus,
    GpuWindow,
    MonitorSamples,
    ProcessSample,
    ProcessWindow,
)
from tfs_bench.monitors.clipping import baseline_resources, clip_to_windows

S = 1_000_000_000  # ns per second
MIB = 2**20
SERVER_PID, WORKER_PID, GENERATOR_PID = 100, 101, 50


def process(name, pid, cpu_s, rss_bytes, pids=None):
    if cpu_s is None:
        return ProcessSample(name, pid, False, (), None, None)
    return ProcessSample(name, pid, True, pids or (pid,), cpu_s, rss_bytes)


def cpu_sample(t_s, busy_s, total_s, server_cpu_s, server_rss, generator_cpu_s=0.0):
    return CpuSample(
        t_ns=round(t_s * S),
        system_busy_s=busy_s,
        system_total_s=total_s,
        logical_cpus=2,
        generator=process("load_generator", GENERATOR_PID, generator_cpu_s, 10 * MIB),
        servers=(process("server", SERVER_PID, server_cpu_s, server_rss, (SERVER_PID, WORKER_PID)),),
    )


# Samples every second: system busy 1 s and total 2 s per second (50%); the server's tree uses
# 1, 2, 1, 0 CPU seconds in the four seconds; the generator 0.25 s a second.
CPU = (
    cpu_sample(0, 0.0, 0.0, 0.0, 1000, 0.0),
    cpu_sample(1, 1.0, 2.0, 1.0, 100, 0.25),
    cpu_sample(2, 2.0, 4.0, 3.0, 300, 0.5),
    cpu_sample(3, 3.0, 6.0, 4.0, 5000, 0.75),
    cpu_sample(4, 4.0, 8.0, 4.0, 5000, 1.0),
)


def gpu_sample(t_s, util, used, power_w, processes=(), index=0):
    return GpuSample(round(t_s * S), index, util, util / 2, used, 80 * 2**30, power_w, processes)


GPU = (
    gpu_sample(0.25, 99.0, 9000 * MIB, 300.0),  # before the window
    gpu_sample(
        1.0, 10.0, 1000 * MIB, 50.5, (GpuProcessMemory(WORKER_PID, 600 * MIB), GpuProcessMemory(7, None))
    ),
    GpuSample.missing_sample(round(1.5 * S), 0, "NVMLError_GpuIsLost: GPU is lost"),
    gpu_sample(
        2.0, 30.0, 3000 * MIB, 70.5, (GpuProcessMemory(WORKER_PID, 800 * MIB), GpuProcessMemory(7, 5 * MIB))
    ),
    gpu_sample(2.5, 77.0, 9000 * MIB, 300.0),  # on the end boundary: windows are half-open
)
OK_GPU = GpuStatus("ok", None, 1)


def test_cpu_counters_are_interpolated_at_the_boundaries():
    (window,) = clip_to_windows(MonitorSamples(CPU, GPU), [(S // 2, 5 * S // 2)], OK_GPU)

    assert (window.start_ns, window.end_ns, window.duration_s, window.cpu_samples) == (
        S // 2,
        5 * S // 2,
        2.0,
        2,
    )
    assert window.system_cpu_utilisation_percent == 50.0  # (2.5 - 0.5) / (5 - 1)
    # The tree's counter reads 0.5 at 0.5 s and 3.5 at 2.5 s: 3 CPU seconds in 2 s.
    assert window.server("server") == ProcessWindow(
        name="server",
        root_pid=SERVER_PID,
        cpu_s=3.0,
        cpu_utilisation_cores=1.5,
        rss_max_bytes=300,  # only the samples at 1 s and 2 s are inside
        gpu_memory_max_bytes=800 * MIB,  # its worker's largest use; pid 7 is not in the tree
    )
    assert window.generator.cpu_s == 0.5 and window.generator.cpu_utilisation_cores == 0.25


def test_gpu_figures_are_means_and_maxima_of_the_samples_inside():
    (window,) = clip_to_windows(MonitorSamples(CPU, GPU), [(S // 2, 5 * S // 2)], OK_GPU)

    assert window.gpus == (
        GpuWindow(
            index=0,
            samples=3,
            missing_samples=1,
            utilisation_mean_percent=20.0,
            memory_utilisation_mean_percent=10.0,
            memory_used_max_bytes=3000 * MIB,
            memory_total_bytes=80 * 2**30,
            power_mean_w=60.5,
            process_memory_max_bytes=(GpuProcessMemory(7, 5 * MIB), GpuProcessMemory(WORKER_PID, 800 * MIB)),
        ),
    )


def test_boundaries_on_samples_use_them_exactly_and_adjacent_windows_share_none():
    first, second = clip_to_windows(MonitorSamples(CPU, ()), [(S, 2 * S), (2 * S, 3 * S)], GPU_OFF)

    assert (first.server("server").cpu_s, second.server("server").cpu_s) == (2.0, 1.0)
    assert (first.cpu_samples, second.cpu_samples) == (1, 1)
    assert (first.server("server").rss_max_bytes, second.server("server").rss_max_bytes) == (100, 300)


def test_a_boundary_outside_the_samples_gives_none_not_a_guess():
    (window,) = clip_to_windows(MonitorSamples(CPU, ()), [(3 * S, 5 * S)], GPU_OFF)

    assert window.system_cpu_utilisation_percent is None
    assert window.server("server").cpu_s is None and window.server("server").cpu_utilisation_cores is None
    assert window.server("server").rss_max_bytes == 5000  # maxima need no boundary values


def test_a_tree_dead_next_to_a_boundary_or_going_backwards_gives_none():
    died = CPU[:3] + (cpu_sample(3, 3.0, 6.0, None, None),)
    (window,) = clip_to_windows(MonitorSamples(died, ()), [(S, 5 * S // 2)], GPU_OFF)
    assert window.server("server").cpu_s is None
    assert window.system_cpu_utilisation_percent == 50.0

    lost_child = CPU[:2] + (cpu_sample(2, 2.0, 4.0, 0.5, 300),)
    (window,) = clip_to_windows(MonitorSamples(lost_child, ()), [(S, 2 * S)], GPU_OFF)
    assert window.server("server").cpu_s is None


def test_without_gpu_monitoring_the_window_says_why():
    status = GpuStatus("unavailable", "nvmlInit failed: NVMLError_LibraryNotFound", 0)
    (window,) = clip_to_windows(MonitorSamples(CPU, ()), [(0, S)], status)

    assert window.gpu_status == status and window.gpus == ()
    assert window.server("server").gpu_memory_max_bytes is None


def test_a_device_without_samples_in_the_window_is_listed_empty():
    (window,) = clip_to_windows(MonitorSamples(CPU, GPU), [(S, 2 * S)], GpuStatus("ok", None, 2))

    assert [g.index for g in window.gpus] == [0, 1]
    assert window.gpus[1] == GpuWindow(1, 0, 0, None, None, None, None, None, ())
    assert window.gpus[0].samples == 2 and window.gpus[0].missing_samples == 1


def test_baseline_spans_its_own_samples_inclusive():
    idle = MonitorSamples(CPU[:3], GPU[:2])
    window = baseline_resources(idle, OK_GPU)

    assert (window.start_ns, window.end_ns, window.cpu_samples) == (0, 2 * S, 3)
    assert window.server("server").cpu_s == 3.0 and window.server("server").rss_max_bytes == 1000
    assert window.gpus[0].utilisation_mean_percent == 54.5
    assert baseline_resources(MonitorSamples(CPU[:1], ()), OK_GPU) is None


def test_window_records_round_trip_through_json():
    windows = clip_to_windows(MonitorSamples(CPU, GPU), [(S // 2, 5 * S // 2), (3 * S, 5 * S)], OK_GPU)
    for window in windows:
        assert type(window).from_json(json.loads(json.dumps(window.to_json()))) == window


def test_an_unchanged_counter_that_wobbles_in_its_last_bits_reads_as_no_time_and_a_real_fall_as_unknown():
    # A quiet machine: busy time unchanged over the window, read back 1e-12 lower by rounding.
    quiet = (cpu_sample(0, 100.0, 200.0, 1.0, 10), cpu_sample(1, 100.0 - 1e-12, 202.0, 1.0, 10))
    (window,) = clip_to_windows(MonitorSamples(quiet, ()), [(0, S)], GPU_OFF)
    assert window.system_cpu_utilisation_percent == 0.0 and window.server("server").cpu_s == 0.0
    fell = (cpu_sample(0, 100.0, 200.0, 1.0, 10), cpu_sample(1, 99.99, 202.0, 1.0, 10))  # a 10 ms tick back
    (window,) = clip_to_windows(MonitorSamples(fell, ()), [(0, S)], GPU_OFF)
    assert window.system_cpu_utilisation_percent is None
