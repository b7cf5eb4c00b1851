"""Exports zoo CNNs as TF Serving SavedModels with model cards.

  python -m tfs_bench.export --list
  python -m tfs_bench.export --models=tiny_cnn,mobilenet_v2_small [--input_encoding=uint8]
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
from absl import logging

from tfs_bench.export import modelcard
from tfs_bench.export import zoo
from tfs_bench import flag_rules
from tfs_bench.errors import exits_cleanly

_MODELS = flags.DEFINE_list("models", [], f"Models to export: {', '.join(zoo.MODELS)}.")
_LIST = flags.DEFINE_bool("list", False, "Print every model with its input shape and exit.")
_SAVED_MODELS_DIR = flags.DEFINE_string("saved_models_dir", "saved_models", "Where exports go.")
flag_rules.directory("saved_models_dir")
_MODEL_VERSION = flags.DEFINE_integer("model_version", 1, "Version directory to write.", lower_bound=0)
_INPUT_ENCODING = flags.DEFINE_enum(
    "input_encoding",
    "float32",
    list(modelcard.INPUT_ENCODINGS),
    "Dtype of the `images` input: float32 pixels, or uint8 pixels cast inside the graph "
    "(a quarter of the request bytes).",
)
_WEIGHTS = flags.DEFINE_string("weights", None, "Local Keras weights file (one model only); random otherwise.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random weights.")
_EXPORT_NAME = flags.DEFINE_string("export_name", None, "Directory name under saved_models (one model only).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Re-export even when an up-to-date export exists.")
_MEASURE = flags.DEFINE_bool(
    "measure_footprint", True, "Load each export in a fresh process to record load time and memory."
)


@flag_rules.rule("models", "list", "weights", "export_name")
def _check_models(models, list_only, weights, export_name):
    if list_only:
        return None
    if not models:
        return "--models is required (or --list)"
    if (weights is not None or export_name is not None) and len(models) != 1:
        return "--weights and --export_name take exactly one model"
    return None


@flag_rules.rule("models")
def _check_known(names):
    unknown = [n for n in names if n not in zoo.MODELS]
    if unknown:
        return f"unknown model(s) {', '.join(unknown)}; known models: {', '.join(sorted(zoo.MODELS))}"
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        return f"model(s) listed twice: {', '.join(duplicates)}"
    return None


def _list_models() -> None:
    width = max(len(name) for name in zoo.MODELS)
    for spec in zoo.MODELS.values():
        shape = "x".join(map(str, spec.input_shape))
        print(f"{spec.name:<{width}}  {shape:<9}  {spec.num_classes:>4} classes  {spec.description}")


def _describe(result) -> str:
    card = result.card
    line = (
        f"{card.export_name} v{card.version} ({card.input_encoding}): {result.version_dir}  "
        f"{card.parameters:,} params, {card.flops_per_image / 1e6:.1f} MFLOP/image, "
        f"{card.savedmodel_bytes / 2**20:.1f} MiB"
    )
    if card.footprint:
        fp = card.footprint
        line += f", loads in {fp.load_time_s:.2f} s, +{fp.rss_increase_bytes / 2**20:.0f} MiB RSS"
    status = "exported" if result.exported else "up to date"
    return f"{status:>10}  {line}" + (f"  [{result.reason}]" if result.exported else "")


@exits_cleanly
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _LIST.value:
        _list_models()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TensorFlow's save-time INFO lines bury the summary
    from tfs_bench.export import savedmodels  # imports TensorFlow: not needed for --list

    for name in _MODELS.value:
        request = savedmodels.ExportRequest(
            model=name,
            output_dir=_SAVED_MODELS_DIR.value,
            version=_MODEL_VERSION.value,
            input_encoding=_INPUT_ENCODING.value,
            weights_path=_WEIGHTS.value,
            seed=_SEED.value,
            export_name=_EXPORT_NAME.value,
            measure_footprint=_MEASURE.value,
        )
        print(_describe(savedmodels.export(request, overwrite=_OVERWRITE.value)), flush=True)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
