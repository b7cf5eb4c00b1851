"""The launch stage: turns a plan.json server entry into a running server whose models are AVAILABLE.

Four kinds of server, one readiness rule:
  embedded   our TF-Serving-compatible server, `python -m tfs_bench.server`, as a subprocess
  binary     a real `tensorflow_model_server` (found on PATH or given by path) with the plan's flags
  docker     the plan's `docker run` of the tensorflow/serving image
  external   a server already running at host:port; nothing is started and nothing is stopped
A server is ready when ModelService.GetModelStatus reports every planned version of every model
AVAILABLE. TF Serving opens its ports only after loading, so a refused connection while it loads is
normal; a server process that exits before it is ready fails the launch at once.

Started servers never outlive the launcher: each runs in its own session, so stop() signals its
whole process group, and asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG),
which covers a parent killed with SIGKILL. Server output goes to `<log_dir>/<server>.log`, never to
a pipe that nobody drains.

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

import ctypes
import dataclasses
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc

from tfs_bench import addresses
from tfs_bench import child_process
from tfs_bench.errors import ConfigError
from tfs_bench.errors import TfsBenchError
from tfs_bench.plan.placement import HostedModel
from tfs_bench.plan.plan_record import PlannedServer

KINDS = ("embedded", "binary", "docker", "external")
BINARY_NAME = "tensorflow_model_server"
DOCKER_NAME = "docker"
EMBEDDED_MODULE = "tfs_bench.server"

# Loading large models on a GPU can take minutes in TF Serving.
DEFAULT_READY_TIMEOUT_S = 300.0
DEFAULT_POLL_INTERVAL_S = 0.1
# The embedded server gives in-flight requests 10 s after SIGTERM; TF Serving is similar.
DEFAULT_STOP_TIMEOUT_S = 30.0
DOCKER_RM_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 20

_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# A poll must not hang on a server that accepted the connection but does not answer.
_STATUS_RPC_TIMEOUT_S = 1.0
# gRPC backs off reconnecting for up to two minutes by default; a loading server refuses
# connections for seconds, and its ports opening must be seen within a poll interval.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
)
_TAIL_READ_BYTES = 64 * 1024
# The directory holding the tfs_bench package, so `python -m tfs_bench.server` finds this copy.


class LaunchError(TfsBenchError):
    """A server could not be started, stopped, or made ready."""


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
            object.__setattr__(self, "binary_path", find_executable(self.binary_path, BINARY_NAME))
            self._check_cpu_set()
        else:
            object.__setattr__(self, "binary_path", find_executable(self.binary_path, DOCKER_NAME))
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
        if container_name(argv) is None:
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


def find_executable(explicit: str | None, name: str) -> str:
    """The absolute path of `explicit` (a path or a command name), else of `name` on PATH."""
    wanted = explicit or name
    if os.sep in wanted:
        if not (os.path.isfile(wanted) and os.access(wanted, os.X_OK)):
            raise ConfigError(f"{wanted} is not an executable file")
        return os.path.abspath(wanted)
    found = shutil.which(wanted)
    if found is None:
        hint = "; install TF Serving, give the binary's path, or use the embedded server" if name == BINARY_NAME else ""
        raise ConfigError(f"{wanted} not found on PATH ({os.environ.get('PATH', '')}){hint}")
    return os.path.abspath(found)


def container_name(docker_argv: Sequence[str]) -> str | None:
    """The --name of a `docker run` argv, None when it has none."""
    for i, arg in enumerate(docker_argv):
        if arg == "--name" and i + 1 < len(docker_argv):
            return docker_argv[i + 1]
        if arg.startswith("--name="):
            return arg.partition("=")[2]
    return None


def _cores(cores) -> str:
    return ",".join(str(c) for c in sorted(cores))


# ----------------------------------------------------------------------------- processes


def _child_setup(cpu_set: tuple[int, ...] | None):
    """What the child runs between fork and exec; it makes system calls only."""
    parent_pid = os.getpid()
    # Loaded here, in the parent: loading a library in a forked child of a threaded process can deadlock.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    sigterm = int(signal.SIGTERM)

    def setup():
        if prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:
            os._exit(1)  # the parent died before prctl took effect; nobody would ever stop us
        if cpu_set is not None:
            os.sched_setaffinity(0, cpu_set)

    return setup


def _child_env(kind: str) -> dict[str, str]:
    if kind == "embedded":
        return child_process.child_env(PYTHONUNBUFFERED="1")  # a crash's last words reach the log
    return dict(os.environ)


def port_free(host: str, port: int) -> str | None:
    """None when a server could listen on host:port now, else why not.

    SO_REUSEADDR, as servers set it: a port in TIME_WAIT is free, a listening one is not.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def free_port_base(servers: int, host: str = "127.0.0.1") -> int:
    """A --port_base whose plan of `servers` servers (ports base..base+2*servers-1) is free now."""
    count = 2 * servers
    for _ in range(100):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
            base = probe.getsockname()[1] & ~1  # even, as a planner's gRPC ports are
        if base + count <= 65536 and all(port_free(host, p) is None for p in range(base, base + count)):
            return base
    raise LaunchError(f"found no {count} consecutive free ports on {host}")


def _check_ports_free(server: PlannedServer) -> None:
    """A port already taken would let readiness probe someone else's server."""
    for port in (server.grpc_port, server.rest_port):
        if port and (why := port_free(server.host, port)):
            raise LaunchError(
                f"cannot start server {server.name!r}: {addresses.join(server.host, port)} is not free ({why}); "
                "is an earlier server still running?"
            )


def read_log_tail(path: str | os.PathLike, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - _TAIL_READ_BYTES))
            text = log.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _ServerProcess:
    """A started server (or docker client) in its own session, its output going to a log file."""

    def __init__(self, spec: LaunchSpec):
        self.name = spec.server.name
        self.container_name = container_name(spec.server.docker.run_argv) if spec.kind == "docker" else None
        self.log_path = Path(spec.log_dir).absolute() / f"{spec.server.name}.log"
        self._docker = spec.binary_path if spec.kind == "docker" else None
        self._exit_code: int | None = None
        self._container_removed = False
        argv = spec.command()
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.write_text(f"# {shlex.join(argv)}\n")
        except OSError as e:
            raise LaunchError(f"cannot write the log of server {self.name!r}: {e}") from None
        setup = _child_setup(spec.server.cpu_set if spec.kind != "docker" else None)
        with open(self.log_path, "ab") as log:
            self.started_at = time.monotonic()
            try:
                self._popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_child_env(spec.kind),
                    start_new_session=True,
                    preexec_fn=setup,
                )
            except (OSError, subprocess.SubprocessError) as e:
                raise LaunchError(f"cannot start server {self.name!r} ({shlex.join(argv)}): {e}") from None

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout_s: float) -> int | None:
        """The exit code, or None if still running after `timeout_s`."""
        try:
            return self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float) -> int:
        """SIGTERM to the process group, SIGKILL after `timeout_s`; the exit code. Idempotent.

        A stop that was interrupted or failed is completed by the next call.
        """
        if self._exit_code is None:
            self._exit_code = self._terminate(timeout_s)
        if self.container_name is not None and not self._container_removed:
            self._remove_container()
            self._container_removed = True
        return self._exit_code

    def _terminate(self, timeout_s: float) -> int:
        if self._popen.poll() is not None:
            return self._popen.returncode  # reaped already; its group id may belong to others now
        self._signal_group(signal.SIGTERM)
        code = self.wait(timeout_s)
        if code is None:
            self._signal_group(signal.SIGKILL)
            code = self._popen.wait()  # SIGKILL cannot be caught
        self._signal_group(signal.SIGKILL)  # whatever the server left in its group
        return code

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass  # the group is empty already

    def _remove_container(self) -> None:
        # Killing the docker client does not always stop the container (a SIGKILLed client
        # cannot forward the signal); removing it by name does, and frees the name for a relaunch.
        argv = [self._docker, "rm", "-f", self.container_name]
        with open(self.log_path, "ab") as log:
            log.write(f"# {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               timeout=DOCKER_RM_TIMEOUT_S, check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise LaunchError(
                    f"could not remove container {self.container_name} of server {self.name!r} "
                    f"({shlex.join(argv)}): {e}; remove it by hand"
                ) from None


# ----------------------------------------------------------------------------- readiness


def _status_request(model: str):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    return request


def _not_available(model: HostedModel, response) -> str:
    """'' when every planned version is AVAILABLE, else what each missing one is doing."""
    reported = {s.version: s for s in response.model_version_status}
    problems = []
    for version in model.versions:
        status = reported.get(version)
        if status is None:
            problems.append(f"version {version} not reported")
        elif status.state != _AVAILABLE:
            state = get_model_status_pb2.ModelVersionStatus.State.Name(status.state)
            error = f" ({status.status.error_message})" if status.status.error_message else ""
            problems.append(f"version {version} {state}{error}")
    return "; ".join(problems)


class _ReadinessProbe:
    """Polls GetModelStatus until every planned version of every model is AVAILABLE."""

    def __init__(self, server: PlannedServer, target: str):
        self._channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        self._stub = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._waiting = {m.name: m for m in server.models}
        self.last_seen = {m.name: "not polled yet" for m in server.models}
        self.ready_at: dict[str, float] = {}  # model -> time.monotonic() when first seen AVAILABLE

    @property
    def ready(self) -> bool:
        return not self._waiting

    def poll(self, deadline: float) -> None:
        for model in list(self._waiting.values()):
            timeout_s = min(_STATUS_RPC_TIMEOUT_S, max(deadline - time.monotonic(), 0.01))
            try:
                response = self._stub.GetModelStatus(_status_request(model.name), timeout=timeout_s)
            except grpc.RpcError as e:
                seen = f"{e.code().name}: {e.details()}"
                if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    # Not answering at all (still loading, ports closed): every model would say so.
                    self.last_seen.update({name: seen for name in self._waiting})
                    return
                self.last_seen[model.name] = seen
                continue
            problems = _not_available(model, response)
            if problems:
                self.last_seen[model.name] = problems
            else:
                self.ready_at[model.name] = time.monotonic()
                self.last_seen[model.name] = "AVAILABLE"
                del self._waiting[model.name]

    def not_ready(self) -> str:
        return "; ".join(f"{name}: {self.last_seen[name]}" for name in self._waiting)

    def close(self) -> None:
        self._channel.close()


class _Starting:
    """A server between start and ready."""

    def __init__(self, spec: LaunchSpec):
        self.spec = spec
        if spec.kind != "external":
            _check_ports_free(spec.server)
        self.probe = _ReadinessProbe(spec.server, spec.grpc_target)
        try:
            # Last: nothing that can fail may come after a process is started.
            self.process = _ServerProcess(spec) if spec.kind != "external" else None
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
        return f"\n--- last {LOG_TAIL_LINES} lines of {self.process.log_path} ---\n{read_log_tail(self.process.log_path)}"

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

    def __init__(self, spec: LaunchSpec, process: _ServerProcess | None, startup_s: float, model_ready_s: Mapping[str, float]):
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
        return read_log_tail(self._process.log_path, lines) if self._process else ""

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
