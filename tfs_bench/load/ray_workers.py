"""Load workers on a Ray cluster: the same worker processes, started by Ray actors on its nodes.

    python -m tfs_bench.load --ray_address=auto --workers=4 ...      # a cluster this machine is part of
    python -m tfs_bench.load --ray_address=ray://head:10001 ...       # Ray Client

Worker k runs on the k-th node in turn of the cluster's alive nodes (sorted by address and id),
each in its own actor that reserves `--ray_worker_cpus`. The actor starts `python -m
tfs_bench.load.worker` on its node with the worker's plan, exactly as the driver does on one
machine, passes the driver's commands to it and sends back its events and the record rows it
wrote (to a file in the node's temporary directory). The schedule is split as on one machine:
every W-th open-loop arrival, an even split of closed-loop slots and of the outstanding cap.
The package travels to the nodes with the job (Ray's `py_modules`); each node needs the
generator's own requirements (grpcio, protobuf, numpy), never TensorFlow.

Clocks: every node measures with its own monotonic clock. Before a run the driver reads each
actor's clock several times and keeps the read with the shortest round trip: the offset is the
remote reading minus the midpoint of the round trip, and its uncertainty is half that round
trip (the remote read happened somewhere inside it). Commands carry times converted to the
node's clock, so every worker starts at one common instant; events come back converted to the
driver's clock by the driver, and record rows by the actor on its node (so the driver parses
them as it parses a local worker's file). summary.json keeps each worker's node, offset and
uncertainty.

A worker whose actor dies (its node lost, its process killed) or whose process exits without
being asked to stop is *lost*: the run goes on with the others, and windows closed after the
loss are marked (tfs_bench.load.worker_pool). Importing this module imports Ray; the driver
imports it only for runs with a Ray address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

import ray
from ray.exceptions import GetTimeoutError
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import tfs_bench
from tfs_bench import addresses
from tfs_bench.child_process import child_env
from tfs_bench.errors import LoadError
from tfs_bench.load import run_files
from tfs_bench import wire
from tfs_bench.load import worker_protocol
from tfs_bench.load.records import RecordCsvWriter
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.records import csv_rows
from tfs_bench.load.records import records_from_rows
from tfs_bench.load.worker_pool import EXIT_TIMEOUT_S
from tfs_bench.load.worker_pool import REPLY_TIMEOUT_S
from tfs_bench.load.worker_pool import WORKER_MODULE
from tfs_bench.load.worker_pool import RecordTail
from tfs_bench.load.worker_pool import WorkerGroup
from tfs_bench.load.worker_pool import WorkerLink
from tfs_bench.load.worker_protocol import FlushedEvent
from tfs_bench.load.worker_protocol import MarkCommand
from tfs_bench.load.worker_protocol import MarkEvent
from tfs_bench.load.worker_protocol import StartCommand
from tfs_bench.load.worker_protocol import StoppedEvent
from tfs_bench.load.worker_protocol import WorkerPlan

NAMESPACE = "tfs_bench"
START_TIMEOUT_S = 60.0  # an actor placed, its worker process started (Python, grpc) on its node
CLOCK_READS = 16
POLL_WAIT_S = 0.5  # how long an actor holds a poll open when it has nothing to say
_LOG_TAIL_LINES = 15
_PLAN_LINE_LIMIT = 1 << 30  # plans carry request bodies


def connect(address: str, timeout_s: float) -> None:
    """Joins the Ray cluster at `address` (auto, host:port, ray://host:port), once per process.

    Ray itself waits minutes for a head that does not answer; a named address is tried first
    with a plain TCP connection, so that a wrong one fails within `timeout_s`."""
    if ray.is_initialized():
        return
    if address != "auto":
        head = addresses.parse(address.removeprefix("ray://"), "--ray_address")
        try:
            socket.create_connection((head.host, head.port), timeout=timeout_s).close()
        except OSError as e:
            raise LoadError(f"no Ray cluster answers at {address} ({e}); start one with `ray start --head` "
                            f"or give its head's address") from None
    wire.messages()  # the generated module travels with the package: build it before it is packed
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level="WARNING",
            runtime_env={"py_modules": [str(Path(tfs_bench.__file__).parent)]},
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise LoadError(f"cannot join the Ray cluster at {address!r}: {e}") from None


def worker_nodes(workers: int, cpus: float) -> list[tuple[str, str]]:
    """(node id, address) for each worker in turn over the alive nodes with `cpus` CPUs in all."""
    nodes = sorted(
        (n["NodeManagerAddress"], n["NodeID"])
        for n in ray.nodes()
        if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= cpus
    )
    if not nodes:
        raise LoadError(f"the Ray cluster has no alive node with {cpus:g} CPU(s) for a load worker (--ray_worker_cpus)")
    return [(nodes[k % len(nodes)][1], nodes[k % len(nodes)][0]) for k in range(workers)]


# ----------------------------------------------------------------------------- on the node


class WorkerHost:
    """A Ray actor (async) that runs one worker process on its node and relays for it."""

    def __init__(self, index: int):
        self._index = index
        self._dir = tempfile.mkdtemp(prefix=f"tfs-bench-worker{index}-")
        self._process: asyncio.subprocess.Process | None = None
        self._events: list[bytes] = []
        self._news = asyncio.Event()
        self._tail = RecordTail(Path(self._dir) / "records.csv")
        self._offset_ns = 0
        self._reader = None
        self._log = open(os.path.join(self._dir, "worker.log"), "wb")

    async def launch(self, plan_line: bytes) -> str:
        """Starts the worker with its plan, its records in this node's temporary directory; returns the node's name."""
        plan = dataclasses.replace(worker_protocol.decode_plan(plan_line),
                                   records_path=os.path.join(self._dir, "records.csv"))
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", WORKER_MODULE, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=self._log, env=child_env(), limit=_PLAN_LINE_LIMIT,
        )
        await self.command(worker_protocol.encode(plan))
        self._reader = asyncio.ensure_future(self._read_events())
        return f"{socket.gethostname()} ({ray.get_runtime_context().get_node_id()[:12]})"

    async def clock_ns(self) -> int:
        return time.perf_counter_ns()

    async def set_clock(self, offset_ns: int) -> None:
        """This node's clock minus the driver's: the records go back on the driver's clock."""
        self._offset_ns = offset_ns

    async def command(self, line: bytes) -> None:
        try:
            self._process.stdin.write(line)
            await self._process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the process is gone; the next poll says how it ended

    async def _read_events(self) -> None:
        while True:
            line = await self._process.stdout.readline()
            if not line:
                await self._process.wait()
                self._news.set()
                return
            self._events.append(line)
            self._news.set()

    async def poll(self, wait_s: float) -> dict:
        """The events and record rows since the last poll (waiting up to `wait_s` for some), and
        the exit status with the log's tail once the process has ended."""
        if not self._events and not self._reader.done():
            try:
                await asyncio.wait_for(self._news.wait(), wait_s)
            except asyncio.TimeoutError:
                pass
        self._news.clear()
        events, self._events = self._events, []
        ended = self._reader.done()
        reply = {"events": events, "records": self._read_records(), "exit_status": None, "log_tail": ""}
        if ended:
            reply["exit_status"] = self._process.returncode
            self._log.flush()
            with open(os.path.join(self._dir, "worker.log"), errors="replace") as log:
                reply["log_tail"] = "\n".join(log.read().strip().splitlines()[-_LOG_TAIL_LINES:])
        return reply

    def _read_records(self) -> str:
        """The whole rows written since the last read, converted here to the driver's clock, so
        that the driver only parses them, as it parses a local worker's file."""
        return csv_rows(record_from_node(r, self._offset_ns) for r in self._tail.read())

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), EXIT_TIMEOUT_S)
            except asyncio.TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._tail.close()
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)


_RemoteHost = ray.remote(max_restarts=0, max_concurrency=16)(WorkerHost)


# ----------------------------------------------------------------------------- on the driver


def read_clock(actor, reads: int = CLOCK_READS) -> tuple[int, int]:
    """(offset_ns, uncertainty_ns) of the actor's clock against this process's, from the best of `reads`."""
    best = None
    for _ in range(reads):
        t0 = time.perf_counter_ns()
        remote_ns = ray.get(actor.clock_ns.remote(), timeout=REPLY_TIMEOUT_S)
        t1 = time.perf_counter_ns()
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, remote_ns - (t0 + t1) // 2)
    round_trip_ns, offset_ns = best
    return offset_ns, (round_trip_ns + 1) // 2


def to_node(message, offset_ns: int):
    """A command with its time on the node's clock."""
    if isinstance(message, StartCommand):
        return StartCommand(message.start_ns + offset_ns)
    if isinstance(message, MarkCommand):
        return MarkCommand(message.end_ns + offset_ns)
    return message


def from_node(event, offset_ns: int):
    """An event with its times on the driver's clock."""
    if isinstance(event, FlushedEvent):
        return dataclasses.replace(event, watermark_ns=event.watermark_ns - offset_ns)
    if isinstance(event, MarkEvent):
        return dataclasses.replace(event, end_ns=event.end_ns - offset_ns, watermark_ns=event.watermark_ns - offset_ns)
    if isinstance(event, StoppedEvent):
        return dataclasses.replace(event, watermark_ns=event.watermark_ns - offset_ns)
    return event


def record_from_node(record: RequestRecord, offset_ns: int) -> RequestRecord:
    return dataclasses.replace(
        record,
        intended_ns=record.intended_ns - offset_ns,
        sent_ns=None if record.sent_ns is None else record.sent_ns - offset_ns,
        done_ns=record.done_ns - offset_ns,
    )


class _RayLink(WorkerLink):
    def __init__(self, index: int, actor, node_id: str, run_dir: Path):
        super().__init__(index)
        self.actor = actor
        self.node_id = node_id
        self.node_name = node_id[:12]
        self.offset_ns = 0
        self.uncertainty_ns: int | None = None
        self.exit_status: int | None = None
        self.log_tail = ""
        self._writer = RecordCsvWriter(run_files.records_path(run_dir, index))

    @property
    def node(self) -> str:
        return self.node_name

    @property
    def clock(self) -> tuple[int, int] | None:
        return None if self.uncertainty_ns is None else (self.offset_ns, self.uncertainty_ns)

    def take(self, reply: Mapping) -> list[RequestRecord]:
        """Handles one poll's reply: its events, then its records (written to the driver's copy)."""
        for line in reply["events"]:
            try:
                event = worker_protocol.decode_event(line)
            except ValueError as e:
                raise LoadError(f"load worker {self.index} sent a message the driver cannot read: {e}") from None
            self.handle(from_node(event, self.offset_ns))
        rows = reply["records"]  # whole rows, on this process's clock already
        records = records_from_rows(rows.splitlines())
        if records:
            self._writer.append_rows(rows)
            self.rows += len(records)
        if reply["exit_status"] is not None:
            self.exit_status, self.log_tail = reply["exit_status"], reply["log_tail"]
            self.exited = True
            if self.stopped is None:
                self.lose(f"its process on node {self.node_name} exited (status {self.exit_status}) without being "
                          f"asked to stop; its log ends: {self.log_tail[-500:]!r}")
        return records

    def close(self) -> None:
        self._writer.close()


class RayGroup(WorkerGroup):
    """One actor per worker, spread over the cluster's nodes; heard through long polls."""

    def __init__(self, plans: Sequence[WorkerPlan], run_dir: Path, cpus: float):
        """Starts one actor per plan on the cluster this process joined (`connect`)."""
        self.links: list[_RayLink] = []
        self._polls: dict = {}  # an outstanding poll per live link: ObjectRef -> link
        try:
            for plan, (node_id, node_address) in zip(plans, worker_nodes(len(plans), cpus)):
                actor = _RemoteHost.options(
                    num_cpus=cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
                ).remote(plan.worker)
                self.links.append(_RayLink(plan.worker, actor, node_id, run_dir))
            launches = [link.actor.launch.remote(worker_protocol.encode(plan)) for link, plan in zip(self.links, plans)]
            for link, launch in zip(self.links, launches):
                try:
                    link.node_name = ray.get(launch, timeout=START_TIMEOUT_S)
                except GetTimeoutError:
                    raise LoadError(
                        f"Ray did not start load worker {link.index} on node {link.node_id[:12]} within "
                        f"{START_TIMEOUT_S:g} s (it reserves {cpus:g} CPU(s) there: --ray_worker_cpus)"
                    ) from None
                link.offset_ns, link.uncertainty_ns = read_clock(link.actor)
                ray.get(link.actor.set_clock.remote(link.offset_ns), timeout=REPLY_TIMEOUT_S)
        except RayError as e:
            self.close()
            raise LoadError(f"Ray could not start the load workers: {e}") from None
        except BaseException:
            self.close()
            raise

    def send(self, messages: Mapping[int, WorkerPlan | worker_protocol.Command]) -> None:
        calls = {
            index: self.links[index].actor.command.remote(
                worker_protocol.encode(to_node(message, self.links[index].offset_ns)))
            for index, message in messages.items()
        }
        for index, call in calls.items():  # each call answered before the next command goes out: in order
            self._answered(self.links[index], call)

    def _answered(self, link: _RayLink, call):
        try:
            return ray.get(call, timeout=REPLY_TIMEOUT_S)
        except GetTimeoutError:
            raise LoadError(f"load worker {link.index}'s Ray actor did not answer within {REPLY_TIMEOUT_S:g} s") from None
        except RayError as e:
            link.lose(f"its Ray actor on node {link.node_name} is gone ({type(e).__name__}: {_first_line(e)})")
            return None

    def poll(self, timeout_s: float) -> list[RequestRecord]:
        for link in self.links:
            if link.live and not link.exited and link not in self._polls.values():
                self._polls[link.actor.poll.remote(POLL_WAIT_S)] = link
        self._polls = {ref: link for ref, link in self._polls.items() if link.live}
        if not self._polls:
            return []
        ready, rest = ray.wait(list(self._polls), num_returns=1, timeout=timeout_s)
        if ready and rest:
            ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        new = []
        for ref in ready:
            link = self._polls.pop(ref)
            reply = self._answered(link, ref)
            if reply is not None:
                new += link.take(reply)
        return new

    def failure(self, link: WorkerLink, what: str) -> LoadError:
        ray_link = self.links[link.index]
        return LoadError(f"load worker {link.index} on node {ray_link.node_name} {what} (exit status "
                         f"{ray_link.exit_status}); its log ends:\n{ray_link.log_tail}")

    def exit_status(self, link: WorkerLink, timeout_s: float) -> int:
        ray_link = self.links[link.index]
        deadline = time.monotonic() + timeout_s
        while ray_link.exit_status is None and ray_link.live:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadError(f"load worker {link.index} did not exit within {timeout_s:g} s")
            self.poll(remaining)
        return 0 if ray_link.exit_status is None else ray_link.exit_status

    def close(self) -> None:
        closing = []
        for link in self.links:
            link.close()
            try:
                closing.append(link.actor.close.remote())
            except RayError:
                pass
        try:
            ray.wait(closing, num_returns=len(closing), timeout=EXIT_TIMEOUT_S)
        except RayError:
            pass
        for link in self.links:
            try:
                ray.kill(link.actor)
            except RayError:
                pass


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]
