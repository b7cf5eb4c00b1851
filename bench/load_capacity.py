"""How much open-loop load the generator itself sustains, and what it costs in CPU per request.

    python -m bench.load_capacity [--workers=1,2] [--start_rps=200] [--max_rate=20000]
    python -m bench.load_capacity --ray --workers=1,2,4      # the workers as Ray actors

With `--ray` the workers run as Ray actors (`--ray_address`) on a two-node Ray cluster the
script starts on this machine (Ray's own multi-node test cluster: two raylets), worker k on
node k mod 2, each reserving half a CPU; each worker's clock offset and its uncertainty are
printed with the probe at the peak.

Against the embedded server serving half_plus_two on this machine, for each worker count: the
highest constant-rate schedule the generator keeps, where a rate is *sustained* when, over the
pooled windows of one run, the send rate (requests handed to gRPC per second, from the raw
records' sent times) is within 2% of the offered rate, fewer than 1% of the arrivals due in
that time were sent more than 1 ms late, and nothing is dropped at the outstanding cap (set far
out of reach, so a saturated server queues requests instead of slowing the schedule). This is
the generator's own accuracy: the windows' achieved rate counts requests by completion, so once
the server saturates it equals the server's throughput (printed as "completed"). The search is
the suite's peak search (doubling, then bisection to 5%) with that criterion in place of the SLA.

Constant arrivals, because a Poisson schedule's own randomness over a few seconds (±√n
arrivals) is as large as the 2% being tested. CPU per request is the workers' user + system CPU
over the pooled windows ÷ the requests sent in them; the parent process (which reads records
and summarises windows) is reported apart. On a small machine the server shares the cores, so
the figure is the generator's capacity *next to this server*, not alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
from collections.abc import Iterator
import tempfile
from pathlib import Path

from absl import app
from absl import flags

from bench.bench_server import half_plus_two_server
from tfs_bench.export import known_answer
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.driver import run_load
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.records import read_records
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.search import ProbeOutcome
from tfs_bench.load.search import peak_under_sla
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.windows import WindowPolicy

MAX_RATE_ERROR = 0.02
MAX_LATE_FRACTION = 0.01

_WORKERS = flags.DEFINE_list("workers", ["1", "2"], "Worker counts to measure.")
_START_RPS = flags.DEFINE_float("start_rps", 200.0, "First rate probed.", lower_bound=1.0)
_MAX_RATE = flags.DEFINE_float("max_rate", 20000.0, "Highest rate probed.", lower_bound=1.0)
_WINDOW_S = flags.DEFINE_float("window_s", 1.0, "Window length of each probe.", lower_bound=0.1)
_RAY = flags.DEFINE_bool("ray", False, "Run the workers as Ray actors on a two-node Ray cluster started here.")


@dataclasses.dataclass(frozen=True)
class Probe:
    rate_rps: float
    send_rate_rps: float
    completed_rps: float
    late_fraction: float
    dropped: int
    worker_cpu_us_per_request: float
    busiest_worker_cpu_fraction: float
    parent_cpu_us_per_request: float
    p50_ms: float | None
    p99_ms: float | None
    client_bound_windows: int

    @property
    def sustained(self) -> bool:
        return (
            abs(self.send_rate_rps / self.rate_rps - 1) <= MAX_RATE_ERROR
            and self.late_fraction < MAX_LATE_FRACTION
            and self.dropped == 0
        )

    def line(self) -> str:
        return (
            f"  {self.rate_rps:7.1f} rps offered  {self.send_rate_rps:7.1f} sent/s  {self.completed_rps:7.1f} completed/s  "
            f"late {self.late_fraction:6.2%}  "
            f"dropped {self.dropped}  worker CPU {self.worker_cpu_us_per_request:6.0f} us/req "
            f"(busiest {self.busiest_worker_cpu_fraction:4.0%} of a core)  parent {self.parent_cpu_us_per_request:5.0f} us/req  "
            f"p50 {self.p50_ms or 0:7.2f} ms  p99 {self.p99_ms or 0:8.2f} ms  client-bound windows {self.client_bound_windows}  "
            f"{'SUSTAINED' if self.sustained else 'not sustained'}"
        )


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _probe_of(result: RunResult, records: list[RequestRecord], rate_rps: float, parent_cpu_s: float) -> Probe:
    pooled = result.aggregate
    windows = [w for w in result.windows if w.index in result.pooled_windows]
    start_ns, end_ns = windows[0].start_ns, windows[-1].end_ns
    span_s = (end_ns - start_ns) / 1e9
    due = [r for r in records if start_ns <= r.intended_ns < end_ns]
    sent_in_span = sum(r.sent_ns is not None and start_ns <= r.sent_ns < end_ns for r in records)
    worker_cpu_s = sum(g.cpu_s for w in windows for g in w.generator)
    busiest = max(g.cpu_s / w.duration_s for w in windows for g in w.generator)
    sent = max(sent_in_span, 1)
    return Probe(
        rate_rps=rate_rps,
        send_rate_rps=sent_in_span / span_s,
        completed_rps=pooled.achieved_rate_rps,
        late_fraction=sum(r.late() for r in due) / max(len(due), 1),
        dropped=sum(r.dropped for r in due),
        worker_cpu_us_per_request=worker_cpu_s / sent * 1e6,
        busiest_worker_cpu_fraction=busiest,
        parent_cpu_us_per_request=parent_cpu_s / sent * 1e6,
        p50_ms=pooled.response_time.p50_ms,
        p99_ms=pooled.response_time.p99_ms,
        client_bound_windows=sum(w.client_bound for w in windows),
    )


def measure(target: str, workers: int, out: Path, ray_address: str | None) -> tuple[float, list[Probe]]:
    probes: list[Probe] = []
    policy = WindowPolicy(
        window_s=_WINDOW_S.value, window_min_requests=0, warmup_s=1.0, max_windows=3, stability_tolerance=0.5
    )
    criteria = ValidityCriteria(min_duration_s=3 * _WINDOW_S.value, min_requests=1)

    def probe(rate_rps: float) -> ProbeOutcome:
        mix = TrafficMix((TenantLoad(known_answer.MODEL_NAME, known_answer.MODEL_NAME, rate_rps=rate_rps, arrival="constant"),))
        config = LoadConfig(
            mix=mix, targets=(target,), output_dir=str(out / f"w{workers}-{rate_rps:.0f}rps"), policy=policy,
            criteria=criteria, workers=workers, max_outstanding=1_000_000, ray_address=ray_address,
            ray_worker_cpus=0.5,
        )
        parent_before = _cpu_s()
        result = run_load(config)
        parent_cpu_s = _cpu_s() - parent_before
        records = read_records(*sorted(Path(config.output_dir).glob("records-w*.csv")))
        found = _probe_of(result, records, rate_rps, parent_cpu_s)
        probes.append(found)
        print(found.line(), flush=True)
        reasons = () if found.sustained else ("not sustained",)
        return ProbeOutcome(found.sustained, reasons, result.aggregate.throughput_rps, 0.0)

    peak = peak_under_sla(probe, _START_RPS.value, sla_bound_ms=1.0, precision=0.05, max_rate_rps=_MAX_RATE.value)
    return peak.peak_rps, probes


@contextlib.contextmanager
def _ray_cluster() -> Iterator[str | None]:
    """The address of a two-node Ray cluster on this machine with --ray; None without."""
    if not _RAY.value:
        yield None
        return
    from ray.cluster_utils import Cluster  # imported only with --ray

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


def _clocks(out: Path, workers: int, rate_rps: float) -> str:
    summary = json.loads((out / f"w{workers}-{rate_rps:.0f}rps" / "summary.json").read_text())
    return "; ".join(f"worker {w['worker']} on {w['node']}: clock {w['clock_offset_ns'] / 1e3:+.0f} us "
                     f"± {w['clock_uncertainty_ns'] / 1e3:.0f} us" for w in summary["workers"])


def main(argv):
    del argv
    with half_plus_two_server() as server, tempfile.TemporaryDirectory(prefix="load_capacity_") as tmp, \
            _ray_cluster() as ray_address:
        where = "" if ray_address is None else f"; workers as Ray actors on the two-node cluster at {ray_address}"
        print(f"embedded server at {server.grpc_target}; half_plus_two, batch 1, gRPC, constant arrivals{where}", flush=True)
        summary = []
        for workers in map(int, _WORKERS.value):
            print(f"workers={workers}:", flush=True)
            peak_rps, probes = measure(server.grpc_target, workers, Path(tmp), ray_address)
            if ray_address is not None:
                print(f"  at {peak_rps:.0f} rps: {_clocks(Path(tmp), workers, peak_rps)}", flush=True)
            at_peak = next(p for p in probes if p.rate_rps == peak_rps)
            summary.append((workers, at_peak))
        print("\nhighest sustained open-loop rate (sent within 2% of offered, < 1% late, no drops):")
        for workers, p in summary:
            print(
                f"  workers={workers}: {p.rate_rps:.0f} rps offered ({p.send_rate_rps:.1f} sent/s, late {p.late_fraction:.2%}, "
                f"{p.completed_rps:.1f} completed/s); "
                f"generator CPU {p.worker_cpu_us_per_request:.0f} us/request in the workers "
                f"+ {p.parent_cpu_us_per_request:.0f} us/request in the parent"
            )


if __name__ == "__main__":
    app.run(main)
