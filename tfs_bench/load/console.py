"""The load stage's human-readable lines: a line per window, a table per run, a line per sweep
level, the peak and the ramp. Every figure is formatted by the metric registry."""

from __future__ import annotations

from collections.abc import Iterable

from tfs_bench.metric_registry import metric
from tfs_bench.load.search import PeakResult
from tfs_bench.load.search import RampResult
from tfs_bench.load.loadgen_log import LoadGenVerdict
from tfs_bench.load.verdict import RunResult
from tfs_bench.load.windows import LoadSummary
from tfs_bench.load.windows import WindowSummary
from tfs_bench.stats import percentile_field


def _fmt(name: str, value) -> str:
    return metric(name).format(value)


def format_window(label: str, window: WindowSummary, sla_percentile: float) -> str:
    """One progress line: the window's aggregate and the generator's own load."""
    s = window.aggregate
    field = percentile_field(sla_percentile)
    parts = [
        f"[{label}] window {window.index}",
        f"{window.duration_s:.2f} s",
        _fmt("throughput_rps", s.throughput_rps),
    ]
    if s.offered_rate_rps is not None:
        parts.append(f"offered {s.offered_rate_rps:.1f} achieved {s.achieved_rate_rps:.1f} rps")
    if s.scheduled is not None:
        parts.append(f"done/scheduled {s.requests}/{s.scheduled}")
    parts += [
        f"p50 {_fmt('p50_ms', s.response_time.p50_ms)}",
        f"p{sla_percentile:g} {_fmt(field, s.response_time.at(sla_percentile))}",
        f"errors {s.errors}",
        f"late {_fmt('late_fraction', s.late_fraction)}",
        f"dropped {s.dropped}",
    ]
    if window.generator:
        cpu = max(g.cpu_s for g in window.generator) / window.duration_s
        lags = [g.loop_lag_p99_ms for g in window.generator if g.loop_lag_p99_ms is not None]
        parts.append(f"generator cpu {_fmt('generator_cpu_fraction', cpu)}")
        if lags:
            parts.append(f"loop lag p99 {_fmt('loop_lag_p99_ms', max(lags))} (bound {window.timing_bound_ms:.2f} ms)")
        waits = [g.runqueue_wait_s for g in window.generator if g.runqueue_wait_s is not None]
        if waits:
            parts.append(f"cpu wait {max(waits) / window.duration_s * 1000:.0f} ms/s")
    if window.client_bound:
        parts.append(f"CLIENT-{window.client.upper()}")
    return "  ".join(parts)


_COLUMNS = ("tenant", "throughput", "offered", "achieved", "p50", "p90", "p95", "p99", "p99.9", "max",
            "errors", "late", "dropped")


def _row(name: str, s: LoadSummary) -> tuple[str, ...]:
    rt = s.response_time
    return (
        name,
        _fmt("throughput_rps", s.throughput_rps),
        "closed" if s.offered_rate_rps is None else _fmt("offered_rate_rps", s.offered_rate_rps),
        _fmt("achieved_rate_rps", s.achieved_rate_rps),
        *(_fmt(f, getattr(rt, f)) for f in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms", "max_ms")),
        str(s.errors),
        _fmt("late_fraction", s.late_fraction),
        str(s.dropped),
    )


def _table(rows: Iterable[tuple[str, ...]]) -> list[str]:
    rows = [_COLUMNS, *rows]
    widths = [max(len(r[k]) for r in rows) for k in range(len(_COLUMNS))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def format_result(label: str, result: RunResult, sla_ms: float | None = None) -> str:
    """The human summary of one run: verdict, per-tenant and aggregate rows, reasons."""
    pooled = result.aggregate
    lines = [
        f"{label}: {result.verdict.label}  ({len(result.windows)} windows, pooled "
        f"{', '.join(map(str, result.pooled_windows))}: {pooled.duration_s:.1f} s; response time = done - intended)"
    ]
    rows = [_row(name, t.pooled) for name, t in result.tenants.items()]
    if len(result.tenants) > 1:
        rows.append(_row("all", pooled))
    lines += _table(rows)
    if sla_ms is not None:
        latency = result.sla_latency_ms()
        met = latency is not None and latency <= sla_ms
        lines.append(
            f"  SLA p{result.sla_percentile:g} <= {sla_ms:g} ms: {'met' if met else 'NOT met'} "
            f"({_fmt(percentile_field(result.sla_percentile), latency)})"
        )
    lines += [f"  INVALID: {r.code}: {r.message}" for r in result.verdict.reasons]
    return "\n".join(lines)


def format_runs(runs: Iterable[tuple[str, RunResult]]) -> str:
    """One line per run of a sweep: verdict, throughput and the SLA percentile of response time."""
    lines = []
    for label, result in runs:
        latency = result.sla_latency_ms()
        field = percentile_field(result.sla_percentile)
        lines.append(
            f"  {label}: {result.verdict.label:7}  {_fmt('throughput_rps', result.aggregate.throughput_rps)}  "
            f"p{result.sla_percentile:g} {_fmt(field, latency)}"
        )
    return "\n".join(lines)


def format_peak(peak: PeakResult, sla_percentile: float, sla_ms: float) -> str:
    bracket = (
        f"between {peak.lower.rate_rps:g} (passed) and {peak.upper.rate_rps:g} rps (failed)"
        if peak.upper is not None
        else "not bracketed: the highest rate allowed passed"
    )
    return (
        f"peak under SLA (p{sla_percentile:g} <= {sla_ms:g} ms): {peak.peak_rps:g} rps offered, "
        f"{_fmt('throughput_rps', peak.lower.outcome.throughput_rps)} measured; {bracket}; "
        f"{len(peak.probes)} probes, precision {peak.precision:.0%}"
    )


def format_ramp(ramp: RampResult, sla_percentile: float, sla_ms: float) -> str:
    best = ramp.best
    return (
        f"PERSEUS ramp: best pass at {best.rate_rps:g} rps offered: "
        f"{_fmt('throughput_rps', best.outcome.throughput_rps)}, "
        f"p{sla_percentile:g} {_fmt(percentile_field(sla_percentile), best.outcome.sla_latency_ms)} "
        f"(SLA {sla_ms:g} ms {'met' if ramp.sla_met else 'NOT met'}); "
        f"{len(ramp.passes)} passes, stopped: {ramp.stop_reason}"
    )


def format_loadgen(verdict: LoadGenVerdict, result: RunResult, percentile: float) -> str:
    """LoadGen's verdict beside the suite's, with each side's throughput and latency percentile."""
    ours = result.aggregate
    theirs = verdict.latency_ms(percentile)
    lines = [
        f"MLPerf LoadGen ({verdict.scenario}): {verdict.validity}; the suite: {result.verdict.label}",
        f"  LoadGen:   {_fmt('throughput_rps', verdict.completed_per_s)} completed  "
        f"p{percentile:g} {'—' if theirs is None else f'{theirs:.2f} ms'} (from its scheduled send times, "
        f"all queries)",
        f"  the suite: {_fmt('throughput_rps', ours.throughput_rps)} in its pooled windows  "
        f"p{percentile:g} {_fmt(percentile_field(percentile), ours.response_time.at(percentile))}",
    ]
    reasons = verdict.results.get("result_invalid_reason") or []
    lines += [f"  LoadGen INVALID: {reason}" for reason in reasons]
    if verdict.results.get("early_stopping_met") is False:
        lines.append("  LoadGen INVALID: early stopping not met (too few queries for the latency percentile)")
    lines.append(f"  LoadGen's logs: {verdict.log_dir}/")
    return "\n".join(lines)
