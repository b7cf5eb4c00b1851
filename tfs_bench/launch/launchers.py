"""The launch stage: turns a plan.json server entry into a running server whose models are AVAILABLE.

Four kinds of server, one readiness rule:
  embedded   our TF-Serving-compatible server, `python -m tfs_bench.server`, as a subprocess
  binary     a real `tensorflow_model_server` (found on PATH or given by path) with the plan's flags
  docker     the plan's `docker run` of the tensorflow/serving image
  external   a server already running at host:port; nothing is started and nothing is stopped
A server is ready when ModelService.GetModelStatus reports every planned version of every model
AVAILABLE. TF Serving opens its ports only after loading, so a refused connection while it loads is
normal; a server process that exits before it is ready fails the launch at once.

Started servers never outlive the launcher (tfs_bench.launch.processes): stop() signals the
server's whole process group, and the kernel sends it SIGTERM when its parent dies. Server output
goes to `<log_dir>/<server>.log`. Readiness is tfs_bench.launch.readiness; the ports-free check
before a start is tfs_bench.launch.ports.

    plan = plan_record.read_plan("plans/default")
    specs = [launchers.LaunchSpec("embedded", server, log_dir="runs/x/logs") for server in plan.servers]
    servers = launchers.launch_all(specs)
    try:
        ...  # servers[i].grpc_target, .startup_s, .model_ready_s
    finally:
        for server in servers:
            server.stop()
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

from tfs_bench import addresses
from tfs_bench import child_process
from tfs_bench.errors import ConfigError
from tfs_bench.errors import LaunchError
from tfs_bench.launch import ports
from tfs_bench.launch import processes
from tfs_bench.launch.processes import LOG_TAIL_LINES
from tfs_bench.launch.readiness import ReadinessProbe
from tfs_bench.plan.plan_record import PlannedServer

KINDS = ("embedded", "binary", "docker", "external")
BINARY_NAME = "tensorflow_model_server"
DOCKER_NAME = "docker"
EMBEDDED_MODULE = "tfs_bench.server"
_BINARY_HINT = "; install TF Serving, give the binary's path, or use the embedded server"

# Loading large models on a GPU can take minutes in TF Serving.
DEFAULT_READY_TIMEOUT_S = 300.0
DEFAULT_POLL_INTERVAL_S = 0.1
# The embedded server gives in-flight requests 10 s after SIGTERM; TF Serving is similar.
DEFAULT_STOP_TIMEOUT_S = 30.0


class ServerExitedError(LaunchError):
    """The server process exited before all its models were AVAILABLE."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class ReadinessTimeoutError(LaunchError):
    """The server's models were not all AVAILABLE by the deadline."""


# ----------------------------------------------------------------------------- launch specs


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """How to bring up one plan server.

    binary_path: for kind binary the tensorflow_model_server executable, for kind docker the
    docker client; None finds it on PATH. It holds the resolved absolute path after validation.
    external_address: for kind external, the gRPC host:port of the running server.
    log_dir: where `<server>.log` is written; required for every kind but external.
    """

    kind: str
    server: PlannedServer
    log_dir: str | None = None
    binary_path: str | None = None
    external_address: str | None = None
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"launcher kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.server, PlannedServer):
            raise ConfigError(f"LaunchSpec.server must be a plan_record.PlannedServer, got {type(self.server).__name__}")
        if not self.ready_timeout_s > 0 or not 0 < self.poll_interval_s <= self.ready_timeout_s:
            raise ConfigError(
                f"need ready_timeout_s > 0 and 0 < poll_interval_s <= ready_timeout_s, got "
                f"{self.ready_timeout_s} and {self.poll_interval_s}"
            )
        if self.kind == "external":
            self._check_external()
            return
        if self.external_address is not None:
            raise ConfigError(f"external_address is only for kind external, not {self.kind}")
        if not self.log_dir:
            raise ConfigError(f"launching a {self.kind} server needs a log directory")
        if not sys.platform.startswith("linux"):
            raise ConfigError("starting servers needs Linux (PR_SET_PDEATHSIG keeps them from outliving us)")
        if self.kind == "embedded":
            if self.binary_path is not None:
                raise ConfigError("binary_path is only for kinds binary and docker")
            self._check_cpu_set()
        elif self.kind == "binary":
            # Frozen, but the resolved path is what every later step must use.
            object.__setattr__(self, "binary_path", processes.find_executable(self.binary_path, BINARY_NAME, _BINARY_HINT))
            self._check_cpu_set()
        else:
            object.__setattr__(self, "binary_path", processes.find_executable(self.binary_path, DOCKER_NAME))
            self._check_docker_argv()

    def _check_external(self) -> None:
        if self.external_address is None:
            raise ConfigError("kind external needs the running server's address (host:port)")
        addresses.parse(self.external_address, "external server address")
        if self.binary_path is not None:
            raise ConfigError("binary_path is only for kinds binary and docker")

    def _check_cpu_set(self) -> None:
        cpu_set = self.server.cpu_set
        if cpu_set is None:
            return
        usable = os.sched_getaffinity(0)
        unusable = sorted(set(cpu_set) - usable)
        if unusable:
            raise ConfigError(
                f"plan server {self.server.name!r} is pinned to cores {_cores(cpu_set)}, but "
                f"{_cores(unusable)} cannot be used here (usable: {_cores(usable)}); re-plan on this machine"
            )

    def _check_docker_argv(self) -> None:
        argv = self.server.docker.run_argv
        if len(argv) < 2 or os.path.basename(argv[0]) != DOCKER_NAME or argv[1] != "run":
            raise ConfigError(f"plan server {self.server.name!r} has no `docker run` argv (got {list(argv)[:2]})")
        if processes.container_name(argv) is None:
            raise ConfigError(
                f"the docker argv of plan server {self.server.name!r} has no --name; "
                "the launcher needs it to remove the container"
            )

    @property
    def grpc_target(self) -> str:
        if self.kind == "external":
            return addresses.normalize(self.external_address, "external server address")
        return self.server.grpc_target

    @property
    def rest_url(self) -> str | None:
        """Base URL of the REST API (the plan's REST port; for external, on the given host)."""
        if not self.server.rest_port:
            return None
        host = addresses.parse(self.external_address, "external server address").host if self.kind == "external" else self.server.host
        return f"http://{addresses.join(host, self.server.rest_port)}"

    def command(self) -> list[str]:
        """The argv that starts this server; kind external starts nothing."""
        flags = list(self.server.flags)
        if self.kind == "embedded":
            # --host is ours: the real tensorflow_model_server listens on every interface.
            return child_process.module_argv(EMBEDDED_MODULE, *flags, f"--host={self.server.host}")
        if self.kind == "binary":
            return [self.binary_path, *flags]
        if self.kind == "docker":
            return [self.binary_path, *self.server.docker.run_argv[1:]]
        raise LaunchError(f"an external server ({self.external_address}) is not started by the launcher")


def _cores(cores) -> str:
    return ",".join(str(c) for c in sorted(cores))


# ----------------------------------------------------------------------------- starting


def _start_process(spec: LaunchSpec) -> processes.ServerProcess | None:
    if spec.kind == "external":
        return None
    docker = spec.kind == "docker"
    return processes.ServerProcess(
        spec.server.name,
        spec.command(),
        spec.log_dir,
        env=_child_env(spec.kind),
        cpu_set=None if docker else spec.server.cpu_set,  # docker pins with --cpuset-cpus
        docker_client=spec.binary_path if docker else None,
        container=processes.container_name(spec.server.docker.run_argv) if docker else None,
    )


def _child_env(kind: str) -> dict[str, str]:
    if kind == "embedded":
        return child_process.child_env(PYTHONUNBUFFERED="1")  # a crash's last words reach the log
    return dict(os.environ)


class _Starting:
    """A server between start and ready."""

    def __init__(self, spec: LaunchSpec):
        self.spec = spec
        if spec.kind != "external":
            server = spec.server
            ports.check_ports_free(server.name, server.host, (server.grpc_port, server.rest_port))
        self.probe = ReadinessProbe(spec.grpc_target, {m.name: m.versions for m in spec.server.models})
        try:
            # Last: nothing that can fail may come after a process is started.
            self.process = _start_process(spec)
        except BaseException:
            self.probe.close()
            raise
        self.started_at = self.process.started_at if self.process else time.monotonic()
        self.deadline = self.started_at + spec.ready_timeout_s

    def check(self) -> bool:
        """True once ready; raises when the process exited or the deadline passed."""
        self._raise_if_exited()
        if not self.probe.ready:
            self.probe.poll(self.deadline)
        if self.probe.ready:
            return True
        self._raise_if_exited()  # an exit during the poll explains the refused connection
        if time.monotonic() >= self.deadline:
            raise ReadinessTimeoutError(
                f"server {self._describe()} was not ready after {self.spec.ready_timeout_s:g} s; "
                f"models not ready: {self.probe.not_ready()}{self._log_tail()}"
            )
        return False

    def _raise_if_exited(self) -> None:
        code = self.process.poll() if self.process else None
        if code is not None:
            after_s = time.monotonic() - self.started_at
            how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
            raise ServerExitedError(
                f"server {self._describe()} {how} {after_s:.1f} s after start, before it was ready"
                f"{self._log_tail()}",
                exit_code=code,
            )

    def _describe(self) -> str:
        return f"{self.spec.server.name!r} ({self.spec.kind}, gRPC {self.spec.grpc_target})"

    def _log_tail(self) -> str:
        if self.process is None:
            return ""
        return f"\n--- last {LOG_TAIL_LINES} lines of {self.process.log_path} ---\n{self.process.log_tail()}"

    def pause(self) -> None:
        """Waits one poll interval; a server process exiting ends the wait early."""
        if self.process is not None:
            self.process.wait(self.spec.poll_interval_s)
        else:
            time.sleep(self.spec.poll_interval_s)

    def stop(self, timeout_s: float) -> None:
        if self.process is not None:
            self.process.stop(timeout_s)

    def running(self) -> RunningServer:
        ready_s = {name: at - self.started_at for name, at in self.probe.ready_at.items()}
        return RunningServer(self.spec, self.process, max(ready_s.values()), ready_s)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _await_ready(starting: Sequence[_Starting]) -> None:
    waiting = list(starting)
    while waiting:
        waiting = [s for s in waiting if not s.check()]
        if waiting:
            min(waiting, key=lambda s: s.spec.poll_interval_s).pause()
    for s in starting:
        s.check()  # one that got ready early may have died while the others loaded


# ----------------------------------------------------------------------------- running servers


class RunningServer:
    """A server whose models are all AVAILABLE; stop() or leaving `with` takes it down.

    startup_s: process start (for external: the launch call) until every model was seen AVAILABLE.
    model_ready_s: per model, seconds from the same start until it was first seen AVAILABLE (to
    within one poll interval; TF Serving reports no model before its ports open, after all load).
    """

    def __init__(self, spec: LaunchSpec, process: processes.ServerProcess | None, startup_s: float, model_ready_s: Mapping[str, float]):
        self.name = spec.server.name
        self.kind = spec.kind
        self.grpc_target = spec.grpc_target
        self.rest_url = spec.rest_url
        self.startup_s = startup_s
        self.model_ready_s = dict(model_ready_s)
        self._process = process

    @property
    def pid(self) -> int | None:
        """The server's pid (for docker, the docker client's); None for external servers."""
        return self._process.pid if self._process else None

    @property
    def container_name(self) -> str | None:
        return self._process.container_name if self._process else None

    @property
    def log_path(self) -> Path | None:
        return self._process.log_path if self._process else None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return self._process.log_tail(lines) if self._process else ""

    def poll(self) -> int | None:
        """The exit code if the process has exited, else None (always None for external)."""
        return self._process.poll() if self._process else None

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> int | None:
        """SIGTERM to the server's process group, SIGKILL after `timeout_s`; returns the exit code.

        Idempotent. External servers are left running (returns None). Docker containers are then
        removed with `docker rm -f`.
        """
        return self._process.stop(timeout_s) if self._process else None

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningServer({self.name!r}, {self.kind}, {self.grpc_target}, pid={self.pid})"


def launch(spec: LaunchSpec) -> RunningServer:
    """Starts one server and waits until it is ready (see launch_all)."""
    return launch_all([spec])[0]


def launch_all(specs: Sequence[LaunchSpec], stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> tuple[RunningServer, ...]:
    """Starts every server, then waits until all are ready; they load concurrently.

    If any fails to start or to get ready (LaunchError), or anything else interrupts, every server
    already started is stopped before the error propagates. Call from a thread that outlives the
    servers: the kernel's parent-death signal follows the thread that started them.
    """
    _check_distinct(specs)
    started: list[_Starting] = []
    try:
        for spec in specs:
            started.append(_Starting(spec))
        _await_ready(started)
    except BaseException as error:
        for s in reversed(started):
            try:
                s.stop(stop_timeout_s)
            except LaunchError as stop_error:
                error.add_note(f"while cleaning up: {stop_error}")
        raise
    finally:
        for s in started:
            s.probe.close()
    return tuple(s.running() for s in started)


def _check_distinct(specs: Sequence[LaunchSpec]) -> None:
    names = [s.server.name for s in specs]
    targets = [s.grpc_target for s in specs]
    for what, values in (("server names", names), ("gRPC addresses", targets)):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ConfigError(f"launching several servers with the same {what}: {', '.join(duplicates)}")
