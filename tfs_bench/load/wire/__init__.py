"""TF Serving's PredictionService messages for the load stage, without TensorFlow.

`serving.proto` declares the fields the generator sends and reads, with TensorFlow Serving's
field numbers; grpcio-tools compiles it at build time (`tfs_bench.load.wire.build`). The load
stage encodes requests and reads metadata with these instead of the tensorflow-serving-api
wheel, whose protos import all of TensorFlow (about 0.7 GB and seconds at start-up).

    serving = wire.messages()
    request = serving.PredictRequest()
    channel.unary_unary(wire.method("Predict"), ...)
"""

from __future__ import annotations

from types import ModuleType

SERVICE = "tensorflow.serving.PredictionService"


def messages() -> ModuleType:
    """The generated serving_pb2 module, built first when missing or out of date."""
    from tfs_bench.load.wire import build  # here, so `python -m tfs_bench.load.wire.build` runs it fresh

    if not build.is_current():
        build.build()
    from tfs_bench.load.wire import serving_pb2

    return serving_pb2


def method(name: str) -> str:
    """The gRPC path of one of PredictionService's methods."""
    return f"/{SERVICE}/{name}"
