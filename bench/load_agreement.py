"""Does the generator agree with the server? Closed-loop throughput and latency, measured both ways.

    python -m bench.load_agreement [--concurrency=1,4] [--window_s=2]

The embedded server serves half_plus_two with Prometheus metrics on; for each concurrency one
closed-loop run (gRPC) is made, and the metrics page is scraped when warm-up ends and as each
window closes. Over the pooled windows (between the scrape closing the window before them and
the scrape closing the last one):

- throughput: the generator's successful requests ÷ pooled time, vs the server's
  `request_count{status="OK"}` delta ÷ the same time;
- mean latency: the generator's mean service time (done − sent, client side) vs the server's
  `request_latency` sum ÷ count (request handling inside the server); the difference is
  network + (de)serialisation + client overhead, per METHODOLOGY's breakdown;
- p50 / p99: the generator's exact nearest-rank values vs the server histogram's bucket that
  holds that rank (buckets grow ×1.8, so the server only brackets its percentiles).

A scrape happens a few ms after its window boundary (the window must be summarised first), so
the two sides' intervals differ by that much at each end.
"""

from __future__ import annotations

import math
import tempfile
import urllib.request
from pathlib import Path

from absl import app
from absl import flags

from bench.bench_server import half_plus_two_server
from tfs_bench.export import known_answer
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.driver import LoadObserver
from tfs_bench.load.driver import run_load
from tfs_bench.prometheus import parse_prometheus_text
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.windows import WindowPolicy

METRICS_PATH = "/monitoring/prometheus/metrics"
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
MODEL = known_answer.MODEL_NAME

_CONCURRENCY = flags.DEFINE_list("concurrency", ["1", "4"], "Closed-loop concurrencies to compare at.")
_WINDOW_S = flags.DEFINE_float("window_s", 2.0, "Window length.", lower_bound=0.1)


class _Scraper(LoadObserver):
    """Scrapes the server's metrics at each boundary: index -1 is the end of warm-up."""

    def __init__(self, url: str):
        self._url = url
        self.scrapes: dict[int, dict] = {}

    def _scrape(self) -> dict:
        with urllib.request.urlopen(self._url, timeout=10) as response:
            return parse_prometheus_text(response.read().decode("utf-8"))

    def warmup_ended(self, label):
        self.scrapes[-1] = self._scrape()

    def window_closed(self, label, window):
        self.scrapes[window.index] = self._scrape()


def _labelled(samples: dict, name: str, **labels: str) -> dict[frozenset, float]:
    wanted = set(labels.items())
    return {key[1]: value for key, value in samples.items() if key[0] == name and wanted <= key[1]}


def _delta(before: dict, after: dict, name: str, **labels: str) -> dict[frozenset, float]:
    old = _labelled(before, name, **labels)
    return {key: value - old.get(key, 0.0) for key, value in _labelled(after, name, **labels).items()}


def _one(values: dict[frozenset, float]) -> float:
    return sum(values.values())


def _bucket_bounds_ms(buckets: dict[frozenset, float], p: float) -> tuple[float, float]:
    """(lower, upper] of the histogram bucket holding the nearest-rank p-th percentile, in ms."""
    by_bound = sorted(
        (float(dict(labels)["le"]), count) for labels, count in buckets.items()
    )
    total = by_bound[-1][1]
    rank = math.ceil(p / 100 * total)
    lower = 0.0
    for bound, cumulative in by_bound:
        if cumulative >= rank:
            return lower / 1000, bound / 1000
        lower = bound
    raise AssertionError("the +Inf bucket holds every sample")


def compare(result: RunResult, scrapes: dict[int, dict]) -> list[str]:
    pooled = result.aggregate
    first, last = result.pooled_windows[0], result.pooled_windows[-1]
    before, after = scrapes[first - 1], scrapes[last]
    ok = _one(_delta(before, after, REQUEST_COUNT, model_name=MODEL, status="OK"))
    latency_sum_us = _one(_delta(before, after, f"{REQUEST_LATENCY}_sum", model_name=MODEL))
    latency_count = _one(_delta(before, after, f"{REQUEST_LATENCY}_count", model_name=MODEL))
    buckets = _delta(before, after, f"{REQUEST_LATENCY}_bucket", model_name=MODEL)
    duration_s = pooled.duration_s
    service = pooled.service_time
    server_mean_ms = latency_sum_us / latency_count / 1000
    lines = [
        f"  throughput: generator {pooled.throughput_rps:8.1f} rps   server {ok / duration_s:8.1f} rps   "
        f"({pooled.requests} vs {ok:.0f} requests in {duration_s:.2f} s; differ by {ok / pooled.requests - 1:+.2%})",
        f"  mean:       generator {service.mean_ms:8.3f} ms   server {server_mean_ms:8.3f} ms   "
        f"(client - server = {service.mean_ms - server_mean_ms:.3f} ms: network, (de)serialisation, client)",
    ]
    for p, value in ((50.0, service.p50_ms), (99.0, service.p99_ms)):
        low, high = _bucket_bounds_ms(buckets, p)
        lines.append(f"  p{p:g}:        generator {value:8.3f} ms   server bucket ({low:.3f}, {high:.3f}] ms")
    return lines


def main(argv):
    del argv
    with tempfile.TemporaryDirectory(prefix="load_agreement_") as tmp:
        with half_plus_two_server() as server:  # plans always enable Prometheus on the REST port
            url = f"{server.rest_url}{METRICS_PATH}"
            policy = WindowPolicy(window_s=_WINDOW_S.value, window_min_requests=50, warmup_s=1.0, max_windows=6)
            criteria = ValidityCriteria(min_duration_s=3 * _WINDOW_S.value)
            for concurrency in map(int, _CONCURRENCY.value):
                mix = TrafficMix((TenantLoad(MODEL, MODEL, concurrency=concurrency),))
                config = LoadConfig(
                    mix=mix, targets=(server.grpc_target,), output_dir=str(Path(tmp) / f"c{concurrency}"),
                    policy=policy, criteria=criteria,
                )
                scraper = _Scraper(url)
                result = run_load(config, scraper)
                reasons = "; ".join(f"{r.code}: {r.message}" for r in result.verdict.reasons)
                print(
                    f"closed loop, concurrency {concurrency}: {result.verdict.label}"
                    f"{f' ({reasons})' if reasons else ''}, windows {', '.join(map(str, result.pooled_windows))} pooled",
                    flush=True,
                )
                for line in compare(result, scraper.scrapes):
                    print(line, flush=True)


if __name__ == "__main__":
    app.run(main)
