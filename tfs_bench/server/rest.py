"""The HTTP/REST front end on --rest_api_port (TF Serving's /v1/models API and Prometheus metrics).

Routes: GET model status and metadata; POST :predict, :classify and :regress.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time
import urllib.parse

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import regression_pb2

from tfs_bench.server import inference as inference_lib
from tfs_bench.server import json_examples
from tfs_bench.server import json_tensors
from tfs_bench.server import predict
from tfs_bench.server import status
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
                 metrics=None, metrics_path: str | None = None):
        self._inference = inference
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
            return 200, "application/json", json.dumps(self._route(method, path, body)).encode()
        except ServingError as e:
            return http_status(e.code), "application/json", _error_body(e.message)

    def _route(self, method: str, path: str, body: bytes) -> dict:
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

    def _predict(self, target: predict.ModelTarget, raw: bytes) -> dict:
        deadline_s = self._deadline_s()
        with self._predictor.observe_request(target.name, predict.ENTRYPOINT_REST):
            body = json_tensors.parse_predict_body(raw)
            self._check_signature(target, body.signature_name)
            call = predict.PredictCall(
                target=target,
                signature_name=body.signature_name,
                deadline_s=deadline_s,
            )
            result = self._predictor.predict(call, json_tensors.decoder(body))
            return json_tensors.encode_outputs(result.outputs, body.format)

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
                response = self._inference.classify(request, self._deadline_s())
                return json_examples.classification_json(response.result)
            response = self._inference.regress(request, self._deadline_s())
            return json_examples.regression_json(response.result)

    def _deadline_s(self) -> float | None:
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
    return json.dumps({"error": message}).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as load generators expect
    server_version = "tfs_bench"

    def setup(self):
        super().setup()
        # Headers and body go out in two writes; with Nagle's algorithm the second one waits for
        # the client's delayed ACK, which adds 40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self.connection)

    def finish(self):
        self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self):
        self._respond(*self.server.api.handle("GET", self.path, b""))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._respond(*self.server.api.handle("POST", self.path, body))

    def _respond(self, code: int, content_type: str, body: bytes):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # one log line per request would cost more than the request


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the request threads
    block_on_close = True

    def __init__(self, address, api: RestApi):
        self.api = api
        self.connections: set[socket.socket] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class RestServer:
    """Serves a RestApi on a TCP port from a background thread."""

    def __init__(self, host: str, port: int, api: RestApi):
        self._server = _HttpServer((host, port), api)
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
