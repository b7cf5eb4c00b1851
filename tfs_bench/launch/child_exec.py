"""What a started server runs first: parent-death signal, core pinning, priority, then exec of the server.

    python -I -S child_exec.py PARENT_PID CORES NICE ARGV...

CORES is a comma-separated core list, or '-' for no pinning; NICE is added to the niceness (0:
unchanged), so that the load generator beside the server gets the CPU first (tfs_bench.cpu_priority). This runs as a script of its own,
not code between fork and exec: the launcher's process may hold gRPC, whose fork handlers can kill
a child that forks (rather than vforks) before it execs. Standard library only, so it starts
without the package on the path.
"""

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
EXEC_FAILED = 127  # what a shell returns for a command it cannot run


def main(args: list[str]) -> None:
    parent_pid, cores, nice, argv = int(args[0]), args[1], int(args[2]), args[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before prctl took effect; nobody would ever stop us
    if cores != "-":
        os.sched_setaffinity(0, {int(core) for core in cores.split(",")})
    if nice:
        os.nice(nice)  # inherited by every thread the server starts
    try:
        os.execvp(argv[0], argv)  # the signal request and the affinity survive exec
    except OSError as e:
        print(f"cannot run {argv[0]}: {e}", file=sys.stderr)
        os._exit(EXEC_FAILED)


if __name__ == "__main__":
    main(sys.argv[1:])
