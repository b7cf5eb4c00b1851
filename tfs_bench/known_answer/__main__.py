"""Writes the known-answer SavedModels for server and client tests.

half_plus_two v1 and v2 (TF2, `tf.saved_model.save`) and half_plus_two_tf1 (a TF1 graph with
parse-example classify/regress signatures and an asset, `tf.compat.v1.saved_model.builder`):

  python -m tfs_bench.known_answer --output_dir=saved_models
"""

from __future__ import annotations

from absl import app
from absl import flags

from tfs_bench import flag_rules

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "saved_models", "Where to write the models.")
flag_rules.directory("output_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # TensorFlow is imported once the flags are good: a bad one is refused in a fraction of a second.
    from tfs_bench.export import known_answer
    from tfs_bench.export import tf1_known_answer

    print(known_answer.write_models(_OUTPUT_DIR.value))
    print(tf1_known_answer.write_model(_OUTPUT_DIR.value))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
