"""The suite's open loop beside MLPerf LoadGen's Server scenario, at the same Poisson rate on the same server.

    python -m bench.loadgen_comparison [--rates=100,300] [--duration_s=15] [--rounds=2]

One embedded server serving half_plus_two (gRPC, batch 1). For each round and each rate, in
turn: the suite's open loop (Poisson arrivals, one worker process) and LoadGen's Server
scenario (`--mode=mlperf`), each for the same warm-up and measured span (three windows of
duration/3, pooled). Both count response time from each query's scheduled send time. Printed
per run: throughput, p50 and p99, and each verdict; LoadGen's figures are its own (all its
queries, from its detail log), the suite's are over its pooled windows. The last table gives
the medians over the rounds.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from pathlib import Path

from absl import app
from absl import flags

from bench.bench_server import half_plus_two_server
from tfs_bench.export import known_answer
from tfs_bench.load import mlperf
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.driver import LoadObserver
from tfs_bench.load.driver import run_load
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.windows import WindowPolicy

_RATES = flags.DEFINE_list("rates", ["100", "300"], "Poisson rates to compare, requests/s.")
_DURATION_S = flags.DEFINE_float("duration_s", 15.0, "Measured span of each run (after a 2 s warm-up).", lower_bound=1.5)
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Interleaved rounds.", lower_bound=1)
_SLA_MS = flags.DEFINE_float("sla_ms", 100.0, "LoadGen's latency bound (at p99).", lower_bound=0.0)
WARMUP_S = 2.0
PERCENTILE = 99.0


@dataclasses.dataclass(frozen=True)
class Row:
    who: str
    rate_rps: float
    throughput_rps: float
    p50_ms: float | None
    p99_ms: float | None
    verdict: str

    def line(self) -> str:
        return (f"  {self.who:8}  {self.rate_rps:6.0f} rps offered  {self.throughput_rps:8.1f} /s  "
                f"p50 {_ms(self.p50_ms)}  p99 {_ms(self.p99_ms)}  {self.verdict}")


def _ms(value: float | None) -> str:
    return "    n/a" if value is None else f"{value:7.2f} ms"


def _config(target: str, rate_rps: float, out: Path) -> LoadConfig:
    window_s = _DURATION_S.value / 3
    mix = TrafficMix((TenantLoad(known_answer.MODEL_NAME, known_answer.MODEL_NAME, rate_rps=rate_rps, arrival="poisson",
                                 seed=1),))
    # Three windows pooled whatever their spread: the comparison wants the whole span, judged.
    policy = WindowPolicy(window_s=window_s, window_min_requests=0, warmup_s=WARMUP_S, max_windows=3,
                          stability_tolerance=0.10, sla_percentile=PERCENTILE)
    criteria = ValidityCriteria(min_duration_s=_DURATION_S.value, min_requests=1)
    return LoadConfig(mix=mix, targets=(target,), output_dir=str(out), policy=policy, criteria=criteria, seed=1)


def ours(target: str, rate_rps: float, out: Path) -> Row:
    result = run_load(_config(target, rate_rps, out))
    pooled = result.aggregate
    return Row("ours", rate_rps, pooled.throughput_rps, pooled.response_time.p50_ms, pooled.response_time.p99_ms,
               result.verdict.label)


def loadgen(target: str, rate_rps: float, out: Path) -> Row:
    config = _config(target, rate_rps, out)
    settings = mlperf.loadgen_settings(config, "Server", rate_rps, _SLA_MS.value)
    verdict = mlperf.run_mlperf(config, settings, LoadObserver()).loadgen
    return Row("LoadGen", rate_rps, verdict.completed_per_s, verdict.latency_ms(50), verdict.latency_ms(PERCENTILE),
               verdict.validity)


def main(argv):
    del argv
    rates = [float(r) for r in _RATES.value]
    rows: list[Row] = []
    with half_plus_two_server() as server, tempfile.TemporaryDirectory(prefix="loadgen_comparison_") as tmp:
        print(f"embedded server at {server.grpc_target}; half_plus_two, batch 1, gRPC, Poisson arrivals; "
              f"{WARMUP_S:g} s warm-up, {_DURATION_S.value:g} s measured", flush=True)
        for round_ in range(_ROUNDS.value):
            for rate in rates:
                for who, measure in (("ours", ours), ("loadgen", loadgen)):
                    row = measure(server.grpc_target, rate, Path(tmp) / f"r{round_}-{rate:g}-{who}")
                    rows.append(row)
                    print(f"round {round_ + 1}:" + row.line(), flush=True)
    print(f"\nmedians over {_ROUNDS.value} round(s): throughput, p50, p99 (response time from the scheduled send)")
    for rate in rates:
        for who in ("ours", "LoadGen"):
            mine = [r for r in rows if r.who == who and r.rate_rps == rate]
            print(Row(who, rate, statistics.median(r.throughput_rps for r in mine),
                      _median([r.p50_ms for r in mine]), _median([r.p99_ms for r in mine]),
                      "/".join(r.verdict for r in mine)).line())


def _median(values):
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


if __name__ == "__main__":
    app.run(main)
