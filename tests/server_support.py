"""Test-side conveniences around servers started by the launch stage: gRPC stubs, polling, configs.

Starting, readiness and stopping are the launch stage's (tfs_bench.launch.launchers.EmbeddedSpec);
nothing here manages a process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfs_bench.launch import launchers

READY_TIMEOUT_S = 60.0
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def start_embedded(flags: Sequence[str], log_dir: Path, ready_models: Sequence[str], rest: bool = True) -> launchers.RunningServer:
    """The embedded server with `flags` on free ports, once each of `ready_models` is AVAILABLE."""
    spec = launchers.EmbeddedSpec(tuple(flags), tuple(ready_models), str(log_dir), rest=rest, ready_timeout_s=READY_TIMEOUT_S)
    return launchers.launch(spec)


class Stubs:
    """A running server's gRPC services on one channel, without message size limits."""

    def __init__(self, server: launchers.RunningServer):
        self.channel = grpc.insecure_channel(
            server.grpc_target,
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
        )
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def model_states(self, model_name: str) -> dict[int, int]:
        """version -> state as GetModelStatus reports them; {} when the server does not answer."""
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model_name
        try:
            response = self.models.GetModelStatus(request, timeout=5)
        except grpc.RpcError:
            return {}
        return {s.version: s.state for s in response.model_version_status}

    def model_available(self, model_name: str, version: int | None = None) -> bool:
        states = self.model_states(model_name)
        wanted = states.values() if version is None else [states.get(version)]
        return _AVAILABLE in wanted

    def close(self) -> None:
        self.channel.close()


def poll_until(predicate, timeout_s: float, what: str, describe=lambda: ""):
    """Calls predicate until it returns a truthy value; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s{describe()}")
        time.sleep(0.05)  # pacing between probes of a server, not a wait for an event


def log_tail(server: launchers.RunningServer) -> str:
    """For assertion messages: the server's last log lines."""
    return f"\n--- server log tail ---\n{server.log_tail(30)}"


def write_config(path: Path, text: str) -> Path:
    """Writes a config file atomically, so a polling server never reads half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
