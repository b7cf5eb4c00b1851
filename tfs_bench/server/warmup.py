"""Replays `assets.extra/tf_serving_warmup_requests` when a version loads (--enable_model_warmup).

The file is TF Serving's: a TFRecord of PredictionLog protos, each a predict, classify, regress or
multi-inference log whose request is replayed; a record that fails makes the load fail, as in
TF Serving.
"""

from __future__ import annotations

import os

import grpc
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tfs_bench.server import inference as inference_lib
from tfs_bench.server import predict
from tfs_bench.server import status
from tfs_bench.server.servables import LoadedVersion
from tfs_bench.server.status import ServingError

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # TF Serving's limit


class _OnlyVersion:
    """Model lookup that always answers the version being warmed up, whatever the record names."""

    def __init__(self, servable: LoadedVersion):
        self._servable = servable

    def find(self, name, version=None, label=None) -> LoadedVersion:
        return self._servable


def replay(servable: LoadedVersion) -> int:
    """Runs every warm-up record through Predict; returns how many ran. Raises ServingError."""
    path = os.path.join(servable.path, WARMUP_FILE)
    if not os.path.exists(path):
        return 0
    predictor = predict.Predictor(_OnlyVersion(servable))
    inference = inference_lib.Inference(predictor)
    count = 0
    for record in tf.data.TFRecordDataset(path):
        count += 1
        if count > MAX_RECORDS:
            raise status.invalid_argument(
                f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}"
            )
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        kind = log.WhichOneof("log_type")
        if kind == "predict_log":
            request = log.predict_log.request
            call = predict.PredictCall(
                target=predict.ModelTarget(servable.name),
                signature_name=request.model_spec.signature_name,
                output_filter=tuple(request.output_filter),
            )
            predictor.predict(call, predict.proto_decoder(request.inputs))
        elif kind in _EXAMPLE_LOGS:
            getattr(inference, _EXAMPLE_LOGS[kind])(getattr(log, kind).request)
        else:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")
    return count


_EXAMPLE_LOGS = {
    "classify_log": "classify",
    "regress_log": "regress",
    "multi_inference_log": "multi_inference",
}
