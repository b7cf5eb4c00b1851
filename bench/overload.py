"""The embedded server under open-loop load at several times its capacity, and after it.

  python -m bench.overload [--model=mobilenet_v2_small] [--factor=3] [--overload_s=60] [--batching]
                           [--output=FILE.json]

With --batching the server batches (BATCHING below: at most 4 batches of 8 queued), so a full
queue answers UNAVAILABLE, as TF Serving's does, instead of requests waiting for a thread.

1. capacity: closed loop at concurrency 4 on one server with --model (exported if missing);
   the baseline latency is the median of sequential Predicts.
2. overload: open loop (Poisson) at --factor x capacity for --overload_s, --max_outstanding
   requests at most in flight (the rest are DROPPED by the generator, never queued without end);
   the server's RSS and the generator's are sampled every 200 ms.
3. recovery: as soon as the overload run returns, sequential Predicts until --settled of them
   in a row take at most twice the baseline; the time until then is the recovery time. Then the
   closed loop of step 1 again: throughput afterwards against capacity.
Printed: capacity, offered and achieved rates, dropped and failed requests by status, the server's
and the generator's RSS before and at peak, recovery time, throughput after.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import psutil
from absl import app
from absl import flags

from bench import bench_server
from bench import closed_loop
from tfs_bench.export import savedmodels
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.driver import run_load
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.plan import placement

BATCHING = placement.BatchingSpec(max_batch_size=8, batch_timeout_micros=2000, max_enqueued_batches=4)


class Sampler:
    """Peak RSS of some processes (and their children), every 200 ms on a thread of its own."""

    def __init__(self, pids: dict[str, int]):
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.start = {name: self._rss(name) for name in pids}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self, name: str) -> int:
        process = self._processes[name]
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self):
        while not self._stop.wait(0.2):
            for name in self._processes:
                try:
                    self.peak[name] = max(self.peak[name], self._rss(name))
                except psutil.Error:
                    pass

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {name: {"start_mib": round(self.start[name] / 2**20, 1), "peak_mib": round(self.peak[name] / 2**20, 1)}
                for name in self._processes}


def _policy(window_s: float, windows: int, warmup_s: float = 2.0) -> WindowPolicy:
    # Never "stable" (tolerance 0.1%): the run lasts exactly its windows.
    return WindowPolicy(window_s=window_s, window_min_requests=0, warmup_s=warmup_s, max_windows=windows,
                        stability_tolerance=0.001)


def closed_throughput(target: str, model: str, out: Path, window_s: float = 2.0, windows: int = 3,
                      warmup_s: float = 2.0) -> float:
    mix = TrafficMix((TenantLoad(model, model, concurrency=4),))
    config = LoadConfig(mix=mix, targets=(target,), output_dir=str(out), policy=_policy(window_s, windows, warmup_s),
                        criteria=ValidityCriteria(min_duration_s=window_s, min_requests=1))
    return run_load(config).aggregate.throughput_rps


def sequential_latencies(target: str, payload: bytes, count: int) -> list[float]:
    with grpc.insecure_channel(target) as channel:
        predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        out = []
        for _ in range(count):
            started = time.perf_counter()
            predict(payload, timeout=30)
            out.append((time.perf_counter() - started) * 1000)
        return out


def recovery_s(target: str, payload: bytes, bound_ms: float, settled: int, limit_s: float = 120.0) -> float | None:
    """Seconds from now until `settled` sequential Predicts in a row take at most `bound_ms`."""
    started = time.perf_counter()
    in_a_row = 0
    with grpc.insecure_channel(target) as channel:
        predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        while time.perf_counter() - started < limit_s:
            sent = time.perf_counter()
            try:
                predict(payload, timeout=30)
                ok = (time.perf_counter() - sent) * 1000 <= bound_ms
            except grpc.RpcError:
                ok = False
            in_a_row = in_a_row + 1 if ok else 0
            if in_a_row == settled:
                return round(time.perf_counter() - started, 2)
    return None


def overload(server, export, factor: float, overload_s: float, max_outstanding: int, work_dir: Path,
             settled: int = 5, window_s: float = 5.0, capacity_window_s: float = 2.0, warmup_s: float = 2.0) -> dict:
    card = export.card
    model = card.export_name
    _, h, w, c = card.inputs[0].shape
    pixels = (np.random.default_rng(0).random((1, h, w, c)) * 255).astype(card.input_encoding)
    payload = closed_loop.predict_bytes(model, card.inputs[0].name, pixels)
    target = server.grpc_target

    capacity = closed_throughput(target, model, work_dir / "capacity", capacity_window_s, warmup_s=warmup_s)
    baseline_ms = statistics.median(sequential_latencies(target, payload, 30))

    offered = factor * capacity
    windows = max(1, round(overload_s / window_s))
    mix = TrafficMix((TenantLoad(model, model, rate_rps=offered, arrival="poisson"),))
    config = LoadConfig(mix=mix, targets=(target,), output_dir=str(work_dir / "overload"),
                        policy=_policy(window_s, windows, warmup_s), max_outstanding=max_outstanding,
                        criteria=ValidityCriteria(min_duration_s=window_s, min_requests=1))
    sampler = Sampler({"server": server.pid, "generator": psutil.Process().pid})
    started = time.perf_counter()
    result = run_load(config)
    took_s = time.perf_counter() - started
    recovered_s = recovery_s(target, payload, 2 * baseline_ms, settled)
    memory = sampler.stop()
    after = closed_throughput(target, model, work_dir / "after", capacity_window_s, warmup_s=warmup_s)

    windows_ = result.windows
    totals = {"scheduled": 0, "ok": 0, "dropped": 0, "errors": {}}
    for window in windows_:
        load = window.aggregate
        totals["scheduled"] += load.scheduled or 0
        totals["ok"] += load.requests
        totals["dropped"] += load.dropped
        for code, n in load.errors_by_code.items():
            totals["errors"][code] = totals["errors"].get(code, 0) + n
    measured_s = sum(w.duration_s for w in windows_)
    return {
        "model": model,
        "capacity_rps": round(capacity, 1),
        "baseline_p50_ms": round(baseline_ms, 2),
        "offered_rps": round(offered, 1),
        "overload_windows": len(windows_),
        "overload_measured_s": round(measured_s, 1),
        "overload_run_s": round(took_s, 1),
        "achieved_rps": round(totals["ok"] / measured_s, 1) if measured_s else None,
        "scheduled": totals["scheduled"],
        "ok": totals["ok"],
        "dropped": totals["dropped"],
        "errors_by_code": totals["errors"],
        "verdict": result.verdict.label,
        "verdict_reasons": [str(r) for r in result.verdict.reasons][:4],
        "memory": memory,
        "recovery_s": recovered_s,
        "throughput_after_rps": round(after, 1),
    }


def main(argv):
    del argv
    flag = flags.FLAGS
    export = savedmodels.export(savedmodels.ExportRequest(flag.model, flag.saved_models_dir, measure_footprint=False))
    entry = placement.load_model_entry(export.card.export_name, str(export.version_dir.parent.absolute()))
    with tempfile.TemporaryDirectory(prefix="tfs_bench_overload_") as tmp:
        request = {"batching": BATCHING} if flag.batching else {}
        with bench_server.planned_server([entry], Path(tmp), **request) as server:
            figures = overload(server, export, flag.factor, flag.overload_s, flag.max_outstanding, Path(tmp))
            figures["server_alive"] = server.poll() is None
            figures["batching"] = flag.batching
    print(json.dumps(figures, indent=2))
    if flag.output:
        Path(flag.output).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _define_flags():
    # Defined only when run as a script: a test imports the measurement beside other binaries' flags.
    flags.DEFINE_string("model", "mobilenet_v2_small", "Zoo model to serve.")
    flags.DEFINE_string("saved_models_dir", "saved_models", "Where exports are (made if missing).")
    flags.DEFINE_float("factor", 3.0, "Offered rate as a multiple of the measured capacity.", lower_bound=1.0)
    flags.DEFINE_float("overload_s", 60.0, "Seconds of overload (in 5 s windows).", lower_bound=5.0)
    flags.DEFINE_integer("max_outstanding", 1000, "The generator's cap on requests in flight.", lower_bound=1)
    flags.DEFINE_bool("batching", False, "Serve with server-side batching (a bounded queue).")
    flags.DEFINE_string("output", None, "Also write the figures here as JSON.")


if __name__ == "__main__":
    _define_flags()
    sys.exit(app.run(main))
