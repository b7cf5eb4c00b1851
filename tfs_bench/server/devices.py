"""TensorFlow's thread pools and GPU memory limits, set before any model loads.

`--per_process_gpu_memory_fraction` becomes a logical-device memory limit on every visible GPU:
TF2 has no per-process fraction, but a limit of fraction x total memory has the same effect on how
much the process may take. The TF and NVML calls are parameters so tests can fake a GPU list.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

from absl import logging

_MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class GpuMemoryLimit:
    device_name: str
    total_bytes: int
    limit_mib: int


def configure_threads(intra_op: int, inter_op: int, tf_config=None) -> None:
    """Sets the process-wide pools (0 keeps TF's default); must precede any TF op.

    A negative `inter_op` is TensorFlow's "run every op in the caller's thread" (ConfigProto's
    inter_op_parallelism_threads): a Session run then costs no hand-off to the inter-op pool and back.
    """
    tf_config = tf_config or _tf_config()
    if intra_op > 0:
        tf_config.threading.set_intra_op_parallelism_threads(intra_op)
    if inter_op != 0:
        tf_config.threading.set_inter_op_parallelism_threads(inter_op)


def limit_gpu_memory(
    fraction: float,
    tf_config=None,
    total_memory_bytes: Callable[[int], int] | None = None,
) -> list[GpuMemoryLimit]:
    """Applies `fraction` to every visible GPU; returns what was set ([] when not applicable).

    `total_memory_bytes(i)` gives the memory of the i-th visible GPU (NVML by default).
    """
    if fraction <= 0:
        return []
    tf_config = tf_config or _tf_config()
    gpus = tf_config.list_physical_devices("GPU")
    if not gpus:
        logging.info("--per_process_gpu_memory_fraction=%g: not applicable, no GPU is visible", fraction)
        return []
    total_memory_bytes = total_memory_bytes or nvml_total_memory_bytes
    limits = []
    for index, gpu in enumerate(gpus):
        total = total_memory_bytes(index)
        limit = GpuMemoryLimit(gpu.name, total, int(fraction * total / _MIB))
        tf_config.set_logical_device_configuration(
            gpu, [tf_config.LogicalDeviceConfiguration(memory_limit=limit.limit_mib)]
        )
        logging.info("GPU %s: memory limit %d MiB of %d MiB", gpu.name, limit.limit_mib, total // _MIB)
        limits.append(limit)
    return limits


def nvml_total_memory_bytes(visible_index: int) -> int:
    """Total memory of the visible_index-th GPU TensorFlow sees, from NVML."""
    import pynvml  # only on machines that have GPUs

    pynvml.nvmlInit()
    try:
        handle = _nvml_handle(pynvml, _physical_device(visible_index))
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
    finally:
        pynvml.nvmlShutdown()


def _physical_device(visible_index: int) -> str:
    # CUDA numbers only the devices in CUDA_VISIBLE_DEVICES (indices or UUIDs); NVML numbers all.
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return visible[visible_index] if visible_index < len(visible) else str(visible_index)


def _nvml_handle(pynvml, device: str):
    if device.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(device))
    return pynvml.nvmlDeviceGetHandleByUUID(device)


def _tf_config():
    import tensorflow as tf  # the server imports TF only after its flags are valid

    return tf.config
