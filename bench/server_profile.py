"""The embedded server's own work per Predict, in one process, for a profiler to look at.

  python -m bench.server_profile [--duration_s=8] [--callers_thread]
  py-spy record -r 500 -f raw -o predict.raw -- python -m bench.server_profile --duration_s=8
  python -m bench.server_profile --summarize=predict.raw

Serialized Predict requests for half_plus_two go straight to the gRPC servicer (parse, Predict,
serialize the response), with metrics on and no network, so a profile holds only the server's
work; the loop prints wall-clock and CPU µs per request. `--callers_thread` runs each op in the
thread that calls the Session (`--tensorflow_inter_op_parallelism=-1` beside an intra-op count,
as the server takes it) instead of TensorFlow's inter-op pool. `--summarize` reads a py-spy raw
profile and prints, for the frames under the loop, the share of samples each function was on
the stack for.
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

_DURATION = flags.DEFINE_float("duration_s", 8.0, "Seconds of measured requests.")
_SUMMARIZE = flags.DEFINE_string("summarize", None, "A py-spy raw profile to summarize instead.")
_TOP = flags.DEFINE_integer("top", 25, "Functions printed by --summarize.")
_CALLERS_THREAD = flags.DEFINE_boolean(
    "callers_thread", False, "Run each op in the calling thread, not in TensorFlow's inter-op pool.")

_LOOP_FRAME = "_one_request"


class _Context:
    """The part of grpc.ServicerContext the servicer uses."""

    def time_remaining(self):
        return 60.0

    def abort(self, code, message):
        raise RuntimeError(f"{code}: {message}")


def _loop(duration_s: float, callers_thread: bool) -> tuple[float, float]:
    """(wall-clock µs, CPU µs) per request."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from tfs_bench.export import known_answer
    from tfs_bench.server import devices, grpc_service, inference, metrics, predict, predict_wire, servables

    if callers_thread:
        devices.configure_threads(os.cpu_count() or 1, -1)

    with tempfile.TemporaryDirectory(prefix="server_profile.") as tmp:
        base = known_answer.write_models(tmp)
        servable = servables.load(known_answer.MODEL_NAME, 1, str(base / "1"))

    class OneModel:
        def find(self, name, version=None, label=None):
            return servable

    service = grpc_service.PredictionService(
        inference.Inference(predict.Predictor(OneModel(), None, metrics.ServerMetrics()))
    )
    request = predict_pb2.PredictRequest()
    request.model_spec.name = known_answer.MODEL_NAME
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0, 2.0, 5.0]], np.float32)))
    payload, context = request.SerializeToString(), _Context()

    def _one_request():
        return service.Predict(predict_wire.parse(payload), context).SerializeToString()

    for _ in range(500):
        _one_request()
    count, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < duration_s:
        _one_request()
        count += 1
    return (time.perf_counter() - start) / count * 1e6, (time.process_time() - cpu_start) / count * 1e6


def _short(frame: str) -> str:
    match = re.match(r"(.*) \((.*):\d+\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    path = path.split("site-packages/")[-1]
    for root in ("tfs_bench/", "bench/"):
        if f"/{root}" in path:
            path = root + path.split(f"/{root}", 1)[1]
    return f"{name} ({path})"


def summarize(path: str, top: int) -> list[tuple[float, str]]:
    """(share of the loop's samples, function) for the functions most often on the stack below it."""
    on_stack, total = collections.Counter(), 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            loop = next((i for i, frame in enumerate(frames) if _LOOP_FRAME in frame), None)
            if loop is None:
                continue
            frames = frames[loop + 1:]  # what one request calls, not the frames around the loop
            total += int(count)
            for frame in {_short(frame) for frame in frames}:
                on_stack[frame] += int(count)
    if not total:
        raise SystemExit(f"{path}: no samples under {_LOOP_FRAME}; was it recorded from this script?")
    return [(count / total, frame) for frame, count in on_stack.most_common(top)]


def main(argv):
    del argv
    if _SUMMARIZE.value:
        for share, frame in summarize(_SUMMARIZE.value, _TOP.value):
            print(f"{share:6.1%}  {frame}")
        return
    wall_us, cpu_us = _loop(_DURATION.value, _CALLERS_THREAD.value)
    where = "each op in the calling thread" if _CALLERS_THREAD.value else "TensorFlow's inter-op pool"
    print(f"in-process Predict ({where}): {wall_us:.1f} µs per request, {cpu_us:.1f} CPU µs per request")


if __name__ == "__main__":
    app.run(main)
