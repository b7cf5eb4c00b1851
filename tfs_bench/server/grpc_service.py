"""The gRPC front end: tensorflow.serving.PredictionService (Predict, Classify, Regress,
MultiInference, GetModelMetadata) and ModelService."""

from __future__ import annotations

import functools
import time
from concurrent import futures

from absl import logging

import grpc
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from tfs_bench import addresses
from tfs_bench import wire
from tfs_bench.errors import ConfigError
from tfs_bench.server import inference as inference_lib
from tfs_bench.server import model_config
from tfs_bench.server import predict
from tfs_bench.server import predict_wire
from tfs_bench.server import status
from tfs_bench.server import tensors
from tfs_bench.server.status import ServingError

# A default Python gRPC server takes 4 MiB; TF Serving raises both limits to the protobuf maximum.
MAX_MESSAGE_BYTES = 2**31 - 1
# Leaves a reload this share of the client's deadline, so the client gets our status, not its own.
_RELOAD_DEADLINE_SHARE = 0.9


def _deadline_s(context) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _require_model_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise status.invalid_argument("Missing ModelSpec")


def _answers_with_status(method):
    """Every way a handler can fail reaches the client as a status, never as grpcio's UNKNOWN.

    ServingError carries TF Serving's code and text; running out of memory is RESOURCE_EXHAUSTED;
    anything else is a defect of this server: INTERNAL, and one log line naming it. Messages are
    clipped (status.clip) so an echoed name cannot push the status past the client's limit.
    """

    @functools.wraps(method)
    def handler(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as e:
            code, message = e.code, e.message
        except MemoryError:
            code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, "the server ran out of memory for this request"
        except Exception as e:  # noqa: BLE001 - the client must get an answer, and the log one line
            logging.error("%s failed: %s: %s", method.__name__, type(e).__name__, status.clip(str(e), 500))
            code, message = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
        context.abort(code, status.clip(message))

    return handler


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, inference: inference_lib.Inference,
                 max_fill_bytes: int = tensors.DEFAULT_MAX_FILL_BYTES):
        self._inference = inference
        self._predictor = inference.predictor
        self._max_fill_bytes = max_fill_bytes

    @_answers_with_status
    def Predict(self, request, context):
        """`request` is a predict_wire.ReceivedPredict: the server reads Predict with predict_wire.parse."""
        with self._predictor.observe_request(request.request.model_spec.name, predict.ENTRYPOINT_GRPC):
            return self._predict(request.request, request.contents, context)

    def _predict(self, request, contents, context):
        _require_model_spec(request)
        call = predict.PredictCall(
            target=predict.target_of(request.model_spec),
            signature_name=request.model_spec.signature_name,
            output_filter=tuple(request.output_filter),
            deadline_s=_deadline_s(context),
        )
        result = self._predictor.predict(call, predict.proto_decoder(request.inputs, self._max_fill_bytes, contents))
        response = predict_pb2.PredictResponse()
        for alias, array in result.outputs.items():
            tensors.from_numpy(array, response.outputs[alias])
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = result.servable.version
        response.model_spec.signature_name = result.signature.name
        return response

    @_answers_with_status
    def GetModelMetadata(self, request, context):
        _require_model_spec(request)
        predict.check_metadata_fields(request.metadata_field)
        servable = self._predictor.find(predict.target_of(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata[predict.SIGNATURE_DEF_FIELD].CopyFrom(servable.signature_def_any)
        return response

    @_answers_with_status
    def Classify(self, request, context):
        return self._examples_call(inference_lib.API_CLASSIFY, request.model_spec.name,
                                   self._inference.classify, request, context)

    @_answers_with_status
    def Regress(self, request, context):
        return self._examples_call(inference_lib.API_REGRESS, request.model_spec.name,
                                   self._inference.regress, request, context)

    @_answers_with_status
    def MultiInference(self, request, context):
        name = request.tasks[0].model_spec.name if request.tasks else ""
        return self._examples_call(inference_lib.API_MULTI_INFERENCE, name,
                                   self._inference.multi_inference, request, context)

    def _examples_call(self, api, model_name, method, request, context):
        with self._predictor.observe_request(model_name, predict.ENTRYPOINT_GRPC, api):
            return method(request, _deadline_s(context))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, models, reload_timeout_s: float):
        self._models = models
        self._reload_timeout_s = reload_timeout_s

    @_answers_with_status
    def GetModelStatus(self, request, context):
        _require_model_spec(request)
        target = predict.target_of(request.model_spec)
        statuses = self._models.version_statuses(target.name, target.version, target.label)
        response = get_model_status_pb2.GetModelStatusResponse()
        for version_status in statuses:
            entry = response.model_version_status.add(
                version=version_status.version, state=int(version_status.state)
            )
            entry.status.error_code = version_status.error_code.value[0]
            entry.status.error_message = version_status.error_message
        return response

    @_answers_with_status
    def HandleReloadConfigRequest(self, request, context):
        try:
            configs = model_config.from_proto(request.config)
        except ConfigError as e:
            raise status.invalid_argument(str(e)) from None
        remaining = context.time_remaining()
        timeout_s = self._reload_timeout_s
        if remaining is not None:
            timeout_s = min(timeout_s, remaining * _RELOAD_DEADLINE_SHARE)
        self._models.reload(configs, timeout_s)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.SetInParent()
        return response


def _prediction_handlers(service: PredictionService) -> grpc.GenericRpcHandler:
    """PredictionService's methods, as the generated code registers them, except that Predict
    reads its request with predict_wire (large tensor contents stay in the received bytes)."""

    def handler(method, request_type, response_type, deserializer=None):
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=deserializer or request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(wire.SERVICE, {
        "Predict": handler(service.Predict, predict_pb2.PredictRequest, predict_pb2.PredictResponse,
                           predict_wire.parse),
        "Classify": handler(service.Classify, classification_pb2.ClassificationRequest,
                            classification_pb2.ClassificationResponse),
        "Regress": handler(service.Regress, regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
        "MultiInference": handler(service.MultiInference, inference_pb2.MultiInferenceRequest,
                                  inference_pb2.MultiInferenceResponse),
        "GetModelMetadata": handler(service.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest,
                                    get_model_metadata_pb2.GetModelMetadataResponse),
    })


def start_server(
    *,
    host: str,
    port: int,
    socket_path: str,
    channel_arguments,
    prediction_service: PredictionService,
    model_service: ModelService,
    max_workers: int,
) -> tuple[grpc.Server, futures.ThreadPoolExecutor]:
    """Binds and starts the gRPC server; raises ConfigError when a listener cannot be bound."""
    supplied = {key for key, _ in channel_arguments}
    defaults = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # Without this two servers can silently share a port; TF Serving fails instead.
        ("grpc.so_reuseport", 0),
    ]
    server_options = list(channel_arguments) + [(k, v) for k, v in defaults if k not in supplied]
    executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc")
    server = grpc.server(executor, options=server_options)
    server.add_generic_rpc_handlers((_prediction_handlers(prediction_service),))
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(model_service, server)
    listen = [addresses.join(host, port)] if port else []
    if socket_path:
        listen.append(f"unix:{socket_path}")
    try:
        for address in listen:
            if server.add_insecure_port(address) == 0:
                raise RuntimeError("bind failed")
    except RuntimeError as e:
        server.stop(None)
        executor.shutdown(wait=False)
        raise ConfigError(f"cannot listen for gRPC on {address}: {e}") from None
    server.start()
    return server, executor
