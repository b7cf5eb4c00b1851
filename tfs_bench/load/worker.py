"""A load-generator worker process: sends its share of a traffic mix and writes request records.

Started by `tfs_bench.load.driver` as `python -m tfs_bench.load.worker`, one per `--workers`. It
never imports TensorFlow: request bodies arrive pre-encoded in its plan.

Sending runs on one asyncio event loop (grpc.aio, or a REST thread pool behind it):
- open loop: a pacer thread sleeps until each arrival's intended time (asyncio's timers have
  1 ms granularity, the late-send threshold itself; a thread's timed wait is much finer), then
  hands the due arrivals to the loop, which sends them at once without waiting for replies,
  or records them as DROPPED when the tenant already has its share of `max_outstanding` in
  flight. A slow server therefore never slows the schedule; a busy loop shows up as late sends.
- closed loop: each of the worker's `concurrency` slots sends its next request as soon as the
  previous one completes; its intended time is that completion. After an UNAVAILABLE (a refused
  or lost connection) the slot backs off, 1 ms doubling to 100 ms, so a dead server does not
  make it spin.
- event-loop lag: how long a callback posted to the loop from another thread waits before it
  runs. Every pacer hand-off is a sample, and a probe thread posts one every
  `lag_probe_interval_s` (the parent picks about 100 per window: thread wake-ups are not free).
  The p99 and the process's CPU time go to the parent with every window mark. (A timer inside
  the loop cannot measure this: asyncio's timers wake up to 1 ms late by design.)

Every record is created on the loop thread and stamped `done_ns` there, so a flush whose
watermark is W (taken on the same thread) holds every record with done_ns < W: the parent can
close a window exactly once each worker has flushed past its end.

The plan, the parent's commands and this process's events are the records of
`tfs_bench.load.worker_protocol`, one JSON line each on stdin and stdout.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator

from tfs_bench import stats
from tfs_bench.cpu_priority import set_generator_priority
from tfs_bench.errors import TfsBenchError
from tfs_bench.load.liveness import UNAVAILABLE
from tfs_bench.load.records import STATUS_DROPPED
from tfs_bench.load.records import RecordCsvWriter
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.schedule import ArrivalSchedule
from tfs_bench.load.transport import Transport
from tfs_bench.load.transport import open_transport
from tfs_bench.load.worker_protocol import Command
from tfs_bench.load.worker_protocol import ErrorEvent
from tfs_bench.load.worker_protocol import Event
from tfs_bench.load.worker_protocol import FlushedEvent
from tfs_bench.load.worker_protocol import MarkCommand
from tfs_bench.load.worker_protocol import MarkEvent
from tfs_bench.load.worker_protocol import ReadyEvent
from tfs_bench.load.worker_protocol import StartCommand
from tfs_bench.load.worker_protocol import StopCommand
from tfs_bench.load.worker_protocol import StoppedEvent
from tfs_bench.load.worker_protocol import TenantShare
from tfs_bench.load.worker_protocol import WorkerPlan
from tfs_bench.load.worker_protocol import decode_command
from tfs_bench.load.worker_protocol import decode_plan
from tfs_bench.load.worker_protocol import encode
from tfs_bench.ticker import Ticker

_MAX_ARRIVALS_PER_HANDOFF = 256
_MAX_REST_THREADS = 64
# A closed-loop slot whose request ended UNAVAILABLE waits 1, 2, 4 ... ms, at most 100 ms, before
# the next one; any other answer resets it.
_FIRST_BACKOFF_S = 0.001
_MAX_BACKOFF_S = 0.1
_PLAN_LINE_LIMIT = 1 << 30  # plans carry request bodies (images): allow long lines


def process_cpu_s() -> float:
    """User + system CPU time of this process, all threads (gRPC's C threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_runqueue_wait_s() -> float | None:
    """How long this process's live threads have waited, runnable, for a CPU (Linux schedstat).

    The second field of /proc/self/task/<tid>/schedstat, summed; a thread that exits takes its
    share with it (the parent clamps a negative difference to 0). None where it cannot be read.
    """
    total_ns = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total_ns += int(f.read().split()[1])
        except FileNotFoundError:
            continue  # the thread ended between the listing and the read
        except (OSError, ValueError, IndexError):
            return None
    return total_ns / 1e9


# ----------------------------------------------------------------------------- helper threads


class _Pacer:
    """Wakes at each open-loop arrival's intended time and hands due arrivals to the loop."""

    def __init__(self, loop, deliver, fail, schedules: list[Iterator[int] | None], start_ns: int):
        self._loop = loop
        self._deliver = deliver
        self._fail = fail  # called on the loop with an exception that ended the thread
        self._schedules = schedules  # per tenant index (None: closed loop), offsets in ns
        self._start_ns = start_ns
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pacer")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._pace()
        except BaseException as e:  # the run must end with the error, not silently stop sending
            self._loop.call_soon_threadsafe(self._fail, e)

    def _pace(self) -> None:
        heap = [(self._start_ns + next(s), i) for i, s in enumerate(self._schedules) if s is not None]
        heapq.heapify(heap)
        while heap:
            intended = heap[0][0]
            # Never early: a timed wait that returns before the intended time waits again.
            while (remaining_ns := intended - time.perf_counter_ns()) > 0:
                if self._stop.wait(remaining_ns / 1e9):
                    return
            if self._stop.is_set():
                return
            now = time.perf_counter_ns()
            due = []
            while heap and heap[0][0] <= now and len(due) < _MAX_ARRIVALS_PER_HANDOFF:
                intended, index = heapq.heappop(heap)
                due.append((index, intended))
                heapq.heappush(heap, (self._start_ns + next(self._schedules[index]), index))
            self._loop.call_soon_threadsafe(self._deliver, due, time.perf_counter_ns())


class _LagProbe:
    """Samples how long callbacks posted to the loop from other threads wait before they run."""

    def __init__(self, loop, interval_s: float):
        self._loop = loop
        self._samples_ns: list[int] = []  # appended on the loop thread only
        self._ticker = Ticker("lag-probe", interval_s, self._post)
        self.start = self._ticker.start
        self.stop = self._ticker.stop

    def _post(self) -> None:
        self._loop.call_soon_threadsafe(self.arrived, time.perf_counter_ns())

    def arrived(self, posted_ns: int) -> None:
        """Records one sample; call it on the loop with the time the callback was posted."""
        self._samples_ns.append(time.perf_counter_ns() - posted_ns)

    def take_p99_ms(self) -> float | None:
        """p99 of the samples since the last call, in ms (None without samples)."""
        samples, self._samples_ns = self._samples_ns, []
        return stats.percentile(sorted(samples), 99) / 1e6 if samples else None


# ----------------------------------------------------------------------------- the engine


class _Tenant:
    __slots__ = ("share", "transport", "outstanding", "_next_body")

    def __init__(self, share: TenantShare, transport: Transport):
        self.share = share
        self.transport = transport
        self.outstanding = 0
        self._next_body = 0

    def body(self) -> bytes:
        bodies = self.share.bodies
        body = bodies[self._next_body % len(bodies)]
        self._next_body += 1
        return body


class WorkerEngine:
    """Runs one worker's share on the current event loop; see the module docstring."""

    def __init__(self, plan: WorkerPlan, send: Callable[[Event], None]):
        self._plan = plan
        self._send = send
        self._loop = asyncio.get_running_loop()
        self._writer = RecordCsvWriter(plan.records_path)
        self._pending: list[RequestRecord] = []
        self._rows = 0
        self._transports: dict[str, Transport] = {}
        for share in plan.tenants:
            if share.target not in self._transports:
                connections = sum(
                    s.concurrency or s.max_outstanding for s in plan.tenants if s.target == share.target
                )
                self._transports[share.target] = open_transport(
                    plan.protocol, share.target, plan.request_timeout_s, min(max(connections, 1), _MAX_REST_THREADS)
                )
        self._tenants = [_Tenant(s, self._transports[s.target]) for s in plan.tenants]
        self._inflight: set[asyncio.Task] = set()
        self._stopping = False
        self._start_ns = 0
        self._pacer: _Pacer | None = None
        self._lag = _LagProbe(self._loop, plan.lag_probe_interval_s)
        self._flusher: asyncio.Task | None = None
        self.failed: asyncio.Future = self._loop.create_future()

    async def connect(self) -> None:
        for transport in self._transports.values():
            await transport.wait_ready(self._plan.connect_timeout_s)

    def start(self, start_ns: int) -> None:
        self._start_ns = start_ns
        plan = self._plan
        schedules = [
            ArrivalSchedule(t.share.rate_rps, t.share.arrival, t.share.seed).worker_offsets_ns(plan.worker, plan.workers)
            if t.share.rate_rps is not None
            else None
            for t in self._tenants
        ]
        if any(s is not None for s in schedules):
            self._pacer = _Pacer(self._loop, self._deliver, self._fail, schedules, start_ns)
            self._pacer.start()
        for tenant in self._tenants:
            for _ in range(tenant.share.concurrency):
                self._spawn(self._closed_slot(tenant))
        self._lag.start()
        self._flusher = self._loop.create_task(self._flush_periodically())

    def _spawn(self, coroutine) -> None:
        task = self._loop.create_task(coroutine)
        self._inflight.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception())

    def _fail(self, error: BaseException) -> None:
        if not self.failed.done():
            self.failed.set_exception(error)

    # -- sending

    def _deliver(self, due: list[tuple[int, int]], posted_ns: int) -> None:
        self._lag.arrived(posted_ns)
        if self._stopping:
            return  # arrivals after stop are not issued (they would fall after the last window)
        for index, intended_ns in due:
            tenant = self._tenants[index]
            if tenant.outstanding >= tenant.share.max_outstanding:
                self._record(tenant, intended_ns, None, STATUS_DROPPED, 0)
                continue
            tenant.outstanding += 1
            self._spawn(self._open_request(tenant, intended_ns))

    async def _open_request(self, tenant: _Tenant, intended_ns: int) -> None:
        try:
            await self._request(tenant, intended_ns)
        finally:
            tenant.outstanding -= 1

    async def _closed_slot(self, tenant: _Tenant) -> None:
        delay_s = (self._start_ns - time.perf_counter_ns()) / 1e9
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        intended_ns = max(self._start_ns, time.perf_counter_ns())
        backoff_s = 0.0
        while not self._stopping:
            record = await self._request(tenant, intended_ns)
            intended_ns = record.done_ns
            if record.status_code != UNAVAILABLE:
                backoff_s = 0.0
                continue
            # A refused connection fails at once: without a pause a dead server makes this loop
            # spin at tens of thousands of records a second until the driver notices.
            backoff_s = min(max(2 * backoff_s, _FIRST_BACKOFF_S), _MAX_BACKOFF_S)
            await asyncio.sleep(backoff_s)
            intended_ns = time.perf_counter_ns()

    async def _request(self, tenant: _Tenant, intended_ns: int) -> RequestRecord:
        """Sends one request and records it; returns the record."""
        issued_ns = time.perf_counter_ns()
        try:
            reply = await tenant.transport.predict(tenant.body(), tenant.share.rest_path)
        except asyncio.CancelledError:
            self._record(tenant, intended_ns, issued_ns, "CANCELLED", 0)
            raise
        return self._record(tenant, intended_ns, reply.sent_ns, reply.status_code, reply.response_bytes)

    def _record(self, tenant: _Tenant, intended_ns: int, sent_ns: int | None, status: str, size: int) -> RequestRecord:
        share = tenant.share
        record = RequestRecord(
            share.model, share.tenant, intended_ns, sent_ns, time.perf_counter_ns(), share.batch_size, status, size,
            self._plan.worker,
        )
        self._pending.append(record)
        return record

    # -- records and usage

    def _flush(self) -> int:
        """Writes every pending record; returns the watermark (all records done before it are written)."""
        watermark_ns = time.perf_counter_ns()
        records, self._pending = self._pending, []
        if records:
            self._rows += self._writer.append(records)
        return watermark_ns

    async def _flush_periodically(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._plan.flush_interval_s)
                rows = self._rows
                watermark_ns = self._flush()
                if self._rows != rows:
                    self._send(FlushedEvent(watermark_ns, self._rows))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # a write that fails must end the run, not go unnoticed
            self._fail(e)

    def mark(self, end_ns: int) -> MarkEvent:
        watermark_ns = self._flush()
        return MarkEvent(
            end_ns, watermark_ns, self._rows, process_cpu_s(), self._lag.take_p99_ms(), process_runqueue_wait_s()
        )

    async def stop(self) -> StoppedEvent:
        """Stops sending, lets requests in flight finish (bounded), writes the rest; joins every thread."""
        self._stopping = True
        if self._pacer is not None:
            self._pacer.stop()
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight), timeout=self._plan.drain_timeout_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        self._lag.stop()
        watermark_ns = self._flush()
        return StoppedEvent(watermark_ns, self._rows, process_cpu_s())

    async def close(self) -> None:
        self._stopping = True
        if self.failed.done() and not self.failed.cancelled():
            # Raised by serve(), or superseded by the error that ended it (the parent's pipe closing
            # mid-stop fails the flusher and the stop reply at once): retrieved, so asyncio does not
            # print it as "never retrieved" into the worker's log.
            self.failed.exception()
        for transport in self._transports.values():
            await transport.close()
        self._writer.close()


# ----------------------------------------------------------------------------- the process


class _Commands:
    """Reads the parent's lines from stdin on the event loop."""

    def __init__(self, reader: asyncio.StreamReader):
        self._reader = reader

    async def plan(self) -> WorkerPlan:
        return decode_plan(await self._reader.readline())

    async def next(self) -> Command:
        line = await self._reader.readline()
        if not line:
            return StopCommand()  # the parent is gone: stop cleanly
        return decode_command(line)


async def _open_stdin() -> _Commands:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_PLAN_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return _Commands(reader)


async def serve(send: Callable[[Event], None]) -> None:
    commands = await _open_stdin()
    plan = await commands.plan()
    # Before the engine starts gRPC's and the pacer's threads, which inherit the policy.
    priority = set_generator_priority(plan.priority)
    engine = WorkerEngine(plan, send)
    try:
        await engine.connect()
        send(ReadyEvent(priority))
        command = await commands.next()
        if not isinstance(command, StartCommand):
            return
        engine.start(command.start_ns)
        while True:
            reading = asyncio.ensure_future(commands.next())
            await asyncio.wait({reading, engine.failed}, return_when=asyncio.FIRST_COMPLETED)
            if engine.failed.done():
                reading.cancel()
                engine.failed.result()  # raises the failure
            command = reading.result()
            if isinstance(command, MarkCommand):
                send(engine.mark(command.end_ns))
            elif isinstance(command, StopCommand):
                break
        stopped = await engine.stop()
        if engine.failed.done():
            engine.failed.result()  # a failure that came with the stop still ends the run with its error
        send(stopped)
    finally:
        await engine.close()


def main() -> int:
    # The parent stops workers; Ctrl-C in a terminal reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # stray prints go to the worker's log, not into the protocol

    def send(event: Event) -> None:
        os.write(protocol_fd, encode(event))

    try:
        asyncio.run(serve(send))
    except BrokenPipeError:
        # The parent is gone (killed): nobody to report to. The records are already written.
        print("load worker: the driver went away; stopped", file=sys.stderr)
        return 0
    except TfsBenchError as e:
        send(ErrorEvent(str(e)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
