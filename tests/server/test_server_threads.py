"""TF Serving's thread flags on a real server: each op in the caller's thread, and the case TF
Serving ignores."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from server_support import Stubs, log_tail, start_embedded
from tfs_bench.export import known_answer

MODEL = known_answer.MODEL_NAME
IGNORED = "--tensorflow_inter_op_parallelism=-1 is ignored without --tensorflow_intra_op_parallelism > 0"


def _half_plus_two(server, x):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    stubs = Stubs(server)
    try:
        return tf.make_ndarray(stubs.prediction.Predict(request, timeout=30).outputs["y"])
    finally:
        stubs.close()


@pytest.mark.parametrize("intra_op, warned", [(1, False), (0, True)], ids=["caller's thread", "ignored"])
def test_a_negative_inter_op_count_serves_and_says_when_it_is_ignored(known_answer_dir, tmp_path, intra_op, warned):
    flags = [f"--model_name={MODEL}", f"--model_base_path={known_answer_dir / MODEL}",
             f"--tensorflow_intra_op_parallelism={intra_op}", "--tensorflow_inter_op_parallelism=-1"]
    server = start_embedded(flags, tmp_path, [MODEL], rest=False)
    try:
        x = np.array([[1.0, 2.0, 5.0]], dtype=np.float32)
        # The latest version of the known-answer model is y = 0.5 x + 3.
        np.testing.assert_array_equal(_half_plus_two(server, x), 0.5 * x + 3.0)
    finally:
        assert server.stop() == 0, log_tail(server)
    assert (IGNORED in server.log_tail(1000)) == warned, log_tail(server)
