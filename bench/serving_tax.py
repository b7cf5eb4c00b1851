"""Serving tax of the embedded server: served throughput at saturation ÷ raw TensorFlow throughput.

  python -m bench.serving_tax [--model=mobilenet_v2] [--batch_sizes=1,8] [--rounds=3]

For each input encoding (float32, uint8) and batch size, the same SavedModel runs with the same
thread settings two ways, interleaved round by round: served by the embedded server over gRPC
(closed loop, with each of `--served_concurrencies` requests in flight), and raw, in a fresh
process, by TensorFlow alone, with each of `--raw_concurrencies` callers. Each side's best is
taken (the served throughput at saturation against TensorFlow at its best). The ratio
of each round is printed, then the median. Rounds alternate which side goes first, so a machine
whose speed drifts during the run does not favour one side in every round. Target: >= 0.95.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
from absl import app
from absl import flags


from bench import bench_server
from bench import closed_loop
from tfs_bench.launch import launchers
from tfs_bench.plan import placement
from tfs_bench.export import savedmodels
from tfs_bench.load import raw_throughput

_MODEL = flags.DEFINE_string("model", "mobilenet_v2", "Zoo model.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Images per request.")
_ENCODINGS = flags.DEFINE_list("encodings", ["float32", "uint8"], "Input encodings.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved served/raw rounds.", lower_bound=1)
_DURATION = flags.DEFINE_float("duration_s", 10.0, "Measured seconds per measurement.")
_WARMUP = flags.DEFINE_float("warmup_s", 3.0, "Unmeasured seconds before each measurement.")
_SERVED_CONCURRENCIES = flags.DEFINE_list(
    "served_concurrencies", ["2", "4"],
    "The server is measured with each number of requests in flight; its best is the numerator.",
)
_RAW_CONCURRENCIES = flags.DEFINE_list(
    "raw_concurrencies", ["1", "2", "4"],
    "Raw TensorFlow is measured with each number of callers; its best throughput is the denominator.",
)
_INTRA = flags.DEFINE_integer("intra_op", 2, "TensorFlow intra-op threads, both ways.", lower_bound=1)
_INTER = flags.DEFINE_integer("inter_op", 1, "TensorFlow inter-op threads, both ways.", lower_bound=1)
_SAVED_MODELS = flags.DEFINE_string("saved_models_dir", "saved_models", "Where exports are (made if missing).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the figures as JSON here.")


def _export(encoding: str) -> savedmodels.ExportResult:
    request = savedmodels.ExportRequest(_MODEL.value, _SAVED_MODELS.value, input_encoding=encoding,
                                        measure_footprint=False)
    return savedmodels.export(request)


def _start_server(exports, work_dir: Path) -> launchers.RunningServer:
    models = [placement.load_model_entry(r.card.export_name, str(r.version_dir.parent.absolute())) for r in exports]
    threads = placement.Threads(intra_op=_INTRA.value, inter_op=_INTER.value)
    return bench_server.planned_server(models, work_dir, threads=threads)


def _pixels(card, batch_size: int) -> np.ndarray:
    _, h, w, c = card.inputs[0].shape
    rng = np.random.default_rng(0)
    return (rng.random((batch_size, h, w, c)) * 255).astype(card.input_encoding)


def _served(server, export, batch_size: int) -> dict:
    card = export.card
    payload = closed_loop.predict_bytes(card.export_name, card.inputs[0].name, _pixels(card, batch_size))
    return {
        concurrency: closed_loop.grpc_loop(server.grpc_target, payload, concurrency, _WARMUP.value, _DURATION.value)
        for concurrency in map(int, _SERVED_CONCURRENCIES.value)
    }


def _raw(export, batch_size: int) -> dict:
    return {
        concurrency: raw_throughput.measure_in_fresh_process(raw_throughput.RawRequest(
            str(export.version_dir), batch_size=batch_size, duration_s=_DURATION.value, warmup_s=_WARMUP.value,
            concurrency=concurrency, intra_op=_INTRA.value, inter_op=_INTER.value)).images_per_s
        for concurrency in map(int, _RAW_CONCURRENCIES.value)
    }


def _round(server, export, batch_size: int, raw_first: bool) -> dict:
    if raw_first:
        raw = _raw(export, batch_size)
        served = _served(server, export, batch_size)
    else:
        served = _served(server, export, batch_size)
        raw = _raw(export, batch_size)
    served_best = max(served, key=lambda c: served[c].requests_per_s)
    best = max(raw, key=raw.get)
    served_ips = served[served_best].requests_per_s * batch_size
    return {"served_images_per_s": served_ips, "served_best_concurrency": served_best,
            "served_images_per_s_by_concurrency": {c: r.requests_per_s * batch_size for c, r in served.items()},
            "raw_images_per_s": raw[best],
            "raw_best_concurrency": best, "raw_images_per_s_by_concurrency": raw,
            "serving_tax": served_ips / raw[best],
            "client_cpu_us_per_request": served[served_best].client_cpu_us_per_request,
            "raw_first": raw_first}


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    exports = {encoding: _export(encoding) for encoding in _ENCODINGS.value}
    results = []
    print(f"{_MODEL.value}: intra {_INTRA.value}, inter {_INTER.value}, served at {'/'.join(_SERVED_CONCURRENCIES.value)} "
          f"and raw at {'/'.join(_RAW_CONCURRENCIES.value)} callers, "
          f"{_DURATION.value:.0f} s per measurement, {_ROUNDS.value} interleaved rounds")
    with tempfile.TemporaryDirectory(prefix="serving_tax.") as tmp, _start_server(exports.values(), Path(tmp)) as server:
        for encoding, export in exports.items():
            for batch_size in map(int, _BATCH_SIZES.value):
                rounds = [_round(server, export, batch_size, raw_first=i % 2 == 1) for i in range(_ROUNDS.value)]
                taxes = [r["serving_tax"] for r in rounds]
                row = {"encoding": encoding, "batch_size": batch_size, "rounds": rounds,
                       "median_serving_tax": statistics.median(taxes),
                       "median_served_images_per_s": statistics.median(r["served_images_per_s"] for r in rounds),
                       "median_raw_images_per_s": statistics.median(r["raw_images_per_s"] for r in rounds)}
                results.append(row)
                best = sorted({r["raw_best_concurrency"] for r in rounds})
                served_best = sorted({r["served_best_concurrency"] for r in rounds})
                print(f"{encoding:>7} batch {batch_size}: served {row['median_served_images_per_s']:7.1f} img/s "
                      f"(best at {served_best} in flight), "
                      f"raw {row['median_raw_images_per_s']:7.1f} img/s (best at {best} callers), serving tax {row['median_serving_tax']:.3f} "
                      f"(rounds {', '.join(f'{t:.3f}' for t in taxes)}; client "
                      f"{statistics.median(r['client_cpu_us_per_request'] for r in rounds):.0f} CPU µs/request)",
                      flush=True)
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
