"""Hostile input against the embedded server, with the figures docs/reliability.md quotes.

  python -m bench.hostile_input [--grpc_inputs=10000] [--rest_inputs=2500] [--output=FILE.json]

One embedded server (the TF1-style half_plus_two_tf1, Session-fed, at its default limits except
a 5 s REST idle timeout, so the idle-connection phase ends sooner) takes, in order:
1. --grpc_inputs seeded PredictRequests from bench/hostile_inputs.py (wrong dtypes, value counts
   against shapes, huge, negative and too many dimensions, oversized strings and names, missing
   fields, unknown models, versions, labels, signatures);
2. targeted gRPC attacks: a 45-byte Predict asking for a 1 GiB tensor (three at once), a 100 kB
   model name, an undecodable message;
3. --rest_inputs seeded REST requests (malformed and deeply nested JSON, huge numbers, paths with
   traversal and escapes, odd verbs);
4. REST connection attacks: 1,000 idle connections, a burst of 200 connecting at once, a half-sent
   body, an 8 GB Content-Length, a 30 MiB JSON body.
Throughout, a bystander client sends one valid Predict every 20 ms and records its latency and
failures, and a sampler records the server's RSS and thread count every 100 ms. The run passes
when the server never dies, every input gets a status from the allowed set, memory stays within
--max_rss_growth_mib of the start, and the bystander is never refused.
"""

from __future__ import annotations

import collections
import concurrent.futures
import http.client
import json
import select
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import psutil
from absl import app
from absl import flags
from hypothesis import HealthCheck, given, settings
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from bench import hostile_inputs
from tfs_bench import addresses
from tfs_bench.export import tf1_known_answer
from tfs_bench.launch import launchers
from tfs_bench.server import rest

_GRPC_INPUTS = flags.DEFINE_integer("grpc_inputs", 10_000, "Hostile gRPC Predicts.", lower_bound=0)
_REST_INPUTS = flags.DEFINE_integer("rest_inputs", 2_500, "Hostile REST requests.", lower_bound=0)
_IDLE_CONNECTIONS = flags.DEFINE_integer("idle_connections", 1_000, "Idle REST connections opened at once.")
_MAX_RSS_GROWTH_MIB = flags.DEFINE_float(
    "max_rss_growth_mib", 2048.0,
    "Largest RSS growth that passes (the 30 MiB JSON body alone takes about 1.2 GiB while it is parsed).",
)
_OUTPUT = flags.DEFINE_string("output", None, "Also write the figures here as JSON.")
_REST_JSON_WORKERS = flags.DEFINE_integer(
    "rest_json_workers", None, "The server's --rest_json_workers (default: the server's; 0: parse in the server).",
    lower_bound=0,
)

MODEL = tf1_known_answer.MODEL_NAME
IDLE_TIMEOUT_S = 5.0


class Sampler:
    """The server's RSS (with its JSON worker processes') and threads every 100 ms, on a thread of its own."""

    def __init__(self, pid: int):
        self._process = psutil.Process(pid)
        self.start_rss = self.rss()
        self.peak_rss = self.start_rss
        self.peak_threads = self._process.num_threads()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.1):
            try:
                self.peak_rss = max(self.peak_rss, self.rss())
                self.peak_threads = max(self.peak_threads, self._process.num_threads())
            except psutil.Error:
                return

    def rss(self) -> int:
        total = self._process.memory_info().rss
        for child in self._process.children():
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass  # exited meanwhile
        return total

    def threads(self) -> int:
        return self._process.num_threads()

    def stop(self):
        self._stop.set()
        self._thread.join()


def valid_request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=1)
    tensor.tensor_shape.dim.add(size=1)
    tensor.float_val.append(2.0)
    return request


class Bystander:
    """An ordinary client beside the attack: one valid Predict every 20 ms."""

    def __init__(self, target: str):
        self._channel = grpc.insecure_channel(target)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.latencies_ms: list[float] = []
        self.failures: collections.Counter = collections.Counter()
        self._phase_marks: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        request = valid_request()
        while not self._stop.wait(0.02):  # pacing of an ordinary client, not a synchronisation
            started = time.perf_counter()
            try:
                response = self._stub.Predict(request, timeout=10)
                if list(response.outputs["y"].float_val) != [3.0]:
                    self.failures["wrong answer"] += 1
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
            except grpc.RpcError as e:
                self.failures[e.code().name] += 1

    def mark(self, phase: str):
        self._phase_marks.append((phase, len(self.latencies_ms)))

    def by_phase(self) -> dict[str, dict]:
        marks = self._phase_marks + [("end", len(self.latencies_ms))]
        out = {}
        for (phase, start), (_, end) in zip(marks, marks[1:]):
            chunk = np.array(self.latencies_ms[start:end])
            if chunk.size:
                out[phase] = {"requests": int(chunk.size), "p50_ms": round(float(np.median(chunk)), 2),
                              "max_ms": round(float(chunk.max()), 1)}
        return out

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._channel.close()


def grpc_fuzz(target: str, count: int) -> dict:
    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    codes: collections.Counter = collections.Counter()
    unexpected: list[str] = []
    longest = 0

    @settings(max_examples=count, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(request=hostile_inputs.predict_requests(MODEL))
    def send(request):
        nonlocal longest
        try:
            stub.Predict(request, timeout=30)
            codes["OK"] += 1
        except grpc.RpcError as e:
            codes[e.code().name] += 1
            longest = max(longest, len(e.details() or ""))
            if e.code() not in hostile_inputs.CLIENT_ERROR_CODES and len(unexpected) < 5:
                unexpected.append(f"{e.code().name}: {(e.details() or '')[:200]}")

    if count:
        send()
    channel.close()
    return {"inputs": sum(codes.values()), "codes": dict(codes.most_common()),
            "unexpected": unexpected, "longest_message": longest}


def grpc_attacks(target: str, sampler: Sampler) -> dict:
    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def code_of(request) -> str:
        try:
            stub.Predict(request, timeout=30)
            return "OK"
        except grpc.RpcError as e:
            return e.code().name

    huge = predict_pb2.PredictRequest()
    huge.model_spec.name = MODEL
    huge.inputs["x"].dtype = types_pb2.DT_FLOAT
    huge.inputs["x"].tensor_shape.dim.add(size=2**26)
    huge.inputs["x"].tensor_shape.dim.add(size=4)
    huge.inputs["x"].float_val.append(1.0)
    before = sampler.rss()
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        amplification = list(pool.map(code_of, [huge] * 9))
    growth = sampler.rss() - before
    long_name = valid_request()
    long_name.model_spec.name = "m" * 100_000
    raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)
        undecodable = "OK"
    except grpc.RpcError as e:
        undecodable = e.code().name
    result = {
        "amplification": {"request_bytes": huge.ByteSize(), "asks_bytes": 2**28 * 4, "codes": amplification,
                          "rss_growth_mib": round(growth / 2**20, 1)},
        "name_100kB": code_of(long_name),
        "undecodable": undecodable,
    }
    channel.close()
    return result


def rest_fuzz(host: str, port: int, count: int) -> dict:
    statuses: collections.Counter = collections.Counter()
    unanswered: list[str] = []

    @settings(max_examples=count, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(route=hostile_inputs.rest_paths(MODEL), body=hostile_inputs.rest_bodies())
    def send(route, body):
        method, path = route
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            json.loads(response.read())
            statuses[response.status] += 1
        except (OSError, http.client.HTTPException, ValueError) as e:
            statuses["no JSON answer"] += 1
            if len(unanswered) < 5:
                unanswered.append(f"{method} {path[:80]}: {type(e).__name__}: {e}")
        finally:
            connection.close()

    if count:
        send()
    return {"inputs": sum(statuses.values()), "statuses": {str(k): v for k, v in statuses.most_common()},
            "unanswered": unanswered}


def _post(host: str, port: int, head: bytes, body: bytes = b"", timeout_s: float = 30) -> int | str:
    with socket.create_connection((host, port), timeout=timeout_s) as connection:
        connection.sendall(head + body)
        response = http.client.HTTPResponse(connection)
        try:
            response.begin()
        except (OSError, http.client.HTTPException) as e:
            return type(e).__name__
        response.read()
        return response.status


def rest_attacks(host: str, port: int, sampler: Sampler, bystander: Bystander, idle_count: int) -> dict:
    result = {}
    predict_head = f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n".encode()

    bystander.mark("idle connections")
    threads_before = sampler.threads()
    idle = []
    for _ in range(idle_count):
        try:
            idle.append(socket.create_connection((host, port), timeout=10))
        except OSError:
            break
    # The server serves --rest_max_connections of them, a thread each, and answers the rest 503.
    opened_at = time.monotonic()
    served = min(len(idle), rest.RestLimits().max_connections)
    threads_with_idle = sampler.threads()
    while threads_with_idle < threads_before + served * 0.9 and time.monotonic() - opened_at < 3:
        time.sleep(0.05)  # pacing of a probe
        threads_with_idle = max(threads_with_idle, sampler.threads())
    readable = select.poll()
    for connection in idle:
        readable.register(connection, select.POLLIN)
    turned_away = 0
    by_fd = {connection.fileno(): connection for connection in idle}
    expected_away = len(idle) - served
    deadline = time.monotonic() + 5
    while turned_away < expected_away and time.monotonic() < deadline:  # each answer read once
        for fd, _ in readable.poll(200):
            readable.unregister(fd)
            try:
                if by_fd[fd].recv(12).startswith(b"HTTP/1.1 503"):
                    turned_away += 1
            except OSError:
                pass
    released_s = None
    while time.monotonic() - opened_at < IDLE_TIMEOUT_S + 20:
        if sampler.threads() <= threads_before + 2:
            released_s = round(time.monotonic() - opened_at, 1)
            break
        time.sleep(0.1)  # pacing of a probe
    for connection in idle:
        connection.close()
    result["idle"] = {"opened": len(idle), "turned_away_503": turned_away,
                      "server_threads_before": threads_before, "server_threads_with_idle": threads_with_idle,
                      "released_after_s": released_s}

    bystander.mark("burst of 200")
    started = time.monotonic()

    def get(_):
        try:
            return _post(host, port, f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), timeout_s=30)
        except OSError as e:
            return type(e).__name__
    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
        burst = collections.Counter(pool.map(get, range(200)))
    result["burst_200"] = {"answers": {str(k): v for k, v in burst.items()},
                           "seconds": round(time.monotonic() - started, 2)}

    bystander.mark("half-sent body")
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=IDLE_TIMEOUT_S + 20) as connection:
        connection.sendall(predict_head + b"Content-Length: 1000\r\n\r\n{\"instances\": [")
        closed = connection.recv(1) == b""
    result["half_sent_body"] = {"closed": closed, "after_s": round(time.monotonic() - started, 1)}

    bystander.mark("8 GB Content-Length")
    result["content_length_8GB"] = _post(host, port, predict_head + b"Content-Length: 8000000000\r\n\r\n")

    bystander.mark("30 MiB JSON body")
    body = json.dumps({"instances": [[1.0]] * (30 * 2**20 // 7)}).encode()
    started = time.monotonic()
    result["body_30MiB"] = {"status": _post(host, port, predict_head + f"Content-Length: {len(body)}\r\n\r\n".encode(), body),
                            "bytes": len(body), "seconds": round(time.monotonic() - started, 2)}
    bystander.mark("after")
    return result


def main(argv):
    del argv
    with tempfile.TemporaryDirectory(prefix="tfs_bench_hostile_") as tmp:
        base = tf1_known_answer.write_model(str(Path(tmp) / "models"))
        spec = launchers.EmbeddedSpec(
            (f"--model_name={MODEL}", f"--model_base_path={base}", f"--rest_idle_timeout_s={IDLE_TIMEOUT_S}",
             *([f"--rest_json_workers={_REST_JSON_WORKERS.value}"] if _REST_JSON_WORKERS.value is not None else [])),
            (MODEL,), tmp,
        )
        with launchers.launch(spec) as server:
            rest = addresses.parse(server.rest_address, "REST address")
            sampler = Sampler(server.pid)
            bystander = Bystander(server.grpc_target)
            figures = {}
            bystander.mark("gRPC fuzz")
            started = time.monotonic()
            figures["grpc_fuzz"] = grpc_fuzz(server.grpc_target, _GRPC_INPUTS.value)
            figures["grpc_fuzz"]["seconds"] = round(time.monotonic() - started, 1)
            bystander.mark("gRPC attacks")
            figures["grpc_attacks"] = grpc_attacks(server.grpc_target, sampler)
            bystander.mark("REST fuzz")
            started = time.monotonic()
            figures["rest_fuzz"] = rest_fuzz(rest.host, rest.port, _REST_INPUTS.value)
            figures["rest_fuzz"]["seconds"] = round(time.monotonic() - started, 1)
            figures["rest_attacks"] = rest_attacks(rest.host, rest.port, sampler, bystander, _IDLE_CONNECTIONS.value)
            bystander.stop()
            sampler.stop()
            alive = server.poll() is None
            figures["server"] = {
                "alive": alive,
                "start_rss_mib": round(sampler.start_rss / 2**20, 1),
                "peak_rss_mib": round(sampler.peak_rss / 2**20, 1),
                "end_rss_mib": round(sampler.rss() / 2**20, 1) if alive else None,
                "peak_threads": sampler.peak_threads,
            }
            figures["bystander"] = {"requests": len(bystander.latencies_ms), "failures": dict(bystander.failures),
                                    "by_phase": bystander.by_phase()}
    print(json.dumps(figures, indent=2))
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(figures, indent=2) + "\n")
    growth_mib = (sampler.peak_rss - sampler.start_rss) / 2**20
    problems = []
    if not alive:
        problems.append("the server died")
    if figures["grpc_fuzz"]["unexpected"]:
        problems.append("gRPC inputs got statuses outside the allowed set")
    if figures["rest_fuzz"]["unanswered"] or set(figures["rest_fuzz"]["statuses"]) - {
            str(s) for s in hostile_inputs.REST_CLIENT_STATUSES}:
        problems.append("REST inputs went unanswered or got statuses outside the allowed set")
    if growth_mib > _MAX_RSS_GROWTH_MIB.value:
        problems.append(f"RSS grew {growth_mib:.0f} MiB, more than {_MAX_RSS_GROWTH_MIB.value:.0f}")
    if bystander.failures:
        problems.append(f"the bystander failed: {dict(bystander.failures)}")
    print("PASS" if not problems else "FAIL: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(app.run(main))
