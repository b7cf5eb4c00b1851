"""A TF1-style known-answer SavedModel, built as TF Serving's own example models are built.

`write_model(DIR)` writes `DIR/half_plus_two_tf1/1` with `tf.compat.v1` graph code: a placeholder
of serialized `tf.Example`s parsed by ParseExample, variables restored by a Saver, a class-label
table initialised from an asset file by the main op, and signatures of all three kinds that
TF Serving serves, with y = a*x + b, y2 = a*x + c and y3 = a*x2 + c (a = 0.5, b = 2, c = 3):

| signature | method | inputs | outputs |
| --- | --- | --- | --- |
| serving_default | predict | x (float, [-1, 1]: the parsed feature, fed directly) | y |
| regress_x_to_y | regress | inputs (serialized examples with feature x) | outputs = y |
| regress_x_to_y2 | regress | inputs | outputs = y2 |
| regress_x2_to_y3 | regress | inputs (feature x2, default 0) | outputs = y3 |
| classify_x_to_y | classify | inputs | scores = y (no classes) |
| classify_x_to_labels | classify | inputs | classes = the asset's labels, scores = [y, y2] |
| classify_labels_only | classify | inputs | classes = the asset's labels (no scores) |

Loading this model exercises what a TF2 loader gets wrong about TF1 exports: it parses strings
in the graph, it is fed a tensor that is not a placeholder, and its table needs the asset's path
inside the version directory, which only the loader knows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from tfs_bench.export import known_answer
from tfs_bench.export import modelcard
from tfs_bench.export import savedmodels

MODEL_NAME = "half_plus_two_tf1"
VERSION = 1
A, B, C = 0.5, 2.0, 3.0
LABELS = ("negative", "positive")
ASSET_FILE = "class_labels.txt"


def expected(signature: str, x, x2=0.0):
    """The known answer of a signature for feature values x (and x2), as float32 like the graph."""
    x, x2 = np.float32(x), np.float32(x2)
    y, y2, y3 = np.float32(A) * x + np.float32(B), np.float32(A) * x + np.float32(C), np.float32(A) * x2 + np.float32(C)
    return {
        "serving_default": y,
        "regress_x_to_y": y,
        "regress_x_to_y2": y2,
        "regress_x2_to_y3": y3,
        "classify_x_to_y": y,
        "classify_x_to_labels": (y, y2),
    }[signature]


def _build_and_save(export_dir: Path, asset_source: Path) -> None:
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        a = v1.Variable(A, name="a")
        b = v1.Variable(B, name="b")
        c = v1.Variable(C, name="c")
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        features = v1.io.parse_example(
            serialized,
            {
                "x": v1.io.FixedLenFeature([1], tf.float32),
                "x2": v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        x = tf.identity(features["x"], name="x")
        x2 = tf.identity(features["x2"], name="x2")
        y = tf.add(a * x, b, name="y")
        y2 = tf.add(a * x, c, name="y2")
        y3 = tf.add(a * x2, c, name="y3")

        asset_path = tf.constant(str(asset_source), name="class_labels_path")
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset_path)
        table = v1.lookup.StaticHashTable(
            v1.lookup.TextFileInitializer(
                asset_path,
                tf.int64, v1.lookup.TextFileIndex.LINE_NUMBER,
                tf.string, v1.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value="",
        )
        batch = tf.shape(serialized)[0:1]
        labels = table.lookup(tf.constant(list(range(len(LABELS))), dtype=tf.int64))
        classes = tf.tile(tf.expand_dims(labels, 0), tf.concat([batch, [1]], 0), name="classes")
        scores = tf.concat([y, y2], axis=1, name="scores")

        session.run(v1.global_variables_initializer())
        utils = v1.saved_model.signature_def_utils
        signatures = {
            "serving_default": utils.predict_signature_def({"x": x}, {"y": y}),
            "regress_x_to_y": utils.regression_signature_def(serialized, y),
            "regress_x_to_y2": utils.regression_signature_def(serialized, y2),
            "regress_x2_to_y3": utils.regression_signature_def(serialized, y3),
            "classify_x_to_y": utils.classification_signature_def(serialized, None, y),
            "classify_x_to_labels": utils.classification_signature_def(serialized, classes, scores),
            "classify_labels_only": utils.classification_signature_def(serialized, classes, None),
        }
        builder = v1.saved_model.builder.SavedModelBuilder(str(export_dir))
        builder.add_meta_graph_and_variables(
            session,
            [tf.saved_model.SERVING],
            signature_def_map=signatures,
            assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
            main_op=v1.tables_initializer(),
            strip_default_attrs=True,
        )
        builder.save()


def _write(staged: Path) -> modelcard.ModelCard:
    # The asset's source lives outside the export; the builder copies it into assets/.
    source = staged.parent / ASSET_FILE
    source.write_text("".join(f"{label}\n" for label in LABELS), encoding="utf-8")
    _build_and_save(staged, source)
    return known_answer.constant_model_card(staged, "known_answer_tf1", MODEL_NAME, VERSION, (-1, 1),
                                        parameters=3, flops=2)


def write_model(output_dir: str) -> Path:
    """Writes the version atomically (replacing an old one) and returns the model's base path."""
    base = Path(output_dir).absolute() / MODEL_NAME
    savedmodels.write_version_atomically(base / str(VERSION), _write)
    return base
