"""Predict and GetModelMetadata, independent of the protocol that carried the request.

Checks run in TF Serving's order with its messages (predict_util.cc): servable, signature, input
aliases, tensor parsing (done by the caller's decoder), output filter, dtypes, then the run. The run
goes through the batch scheduler when batching is on and straight to TensorFlow otherwise; metrics
are recorded where TF Serving records them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable, Collection, Mapping

import grpc
import numpy as np

from tfs_bench.server import batching
from tfs_bench.server import servables
from tfs_bench.server import status
from tfs_bench.server import tensors
from tfs_bench.server.aliases import check_input_aliases
from tfs_bench.server.servables import DEFAULT_SIGNATURE
from tfs_bench.server.servables import LoadedVersion
from tfs_bench.server.servables import Signature
from tfs_bench.server.status import ServingError

# Metric label values TF Serving uses (prediction_service_impl.cc, predict_util.cc).
API_PREDICT = "Predict"
RUNTIME = "TF1"
ENTRYPOINT_GRPC = "GRPC"
ENTRYPOINT_REST = "REST"
SIGNATURE_DEF_FIELD = "signature_def"

Decoder = Callable[[Signature], Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class ModelTarget:
    """What a request addresses: a model and at most one of version and label."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclasses.dataclass(frozen=True)
class PredictCall:
    target: ModelTarget
    signature_name: str = ""
    output_filter: tuple[str, ...] = ()
    deadline_s: float | None = None  # on time.monotonic()'s clock


@dataclasses.dataclass(frozen=True)
class PredictResult:
    servable: LoadedVersion
    signature: Signature
    outputs: Mapping[str, np.ndarray]  # in the order the response lists them


def target_of(model_spec) -> ModelTarget:
    """The ModelTarget of a ModelSpec proto (Predict, Classify, Regress, MultiInference, status)."""
    choice = model_spec.WhichOneof("version_choice")
    return ModelTarget(
        name=model_spec.name,
        version=model_spec.version.value if choice == "version" else None,
        label=model_spec.version_label if choice == "version_label" else None,
    )



def proto_decoder(inputs: Mapping, max_fill_bytes: int = tensors.DEFAULT_MAX_FILL_BYTES,
                  contents: Mapping | None = None) -> Decoder:
    """A decoder for a request's map of TensorProtos (gRPC requests and warm-up records);
    `contents` holds the tensor_content that predict_wire left out of the protos, by alias."""
    contents = contents or {}

    def decode(signature: Signature) -> dict[str, np.ndarray]:
        check_input_aliases(signature, list(inputs))
        arrays = {}
        for alias, proto in inputs.items():
            try:
                arrays[alias] = tensors.to_numpy(proto, max_fill_bytes, contents.get(alias))
            except tensors.TensorLimitError as e:
                raise status.invalid_argument(f"tensor {alias}: {e}") from None
            except tensors.TensorParseError:
                raise status.invalid_argument(f"tensor parsing error: {alias}") from None
        return arrays

    return decode


def output_aliases(signature: Signature, output_filter: tuple[str, ...]) -> tuple[str, ...]:
    if not output_filter:
        return signature.output_aliases
    seen = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise status.invalid_argument(
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {{{','.join(signature.outputs)}}}."
            )
        if alias in seen:
            raise status.invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return output_filter


def check_dtypes(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    for alias, array in inputs.items():
        spec = signature.inputs[alias]
        if array.dtype != spec.numpy_dtype:
            provided = _dtype_name(array)
            raise status.invalid_argument(
                f"Expects arg[{signature.input_index[alias]}] to be {spec.dtype_name} "
                f"but {provided} is provided"
            )


def _dtype_name(array: np.ndarray) -> str:
    return servables.dtype_name(tensors.dtype_enum_of(array))


def check_metadata_fields(fields: Collection[str]) -> None:
    if not fields:
        raise status.invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise status.invalid_argument(f"Metadata field {field} is not supported")


def check_deadline(deadline_s: float | None) -> None:
    if deadline_s is not None and time.monotonic() >= deadline_s:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded")


class Predictor:
    """Runs Predict for both front ends. `scheduler` and `metrics` are optional."""

    def __init__(self, models, scheduler=None, metrics=None):
        self._models = models
        self._scheduler = scheduler
        self._metrics = metrics

    def find(self, target: ModelTarget) -> LoadedVersion:
        return self._models.find(target.name, target.version, target.label)

    def signature(self, target: ModelTarget, signature_name: str) -> tuple[LoadedVersion, Signature]:
        servable = self.find(target)
        name = signature_name or DEFAULT_SIGNATURE
        signature = servable.signatures.get(name)
        if signature is None:
            raise status.failed_precondition(f'Serving signature key "{name}" not found.')
        return servable, signature

    def predict(self, call: PredictCall, decode: Decoder) -> PredictResult:
        """Raises ServingError; `decode` turns the request's inputs into arrays (or raises)."""
        servable, signature = self.signature(call.target, call.signature_name)
        inputs = decode(signature)
        outputs = output_aliases(signature, call.output_filter)
        check_dtypes(signature, inputs)
        result = self.run(call.target.name, API_PREDICT, servable, signature, inputs, outputs,
                          call.deadline_s)
        return PredictResult(servable, signature, result)

    def run(self, model_name: str, api: str, servable: LoadedVersion, signature: Signature,
            inputs: Mapping[str, np.ndarray], outputs: tuple[str, ...],
            deadline_s: float | None) -> dict[str, np.ndarray]:
        """Runs a checked request through the batch scheduler (when on) or straight to the Session.

        Times the run as TF Serving's runtime_latency; raises ServingError.
        """
        check_deadline(deadline_s)
        if self._scheduler is None:
            result = self.timed(model_name, api, lambda: signature.run(inputs, outputs))
        else:
            result = self.timed(model_name, api, lambda: self._run_batched(
                servable, signature, inputs, outputs, deadline_s))
        # TF Serving's run timeout fails a run that overruns the deadline; its client gave up anyway.
        check_deadline(deadline_s)
        return result

    def timed(self, model_name: str, api: str, run: Callable[[], object]):
        """Calls `run()` and records its time as runtime_latency{model_name, api, runtime}."""
        if self._metrics is None:
            return run()
        started = time.perf_counter()
        result = run()
        self._metrics.observe_runtime(model_name, api, RUNTIME, _elapsed_us(started))
        return result

    def _run_batched(self, servable, signature, inputs, outputs, deadline_s):
        # Tasks batch together only when one graph call can serve them all.
        key = (servable.name, servable.version, signature.name, outputs)
        try:
            return self._scheduler.run(
                key, inputs, lambda batch: signature.run(batch, outputs), deadline_s=deadline_s
            )
        except batching.BatchingError as e:
            raise ServingError(e.code, e.message) from None

    @contextlib.contextmanager
    def observe_request(self, model_name: str, entrypoint: str, api: str = API_PREDICT):
        """Counts every request and times the successful ones, as TF Serving does."""
        if self._metrics is None:
            yield
            return
        started = time.perf_counter()
        try:
            yield
        except ServingError as e:
            self._metrics.observe_request(model_name, api, entrypoint, e.code.name, None)
            raise
        self._metrics.observe_request(model_name, api, entrypoint, "OK", _elapsed_us(started))


def _elapsed_us(started: float) -> float:
    return (time.perf_counter() - started) * 1e6
