"""Per-request cost of the embedded server on a trivial model, and its peak Predict rate.

  python -m bench.server_overhead [--duration_s=10] [--concurrency=8]

On half_plus_two (three floats in, three out, so TensorFlow's own work is negligible):
- server CPU µs per Predict over gRPC and over REST (the server process's user+system CPU time
  over the measured window ÷ requests completed in it), and the client's, for comparison;
- peak Predict/s in closed loop, with server-side batching off and on.
Client and server share this machine's cores, so the peak rates are lower bounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psutil
from absl import app
from absl import flags


from bench import bench_server
from bench import closed_loop
from tfs_bench import addresses
from tfs_bench.export import known_answer
from tfs_bench.launch import launchers
from tfs_bench.plan import placement

_DURATION = flags.DEFINE_float("duration_s", 10.0, "Measured seconds per figure.")
_WARMUP = flags.DEFINE_float("warmup_s", 2.0, "Unmeasured seconds first.")
_CONCURRENCY = flags.DEFINE_integer("concurrency", 8, "Requests in flight.", lower_bound=1)
_OUTPUT = flags.DEFINE_string("output", None, "Also write the figures as JSON here.")


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _measure(server: launchers.RunningServer, protocol: str) -> dict:
    x = np.array([[1.0, 2.0, 5.0]], dtype=np.float32)
    before = None

    def loop():
        if protocol == "grpc":
            payload = closed_loop.predict_bytes(known_answer.MODEL_NAME, "x", x)
            return closed_loop.grpc_loop(server.grpc_target, payload, _CONCURRENCY.value, _WARMUP.value,
                                         _DURATION.value)
        rest = addresses.parse(server.rest_address)
        return closed_loop.rest_loop(rest.host, rest.port, known_answer.MODEL_NAME, closed_loop.rest_body(x, "x"),
                                     _CONCURRENCY.value, _WARMUP.value, _DURATION.value)

    # Server CPU is read around the whole loop (warm-up included) and divided by every request
    # the server answered in that time, which the loop's rate over the window approximates.
    before = _cpu_s(server.pid)
    result = loop()
    server_cpu = _cpu_s(server.pid) - before
    total_requests = result.requests_per_s * (_WARMUP.value + _DURATION.value)
    return {"protocol": protocol, "requests_per_s": result.requests_per_s,
            "server_cpu_us_per_request": 1e6 * server_cpu / total_requests,
            "client_cpu_us_per_request": result.client_cpu_us_per_request}


def main(argv):
    del argv
    rows = []
    batching = placement.BatchingSpec(max_batch_size=32, batch_timeout_micros=1000, num_batch_threads=2)
    for label, spec in (("batching off", None), ("batching on", batching)):
        with bench_server.half_plus_two_server(batching=spec) as server:
            for protocol in ("grpc", "rest"):
                row = {"batching": spec is not None, **_measure(server, protocol)}
                rows.append(row)
                print(f"{label:>12}, {protocol:>4}: {row['requests_per_s']:7.0f} Predict/s, server "
                      f"{row['server_cpu_us_per_request']:5.0f} CPU µs/request, client "
                      f"{row['client_cpu_us_per_request']:5.0f} CPU µs/request", flush=True)
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
