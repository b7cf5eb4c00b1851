import os
import threading
import time

import grpc
import numpy as np
import pytest

from tfs_bench import tfs_protos
from tfs_bench.errors import ConfigError
from tfs_bench.prometheus import parse_prometheus_text, sample_key
from tfs_bench.server.batching import BatchingError, BatchingOptions, BatchScheduler
from tfs_bench.server.metrics import ServerMetrics

POOL = "test_batch_threads"
KEY = ("half_plus_two", 1, "serving_default", ())
WAIT_S = 10.0  # generous bound on every wait; a healthy test never gets near it


def options(**overrides) -> BatchingOptions:
    defaults = dict(max_batch_size=8, num_batch_threads=1, thread_pool_name=POOL)
    return BatchingOptions(**{**defaults, **overrides})


@pytest.fixture
def make_scheduler():
    schedulers = []

    def make(opts: BatchingOptions, **kwargs) -> BatchScheduler:
        scheduler = BatchScheduler(opts, **kwargs)
        schedulers.append(scheduler)
        return scheduler

    yield make
    for scheduler in schedulers:
        scheduler.close()
    leaked = [t.name for t in threading.enumerate() if t.name.startswith(POOL)]
    assert not leaked


class Compute:
    """y = 2x + 1 row by row; records every batch; can hold the first batch until released."""

    def __init__(self, hold_first_batch: bool = False, error: Exception | None = None):
        self.batches: list[np.ndarray] = []
        self.first_started = threading.Event()
        self.release = threading.Event()
        self._hold_first_batch = hold_first_batch
        self._error = error
        self._lock = threading.Lock()

    def __call__(self, inputs):
        with self._lock:
            self.batches.append(inputs["x"].copy())
            first = len(self.batches) == 1
        if first and self._hold_first_batch:
            self.first_started.set()
            assert self.release.wait(WAIT_S)
        elif self._error is not None:
            raise self._error
        return {"y": inputs["x"] * 2 + 1}

    @property
    def batch_sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


class Call:
    """scheduler.run() on its own thread, as a server's request handler would call it."""

    def __init__(self, scheduler, x, compute, key=KEY, deadline_s=None):
        self.result = None
        self.error = None
        args = (scheduler, key, x, compute, deadline_s)
        self._thread = threading.Thread(target=self._run, args=args)
        self._thread.start()

    def _run(self, scheduler, key, x, compute, deadline_s):
        try:
            self.result = scheduler.run(key, {"x": x}, compute, deadline_s=deadline_s)
        except BaseException as e:
            self.error = e

    def join(self) -> "Call":
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive()
        return self


def wait_until(predicate, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.0005)


def rows(*values) -> np.ndarray:
    return np.array(values, dtype=np.float32).reshape(-1, 1)


def hold_first_batch(scheduler, compute) -> Call:
    """Occupies the only batch thread so that later tasks queue up behind it."""
    first = Call(scheduler, rows(0), compute)
    assert compute.first_started.wait(WAIT_S)
    return first


class FakeClock:
    def __init__(self):
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns

    def advance_us(self, us: int) -> None:
        self.now_ns += us * 1000


# Batching.


def test_tasks_queued_together_run_as_one_batch_and_get_their_own_rows(make_scheduler):
    metrics = ServerMetrics()
    scheduler = make_scheduler(options(), metrics=metrics)
    compute = Compute(hold_first_batch=True)
    first = hold_first_batch(scheduler, compute)

    calls = [Call(scheduler, x, compute) for x in (rows(1), rows(2, 3), rows(4, 5, 6))]
    wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 3)
    compute.release.set()

    assert first.join().result["y"].tolist() == [[1.0]]
    assert [c.join().result["y"].ravel().tolist() for c in calls] == [
        [3.0],
        [5.0, 7.0],
        [9.0, 11.0, 13.0],
    ]
    assert compute.batch_sizes == [1, 6]
    assert sorted(compute.batches[1].ravel().tolist()) == [1, 2, 3, 4, 5, 6]
    samples = parse_prometheus_text(metrics.render())
    prefix = ":tensorflow:serving:batching_session"
    assert samples[sample_key(f"{prefix}:input_batch_size_sum")] == 7
    assert samples[sample_key(f"{prefix}:processed_batch_size_count")] == 2
    pool = {"thread_pool_name": POOL}
    assert samples[sample_key(f"{prefix}:queuing_latency_count", pool)] == 4


def test_batch_is_padded_with_the_last_tasks_first_row_and_padding_is_dropped(make_scheduler):
    metrics = ServerMetrics()
    scheduler = make_scheduler(options(allowed_batch_sizes=(2, 4, 8)), metrics=metrics)
    compute = Compute(hold_first_batch=True)
    first = hold_first_batch(scheduler, compute)

    two_rows = Call(scheduler, rows(10, 11), compute)
    wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 1)
    one_row = Call(scheduler, rows(20), compute)
    wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 2)
    compute.release.set()

    assert first.join().result["y"].tolist() == [[1.0]]
    assert two_rows.join().result["y"].tolist() == [[21.0], [23.0]]
    assert one_row.join().result["y"].tolist() == [[41.0]]
    assert [batch.ravel().tolist() for batch in compute.batches] == [[0, 0], [10, 11, 20, 20]]
    samples = parse_prometheus_text(metrics.render())
    padding = ":tensorflow:serving:batching_session:padding_size"
    assert samples[sample_key(f"{padding}_sum", {"execution_batch_size": "2"})] == 1
    assert samples[sample_key(f"{padding}_sum", {"execution_batch_size": "4"})] == 1


def test_lone_task_runs_at_once_with_zero_timeout(make_scheduler):
    scheduler = make_scheduler(options(num_batch_threads=2))
    compute = Compute()

    result = scheduler.run(KEY, {"x": rows(1, 2)}, compute)

    assert result["y"].tolist() == [[3.0], [5.0]]
    assert compute.batch_sizes == [2]


def test_open_batch_runs_when_its_timeout_passes(make_scheduler):
    clock = FakeClock()
    metrics = ServerMetrics()
    scheduler = make_scheduler(
        options(max_batch_size=4, batch_timeout_micros=1000), metrics=metrics, clock=clock
    )
    compute = Compute()

    calls = [Call(scheduler, rows(1), compute)]
    wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 1)
    clock.advance_us(400)
    calls.append(Call(scheduler, rows(2), compute))
    wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 2)
    assert compute.batches == []  # not full, and the fake clock says the timeout has not passed
    clock.advance_us(600)

    assert [c.join().result["y"].tolist() for c in calls] == [[[3.0]], [[5.0]]]
    assert compute.batch_sizes == [2]
    samples = parse_prometheus_text(metrics.render())
    queuing = ":tensorflow:serving:batching_session:queuing_latency"
    assert samples[sample_key(f"{queuing}_sum", {"thread_pool_name": POOL})] == 1000 + 600
    assert samples[sample_key(f"{queuing}_count", {"thread_pool_name": POOL})] == 2


def test_full_batch_runs_before_its_timeout(make_scheduler):
    scheduler = make_scheduler(
        options(max_batch_size=2, batch_timeout_micros=10**9), clock=FakeClock()
    )
    compute = Compute()

    calls = [Call(scheduler, rows(1), compute), Call(scheduler, rows(2), compute)]

    assert sorted(c.join().result["y"].item() for c in calls) == [3.0, 5.0]
    assert compute.batch_sizes == [2]


def test_queues_do_not_share_batches(make_scheduler):
    scheduler = make_scheduler(options())
    compute = Compute(hold_first_batch=True)
    other_compute = Compute()
    first = hold_first_batch(scheduler, compute)

    mine = Call(scheduler, rows(1), compute)
    other = Call(scheduler, rows(2), other_compute, key=("other", 1, "serving_default", ()))
    wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 1)
    compute.release.set()

    assert [c.join().result["y"].item() for c in (first, mine, other)] == [1.0, 3.0, 5.0]
    assert compute.batch_sizes == [1, 1]
    assert other_compute.batch_sizes == [1]


# Refusals and failures.


def test_task_larger_than_max_batch_size_is_invalid_argument(make_scheduler):
    scheduler = make_scheduler(options())

    with pytest.raises(BatchingError) as e:
        scheduler.run(KEY, {"x": np.zeros((9, 1), np.float32)}, Compute())

    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message == "Task size 9 is larger than maximum input batch size 8"


@pytest.mark.parametrize(
    "inputs, message",
    [
        (
            {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))},
            "Batching Run() input tensors must have equal 0th-dimension size",
        ),
        ({"a": np.float32(1.0)}, "Batching Run() input tensors must have at least one dimension"),
        ({}, "Batching Run() must have at least one input tensor"),
    ],
)
def test_unbatchable_inputs_are_invalid_argument(make_scheduler, inputs, message):
    scheduler = make_scheduler(options())

    with pytest.raises(BatchingError) as e:
        scheduler.run(KEY, inputs, Compute())

    assert (e.value.code, e.value.message) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_full_queue_refuses_a_new_batch_with_tf_servings_message(make_scheduler):
    scheduler = make_scheduler(options(max_batch_size=2, max_enqueued_batches=2))
    compute = Compute(hold_first_batch=True)
    first = hold_first_batch(scheduler, compute)
    queued = [Call(scheduler, rows(1, 2), compute)]
    wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 1)
    queued.append(Call(scheduler, rows(3, 4), compute))
    wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 2)

    with pytest.raises(BatchingError) as e:
        scheduler.run(KEY, {"x": rows(5)}, compute)

    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert e.value.message == (
        "The batch scheduling queue to which this task was submitted is full; "
        "currently 2 batches enqueued and max_enqueued_batches is 2"
    )
    compute.release.set()
    results = [c.join().result["y"].ravel().tolist() for c in [first, *queued]]
    assert results == [[1.0], [3.0, 5.0], [7.0, 9.0]]


def test_compute_error_fails_every_task_of_its_batch(make_scheduler):
    boom = RuntimeError("boom")
    scheduler = make_scheduler(options())
    compute = Compute(hold_first_batch=True, error=boom)
    first = hold_first_batch(scheduler, compute)
    calls = [Call(scheduler, rows(1), compute), Call(scheduler, rows(2), compute)]
    wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 2)
    compute.release.set()

    assert first.join().error is None
    assert [c.join().error for c in calls] == [boom, boom]
    assert compute.batch_sizes == [1, 2]
    assert scheduler.run(KEY, {"x": rows(1)}, Compute())["y"].item() == 3.0  # the thread survived


def test_output_with_wrong_row_count_fails_the_batch(make_scheduler):
    scheduler = make_scheduler(options())

    with pytest.raises(BatchingError) as e:
        scheduler.run(KEY, {"x": rows(1, 2)}, lambda inputs: {"y": np.zeros((3, 1))})

    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.message.startswith("Batched output tensor's 0th dimension does not equal")


def test_tasks_with_different_row_shapes_fail_unless_padding_is_on(make_scheduler):
    ragged = [np.array([[1, 2]], np.int32), np.array([[3, 4, 5]], np.int32)]
    for pad, expected in [(False, None), (True, [[1, 2, 1], [3, 4, 5]])]:
        scheduler = make_scheduler(options(pad_variable_length_inputs=pad))
        compute = Compute(hold_first_batch=True)
        first = hold_first_batch(scheduler, compute)
        calls = [Call(scheduler, x, compute) for x in ragged[:1]]
        wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 1)
        calls += [Call(scheduler, x, compute) for x in ragged[1:]]
        wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 2)
        compute.release.set()
        first.join()

        if pad:
            # Each tensor is padded with its own first element.
            assert compute.batches[1].tolist() == expected
            assert [c.join().result["y"].tolist() for c in calls] == [[[3, 5, 3]], [[7, 9, 11]]]
        else:
            errors = [c.join().error for c in calls]
            assert [e.code for e in errors] == [grpc.StatusCode.FAILED_PRECONDITION] * 2
            assert errors[0].message.startswith(
                "Tensors with name 'x' from different tasks have different shapes and padding is "
                "turned off."
            )


def test_task_still_queued_at_its_deadline_is_deadline_exceeded(make_scheduler):
    scheduler = make_scheduler(options())
    compute = Compute(hold_first_batch=True)
    first = hold_first_batch(scheduler, compute)

    late = Call(scheduler, rows(1), compute, deadline_s=time.monotonic() + 0.05).join()

    assert late.error.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert scheduler.num_enqueued_tasks(KEY) == 0
    compute.release.set()
    assert first.join().result["y"].item() == 1.0
    assert compute.batch_sizes == [1]  # the expired task never reached compute


def test_task_past_its_deadline_is_refused_at_once(make_scheduler):
    scheduler = make_scheduler(options())

    with pytest.raises(BatchingError) as e:
        scheduler.run(KEY, {"x": rows(1)}, Compute(), deadline_s=time.monotonic() - 1)

    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


# Closing.


def test_close_finishes_queued_tasks_joins_threads_and_refuses_new_ones():
    scheduler = BatchScheduler(options(num_batch_threads=3, batch_timeout_micros=10**9))
    compute = Compute()
    queued = Call(scheduler, rows(1), compute)  # waits for a timeout that only close() cuts short
    wait_until(lambda: scheduler.num_enqueued_tasks(KEY) == 1)

    scheduler.close()

    assert queued.join().result["y"].item() == 3.0
    assert not [t.name for t in threading.enumerate() if t.name.startswith(POOL)]
    with pytest.raises(BatchingError) as e:
        scheduler.run(KEY, {"x": rows(1)}, compute)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_close_raises_when_a_batch_does_not_finish_in_time():
    scheduler = BatchScheduler(options())
    compute = Compute(hold_first_batch=True)
    first = hold_first_batch(scheduler, compute)

    with pytest.raises(TimeoutError, match=f"{POOL}_0"):
        scheduler.close(timeout_s=0.01)

    compute.release.set()
    scheduler.close()
    assert first.join().result["y"].item() == 1.0


# Options.


def test_options_default_to_tf_servings():
    opts = BatchingOptions()

    assert opts == BatchingOptions(
        max_batch_size=1000,
        batch_timeout_micros=0,
        max_enqueued_batches=10,
        num_batch_threads=len(os.sched_getaffinity(0)),
        allowed_batch_sizes=(),
        pad_variable_length_inputs=False,
        thread_pool_name="batch_threads",
    )
    assert BatchingOptions.from_proto(tfs_protos.BatchingParameters()) == opts


def test_from_proto_reads_every_field():
    text = """
        max_batch_size { value: 8 }
        batch_timeout_micros { value: 500 }
        max_enqueued_batches { value: 3 }
        num_batch_threads { value: 2 }
        thread_pool_name { value: "pool" }
        allowed_batch_sizes: 2
        allowed_batch_sizes: 8
        pad_variable_length_inputs: true
    """

    opts = BatchingOptions.from_proto(tfs_protos.parse_text(text, tfs_protos.BatchingParameters))

    assert opts == BatchingOptions(
        max_batch_size=8,
        batch_timeout_micros=500,
        max_enqueued_batches=3,
        num_batch_threads=2,
        allowed_batch_sizes=(2, 8),
        pad_variable_length_inputs=True,
        thread_pool_name="pool",
    )
    assert [opts.processed_batch_size(n) for n in (1, 2, 3, 8)] == [2, 2, 8, 8]


_PARAM = "batching parameter "


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(max_batch_size=0), _PARAM + "max_batch_size must be an integer >= 1; got 0"),
        (dict(batch_timeout_micros=-1), _PARAM + "batch_timeout_micros must be an integer >= 0; got -1"),
        (dict(max_enqueued_batches=0), _PARAM + "max_enqueued_batches must be an integer >= 1; got 0"),
        (dict(num_batch_threads=0), _PARAM + "num_batch_threads must be an integer >= 1; got 0"),
        (dict(max_batch_size=True), _PARAM + "max_batch_size must be an integer >= 1; got True"),
        (
            dict(max_batch_size=8, allowed_batch_sizes=(4, 2, 8)),
            "allowed_batch_sizes entries must be monotonically increasing; got [4, 2, 8]",
        ),
        (
            dict(max_batch_size=8, allowed_batch_sizes=(2, 4)),
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; "
            "expected 8",
        ),
        (
            dict(max_batch_size=8, allowed_batch_sizes=[0, 8]),
            _PARAM + "allowed_batch_sizes entries must be integers >= 1; got [0, 8]",
        ),
    ],
)
def test_invalid_options_name_the_field_and_value(fields, message):
    with pytest.raises(ConfigError) as e:
        BatchingOptions(**fields)

    assert str(e.value) == message


def test_from_proto_validates_too():
    msg = tfs_protos.parse_text(
        "max_batch_size { value: 8 } allowed_batch_sizes: 4", tfs_protos.BatchingParameters
    )

    with pytest.raises(ConfigError, match="last entry was 4; expected 8"):
        BatchingOptions.from_proto(msg)
