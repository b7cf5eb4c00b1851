"""The experiment's tables from the stored run, each figure cross-checked by hand against the
run's own files (steps.jsonl and the summaries), read here with json, not through the analysis."""

import json
import math

import pytest

from conftest import REPO_ROOT
from tfs_bench.analysis import results
from tfs_bench.analysis import tables
from tfs_bench.analysis.demand import parse_instances
from tfs_bench.analysis.prices import DEFAULT_PRICES
from tfs_bench.analysis.prices import read_prices
from tfs_bench.analysis.run_data import read_run

RUN = REPO_ROOT / "tests" / "data" / "report_run"
DATA = read_run(RUN)
TABLES = results.experiment_tables(DATA)
PRICES = read_prices(DEFAULT_PRICES)
DEMAND = {"tiny_cnn": 1000.0, "mobilenet_v2_small": 200.0}


def journal():
    return {r["step"]: r for r in map(json.loads, (RUN / "steps.jsonl").read_text().splitlines())}


def probe(step_id):
    """The summary.json entry of a done search step's probe at its peak rate."""
    result = journal()[step_id]["result"]
    search = json.loads((RUN / result["search_dir"] / "summary.json").read_text())
    return [r for r in search["runs"] if r["rate_rps"] == result["peak_rps"]][-1]["result"]


def per_s(pooled):
    return pooled["inferences"] / pooled["duration_s"]


def dedicated_peak(model):
    return per_s(probe(f"cpu/dedicated/{model}/peak")["tenants"][model]["pooled"])


def test_every_table_keeps_its_schema():
    for name, frame in TABLES.items():
        assert list(frame.columns) == [c for c, _ in tables.SCHEMAS[name]], name


def test_dedicated_placements_are_the_peak_probes_figures():
    frame = TABLES["placements"].set_index(["placement", "model"])
    for model in DATA.models:
        record = journal()[f"cpu/dedicated/{model}/peak"]["result"]
        row = frame.loc[("dedicated", model)]
        assert row["throughput_rps"] == pytest.approx(record["throughput_rps"])
        assert row["p95_ms"] == pytest.approx(record["sla_latency_ms"])
        assert row["offered_rate_rps"] == pytest.approx(record["peak_rps"])
        assert row["valid"] and row["meets_sla"] and row["p95_ms"] <= DATA.sla_ms
        closed = journal()[f"cpu/dedicated/{model}/closed"]["result"]
        raw = journal()[f"cpu/raw/{model}"]["result"]
        assert row["serving_tax"] == pytest.approx(closed["best_throughput_rps"] / raw["best_images_per_s"])
        assert 0 < row["servers_cpu_cores"] <= 2 and 0 < row["system_cpu_percent"] <= 100
        assert math.isnan(row["gpu_utilisation_percent"])  # no GPU on the machine that measured it


def test_shared_placements_are_each_tenants_share_of_the_balanced_peak():
    frame = TABLES["placements"].set_index(["placement", "model"])
    for placement in ("multi_model", "multi_process"):
        tenants = probe(f"cpu/{placement}/balanced")["tenants"]
        for model in DATA.models:
            assert frame.loc[(placement, model)]["inferences_per_s"] == pytest.approx(per_s(tenants[model]["pooled"]))
            assert frame.loc[(placement, model)]["p99_ms"] == pytest.approx(tenants[model]["pooled"]["response_time"]["p99_ms"])


def test_normalised_capacity_and_savings_of_each_valid_mix():
    mixes = TABLES["mixes"]
    balanced = mixes[(mixes["placement"] == "multi_process") & (mixes["mix"] == "balanced")]
    tenants = probe("cpu/multi_process/balanced")["tenants"]
    capacity = sum(per_s(tenants[m]["pooled"]) / dedicated_peak(m) for m in DATA.models)
    assert capacity > 1  # on this run, sharing one machine across two processes beat dedicated machines
    assert list(balanced["normalised_capacity"]) == pytest.approx([capacity, capacity])
    assert list(balanced["savings_fraction"]) == pytest.approx([1 - 1 / capacity] * 2)
    shares = dict(zip(balanced["tenant"], balanced["share_of_dedicated_peak"]))
    assert shares["tiny_cnn"] == pytest.approx(per_s(tenants["tiny_cnn"]["pooled"]) / dedicated_peak("tiny_cnn"))


def test_a_failed_mix_is_kept_marked_and_gets_no_capacity():
    failed = TABLES["mixes"][TABLES["mixes"]["step"] == "cpu/multi_process/perseus/tiny_cnn-at-0.5/mobilenet_v2_small"]
    assert len(failed) == 2
    assert not failed["valid"].any() and failed["normalised_capacity"].isna().all()
    assert set(failed["invalid_reasons"]) == {"not measured"}


def test_interference_compares_each_tenant_with_its_model_alone_at_the_same_offered_rate():
    reference = journal()["cpu/reference/tiny_cnn/alone"]
    alone = json.loads((RUN / reference["dir"] / "summary.json").read_text())["runs"]
    colocated = probe("cpu/multi_process/balanced")["tenants"]["tiny_cnn"]
    rate = round(colocated["pooled"]["offered_rate_rps"], 2)
    match = [r for r in alone if round(r["rate_rps"], 2) == rate][-1]["result"]["tenants"]["tiny_cnn"]
    frame = TABLES["interference"]
    row = frame[(frame["placement"] == "multi_process") & (frame["mix"] == "balanced") & (frame["tenant"] == "tiny_cnn")].iloc[0]
    assert row["offered_rate_rps"] == pytest.approx(rate)
    assert row["dedicated_p99_ms"] == pytest.approx(match["pooled"]["response_time"]["p99_ms"])
    assert row["p99_ratio"] == pytest.approx(colocated["pooled"]["response_time"]["p99_ms"] / match["pooled"]["response_time"]["p99_ms"])
    assert row["throughput_ratio"] == pytest.approx(per_s(colocated["pooled"]) / per_s(match["pooled"]))
    assert row["dedicated_valid"] == match["verdict"]["valid"]
    if not match["verdict"]["valid"]:
        assert "alone: " in row["invalid_reasons"]
    # every tenant of every measured shared point found its run alone
    assert len(frame) == 2 * sum(1 for s in DATA.steps() if s.kind in ("perseus", "balanced") and DATA.operating_point(s.id))
    assert frame["dedicated_p99_ms"].notna().all()


def test_the_runs_table_holds_every_measured_run_invalid_ones_marked():
    expected = invalid = 0
    for record in journal().values():
        if not record.get("dir") or record["step"].startswith("cpu/raw/"):
            continue  # a failed step's probes count too: they are what it measured before it gave up
        result = record.get("result") or {}
        directory = RUN / (result["search_dir"] if "search_dir" in result else record["dir"])
        summaries = [directory / "summary.json"] if (directory / "summary.json").exists() else sorted(directory.glob("from-*rps/summary.json"))
        for path in summaries:
            for run in json.loads(path.read_text())["runs"]:
                for tenant in run["result"]["tenants"].values():
                    expected += 1
                    invalid += not tenant["verdict"]["valid"]
    runs = TABLES["runs"]
    assert len(runs) == expected and (~runs["valid"]).sum() == invalid > 0
    assert (runs.loc[~runs["valid"], "invalid_reasons"] != "").all()


def test_framework_variants_against_the_servers_defaults():
    frame = TABLES["framework"].set_index("variant")
    default = journal()["cpu/framework/tiny_cnn/server-default/closed"]["result"]["throughput_rps"]
    threads = journal()["cpu/framework/tiny_cnn/threads-1x1/closed"]["result"]["throughput_rps"]
    assert frame.loc["threads-1x1", "change_vs_default"] == pytest.approx(threads / default - 1)
    assert frame.loc["server-default", "change_vs_default"] == pytest.approx(0.0)
    assert set(frame.index) == {"server-default", "threads-1x1", "batching", "uint8"}


def test_the_breakdown_splits_service_time_into_its_parts():
    frame = TABLES["breakdown"]
    row = frame[(frame["placement"] == "dedicated") & (frame["tenant"] == "tiny_cnn") & (frame["variant"] == "")].iloc[0]
    assert row["network_serialisation_ms"] == pytest.approx(row["client_mean_service_time_ms"] - row["request_latency_mean_ms"], rel=0.05)
    assert row["request_handling_ms"] == pytest.approx(row["request_latency_mean_ms"] - row["runtime_latency_mean_ms"], rel=0.05)
    batching = frame[frame["variant"] == "batching"].iloc[0]
    assert batching["batch_wait_ms"] > 0 and math.isnan(row["batch_wait_ms"])


def test_unit_costs_price_each_valid_option_on_every_cpu_row():
    frames = results.cost_tables([DATA], results.Costing(PRICES, DEMAND))
    units = frames["unit_costs"]
    cpu_rows = [r for r in PRICES if r.device == "cpu"]
    options = 1 + sum(1 for s in DATA.steps() if s.kind in ("perseus", "balanced") and DATA.operating_point(s.id))
    assert len(units) == len(cpu_rows) * (options - 1 + len(DATA.models))  # dedicated: one row per model
    c5 = units[(units["instance"] == "c5.xlarge") & (units["placement"] == "dedicated") & (units["models"] == "tiny_cnn")].iloc[0]
    assert c5["usd_per_million"] == pytest.approx(c5["machine_usd_per_hour"] / (dedicated_peak("tiny_cnn") * 3600) * 1e6)
    cheapest = results.cheapest_machines(units)
    assert len(cheapest) == options - 1 + len(DATA.models)
    assert list(cheapest["usd_per_million"]) == sorted(cheapest["usd_per_million"])


def test_the_dedicated_fleet_for_a_demand_is_each_models_machines_summed():
    row = next(r for r in PRICES if (r.provider, r.instance, r.region) == ("AWS", "c5.xlarge", "us-east-1"))
    costing = results.Costing(PRICES, DEMAND, parse_instances(["AWS:c5.xlarge:us-east-1"]))
    costs = results.cost_tables([DATA], costing)["costs"]
    dedicated = costs[costs["placement"] == "dedicated"].iloc[0]
    machines = {m: math.ceil(DEMAND[m] / dedicated_peak(m)) for m in DEMAND}
    assert dedicated["machines"] == sum(machines.values())
    assert dedicated["usd_per_hour"] == pytest.approx(sum(machines.values()) * row.usd_per_hour)
    assert set(costs["instance"]) == {"c5.xlarge"} and list(costs["rank"]) == list(range(1, len(costs) + 1))
    assert list(costs["usd_per_hour"]) == sorted(costs["usd_per_hour"])


def test_without_a_demand_only_unit_costs_are_made():
    assert set(results.cost_tables([DATA], results.Costing(PRICES))) == {"unit_costs"}
