"""Per-window server metrics from two snapshots, and where a model's response time went.

Pure functions of the snapshots. Precision: TF Serving prints a histogram's `_sum` with six
significant digits (absl::StrCat of a double), so each cumulative sum is rounded in its sixth
digit (to 1000 µs once it passes 10^8 µs, i.e. 100 s of summed latency); a window's summed
latency is off by at most one unit of that digit, and its mean by that over its request count.
Rounding is monotone, so it never makes a sum go down (which would read as a reset).
"""

from __future__ import annotations

import math
from collections import defaultdict

from tfs_bench.monitors.samples import (
    LatencyBreakdown,
    LatencyDelta,
    MetricsSnapshot,
    ModelMetricsDelta,
    ServerMetricsDelta,
)

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"

_HISTOGRAMS = (REQUEST_LATENCY, RUNTIME_LATENCY, QUEUING_LATENCY)
_NO_FIGURES = dict.fromkeys(
    (
        "request_latency_mean_us",
        "runtime_latency_mean_us",
        "queuing_latency_mean_us",
        "network_serialisation_us",
        "request_handling_us",
        "batch_wait_us",
    )
)
_TRACKED = frozenset({REQUEST_COUNT} | {f"{h}_{part}" for h in _HISTOGRAMS for part in ("sum", "count")})


def metrics_delta(before: MetricsSnapshot, after: MetricsSnapshot) -> ServerMetricsDelta:
    """The metrics gained between two snapshots of one server.

    A counter or histogram series that went down, or vanished, between them means the server
    restarted: the result is "counter_reset" with the series named, never a negative delta.
    """
    start_ns, end_ns = before.t_ns, after.t_ns
    for which, snapshot in (("start", before), ("end", after)):
        if snapshot.missing:
            return _not_ok(
                start_ns, end_ns, "missing", f"the scrape at the window's {which} failed: {snapshot.error}"
            )
    reset = _first_reset(before.samples, after.samples)
    if reset:
        return _not_ok(start_ns, end_ns, "counter_reset", reset)

    gained: dict[tuple, float] = {}
    for key, value in after.samples.items():
        if key[0] in _TRACKED:
            gained[key] = value - before.samples.get(key, 0.0)
    unusable = sorted(_describe(key) for key, value in gained.items() if not math.isfinite(value))
    if unusable:
        return _not_ok(start_ns, end_ns, "missing", f"non-finite value in {unusable[0]}")

    request_latency: dict[str, dict[str, LatencyDelta]] = defaultdict(dict)
    runtime_latency: dict[str, LatencyDelta] = {}
    queuing_latency: dict[str, LatencyDelta] = {}
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for labels, latency in _histogram_deltas(gained, REQUEST_LATENCY):
        model, entrypoint = labels.get("model_name", ""), labels.get("entrypoint", "")
        by_entrypoint = request_latency[model]
        by_entrypoint[entrypoint] = by_entrypoint.get(entrypoint, LatencyDelta(0, 0.0)) + latency
    for labels, latency in _histogram_deltas(gained, RUNTIME_LATENCY):
        model = labels.get("model_name", "")
        runtime_latency[model] = runtime_latency.get(model, LatencyDelta(0, 0.0)) + latency
    for labels, latency in _histogram_deltas(gained, QUEUING_LATENCY):
        pool = labels.get("thread_pool_name", "")
        queuing_latency[pool] = queuing_latency.get(pool, LatencyDelta(0, 0.0)) + latency
    for (name, label_items), value in gained.items():
        if name == REQUEST_COUNT:
            labels = dict(label_items)
            by_status = counts[labels.get("model_name", "")]
            status = labels.get("status", "")
            by_status[status] = by_status.get(status, 0) + round(value)

    models = sorted(set(request_latency) | set(runtime_latency) | set(counts))
    return ServerMetricsDelta(
        start_ns=start_ns,
        end_ns=end_ns,
        status="ok",
        reason=None,
        models=tuple(
            ModelMetricsDelta(
                model_name=model,
                request_latency_by_entrypoint=request_latency.get(model, {}),
                runtime_latency=runtime_latency.get(model, LatencyDelta(0, 0.0)),
                request_count_by_status=counts.get(model, {}),
            )
            for model in models
        ),
        queuing_latency_by_pool=queuing_latency,
    )


def latency_breakdown(
    delta: ServerMetricsDelta,
    model_name: str,
    client_mean_service_time_us: float,
    entrypoint: str = "GRPC",
) -> LatencyBreakdown:
    """METHODOLOGY.md's breakdown of one model's mean service time in one window.

    `client_mean_service_time_us` is the client's mean service time (send to reply) over the
    window's successful requests
    (the server's latencies count successful requests only); `entrypoint` is the front end the
    client used ("GRPC" or "REST"). Runtime latency is not labelled by entrypoint, so a model
    served through both in one window mixes them there. Batch wait is the server-wide queuing
    latency: TF Serving labels it by batching thread pool, not by model.
    """

    def not_ok(status: str, reason: str, requests: int = 0) -> LatencyBreakdown:
        return LatencyBreakdown(
            model_name=model_name,
            entrypoint=entrypoint,
            status=status,
            reason=reason,
            requests=requests,
            client_mean_service_time_us=client_mean_service_time_us,
            **_NO_FIGURES,
        )

    if delta.status != "ok":
        return not_ok(delta.status, delta.reason)
    model = delta.model(model_name)
    request = model.request_latency_by_entrypoint.get(entrypoint) if model else None
    if request is None or request.count == 0:
        return not_ok(
            "no_requests", f"no successful {entrypoint} request of {model_name!r} was timed in the window"
        )
    if model.runtime_latency.count == 0:
        return not_ok(
            "no_requests", f"no runtime latency of {model_name!r} was recorded in the window", request.count
        )
    queuing_mean_us = delta.queuing_latency.mean_us
    return LatencyBreakdown(
        model_name=model_name,
        entrypoint=entrypoint,
        status="ok",
        reason=None,
        requests=request.count,
        client_mean_service_time_us=client_mean_service_time_us,
        request_latency_mean_us=request.mean_us,
        runtime_latency_mean_us=model.runtime_latency.mean_us,
        queuing_latency_mean_us=queuing_mean_us,
        network_serialisation_us=client_mean_service_time_us - request.mean_us,
        request_handling_us=request.mean_us - model.runtime_latency.mean_us,
        batch_wait_us=queuing_mean_us,
    )


def _not_ok(start_ns: int, end_ns: int, status: str, reason: str) -> ServerMetricsDelta:
    return ServerMetricsDelta(start_ns, end_ns, status, reason, (), {})


def _describe(key) -> str:
    name, label_items = key
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(label_items))
    return f"{name}{{{labels}}}"


def _first_reset(before, after) -> str | None:
    for key in sorted(before, key=_describe):
        if key[0] not in _TRACKED:
            continue
        old = before[key]
        new = after.get(key)
        if new is None:
            return f"{_describe(key)} vanished (it was {old:g}); the server restarted"
        if new < old:  # NaN compares false: a non-finite sum is caught later, not as a reset
            return f"{_describe(key)} went down from {old:g} to {new:g}; the server restarted"
    return None


def _histogram_deltas(gained: dict, histogram: str):
    """(labels, LatencyDelta) for each series of one histogram, pairing `_count` with `_sum`."""
    for (name, label_items), count in gained.items():
        if name == f"{histogram}_count":
            yield dict(label_items), LatencyDelta(
                round(count), gained.get((f"{histogram}_sum", label_items), 0.0)
            )
