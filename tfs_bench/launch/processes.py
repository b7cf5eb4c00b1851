"""A started server process: its own session, no life after its parent, its output in a log file.

Each server runs in its own session, so stopping it signals its whole process group, and asks the
kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG, set by tfs_bench.launch.child_exec
before it execs the server), which covers a parent killed with SIGKILL. Output goes to a log
file, never to a pipe that nobody drains.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

from tfs_bench.errors import ConfigError
from tfs_bench.errors import LaunchError
from tfs_bench.launch import child_exec

DOCKER_RM_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 20

_TAIL_READ_BYTES = 64 * 1024


def find_executable(explicit: str | None, name: str, hint: str = "") -> str:
    """The absolute path of `explicit` (a path or a command name), else of `name` on PATH.

    `hint` ends the message when it is not found (what the user can do instead).
    """
    wanted = explicit or name
    if os.sep in wanted:
        if not (os.path.isfile(wanted) and os.access(wanted, os.X_OK)):
            raise ConfigError(f"{wanted} is not an executable file")
        return os.path.abspath(wanted)
    found = shutil.which(wanted)
    if found is None:
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


def _through_child_exec(argv: Sequence[str], cpu_set: tuple[int, ...] | None, nice: int = 0) -> list[str]:
    """`argv` behind child_exec, which sets the parent-death signal, pinning and niceness, then execs it.

    A preexec_fn would do the same between fork and exec, but it makes Python fork rather than
    vfork, and a fork runs gRPC's fork handlers, which can crash the child (grpc/grpc#43055).
    """
    cores = "-" if cpu_set is None else ",".join(str(c) for c in cpu_set)
    return [sys.executable, "-I", "-S", child_exec.__file__, str(os.getpid()), cores, str(nice), *argv]


class ServerProcess:
    """A started server (or docker client) in its own session, its output going to `<log_dir>/<name>.log`.

    cpu_set: the cores it is pinned to before it runs (None: not pinned).
    nice: added to its niceness before it runs (tfs_bench.cpu_priority; 0: unchanged).
    docker_client, container: for a `docker run`, the client and the container's name; stop()
    then removes the container.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: str | os.PathLike,
        env: Mapping[str, str],
        cpu_set: tuple[int, ...] | None = None,
        docker_client: str | None = None,
        container: str | None = None,
        nice: int = 0,
    ):
        if (docker_client is None) != (container is None):
            raise ValueError("a docker server needs both the docker client and the container name")
        self.name = name
        self.container_name = container
        self.log_path = Path(log_dir).absolute() / f"{name}.log"
        self._docker = docker_client
        self._exit_code: int | None = None
        self._container_removed = False
        argv = list(argv)
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.write_text(f"# {shlex.join(argv)}\n")
        except OSError as e:
            raise LaunchError(f"cannot write the log of server {self.name!r}: {e}") from None
        with open(self.log_path, "ab") as log:
            self.started_at = time.monotonic()
            try:
                self._popen = subprocess.Popen(
                    _through_child_exec(argv, cpu_set, nice),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(env),
                    start_new_session=True,
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

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return read_log_tail(self.log_path, lines)

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
