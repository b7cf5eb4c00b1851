"""Servers for the benchmarks: planned and launched the way a user's experiment is."""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tfs_bench import known_answer
from tfs_bench import launchers
from tfs_bench import placement
from tfs_bench import server_config


def free_port_base() -> int:
    """A free (even, odd) pair of loopback ports for a server's gRPC and REST listeners."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1] & ~1
        with socket.socket() as grpc_port, socket.socket() as rest_port:
            try:
                grpc_port.bind(("127.0.0.1", base))
                rest_port.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise RuntimeError("no free pair of loopback ports")


def planned_server(models, work_dir: Path, **request) -> launchers.RunningServer:
    """One embedded server hosting `models` (placement.ModelEntry), with Prometheus on REST."""
    plan = placement.make_plan(placement.PlanRequest(
        models=tuple(models), hosting="multi_model", device="cpu", port_base=free_port_base(), **request))
    path = server_config.write_plan(plan, work_dir / "plan", docker_image="tensorflow/serving:latest")
    (entry,) = launchers.server_entries(server_config.read_plan(path))
    return launchers.launch(launchers.LaunchSpec("embedded", entry, log_dir=str(work_dir)))


@contextlib.contextmanager
def half_plus_two_server(**request) -> Iterator[launchers.RunningServer]:
    """Serves half_plus_two (latest version: y = 0.5x + 3) until the block ends."""
    with tempfile.TemporaryDirectory(prefix="tfs_bench_bench_") as tmp:
        base = known_answer.write_models(str(Path(tmp) / "models"))
        entry = placement.load_model_entry(known_answer.MODEL_NAME, str(base))
        with planned_server([entry], Path(tmp), **request) as server:
            yield server
