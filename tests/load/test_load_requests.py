"""Request bodies built from a signature's inputs: dtypes, shapes, images, and both encodings.

Metadata fetched from a real server is tested in test_load_run.py, which has one running.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import predict_pb2

from tfs_bench.errors import ConfigError
from tfs_bench.errors import ModelError
from tfs_bench.load.config import InputSource
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.request_bodies import MAX_BODIES
from tfs_bench.load.request_bodies import InputSpec
from tfs_bench.load.request_bodies import batch_shape
from tfs_bench.load.request_bodies import encode_grpc
from tfs_bench.load.request_bodies import encode_rest
from tfs_bench.load.request_bodies import load_images
from tfs_bench.load.request_bodies import make_batches
from tfs_bench.load.request_bodies import prepare
from tfs_bench.load.request_bodies import random_batch
from tfs_bench.load.request_bodies import rest_predict_path
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TrafficMix

HALF_PLUS_TWO = (InputSpec("x", "DT_FLOAT", (-1, 3)),)
IMAGE_INPUT = (InputSpec("images", "DT_UINT8", (-1, 8, 6, 3)),)


def test_random_batch_has_the_inputs_dtypes_and_the_batch_dimension():
    inputs = (
        InputSpec("f", "DT_FLOAT", (-1, 3)),
        InputSpec("u", "DT_UINT8", (-1, 2, 2)),
        InputSpec("i", "DT_INT64", (4, 5)),
        InputSpec("b", "DT_BOOL", (-1,)),
        InputSpec("h", "DT_HALF", (-1, 1)),
    )
    batch = random_batch(inputs, batch_size=4, seed=7)

    assert {k: (v.dtype, v.shape) for k, v in batch.items()} == {
        "f": (np.float32, (4, 3)),
        "u": (np.uint8, (4, 2, 2)),
        "i": (np.int64, (4, 5)),
        "b": (np.bool_, (4,)),
        "h": (np.float16, (4, 1)),
    }
    assert 0 <= batch["f"].min() and batch["f"].max() < 255
    assert 0 <= batch["i"].min() and batch["i"].max() <= 255
    again = random_batch(inputs, batch_size=4, seed=7)
    assert all(np.array_equal(batch[k], again[k]) for k in batch)
    assert not np.array_equal(batch["f"], random_batch(inputs, 4, seed=8)["f"])


@pytest.mark.parametrize(
    "spec, batch_size, error, words",
    [
        (InputSpec("x", "DT_FLOAT", None), 1, ModelError, "unknown rank"),
        (InputSpec("x", "DT_FLOAT", ()), 1, ModelError, "scalar"),
        (InputSpec("x", "DT_FLOAT", (1, 3)), 8, ConfigError, "fixed batch dimension 1"),
        (InputSpec("x", "DT_FLOAT", (-1, -1, 3)), 1, ModelError, "unknown dimension(s) [1]"),
    ],
)
def test_shapes_the_generator_cannot_fill_are_refused(spec, batch_size, error, words):
    with pytest.raises(error) as info:
        batch_shape(spec, batch_size)
    assert words in str(info.value) and "'x'" in str(info.value)


def test_a_fixed_batch_dimension_equal_to_batch_size_is_fine():
    assert batch_shape(InputSpec("x", "DT_FLOAT", (2, 3)), 2) == (2, 3)


def test_dtypes_that_cannot_be_synthesised_are_named():
    with pytest.raises(ModelError, match="DT_STRING"):
        random_batch((InputSpec("s", "DT_STRING", (-1,)),), 1, 0)


def _write_pngs(directory, sizes):
    rng = np.random.default_rng(0)
    paths = []
    for k, (width, height) in enumerate(sizes):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        path = directory / f"img{k}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    (directory / "notes.txt").write_text("not an image")
    return paths


def test_images_are_resized_to_the_input_shape_and_batched_in_turn(tmp_path):
    paths = _write_pngs(tmp_path, [(20, 10), (7, 9), (6, 8)])
    batches = make_batches(IMAGE_INPUT, batch_size=2, source=InputSource("images", str(tmp_path)), seed=0)

    expected = np.stack(
        [np.asarray(Image.open(p).convert("RGB").resize((6, 8), Image.Resampling.BILINEAR)) for p in paths]
    )
    assert len(batches) == 2  # ceil(3 images / batch 2)
    np.testing.assert_array_equal(batches[0]["images"], expected[[0, 1]])
    np.testing.assert_array_equal(batches[1]["images"], expected[[2, 0]])  # wraps around
    assert batches[0]["images"].dtype == np.uint8


def test_images_take_the_float_dtype_as_pixels_and_grey_for_one_channel(tmp_path):
    _write_pngs(tmp_path, [(5, 5)])
    grey = load_images(sorted(tmp_path.glob("*.png")), height=4, width=4, channels=1)
    assert grey.shape == (1, 4, 4, 1)
    batches = make_batches(
        (InputSpec("images", "DT_FLOAT", (-1, 4, 4, 3)),), 3, InputSource("images", str(tmp_path)), 0
    )
    assert len(batches) == 1 and batches[0]["images"].shape == (3, 4, 4, 3)
    assert batches[0]["images"].dtype == np.float32 and batches[0]["images"].max() <= 255


def test_image_folders_that_cannot_feed_the_input_are_refused(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match=f"images:DIR: '{missing}' is not a directory"):
        make_batches(IMAGE_INPUT, 1, InputSource("images", str(missing)), 0)
    config = LoadConfig(TrafficMix((TenantLoad("m", "m", concurrency=1),)), ("127.0.0.1:1",), str(tmp_path / "out"),
                        input_source=InputSource("images", str(missing)))
    with pytest.raises(ConfigError, match="is not a directory"):  # before any target is tried
        prepare(config)
    with pytest.raises(ConfigError, match="no images"):
        make_batches(IMAGE_INPUT, 1, InputSource("images", str(tmp_path)), 0)
    _write_pngs(tmp_path, [(5, 5)])
    with pytest.raises(ModelError, match="not an image batch"):
        make_batches(HALF_PLUS_TWO, 1, InputSource("images", str(tmp_path)), 0)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="cannot read image .*broken.png"):
        make_batches(IMAGE_INPUT, 1, InputSource("images", str(tmp_path)), 0)


def test_many_images_give_at_most_the_body_limit(tmp_path):
    _write_pngs(tmp_path, [(2, 2)] * (MAX_BODIES + 3))
    batches = make_batches(
        (InputSpec("images", "DT_UINT8", (-1, 2, 2, 3)),), 1, InputSource("images", str(tmp_path)), 0
    )
    assert len(batches) == MAX_BODIES


def test_grpc_body_is_a_predict_request_carrying_the_exact_tensor():
    batch = random_batch(HALF_PLUS_TWO, batch_size=2, seed=1)
    request = predict_pb2.PredictRequest.FromString(encode_grpc("half_plus_two", "times_two", HALF_PLUS_TWO, batch))

    assert request.model_spec.name == "half_plus_two"
    assert request.model_spec.signature_name == "times_two"
    tensor = request.inputs["x"]
    assert tensor.tensor_content and not tensor.float_val
    np.testing.assert_array_equal(tf.make_ndarray(tensor), batch["x"])


def test_rest_body_is_columnar_json_holding_each_value_exactly():
    batch = random_batch(HALF_PLUS_TWO + (InputSpec("u", "DT_UINT8", (-1, 2)),), batch_size=2, seed=1)
    body = json.loads(encode_rest("serving_default", batch))

    assert body["signature_name"] == "serving_default"
    np.testing.assert_array_equal(np.array(body["inputs"]["x"], dtype=np.float32), batch["x"])
    assert body["inputs"]["u"] == batch["u"].tolist()
    assert rest_predict_path("a b/c") == "/v1/models/a%20b%2Fc:predict"
