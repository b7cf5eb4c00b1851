"""A minimal closed-loop client for the server benchmarks: N threads, one request each in flight.

The benchmarks measure the server, so the client does as little as it can: the request is
serialised once and sent as bytes, responses are not parsed (only their status is checked), and
its own CPU time is reported so a reader can see it was not the bottleneck.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import resource
import threading
import time

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
_UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


@dataclasses.dataclass(frozen=True)
class LoopResult:
    requests: int
    duration_s: float
    client_cpu_s: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    @property
    def client_cpu_us_per_request(self) -> float:
        return 1e6 * self.client_cpu_s / self.requests


def predict_bytes(model: str, input_name: str, array: np.ndarray) -> bytes:
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(array))
    return request.SerializeToString()


def rest_body(array: np.ndarray, input_name: str) -> bytes:
    return json.dumps({"inputs": {input_name: array.tolist()}}).encode()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_threads(send_factory, concurrency: int, warmup_s: float, duration_s: float) -> LoopResult:
    """Each thread calls its own `send()` in a loop; counts completions inside the window."""
    start_at = time.perf_counter() + warmup_s
    stop_at = start_at + duration_s
    counts = [0] * concurrency
    errors: list[BaseException] = []

    def worker(index: int):
        send = send_factory()
        try:
            while True:
                send()
                now = time.perf_counter()
                if now >= stop_at:
                    return
                if now >= start_at:
                    counts[index] += 1
        except BaseException as e:  # surfaced below: a failed request invalidates the figure
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    # The client's CPU is read around the measured window only (threads are warm by then).
    _wait_until(start_at)
    cpu_start = _cpu_s()
    _wait_until(stop_at)
    cpu_end = _cpu_s()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"a request failed during the benchmark: {errors[0]!r}")
    return LoopResult(sum(counts), duration_s, cpu_end - cpu_start)


def _wait_until(deadline: float) -> None:
    event = threading.Event()
    while (left := deadline - time.perf_counter()) > 0:
        event.wait(left)


def grpc_loop(target: str, payload: bytes, concurrency: int, warmup_s: float, duration_s: float) -> LoopResult:
    channel = grpc.insecure_channel(target, options=_UNLIMITED)
    call = channel.unary_unary(PREDICT_METHOD)  # bytes in, bytes out: no client-side (de)serialising
    call(payload, timeout=60)  # fail fast on a bad request, before any thread starts
    try:
        return _run_threads(lambda: lambda: call(payload, timeout=60), concurrency, warmup_s, duration_s)
    finally:
        channel.close()


def rest_loop(host: str, port: int, model: str, body: bytes, concurrency: int, warmup_s: float,
              duration_s: float) -> LoopResult:
    path = f"/v1/models/{model}:predict"
    headers = {"Content-Type": "application/json"}

    def factory():
        connection = http.client.HTTPConnection(host, port, timeout=60)

        def send():
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"REST predict answered HTTP {response.status}")

        return send

    factory()()  # one checked request first
    return _run_threads(factory, concurrency, warmup_s, duration_s)


def grpc_requests(target: str, payload: bytes, count: int) -> None:
    """Sends `count` requests one after another (for warming a model, not for timing)."""
    with grpc.insecure_channel(target, options=_UNLIMITED) as channel:
        call = channel.unary_unary(PREDICT_METHOD)
        for _ in range(count):
            call(payload, timeout=60)
