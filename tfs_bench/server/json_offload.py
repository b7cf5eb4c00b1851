"""Large REST predict bodies parsed, and large responses encoded, in JSON worker processes.

Python's json module holds the GIL for the whole document: a 30 MiB body took about 5 s to parse
in the serving process, and every gRPC and REST request waited behind it. Here bodies of at
least `min_body_bytes` go to one of `workers` child processes (`json_worker`, started on first
use), which parse them and decode them into the signature's arrays with the same code the
serving process would run. Outputs whose JSON would be as large (8 bytes a value, a low guess
for a JSON number) are encoded there too.
The serving process only moves bytes, which it does without the GIL.

    offload = JsonOffload(workers=2)
    with offload.predict_body(raw) as body:        # parsed in a worker, which stays reserved
        check(body.signature_name)
        arrays = body.decode(signature)            # decoded there; the worker is free again
    response = offload.encode(outputs, body.format)   # JSON bytes, or None: encode in-process

A worker that dies answers its request UNAVAILABLE (503) and is replaced on the next one;
`close` ends them all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import threading
from collections.abc import Iterator
from collections.abc import Mapping

import grpc
import numpy as np

from tfs_bench.child_process import child_env
from tfs_bench.child_process import module_argv
from tfs_bench.server import json_worker
from tfs_bench.server.status import ServingError

WORKER_MODULE = "tfs_bench.server.json_worker"
DEFAULT_WORKERS = 2
DEFAULT_MIN_BODY_BYTES = 1 << 20
_JSON_BYTES_PER_VALUE = 8


class _Worker:
    def __init__(self):
        self.process = subprocess.Popen(
            module_argv(WORKER_MODULE), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(),
        )
        self.dead = False

    def call(self, tag: bytes, payload: bytes) -> bytes:
        """The reply's payload; raises what the worker raised, or UNAVAILABLE if it died."""
        try:
            json_worker.write_frame(self.process.stdin, tag, payload)
            reply = json_worker.read_frame(self.process.stdout)
        except (BrokenPipeError, ConnectionResetError, ValueError):
            reply = None
        if reply is None:
            raise _WorkerGone(self.process.poll())
        status, body = reply
        if status == json_worker.OK:
            return body
        error = json.loads(body)
        if "code" in error:
            raise ServingError(grpc.StatusCode[error["code"]], error["message"])
        if error["kind"] == "memory":
            raise MemoryError("the JSON worker ran out of memory")
        if error["kind"] == "recursion":
            raise RecursionError("the request nests too deeply")
        raise RuntimeError(f"JSON worker: {error['type']}: {error['message']}")

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _WorkerGone(Exception):
    def __init__(self, exit_status: int | None):
        super().__init__(f"exit status {exit_status}")
        self.exit_status = exit_status


class OffloadedBody:
    """A predict body parsed in a worker, which keeps it until `decode` (or the end of the `with`)."""

    def __init__(self, offload: "JsonOffload", worker: _Worker, format: str, signature_name: str):
        self._offload = offload
        self._worker: _Worker | None = worker
        self.format = format
        self.signature_name = signature_name

    def decode(self, signature) -> dict[str, np.ndarray]:
        """The inputs as `signature` takes them (raises the ServingError json_tensors would)."""
        if self._worker is None:
            raise RuntimeError("an offloaded body is decoded once")
        specs = [[alias, np.dtype(spec.numpy_dtype).str, spec.dtype_name] for alias, spec in signature.inputs.items()]
        worker, self._worker = self._worker, None
        try:
            reply = self._offload.call(worker, json_worker.DECODE, json.dumps(specs).encode())
        finally:
            self._offload.release(worker)
        _, arrays = json_worker.unpack_arrays(reply)
        return arrays

    def _finish(self) -> None:
        if self._worker is not None:  # not decoded: the worker forgets the body
            worker, self._worker = self._worker, None
            try:
                self._offload.call(worker, json_worker.DROP, b"")
            except ServingError:
                pass  # the worker died meanwhile; nothing to forget
            finally:
                self._offload.release(worker)


class JsonOffload:
    def __init__(self, workers: int = DEFAULT_WORKERS, min_body_bytes: int = DEFAULT_MIN_BODY_BYTES):
        if workers < 0 or min_body_bytes < 0:
            raise ValueError("JSON offload: workers and min_body_bytes must be >= 0")
        self._max_workers = workers
        self.min_body_bytes = min_body_bytes
        self._idle: list[_Worker] = []
        self._live = 0
        self._closed = False
        self._lock = threading.Condition()

    def wants(self, raw: bytes) -> bool:
        return self._max_workers > 0 and len(raw) >= self.min_body_bytes

    @contextlib.contextmanager
    def predict_body(self, raw: bytes) -> Iterator[OffloadedBody]:
        worker = self._acquire()
        try:
            reply = json.loads(self.call(worker, json_worker.PARSE, raw))
        except BaseException:
            self.release(worker)
            raise
        body = OffloadedBody(self, worker, reply["format"], reply["signature_name"])
        try:
            yield body
        finally:
            body._finish()

    def encode(self, outputs: Mapping[str, np.ndarray], body_format: str) -> bytes | None:
        """The response's JSON, encoded in a worker; None when the outputs are small (encode them here)."""
        values = sum(a.size for a in outputs.values())
        if self._max_workers == 0 or values * _JSON_BYTES_PER_VALUE < self.min_body_bytes:
            return None
        worker = self._acquire()
        try:
            return self.call(worker, json_worker.ENCODE, json_worker.pack_arrays({"format": body_format}, dict(outputs)))
        finally:
            self.release(worker)

    def call(self, worker: _Worker, tag: bytes, payload: bytes) -> bytes:
        try:
            return worker.call(tag, payload)
        except _WorkerGone as e:
            logging.error("the JSON worker process (pid %d) exited (%s); a new one takes the next request",
                          worker.process.pid, e)
            worker.dead = True
            raise ServingError(grpc.StatusCode.UNAVAILABLE,
                               f"the JSON worker process exited while handling this request ({e})") from None

    def _acquire(self) -> _Worker:
        with self._lock:
            while True:
                if self._closed:
                    raise ServingError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
                if self._idle:
                    return self._idle.pop()
                if self._live < self._max_workers:
                    self._live += 1
                    break
                self._lock.wait()
        try:
            return _Worker()
        except OSError as e:
            with self._lock:
                self._live -= 1
                self._lock.notify()
            raise ServingError(grpc.StatusCode.UNAVAILABLE, f"cannot start a JSON worker process: {e}") from None

    def release(self, worker: _Worker) -> None:
        dead = worker.dead or worker.process.poll() is not None
        with self._lock:
            if dead or self._closed:
                self._live -= 1
            else:
                self._idle.append(worker)
            self._lock.notify()
        if dead or self._closed:
            worker.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._live -= len(idle)
            self._lock.notify_all()
        for worker in idle:
            worker.close()

    @property
    def live_workers(self) -> int:
        with self._lock:
            return self._live
