"""Raw throughput: a SavedModel run in-process by TensorFlow, no RPC, no serving framework.

The model runs as TF Serving runs it, in a Session (see `_session_callable`), with `concurrency`
threads calling it at once.

This is the denominator of the serving tax (served throughput / raw throughput). TensorFlow's
thread pools can only be sized before it starts, so each measurement runs in a fresh process:

`measure_in_fresh_process(RawRequest(...))` runs `python -m tfs_bench.load.raw_throughput REQUEST_JSON`,
which prints one JSON object: images_per_s, batches, duration_s, mean_batch_latency_ms.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time

from tfs_bench.child_process import child_env
from tfs_bench.child_process import module_argv
from tfs_bench.errors import ModelError

_TIMEOUT_MARGIN_S = 120


@dataclasses.dataclass(frozen=True)
class RawResult:
    images_per_s: float
    batches: int
    duration_s: float
    mean_batch_latency_ms: float

    def __post_init__(self):
        if self.batches <= 0 or self.duration_s <= 0:
            raise ValueError(f"a raw measurement needs batches and time, got {self}")


def _inputs(signature_def, batch_size: int, seed: int) -> list:
    """Random pixels for each input of the signature, in its sorted alias order."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    feeds = []
    for _, info in sorted(signature_def.inputs.items()):
        shape = [batch_size if d.size < 0 else d.size for d in info.tensor_shape.dim]
        dtype = tf.dtypes.as_dtype(info.dtype)
        if dtype.is_integer:
            values = rng.integers(0, 256, size=shape).astype(dtype.as_numpy_dtype)
        else:
            values = (rng.random(size=shape) * 255).astype(dtype.as_numpy_dtype)
        feeds.append(values)
    return feeds


def _session_callable(savedmodel: str):
    """serving_default as TF Serving runs it: the MetaGraph in a Session, one MakeCallable.

    The cheapest call TensorFlow offers (no per-call argument binding, unlike a restored
    tf.function), so the serving tax is measured against TensorFlow at its best; returns
    (callable, signature_def).
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2

    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], savedmodel)
    signature_def = meta_graph.signature_def["serving_default"]
    options = config_pb2.CallableOptions(
        feed=[info.name for _, info in sorted(signature_def.inputs.items())],
        fetch=[info.name for _, info in sorted(signature_def.outputs.items())],
    )
    return session._make_callable_from_options(options), signature_def  # pylint: disable=protected-access


def _measure(request: "RawRequest") -> RawResult:
    call, signature_def = _session_callable(request.savedmodel)
    feeds = _inputs(signature_def, request.batch_size, request.seed)
    warm_until = time.perf_counter() + request.warmup_s
    while time.perf_counter() < warm_until:
        call(*feeds)
    counts = [0] * request.concurrency
    busy_ns = [0] * request.concurrency
    start = time.perf_counter()
    stop_at = start + request.duration_s

    def worker(index: int):
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter_ns()
            call(*feeds)  # returns numpy arrays: the results are copied out, as a server's are
            busy_ns[index] += time.perf_counter_ns() - t0
            counts[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(request.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    batches = sum(counts)
    return RawResult(
        images_per_s=batches * request.batch_size / elapsed,
        batches=batches,
        duration_s=elapsed,
        mean_batch_latency_ms=sum(busy_ns) / batches / 1e6,
    )


@dataclasses.dataclass(frozen=True)
class RawRequest:
    savedmodel: str
    batch_size: int = 1
    duration_s: float = 10.0
    warmup_s: float = 2.0
    concurrency: int = 1  # callers at once, as a saturated server's request threads
    intra_op: int = 0  # TensorFlow's pools; 0 lets TensorFlow decide
    inter_op: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.batch_size < 1 or self.concurrency < 1 or self.duration_s <= 0 or self.warmup_s < 0:
            raise ValueError(f"invalid raw throughput request: {self}")
        if self.intra_op < 0 or self.inter_op < 0:
            raise ValueError("thread counts must be >= 0")


def measure_in_fresh_process(request: RawRequest) -> RawResult:
    cmd = module_argv("tfs_bench.load.raw_throughput", json.dumps(dataclasses.asdict(request)))
    timeout = request.warmup_s + request.duration_s + _TIMEOUT_MARGIN_S
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ModelError(f"raw throughput of {request.savedmodel} took over {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ModelError(f"raw throughput of {request.savedmodel} failed:\n{tail}")
    return RawResult(**json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tfs_bench.load.raw_throughput REQUEST_JSON (see measure_in_fresh_process)", file=sys.stderr)
        return 2
    request = RawRequest(**json.loads(argv[1]))
    import tensorflow as tf

    # Before any op runs: the pools are fixed at TensorFlow's first use.
    tf.config.threading.set_intra_op_parallelism_threads(request.intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(request.inter_op)
    print(json.dumps(dataclasses.asdict(_measure(request))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
