"""The report's content: headline and nine sections, as document blocks, from the analysis tables.

    blocks = build_report([RunReport(data, tables)], cost_frames, costing)

Sections: (1) throughput dedicated vs shared; (2) shared operating points against the dedicated
baseline; (3) latency CDFs; (4) throughput vs p99; (5) utilisation and memory over time;
(6) $/1M inferences, CPU vs GPU, and the cheapest fleet for the demand; (7) server-side latency
breakdown; (8) interference; (9) framework-inefficiency findings. With several runs, each
run's measurements get their own subsections (runs are never pooled) and the cost section
compares them side by side. A section with nothing measured says so, and the GPU parts of a run
without a GPU say "no GPU found" and how to produce them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from collections.abc import Sequence

import pandas as pd

from tfs_bench.analysis.results import Costing
from tfs_bench.analysis.results import cheapest_machines
from tfs_bench.analysis.run_data import RunData
from tfs_bench.report import plots
from tfs_bench.report.document import Block
from tfs_bench.report.document import Bullets
from tfs_bench.report.document import Heading
from tfs_bench.report.document import Image
from tfs_bench.report.document import Paragraph
from tfs_bench.report.document import Table

SECTION_TITLES = (
    "1. Throughput: dedicated vs shared",
    "2. Shared operating points against the dedicated baseline",
    "3. Latency distributions",
    "4. Throughput vs p99 latency",
    "5. Utilisation and memory over time",
    "6. Cost: $/1M inferences, CPU vs GPU, cheapest fleet",
    "7. Server-side latency breakdown",
    "8. Interference",
    "9. Framework inefficiency",
)
NO_GPU = (
    "no GPU found: {note}. To produce the GPU figures, run the same flagfile on a machine whose GPU both "
    "TensorFlow's GPU build and the NVIDIA driver (NVML) see (--devices=auto or --devices=gpu), then give both "
    "run directories to tfs_bench.report."
)


@dataclasses.dataclass(frozen=True)
class RunReport:
    data: RunData
    tables: Mapping[str, pd.DataFrame]
    latency_samples: Mapping[str, Mapping[str, Sequence[float]]]  # model -> operating point -> response times (ms)
    latency_valid: Mapping[tuple[str, str], bool]


# ----------------------------------------------------------------------------- formatting


def num(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def pct(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value * 100:+.{digits}f}%"


def verdict(valid: bool, reasons: str = "") -> str:
    return "VALID" if valid else f"INVALID ({reasons.replace(';', ', ')})" if reasons else "INVALID"


def _table(frame: pd.DataFrame, columns: Sequence[tuple[str, str, object]], invalid_column: str | None = "valid") -> Table:
    """A document table: (header, column, formatter) per column; rows INVALID where invalid_column is False."""
    rows, invalid = [], []
    for _, row in frame.iterrows():
        rows.append(tuple(fmt(row[col]) if callable(fmt) else str(row[col]) for _, col, fmt in columns))
        invalid.append(bool(invalid_column) and not bool(row[invalid_column]))
    return Table(tuple(h for h, _, _ in columns), tuple(rows), tuple(invalid) if invalid_column else ())


def _ok(row) -> str:
    return verdict(bool(row["valid"]), row["invalid_reasons"])


def _with_verdict(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["verdict"] = [verdict(bool(v), r) for v, r in zip(frame["valid"], frame["invalid_reasons"])]
    return frame


def _image(name: str, png: bytes | None, alt: str, missing: str) -> list[Block]:
    return [Image(name, png, alt)] if png is not None else [Paragraph(missing, note=True)]


# ----------------------------------------------------------------------------- headline


def headline(reports: Sequence[RunReport], cost_frames: Mapping[str, pd.DataFrame], costing: Costing) -> list[str]:
    """The answers in a few sentences: which placement won, the savings, the serving tax, the cheapest hardware."""
    lines = []
    for report in reports:
        prefix = f"{report.data.name}: " if len(reports) > 1 else ""
        mixes = report.tables["mixes"]
        balanced = mixes[mixes["mix"] == "balanced"].drop_duplicates(["device", "placement"])
        for device in report.data.manifest.devices:
            here = balanced[balanced["device"] == device]
            measured = here[here["valid"] & here["normalised_capacity"].notna()]
            if measured.empty:
                lines.append(f"{prefix}on {device}, no shared placement's balanced mix was VALID under the SLA; dedicated serving stands.")
                continue
            best = measured.sort_values("normalised_capacity", ascending=False).iloc[0]
            others = "; ".join(
                f"{r.placement} {r.normalised_capacity:.2f}× ({pct(r.savings_fraction)})" for r in measured.itertuples()
                if r.placement != best["placement"]
            )
            winner = best["placement"] if best["normalised_capacity"] > 1 else "dedicated"
            lines.append(
                f"{prefix}on {device}, {winner} wins: the balanced mix on {best['placement']} serves "
                f"{best['normalised_capacity']:.2f}× the dedicated baseline, so sharing "
                f"{'saves' if best['savings_fraction'] >= 0 else 'costs'} {abs(best['savings_fraction']) * 100:.1f}% of the hardware"
                + (f" (other placements: {others})" if others else "") + "."
            )
        tax = report.tables["serving_tax"]
        if not tax.empty:
            lines.append(prefix + "serving tax (served ÷ raw in-process TensorFlow throughput): " + ", ".join(
                f"{r.model} on {r.device} {num(r.serving_tax, 2)}" for r in tax.itertuples()) + ".")
    costs = cost_frames.get("costs")
    if costs is not None and not costs.empty:
        best = costs.iloc[0]
        demand = " + ".join(f"{m} {v:g}/s" for m, v in costing.demand.items() if v)
        line = (f"cheapest for the demand {demand}: {best['placement']}" + (f" ({best['label']})" if best["label"] else "")
                + f" on {best['device']} of {best['provider']} {best['instance']}: {best['machines']} machine(s), "
                f"${best['usd_per_hour']:.4g}/h, ${best['usd_per_million']:.4g} per 1M inferences")
        dedicated = costs[(costs["placement"] == "dedicated") & (costs["instance"] == best["instance"])
                          & (costs["provider"] == best["provider"]) & (costs["device"] == best["device"])]
        if best["placement"] != "dedicated" and not dedicated.empty:
            d = dedicated.iloc[0]
            line += (f"; dedicated on the same machine type needs {d['machines']} (${d['usd_per_hour']:.4g}/h): sharing saves "
                     f"{(1 - best['usd_per_hour'] / d['usd_per_hour']) * 100:.1f}%")
        lines.append(line + ".")
    elif costing.demand:
        lines.append("no measured option serves the demand (see section 6).")
    else:
        lines.append("no demand was given (--demand=MODEL=RATE,...), so no fleet is ranked; section 6 has $/1M per option.")
    return lines


# ----------------------------------------------------------------------------- sections


def _run_heading(report: RunReport, several: bool) -> list[Block]:
    return [Heading(3, f"run {report.data.name}")] if several else []


def _no_gpu(*notes: str) -> str:
    """NO_GPU with each run's reason once (a manifest's note reads "no GPU found: <why>; GPU sections are ...")."""
    reasons = []
    for note in notes:
        reason = note.split(";")[0].strip().removeprefix("no GPU found: ")
        if reason and reason not in reasons:
            reasons.append(reason)
    return NO_GPU.format(note="; ".join(reasons) or "the run measured no GPU")


def _gpu_note(report: RunReport) -> list[Block]:
    if "gpu" in report.data.manifest.devices:
        return []
    return [Paragraph("GPU: " + _no_gpu(report.data.manifest.gpu_note), note=True)]


def section_throughput(report: RunReport) -> list[Block]:
    blocks: list[Block] = []
    placements = report.tables["placements"]
    for device in report.data.manifest.devices:
        blocks += _image(f"{report.data.name}-throughput-{device}.png",
                         plots.throughput_by_placement(placements, device),
                         f"{device}: SLA-compliant throughput per model, dedicated and shared", f"{device}: nothing measured.")
    frame = _with_verdict(placements)
    blocks.append(_table(frame, (
        ("device", "device", str), ("placement", "placement", str), ("model", "model", str),
        ("offered (rps)", "offered_rate_rps", num), ("throughput (inferences/s)", "inferences_per_s", num),
        (f"p{report.data.sla_percentile:g} (ms)", "sla_latency_ms", num), ("p50 (ms)", "p50_ms", num),
        ("p99 (ms)", "p99_ms", num), ("p99.9 (ms)", "p99_9_ms", num), ("serving tax", "serving_tax", lambda v: num(v, 2)),
        ("verdict", "verdict", str),
    )))
    return blocks + _gpu_note(report)


def section_operating_points(report: RunReport) -> list[Block]:
    mixes = report.tables["mixes"]
    if mixes.empty:
        return [Paragraph("No shared placement was measured (--placements has no multi_model or multi_process).", note=True)]
    blocks: list[Block] = []
    models = list(dict.fromkeys(mixes["tenant"]))
    for device in report.data.manifest.devices:
        for pair in itertools.combinations(models, 2):
            blocks += _image(f"{report.data.name}-operating-points-{device}-{pair[0]}-{pair[1]}.png",
                             plots.operating_points(mixes, device, pair),
                             f"{device}: shared operating points of {pair[0]} and {pair[1]} against the dedicated baseline",
                             f"{device}: no dedicated baseline for {pair[0]} and {pair[1]}.")
    frame = _with_verdict(mixes)
    blocks.append(_table(frame, (
        ("device", "device", str), ("placement", "placement", str), ("mix", "mix", str), ("tenant", "tenant", str),
        ("throughput (inferences/s)", "inferences_per_s", num), ("dedicated peak", "dedicated_peak_inferences_per_s", num),
        ("share of its peak", "share_of_dedicated_peak", lambda v: num(v, 2)),
        ("normalised capacity", "normalised_capacity", lambda v: num(v, 2)), ("savings", "savings_fraction", pct),
        ("verdict", "verdict", str),
    )))
    blocks.append(Paragraph("Normalised capacity = Σ tenant throughput ÷ its dedicated peak; savings = 1 − 1/capacity "
                            "(negative: sharing serves less than dedicated machines would). Only mixes with every "
                            "tenant VALID and within the SLA have a capacity."))
    blocks += [Paragraph(line, note=True) for line in _idle_cores(report)]
    return blocks


def _idle_cores(report: RunReport) -> list[str]:
    """Why sharing can beat dedicated servers by more than chance: a dedicated server at its peak
    that used well under the machine's cores was limited by something else, and a second
    process puts the idle cores to work."""
    cores = report.data.manifest.host.get("logical_cpus")
    placements = report.tables["placements"]
    dedicated = placements[(placements["placement"] == "dedicated") & placements["valid"]]
    lines = []
    for device in report.data.manifest.devices:
        used = dedicated[dedicated["device"] == device]["servers_cpu_cores"].dropna()
        if not cores or used.empty or used.max() > 0.75 * cores:
            continue
        lines.append(
            f"On {device}, each dedicated server used at most {used.max():.2f} of the machine's {cores} cores at its "
            "peak: it was limited by something other than the CPU (a serving front end that runs on one core, "
            "a lock, the network), so a shared placement that runs more processes can serve more than the "
            "dedicated baseline. Normalised capacity is against the dedicated server as measured, not against "
            "the hardware's limit.")
    return lines


def section_latency(report: RunReport) -> list[Block]:
    return _image(f"{report.data.name}-latency-cdf.png",
                  plots.latency_cdfs(report.latency_samples, report.latency_valid, report.data.sla_ms),
                  "response-time CDFs at each operating point", "No operating point has latency samples.") + [
        Paragraph("Response time = completion − scheduled send time (no coordinated omission), over the pooled "
                  "windows of each operating point: the dedicated peak and each shared placement's balanced mix.")]


def section_throughput_vs_p99(report: RunReport) -> list[Block]:
    blocks: list[Block] = []
    for device in report.data.manifest.devices:
        blocks += _image(f"{report.data.name}-throughput-p99-{device}.png",
                         plots.throughput_vs_p99(report.tables["runs"], device, report.data.sla_ms),
                         f"{device}: throughput against p99 of every dedicated run", f"{device}: no dedicated run.")
    runs = report.tables["runs"]
    invalid = runs[~runs["valid"]]
    blocks.append(Paragraph(f"{len(runs)} measured run(s) per tenant in all, {len(invalid)} INVALID "
                            "(hollow markers; the search keeps them as its failing probes)."))
    return blocks


def section_utilisation(report: RunReport) -> list[Block]:
    blocks: list[Block] = []
    for device in report.data.manifest.devices:
        blocks += _image(f"{report.data.name}-utilisation-{device}.png",
                         plots.utilisation_over_time(report.tables["resources"], device),
                         f"{device}: CPU, memory and GPU in each measurement window", f"{device}: no resources were monitored.")
    frame = _with_verdict(report.tables["placements"])
    blocks.append(_table(frame, (
        ("device", "device", str), ("placement", "placement", str), ("model", "model", str),
        ("system CPU (%)", "system_cpu_percent", num), ("servers (cores)", "servers_cpu_cores", lambda v: num(v, 2)),
        ("generator (cores)", "generator_cpu_cores", lambda v: num(v, 2)),
        ("servers' RSS max (MiB)", "servers_rss_max_mib", num), ("GPU util (%)", "gpu_utilisation_percent", num),
        ("GPU memory max (MiB)", "gpu_memory_max_mib", num), ("GPU power (W)", "gpu_power_w", num), ("verdict", "verdict", str),
    )))
    return blocks + _gpu_note(report)


def section_cost(reports: Sequence[RunReport], cost_frames: Mapping[str, pd.DataFrame], costing: Costing) -> list[Block]:
    blocks: list[Block] = []
    units = cost_frames["unit_costs"]
    hosts = "; ".join(
        f"{r.data.name}: {r.data.manifest.host.get('logical_cpus')} logical CPUs ({r.data.manifest.host.get('cpu_model')})"
        + (f", GPU {', '.join(r.data.manifest.gpu.get('names', []))}" if "gpu" in r.data.manifest.devices else "")
        for r in reports
    )
    blocks.append(Paragraph(
        "Each priced machine is assumed to serve what the measured one served (" + hosts + "). A figure is true of "
        "a machine type only when the run was measured on that type: choose the rows with --instances, or measure "
        "on the instance itself.", note=True))
    cheapest = cheapest_machines(units)
    blocks += _image("cost-per-million.png", plots.unit_costs(cheapest), "USD per 1M inferences per option",
                     "No VALID, SLA-compliant throughput to price.")
    if not units.empty:
        blocks.append(Paragraph(
            f"Each option on its cheapest priced machine; tables/unit_costs.csv holds all {len(units)} "
            "(every option on every machine its device stands for)."))
    blocks.append(_table(cheapest, (
        ("device", "device", str), ("placement", "placement", str), ("mix", "label", str), ("models", "models", str),
        ("provider", "provider", str), ("instance", "instance", str), ("throughput (inferences/s)", "throughput_inferences_per_s", num),
        ("$/h", "machine_usd_per_hour", lambda v: num(v, 4)), ("$/1M inferences", "usd_per_million", lambda v: num(v, 4)),
        ("price observed", "price_observed", str),
    ), invalid_column=None))
    devices = {d for r in reports for d in r.data.manifest.devices}
    if "gpu" not in devices:
        blocks.append(Paragraph("CPU vs GPU: " + _no_gpu(*(r.data.manifest.gpu_note for r in reports)), note=True))
    if len(reports) > 1:
        keys = {r.data.manifest.comparable_key() for r in reports}
        blocks.append(Paragraph(
            f"{len(reports)} runs compared side by side (each option is labelled by its run); their measurements are "
            + ("never pooled, and these runs differ in hardware or model hashes." if len(keys) > 1 else "never pooled.")))
    costs = cost_frames.get("costs")
    if costs is None:
        blocks.append(Paragraph("No demand given: pass --demand=MODEL=RATE,... to rank fleets.", note=True))
        return blocks
    demand = ", ".join(f"{m} {v:g}/s" for m, v in costing.demand.items())
    blocks.append(Paragraph(f"Fleets for the demand {demand}, cheapest first (dedicated: Σ ⌈demand ÷ peak⌉ per model; "
                            "shared: every machine at the measured mix, max ⌈demand ÷ capacity⌉)."))
    blocks.append(_table(costs.head(20), (
        ("rank", "rank", str), ("placement", "placement", str), ("mix", "label", str), ("device", "device", str),
        ("provider", "provider", str), ("instance", "instance", str), ("machines", "machines", str),
        ("per model", "machines_by_model", str), ("$/h", "usd_per_hour", lambda v: num(v, 4)),
        ("$/1M inferences", "usd_per_million", lambda v: num(v, 4)),
    ), invalid_column=None))
    if len(costs) > 20:
        blocks.append(Paragraph(f"{len(costs) - 20} more option(s) in tables/costs.csv."))
    skipped = cost_frames.get("skipped")
    if skipped is not None and not skipped.empty:
        blocks.append(Bullets(tuple(f"skipped {r.placement} {r.label} on {r.device} of {r.provider} {r.instance}: {r.reason}"
                                    for r in skipped.drop_duplicates(["placement", "label", "device", "reason"]).itertuples())))
    return blocks


def section_breakdown(report: RunReport) -> list[Block]:
    frame = report.tables["breakdown"]
    blocks = _image(f"{report.data.name}-breakdown.png", plots.latency_breakdown(frame),
                    "server-side latency breakdown per operating point", "No server metrics were scraped.")
    blocks.append(_table(frame, (
        ("device", "device", str), ("placement", "placement", str), ("variant", "variant", str), ("tenant", "tenant", str),
        ("client service (ms)", "client_mean_service_time_ms", lambda v: num(v, 2)),
        ("network + serialisation (ms)", "network_serialisation_ms", lambda v: num(v, 2)),
        ("request handling (ms)", "request_handling_ms", lambda v: num(v, 2)),
        ("runtime (ms)", "runtime_latency_mean_ms", lambda v: num(v, 2)), ("batch wait (ms)", "batch_wait_ms", lambda v: num(v, 2)),
        ("verdict", "valid", lambda v: verdict(bool(v))),
    )))
    blocks.append(Paragraph("Means over the pooled windows, weighted by requests: client service time − the server's "
                            "request_latency = network + (de)serialisation; request_latency − runtime_latency = request "
                            "handling; batch wait (batching queuing latency) is inside the runtime."))
    return blocks


def section_interference(report: RunReport) -> list[Block]:
    frame = report.tables["interference"]
    if frame.empty:
        return [Paragraph("No shared operating point was measured, so there is no interference to show.", note=True)]
    frame = frame.copy()
    frame["valid"] = frame["colocated_valid"] & frame["dedicated_valid"]
    frame["verdict"] = [verdict(bool(v), r) for v, r in zip(frame["valid"], frame["invalid_reasons"])]
    return [_table(frame, (
        ("device", "device", str), ("placement", "placement", str), ("mix", "mix", str), ("tenant", "tenant", str),
        ("offered (rps)", "offered_rate_rps", num), ("p99 alone (ms)", "dedicated_p99_ms", lambda v: num(v, 2)),
        ("p99 co-located (ms)", "colocated_p99_ms", lambda v: num(v, 2)), ("p99 ratio", "p99_ratio", lambda v: num(v, 2)),
        ("throughput alone", "dedicated_inferences_per_s", num), ("throughput co-located", "colocated_inferences_per_s", num),
        ("throughput ratio", "throughput_ratio", lambda v: num(v, 3)), ("verdict", "verdict", str),
    )), Paragraph("Each tenant of each shared operating point against the same model alone in a dedicated server at the "
                  "same offered rate (measured after the shared placements). A p99 ratio above 1 is the slowdown "
                  "co-location costs that tenant.")]


def framework_findings(report: RunReport) -> list[str]:
    findings = []
    tax = report.tables["serving_tax"]
    for r in tax.itertuples():
        if math.isnan(r.serving_tax):
            continue
        findings.append(
            f"{r.model} on {r.device}: served at {r.serving_tax:.2f} of raw in-process TensorFlow throughput "
            f"({num(r.served_inferences_per_s)} vs {num(r.raw_inferences_per_s)} inferences/s, best concurrency "
            f"{r.served_concurrency} vs {r.raw_concurrency}): {max(0.0, 1 - r.serving_tax) * 100:.0f}% of the model's "
            "capacity is lost to the serving path.")
    framework = report.tables["framework"]
    default = framework[framework["variant"] == "server-default"]
    if not default.empty:
        base = default.iloc[0]
        for r in framework[framework["variant"] != "server-default"].itertuples():
            if not r.valid:
                findings.append(f"{r.model} {r.variant}: INVALID ({r.invalid_reasons.replace(';', ', ')}); no figure.")
                continue
            findings.append(
                f"{r.model} {r.variant}: {num(r.throughput_rps)} rps at concurrency {r.concurrency}, {pct(r.change_vs_default)} "
                f"against the server's default settings ({num(base['throughput_rps'])} rps), p99 {num(r.p99_ms, 2)} ms "
                f"(default {num(base['p99_ms'], 2)} ms).")
    breakdown = report.tables["breakdown"]
    for r in breakdown[breakdown["placement"] == "dedicated"].itertuples():
        if r.variant or math.isnan(r.client_mean_service_time_ms) or not r.client_mean_service_time_ms:
            continue
        share = r.network_serialisation_ms / r.client_mean_service_time_ms
        findings.append(
            f"{r.tenant} at its dedicated peak on {r.device}: of {num(r.client_mean_service_time_ms, 2)} ms mean service time, "
            f"{num(r.network_serialisation_ms, 2)} ms ({share * 100:.0f}%) is network + (de)serialisation and "
            f"{num(r.request_handling_ms, 2)} ms request handling outside the TensorFlow runtime ({num(r.runtime_latency_mean_ms, 2)} ms).")
    return findings


def section_framework(report: RunReport) -> list[Block]:
    findings = framework_findings(report)
    blocks: list[Block] = [Bullets(tuple(findings))] if findings else [
        Paragraph("No framework sweep or raw measurement in this run (--framework_model, --raw).", note=True)]
    framework = report.tables["framework"]
    if not framework.empty:
        blocks.append(_table(_with_verdict(framework), (
            ("device", "device", str), ("model", "model", str), ("variant", "variant", str),
            ("concurrency", "concurrency", str), ("throughput (rps)", "throughput_rps", num), ("p99 (ms)", "p99_ms", lambda v: num(v, 2)),
            ("vs default", "change_vs_default", pct), ("verdict", "verdict", str),
        )))
    tax = report.tables["serving_tax"]
    if not tax.empty:
        blocks.append(_table(tax, (
            ("device", "device", str), ("model", "model", str), ("served (inferences/s)", "served_inferences_per_s", num),
            ("at concurrency", "served_concurrency", str), ("raw (inferences/s)", "raw_inferences_per_s", num),
            ("at concurrency", "raw_concurrency", str), ("serving tax", "serving_tax", lambda v: num(v, 2)),
        ), invalid_column=None))
    return blocks


def _facts(report: RunReport) -> list[str]:
    m = report.data.manifest
    host = m.host
    runs = report.tables["runs"]
    return [
        f"run {report.data.name}: {m.name}, started {m.started_at}, finished {m.finished_at or 'not finished'}"
        + (f", resumed {len(m.resumed_at)}×" if m.resumed_at else ""),
        f"host: {host.get('logical_cpus')} logical CPUs, {host.get('cpu_model')}; TensorFlow {m.tensorflow.get('version')}; "
        f"devices measured: {', '.join(m.devices)}; comparable key {m.comparable_key()}",
        f"SLA: p{report.data.sla_percentile:g} ≤ {report.data.sla_ms:g} ms; batch size {report.data.batch_size}; "
        f"generator priority {m.co_location.get('generator_priority_got')}, servers at nice {m.co_location.get('server_nice')}",
        f"steps: {sum(1 for r in report.data.records.values() if r.status == 'done')} done, "
        f"{sum(1 for r in report.data.records.values() if r.status != 'done')} failed or skipped, "
        f"{sum(1 for u in report.data.unfinished() if not u.moved_aside)} stopped part way; "
        f"runs: {int(runs['valid'].sum())} VALID, {int((~runs['valid']).sum())} INVALID (marked INVALID wherever shown)",
    ]


def build_report(reports: Sequence[RunReport], cost_frames: Mapping[str, pd.DataFrame], costing: Costing) -> list[Block]:
    several = len(reports) > 1
    blocks: list[Block] = [Heading(1, "tfs_bench report"), Heading(2, "Headline"), Bullets(tuple(headline(reports, cost_frames, costing)))]
    for report in reports:
        blocks.append(Bullets(tuple(_facts(report))))
        failed = [r for r in report.data.records.values() if r.status != "done"]
        if failed:
            blocks.append(Bullets(tuple(f"{r.step}: {r.status}: {r.error}" for r in failed)))
        unfinished = report.data.unfinished()
        if unfinished:
            blocks.append(Bullets(tuple(u.describe() for u in unfinished)))
    per_run = (section_throughput, section_operating_points, section_latency, section_throughput_vs_p99, section_utilisation)
    for title, section in zip(SECTION_TITLES[:5], per_run):
        blocks.append(Heading(2, title))
        for report in reports:
            blocks += _run_heading(report, several) + section(report)
    blocks.append(Heading(2, SECTION_TITLES[5]))
    blocks += section_cost(reports, cost_frames, costing)
    for title, section in zip(SECTION_TITLES[6:], (section_breakdown, section_interference, section_framework)):
        blocks.append(Heading(2, title))
        for report in reports:
            blocks += _run_heading(report, several) + section(report)
    return blocks
