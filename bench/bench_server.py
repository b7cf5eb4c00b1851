"""The embedded server for benchmarks: half_plus_two in a temporary directory, on free loopback ports."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tfs_bench import known_answer
from tfs_bench.child_process import child_env
from tfs_bench.child_process import module_argv

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class BenchServer:
    grpc_target: str
    rest_target: str
    workdir: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def half_plus_two_server(*flags: str) -> Iterator[BenchServer]:
    """Serves half_plus_two (y = 0.5x + 3) until the block ends; the ports open once it is AVAILABLE."""
    with tempfile.TemporaryDirectory(prefix="tfs_bench_bench_") as tmp:
        workdir = Path(tmp)
        base = known_answer.write_models(str(workdir / "models"))
        grpc_port, rest_port = free_port(), free_port()
        log = open(workdir / "server.log", "wb")
        process = subprocess.Popen(
            module_argv(
                "tfs_bench.server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
                f"--model_name={known_answer.MODEL_NAME}", f"--model_base_path={base}", *flags,
            ),
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not _accepts(grpc_port):
                if process.poll() is not None:
                    raise RuntimeError(f"server exited with {process.returncode}: {(workdir / 'server.log').read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server not ready within {READY_TIMEOUT_S:g} s")
                time.sleep(0.1)  # pacing between probes of another process
            yield BenchServer(f"127.0.0.1:{grpc_port}", f"127.0.0.1:{rest_port}", workdir)
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
