"""The zoo's exports served back through TensorFlow, model cards, and the export binary.

The binary's flag rules are checked in-process (tests/binary_flags.py); a subprocess runs the real
command: listing, one refusal (its exit status and message), and an export.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from binary_flags import BinaryFlags
from conftest import REPO_ROOT
from conftest import run_env
from tfs_bench.export import modelcard
from tfs_bench.export import savedmodels
from tfs_bench.export import zoo
from tfs_bench.errors import ModelError
from tfs_bench.export import __main__ as export_binary

EXPORT = BinaryFlags(export_binary)
SMALL = ("tiny_cnn", "mobilenet_v2_small")
LARGE = tuple(name for name in zoo.MODELS if name not in SMALL)


def _serve(version_dir, images):
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return signature(images=tf.constant(images))["probabilities"].numpy()


def _image(size, seed=7):
    return np.random.default_rng(seed).integers(0, 256, size=(2, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Both small models in both encodings; the footprint (a fresh process each) only for tiny_cnn float32,
    the export whose card is checked whole."""
    root = tmp_path_factory.mktemp("saved_models")
    results = {}
    for name in SMALL:
        for encoding in modelcard.INPUT_ENCODINGS:
            footprint = (name, encoding) == ("tiny_cnn", "float32")
            request = savedmodels.ExportRequest(name, str(root), input_encoding=encoding, measure_footprint=footprint)
            results[name, encoding] = savedmodels.export(request)
    return root, results


def test_every_zoo_model_has_a_distinct_name_and_input():
    assert set(SMALL) <= set(zoo.MODELS)
    assert {"resnet50", "mobilenet_v2", "inception_v3", "vgg16", "densenet121", "efficientnet_b0"} <= set(zoo.MODELS)
    assert zoo.get("inception_v3").input_shape == (299, 299, 3)
    assert zoo.get("mobilenet_v2_small").input_shape == (96, 96, 3)
    assert zoo.get("tiny_cnn").input_shape == (32, 32, 3)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ModelError, match="unknown model 'resnet51'; known models: densenet121, .*vgg16"):
        zoo.get("resnet51")


@pytest.mark.parametrize("name", SMALL)
def test_small_model_exports_with_fixed_signature(exports, name):
    root, results = exports
    result = results[name, "float32"]
    assert result.exported and result.version_dir == root / name / "1"
    signature = tf.saved_model.load(str(result.version_dir)).signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    size = zoo.get(name).image_size
    assert list(inputs) == ["images"]
    assert inputs["images"].shape.as_list() == [None, size, size, 3]
    assert inputs["images"].dtype == tf.float32
    probabilities = _serve(result.version_dir, _image(size).astype(np.float32))
    assert probabilities.shape == (2, zoo.get(name).num_classes)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def _serve_in_a_session(version_dir, images):
    # What TF Serving and `saved_model_cli run` do: the MetaGraph in a Session, restored by its
    # saver, fed and fetched by the signature's tensor names.
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(version_dir))
        signature = meta_graph.signature_def["serving_default"]
        return session.run(signature.outputs["probabilities"].name,
                           {signature.inputs["images"].name: images})


@pytest.mark.parametrize("encoding", modelcard.INPUT_ENCODINGS)
@pytest.mark.parametrize("name", SMALL)
def test_exports_run_in_a_session_as_tf_serving_runs_them(exports, name, encoding):
    # Keras 3 models exported with the variables tracked only through the model fail here with
    # "Could not find variable ..." while the TF2 loader serves them.
    version_dir = exports[1][name, encoding].version_dir
    image = _image(zoo.get(name).image_size).astype(encoding)

    np.testing.assert_allclose(
        _serve_in_a_session(version_dir, image), _serve(version_dir, image), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("name", SMALL)
def test_uint8_input_gives_the_same_output_as_float32(exports, name):
    _, results = exports
    uint8, float32 = results[name, "uint8"], results[name, "float32"]
    assert uint8.version_dir.parent.name == f"{name}_uint8"
    signature = tf.saved_model.load(str(uint8.version_dir)).signatures["serving_default"]
    assert signature.structured_input_signature[1]["images"].dtype == tf.uint8
    image = _image(zoo.get(name).image_size)
    np.testing.assert_allclose(
        _serve(uint8.version_dir, image), _serve(float32.version_dir, image.astype(np.float32)), rtol=1e-6, atol=1e-7
    )


def test_model_card_describes_the_export(exports):
    root, results = exports
    card = modelcard.read_card(root / "tiny_cnn" / "1")
    assert card == results["tiny_cnn", "float32"].card
    # conv 3x3: 32*32*3*16*9 + 16*16*16*32*9 + 8*8*32*64*9 MACs; dense 64*10.
    macs = 32 * 32 * 3 * 16 * 9 + 16 * 16 * 16 * 32 * 9 + 8 * 8 * 32 * 64 * 9 + 64 * 10
    assert card.flops_per_image == 2 * macs
    assert card.parameters == (3 * 3 * 3 * 16 + 16) + (3 * 3 * 16 * 32 + 32) + (3 * 3 * 32 * 64 + 64) + (64 * 10 + 10)
    assert card.inputs == (modelcard.TensorInfo("images", "float32", (-1, 32, 32, 3)),)
    assert card.outputs == (modelcard.TensorInfo("probabilities", "float32", (-1, 10)),)
    sha, size = modelcard.hash_savedmodel(root / "tiny_cnn" / "1")
    assert (card.savedmodel_sha256, card.savedmodel_bytes) == (sha, size)
    # The footprint is measured on the GPU whenever TensorFlow sees one, on this machine or another.
    if tf.config.list_physical_devices("GPU"):
        assert card.footprint.device == "gpu" and card.footprint.gpu_peak_bytes > 0
    else:
        assert card.footprint.device == "cpu" and card.footprint.gpu_peak_bytes is None
    assert card.footprint.load_time_s > 0 and card.footprint.peak_rss_bytes > card.footprint.rss_increase_bytes > 0
    assert card.weights == "random(seed=0)"


def test_export_is_idempotent_and_notices_changes(tmp_path):
    request = savedmodels.ExportRequest("tiny_cnn", str(tmp_path), measure_footprint=False)
    first = savedmodels.export(request)
    again = savedmodels.export(request)
    assert first.exported and not again.exported and again.card == first.card

    variables = next((tmp_path / "tiny_cnn" / "1" / "variables").glob("*.data-*"))
    data = variables.read_bytes()
    variables.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    tampered = savedmodels.export(request)
    assert tampered.exported and "no longer match the card's hash" in tampered.reason

    reseeded = savedmodels.export(savedmodels.ExportRequest("tiny_cnn", str(tmp_path), seed=1, measure_footprint=False))
    assert reseeded.exported and "other settings" in reseeded.reason
    assert savedmodels.export(request, overwrite=True).reason == "--overwrite"
    assert sorted(os.listdir(tmp_path / "tiny_cnn")) == ["1"]  # no temporary directories left


def test_failed_export_leaves_no_version_directory(tmp_path):
    bad_weights = tmp_path / "bad.weights.h5"
    bad_weights.write_bytes(b"not an HDF5 file")
    request = savedmodels.ExportRequest(
        "tiny_cnn", str(tmp_path / "out"), weights_path=str(bad_weights), measure_footprint=False
    )
    with pytest.raises(ModelError, match="cannot load weights .*bad.weights.h5 into tiny_cnn"):
        savedmodels.export(request)
    assert os.listdir(tmp_path / "out" / "tiny_cnn") == []


def test_local_weights_file_is_served(tmp_path):
    import keras

    keras.utils.set_random_seed(123)
    model = zoo.get("tiny_cnn").build()
    weights = tmp_path / "tiny.weights.h5"
    model.save_weights(weights)
    request = savedmodels.ExportRequest(
        "tiny_cnn", str(tmp_path / "out"), weights_path=str(weights), measure_footprint=False
    )
    result = savedmodels.export(request)
    assert result.card.weights == str(weights)
    image = _image(32).astype(np.float32)
    np.testing.assert_allclose(_serve(result.version_dir, image), model(image / 255.0).numpy(), rtol=1e-5, atol=1e-6)


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(ModelError, match="unknown input encoding 'int8'"):
        savedmodels.ExportRequest("tiny_cnn", str(tmp_path), input_encoding="int8")
    with pytest.raises(ModelError, match="weights file .*missing.h5 does not exist"):
        savedmodels.ExportRequest("tiny_cnn", str(tmp_path), weights_path=str(tmp_path / "missing.h5"))
    with pytest.raises(ModelError, match="unknown model 'alexnet'"):
        savedmodels.ExportRequest("alexnet", str(tmp_path))


def _export_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "tfs_bench.export", *args],
        capture_output=True, text=True, env=run_env(), cwd=REPO_ROOT, timeout=300,
    )


def test_cli_lists_models_with_input_shapes():
    proc = _export_cli("--list")
    assert proc.returncode == 0
    lines = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()}
    assert lines == {name: "x".join(map(str, spec.input_shape)) for name, spec in zoo.MODELS.items()}


def test_cli_refuses_unknown_models_before_exporting(tmp_path):
    proc = _export_cli("--models=tiny_cnn,resnet51", f"--saved_models_dir={tmp_path}")
    assert proc.returncode != 0
    assert "unknown model(s) resnet51; known models: densenet121" in proc.stderr
    assert not (tmp_path / "tiny_cnn").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "--models is required (or --list)"),
        (["--models=tiny_cnn,mobilenet_v2_small", "--weights=/x.h5"], "--weights and --export_name take exactly one model"),
        (["--models=tiny_cnn,mobilenet_v2_small", "--export_name=x"], "--weights and --export_name take exactly one model"),
        (["--models=tiny_cnn,tiny_cnn"], "model(s) listed twice: tiny_cnn"),
        (["--models=tiny_cnn", "--input_encoding=int8"], "--input_encoding=int8: value should be one of <float32|uint8>"),
        (["--models=tiny_cnn", "--model_version=-1"], "--model_version=-1: -1 is not a non-negative integer"),
    ],
)
def test_cli_refuses_impossible_flags(args, message):
    assert message in EXPORT.refusal(*args)


def test_cli_list_needs_no_models():
    with EXPORT.parsed("--list") as argv:
        assert argv == ["tfs_bench.export"] and flags.FLAGS.models == []


def test_cli_exports_and_reports(tmp_path):
    # Without the footprint (a fresh process loading the export; the module's fixture measures one).
    flags = ("--models=tiny_cnn", f"--saved_models_dir={tmp_path}", "--input_encoding=uint8", "--nomeasure_footprint")
    proc = _export_cli(*flags)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("  exported  tiny_cnn_uint8 v1 (uint8)")
    card = json.loads((tmp_path / "tiny_cnn_uint8" / "1" / modelcard.CARD_RELPATH).read_text())
    assert card["input_encoding"] == "uint8" and card["schema_version"] == modelcard.SCHEMA_VERSION
    assert card["footprint"] is None
    assert "up to date" in _export_cli(*flags).stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_large_model_builds_with_its_input_and_classes(name):
    # Exporting each takes about 10 s; the export path is the same for all, so one is exported below,
    # and each preprocessing mode is checked on its own (test_each_preprocessing_mode_maps_pixels_as_its_model_expects).
    spec = zoo.get(name)
    model = spec.build()
    assert tuple(model.input_shape) == (None, *spec.input_shape)
    assert tuple(model.output_shape) == (None, 1000)
    assert model.count_params() > 1_000_000


@pytest.mark.slow
def test_a_large_model_exports_with_its_card_and_footprint(tmp_path):
    result = savedmodels.export(savedmodels.ExportRequest("mobilenet_v2", str(tmp_path)))
    spec = zoo.get("mobilenet_v2")
    card = result.card
    assert card.inputs[0].shape == (-1, *spec.input_shape)
    assert card.parameters > 1_000_000 and card.flops_per_image > 100_000_000
    assert card.footprint is not None and card.footprint.rss_increase_bytes > 0
    probabilities = _serve(result.version_dir, _image(spec.image_size, seed=1)[:1].astype(np.float32))
    assert probabilities.shape == (1, 1000)
    np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-4)


@pytest.mark.parametrize("mode, expected", [
    (zoo.TF, [[0.0 / 127.5 - 1, 127.5 / 127.5 - 1, 255 / 127.5 - 1]]),
    (zoo.UNIT, [[0.0, 0.5, 1.0]]),
    (zoo.RAW, [[0.0, 127.5, 255.0]]),
    (zoo.TORCH, [[(0 - 0.485 * 255) / (0.229 * 255), (127.5 - 0.456 * 255) / (0.224 * 255),
                  (255 - 0.406 * 255) / (0.225 * 255)]]),
    (zoo.CAFFE, [[255 - 103.939, 127.5 - 116.779, 0 - 123.68]]),  # RGB to BGR, then the means
])
def test_each_preprocessing_mode_maps_pixels_as_its_model_expects(mode, expected):
    pixel = tf.constant([[0.0, 127.5, 255.0]])  # one RGB pixel
    np.testing.assert_allclose(zoo.preprocess(pixel, mode).numpy(), expected, rtol=1e-6, atol=1e-5)


def test_every_zoo_model_names_a_known_preprocessing_mode():
    modes = {zoo.TF, zoo.UNIT, zoo.RAW, zoo.TORCH, zoo.CAFFE}
    assert {zoo.get(name).preprocessing for name in zoo.MODELS} == modes
    with pytest.raises(ValueError, match="unknown preprocessing mode 'bgr'"):
        zoo.preprocess(tf.constant([[1.0, 2.0, 3.0]]), "bgr")
