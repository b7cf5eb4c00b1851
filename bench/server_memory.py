"""Memory of the embedded server: each quick-start model alone, and all in one server.

  python -m bench.server_memory [--models=tiny_cnn,mobilenet_v2_small]

Each server is launched, answers `--requests` Predicts per model (so kernels and buffers exist),
and its peak resident set (VmHWM) is read before it stops. Sharing one TensorFlow runtime should
cost less than the sum of the dedicated servers; the saving is printed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from absl import app
from absl import flags


from bench import bench_server
from bench import closed_loop
from tfs_bench.plan import placement
from tfs_bench.export import savedmodels

_MODELS = flags.DEFINE_list("models", ["tiny_cnn", "mobilenet_v2_small"], "Zoo models.")
_REQUESTS = flags.DEFINE_integer("requests", 20, "Predicts per model before reading memory.", lower_bound=1)
_SAVED_MODELS = flags.DEFINE_string("saved_models_dir", "saved_models", "Where exports are (made if missing).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the figures as JSON here.")


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def _serve_and_measure(cards, work: Path) -> int:
    models = tuple(placement.load_model_entry(c.export_name, str(Path(_SAVED_MODELS.value, c.export_name).absolute()))
                   for c in cards)
    with bench_server.planned_server(models, work) as server:
        for card in cards:
            _, h, w, c = card.inputs[0].shape
            payload = closed_loop.predict_bytes(card.export_name, card.inputs[0].name,
                                                np.zeros((1, h, w, c), dtype=card.input_encoding))
            closed_loop.grpc_requests(server.grpc_target, payload, _REQUESTS.value)
        return peak_rss_bytes(server.pid)


def main(argv):
    del argv
    cards = [savedmodels.export(savedmodels.ExportRequest(name, _SAVED_MODELS.value, measure_footprint=False)).card
             for name in _MODELS.value]
    mib = 2**20
    figures = {}
    with tempfile.TemporaryDirectory(prefix="server_memory.") as tmp:
        for card in cards:
            figures[card.export_name] = _serve_and_measure([card], Path(tmp, card.export_name))
            print(f"{card.export_name:>20} alone: peak RSS {figures[card.export_name] / mib:7.0f} MiB", flush=True)
        shared = _serve_and_measure(cards, Path(tmp, "shared"))
    dedicated = sum(figures.values())
    print(f"{'sum of dedicated':>20}: {dedicated / mib:7.0f} MiB")
    print(f"{'one shared server':>20}: {shared / mib:7.0f} MiB  ({1 - shared / dedicated:.0%} less)")
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps({"alone_bytes": figures, "shared_bytes": shared}, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
