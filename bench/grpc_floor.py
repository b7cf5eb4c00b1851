"""The floor under the embedded server's gRPC cost: grpcio's own server answering Predict with nothing.

  python -m bench.grpc_floor --port=PORT [--max_workers=64]

A grpcio server built as the embedded server builds its own (a thread pool of `--max_workers`
handler threads, the same PredictionService/Predict method) whose handler returns a fixed empty
PredictResponse without parsing the request. `bench.server_overhead` measures its CPU per request
the way it measures the embedded server's: what is left above it is ours, below it is grpcio's.
"""

from __future__ import annotations

from concurrent import futures

import grpc
from absl import app
from absl import flags

_PORT = flags.DEFINE_integer("port", None, "TCP port on 127.0.0.1.", lower_bound=1)
_MAX_WORKERS = flags.DEFINE_integer("max_workers", 64, "Handler threads.", lower_bound=1)

SERVICE = "tensorflow.serving.PredictionService"


def _identity(payload: bytes) -> bytes:
    return payload


def serve(port: int, max_workers: int) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    handler = grpc.unary_unary_rpc_method_handler(
        lambda request, context: b"", request_deserializer=_identity, response_serializer=_identity
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Predict": handler}),))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}")
    server.start()
    return server


def main(argv):
    del argv
    serve(_PORT.value, _MAX_WORKERS.value).wait_for_termination()


if __name__ == "__main__":
    flags.mark_flag_as_required("port")
    app.run(main)
