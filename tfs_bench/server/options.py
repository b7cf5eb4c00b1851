"""Validated server options: the flags of `tensorflow_model_server`, as plain values.

The rules live here once and are used twice: by the absl validators next to the flags in
`__main__` (so a bad command line fails at parse time) and by `ServerOptions.__post_init__`
(so a library caller cannot build an invalid server either).
"""

from __future__ import annotations

import dataclasses
import os

from tfs_bench.errors import ConfigError
from tfs_bench.server import json_offload

# A reload waits this long at most for added models, unless the client's deadline is sooner.
DEFAULT_RELOAD_TIMEOUT_S = 120.0
# In-flight requests get this long to finish after SIGTERM before the listeners close anyway.
DEFAULT_SHUTDOWN_GRACE_S = 10.0

MAX_PORT = 65535

# gRPC handler threads when --grpc_max_threads is 0: TF Serving's default (4 per core), at least
# 64, and with batching enough that every batch thread's batch can fill while the next one fills
# (a request waiting in a batch holds its thread), up to a bound that keeps the process sane.
GRPC_THREADS_PER_CPU = 4
GRPC_MIN_THREADS = 64
GRPC_MAX_DEFAULT_THREADS = 1024


def grpc_handler_threads(requested: int, cpus: int, batching=None) -> int:
    """The gRPC server's handler thread count; `batching` is the BatchingOptions or None."""
    if requested > 0:
        return requested
    threads = max(GRPC_MIN_THREADS, GRPC_THREADS_PER_CPU * cpus)
    if batching is not None:
        fill = batching.max_batch_size * (batching.num_batch_threads + 1)
        threads = max(threads, min(fill, GRPC_MAX_DEFAULT_THREADS))
    return threads


def check_thread_counts(session: int, intra: int, inter: int) -> None:
    if session > 0 and intra > 0 and inter > 0:
        # TF Serving's wording (server.cc), as are the other start-up messages marked so.
        raise ConfigError(
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, "
            "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all."
        )


def resolve_thread_counts(session: int, intra: int, inter: int) -> tuple[int, int]:
    """(intra, inter) as TF Serving derives them (server.cc); 0 leaves TensorFlow's default.

    A negative inter-op count (each op in the caller's thread) passes only beside a positive
    intra-op count: alone, TF Serving falls back to the session count and ignores it.
    """
    if intra > 0 or inter > 0:
        return intra, inter
    return session, session


def check_batching(enable_batching: bool, batching_parameters_file: str) -> None:
    if batching_parameters_file and not enable_batching:
        raise ConfigError(  # TF Serving's wording
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true."
        )


def check_ports(grpc_port: int, rest_api_port: int) -> None:
    for name, port in (("--port", grpc_port), ("--rest_api_port", rest_api_port)):
        if not 0 <= port <= MAX_PORT:
            raise ConfigError(f"{name}={port} is not a TCP port (0..{MAX_PORT})")
    if rest_api_port != 0 and rest_api_port == grpc_port:
        raise ConfigError(
            f"--rest_api_port cannot be the same as --port ({grpc_port}); "
            "use a different port for the HTTP/REST API"
        )


def check_model_source(model_config_file: str, model_base_path: str) -> None:
    if model_config_file:
        return  # --model_name/--model_base_path are ignored, as in TF Serving
    if not model_base_path:
        raise ConfigError(  # TF Serving's wording
            "Both server_options.model_base_path and server_options.model_config_file are empty!"
        )
    if not os.path.isabs(model_base_path):
        raise ConfigError(f"--model_base_path must be an absolute path, got {model_base_path!r}")


def check_gpu_memory_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"--per_process_gpu_memory_fraction must be in [0, 1], got {fraction}")


def parse_channel_arguments(text: str) -> tuple[tuple[str, int | str], ...]:
    """`k=v,k=v` as TF Serving reads --grpc_channel_arguments; numeric values become ints."""
    arguments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--grpc_channel_arguments: expected key=value, got {item!r}")
        value = value.strip()
        arguments.append((key.strip(), int(value) if _is_int(value) else value))
    return tuple(arguments)


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit() and text.isascii()


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """Everything the server needs from its command line; field names carry units."""

    model_base_path: str = ""
    model_name: str = "default"
    model_config_file: str = ""
    host: str = "127.0.0.1"
    grpc_port: int = 8500
    grpc_socket_path: str = ""
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = ()
    grpc_max_threads: int = 0  # 0: grpc_handler_threads' default
    rest_api_port: int = 0
    rest_api_timeout_ms: int = 30000
    rest_max_body_bytes: int = 64 * 2**20
    rest_max_inflight_body_bytes: int = 128 * 2**20
    rest_idle_timeout_s: float = 30.0
    rest_max_connections: int = 512
    rest_json_workers: int = json_offload.DEFAULT_WORKERS  # 0: parse every body in the serving process
    rest_json_offload_bytes: int = json_offload.DEFAULT_MIN_BODY_BYTES
    max_tensor_fill_bytes: int = 64 * 2**20
    model_config_file_poll_wait_s: int = 0
    file_system_poll_wait_s: int = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    per_process_gpu_memory_fraction: float = 0.0
    session_parallelism: int = 0
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0
    enable_model_warmup: bool = True
    enable_signature_method_name_check: bool = False
    reload_timeout_s: float = DEFAULT_RELOAD_TIMEOUT_S
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S

    def __post_init__(self):
        check_thread_counts(self.session_parallelism, self.intra_op_parallelism, self.inter_op_parallelism)
        for name in ("session_parallelism", "intra_op_parallelism"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        check_batching(self.enable_batching, self.batching_parameters_file)
        check_ports(self.grpc_port, self.rest_api_port)
        check_model_source(self.model_config_file, self.model_base_path)
        check_gpu_memory_fraction(self.per_process_gpu_memory_fraction)
        for name in ("rest_api_timeout_ms", "model_config_file_poll_wait_s", "file_system_poll_wait_s",
                     "grpc_max_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("rest_max_body_bytes", "rest_max_inflight_body_bytes", "rest_idle_timeout_s",
                     "rest_max_connections"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("rest_json_workers", "rest_json_offload_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_tensor_fill_bytes < 0:
            raise ConfigError(f"max_tensor_fill_bytes must be >= 0, got {self.max_tensor_fill_bytes}")
        if self.reload_timeout_s <= 0 or self.shutdown_grace_s < 0:
            raise ConfigError("reload_timeout_s must be > 0 and shutdown_grace_s >= 0")

    @property
    def ignored_inter_op(self) -> bool:
        """A negative --tensorflow_inter_op_parallelism that TF Serving's rule drops (no intra-op count)."""
        return self.inter_op_parallelism < 0 and self.thread_counts[1] >= 0

    @property
    def thread_counts(self) -> tuple[int, int]:
        """(intra_op, inter_op) threads; 0 means TensorFlow's default, a negative inter_op the
        caller's thread."""
        return resolve_thread_counts(
            self.session_parallelism, self.intra_op_parallelism, self.inter_op_parallelism
        )
