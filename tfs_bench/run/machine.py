"""What this host is, and which devices an experiment can use on it.

A GPU is used only where both TensorFlow and NVML see one: TensorFlow must be able to place ops on
it, and NVML must be able to report it (the monitors and the planner's memory fractions need it).
TensorFlow is asked in a child process (`python -m tfs_bench.run.machine`), so the runner never
imports it; NVML through the `nvml` module passed in (pynvml by default, a fake in tests).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping

import psutil

from tfs_bench.child_process import child_env
from tfs_bench.child_process import module_argv
from tfs_bench.errors import ConfigError
from tfs_bench.errors import ModelError

PROBE_TIMEOUT_S = 120
PACKAGES = ("tensorflow", "tensorflow-serving-api", "grpcio", "protobuf", "numpy", "psutil", "absl-py", "nvidia-ml-py")


@dataclasses.dataclass(frozen=True)
class TensorFlowInfo:
    version: str
    build_info: Mapping[str, str]  # tf.sysconfig.get_build_info(), as text
    gpus: tuple[str, ...]  # physical GPU device names TensorFlow lists

    def to_json(self) -> dict:
        return {"version": self.version, "build_info": dict(self.build_info), "gpus": list(self.gpus)}


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """What NVML reports: each GPU's name and memory, and the driver; or why there is none."""

    names: tuple[str, ...] = ()
    memory_bytes: tuple[int, ...] = ()
    driver: str | None = None
    reason: str | None = None  # why NVML reports no GPU

    def to_json(self) -> dict:
        return {"names": list(self.names), "memory_bytes": list(self.memory_bytes), "driver": self.driver, "reason": self.reason}


def probe_tensorflow() -> TensorFlowInfo:
    """TensorFlow's version, build info and GPUs, from a fresh process; raises ModelError if it cannot start."""
    try:
        proc = subprocess.run(
            module_argv("tfs_bench.run.machine"), capture_output=True, text=True, env=child_env(), timeout=PROBE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise ModelError(f"TensorFlow did not start within {PROBE_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ModelError(f"TensorFlow could not be imported:\n{tail}")
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    return TensorFlowInfo(d["version"], d["build_info"], tuple(d["gpus"]))


def nvml_gpus(nvml=None) -> GpuInfo:
    """The GPUs NVML sees; never raises (no library, no driver, no GPU: the reason says which)."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return GpuInfo(reason="pynvml (nvidia-ml-py) is not installed")
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return GpuInfo(reason=f"nvmlInit failed: {type(e).__name__}: {e}")
    try:
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        if not handles:
            return GpuInfo(reason="NVML found no GPU")
        names = tuple(_text(nvml.nvmlDeviceGetName(h)) for h in handles)
        memory = tuple(int(nvml.nvmlDeviceGetMemoryInfo(h).total) for h in handles)
        return GpuInfo(names, memory, _text(nvml.nvmlSystemGetDriverVersion()))
    except Exception as e:
        return GpuInfo(reason=f"querying the GPUs failed: {type(e).__name__}: {e}")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # a driver that went away while we asked is not our failure
            pass


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def find_devices(requested: str, tensorflow: TensorFlowInfo, gpus: GpuInfo) -> tuple[tuple[str, ...], str]:
    """(devices to measure, a sentence on the GPU) for --devices=auto|cpu|gpu; ConfigError when
    gpu is asked for and there is none."""
    if tensorflow.gpus and gpus.names:
        found = f"GPU found: {', '.join(gpus.names)} (driver {gpus.driver}; TensorFlow sees {len(tensorflow.gpus)})"
        has_gpu = True
    else:
        why = gpus.reason if not gpus.names else "TensorFlow lists no GPU (a CPU-only build, or CUDA is missing)"
        found = f"no GPU found: {why}"
        has_gpu = False
    if requested == "cpu":
        return ("cpu",), found
    if requested == "gpu":
        if not has_gpu:
            raise ConfigError(f"--devices=gpu: {found}")
        return ("gpu",), found
    return (("cpu", "gpu") if has_gpu else ("cpu",)), found


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def host_facts() -> dict:
    """The hardware and software a result depends on (the manifest's `host`)."""
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "logical_cpus": psutil.cpu_count(logical=True),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    build = {k: str(v) for k, v in tf.sysconfig.get_build_info().items()}
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    print(json.dumps({"version": tf.__version__, "build_info": build, "gpus": gpus}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
