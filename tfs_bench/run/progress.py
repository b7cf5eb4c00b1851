"""The experiment's progress: the current step, steps done of the total, elapsed time and an ETA.

The ETA adds, for each step left, the mean duration of the finished steps of its kind measured in
this process, or the step's estimate from the settings until one of its kind has finished.
Lines go to `out` (print by default), one when a step starts and one when it ends.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence

from tfs_bench.run.experiment import Step


class Progress:
    def __init__(
        self,
        steps: Sequence[Step],
        estimates_s: Mapping[str, float],
        already_done: int = 0,
        out: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._total = len(steps)
        self._left = {s.id: s.kind for s in steps}
        self._estimates = dict(estimates_s)
        self._done = already_done
        self._out = out
        self._clock = clock
        self._start = clock()
        self._measured: dict[str, list[float]] = collections.defaultdict(list)
        self._step_start: float | None = None

    def eta_s(self) -> float:
        return sum(self._mean(kind) for kind in self._left.values())

    def _mean(self, kind: str) -> float:
        durations = self._measured.get(kind)
        return sum(durations) / len(durations) if durations else self._estimates.get(kind, 0.0)

    def started(self, step: Step) -> None:
        self._step_start = self._clock()
        self._out(
            f"[{self._done + 1}/{self._total}] {step.id}  (elapsed {_clock_text(self._clock() - self._start)}, "
            f"ETA {_clock_text(self.eta_s())})"
        )

    def finished(self, step: Step, status: str, summary: str) -> None:
        took = self._clock() - self._step_start if self._step_start is not None else 0.0
        if status == "done":
            self._measured[step.kind].append(took)
        self._left.pop(step.id, None)
        self._done += 1
        self._out(f"    {status} in {took:.0f} s: {summary}")

    def skipped_before_start(self, step: Step) -> None:
        """A step already finished by an earlier attempt of the run (resume)."""
        self._left.pop(step.id, None)


def _clock_text(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
