"""Classify, Regress and MultiInference over `tf.Example` inputs, independent of the protocol.

TF Serving's semantics (classifier.cc, regressor.cc, multi_inference.cc, util.cc), in its order:
find the servable, look up the signature, check the signature's structure (and, with
--enable_signature_method_name_check, its method_name), serialize the Input's examples into one
DT_STRING tensor of shape [n] (with a context, each element is the context's bytes followed by
the example's, so an example's feature wins over the context's), run, then check the outputs'
shapes and dtypes and build the result. Messages are TF Serving's, double spaces included.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import regression_pb2

from tfs_bench.server import predict
from tfs_bench.server import status
from tfs_bench.server import tensors
from tfs_bench.server.servables import DEFAULT_SIGNATURE
from tfs_bench.server.servables import LoadedVersion
from tfs_bench.server.servables import Signature
from tfs_bench.server.status import ServingError

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
INPUTS = "inputs"
CLASSES = "classes"
SCORES = "scores"
OUTPUTS = "outputs"

API_CLASSIFY = "Classify"
API_REGRESS = "Regress"
API_MULTI_INFERENCE = "MultiInference"


@dataclasses.dataclass(frozen=True)
class Task:
    """One checked signature to evaluate on the request's examples."""

    signature: Signature
    method: str  # CLASSIFY_METHOD or REGRESS_METHOD
    fetch: tuple[str, ...]  # output aliases: classes before scores, or just outputs

    @property
    def input_tensor(self) -> str:
        return self.signature.inputs[INPUTS].tensor_name


def serialized_examples(input_proto) -> np.ndarray:
    """The Input's examples as TF Serving feeds them: a DT_STRING vector, one element per example."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        serialized = [example.SerializeToString() for example in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        context = with_context.context.SerializeToString()
        serialized = [context + example.SerializeToString() for example in with_context.examples]
    else:
        serialized = []
    if not serialized:
        raise status.invalid_argument("Input is empty.")
    return np.array(serialized, dtype=object)


def classification_task(signature: Signature, method_name_check: bool) -> Task:
    """PreProcessClassification: one input `inputs`, one or two outputs among classes/scores."""
    if method_name_check and signature.method_name != CLASSIFY_METHOD:
        raise status.invalid_argument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise status.invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise status.invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if INPUTS not in signature.inputs:
        raise status.invalid_argument(
            f"No classification inputs found in SignatureDef: {signature.debug_string()}"
        )
    fetch = tuple(alias for alias in (CLASSES, SCORES) if alias in signature.outputs)
    if not fetch:
        raise status.invalid_argument(
            f'Expected classification signature outputs to contain at least one of "{CLASSES}" or '
            f'"{SCORES}". Signature was: {signature.debug_string()}'
        )
    return Task(signature, CLASSIFY_METHOD, fetch)


def regression_task(signature: Signature, method_name_check: bool) -> Task:
    """PreProcessRegression: one input `inputs`, one output `outputs`."""
    if method_name_check and signature.method_name != REGRESS_METHOD:
        raise status.invalid_argument(
            f"Expected regression signature method_name to be {REGRESS_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise status.invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise status.invalid_argument("Expected one output Tensor.")
    if INPUTS not in signature.inputs:
        raise status.invalid_argument(f"No regression inputs found in SignatureDef: {signature.debug_string()}")
    if OUTPUTS not in signature.outputs:
        raise status.invalid_argument(f"No regression outputs found in SignatureDef: {signature.debug_string()}")
    return Task(signature, REGRESS_METHOD, (OUTPUTS,))


def _shape(array: np.ndarray) -> str:
    return "[" + ",".join(str(size) for size in array.shape) + "]"  # TensorShape::DebugString


def _dtype_name(array: np.ndarray) -> str:
    return types_pb2.DataType.Name(tensors.dtype_enum_of(array))


def fill_classification(outputs: Mapping[str, np.ndarray], count: int, result) -> None:
    """PostProcessClassificationResult into a ClassificationResult; raises ServingError."""
    classes, scores = outputs.get(CLASSES), outputs.get(SCORES)
    for alias, array, dtype, dtype_name in (
        (CLASSES, classes, np.dtype(object), "DT_STRING"),
        (SCORES, scores, np.dtype(np.float32), "DT_FLOAT"),
    ):
        if array is None:
            continue
        if array.ndim != 2:
            raise status.invalid_argument(
                f"Expected Tensor shape: [batch_size num_classes] but got {_shape(array)}"
            )
        if array.dtype != dtype:
            raise status.invalid_argument(f"Expected {alias} Tensor of {dtype_name}. Got: {_dtype_name(array)}")
        if array.shape[0] != count:
            raise status.invalid_argument(
                f"Expected {alias} output batch size of {count}. Got: {array.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise status.invalid_argument(
            f"Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    labels = None if classes is None else classes.tolist()
    values = None if scores is None else scores.tolist()
    width = (classes if classes is not None else scores).shape[1]
    for i in range(count):
        classifications = result.classifications.add()
        for j in range(width):
            entry = classifications.classes.add()
            if labels is not None:
                entry.label = _label(labels[i][j])
            if values is not None:
                entry.score = values[i][j]


def _label(value) -> str:
    # Class.label is a proto3 string; TF's labels are bytes and need not be UTF-8.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def fill_regression(outputs: Mapping[str, np.ndarray], count: int, result) -> None:
    """PostProcessRegressionResult into a RegressionResult; raises ServingError."""
    values = outputs[OUTPUTS]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise status.invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
            f"but got {_shape(values)}"
        )
    if values.shape[0] != count:
        raise status.invalid_argument(
            f"Input batch size did not match output batch size: {count} vs. {values.shape[0]}"
        )
    if values.dtype != np.float32:
        raise status.invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(values)}")
    if values.size != count:
        raise status.invalid_argument(f"Expected output batch size to be {count}.  Got: {values.size}")
    for value in values.ravel().tolist():
        result.regressions.add(value=value)


def _fill_model_spec(spec, name: str, signature_name: str, version: int) -> None:
    # MakeModelSpec: the request's name and signature (or the default), the version that served.
    spec.name = name
    spec.signature_name = signature_name or DEFAULT_SIGNATURE
    spec.version.value = version


class Inference:
    """Classify, Regress and MultiInference for both front ends."""

    def __init__(self, predictor: predict.Predictor, method_name_check: bool = False):
        self._predictor = predictor
        self._method_name_check = method_name_check

    @property
    def predictor(self) -> predict.Predictor:
        return self._predictor

    def _signature(self, servable: LoadedVersion, signature_name: str, missing_message: str) -> Signature:
        name = signature_name or DEFAULT_SIGNATURE
        signature = servable.signatures.get(name)
        if signature is None:
            raise status.invalid_argument(f"{missing_message}{name}")
        return signature

    def classify(self, request, deadline_s: float | None = None) -> classification_pb2.ClassificationResponse:
        return self._run_one(API_CLASSIFY, request, deadline_s, classification_task,
                             classification_pb2.ClassificationResponse(), fill_classification)

    def regress(self, request, deadline_s: float | None = None) -> regression_pb2.RegressionResponse:
        return self._run_one(API_REGRESS, request, deadline_s, regression_task,
                             regression_pb2.RegressionResponse(), fill_regression)

    def _run_one(self, api: str, request, deadline_s: float | None, make_task, response, fill):
        """One signature on the request's examples; `fill(outputs, count, response.result)`."""
        _require_model_spec(request)
        target = predict.target_of(request.model_spec)
        servable = self._predictor.find(target)
        signature_name = request.model_spec.signature_name
        signature = self._signature(servable, signature_name, "No signature was found with the name: ")
        task = make_task(signature, self._method_name_check)
        examples = serialized_examples(request.input)
        outputs = self._predictor.run(
            target.name, api, servable, signature, {INPUTS: examples}, task.fetch, deadline_s
        )
        _fill_model_spec(response.model_spec, target.name, signature_name, servable.version)
        fill(outputs, len(examples), response.result)
        return response

    def multi_inference(self, request, deadline_s: float | None = None) -> inference_pb2.MultiInferenceResponse:
        """Every task on one servable (the first task's spec picks it) and one Session run."""
        first = request.tasks[0].model_spec if request.tasks else None
        target = predict.target_of(first) if first is not None else predict.ModelTarget("")
        servable = self._predictor.find(target)
        tasks = self._tasks(servable, request.tasks)
        if not tasks:  # only reachable for a model named "", which a config cannot declare
            raise status.invalid_argument("MultiInferenceRequest has no tasks")
        examples = serialized_examples(request.input)
        fetch_names = tuple(sorted({
            task.signature.outputs[alias].tensor_name for task in tasks for alias in task.fetch
        }))
        results = dict(zip(fetch_names, self._run_tensors(
            target.name, servable, tasks[0].input_tensor, examples, fetch_names, deadline_s
        )))
        response = inference_pb2.MultiInferenceResponse()
        for request_task, task in zip(request.tasks, tasks):
            outputs = {alias: results[task.signature.outputs[alias].tensor_name] for alias in task.fetch}
            result = response.results.add()
            _fill_model_spec(result.model_spec, request_task.model_spec.name,
                             request_task.model_spec.signature_name, servable.version)
            if task.method == CLASSIFY_METHOD:
                fill_classification(outputs, len(examples), result.classification_result)
            else:
                fill_regression(outputs, len(examples), result.regression_result)
        return response

    def _tasks(self, servable: LoadedVersion, request_tasks: Sequence) -> list[Task]:
        tasks: list[Task] = []
        seen: set[str] = set()
        for request_task in request_tasks:
            spec = request_task.model_spec
            if not spec.name:
                raise status.invalid_argument("Found ModelSpec with an empty model name.")
            if spec.name != request_tasks[0].model_spec.name:
                raise status.invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            signature_name = spec.signature_name or DEFAULT_SIGNATURE
            if signature_name in seen:
                raise status.invalid_argument(f"Duplicate evaluation of signature: {signature_name}")
            seen.add(signature_name)
            signature = self._signature(servable, signature_name, "Requested signature not found in model graph: ")
            if request_task.method_name == CLASSIFY_METHOD:
                tasks.append(classification_task(signature, self._method_name_check))
            elif request_task.method_name == REGRESS_METHOD:
                tasks.append(regression_task(signature, self._method_name_check))
            else:
                raise ServingError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"Unsupported signature method_name: {request_task.method_name}",
                )
        if len({task.input_tensor for task in tasks}) > 1:
            raise status.invalid_argument("Input tensor must be the same for all Signatures.")
        return tasks

    def _run_tensors(self, model_name, servable, input_tensor, examples, fetch_names, deadline_s):
        predict.check_deadline(deadline_s)
        results = self._predictor.timed(
            model_name, API_MULTI_INFERENCE,
            lambda: servable.runner.run((input_tensor,), [examples], fetch_names),
        )
        predict.check_deadline(deadline_s)
        return results


def _require_model_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise status.invalid_argument("Missing ModelSpec")
