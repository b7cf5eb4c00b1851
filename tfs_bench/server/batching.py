"""Server-side batching with TF Serving's semantics, for the embedded server.

Follows TF Serving's batching session on its shared batch scheduler
(tensorflow/core/kernels/batching_util/shared_batch_scheduler.h,
tensorflow_serving/batching/batching_session.cc) without large-batch splitting or priority queues:

- One scheduler and one pool of `num_batch_threads` threads serve every model; each queue key
  (the server uses model, version, signature, output filter) has its own queue of batches.
- A task's size is dim 0 of its inputs. A task joins its queue's newest batch while the rows fit
  in `max_batch_size`, otherwise it opens a new batch; a queue already holding
  `max_enqueued_batches` waiting batches refuses it (UNAVAILABLE).
- A batch is processed when full, when `batch_timeout_micros` have passed since its first task
  arrived, or at close(); threads serve ready queues round robin.
- Inputs are concatenated along dim 0 and padded to the next allowed batch size with copies of the
  first row of the batch's last task; padding rows are dropped from the outputs.
- Errors carry TF Serving's messages, which clients match on.

Deadlines are ours, not TF Serving's (which lets gRPC cancel the call): a task still queued at its
deadline leaves the queue with DEADLINE_EXCEEDED; one whose batch has started waits for its result.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING

import grpc
import numpy as np

from tfs_bench import batching_rules
from tfs_bench.errors import ConfigError

if TYPE_CHECKING:
    from tfs_bench.server.metrics import ServerMetrics

Compute = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]


def _schedulable_cpus() -> int:
    # TF Serving sizes the pool with NumSchedulableCPUs(), which honours CPU affinity: a server
    # pinned to a core set (the multi_process placement on CPU) gets that many threads.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _require_int(field: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"batching parameter {field} must be an integer >= {minimum}; got {value!r}"
        )


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's BatchingParameters, with its defaults."""

    max_batch_size: int = batching_rules.DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(default_factory=_schedulable_cpus)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    thread_pool_name: str = "batch_threads"

    def __post_init__(self):
        _require_int("max_batch_size", self.max_batch_size, minimum=1)
        _require_int("batch_timeout_micros", self.batch_timeout_micros, minimum=0)
        _require_int("max_enqueued_batches", self.max_enqueued_batches, minimum=1)
        _require_int("num_batch_threads", self.num_batch_threads, minimum=1)
        object.__setattr__(self, "allowed_batch_sizes", tuple(self.allowed_batch_sizes))
        batching_rules.check_allowed_batch_sizes(self.allowed_batch_sizes, self.max_batch_size)
        if not isinstance(self.pad_variable_length_inputs, bool):
            raise ConfigError(
                f"batching parameter pad_variable_length_inputs must be a bool; "
                f"got {self.pad_variable_length_inputs!r}"
            )
        if not isinstance(self.thread_pool_name, str):
            raise ConfigError(
                f"batching parameter thread_pool_name must be a string; "
                f"got {self.thread_pool_name!r}"
            )

    @classmethod
    def from_proto(cls, msg) -> BatchingOptions:
        """From a tfs_protos.BatchingParameters; unset wrapper fields keep the defaults."""
        wrapped = {}
        for field in (
            "max_batch_size",
            "batch_timeout_micros",
            "max_enqueued_batches",
            "num_batch_threads",
            "thread_pool_name",
        ):
            if msg.HasField(field):
                wrapped[field] = getattr(msg, field).value
        return cls(
            allowed_batch_sizes=tuple(msg.allowed_batch_sizes),
            pad_variable_length_inputs=msg.pad_variable_length_inputs,
            **wrapped,
        )

    def processed_batch_size(self, rows: int) -> int:
        """Rows after padding a batch of `rows` up to the next allowed batch size."""
        for allowed in self.allowed_batch_sizes:
            if allowed >= rows:
                return allowed
        return rows


class BatchingError(Exception):
    """A task the scheduler refused or failed; code and message are what the client should see."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _task_size(inputs: Mapping[str, np.ndarray]) -> int:
    # TF Serving's ComputeTensorBatchSize, with its messages.
    if not inputs:
        raise BatchingError(
            grpc.StatusCode.INVALID_ARGUMENT, "Batching Run() must have at least one input tensor"
        )
    size = None
    for tensor in inputs.values():
        shape = tensor.shape
        if not shape:
            raise BatchingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Batching Run() input tensors must have at least one dimension",
            )
        if size is None:
            size = shape[0]
        elif shape[0] != size:
            raise BatchingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Batching Run() input tensors must have equal 0th-dimension size",
            )
    return size


class _Task:
    __slots__ = ("inputs", "size", "deadline_s", "enqueue_ns", "batch", "done", "outputs", "error")

    def __init__(self, inputs: Mapping[str, np.ndarray], size: int, deadline_s: float | None):
        self.inputs = inputs
        self.size = size
        self.deadline_s = deadline_s
        self.enqueue_ns = 0
        self.batch: _Batch | None = None
        self.done = threading.Event()
        self.outputs: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None


class _Batch:
    __slots__ = ("queue_key", "compute", "open_ns", "tasks", "size", "started")

    def __init__(self, queue_key: Hashable, compute: Compute, open_ns: int):
        self.queue_key = queue_key
        self.compute = compute
        self.open_ns = open_ns
        self.tasks: list[_Task] = []
        self.size = 0
        self.started = False


class BatchScheduler:
    """TF Serving's shared batch scheduler: one thread pool, one queue of batches per queue key.

    `clock` returns nanoseconds and times batch timeouts and queuing latency; deadlines passed to
    run() are on time.monotonic().
    """

    def __init__(
        self,
        options: BatchingOptions,
        metrics: ServerMetrics | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
    ):
        self._options = options
        self._metrics = metrics
        self._clock = clock
        self._timeout_ns = options.batch_timeout_micros * 1000
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        # Waiting batches per queue key, oldest first; only the newest accepts tasks. Insertion
        # order is the round-robin order: a served queue moves to the end. Empty queues are removed.
        self._queues: collections.OrderedDict[Hashable, collections.deque[_Batch]] = (
            collections.OrderedDict()
        )
        self._closed = False
        # Daemon so that an owner that dies before close() cannot hang interpreter exit; close()
        # still joins every one of them.
        self._threads = [
            threading.Thread(
                target=self._run_batch_thread, name=f"{options.thread_pool_name}_{i}", daemon=True
            )
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def options(self) -> BatchingOptions:
        return self._options

    def run(
        self,
        queue_key: Hashable,
        inputs: dict[str, np.ndarray],
        compute: Compute,
        deadline_s: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Batches `inputs` with other tasks of `queue_key`; returns this task's output rows.

        Blocks until done. `compute` maps batched inputs to batched outputs and must be the same
        for every task of a queue; its exceptions are re-raised here. The input arrays must not be
        modified until this returns. Raises BatchingError for refused or expired tasks.
        """
        size = _task_size(inputs)
        if size > self._options.max_batch_size:
            raise BatchingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Task size {size} is larger than maximum input batch size "
                f"{self._options.max_batch_size}",
            )
        if deadline_s is not None and time.monotonic() >= deadline_s:
            raise _deadline_exceeded()
        task = _Task(inputs, size, deadline_s)
        with self._lock:
            if self._closed:
                raise BatchingError(
                    grpc.StatusCode.UNAVAILABLE, "The batch scheduler is closed; no new tasks"
                )
            self._enqueue_locked(queue_key, task, compute)
            self._work_ready.notify()
        self._wait(task)
        if task.error is not None:
            raise task.error
        return task.outputs

    def num_enqueued_tasks(self, queue_key: Hashable) -> int:
        """Tasks of `queue_key` waiting for their batch to start."""
        with self._lock:
            batches = self._queues.get(queue_key, ())
            return sum(len(batch.tasks) for batch in batches)

    def close(self, timeout_s: float = 10.0) -> None:
        """Refuses new tasks, processes the queued ones, and joins every batch thread.

        Raises TimeoutError if a thread is still running (a compute that does not return) after
        `timeout_s`.
        """
        if threading.current_thread() in self._threads:
            raise RuntimeError("close() from a batch thread would wait for itself")
        with self._lock:
            self._closed = True
            self._work_ready.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        running = [thread.name for thread in self._threads if thread.is_alive()]
        if running:
            raise TimeoutError(
                f"batch threads still running {timeout_s} s after close(): {', '.join(running)}"
            )

    def __enter__(self) -> BatchScheduler:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # Submitting side.

    def _enqueue_locked(self, queue_key: Hashable, task: _Task, compute: Compute) -> None:
        task.enqueue_ns = self._clock()
        batches = self._queues.get(queue_key)
        if batches is None:
            batches = self._queues[queue_key] = collections.deque()
        if batches and batches[-1].size + task.size <= self._options.max_batch_size:
            batch = batches[-1]
        else:
            if len(batches) >= self._options.max_enqueued_batches:
                # TF Serving's wording (shared_batch_scheduler.h, without large-batch splitting).
                raise BatchingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"The batch scheduling queue to which this task was submitted is full; "
                    f"currently {len(batches)} batches enqueued and max_enqueued_batches is "
                    f"{self._options.max_enqueued_batches}",
                )
            batch = _Batch(queue_key, compute, open_ns=task.enqueue_ns)
            batches.append(batch)
        batch.tasks.append(task)
        batch.size += task.size
        task.batch = batch

    def _wait(self, task: _Task) -> None:
        if task.deadline_s is None:
            task.done.wait()
            return
        if task.done.wait(max(0.0, task.deadline_s - time.monotonic())):
            return
        with self._lock:
            withdrawn = self._withdraw_locked(task)
        if withdrawn:
            raise _deadline_exceeded()
        task.done.wait()  # its batch has started; the result is on its way

    def _withdraw_locked(self, task: _Task) -> bool:
        batch = task.batch
        if batch.started:
            return False
        batch.tasks.remove(task)
        batch.size -= task.size
        if not batch.tasks:
            batches = self._queues[batch.queue_key]
            batches.remove(batch)
            if not batches:
                del self._queues[batch.queue_key]
        return True

    # Batch threads.

    def _run_batch_thread(self) -> None:
        while True:
            with self._lock:
                batch = self._wait_for_batch_locked()
                if batch is None:
                    return
                if self._queues:
                    self._work_ready.notify()  # another idle thread may take what is left
            self._process(batch)

    def _wait_for_batch_locked(self) -> _Batch | None:
        """The next batch to process, or None once closed and drained."""
        while True:
            batch, wait_ns = self._take_ready_batch_locked()
            if batch is not None:
                return batch
            if self._closed and not self._queues:
                return None
            self._work_ready.wait(None if wait_ns is None else wait_ns / 1e9)

    def _take_ready_batch_locked(self) -> tuple[_Batch | None, int | None]:
        """A ready batch, or else the nanoseconds until the first open batch times out."""
        now_ns = self._clock()
        wait_ns = None
        for queue_key, batches in self._queues.items():
            batch = batches[0]
            # Any batch but the newest no longer accepts tasks, so it is ready.
            if len(batches) > 1 or self._is_ready(batch, now_ns):
                batches.popleft()
                if batches:
                    self._queues.move_to_end(queue_key)
                else:
                    del self._queues[queue_key]
                batch.started = True
                return batch, None  # returning at once makes changing the dict above safe
            due_ns = batch.open_ns + self._timeout_ns - now_ns
            wait_ns = due_ns if wait_ns is None else min(wait_ns, due_ns)
        return None, wait_ns

    def _is_ready(self, batch: _Batch, now_ns: int) -> bool:
        return (
            self._closed
            or batch.size >= self._options.max_batch_size
            or now_ns >= batch.open_ns + self._timeout_ns
        )

    def _process(self, batch: _Batch) -> None:
        start_ns = self._clock()
        if self._metrics is not None:
            for task in batch.tasks:
                self._metrics.observe_queuing(
                    self._options.thread_pool_name, (start_ns - task.enqueue_ns) / 1000.0
                )
        tasks = _fail_expired(batch.tasks)
        try:
            if tasks:
                self._compute(batch.compute, tasks)
        except Exception as error:  # compute's own, or ours: every task of the batch gets it
            for task in tasks:
                task.error = error
        finally:
            for task in tasks:
                if task.outputs is None and task.error is None:
                    task.error = BatchingError(
                        grpc.StatusCode.INTERNAL, "batch processing was interrupted"
                    )
                task.done.set()

    def _compute(self, compute: Compute, tasks: list[_Task]) -> None:
        rows = sum(task.size for task in tasks)
        # A batch of empty tasks has no row to pad with; TF would fail it, we just run it.
        processed = self._options.processed_batch_size(rows) if rows else 0
        merged = self._merge_inputs(tasks, processed - rows)
        if self._metrics is not None:
            self._metrics.observe_batch(rows, processed)
        outputs = {name: np.asarray(value) for name, value in compute(merged).items()}
        _split_outputs(tasks, outputs, processed)

    def _merge_inputs(self, tasks: list[_Task], padding_rows: int) -> dict[str, np.ndarray]:
        names = tasks[0].inputs.keys()
        if any(task.inputs.keys() != names for task in tasks):
            raise BatchingError(
                grpc.StatusCode.INTERNAL, "One or more tasks does not conform to batch signature"
            )
        merged = {}
        for name in names:
            parts = self._conform(name, [task.inputs[name] for task in tasks])
            if padding_rows:
                source = next(part for part in reversed(parts) if len(part))
                parts.append(np.broadcast_to(source[:1], (padding_rows, *source.shape[1:])))
            merged[name] = np.concatenate(parts)
        return merged

    def _conform(self, name: str, parts: list[np.ndarray]) -> list[np.ndarray]:
        """Checks that the tensors can be stacked; pads them if variable lengths are allowed."""
        dtype, row_shape = parts[0].dtype, parts[0].shape[1:]
        if all(p.dtype == dtype and p.shape[1:] == row_shape for p in parts):
            return parts
        if any(p.dtype != dtype for p in parts):
            dtypes = sorted({str(p.dtype) for p in parts})
            raise BatchingError(
                grpc.StatusCode.INTERNAL,
                f"Tensors with name '{name}' from different tasks have different dtypes: {dtypes}",
            )
        if not self._options.pad_variable_length_inputs:
            # TF Serving's wording (batching_session.cc).
            raise BatchingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Tensors with name '{name}' from different tasks have different shapes and "
                "padding is turned off. Set pad_variable_length_inputs to true, or ensure that "
                "all tensors with the same name have equal dimensions starting with the first dim.",
            )
        return _pad_to_common_shape(name, parts)


def _pad_to_common_shape(name: str, parts: list[np.ndarray]) -> list[np.ndarray]:
    # TF Serving's AddPadding: pad dims 1.. at their end, with each tensor's first element.
    if len({p.ndim for p in parts}) != 1:
        raise BatchingError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"Tensors with name '{name}' from different tasks have different ranks",
        )
    max_row_shape = tuple(max(dims) for dims in zip(*(p.shape[1:] for p in parts)))
    padded = []
    for part in parts:
        widths = [(0, 0)] + [(0, m - d) for m, d in zip(max_row_shape, part.shape[1:])]
        if any(width for _, width in widths):
            fill = part.flat[0] if part.size else 0
            part = np.pad(part, widths, constant_values=fill)
        padded.append(part)
    return padded


def _split_outputs(tasks: list[_Task], outputs: dict[str, np.ndarray], processed: int) -> None:
    for value in outputs.values():
        # TF Serving's wording (batching_session.cc).
        if value.ndim == 0:
            raise BatchingError(
                grpc.StatusCode.FAILED_PRECONDITION, "Batched output tensor has 0 dimensions"
            )
        if value.shape[0] != processed:
            raise BatchingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                "dimension sizes of the input tensors",
            )
    start = 0
    for task in tasks:
        end = start + task.size
        task.outputs = {name: value[start:end] for name, value in outputs.items()}
        start = end


def _fail_expired(tasks: list[_Task]) -> list[_Task]:
    """Fails the tasks whose deadline passed while queued; returns the others."""
    now_s = time.monotonic()
    live = []
    for task in tasks:
        if task.deadline_s is not None and task.deadline_s <= now_s:
            task.error = _deadline_exceeded()
            task.done.set()
        else:
            live.append(task)
    return live


def _deadline_exceeded() -> BatchingError:
    return BatchingError(
        grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded while waiting in the batching queue"
    )
