"""A background thread that does one thing every interval until it is stopped and joined.

The monitors' sampler, the load worker's lag probe and the server's config-file poller are all
this: wait `interval_s` (or until stop), call `tick()`, repeat. `stop()` wakes the thread, joins
it within a bound and raises the tick's failure, so a dying thread is never silent and no thread
outlives its owner.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tfs_bench.errors import TfsBenchError


class TickerError(TfsBenchError):
    """The ticker's thread failed, or did not stop in time."""


class Ticker:
    """Calls `tick()` every `interval_s` on its own thread.

    paced: the interval runs from the previous tick's start (slow ticks do not stretch it);
    otherwise from its end. final_tick: stop() has the thread tick once more before it exits
    (a sampler's last sample). A tick that raises ends the thread; stop() raises TickerError
    from it.
    """

    def __init__(
        self,
        name: str,
        interval_s: float,
        tick: Callable[[], None],
        *,
        paced: bool = False,
        final_tick: bool = False,
        stop_timeout_s: float | None = 10.0,
    ):
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._interval_s = interval_s
        self._tick = tick
        self._paced = paced
        self._final_tick = final_tick
        self._stop_timeout_s = stop_timeout_s
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        if self._started:
            raise TickerError(f"ticker {self._thread.name} runs once; make a new one")
        self._started = True
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Wakes and joins the thread; raises TickerError if it failed or outlived the timeout."""
        if not self._started:
            return
        self._stopping.set()
        self._thread.join(self._stop_timeout_s)
        if self._thread.is_alive():
            raise TickerError(f"thread {self._thread.name} did not stop within {self._stop_timeout_s} s")
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise TickerError(f"thread {self._thread.name} failed: {failure!r}") from failure

    def _run(self) -> None:
        try:
            next_at = time.perf_counter() + self._interval_s
            while True:
                stopping = self._stopping.wait(max(0.0, next_at - time.perf_counter()))
                if stopping and not self._final_tick:
                    return
                started = time.perf_counter()
                self._tick()
                if stopping:
                    return
                next_at = max(next_at + self._interval_s, started) if self._paced else time.perf_counter() + self._interval_s
        except BaseException as e:  # kept for stop() to raise
            self._failure = e
