"""Noticing, from the records alone, that the server under load has gone away.

A killed server refuses every connection at once: each request ends UNAVAILABLE within
microseconds, and a generator that does not notice keeps "measuring" windows of pure errors.
ServerWatch sees the records as they are read and says the server is gone once every request
done over `patience_s` (the request deadline) ended UNAVAILABLE and none got any other answer.
A server that answers anything else (an error status, DEADLINE_EXCEEDED from a hung or slow
server) is still there: its windows are judged as usual and the run recovers with it.
"""

from __future__ import annotations

from collections.abc import Iterable

from tfs_bench.load.records import RequestRecord

UNAVAILABLE = "UNAVAILABLE"
_NS_PER_S = 1_000_000_000


class ServerWatch:
    def __init__(self, patience_s: float):
        if not patience_s > 0:
            raise ValueError(f"patience_s must be > 0, got {patience_s}")
        self._patience_ns = round(patience_s * _NS_PER_S)
        self._last_answer_ns: int | None = None  # the latest done_ns of a request not UNAVAILABLE
        self._since_ns: int | None = None  # the first UNAVAILABLE after it
        self._failures = 0  # UNAVAILABLE records since then

    def observe(self, records: Iterable[RequestRecord]) -> None:
        for record in sorted((r for r in records if not r.dropped), key=lambda r: r.done_ns):
            if record.status_code != UNAVAILABLE:
                if self._last_answer_ns is None or record.done_ns > self._last_answer_ns:
                    self._last_answer_ns = record.done_ns
                if self._since_ns is not None and record.done_ns >= self._since_ns:
                    self._since_ns, self._failures = None, 0
            elif self._last_answer_ns is None or record.done_ns > self._last_answer_ns:
                if self._since_ns is None:
                    self._since_ns = record.done_ns
                self._failures += 1

    @property
    def failing_since_ns(self) -> int | None:
        """done_ns of the first UNAVAILABLE since the last answer; None while the server answers."""
        return self._since_ns

    def gone(self, now_ns: int) -> str | None:
        """Why the server counts as gone at `now_ns` (perf_counter ns), or None while it is not."""
        if self._since_ns is None or now_ns - self._since_ns < self._patience_ns:
            return None
        waited_s = (now_ns - self._since_ns) / _NS_PER_S
        return (
            f"the server stopped answering: all {self._failures} requests done in the last "
            f"{waited_s:.1f} s ended UNAVAILABLE (connection refused or lost), none got an answer"
        )
