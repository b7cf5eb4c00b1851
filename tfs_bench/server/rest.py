"""The HTTP/REST front end on --rest_api_port (TF Serving's /v1/models API and Prometheus metrics).

Routes: GET model status and metadata; POST :predict, :classify and :regress.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import socket
import sys
import threading
import time
import urllib.parse

import grpc
from absl import logging
from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import regression_pb2

from tfs_bench.server import inference as inference_lib
from tfs_bench.server import json_examples
from tfs_bench.server import json_tensors
from tfs_bench.server import predict
from tfs_bench.server import status
from tfs_bench.server.json_offload import JsonOffload
from tfs_bench.server.status import ServingError

# TF Serving's routes (http_rest_api_util.cc), matched case-insensitively.
_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)", re.I
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?", re.I
)

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.CANCELLED: 499,
}
_PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)


def _target(name: str, version: str | None, label: str | None) -> predict.ModelTarget:
    return predict.ModelTarget(
        name=urllib.parse.unquote(name),
        version=int(version) if version else None,
        label=urllib.parse.unquote(label) if label else None,
    )


class RestApi:
    """Turns (method, path, body) into (HTTP status, content type, body); no sockets here."""

    def __init__(self, inference: inference_lib.Inference, models, timeout_ms: int,
                 metrics=None, metrics_path: str | None = None, json_offload: JsonOffload | None = None):
        self._inference = inference
        self._offload = json_offload
        self._predictor = inference.predictor
        self._models = models
        self._timeout_ms = timeout_ms
        self._metrics = metrics
        self._metrics_path = metrics_path

    def handle(self, method: str, raw_path: str, body: bytes) -> tuple[int, str, bytes]:
        path = urllib.parse.urlsplit(raw_path).path
        if method == "GET" and self._metrics_path is not None and path == self._metrics_path:
            return 200, _PROMETHEUS_CONTENT_TYPE, self._metrics.render().encode()
        if not path.lower().startswith("/v1/"):
            return 404, "application/json", _error_body(f"Not found: {method} {path}")
        try:
            answer = self._route(method, path, body)
            return 200, "application/json", answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        except ServingError as e:
            return http_status(e.code), "application/json", _error_body(e.message)
        except MemoryError:
            return 429, "application/json", _error_body("the server ran out of memory for this request")
        except RecursionError:
            return 400, "application/json", _error_body("the request nests too deeply")
        except Exception as e:  # noqa: BLE001 - every request gets an answer, and the log one line
            logging.error("REST %s %s failed: %s: %s", method, status.clip_value(path),
                          type(e).__name__, status.clip(str(e), 500))
            return 500, "application/json", _error_body(f"{type(e).__name__}: {e}")

    def _route(self, method: str, path: str, body: bytes) -> dict | bytes:
        """The answer as a JSON value, or as JSON bytes already encoded (by a JSON worker)."""
        if method == "POST" and (match := _PREDICT_PATH.fullmatch(path)):
            name, version, label, verb = match.groups()
            target = _target(name, version, label)
            verb = verb.lower()
            if verb == "predict":
                return self._predict(target, body)
            return self._examples(target, verb, body)
        if method == "GET" and (match := _STATUS_PATH.fullmatch(path)):
            name, version, label, metadata = match.groups()
            if not name:
                raise status.invalid_argument("Missing model name in request.")
            target = _target(name, version, label)
            return self._metadata(target) if metadata else self._status(target)
        raise status.invalid_argument(f"Malformed request: {method} {path}")

    def _predict(self, target: predict.ModelTarget, raw: bytes) -> dict | bytes:
        deadline_s = self.deadline_s()
        with self._predictor.observe_request(target.name, predict.ENTRYPOINT_REST):
            if self._offload is not None and self._offload.wants(raw):
                # Parsed and decoded in a JSON worker, not under this process's GIL.
                with self._offload.predict_body(raw) as body:
                    result = self._predictor.predict(self._call(target, body.signature_name, deadline_s), body.decode)
            else:
                body = json_tensors.parse_predict_body(raw)
                result = self._predictor.predict(
                    self._call(target, body.signature_name, deadline_s), json_tensors.decoder(body)
                )
            encoded = self._offload.encode(result.outputs, body.format) if self._offload is not None else None
            return encoded if encoded is not None else json_tensors.encode_outputs(result.outputs, body.format)

    def _call(self, target: predict.ModelTarget, signature_name: str, deadline_s: float | None) -> predict.PredictCall:
        self._check_signature(target, signature_name)
        return predict.PredictCall(target=target, signature_name=signature_name, deadline_s=deadline_s)

    def _examples(self, target: predict.ModelTarget, verb: str, raw: bytes) -> dict:
        classify = verb == "classify"
        api = inference_lib.API_CLASSIFY if classify else inference_lib.API_REGRESS
        with self._predictor.observe_request(target.name, predict.ENTRYPOINT_REST, api):
            body = json_examples.parse_examples_body(raw)
            request = (classification_pb2.ClassificationRequest() if classify
                       else regression_pb2.RegressionRequest())
            _set_model_spec(request.model_spec, target, body.signature_name)
            request.input.CopyFrom(body.input)
            if classify:
                response = self._inference.classify(request, self.deadline_s())
                return json_examples.classification_json(response.result)
            response = self._inference.regress(request, self.deadline_s())
            return json_examples.regression_json(response.result)

    def deadline_s(self) -> float | None:
        """When a request arriving now must be answered (--rest_api_timeout_in_ms; None: never)."""
        return time.monotonic() + self._timeout_ms / 1000 if self._timeout_ms > 0 else None

    def _check_signature(self, target: predict.ModelTarget, signature_name: str) -> None:
        # TF Serving's REST handler looks the signature up while parsing JSON, with its own message.
        try:
            self._predictor.signature(target, signature_name)
        except ServingError as e:
            if e.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            name = signature_name or predict.DEFAULT_SIGNATURE
            raise status.invalid_argument(
                f'Serving signature name: "{name}" not found in signature def'
            ) from None

    def _status(self, target: predict.ModelTarget) -> dict:
        statuses = self._models.version_statuses(target.name, target.version, target.label)
        return {
            "model_version_status": [
                {
                    "version": str(s.version),
                    "state": s.state.name,
                    "status": {"error_code": s.error_code.name, "error_message": s.error_message},
                }
                for s in statuses
            ]
        }

    def _metadata(self, target: predict.ModelTarget) -> dict:
        servable = self._predictor.find(target)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        servable.signature_def_any.Unpack(signature_defs)
        return {
            "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
            "metadata": {
                "signature_def": json_format.MessageToDict(
                    signature_defs,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )
            },
        }


def _set_model_spec(spec, target: predict.ModelTarget, signature_name: str) -> None:
    spec.name = target.name
    spec.signature_name = signature_name
    if target.version is not None:
        spec.version.value = target.version
    elif target.label is not None:
        spec.version_label = target.label


def _error_body(message: str) -> bytes:
    return json.dumps({"error": status.clip(message)}).encode()


@dataclasses.dataclass(frozen=True)
class RestLimits:
    """What one client may cost the REST front end (the server's --rest_* flags)."""

    max_body_bytes: int = 64 * 2**20
    # Parsing JSON takes 10 to 40 bytes of memory per byte of body: bodies read and parsed at
    # once are bounded by this many bytes; later ones wait for room until their deadline.
    max_inflight_body_bytes: int = 128 * 2**20
    idle_timeout_s: float = 30.0
    max_connections: int = 512
    backlog: int = 1024  # the kernel caps it at net.core.somaxconn


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as load generators expect
    server_version = "tfs_bench"

    def setup(self):
        # Every read waits at most this long: an idle keep-alive connection, a half-sent request
        # or a TLS hello on the plain port closes instead of holding a thread for ever.
        self.timeout = self.server.limits.idle_timeout_s
        super().setup()
        # Headers and body go out in two writes; with Nagle's algorithm the second one waits for
        # the client's delayed ACK, which adds 40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        self._respond(*self.server.api.handle("GET", self.path, b""))

    def do_POST(self):
        length = self._body_length()
        if length is None:
            return
        budget = self.server.body_budget
        if not budget.acquire(length, self.server.api.deadline_s()):
            self._refuse(503, f"the server is busy reading and parsing {budget.in_use} bytes of REST "
                              f"bodies (--rest_max_inflight_body_bytes={budget.capacity}); try again")
            return
        try:
            body = self.rfile.read(length) if length else b""
            if len(body) < length:  # the client went away, or stopped sending until the timeout
                self.close_connection = True
                return
            self._respond(*self.server.api.handle(self.command, self.path, body))
        finally:
            budget.release(length)

    # TF Serving routes every method through one handler, which calls what it does not serve a
    # malformed request (400); the stdlib would answer 501 with an HTML page.
    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _body_length(self) -> int | None:
        """Content-Length, or None after refusing the request (and closing: its body is unread)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._refuse(411, "chunked request bodies are not supported: send Content-Length")
        text = (self.headers.get("Content-Length") or "0").strip()
        if not text.isdigit() or not text.isascii():
            return self._refuse(400, f"invalid Content-Length: {status.clip_value(text, 40)!r}")
        length, limit = int(text), self.server.limits.max_body_bytes
        if length > limit:
            return self._refuse(
                413, f"request body of {length} bytes is larger than this server's limit of "
                     f"{limit} bytes (--rest_max_body_bytes)"
            )
        return length

    def _refuse(self, code: int, message: str) -> None:
        self.close_connection = True
        self._respond(code, "application/json", _error_body(message), close=True)
        return None

    def _respond(self, code: int, content_type: str, body: bytes, close: bool = False):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # one log line per request would cost more than the request


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the request threads
    block_on_close = True

    def __init__(self, address, api: RestApi, limits: RestLimits):
        self.api = api
        self.limits = limits
        self.request_queue_size = limits.backlog  # socketserver's default of 5 drops connections
        self.body_budget = ByteBudget(limits.max_inflight_body_bytes)
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            full = len(self.connections) >= self.limits.max_connections
            if not full:
                self.connections.add(request)
        if full:
            _turn_away(request, self.limits.max_connections)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # A client that resets its connection is not worth a traceback; a defect here gets a line.
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            logging.error("REST connection from %s failed: %s: %s", client_address[0],
                          type(error).__name__, status.clip(str(error), 500))


class ByteBudget:
    """Bytes of request bodies in memory at once; a body larger than the whole budget still gets
    in, alone."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.in_use = 0
        self._room = threading.Condition()

    def acquire(self, size: int, deadline_s: float | None) -> bool:
        """Waits for room for `size` bytes until `deadline_s` (time.monotonic); False if none came."""
        with self._room:
            while self.in_use and self.in_use + size > self.capacity:
                remaining = None if deadline_s is None else deadline_s - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._room.wait(remaining)
            self.in_use += size
            return True

    def release(self, size: int) -> None:
        with self._room:
            self.in_use -= size
            self._room.notify_all()


def _turn_away(connection: socket.socket, limit: int) -> None:
    body = _error_body(f"too many connections: this server serves {limit} at once (--rest_max_connections)")
    reply = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
             b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        connection.settimeout(1.0)
        connection.sendall(reply)
        connection.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        connection.close()


class RestServer:
    """Serves a RestApi on a TCP port from a background thread."""

    def __init__(self, host: str, port: int, api: RestApi, limits: RestLimits = RestLimits()):
        self._server = _HttpServer((host, port), api, limits)
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest-server")

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops accepting, lets requests in progress finish, and joins every thread."""
        self._server.shutdown()
        self._thread.join()
        for connection in list(self._server.connections):
            # Wakes handlers idling on a keep-alive connection; one mid-request still replies.
            try:
                connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        self._server.server_close()
