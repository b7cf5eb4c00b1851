"""CPU priority for co-located measurement: the load generator on time beside the servers it measures.

On a host that runs both, TensorFlow's thread pools in the servers are ready to use every core,
and under Linux's fair scheduler the generator's timer and event-loop threads then wait their turn
behind them: sends leave late and replies are stamped late, an error of the instrument that grows
with the server's load. Two levers, compared by `python -m bench.validity` (docs/methodology.md
quotes the figures):

- the generator's worker processes run under SCHED_FIFO at priority 1 (`realtime`): the lowest
  real-time priority, above every normal process, so a timer that fires runs at once. It needs
  root or an RLIMIT_RTPRIO of at least 1; the kernel's real-time throttling
  (/proc/sys/kernel/sched_rt_runtime_us, 95% by default) still bounds a runaway generator.
  `auto` asks for it and falls back to the normal policy where it is not permitted, saying so.
- servers started by our launchers run at a higher nice value (`server_nice`), so the fair
  scheduler gives the generator more weight when both want a core.

Either costs the server only the CPU time the generator itself uses (a few % of one core at the
rates the quick experiment offers), taken when the generator needs it rather than later.
"""

from __future__ import annotations

import os

from tfs_bench.errors import ConfigError

GENERATOR_PRIORITIES = ("auto", "realtime", "normal")
REALTIME_PRIORITY = 1
MAX_NICE = 19


def set_generator_priority(requested: str) -> str:
    """Puts the calling thread (and the threads it starts later) at the requested priority.

    Returns what it got: "realtime" or "normal", with the reason when `auto` fell back. Raises
    ConfigError when `realtime` is requested and not permitted.
    """
    if requested not in GENERATOR_PRIORITIES:
        raise ConfigError(f"generator priority must be one of {', '.join(GENERATOR_PRIORITIES)}, got {requested!r}")
    if requested == "normal":
        return "normal"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except (PermissionError, OSError) as e:
        if requested == "realtime":
            raise ConfigError(
                f"--generator_priority=realtime: SCHED_FIFO is not permitted here ({e.strerror}); run as root, "
                "raise RLIMIT_RTPRIO (ulimit -r 1), or use --generator_priority=auto or normal"
            ) from None
        return f"normal (realtime not permitted: {e.strerror})"
    return "realtime"


def check_nice(nice: int) -> None:
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= MAX_NICE:
        raise ConfigError(f"server nice must be an integer in 0..{MAX_NICE}, got {nice!r}")
