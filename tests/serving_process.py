"""A `python -m tfs_bench.server` subprocess for tests: free ports, readiness, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from conftest import run_env

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll_until(predicate, timeout_s: float, what: str, describe=lambda: ""):
    """Calls predicate until it returns a truthy value; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s{describe()}")
        time.sleep(0.05)  # pacing between probes of an external process, not a wait for an event


class ServerProcess:
    """Starts the server with `flags`, on free ports unless the flags name them."""

    def __init__(self, flags: list[str], log_dir: Path, rest: bool = True):
        self.grpc_port = free_port()
        self.rest_port = free_port() if rest else None
        args = [f"--port={self.grpc_port}"] + ([f"--rest_api_port={self.rest_port}"] if rest else [])
        self.log_path = log_dir / f"server-{self.grpc_port}.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfs_bench.server", *args, *flags],
            env=run_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.grpc_port}",
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
        )
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def describe(self) -> str:
        return f"\n--- server log tail ---\n{self.log_tail()}"

    def wait_ready(self, model_name: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Polls GetModelStatus until `model_name` has an AVAILABLE version."""

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}{self.describe()}")
            return self.model_available(model_name)

        poll_until(ready, timeout_s, f"model {model_name} AVAILABLE", self.describe)

    def model_states(self, model_name: str) -> dict[int, int]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model_name
        try:
            response = self.models.GetModelStatus(request, timeout=5)
        except grpc.RpcError:
            return {}
        return {s.version: s.state for s in response.model_version_status}

    def model_available(self, model_name: str, version: int | None = None) -> bool:
        states = self.model_states(model_name)
        wanted = states.items() if version is None else [(version, states.get(version))]
        return any(state == get_model_status_pb2.ModelVersionStatus.AVAILABLE for _, state in wanted)

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then the exit status; raises if the server does not exit in time."""
        self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()


def start_server(flags: list[str], log_dir: Path, ready_model: str, rest: bool = True) -> ServerProcess:
    server = ServerProcess(flags, log_dir, rest=rest)
    try:
        server.wait_ready(ready_model)
    except BaseException:
        server.terminate()
        raise
    return server


def write_config(path: Path, text: str) -> Path:
    """Writes a config file atomically, so a polling server never reads half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
