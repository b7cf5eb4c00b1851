"""Writes the known-answer SavedModels that server and client tests check exact outputs against.

`write_models(DIR)` (or `python -m tfs_bench.known_answer --output_dir=DIR`) writes `DIR/half_plus_two/{1,2}`:
- `serving_default`: input `x` (float32, [batch, 3]) -> output `y` = 0.5 * x + 1 + version,
  so version 1 is the classic y = 0.5x + 2 and version 2 answers y = 0.5x + 3;
- `times_two`: input `x` -> output `y` = 2 * x.
A model whose versions differ in their answer lets tests see which version served a request.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import keras
import tensorflow as tf

from tfs_bench.export import modelcard
from tfs_bench.export import savedmodels

MODEL_NAME = "half_plus_two"
VERSIONS = (1, 2)
WIDTH = 3


def expected_output(x, version: int = 1, signature: str = "serving_default"):
    """The answer a correct server returns (works on floats and numpy arrays)."""
    if signature == "times_two":
        return 2.0 * x
    return 0.5 * x + 1.0 + version


class _HalfPlus(tf.Module):
    def __init__(self, version: int):
        super().__init__()
        self.offset = tf.Variable(1.0 + version, trainable=False)
        spec = [tf.TensorSpec([None, WIDTH], tf.float32, name="x")]
        self.serve = tf.function(self._serve, input_signature=spec)
        self.times_two = tf.function(self._times_two, input_signature=spec)

    def _serve(self, x):
        return {"y": 0.5 * x + self.offset}

    def _times_two(self, x):
        return {"y": 2.0 * x}


def _write(version: int, staged: Path) -> modelcard.ModelCard:
    module = _HalfPlus(version)
    signatures = {"serving_default": module.serve, "times_two": module.times_two}
    tf.saved_model.save(module, str(staged), signatures=signatures)
    tensor = (-1, WIDTH)
    return constant_model_card(staged, "known_answer", MODEL_NAME, version, tensor, parameters=1, flops=2 * WIDTH)


def constant_model_card(staged: Path, model: str, export_name: str, version: int, shape: tuple[int, ...],
                    parameters: int, flops: int) -> modelcard.ModelCard:
    """The card of a constant-weight test model with one float32 input `x` and output `y`."""
    sha, size = modelcard.hash_savedmodel(staged)
    return modelcard.ModelCard(
        model=model,
        export_name=export_name,
        version=version,
        input_encoding="float32",
        signature_name="serving_default",
        inputs=(modelcard.TensorInfo("x", "float32", shape),),
        outputs=(modelcard.TensorInfo("y", "float32", shape),),
        parameters=parameters,
        flops_per_image=flops,
        savedmodel_bytes=size,
        savedmodel_sha256=sha,
        export_key=f"{model}:{version}",
        weights="constant",
        exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        export_time_s=0.0,
        footprint=None,
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
    )


def write_models(output_dir: str) -> Path:
    """Writes every version (atomically, replacing old ones) and returns the model's base path."""
    base = Path(output_dir).absolute() / MODEL_NAME
    for version in VERSIONS:
        savedmodels.write_version_atomically(base / str(version), lambda tmp, v=version: _write(v, tmp))
    return base
