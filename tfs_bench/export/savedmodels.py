"""The export stage: zoo models become TF Serving SavedModels with a model card.

Every export has one `serving_default` signature: input `images` (NHWC pixels in [0, 255], float32
or uint8) and output `probabilities`. Preprocessing runs inside the graph, so both encodings give
the same answer for the same image and a client only ships pixels.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf

from tfs_bench.export import footprint as footprint_lib
from tfs_bench.export import modelcard
from tfs_bench.export import zoo
from tfs_bench.errors import ModelError

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    model: str
    output_dir: str
    version: int = 1
    input_encoding: str = "float32"
    weights_path: str | None = None
    seed: int = 0
    export_name: str | None = None
    measure_footprint: bool = True

    def __post_init__(self):
        zoo.get(self.model)  # raises with the list of known names
        if self.input_encoding not in modelcard.INPUT_ENCODINGS:
            raise ModelError(
                f"unknown input encoding {self.input_encoding!r}; use one of {modelcard.INPUT_ENCODINGS}"
            )
        if self.version < 0:
            raise ModelError(f"version must be >= 0, got {self.version}")
        if self.weights_path is not None and not os.path.isfile(self.weights_path):
            raise ModelError(f"weights file {self.weights_path} does not exist")

    @property
    def name(self) -> str:
        if self.export_name:
            return self.export_name
        return self.model if self.input_encoding == "float32" else f"{self.model}_{self.input_encoding}"

    @property
    def version_dir(self) -> Path:
        return Path(self.output_dir) / self.name / str(self.version)

    def key(self) -> str:
        """Identifies what was asked for; a card with another key is a different export."""
        parts = {
            "format": modelcard.EXPORT_FORMAT,  # a new format makes older exports stale
            "model": self.model,
            "input_encoding": self.input_encoding,
            "weights_sha256": _file_sha256(self.weights_path) if self.weights_path else None,
            "seed": None if self.weights_path else self.seed,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class ExportResult:
    card: modelcard.ModelCard
    version_dir: Path
    exported: bool  # False when an up-to-date export was already there
    reason: str


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stale_reason(request: ExportRequest) -> str | None:
    """Why the export must be (re)written, or None when the one on disk is current."""
    version_dir = request.version_dir
    if not version_dir.exists():
        return "not exported yet"
    try:
        card = modelcard.read_card(version_dir)
    except ModelError as e:
        return str(e)
    if card.export_key != request.key():
        return "the card was exported with other settings (model, encoding, seed or weights)"
    sha, _ = modelcard.hash_savedmodel(version_dir)
    if sha != card.savedmodel_sha256:
        return "the SavedModel files no longer match the card's hash"
    return None


def export(request: ExportRequest, overwrite: bool = False) -> ExportResult:
    reason = "--overwrite" if overwrite else stale_reason(request)
    if reason is None:
        card = modelcard.read_card(request.version_dir)
        return ExportResult(card, request.version_dir, exported=False, reason="up to date")
    logging.info("exporting %s to %s: %s", request.model, request.version_dir, reason)
    card = write_version_atomically(request.version_dir, lambda tmp: _export_into(request, tmp))
    return ExportResult(card, request.version_dir, exported=True, reason=reason)


def write_version_atomically(
    version_dir: Path, write: Callable[[Path], modelcard.ModelCard]
) -> modelcard.ModelCard:
    """Runs `write(tmp_dir)` and moves the result into place; a failure leaves no version dir.

    The temporary directory is a dot-directory beside the version, on the same file system, so
    the final rename is atomic and TF Serving never sees it as a version (not numeric).
    """
    version_dir = Path(version_dir)
    version_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version_dir.name}-", dir=version_dir.parent))
    staged = tmp / "version"
    try:
        card = write(staged)
        modelcard.write_card(staged, card)
        if version_dir.exists():
            os.replace(version_dir, tmp / "replaced")
        os.replace(staged, version_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card


def _export_into(request: ExportRequest, staged: Path) -> modelcard.ModelCard:
    spec = zoo.get(request.model)
    start = time.perf_counter()
    keras.utils.set_random_seed(request.seed)
    model = spec.build()
    if request.weights_path:
        try:
            model.load_weights(request.weights_path)
        except (ValueError, OSError) as e:
            raise ModelError(f"cannot load weights {request.weights_path} into {spec.name}: {e}") from None
    servable = _Servable(model, spec, tf.as_dtype(request.input_encoding))
    tf.saved_model.save(servable, str(staged), signatures={SIGNATURE_NAME: servable.serve})
    export_time_s = time.perf_counter() - start
    sha, size = modelcard.hash_savedmodel(staged)
    footprint = footprint_lib.measure_in_fresh_process(staged) if request.measure_footprint else None
    h, w, c = spec.input_shape
    return modelcard.ModelCard(
        model=spec.name,
        export_name=request.name,
        version=request.version,
        input_encoding=request.input_encoding,
        signature_name=SIGNATURE_NAME,
        inputs=(modelcard.TensorInfo(INPUT_NAME, request.input_encoding, (-1, h, w, c)),),
        outputs=(modelcard.TensorInfo(OUTPUT_NAME, "float32", (-1, spec.num_classes)),),
        parameters=int(model.count_params()),
        flops_per_image=count_flops(model),
        savedmodel_bytes=size,
        savedmodel_sha256=sha,
        export_key=request.key(),
        weights=request.weights_path or f"random(seed={request.seed})",
        exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        export_time_s=round(export_time_s, 3),
        footprint=footprint,
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
    )


class _Servable(tf.Module):
    """The exported object: the Keras model behind a fixed-name signature with preprocessing.

    The serving function reads the tf.Variables inside Keras 3's variables. Tracked through the
    Keras model, those are saved as copies the function does not capture, and a Session-based
    loader (TF Serving's, or `saved_model_cli run`) then fails every request with "Could not find
    variable ...". So the model is kept out of the tracked attributes (the function closes over
    it) and its tf.Variables are tracked instead: the saved graph restores the very variables the
    function reads, and each is saved once.
    """

    def __init__(self, model, spec: zoo.ModelSpec, dtype: tf.DType):
        super().__init__(name=spec.name)
        self.model_variables = [getattr(v, "value", v) for v in model.variables]
        preprocessing = spec.preprocessing

        def serve(images):
            pixels = tf.cast(images, tf.float32)
            probabilities = model(zoo.preprocess(pixels, preprocessing), training=False)
            return {OUTPUT_NAME: tf.cast(probabilities, tf.float32)}

        signature = tf.TensorSpec([None, *spec.input_shape], dtype, name=INPUT_NAME)
        self.serve = tf.function(serve, input_signature=[signature])


def count_flops(model) -> int:
    """2 x multiply-accumulates of the conv and dense layers for one image (approximate)."""
    layers = keras.layers
    total = 0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D, layers.Dense)):
            total += _layer_macs(layer)
        elif hasattr(layer, "layers"):  # a nested model
            total += count_flops(layer) // 2
    return 2 * total


def _layer_macs(layer) -> int:
    layers = keras.layers
    out_shape = layer.output.shape
    in_channels = layer.input.shape[-1]
    positions = 1
    for d in out_shape[1:-1]:
        positions *= d
    if isinstance(layer, layers.Dense):
        return positions * in_channels * layer.units
    kh, kw = layer.kernel_size
    if isinstance(layer, layers.DepthwiseConv2D):
        return positions * kh * kw * in_channels * layer.depth_multiplier
    if isinstance(layer, layers.SeparableConv2D):
        depthwise = positions * kh * kw * in_channels * layer.depth_multiplier
        return depthwise + positions * in_channels * layer.depth_multiplier * layer.filters
    groups = getattr(layer, "groups", 1)
    return positions * kh * kw * (in_channels // groups) * layer.filters
