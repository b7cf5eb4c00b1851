"""Measures a SavedModel's load time and memory in a fresh process.

Run as `python -m tfs_bench.export.footprint SAVEDMODEL_DIR`; prints one JSON object on stdout. A fresh
process is the only honest way to see a model's own memory: the exporting process already holds
the Keras model and TensorFlow's caches.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from tfs_bench.child_process import child_env
from tfs_bench.child_process import module_argv
from tfs_bench.errors import ModelError
from tfs_bench.export.modelcard import Footprint

_TIMEOUT_S = 600


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _measure(savedmodel_dir: str) -> dict:
    import numpy as np
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:  # otherwise TensorFlow reserves nearly all memory and the peak means nothing
        tf.config.experimental.set_memory_growth(gpu, True)
    baseline = _current_rss_bytes()
    start = time.perf_counter()
    loaded = tf.saved_model.load(savedmodel_dir)
    serve = loaded.signatures["serving_default"]
    _, input_specs = serve.structured_input_signature
    feeds = {}
    for name, spec in input_specs.items():
        shape = [1 if d is None else d for d in spec.shape]
        feeds[name] = tf.constant(np.zeros(shape, dtype=spec.dtype.as_numpy_dtype))
    serve(**feeds)  # the first call builds kernels and allocates; part of being ready to serve
    load_time_s = time.perf_counter() - start
    peak = _peak_rss_bytes()
    gpu_peak = None
    if gpus:
        gpu_peak = int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    return Footprint(
        load_time_s=round(load_time_s, 4),
        peak_rss_bytes=peak,
        rss_increase_bytes=max(0, peak - baseline),
        gpu_peak_bytes=gpu_peak,
        device="gpu" if gpus else "cpu",
    ).to_json()


def measure_in_fresh_process(savedmodel_dir: str | os.PathLike) -> Footprint:
    cmd = module_argv("tfs_bench.export.footprint", os.fspath(savedmodel_dir))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, env=child_env())
    except subprocess.TimeoutExpired:
        raise ModelError(f"measuring {savedmodel_dir} took over {_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ModelError(f"could not load {savedmodel_dir} in a fresh process:\n{tail}")
    return Footprint.from_json(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tfs_bench.export.footprint SAVEDMODEL_DIR", file=sys.stderr)
        return 2
    print(json.dumps(_measure(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
