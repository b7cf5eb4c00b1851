"""Per-request cost of the embedded server on a trivial model, and its peak Predict rate.

  python -m bench.server_overhead [--duration_s=10] [--concurrency=8]

On half_plus_two (three floats in, three out, so TensorFlow's own work is negligible):
- server CPU µs per Predict over gRPC and over REST (the server process's user+system CPU time
  over the measured window ÷ requests completed in it), and the client's, for comparison;
- peak Predict/s in closed loop, with server-side batching off and on, and with batching off and
  every op run in the handler's own thread (`--tensorflow_inter_op_parallelism=-1` beside an
  intra-op count, as TF Serving takes it) instead of TensorFlow's inter-op pool;
- the floor under the gRPC figure: grpcio's own server, measured the same way, with a handler that
  does nothing (bench.grpc_floor).
Client and server share this machine's cores, so the peak rates are lower bounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc

import numpy as np
import psutil
from absl import app
from absl import flags


from bench import bench_server
from bench import closed_loop
from tfs_bench import addresses
from tfs_bench.export import known_answer
from tfs_bench.launch import launchers
from tfs_bench.launch import ports
from tfs_bench.plan import placement
from tfs_bench.server import options

_DURATION = flags.DEFINE_float("duration_s", 10.0, "Measured seconds per figure.")
_WARMUP = flags.DEFINE_float("warmup_s", 2.0, "Unmeasured seconds first.")
_CONCURRENCY = flags.DEFINE_integer("concurrency", 8, "Requests in flight.", lower_bound=1)
_OUTPUT = flags.DEFINE_string("output", None, "Also write the figures as JSON here.")


_X = np.array([[1.0, 2.0, 5.0]], dtype=np.float32)
_FLOOR_READY_TIMEOUT_S = 30.0


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _payload() -> bytes:
    return closed_loop.predict_bytes(known_answer.MODEL_NAME, "x", _X)


def _measured(pid: int, loop) -> dict:
    # Server CPU is read around the whole loop (warm-up included) and divided by every request
    # the server answered in that time, which the loop's rate over the window approximates.
    before = _cpu_s(pid)
    result = loop()
    server_cpu = _cpu_s(pid) - before
    total_requests = result.requests_per_s * (_WARMUP.value + _DURATION.value)
    return {"requests_per_s": result.requests_per_s,
            "server_cpu_us_per_request": 1e6 * server_cpu / total_requests,
            "client_cpu_us_per_request": result.client_cpu_us_per_request}


def _measure(server: launchers.RunningServer, protocol: str) -> dict:
    def loop():
        if protocol == "grpc":
            return closed_loop.grpc_loop(server.grpc_target, _payload(), _CONCURRENCY.value, _WARMUP.value,
                                         _DURATION.value)
        rest = addresses.parse(server.rest_address)
        return closed_loop.rest_loop(rest.host, rest.port, known_answer.MODEL_NAME, closed_loop.rest_body(_X, "x"),
                                     _CONCURRENCY.value, _WARMUP.value, _DURATION.value)

    return {"protocol": protocol, **_measured(server.pid, loop)}


def _measure_grpc_floor(max_workers: int) -> dict:
    """grpcio's own cost: the same kind of server, a handler that does nothing (bench.grpc_floor)."""
    port = ports.free_port_base(1)
    target = f"127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.grpc_floor", f"--port={port}", f"--max_workers={max_workers}"]
    )
    try:
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=_FLOOR_READY_TIMEOUT_S)
        return {"protocol": "grpc", **_measured(process.pid, lambda: closed_loop.grpc_loop(
            target, _payload(), _CONCURRENCY.value, _WARMUP.value, _DURATION.value))}
    finally:
        process.terminate()
        process.wait(timeout=_FLOOR_READY_TIMEOUT_S)


def main(argv):
    del argv
    rows = []
    batching = placement.BatchingSpec(max_batch_size=32, batch_timeout_micros=1000, num_batch_threads=2)
    callers_thread = placement.Threads(intra_op=os.cpu_count() or 1, inter_op=-1)
    setups = (("batching off", None, placement.Threads()), ("batching on", batching, placement.Threads()),
              ("caller's thread", None, callers_thread))
    for label, spec, threads in setups:
        with bench_server.half_plus_two_server(batching=spec, threads=threads) as server:
            for protocol in ("grpc", "rest"):
                row = {"batching": spec is not None, "inter_op": threads.inter_op, **_measure(server, protocol)}
                rows.append(row)
                print(f"{label:>15}, {protocol:>4}: {row['requests_per_s']:7.0f} Predict/s, server "
                      f"{row['server_cpu_us_per_request']:5.0f} CPU µs/request, client "
                      f"{row['client_cpu_us_per_request']:5.0f} CPU µs/request", flush=True)
    floor = {"batching": None, **_measure_grpc_floor(options.GRPC_MIN_THREADS)}
    rows.append(floor)
    print(f"   grpcio floor, grpc: {floor['requests_per_s']:7.0f} Predict/s, server "
          f"{floor['server_cpu_us_per_request']:5.0f} CPU µs/request (a handler that does nothing)", flush=True)
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
