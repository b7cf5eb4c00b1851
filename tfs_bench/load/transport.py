"""The transport seam: how a worker sends one pre-encoded Predict request and learns its outcome.

A `Transport` is bound to one target and used from one asyncio event loop. `predict` sends
bytes that were encoded once (request_bodies) and reports when the request actually left
(`sent_ns`), its status as a gRPC code name, and the size of the reply; it never raises for a
failed request, so the driver records every outcome.

- gRPC: a `grpc.aio` channel and a raw `unary_unary` call on PredictionService/Predict with no
  serializers, so neither the request nor the reply is parsed in Python.
- REST: `http.client` keep-alive connections, one per thread of a small pool (http.client
  blocks); the JSON body is sent as it is. HTTP statuses map back to gRPC codes (TF Serving's
  table inverted; 400 reads as INVALID_ARGUMENT). `sent_ns` is taken in the thread just before
  the request is written, so time spent waiting for a free thread counts as a late send.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import socket
import threading
import time
from concurrent import futures
from typing import Protocol

import grpc

from tfs_bench import addresses
from tfs_bench.errors import LoadError

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
_CHANNEL_OPTIONS = (("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1))
GRPC_CODE_OF_HTTP_STATUS = {
    200: "OK",
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    sent_ns: int
    status_code: str  # a grpc.StatusCode name
    response_bytes: int


class Transport(Protocol):
    async def wait_ready(self, timeout_s: float) -> None:
        """Returns once the target accepts connections; raises LoadError after `timeout_s`."""

    async def predict(self, body: bytes, rest_path: str) -> Reply:
        """Sends one request (`rest_path`: the model's REST route; gRPC carries it in the body)."""

    async def close(self) -> None:
        """Ends every connection; requests still in flight fail."""


def open_transport(protocol: str, target: str, request_timeout_s: float, max_connections: int) -> Transport:
    if protocol == "grpc":
        return GrpcTransport(target, request_timeout_s)
    if protocol == "rest":
        return RestTransport(target, request_timeout_s, max_connections)
    raise ValueError(f"unknown protocol {protocol!r}")


class GrpcTransport:
    def __init__(self, target: str, request_timeout_s: float):
        self._target = target
        self._timeout_s = request_timeout_s
        self._channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        self._predict = self._channel.unary_unary(PREDICT_METHOD)  # no serializers: bytes in, bytes out

    async def wait_ready(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout_s)
        except asyncio.TimeoutError:
            raise LoadError(f"no gRPC connection to {self._target} within {timeout_s:g} s") from None

    async def predict(self, body: bytes, rest_path: str) -> Reply:
        sent_ns = time.perf_counter_ns()
        try:
            response = await self._predict(body, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as e:
            return Reply(sent_ns, e.code().name, 0)
        return Reply(sent_ns, "OK", len(response))

    async def close(self) -> None:
        await self._channel.close()


class RestTransport:
    def __init__(self, target: str, request_timeout_s: float, max_connections: int):
        self._target = target
        address = addresses.parse(target)
        self._host, self._port = address.host, address.port
        self._timeout_s = request_timeout_s
        self._executor = futures.ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="rest")
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._open: set[http.client.HTTPConnection] = set()

    async def wait_ready(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._connect_once, timeout_s)
        except OSError as e:
            raise LoadError(f"cannot reach REST target {self._target}: {e.strerror or e}") from None

    def _connect_once(self, timeout_s: float) -> None:
        socket.create_connection((self._host, self._port), timeout=timeout_s).close()

    async def predict(self, body: bytes, rest_path: str) -> Reply:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._post, body, rest_path)

    def _post(self, body: bytes, path: str) -> Reply:
        connection = self._take()
        sent_ns = time.perf_counter_ns()
        try:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
        except TimeoutError:
            self._discard(connection)
            return Reply(sent_ns, "DEADLINE_EXCEEDED", 0)
        except (OSError, http.client.HTTPException):
            self._discard(connection)
            return Reply(sent_ns, "UNAVAILABLE", 0)
        if response.will_close:
            self._discard(connection)
        else:
            with self._lock:
                self._idle.append(connection)
        return Reply(sent_ns, GRPC_CODE_OF_HTTP_STATUS.get(response.status, "UNKNOWN"), len(data))

    def _take(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
            self._open.add(connection)
            return connection

    def _discard(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        with self._lock:
            self._open.discard(connection)

    async def close(self) -> None:
        with self._lock:
            connections = list(self._open)
            self._idle.clear()
        for connection in connections:
            if connection.sock is not None:
                try:
                    connection.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading
                except OSError:
                    pass
        self._executor.shutdown(wait=True)
        for connection in connections:
            connection.close()
