"""Are measurements VALID where they run? Repeated runs with the generator beside the server.

    python -m bench.validity [--models=tiny_cnn,mobilenet_v2_small] [--repetitions=10]
        [--options=realtime] [--cases=c1,c2,c4,open10,open50,open80]

For each model, an embedded server hosts it alone on this machine (exported to saved_models/
first if missing) and the load generator runs on the same host, as a user's first experiment
does. The model's capacity is measured once: the closed-loop throughput at concurrency 4. Then
every case runs `--repetitions` times under each co-location option:

    c1, c2, c4               closed loop at concurrency 1, 2, 4
    open10, open50, open80   open loop, Poisson, at 10 rps and at 50% and 80% of the capacity

    options (tfs_bench.cpu_priority):
    none           generator and server at the normal policy and niceness
    nice           the server started at nice +10
    realtime       the generator's workers under SCHED_FIFO 1
    realtime+nice  both

Each run uses the suite's default rules (5 s windows of at least 50 requests, 3 windows judged,
±10% stability, the relative timing bound) with a 2 s warm-up. Printed per option, model and
case: the VALID fraction, the mean late-send fraction, the median and worst event-loop lag p99,
the median throughput, and the INVALID reasons counted by code. The throughput columns of c4
under each option say what an option costs the server.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from absl import app
from absl import flags

from bench.bench_server import planned_server
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.driver import run_load
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.schedule import tenant_seed
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.plan import placement

SERVER_NICE = 10
OPTIONS = {  # name: (generator priority, server nice)
    "none": ("normal", 0),
    "nice": ("normal", SERVER_NICE),
    "realtime": ("realtime", 0),
    "realtime+nice": ("realtime", SERVER_NICE),
}
CASES = ("c1", "c2", "c4", "open10", "open50", "open80")
CAPACITY_CONCURRENCY = 4

_MODELS = flags.DEFINE_list("models", ["tiny_cnn", "mobilenet_v2_small"], "Models (exported if missing).")
_REPETITIONS = flags.DEFINE_integer("repetitions", 10, "Runs of each case under each option.", lower_bound=1)
_OPTIONS = flags.DEFINE_list("options", ["realtime"], f"Co-location options: {', '.join(OPTIONS)}.")
_CASES = flags.DEFINE_list("cases", list(CASES), "Cases to run.")
_SAVED_MODELS_DIR = flags.DEFINE_string("saved_models_dir", "saved_models", "Where the exports are.")
_WARMUP_S = flags.DEFINE_float("warmup_s", 2.0, "Warm-up of each run.")


@dataclasses.dataclass
class Tally:
    runs: int = 0
    valid: int = 0
    late_fractions: list = dataclasses.field(default_factory=list)
    lags_ms: list = dataclasses.field(default_factory=list)
    throughputs: list = dataclasses.field(default_factory=list)
    reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, result: RunResult) -> None:
        self.runs += 1
        self.valid += result.verdict.valid
        self.late_fractions.append(result.aggregate.late_fraction)
        self.throughputs.append(result.aggregate.throughput_rps)
        pooled = [result.windows[i] for i in result.pooled_windows]
        lags = [g.loop_lag_p99_ms for w in pooled for g in w.generator if g.loop_lag_p99_ms is not None]
        self.lags_ms.append(max(lags, default=0.0))
        self.reasons.update(r.code for r in result.verdict.reasons)

    def row(self, option: str, model: str, case: str) -> str:
        reasons = ", ".join(f"{code} ×{n}" for code, n in sorted(self.reasons.items())) or "-"
        return (
            f"{option:<14} {model:<19} {case:<7} {self.valid:>3}/{self.runs:<3} {self.valid / self.runs:>6.0%}  "
            f"{statistics.fmean(self.late_fractions):>7.2%}  {statistics.median(self.lags_ms):>7.2f}  "
            f"{max(self.lags_ms):>7.2f}  {statistics.median(self.throughputs):>8.1f}  {reasons}"
        )


HEADER = (
    f"{'option':<14} {'model':<19} {'case':<7} {'VALID':>7} {'share':>6}  {'late':>7}  {'lag p99':>7}  "
    f"{'worst':>7}  {'rps':>8}  INVALID reasons\n"
    f"{'':<14} {'':<19} {'':<7} {'':>7} {'':>6}  {'(mean)':>7}  {'med ms':>7}  {'ms':>7}  {'(med)':>8}"
)


def _ensure_exported(models: list[str], saved_models_dir: Path) -> None:
    missing = [m for m in models if not (saved_models_dir / m).is_dir()]
    if missing:
        subprocess.run(
            [sys.executable, "-m", "tfs_bench.export", f"--models={','.join(missing)}",
             f"--saved_models_dir={saved_models_dir}"],
            check=True,
        )


def _config(model: str, target: str, out: Path, priority: str, case: str, capacity: float, seed: int) -> LoadConfig:
    if case.startswith("c"):
        mix = TrafficMix((TenantLoad(model, model, concurrency=int(case[1:])),))
    else:
        share = int(case[len("open"):])
        rate = 10.0 if share == 10 else capacity * share / 100
        mix = TrafficMix((TenantLoad(model, model, rate_rps=rate, seed=tenant_seed(seed, model)),))
    return LoadConfig(
        mix=mix,
        targets=(target,),
        output_dir=str(out),
        policy=WindowPolicy(warmup_s=_WARMUP_S.value),
        criteria=ValidityCriteria(),
        generator_priority=priority,
    )


def main(argv):
    del argv
    unknown = sorted(set(_OPTIONS.value) - set(OPTIONS)) + sorted(set(_CASES.value) - set(CASES))
    if unknown:
        raise app.UsageError(f"unknown option(s) or case(s): {', '.join(unknown)}")
    saved = Path(_SAVED_MODELS_DIR.value).absolute()
    _ensure_exported(_MODELS.value, saved)
    rows = []
    with tempfile.TemporaryDirectory(prefix="validity_") as tmp:
        tmp = Path(tmp)
        for model in _MODELS.value:
            entry = placement.load_model_entry(model, str(saved / model))
            capacity = None
            for option in _OPTIONS.value:
                priority, nice = OPTIONS[option]
                work = tmp / f"{model}-{option}"
                work.mkdir()
                with planned_server([entry], work, nice=nice) as server:
                    if capacity is None:
                        probe = run_load(_config(model, server.grpc_target, work / "capacity", priority,
                                                 f"c{CAPACITY_CONCURRENCY}", 0.0, 0))
                        capacity = probe.aggregate.throughput_rps
                        print(f"{model}: capacity {capacity:.1f} rps (closed loop, concurrency "
                              f"{CAPACITY_CONCURRENCY}, {probe.verdict.label}, option {option})", flush=True)
                    for case in _CASES.value:
                        tally = Tally()
                        for k in range(_REPETITIONS.value):
                            out = work / f"{case}-{k}"
                            tally.add(run_load(_config(model, server.grpc_target, out, priority, case, capacity, k)))
                        rows.append(tally.row(option, model, case))
                        print(rows[-1], flush=True)
    print()
    print(HEADER)
    for row in rows:
        print(row)


if __name__ == "__main__":
    app.run(main)
