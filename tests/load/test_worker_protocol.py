"""The driver–worker pipe: the plan, commands and events round-trip, and a real worker speaks them."""

import asyncio
import dataclasses
import gc
import json
import subprocess

import pytest

from conftest import REPO_ROOT
from conftest import run_env
from tfs_bench.child_process import module_argv
from tfs_bench.launch.ports import free_port
from tfs_bench.load import worker_protocol
from tfs_bench.load.worker import WorkerEngine
from tfs_bench.load.worker_protocol import ErrorEvent
from tfs_bench.load.worker_protocol import FlushedEvent
from tfs_bench.load.worker_protocol import MarkCommand
from tfs_bench.load.worker_protocol import MarkEvent
from tfs_bench.load.worker_protocol import ReadyEvent
from tfs_bench.load.worker_protocol import StartCommand
from tfs_bench.load.worker_protocol import StopCommand
from tfs_bench.load.worker_protocol import StoppedEvent
from tfs_bench.load.worker_protocol import TenantShare
from tfs_bench.load.worker_protocol import WorkerPlan
from tfs_bench.load.worker_protocol import command_from_json
from tfs_bench.load.worker_protocol import event_from_json

SHARE = TenantShare("a@x:1", "a", "x:1", 2, (b"\x00\xffbody", b"two"), "/v1/models/a:predict", 12.5, "constant", 3)
COMMANDS = [StartCommand(123_456_789), MarkCommand(987_654_321), StopCommand()]
EVENTS = [
    ReadyEvent("realtime"),
    ReadyEvent("normal (realtime not permitted: Operation not permitted)"),
    FlushedEvent(watermark_ns=5_000, rows=12),
    MarkEvent(end_ns=6_000, watermark_ns=6_001, rows=20, cpu_s=0.25, loop_lag_p99_ms=0.4, runqueue_wait_s=0.125),
    MarkEvent(end_ns=7_000, watermark_ns=7_001, rows=20, cpu_s=0.5, loop_lag_p99_ms=None, runqueue_wait_s=None),
    StoppedEvent(watermark_ns=8_000, rows=31, cpu_s=0.75),
    ErrorEvent("cannot reach target x:1"),
]


def test_worker_plans_round_trip_through_json_with_their_bodies():
    plan = WorkerPlan(
        1, 2, "rest", (SHARE, dataclasses.replace(SHARE, tenant="b", rate_rps=None, concurrency=2)), "r.csv",
        flush_interval_s=0.05, request_timeout_s=3.0, connect_timeout_s=2.0, drain_timeout_s=1.0,
        lag_probe_interval_s=0.01, priority="normal",
    )
    line = worker_protocol.encode(plan)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert worker_protocol.decode_plan(line) == plan
    assert WorkerPlan.from_json(json.loads(line)) == plan
    with pytest.raises(ValueError, match="schema_version 1"):
        WorkerPlan.from_json({**plan.to_json(), "schema_version": 1})
    with pytest.raises(ValueError, match=r"priority must be one of \('auto', 'realtime', 'normal'\), got 'high'"):
        WorkerPlan.from_json({**plan.to_json(), "priority": "high"})


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="open and closed"):
        dataclasses.replace(SHARE, concurrency=1)
    with pytest.raises(ValueError, match="no request body"):
        dataclasses.replace(SHARE, bodies=())
    with pytest.raises(ValueError, match="worker must be"):
        WorkerPlan(2, 2, "grpc", (SHARE,), "r.csv")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_each_command_round_trips_through_its_line(command):
    line = worker_protocol.encode(command)
    assert worker_protocol.decode_command(line) == command
    assert type(command).from_json(json.loads(line)) == command


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_each_event_round_trips_through_its_line(event):
    line = worker_protocol.encode(event)
    assert worker_protocol.decode_event(line) == event
    assert type(event).from_json(json.loads(line)) == event


def test_the_wire_format_keeps_its_keys():
    assert MarkEvent(1, 2, 3, 0.5, None, 0.25).to_json() == {
        "event": "mark", "end_ns": 1, "watermark_ns": 2, "rows": 3, "cpu_s": 0.5, "loop_lag_p99_ms": None,
        "runqueue_wait_s": 0.25,
    }
    assert ReadyEvent("realtime").to_json() == {"event": "ready", "priority": "realtime"}
    assert StartCommand(9).to_json() == {"cmd": "start", "start_ns": 9}
    assert StopCommand().to_json() == {"cmd": "stop"}


@pytest.mark.parametrize(
    "parse, message, words",
    [
        (command_from_json, {"cmd": "pause"}, "unknown worker command"),
        (command_from_json, {"cmd": "mark"}, "lacks end_ns"),
        (command_from_json, {"cmd": "start", "start_ns": -1}, "integer >= 0"),
        (event_from_json, {"event": "done"}, "unknown worker event"),
        (event_from_json, {"event": "stopped", "rows": 1, "cpu_s": 0.1}, "lacks watermark_ns"),
        (event_from_json, {"event": "flushed", "watermark_ns": 1, "rows": 1.5}, "integer >= 0"),
        (event_from_json, {"event": "mark", "end_ns": 1, "watermark_ns": 1, "rows": 1, "cpu_s": -1,
                           "loop_lag_p99_ms": None, "runqueue_wait_s": None}, "number >= 0"),
        (event_from_json, {"event": "mark", "end_ns": 1, "watermark_ns": 1, "rows": 1, "cpu_s": 1,
                           "loop_lag_p99_ms": None, "runqueue_wait_s": -0.5}, "runqueue_wait_s must be a number >= 0"),
        (event_from_json, {"event": "ready"}, "lacks priority"),
        (event_from_json, {"event": "ready", "priority": ""}, "priority must be a non-empty string"),
        (event_from_json, ["event", "ready"], "unknown worker event"),
    ],
)
def test_malformed_messages_are_refused_and_named(parse, message, words):
    with pytest.raises(ValueError, match=words):
        parse(message)


def test_a_tag_of_another_message_is_refused():
    with pytest.raises(ValueError, match="not a 'mark' message"):
        MarkCommand.from_json({"cmd": "start", "end_ns": 1})
    with pytest.raises(ValueError, match="not a JSON message"):
        worker_protocol.decode_event(b"{oops\n")


def test_a_real_worker_reads_the_plan_and_reports_its_failure_as_an_error_event(tmp_path):
    target = f"127.0.0.1:{free_port()}"  # nothing listens there: the worker cannot connect
    plan = WorkerPlan(0, 1, "rest", (dataclasses.replace(SHARE, target=target),), str(tmp_path / "r.csv"),
                      connect_timeout_s=2.0)
    proc = subprocess.run(
        module_argv("tfs_bench.load.worker"), input=worker_protocol.encode(plan), capture_output=True,
        env=run_env(), cwd=REPO_ROOT, timeout=60,
    )
    assert proc.returncode == 1, proc.stderr.decode(errors="replace")
    [line] = proc.stdout.splitlines(keepends=True)
    event = worker_protocol.decode_event(line)
    assert isinstance(event, ErrorEvent) and f"cannot reach REST target {target}" in event.message


def test_a_failure_that_raced_the_parents_exit_is_not_printed_as_never_retrieved(tmp_path):
    # A killed driver closes both pipes at once: the flusher's write fails (the engine's failure)
    # while stdin's EOF stops the loop, and the stop reply fails too. Whichever error ends the
    # worker, the other must not reach the log as "Future exception was never retrieved".
    plan = WorkerPlan(0, 1, "rest", (dataclasses.replace(SHARE, target=f"127.0.0.1:{free_port()}"),),
                      str(tmp_path / "r.csv"))
    reported = []

    async def race():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        engine = WorkerEngine(plan, send=lambda event: None)
        engine._fail(BrokenPipeError(32, "Broken pipe"))
        await engine.close()
        del engine
        gc.collect()

    asyncio.run(race())
    assert reported == []
