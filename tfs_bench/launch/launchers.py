"""The launch stage: turns a plan.json server into a running server whose models are AVAILABLE.

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

`EmbeddedSpec` starts the embedded server from explicit server flags instead of a plan, on free
ports, ready when each named model has a version AVAILABLE (experiments on the server, tests):

    spec = launchers.EmbeddedSpec(["--model_name=m", "--model_base_path=/models/m"], ["m"], log_dir="logs")
    with launchers.launch(spec) as server:
        ...  # server.grpc_target, server.rest_address
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
from typing import ClassVar

from tfs_bench import addresses
from tfs_bench import child_process
from tfs_bench import cpu_priority
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
    nice: added to the server's niceness (embedded and binary; tfs_bench.cpu_priority), so a load
    generator on the same host gets the CPU first. Docker starts containers from its daemon, where
    a niceness set here would not reach: it is refused for kinds docker and external.
    hide_gpus: start the server with CUDA_VISIBLE_DEVICES empty (embedded and binary), so a CPU
    deployment on a GPU machine runs on the CPU; docker sees a GPU only with --gpus, which a CPU
    plan does not give.
    """

    kind: str
    server: PlannedServer
    log_dir: str | None = None
    binary_path: str | None = None
    external_address: str | None = None
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    nice: int = 0
    hide_gpus: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"launcher kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.server, PlannedServer):
            raise ConfigError(f"LaunchSpec.server must be a plan_record.PlannedServer, got {type(self.server).__name__}")
        _check_timeouts(self.ready_timeout_s, self.poll_interval_s)
        cpu_priority.check_nice(self.nice)
        if self.nice and self.kind in ("docker", "external"):
            raise ConfigError(
                f"a {self.kind} server is not started as our child process, so its niceness cannot be set "
                f"(got nice {self.nice}); use nice 0"
            )
        if self.kind == "external":
            self._check_external()
            return
        if self.external_address is not None:
            raise ConfigError(f"external_address is only for kind external, not {self.kind}")
        if not self.log_dir:
            raise ConfigError(f"launching a {self.kind} server needs a log directory")
        _check_linux()
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
    def name(self) -> str:
        return self.server.name

    @property
    def grpc_target(self) -> str:
        if self.kind == "external":
            return addresses.normalize(self.external_address, "external server address")
        return self.server.grpc_target

    @property
    def rest_address(self) -> str | None:
        """host:port of the REST API (the plan's REST port; for external, on the given host)."""
        if not self.server.rest_port:
            return None
        host = addresses.parse(self.external_address, "external server address").host if self.kind == "external" else self.server.host
        return addresses.join(host, self.server.rest_port)

    @property
    def rest_url(self) -> str | None:
        """Base URL of the REST API."""
        return None if self.rest_address is None else f"http://{self.rest_address}"

    def wanted_versions(self) -> dict[str, tuple[int, ...]]:
        """Readiness: every planned version of every model."""
        return {m.name: m.versions for m in self.server.models}

    def start(self) -> processes.ServerProcess | None:
        """Checks the plan's ports are free and starts the server; kind external starts nothing."""
        if self.kind == "external":
            return None
        server = self.server
        ports.check_ports_free(server.name, server.host, (server.grpc_port, server.rest_port))
        docker = self.kind == "docker"
        return processes.ServerProcess(
            server.name,
            self.command(),
            self.log_dir,
            env=_child_env(self.kind, self.hide_gpus and not docker),
            cpu_set=None if docker else server.cpu_set,  # docker pins with --cpuset-cpus
            docker_client=self.binary_path if docker else None,
            container=processes.container_name(server.docker.run_argv) if docker else None,
            nice=self.nice,
        )

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


@dataclasses.dataclass(frozen=True)
class EmbeddedSpec:
    """The embedded server started with explicit server flags rather than from a plan.

    For experiments on the server itself and for tests: `flags` are `python -m tfs_bench.server`
    flags, without --port, --rest_api_port and --host, which the launcher adds. The server is
    ready when each of `ready_models` has a version AVAILABLE.
    grpc_port, rest_port: free ports, picked when the spec is made (rest_port is None when rest=False).
    nice: added to the server's niceness (see LaunchSpec).
    """

    flags: tuple[str, ...]
    ready_models: tuple[str, ...]
    log_dir: str
    name: str = "embedded"  # the log is <log_dir>/<name>.log
    host: str = "127.0.0.1"
    rest: bool = True
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    nice: int = 0
    grpc_port: int = dataclasses.field(init=False, default=0)
    rest_port: int | None = dataclasses.field(init=False, default=None)

    kind: ClassVar[str] = "embedded"

    def __post_init__(self):
        object.__setattr__(self, "flags", tuple(self.flags))
        object.__setattr__(self, "ready_models", tuple(self.ready_models))
        if not all(isinstance(flag, str) for flag in self.flags):
            raise ConfigError(f"server flags must be strings, got {list(self.flags)}")
        ours = [f for f in self.flags if f.split("=", 1)[0] in _LAUNCHER_FLAGS]
        if ours:
            raise ConfigError(
                f"{', '.join(ours)}: the launcher picks free ports and sets --port, --rest_api_port and "
                "--host itself (choose the host with `host`, no REST port with rest=False)"
            )
        if not self.ready_models or len(set(self.ready_models)) != len(self.ready_models):
            raise ConfigError(f"ready_models must name each model to wait for once, got {list(self.ready_models)}")
        if not self.name or os.sep in self.name:
            raise ConfigError(f"an embedded server needs a name that can name its log file, got {self.name!r}")
        if not self.log_dir:
            raise ConfigError("launching an embedded server needs a log directory")
        _check_timeouts(self.ready_timeout_s, self.poll_interval_s)
        cpu_priority.check_nice(self.nice)
        _check_linux()
        base = ports.free_port_base(1, self.host)
        # Frozen, but the ports picked are what every later step must use.
        object.__setattr__(self, "grpc_port", base)
        object.__setattr__(self, "rest_port", base + 1 if self.rest else None)

    @property
    def grpc_target(self) -> str:
        return addresses.join(self.host, self.grpc_port)

    @property
    def rest_address(self) -> str | None:
        return None if self.rest_port is None else addresses.join(self.host, self.rest_port)

    @property
    def rest_url(self) -> str | None:
        return None if self.rest_address is None else f"http://{self.rest_address}"

    def wanted_versions(self) -> dict[str, tuple[int, ...]]:
        """Readiness: any version of each model (the server's own policy decides which)."""
        return {name: () for name in self.ready_models}

    def command(self) -> list[str]:
        listen = [f"--port={self.grpc_port}"] + ([f"--rest_api_port={self.rest_port}"] if self.rest_port else [])
        return child_process.module_argv(EMBEDDED_MODULE, *listen, *self.flags, f"--host={self.host}")

    def start(self) -> processes.ServerProcess:
        ports.check_ports_free(self.name, self.host, (self.grpc_port, self.rest_port or 0))
        return processes.ServerProcess(self.name, self.command(), self.log_dir, env=_child_env(self.kind), nice=self.nice)


_LAUNCHER_FLAGS = ("--port", "--rest_api_port", "--host")


def _check_timeouts(ready_timeout_s: float, poll_interval_s: float) -> None:
    if not ready_timeout_s > 0 or not 0 < poll_interval_s <= ready_timeout_s:
        raise ConfigError(
            f"need ready_timeout_s > 0 and 0 < poll_interval_s <= ready_timeout_s, got "
            f"{ready_timeout_s} and {poll_interval_s}"
        )


def _check_linux() -> None:
    if not sys.platform.startswith("linux"):
        raise ConfigError("starting servers needs Linux (PR_SET_PDEATHSIG keeps them from outliving us)")


Spec = LaunchSpec | EmbeddedSpec


# ----------------------------------------------------------------------------- starting


def _child_env(kind: str, hide_gpus: bool = False) -> dict[str, str]:
    hidden = {"CUDA_VISIBLE_DEVICES": ""} if hide_gpus else {}
    if kind == "embedded":
        return child_process.child_env(PYTHONUNBUFFERED="1", **hidden)  # a crash's last words reach the log
    return {**os.environ, **hidden}


class _Starting:
    """A server between start and ready."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.probe = ReadinessProbe(spec.grpc_target, spec.wanted_versions())
        try:
            # Last: nothing that can fail may come after a process is started.
            self.process = spec.start()
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
        return f"{self.spec.name!r} ({self.spec.kind}, gRPC {self.spec.grpc_target})"

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

    def __init__(self, spec: Spec, process: processes.ServerProcess | None, startup_s: float, model_ready_s: Mapping[str, float]):
        self.name = spec.name
        self.kind = spec.kind
        self.grpc_target = spec.grpc_target
        self.rest_address = spec.rest_address  # host:port; None without REST
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


def launch(spec: Spec) -> RunningServer:
    """Starts one server and waits until it is ready (see launch_all)."""
    return launch_all([spec])[0]


def launch_all(specs: Sequence[Spec], stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> tuple[RunningServer, ...]:
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


def _check_distinct(specs: Sequence[Spec]) -> None:
    names = [s.name for s in specs]
    targets = [s.grpc_target for s in specs]
    for what, values in (("server names", names), ("gRPC addresses", targets)):
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ConfigError(f"launching several servers with the same {what}: {', '.join(duplicates)}")
