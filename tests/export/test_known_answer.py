import numpy as np
import pytest
import tensorflow as tf

from tfs_bench.export import known_answer
from tfs_bench.export import modelcard


@pytest.mark.parametrize("version", known_answer.VERSIONS)
@pytest.mark.parametrize("signature", ["serving_default", "times_two"])
def test_models_compute_their_documented_answer(known_answer_dir, version, signature):
    loaded = tf.saved_model.load(str(known_answer_dir / "half_plus_two" / str(version)))
    x = np.array([[1.0, 2.0, 3.0], [-4.0, 0.0, 10.0]], dtype=np.float32)
    y = loaded.signatures[signature](x=tf.constant(x))["y"].numpy()
    np.testing.assert_array_equal(y, known_answer.expected_output(x, version, signature))


def test_version_one_is_half_plus_two_and_version_two_differs():
    assert known_answer.expected_output(4.0, 1) == 4.0
    assert known_answer.expected_output(4.0, 2) == 5.0


def test_cards_describe_the_signature(known_answer_dir):
    card = modelcard.read_card(known_answer_dir / "half_plus_two" / "2")
    assert card.version == 2 and card.inputs[0].name == "x" and card.outputs[0].name == "y"
    assert modelcard.hash_savedmodel(known_answer_dir / "half_plus_two" / "2")[0] == card.savedmodel_sha256
