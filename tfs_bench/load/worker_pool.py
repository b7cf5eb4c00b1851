"""A run's load workers, wherever they run: ready, start, window marks, stop; each record read once.

The pool speaks to every worker through a link: it sends the worker's plan and the commands of
tfs_bench.load.worker_protocol and keeps what the worker's events say (ready, marks, stopped).
A *group* of links knows how to wait for news from its workers and where their records come
from; two kinds exist:

- `ProcessGroup`: `python -m tfs_bench.load.worker` processes on this machine. Events arrive as
  JSON lines on each process's stdout; records are appended by the worker to
  `records-w<k>.csv` in the run directory, which the pool tails.
- `tfs_bench.load.ray_workers.RayGroup`: the same worker processes, each started by a Ray actor
  on a node of a cluster. The actor relays events and record rows; the pool writes the rows to
  `records-w<k>.csv` itself, so a run directory looks the same either way. Imported only when
  a run asks for Ray.

A worker whose process ends without being asked to stop fails the run with its log's tail, as
does an ErrorEvent. A Ray worker whose actor or node is gone is *lost* instead: the run goes
on with the others, each window closed after the loss names it (WindowSummary.lost_workers),
and the run's verdict says so; what it sent before is kept.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import subprocess
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

from tfs_bench.child_process import child_env
from tfs_bench.child_process import module_argv
from tfs_bench.errors import LoadError
from tfs_bench.load import run_files
from tfs_bench.load import worker_protocol
from tfs_bench.load.records import CSV_COLUMNS
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.records import records_from_rows
from tfs_bench.load.worker_protocol import ErrorEvent
from tfs_bench.load.worker_protocol import Event
from tfs_bench.load.worker_protocol import MarkCommand
from tfs_bench.load.worker_protocol import MarkEvent
from tfs_bench.load.worker_protocol import ReadyEvent
from tfs_bench.load.worker_protocol import StartCommand
from tfs_bench.load.worker_protocol import StopCommand
from tfs_bench.load.worker_protocol import StoppedEvent
from tfs_bench.load.worker_protocol import WorkerPlan

WORKER_MODULE = "tfs_bench.load.worker"  # run as python -m WORKER_MODULE, one process per worker
REPLY_TIMEOUT_S = 10.0  # how long a worker may take to answer a mark
EXIT_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True)
class WorkerPlace:
    """Where a worker off this machine runs, and its clock: (offset_ns, uncertainty_ns) against the pool's."""

    worker: int
    node: str
    clock: tuple[int, int]


class WorkerLink:
    """One worker as the pool sees it: its state, from the events it sent, and its records read so far."""

    def __init__(self, index: int):
        self.index = index
        self.ready = False
        self.priority: str | None = None
        self.marks: dict[int, MarkEvent] = {}
        self.stopped: StoppedEvent | None = None
        self.exited = False
        self.lost: str | None = None  # why the worker is gone, when the run goes on without it
        self.rows = 0  # records read
        self.cpu_s = 0.0  # the worker process's CPU time at its last mark or stop

    def handle(self, event: Event) -> None:
        if isinstance(event, ErrorEvent):
            raise LoadError(f"load worker {self.index}: {event.message}")
        if isinstance(event, ReadyEvent):
            self.ready = True
            self.priority = event.priority
        elif isinstance(event, MarkEvent):
            self.marks[event.end_ns] = event
            self.cpu_s = event.cpu_s
        elif isinstance(event, StoppedEvent):
            self.stopped = event
            self.cpu_s = event.cpu_s

    def lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why

    @property
    def live(self) -> bool:
        return self.lost is None

    @property
    def node(self) -> str | None:
        """Where the worker runs, when not on this machine."""
        return None

    @property
    def clock(self) -> tuple[int, int] | None:
        """(offset, uncertainty) in ns of the worker's clock against the pool's; None on this machine."""
        return None


class WorkerGroup:
    """Links of one kind and how to hear from them."""

    links: Sequence[WorkerLink]

    def send(self, messages: Mapping[int, WorkerPlan | worker_protocol.Command]) -> None:
        """Delivers each worker's message (by index), in order per worker."""
        raise NotImplementedError

    def poll(self, timeout_s: float) -> list[RequestRecord]:
        """Handles the events that came (waiting up to `timeout_s` for one); returns the new records."""
        raise NotImplementedError

    def failure(self, link: WorkerLink, what: str) -> LoadError:
        raise NotImplementedError

    def exit_status(self, link: WorkerLink, timeout_s: float) -> int:
        """The worker process's exit status, once it has exited; raises LoadError after `timeout_s`."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class WorkerPool:
    """The run's workers: start, marks, stop; every record they write, read exactly once."""

    def __init__(self, group: WorkerGroup):
        self._group = group
        self.links = list(group.links)
        self.records: list[RequestRecord] = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self._group.close()

    @property
    def live(self) -> list[WorkerLink]:
        return [link for link in self.links if link.live]

    @property
    def places(self) -> tuple[WorkerPlace, ...]:
        """Where each worker runs, for workers off this machine (none for local processes)."""
        return tuple(WorkerPlace(link.index, link.node, link.clock) for link in self.links if link.node is not None)

    def poll(self, timeout_s: float) -> list[RequestRecord]:
        new = self._group.poll(timeout_s)
        if not self.live:
            reasons = "; ".join(f"worker {link.index}: {link.lost}" for link in self.links)
            raise LoadError(f"every load worker was lost ({reasons})")
        self.records += new
        return new

    def _wait(self, done: Callable[[WorkerLink], bool], timeout_s: float, what: str) -> list[RequestRecord]:
        deadline = time.monotonic() + timeout_s
        new = []
        while True:
            new += self.poll(0)
            if all(done(link) for link in self.live):
                return new
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                late = [link.index for link in self.live if not done(link)]
                raise LoadError(f"load worker(s) {late} did not {what} within {timeout_s:g} s")
            new += self.poll(remaining)

    def wait_ready(self, timeout_s: float) -> None:
        self._wait(lambda w: w.ready, timeout_s, "connect to their targets")

    def start(self, lead_s: float) -> int:
        start_ns = time.perf_counter_ns() + int(lead_s * 1e9)
        self._group.send({link.index: StartCommand(start_ns) for link in self.live})
        return start_ns

    def mark(self, end_ns: int) -> tuple[dict[int, MarkEvent], list[RequestRecord]]:
        """Each live worker's usage at `end_ns` (by index), once each has written every record done before it.

        A worker lost before it answered is missing: its records may stop anywhere before `end_ns`."""
        self._group.send({link.index: MarkCommand(end_ns) for link in self.live})
        new = self._wait(
            lambda w: end_ns in w.marks and w.rows >= w.marks[end_ns].rows, REPLY_TIMEOUT_S, "answer a window mark"
        )
        return {link.index: link.marks.pop(end_ns) for link in self.live}, new

    def stop(self, drain_timeout_s: float) -> dict[int, StoppedEvent]:
        """Stops every live worker together, reads their last records, waits for them to exit."""
        self._group.send({link.index: StopCommand() for link in self.live})
        self._wait(lambda w: w.stopped is not None and w.rows >= w.stopped.rows, drain_timeout_s + REPLY_TIMEOUT_S,
                   "stop")
        for link in self.live:
            if self._group.exit_status(link, EXIT_TIMEOUT_S) != 0:
                raise self._group.failure(link, "failed while stopping")
            if link.rows != link.stopped.rows:
                raise LoadError(f"load worker {link.index} wrote {link.stopped.rows} records but {link.rows} were read")
        return {link.index: link.stopped for link in self.live}


# ----------------------------------------------------------------------------- on this machine


class RecordTail:
    """Reads the complete rows appended to a record file since the last read."""

    def __init__(self, path: Path):
        self._path = path
        self._file = None
        self._partial = b""
        self._header_seen = False

    def read(self) -> list[RequestRecord]:
        if self._file is None:
            try:
                self._file = open(self._path, "rb")
            except FileNotFoundError:
                return []
        return self.parse(self._file.read())

    def parse(self, data: bytes) -> list[RequestRecord]:
        """The records in `data`, the next bytes of the file; a partial last row waits for the rest."""
        data = self._partial + data
        end = data.rfind(b"\n") + 1
        complete, self._partial = data[:end], data[end:]
        lines = complete.decode("utf-8").splitlines()
        if lines and not self._header_seen:
            if lines[0] != ",".join(CSV_COLUMNS):
                raise LoadError(f"{self._path} does not start with the request record header")
            lines, self._header_seen = lines[1:], True
        return records_from_rows(lines)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _ProcessLink(WorkerLink):
    def __init__(self, plan: WorkerPlan, run_dir: Path):
        super().__init__(plan.worker)
        self.log_path = run_files.worker_log_path(run_dir, plan.worker)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            module_argv(WORKER_MODULE), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=child_env(),
        )
        os.set_blocking(self.process.stdout.fileno(), False)
        self.tail = RecordTail(Path(plan.records_path))
        self._buffer = b""

    def send(self, message: WorkerPlan | worker_protocol.Command) -> None:
        try:
            self.process.stdin.write(worker_protocol.encode(message))
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self.failure("stopped reading its commands") from None

    def read_messages(self) -> None:
        try:
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self.exited = True
            if self.stopped is None:
                raise self.failure("exited unexpectedly")
            return
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                event = worker_protocol.decode_event(line)
            except ValueError as e:
                raise LoadError(f"load worker {self.index} sent a message the driver cannot read: {e}") from None
            self.handle(event)

    def read_records(self) -> list[RequestRecord]:
        records = self.tail.read()
        self.rows += len(records)
        return records

    def failure(self, what: str) -> LoadError:
        try:
            self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        self._log.flush()
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-15:]
        return LoadError(
            f"load worker {self.index} {what} (exit status {self.process.poll()}); log {self.log_path}:\n" + "\n".join(tail)
        )

    def close(self) -> None:
        """Ends the process if it is still running (it is ours), and releases its pipes and files."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._log.close()
        self.tail.close()


class ProcessGroup(WorkerGroup):
    """Worker processes on this machine, heard through their stdout pipes."""

    def __init__(self, plans: Sequence[WorkerPlan], run_dir: Path):
        self.links: list[_ProcessLink] = []
        self._selector = selectors.DefaultSelector()
        try:
            for plan in plans:
                link = _ProcessLink(plan, run_dir)
                self.links.append(link)
                self._selector.register(link.process.stdout, selectors.EVENT_READ, link)
                link.send(plan)
        except BaseException:
            self.close()
            raise

    def send(self, messages: Mapping[int, WorkerPlan | worker_protocol.Command]) -> None:
        for index, message in messages.items():
            self.links[index].send(message)

    def poll(self, timeout_s: float) -> list[RequestRecord]:
        for key, _ in self._selector.select(timeout_s):
            key.data.read_messages()
            if key.data.exited:
                self._selector.unregister(key.fileobj)
        return [record for link in self.links for record in link.read_records()]

    def failure(self, link: WorkerLink, what: str) -> LoadError:
        return self.links[link.index].failure(what)

    def exit_status(self, link: WorkerLink, timeout_s: float) -> int:
        try:
            return self.links[link.index].process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise LoadError(f"load worker {link.index} did not exit within {timeout_s:g} s") from None

    def close(self) -> None:
        for link in self.links:
            link.close()
        self._selector.close()
