"""An experiment's figures as tables, from its run directory (`run_data.RunData`).

    tables = experiment_tables(data, costing)     # {name: DataFrame}, schemas in analysis.tables
    tables["placements"]                          # SLA-compliant throughput per placement × device × model

Every table keeps INVALID results, marked (`valid` False, `invalid_reasons`), so that a report
can show them as such; only VALID, SLA-compliant figures enter capacities, savings and costs.
The definitions are docs/methodology.md's:

- **placements**: per device × placement × model, the SLA-compliant operating point: a
  dedicated model's peak probe; a shared placement's balanced mix at its peak (each tenant's
  share of it). Percentiles are of response time over the pooled windows; utilisation is the
  mean over those windows (system CPU %, CPU cores of the server processes and of the
  generator) and the maximum server RSS; GPU figures where measured.
- **serving_tax**: served ÷ raw throughput, each at its best concurrency of the sweep
  (inferences/s; raw is in-process TensorFlow at the same batch size).
- **mixes**: each shared operating point (balanced, and each PERSEUS pair), one row per
  tenant: its throughput, its dedicated peak and their ratio; the mix's normalised capacity
  (the sum of the ratios) and savings 1 − 1/capacity, only when every tenant is VALID.
- **interference**: each tenant of each shared operating point against the same model alone
  at the same offered rate (the `reference` step): p99 and throughput ratios.
- **runs**: every measured run (sweep levels, probes, reference rates, framework runs), per
  tenant: the curves of throughput against latency.
- **breakdown**: per operating point and tenant, the server-side latency breakdown averaged
  over the pooled windows, weighted by each window's requests.
- **resources**: every monitored window of the experiment, on one clock (seconds since the
  first window).
- **framework**: each CPU framework variant against the server's default settings.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from collections.abc import Sequence

import pandas as pd

from tfs_bench.analysis import cost
from tfs_bench.analysis import tables
from tfs_bench.analysis.demand import InstanceChoice
from tfs_bench.analysis.demand import select_rows
from tfs_bench.analysis.prices import PriceRow
from tfs_bench.analysis.run_data import MeasuredRun
from tfs_bench.analysis.run_data import RunData
from tfs_bench.analysis.run_data import StepId
from tfs_bench.analysis.run_data import parse_step_id
from tfs_bench.errors import AnalysisError
from tfs_bench.run.experiment import reference_rate

MIB = 1024 * 1024
SHARED = ("multi_model", "multi_process")
_PERCENTILES = (("p50_ms", "p50_ms"), ("p90_ms", "p90_ms"), ("p95_ms", "p95_ms"), ("p99_ms", "p99_ms"),
                ("p99_9_ms", "p99_9_ms"), ("mean_ms", "mean_ms"), ("max_ms", "max_ms"))


@dataclasses.dataclass(frozen=True)
class Costing:
    """What the cost tables are asked: the demand (inferences/s per model), the price table and
    the rows the measured machine stands for (none: every row of the device's kind)."""

    prices: tuple[PriceRow, ...]
    demand: Mapping[str, float] = dataclasses.field(default_factory=dict)
    instances: tuple[InstanceChoice, ...] = ()


# ----------------------------------------------------------------------------- helpers


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def _reasons(run: MeasuredRun | None, tenant: str | None = None) -> str:
    if run is None:
        return "not measured"
    verdict = run.result.verdict if tenant is None else run.result.tenants[tenant].verdict
    return ";".join(r.code for r in verdict.reasons)


def _latencies(run: MeasuredRun | None, tenant: str) -> dict[str, float]:
    if run is None:
        return {name: math.nan for name, _ in _PERCENTILES}
    summary = run.result.tenants[tenant].pooled.response_time
    return {name: _nan(getattr(summary, field)) for name, field in _PERCENTILES}


def _servers_sum(resources, field: str) -> float | None:
    """A window's figure summed over the server processes; None when any server lacks it."""
    values = [getattr(s, field) for s in resources.servers]
    return sum(values) if values and None not in values else None


def _servers_cores(resources) -> float | None:
    return _servers_sum(resources, "cpu_utilisation_cores")


def _servers_rss_mib(resources) -> float | None:
    total = _servers_sum(resources, "rss_max_bytes")
    return None if total is None else total / MIB


def _utilisation(run: MeasuredRun | None) -> dict[str, float]:
    """Means over the run's pooled windows (maxima for memory); NaN where not measured."""
    figures = {
        "system_cpu_percent": math.nan, "servers_cpu_cores": math.nan, "generator_cpu_cores": math.nan,
        "servers_rss_max_mib": math.nan, "gpu_utilisation_percent": math.nan, "gpu_memory_max_mib": math.nan,
        "gpu_power_w": math.nan,
    }
    windows = run.pooled_resources() if run is not None else []
    if not windows:
        return figures

    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else math.nan

    def biggest(values):
        values = [v for v in values if v is not None]
        return max(values) if values else math.nan

    resources = [w.resources for w in windows]
    figures["system_cpu_percent"] = mean(r.system_cpu_utilisation_percent for r in resources)
    figures["servers_cpu_cores"] = mean(_servers_cores(r) for r in resources)
    figures["generator_cpu_cores"] = mean(r.generator.cpu_utilisation_cores if r.generator else None for r in resources)
    figures["servers_rss_max_mib"] = biggest(_servers_rss_mib(r) for r in resources)
    gpus = [g for r in resources for g in r.gpus]
    figures["gpu_utilisation_percent"] = mean(g.utilisation_mean_percent for g in gpus)
    figures["gpu_memory_max_mib"] = biggest(g.memory_used_max_bytes / MIB if g.memory_used_max_bytes is not None else None for g in gpus)
    figures["gpu_power_w"] = mean(g.power_mean_w for g in gpus)
    return figures


def _meets_sla(data: RunData, run: MeasuredRun | None, tenant: str) -> bool:
    if run is None:
        return False
    latency = run.result.sla_latency_ms(tenant)
    return run.result.tenants[tenant].verdict.valid and latency is not None and latency <= data.sla_ms


def _tenant_row(data: RunData, run: MeasuredRun | None, tenant: str) -> dict:
    pooled = run.result.tenants[tenant].pooled if run is not None else None
    throughput = pooled.throughput_rps if pooled else None
    return {
        "offered_rate_rps": _nan(pooled.offered_rate_rps if pooled else None),
        "throughput_rps": _nan(throughput),
        "inferences_per_s": _nan(pooled.inferences / pooled.duration_s if pooled else None),
        "valid": run is not None and run.result.tenants[tenant].verdict.valid,
        "invalid_reasons": _reasons(run, tenant),
        "sla_latency_ms": _nan(run.result.sla_latency_ms(tenant) if run else None),
        "meets_sla": _meets_sla(data, run, tenant),
        **_latencies(run, tenant),
    }


def _frame(name: str, rows: Sequence[dict]) -> pd.DataFrame:
    return tables.rows_frame(name, rows)


# ----------------------------------------------------------------------------- tables


def placements(data: RunData) -> pd.DataFrame:
    taxes = {(r["device"], r["model"]): r["serving_tax"] for r in _serving_tax_rows(data)}
    rows = []
    for step in data.steps():
        if step.kind == "peak":
            tenants = [step.model]
        elif step.kind == "balanced":
            tenants = list(data.models)
        else:
            continue
        run = data.operating_point(step.id)
        record = data.step(step.id)
        for tenant in tenants:
            row = {"device": step.device, "placement": step.placement, "model": tenant, "step": step.id,
                   **_tenant_row(data, run, tenant), **_utilisation(run),
                   "serving_tax": taxes.get((step.device, tenant), math.nan) if step.kind == "peak" else math.nan}
            if run is None:
                row["invalid_reasons"] = f"step {record.status}: {record.error}" if record.error else "not measured"
            rows.append(row)
    return _frame("placements", rows)


def _serving_tax_rows(data: RunData) -> list[dict]:
    rows = []
    for step in data.steps("raw"):
        raw = data.done(step.id)
        closed = data.done(f"{step.device}/dedicated/{step.model}/closed")
        served = closed.get("best_throughput_rps") if closed else None
        raw_rate = raw["best_images_per_s"] if raw else None
        tax = served * data.batch_size / raw_rate if served and raw_rate else None
        rows.append({
            "device": step.device, "model": step.model,
            "served_inferences_per_s": _nan(served * data.batch_size if served else None),
            "served_concurrency": int(closed["best_concurrency"]) if closed and closed.get("best_concurrency") else 0,
            "raw_inferences_per_s": _nan(raw_rate),
            "raw_concurrency": int(raw["best_concurrency"]) if raw else 0,
            "serving_tax": _nan(tax),
        })
    return rows


def serving_tax(data: RunData) -> pd.DataFrame:
    return _frame("serving_tax", _serving_tax_rows(data))


def dedicated_peaks(data: RunData, device: str) -> dict[str, float]:
    """VALID, SLA-compliant dedicated peak throughput (inferences/s) per model on the device."""
    peaks = {}
    for step in data.steps("peak", device):
        run = data.operating_point(step.id)
        if run is not None and _meets_sla(data, run, step.model):
            pooled = run.result.tenants[step.model].pooled
            peaks[step.model] = pooled.inferences / pooled.duration_s
    return peaks


def _shared_points(data: RunData) -> list[tuple[StepId, MeasuredRun | None]]:
    return [(s, data.operating_point(s.id)) for s in data.steps() if s.kind in ("perseus", "balanced")]


def mixes(data: RunData) -> pd.DataFrame:
    rows = []
    for step, run in _shared_points(data):
        peaks = dedicated_peaks(data, step.device)
        tenants = list(run.result.tenants) if run is not None else list(data.models)
        throughputs = {}
        for tenant in tenants:
            if run is not None:
                pooled = run.result.tenants[tenant].pooled
                throughputs[tenant] = pooled.inferences / pooled.duration_s
        valid = run is not None and all(_meets_sla(data, run, t) for t in tenants)
        capacity = None
        if valid and all(t in peaks for t in tenants):
            capacity = cost.normalised_capacity(throughputs, {t: peaks[t] for t in tenants})
        for tenant in tenants:
            rows.append({
                "device": step.device, "placement": step.placement, "mix": step.mix, "step": step.id,
                "tenant": tenant, "searched": step.kind == "balanced" or tenant == step.model,
                "offered_rate_rps": _nan(run.result.tenants[tenant].pooled.offered_rate_rps if run else None),
                "inferences_per_s": _nan(throughputs.get(tenant)),
                "dedicated_peak_inferences_per_s": _nan(peaks.get(tenant)),
                "share_of_dedicated_peak": _nan(throughputs[tenant] / peaks[tenant] if tenant in throughputs and peaks.get(tenant) else None),
                "valid": valid, "invalid_reasons": _reasons(run) if run is not None else "not measured",
                "sla_latency_ms": _nan(run.result.sla_latency_ms(tenant) if run else None),
                "normalised_capacity": _nan(capacity),
                "savings_fraction": _nan(cost.sharing_savings(capacity) if capacity else None),
            })
    return _frame("mixes", rows)


def interference(data: RunData) -> pd.DataFrame:
    alone: dict[tuple[str, str, float], MeasuredRun] = {}
    for step in data.steps("reference"):
        for run in data.runs(step.id):
            alone[(step.device, step.model, reference_rate(run.rate_rps))] = run
    rows = []
    for step, run in _shared_points(data):
        if run is None:
            continue
        for tenant, result in run.result.tenants.items():
            rate = reference_rate(result.pooled.offered_rate_rps)
            reference = alone.get((step.device, tenant, rate))
            row = {"device": step.device, "placement": step.placement, "mix": step.mix, "tenant": tenant,
                   "offered_rate_rps": _nan(rate),
                   "dedicated_p99_ms": math.nan, "colocated_p99_ms": _nan(result.pooled.response_time.p99_ms),
                   "p99_ratio": math.nan, "dedicated_inferences_per_s": math.nan,
                   "colocated_inferences_per_s": result.pooled.inferences / result.pooled.duration_s,
                   "throughput_ratio": math.nan, "colocated_valid": result.verdict.valid,
                   "dedicated_valid": False, "invalid_reasons": _reasons(run, tenant)}
            if reference is not None:
                ref = reference.result.tenants[tenant]
                colocated, dedicated = (
                    cost.TenantPoint(tenant, rate, pooled.inferences / pooled.duration_s, pooled.response_time.p99_ms or 0.0)
                    for pooled in (result.pooled, ref.pooled)
                )
                try:
                    figures = cost.interference(colocated, dedicated)
                except AnalysisError as e:
                    row["invalid_reasons"] = ";".join(filter(None, (row["invalid_reasons"], str(e))))
                else:
                    row.update(dedicated_p99_ms=figures.dedicated_p99_ms, p99_ratio=figures.p99_ratio,
                               dedicated_inferences_per_s=figures.dedicated_throughput_inferences_per_s,
                               throughput_ratio=figures.throughput_ratio)
                row["dedicated_valid"] = ref.verdict.valid
                reasons = _reasons(reference, tenant)
                if reasons:
                    row["invalid_reasons"] = ";".join(filter(None, (row["invalid_reasons"], f"alone: {reasons}")))
            else:
                row["invalid_reasons"] = ";".join(filter(None, (row["invalid_reasons"], "no run alone at this rate")))
            rows.append(row)
    return _frame("interference", rows)


def runs(data: RunData) -> pd.DataFrame:
    rows = []
    for step in data.steps():
        for run in data.runs(step.id):
            for tenant in run.result.tenants:
                rows.append({"device": step.device, "placement": step.placement or "", "kind": step.kind,
                             "step": step.id, "label": run.label, "tenant": tenant,
                             "concurrency": run.concurrency or 0, **_tenant_row(data, run, tenant)})
    return _frame("runs", rows)


def _breakdown_means(run: MeasuredRun, tenant: str) -> dict[str, float]:
    fields = ("client_mean_service_time_us", "request_latency_mean_us", "runtime_latency_mean_us",
              "network_serialisation_us", "request_handling_us", "batch_wait_us")
    totals = dict.fromkeys(fields, 0.0)
    counts = dict.fromkeys(fields, 0)
    for window in run.pooled_resources():
        measured = window.breakdown.get(tenant)
        if measured is None or measured.breakdown is None or measured.status != "ok":
            continue
        b = measured.breakdown
        for field in fields:
            value = getattr(b, field)
            if value is not None:
                totals[field] += value * b.requests
                counts[field] += b.requests
    return {f.replace("_us", "_ms"): (totals[f] / counts[f] / 1000 if counts[f] else math.nan) for f in fields}


def breakdown(data: RunData) -> pd.DataFrame:
    rows = []
    for step in data.steps():
        if step.kind not in ("peak", "balanced", "framework"):
            continue
        run = data.operating_point(step.id)
        if run is None:
            continue
        for tenant in run.result.tenants:
            rows.append({"device": step.device, "placement": step.placement, "step": step.id,
                         "variant": step.variant or "", "tenant": tenant, "valid": run.valid,
                         **_breakdown_means(run, tenant)})
    return _frame("breakdown", rows)


def resources(data: RunData) -> pd.DataFrame:
    rows = []
    for step in data.steps():
        for run in data.runs(step.id):
            for window in run.resources():
                r = window.resources
                gpus = r.gpus
                rows.append({
                    "device": step.device, "placement": step.placement or "", "step": step.id, "label": run.label,
                    "start_ns": window.start_ns, "duration_s": (window.end_ns - window.start_ns) / 1e9,
                    "system_cpu_percent": _nan(r.system_cpu_utilisation_percent),
                    "servers_cpu_cores": _nan(_servers_cores(r)),
                    "generator_cpu_cores": _nan(r.generator.cpu_utilisation_cores if r.generator else None),
                    "servers_rss_mib": _nan(_servers_rss_mib(r)),
                    "gpu_utilisation_percent": _nan(gpus[0].utilisation_mean_percent if gpus else None),
                    "gpu_memory_used_mib": _nan(gpus[0].memory_used_max_bytes / MIB if gpus and gpus[0].memory_used_max_bytes is not None else None),
                    "gpu_power_w": _nan(gpus[0].power_mean_w if gpus else None),
                })
    rows.sort(key=lambda row: row["start_ns"])
    first = rows[0]["start_ns"] if rows else 0
    for row in rows:
        row["t_s"] = (row.pop("start_ns") - first) / 1e9
    return _frame("resources", rows)


def framework(data: RunData) -> pd.DataFrame:
    rows = []
    steps = data.steps("framework")
    default = next((data.done(s.id) for s in steps if s.variant == "server-default"), None)
    for step in steps:
        result = data.done(step.id)
        record = data.step(step.id)
        base = default["throughput_rps"] if default and default["valid"] else None
        rows.append({
            "device": step.device, "model": step.model, "variant": step.variant,
            "concurrency": int(result["concurrency"]) if result else 0,
            "throughput_rps": _nan(result["throughput_rps"] if result else None),
            "p99_ms": _nan(result["p99_ms"] if result else None),
            "sla_latency_ms": _nan(result["sla_latency_ms"] if result else None),
            "valid": bool(result and result["valid"]),
            "invalid_reasons": ";".join(result["invalid_reasons"]) if result else f"step {record.status}: {record.error}",
            "change_vs_default": _nan(result["throughput_rps"] / base - 1 if result and base and result["valid"] else None),
        })
    return _frame("framework", rows)


# ----------------------------------------------------------------------------- cost


def priced_rows(data: RunData, device: str, costing: Costing) -> tuple[PriceRow, ...]:
    """The price-table rows a device of this run stands for: those chosen, or every row of its kind
    (CPU: rows without a GPU; GPU: rows with the GPU model NVML named, else every GPU row)."""
    if costing.instances:
        rows = select_rows(costing.prices, costing.instances)
        return tuple(r for r in rows if r.device == device)
    if device == "cpu":
        return tuple(r for r in costing.prices if r.device == "cpu")
    names = " ".join(data.manifest.gpu.get("names", [])).lower()
    same = tuple(r for r in costing.prices if r.device == "gpu" and r.gpu_model.lower() in names)
    return same or tuple(r for r in costing.prices if r.device == "gpu")


def cost_options(data: RunData, costing: Costing, name_run: bool = False) -> list[cost.CostOption]:
    """Every VALID measured way to serve the models, on every priced row its device stands for
    (labelled by its mix, and by its run where several are compared)."""
    options = []
    mix_table = mixes(data)
    for device in data.manifest.devices:
        capacities = []
        peaks = dedicated_peaks(data, device)
        if peaks:
            capacities.append(("dedicated", "each model alone at its peak", peaks))
        valid = mix_table[(mix_table["device"] == device) & mix_table["valid"]]
        for (placement, mix), group in valid.groupby(["placement", "mix"], sort=False):
            capacities.append((placement, mix, dict(zip(group["tenant"], group["inferences_per_s"]))))
        for row in priced_rows(data, device, costing):
            for placement, label, capacity in capacities:
                label = f"{data.name} {label}".strip() if name_run else label
                options.append(cost.CostOption(placement, device, row, capacity, label=label))
    return options


def cost_tables(runs: Sequence[RunData], costing: Costing) -> dict[str, pd.DataFrame]:
    """unit_costs (each option's $/1M at capacity) and, for a demand, costs and skipped, over every
    run given (options of different runs are compared side by side, never pooled)."""
    options = [o for data in runs for o in cost_options(data, costing, name_run=len(runs) > 1)]
    units = [u for o in options for u in cost.unit_costs(o)]
    frames = {"unit_costs": tables.unit_costs_frame(units)}
    if costing.demand and any(costing.demand.values()):
        ranking = cost.cheapest(costing.demand, options)
        frames["costs"] = tables.costs_frame(ranking.ranked)
        frames["skipped"] = tables.skipped_frame(ranking.skipped)
    return frames


def cheapest_machines(unit_costs: pd.DataFrame) -> pd.DataFrame:
    """Each option (placement, mix and models of a device) on its cheapest priced machine, cheapest first."""
    if unit_costs.empty:
        return unit_costs
    keys = ["device", "placement", "label", "models"]
    best = unit_costs.loc[unit_costs.groupby(keys, sort=False)["usd_per_million"].idxmin()]
    return best.sort_values(["device", "usd_per_million"]).reset_index(drop=True)


def experiment_tables(data: RunData) -> dict[str, pd.DataFrame]:
    """Every measurement table of one run (cost tables come from cost_tables)."""
    return {
        "placements": placements(data),
        "serving_tax": serving_tax(data),
        "mixes": mixes(data),
        "interference": interference(data),
        "runs": runs(data),
        "breakdown": breakdown(data),
        "resources": resources(data),
        "framework": framework(data),
    }


__all__ = ["Costing", "experiment_tables", "cost_tables", "cost_options", "dedicated_peaks", "parse_step_id"]
