"""Which devices an experiment uses: a GPU only where TensorFlow and NVML both see one (NVML faked)."""

import pytest

from conftest import exactly
from fake_nvml import FakeNvml
from fake_nvml import device
from tfs_bench.errors import ConfigError
from tfs_bench.run import machine

TF_WITH_GPU = machine.TensorFlowInfo("2.21.0", {"is_cuda_build": "True"}, ("/physical_device:GPU:0",))
TF_CPU_ONLY = machine.TensorFlowInfo("2.21.0", {"is_cuda_build": "False"}, ())


def test_nvml_reports_each_gpu_with_its_memory_and_the_driver():
    nvml = FakeNvml([device(total=141 * 2**30), device(total=80 * 2**30) | {"name": b"NVIDIA A100"}])
    gpus = machine.nvml_gpus(nvml)
    assert gpus == machine.GpuInfo(("NVIDIA H200", "NVIDIA A100"), (141 * 2**30, 80 * 2**30), "570.86.15")
    assert nvml.calls == ["init", "shutdown"]


def test_nvml_without_a_driver_or_a_gpu_says_why_and_does_not_raise():
    assert machine.nvml_gpus(FakeNvml([], init_error=RuntimeError("Driver Not Loaded"))).reason == (
        "nvmlInit failed: RuntimeError: Driver Not Loaded")
    assert machine.nvml_gpus(FakeNvml([])).reason == "NVML found no GPU"


@pytest.mark.parametrize(
    "requested, tensorflow, nvml_devices, devices",
    [
        ("auto", TF_WITH_GPU, [device()], ("cpu", "gpu")),
        ("auto", TF_CPU_ONLY, [device()], ("cpu",)),  # NVML sees a GPU TensorFlow cannot use
        ("auto", TF_WITH_GPU, [], ("cpu",)),
        ("cpu", TF_WITH_GPU, [device()], ("cpu",)),
        ("gpu", TF_WITH_GPU, [device()], ("gpu",)),
    ],
)
def test_devices_found(requested, tensorflow, nvml_devices, devices):
    found, note = machine.find_devices(requested, tensorflow, machine.nvml_gpus(FakeNvml(nvml_devices)))
    assert found == devices
    both_see_one = bool(nvml_devices and tensorflow.gpus)
    assert note.startswith("GPU found: NVIDIA H200" if both_see_one else "no GPU found")


def test_asking_for_a_gpu_where_there_is_none_names_why():
    with pytest.raises(ConfigError, match=exactly("--devices=gpu: no GPU found: NVML found no GPU")):
        machine.find_devices("gpu", TF_WITH_GPU, machine.nvml_gpus(FakeNvml([])))
    with pytest.raises(ConfigError, match="TensorFlow lists no GPU"):
        machine.find_devices("gpu", TF_CPU_ONLY, machine.nvml_gpus(FakeNvml([device()])))


def test_this_host_is_described_with_what_results_depend_on():
    facts = machine.host_facts()
    assert facts["logical_cpus"] >= facts["usable_cpus"] >= 1 and facts["memory_bytes"] > 0
    assert facts["cpu_model"] and facts["hostname"] and facts["python"].count(".") == 2
    versions = machine.package_versions()
    assert versions["grpcio"] and versions["psutil"] and set(versions) == set(machine.PACKAGES)
