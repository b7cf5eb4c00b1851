"""CPU time to turn a received gRPC PredictRequest into the arrays fed to TensorFlow.

  python -m bench.request_decode [--batch_sizes=1,8] [--repeats=5]

For half_plus_two's three floats and for batches of 224 px images (float32 and uint8), times two
ways of reading the same serialized request, in this process, best of `--repeats` runs:
- protobuf: `PredictRequest.FromString`, then `tensors.to_numpy` on each input (which reads the
  tensor_content field: a copy), as the server read requests before `predict_wire`;
- predict_wire: `predict_wire.parse`, then `tensors.to_numpy` on the content it left in the
  received bytes, as the server reads them now.
Both produce equal arrays (checked before timing). No network and no model run: this is the
decoding the serving tax pays per request on top of TensorFlow's work.
"""

from __future__ import annotations

import time

import numpy as np
from absl import app
from absl import flags

from bench import closed_loop
from tfs_bench.server import predict_wire
from tfs_bench.server import tensors

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Images per request.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per figure; the best is printed.", lower_bound=1)
_RUN_S = flags.DEFINE_float("run_s", 0.5, "Seconds per timed run (at least 20 decodes).")


def _with_protobuf(data: bytes) -> np.ndarray:
    from tensorflow_serving.apis import predict_pb2

    return tensors.to_numpy(predict_pb2.PredictRequest.FromString(data).inputs["x"])


def _with_predict_wire(data: bytes) -> np.ndarray:
    received = predict_wire.parse(data)
    return tensors.to_numpy(received.request.inputs["x"], content=received.contents.get("x"))


def _best_us(decode, data: bytes) -> float:
    decode(data)
    once = time.perf_counter()
    decode(data)
    count = max(20, int(_RUN_S.value / max(time.perf_counter() - once, 1e-7)))
    best = float("inf")
    for _ in range(_REPEATS.value):
        start = time.process_time()
        for _ in range(count):
            decode(data)
        best = min(best, (time.process_time() - start) / count)
    return best * 1e6


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    cases = [("half_plus_two [1, 3] float32", np.array([[1.0, 2.0, 5.0]], dtype=np.float32))]
    for batch in map(int, _BATCH_SIZES.value):
        pixels = rng.random((batch, 224, 224, 3)) * 255
        cases.append((f"[{batch}, 224, 224, 3] float32", pixels.astype(np.float32)))
        cases.append((f"[{batch}, 224, 224, 3] uint8", pixels.astype(np.uint8)))
    print("CPU µs per request decoded (best of runs): protobuf whole, predict_wire")
    for name, array in cases:
        data = closed_loop.predict_bytes("m", "x", array)  # the content as tensor_content
        np.testing.assert_array_equal(_with_protobuf(data), _with_predict_wire(data))
        old, new = _best_us(_with_protobuf, data), _best_us(_with_predict_wire, data)
        print(f"{name:>30} ({len(data) / 2**20:6.2f} MiB): {old:8.1f} {new:8.1f}", flush=True)


if __name__ == "__main__":
    app.run(main)
