"""The report's figures, each drawn from the analysis tables into PNG bytes (matplotlib, Agg).

Every function takes DataFrames of tfs_bench.analysis.results and returns the PNG, or None when
the tables hold nothing to draw. INVALID results are drawn, never dropped: hollow markers or
hatched bars, labelled INVALID in the legend or beside the bar.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import pandas as pd  # noqa: E402

DPI = 100
PLACEMENT_COLOURS = {"dedicated": "#4c72b0", "multi_model": "#dd8452", "multi_process": "#55a868"}
INVALID_HATCH = "xx"


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def _colour(placement: str) -> str:
    return PLACEMENT_COLOURS.get(placement, "#8172b2")


def throughput_by_placement(placements: pd.DataFrame, device: str) -> bytes | None:
    """(1) Per model: its dedicated peak and its throughput in each shared placement's balanced mix."""
    rows = placements[placements["device"] == device]
    if rows.empty:
        return None
    models = list(dict.fromkeys(rows["model"]))
    hostings = list(dict.fromkeys(rows["placement"]))
    figure, axes = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(hostings)
    for k, placement in enumerate(hostings):
        for i, model in enumerate(models):
            row = rows[(rows["placement"] == placement) & (rows["model"] == model)]
            if row.empty:
                continue
            row = row.iloc[0]
            value = 0.0 if math.isnan(row["inferences_per_s"]) else row["inferences_per_s"]
            ok = bool(row["valid"] and row["meets_sla"])
            x = i + (k - (len(hostings) - 1) / 2) * width
            axes.bar(x, value, width, color=_colour(placement), hatch=None if ok else INVALID_HATCH,
                     edgecolor="black" if not ok else None, label=placement if i == 0 else None)
            axes.annotate("INVALID" if not ok else f"{value:.0f}", (x, value), ha="center", va="bottom", fontsize=8)
    axes.set_xticks(range(len(models)), models)
    axes.set_ylabel("SLA-compliant throughput (inferences/s)")
    axes.set_title(f"{device}: dedicated peak vs share of the balanced mix")
    axes.legend()
    return _png(figure)


def operating_points(mixes: pd.DataFrame, device: str, pair: tuple[str, str]) -> bytes | None:
    """(2) Shared operating points of two models against the dedicated baseline line (PERSEUS Fig. 2)."""
    a, b = pair
    rows = mixes[(mixes["device"] == device) & mixes["tenant"].isin(pair)]
    if rows.empty:
        return None
    peaks = rows.groupby("tenant")["dedicated_peak_inferences_per_s"].max()
    if a not in peaks or b not in peaks or math.isnan(peaks[a]) or math.isnan(peaks[b]):
        return None
    figure, axes = plt.subplots(figsize=(6, 5))
    axes.plot([peaks[a], 0], [0, peaks[b]], color="grey", linestyle="--", label="dedicated baseline")
    seen = set()
    for (placement, mix), group in rows.groupby(["placement", "mix"], sort=False):
        values = dict(zip(group["tenant"], group["inferences_per_s"]))
        if a not in values or b not in values:
            continue
        ok = bool(group["valid"].all())
        label = placement if (placement, ok) not in seen else None
        seen.add((placement, ok))
        axes.scatter(values[a], values[b], s=60, marker="o" if ok else "X", color=_colour(placement),
                     facecolors=_colour(placement) if ok else "none", label=label if ok else f"{placement} (INVALID)" if label else None)
        savings = group["savings_fraction"].iloc[0]
        text = "INVALID" if not ok else f"{savings:+.0%}" if not math.isnan(savings) else ""
        axes.annotate(text, (values[a], values[b]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axes.set_xlabel(f"{a} (inferences/s)")
    axes.set_ylabel(f"{b} (inferences/s)")
    axes.set_xlim(left=0)
    axes.set_ylim(bottom=0)
    axes.set_title(f"{device}: shared operating points (savings = 1 − 1/capacity)")
    axes.legend(fontsize=8)
    return _png(figure)


def latency_cdfs(samples: Mapping[str, Mapping[str, Sequence[float]]], valid: Mapping[tuple[str, str], bool], sla_ms: float) -> bytes | None:
    """(3) Response-time CDFs: `samples[model][operating point]` in ms, one panel per model."""
    models = [m for m, points in samples.items() if any(points.values())]
    if not models:
        return None
    figure, panels = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for axes, model in zip(panels[0], models):
        for point, values in samples[model].items():
            if not values:
                continue
            ordered = sorted(values)
            ys = [(k + 1) / len(ordered) for k in range(len(ordered))]
            ok = valid.get((model, point), False)
            axes.step(ordered, ys, where="post", linestyle="-" if ok else ":", label=point if ok else f"{point} (INVALID)")
        axes.axvline(sla_ms, color="red", linewidth=0.8, label=f"SLA {sla_ms:g} ms")
        axes.set_xscale("log")
        axes.set_xlabel("response time (ms)")
        axes.set_ylabel("fraction of requests")
        axes.set_title(model)
        axes.legend(fontsize=7)
    return _png(figure)


def throughput_vs_p99(runs: pd.DataFrame, device: str, sla_ms: float) -> bytes | None:
    """(4) Every dedicated run of each model: throughput against p99 (hollow: INVALID)."""
    rows = runs[(runs["device"] == device) & (runs["placement"] == "dedicated") & runs["kind"].isin(["closed", "peak", "reference"])]
    if rows.empty:
        return None
    models = list(dict.fromkeys(rows["tenant"]))
    figure, panels = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for axes, model in zip(panels[0], models):
        mine = rows[rows["tenant"] == model]
        for ok in (True, False):
            part = mine[mine["valid"] == ok]
            if part.empty:
                continue
            axes.scatter(part["throughput_rps"], part["p99_ms"], facecolors="#4c72b0" if ok else "none",
                         edgecolors="#4c72b0", label="VALID" if ok else "INVALID")
        axes.axhline(sla_ms, color="red", linewidth=0.8, label=f"SLA bound {sla_ms:g} ms (on its percentile)")
        axes.set_yscale("log")
        axes.set_xlabel("throughput (requests/s)")
        axes.set_ylabel("p99 response time (ms)")
        axes.set_title(f"{device} dedicated {model}")
        axes.legend(fontsize=7)
    return _png(figure)


def utilisation_over_time(resources: pd.DataFrame, device: str) -> bytes | None:
    """(5) CPU (system %, server cores), memory and, where measured, GPU over the experiment."""
    rows = resources[resources["device"] == device]
    if rows.empty:
        return None
    has_gpu = rows["gpu_utilisation_percent"].notna().any()
    figure, panels = plt.subplots(3 if has_gpu else 2, 1, figsize=(8, 7 if has_gpu else 5), sharex=True)
    cpu, memory = panels[0], panels[1]
    cpu.plot(rows["t_s"], rows["system_cpu_percent"], ".", markersize=3, label="system CPU (%)")
    cpu.plot(rows["t_s"], rows["servers_cpu_cores"] * 100, ".", markersize=3, label="servers (cores × 100)")
    cpu.plot(rows["t_s"], rows["generator_cpu_cores"] * 100, ".", markersize=3, label="load generator (cores × 100)")
    cpu.set_ylabel("CPU")
    cpu.legend(fontsize=7)
    memory.plot(rows["t_s"], rows["servers_rss_mib"], ".", markersize=3, color="#c44e52")
    memory.set_ylabel("servers' RSS (MiB)")
    if has_gpu:
        gpu = panels[2]
        gpu.plot(rows["t_s"], rows["gpu_utilisation_percent"], ".", markersize=3, label="GPU utilisation (%)")
        gpu.plot(rows["t_s"], rows["gpu_memory_used_mib"] / 1024, ".", markersize=3, label="GPU memory (GiB)")
        gpu.legend(fontsize=7)
    panels[-1].set_xlabel("seconds since the first measurement window (measurement windows only)")
    cpu.set_title(f"{device}: utilisation in each measurement window")
    return _png(figure)


def unit_costs(unit_costs: pd.DataFrame) -> bytes | None:
    """(6) $/1M inferences of each measured option on each priced machine, CPU and GPU side by side."""
    if unit_costs.empty:
        return None
    rows = unit_costs.sort_values(["device", "usd_per_million"])
    labels = [f"{r.device} {r.placement} {r.models} · {r.provider} {r.instance}" + (f" [{r.label}]" if r.label else "")
              for r in rows.itertuples()]
    figure, axes = plt.subplots(figsize=(9, max(3, 0.28 * len(rows) + 1)))
    colours = ["#4c72b0" if d == "cpu" else "#55a868" for d in rows["device"]]
    axes.barh(range(len(rows)), rows["usd_per_million"], color=colours)
    axes.set_yticks(range(len(rows)), labels, fontsize=6)
    axes.invert_yaxis()
    axes.set_xlabel("USD per 1M inferences at the SLA-compliant throughput (blue: CPU, green: GPU)")
    return _png(figure)


BREAKDOWN_PARTS = (
    ("network_serialisation_ms", "network + (de)serialisation"),
    ("request_handling_ms", "request handling"),
    ("runtime_ms", "TensorFlow runtime"),
    ("batch_wait_ms", "batch wait"),
)


def latency_breakdown(breakdown: pd.DataFrame) -> bytes | None:
    """(7) Where each operating point's mean service time went, stacked."""
    if breakdown.empty or breakdown["client_mean_service_time_ms"].isna().all():
        return None
    rows = breakdown.copy()
    rows["runtime_ms"] = rows["runtime_latency_mean_ms"] - rows["batch_wait_ms"].fillna(0.0)
    labels = [f"{r.device} {r.placement}{' ' + r.variant if r.variant else ''}: {r.tenant}" + ("" if r.valid else " (INVALID)")
              for r in rows.itertuples()]
    figure, axes = plt.subplots(figsize=(9, max(3, 0.35 * len(rows) + 1)))
    left = [0.0] * len(rows)
    for column, name in BREAKDOWN_PARTS:
        values = rows[column].fillna(0.0).clip(lower=0.0).tolist()
        axes.barh(range(len(rows)), values, left=left, label=name)
        left = [a + b for a, b in zip(left, values)]
    axes.set_yticks(range(len(rows)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("mean time per request (ms): client service time split by the server's own metrics")
    axes.legend(fontsize=7)
    return _png(figure)
