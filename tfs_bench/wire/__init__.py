"""TF Serving's PredictionService and ModelService messages, without TensorFlow.

`serving.proto` declares the fields the suite's clients send and read, with TensorFlow
Serving's field numbers; grpcio-tools compiles it at build time (`tfs_bench.wire.build`). The
load stage encodes requests and reads metadata with these, and the launch stage asks a server
for its models' status, instead of using the tensorflow-serving-api wheel, whose protos import
all of TensorFlow (about 0.7 GB and seconds at start-up).

    serving = wire.messages()
    request = serving.PredictRequest()
    channel.unary_unary(wire.method("Predict"), ...)
"""

from __future__ import annotations

from types import ModuleType

SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


def messages() -> ModuleType:
    """The generated serving_pb2 module, built first when missing or out of date."""
    from tfs_bench.wire import build  # here, so `python -m tfs_bench.wire.build` runs it fresh

    if not build.is_current():
        build.build()
    from tfs_bench.wire import serving_pb2

    return serving_pb2


def method(name: str, service: str = SERVICE) -> str:
    """The gRPC path of one of a service's methods (PredictionService's by default)."""
    return f"/{service}/{name}"
