"""What NVML says about the machine's GPUs; None wherever NVML or a GPU is missing.

`nvml` parameters take the `pynvml` module (from nvidia-ml-py); tests pass a fake with the same
functions, which is the narrowest seam between us and the driver.
"""

from __future__ import annotations


def _default_nvml():
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def total_memory_bytes(index: int = 0, nvml=None) -> int | None:
    """Memory of GPU `index`, or None without NVML, a driver or that GPU."""
    nvml = nvml or _default_nvml()
    if nvml is None:
        return None
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable GPU
        return None
    try:
        if index >= nvml.nvmlDeviceGetCount():
            return None
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        return int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
    finally:
        nvml.nvmlShutdown()
