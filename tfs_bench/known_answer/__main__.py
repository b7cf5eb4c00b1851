"""Writes the known-answer SavedModels (half_plus_two v1 and v2) for server and client tests.

  python -m tfs_bench.known_answer --output_dir=saved_models
"""

from __future__ import annotations

from absl import app
from absl import flags

from tfs_bench.export import known_answer

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "saved_models", "Where to write the models.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    print(known_answer.write_models(_OUTPUT_DIR.value))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
