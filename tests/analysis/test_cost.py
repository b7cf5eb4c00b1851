"""The cost model's rules on hand-computed numbers, its edge cases and every refusal."""

import dataclasses
import datetime
import math

import pytest

from conftest import REPO_ROOT
from conftest import exactly
from tfs_bench.analysis import cost
from tfs_bench.analysis import prices
from tfs_bench.errors import AnalysisError

TABLE = prices.read_prices(REPO_ROOT / "configs" / "prices.csv")
G4DN = prices.lookup(TABLE, "AWS", "g4dn.xlarge", "us-east-1")  # $0.526/h, one T4
C5 = prices.lookup(TABLE, "AWS", "c5.xlarge", "us-east-1")  # $0.17/h
C6I = prices.lookup(TABLE, "AWS", "c6i.2xlarge", "us-east-1")  # $0.34/h

# The worked example of docs/methodology.md ("Cost"); keep the two in step.
DEMAND = {"resnet50": 120.0, "inception_v3": 60.0}
GPU_PEAKS = {"resnet50": 50.0, "inception_v3": 40.0}
BALANCED_MIX = {"resnet50": 30.0, "inception_v3": 25.0}
CPU_PEAKS = {"resnet50": 8.0, "inception_v3": 6.0}
OPTIONS = (
    cost.CostOption("dedicated", "gpu", G4DN, GPU_PEAKS),
    cost.CostOption("multi_process", "gpu", G4DN, BALANCED_MIX, label="balanced mix"),
    cost.CostOption("dedicated", "cpu", C5, CPU_PEAKS),
    cost.CostOption("multi_model", "cpu", C5, {"resnet50": 5.0}),
)


# --- $/1M inferences

def test_usd_per_million_is_the_hourly_price_over_an_hours_inferences():
    # $0.17/h at 50 inf/s = 0.17 / (3600 × 50) × 1e6 = 0.17 / 180000 × 1e6 = $0.94444/1M
    assert cost.usd_per_million(0.17, 50) == pytest.approx(0.944444444, rel=1e-9)
    # $0.526/h at 100 inf/s = 0.526 / 360000 × 1e6 = $1.46111/1M
    assert cost.usd_per_million(0.526, 100) == pytest.approx(1.461111111, rel=1e-9)
    # $6.88/h at 0.5 inf/s = 6.88 / 1800 × 1e6 = $3822.22/1M
    assert cost.usd_per_million(6.88, 0.5) == pytest.approx(3822.222222, rel=1e-9)


@pytest.mark.parametrize("throughput, message", [
    (0, "throughput_inferences_per_s must be above 0, got 0"),
    (-5.0, "throughput_inferences_per_s must be above 0, got -5.0"),
    (math.nan, "throughput_inferences_per_s must be a finite number, got nan"),
    (math.inf, "throughput_inferences_per_s must be a finite number, got inf"),
    ("50", "throughput_inferences_per_s must be a finite number, got '50'"),
    (None, "no SLA-compliant throughput: an INVALID or missing result has no cost per inference"),
])
def test_usd_per_million_refuses_a_throughput_it_cannot_price(throughput, message):
    with pytest.raises(AnalysisError, match=exactly(message)):
        cost.usd_per_million(0.17, throughput)


@pytest.mark.parametrize("price, message", [
    (0, "usd_per_hour must be above 0, got 0"),
    (-0.17, "usd_per_hour must be above 0, got -0.17"),
    (True, "usd_per_hour must be a finite number, got True"),
])
def test_usd_per_million_refuses_a_price_it_cannot_use(price, message):
    with pytest.raises(AnalysisError, match=exactly(message)):
        cost.usd_per_million(price, 50)


# --- normalised capacity and sharing savings

def test_normalised_capacity_sums_each_tenants_share_of_its_dedicated_peak():
    # 30/50 + 25/40 = 0.6 + 0.625 = 1.225
    assert cost.normalised_capacity(BALANCED_MIX, GPU_PEAKS) == pytest.approx(1.225, abs=1e-12)
    # one tenant at its full peak and one idle: 50/50 + 0/40 = 1 (the dedicated baseline's end point)
    assert cost.normalised_capacity({"resnet50": 50, "inception_v3": 0}, GPU_PEAKS) == 1


def test_sharing_savings_is_one_minus_the_inverse_capacity():
    assert cost.sharing_savings(1.225) == pytest.approx(0.183673469, rel=1e-8)  # 1 − 1/1.225 = 9/49
    assert cost.sharing_savings(2) == 0.5  # 1 − 1/2
    assert cost.sharing_savings(1) == 0  # on the dedicated line: nothing saved
    assert cost.sharing_savings(0.8) == pytest.approx(-0.25, abs=1e-12)  # 1 − 1/0.8: sharing costs more


@pytest.mark.parametrize("throughputs, peaks, message", [
    ({}, {}, "a mix needs at least one tenant throughput"),
    ({"a": 1, "b": 1}, {"a": 2}, "no dedicated peak for tenant(s) b"),
    ({"a": 1}, {"a": 2, "c": 3}, "dedicated peak(s) for tenant(s) not in the mix: c"),
    ({"a": 1}, {"a": 0}, "dedicated peak of tenant a must be above 0, got 0"),
    ({"a": -1}, {"a": 2}, "throughput of tenant a must not be negative, got -1"),
])
def test_normalised_capacity_refuses_mismatched_or_bad_input(throughputs, peaks, message):
    with pytest.raises(AnalysisError, match=exactly(message)):
        cost.normalised_capacity(throughputs, peaks)


def test_sharing_savings_refuses_a_capacity_that_is_not_positive():
    with pytest.raises(AnalysisError, match=exactly("normalised capacity must be above 0, got 0")):
        cost.sharing_savings(0)


# --- interference

DEDICATED_A = cost.TenantPoint("a", 50.0, 50.0, 20.0)


def test_interference_divides_colocated_by_dedicated_at_the_same_rate():
    found = cost.interference(cost.TenantPoint("a", 50.0, 45.0, 30.0), DEDICATED_A)
    # p99 30/20 = 1.5; throughput 45/50 = 0.9
    assert found == cost.Interference("a", 50.0, 20.0, 30.0, 1.5, 50.0, 45.0, 0.9)


def test_interference_table_matches_each_colocated_point_to_its_dedicated_rate():
    dedicated = [DEDICATED_A, cost.TenantPoint("a", 25.0, 25.0, 10.0), cost.TenantPoint("b", 25.0, 25.0, 40.0)]
    colocated = [cost.TenantPoint("b", 25.0, 20.0, 60.0), cost.TenantPoint("a", 25.0, 25.0, 12.0)]
    table = cost.interference_table(colocated, dedicated)
    # b: 60/40 = 1.5, 20/25 = 0.8; a at 25/s: 12/10 = 1.2, 25/25 = 1
    assert [(r.tenant, r.offered_per_s, r.p99_ratio, r.throughput_ratio) for r in table] == [
        ("b", 25.0, 1.5, 0.8), ("a", 25.0, 1.2, 1.0)]


def test_interference_refusals():
    with pytest.raises(AnalysisError, match=exactly("interference compares one tenant, got 'b' and 'a'")):
        cost.interference(cost.TenantPoint("b", 50.0, 45.0, 30.0), DEDICATED_A)
    with pytest.raises(AnalysisError, match=exactly(
            "tenant a: co-located at 40/s but dedicated at 50/s; interference compares the same offered rate")):
        cost.interference(cost.TenantPoint("a", 40.0, 40.0, 30.0), DEDICATED_A)
    with pytest.raises(AnalysisError, match=exactly("dedicated p99_ms of tenant a must be above 0, got 0.0")):
        cost.interference(DEDICATED_A, dataclasses.replace(DEDICATED_A, p99_ms=0.0))
    with pytest.raises(AnalysisError, match=exactly("dedicated throughput of tenant a must be above 0, got 0.0")):
        cost.interference(DEDICATED_A, dataclasses.replace(DEDICATED_A, throughput_inferences_per_s=0.0))
    with pytest.raises(AnalysisError, match=exactly(
            "no dedicated point of tenant a at 40/s (dedicated rates: 25/s, 50/s)")):
        cost.interference_table([cost.TenantPoint("a", 40.0, 40.0, 1.0)],
                                [DEDICATED_A, cost.TenantPoint("a", 25.0, 25.0, 1.0)])
    with pytest.raises(AnalysisError, match=exactly("no dedicated point of tenant z at 50/s (dedicated rates: none)")):
        cost.interference_table([dataclasses.replace(DEDICATED_A, tenant="z")], [DEDICATED_A])
    with pytest.raises(AnalysisError, match=exactly("two dedicated points of tenant a at 50/s")):
        cost.interference_table([], [DEDICATED_A, DEDICATED_A])


@pytest.mark.parametrize("fields, message", [
    (("", 1.0, 1.0, 1.0), "a tenant point needs a tenant name, got ''"),
    (("a", 0.0, 1.0, 1.0), "offered_per_s of tenant a must be above 0, got 0.0"),
    (("a", 1.0, -1.0, 1.0), "throughput_inferences_per_s of tenant a must not be negative, got -1.0"),
    (("a", 1.0, 1.0, math.nan), "p99_ms of tenant a must be a finite number, got nan"),
])
def test_a_tenant_point_is_checked(fields, message):
    with pytest.raises(AnalysisError, match=exactly(message)):
        cost.TenantPoint(*fields)


# --- machines for a demand

@pytest.mark.parametrize("demand, capacity, machines", [
    (100, 50, 2),  # 100/50 = 2 exactly
    (101, 50, 3),  # 2.02 → 3
    (0.5, 50, 1),  # any demand needs a whole machine
    (0, 50, 0),  # no demand, no machine
    (0, 0, 0),  # ... even where nothing was measured
    (2.7, 0.3, 9),  # 2.7/0.3 = 9.000000000000002 in floats: 9, not 10
    (0.3, 0.1, 3),  # 2.9999999999999996 → 3
    (300.000003, 100, 4),  # 3.00000003 is 1e-8 above 3: beyond the 1e-9 tolerance, so 4
])
def test_machines_for_one_model_is_the_demand_over_capacity_rounded_up(demand, capacity, machines):
    assert cost.machines_for(demand, capacity) == machines


def test_dedicated_machines_give_each_model_its_own_fleet():
    # resnet50 ⌈120/50⌉ = ⌈2.4⌉ = 3; inception_v3 ⌈60/40⌉ = ⌈1.5⌉ = 2
    assert cost.dedicated_machines(DEMAND, GPU_PEAKS) == {"inception_v3": 2, "resnet50": 3}


def test_shared_machines_are_the_fewest_that_cover_every_model_at_the_shared_point():
    # resnet50 ⌈120/30⌉ = 4; inception_v3 ⌈60/25⌉ = ⌈2.4⌉ = 3; max = 4
    assert cost.shared_machines(DEMAND, BALANCED_MIX) == 4
    # the demand in the mix's own ratio (30:25) fills every machine: 90/30 = 75/25 = 3
    assert cost.shared_machines({"resnet50": 90, "inception_v3": 75}, BALANCED_MIX) == 3


def test_a_model_without_demand_needs_neither_machines_nor_a_measured_capacity():
    assert cost.dedicated_machines({"resnet50": 120, "inception_v3": 0}, {"resnet50": 50}) == {
        "inception_v3": 0, "resnet50": 3}
    assert cost.shared_machines({"resnet50": 120, "inception_v3": 0}, {"resnet50": 30, "inception_v3": 0}) == 4
    assert cost.shared_machines({"resnet50": 0}, {}) == 0
    assert cost.dedicated_machines({"resnet50": 0}, {}) == {"resnet50": 0}


@pytest.mark.parametrize("function, what", [(cost.dedicated_machines, "dedicated peak"),
                                            (cost.shared_machines, "shared capacity")])
def test_machine_counts_refuse_a_demand_they_cannot_serve(function, what):
    with pytest.raises(AnalysisError, match=exactly(
            f"{what} cannot serve the demand: no capacity measured for model inception_v3 (demand 60/s)")):
        function(DEMAND, {"resnet50": 50})
    with pytest.raises(AnalysisError, match=exactly(
            f"{what} cannot serve the demand: capacity 0/s for model resnet50 (demand 120/s)")):
        function(DEMAND, {"resnet50": 0, "inception_v3": 40})
    with pytest.raises(AnalysisError, match=exactly(f"{what} of model resnet50 must not be negative, got -1")):
        function(DEMAND, {"resnet50": -1, "inception_v3": 40})
    with pytest.raises(AnalysisError, match=exactly("demand of model resnet50 must not be negative, got -120")):
        function({"resnet50": -120}, GPU_PEAKS)
    with pytest.raises(AnalysisError, match=exactly("the demand names no model")):
        function({}, GPU_PEAKS)
    with pytest.raises(AnalysisError, match=exactly("a demand needs model names, got ''")):
        function({"": 1}, GPU_PEAKS)


def test_cost_savings_compare_the_two_fleets_prices():
    # shared 4 × $0.526 = $2.104/h, dedicated 5 × $0.526 = $2.63/h: 1 − 2.104/2.63 = 1 − 0.8 = 0.2
    assert cost.cost_savings(2.104, 2.63) == pytest.approx(0.2, abs=1e-12)
    assert cost.cost_savings(3, 2) == -0.5  # sharing that costs more saves a negative amount
    assert cost.cost_savings(0, 2) == 1
    with pytest.raises(AnalysisError, match=exactly("dedicated_usd_per_hour must be above 0, got 0")):
        cost.cost_savings(1, 0)
    with pytest.raises(AnalysisError, match=exactly("shared_usd_per_hour must not be negative, got -1")):
        cost.cost_savings(-1, 2)


# --- cheapest

def test_cheapest_ranks_the_worked_example():
    ranking = cost.cheapest(DEMAND, OPTIONS)
    got = [(c.rank, c.placement, c.device, c.instance, c.machines, c.machines_by_model) for c in ranking.ranked]
    assert got == [
        # max(⌈120/30⌉, ⌈60/25⌉) = max(4, 3) = 4 machines, every one hosting both models
        (1, "multi_process", "gpu", "g4dn.xlarge", 4, (("inception_v3", 4), ("resnet50", 4))),
        # ⌈120/50⌉ + ⌈60/40⌉ = 3 + 2 = 5
        (2, "dedicated", "gpu", "g4dn.xlarge", 5, (("inception_v3", 2), ("resnet50", 3))),
        # ⌈120/8⌉ + ⌈60/6⌉ = 15 + 10 = 25
        (3, "dedicated", "cpu", "c5.xlarge", 25, (("inception_v3", 10), ("resnet50", 15))),
    ]
    # $/h: 4 × 0.526 = 2.104; 5 × 0.526 = 2.63; 25 × 0.17 = 4.25
    assert [c.usd_per_hour for c in ranking.ranked] == pytest.approx([2.104, 2.63, 4.25], abs=1e-12)
    # $/1M at the 180 inf/s demanded: 2.104/(3600 × 180) × 1e6 = 2.104/648000 × 1e6 = 3.24691;
    # 2.63/648000 × 1e6 = 4.05864; 4.25/648000 × 1e6 = 6.55864
    assert [c.usd_per_million for c in ranking.ranked] == pytest.approx([3.246914, 4.058642, 6.558642], abs=1e-6)
    assert ranking.best is ranking.ranked[0]
    assert ranking.ranked[0].label == "balanced mix"
    # savings of sharing the T4 for this demand: 1 − 2.104/2.63 = 0.2 (the mix's own capacity,
    # 1.225, would save 1 − 1/1.225 = 18.4%: whole machines round the two differently)
    assert cost.cost_savings(ranking.ranked[0].usd_per_hour, ranking.ranked[1].usd_per_hour) == pytest.approx(0.2)
    assert ranking.skipped == (cost.SkippedOption(
        "multi_model", "cpu", "", "AWS", "c5.xlarge", "us-east-1", "no capacity measured for model inception_v3 (demand 60/s)"),)


def test_each_ranked_option_carries_its_price_and_when_and_where_it_was_read():
    best = cost.cheapest(DEMAND, OPTIONS).best
    assert (best.provider, best.region, best.machine_usd_per_hour, best.price_observed, best.price_source,
            best.demand_inferences_per_s) == (
        "AWS", "us-east-1", 0.526, datetime.date(2026, 7, 20), G4DN.source, 180.0)


def test_cheapest_does_not_depend_on_the_order_of_the_options():
    assert cost.cheapest(DEMAND, OPTIONS[::-1]).ranked == cost.cheapest(DEMAND, OPTIONS).ranked


def test_ties_in_price_go_to_fewer_machines_then_by_name():
    demand = {"m": 10.0}
    options = [
        cost.CostOption("multi_model", "cpu", C5, {"m": 5.0}),  # ⌈10/5⌉ = 2 × $0.17 = $0.34/h
        cost.CostOption("dedicated", "cpu", C5, {"m": 5.0}),  # the same fleet and price: placement decides
        cost.CostOption("dedicated", "cpu", C6I, {"m": 10.0}),  # 1 × $0.34/h: the same price, fewer machines
    ]
    ranked = cost.cheapest(demand, options).ranked
    assert [(c.instance, c.placement, c.machines) for c in ranked] == [
        ("c6i.2xlarge", "dedicated", 1), ("c5.xlarge", "dedicated", 2), ("c5.xlarge", "multi_model", 2)]
    assert [c.rank for c in ranked] == [1, 2, 3]


def test_a_model_without_demand_does_not_disqualify_an_option():
    ranking = cost.cheapest({"resnet50": 120.0, "inception_v3": 0.0}, OPTIONS)
    assert ranking.skipped == ()
    multi_model = [c for c in ranking.ranked if c.placement == "multi_model"][0]
    assert (multi_model.machines, multi_model.machines_by_model) == (24, (("resnet50", 24),))  # ⌈120/5⌉


def test_when_no_option_serves_the_demand_best_says_why():
    ranking = cost.cheapest({"vgg16": 1.0}, OPTIONS[:2])
    assert ranking.ranked == ()
    with pytest.raises(AnalysisError, match=exactly(
            "no option serves the demand (dedicated on gpu of AWS g4dn.xlarge: no capacity measured for model vgg16 "
            "(demand 1/s); multi_process on gpu of AWS g4dn.xlarge: no capacity measured for model vgg16 (demand 1/s))")):
        ranking.best
    with pytest.raises(AnalysisError, match=exactly("no option serves the demand (no options given)")):
        cost.cheapest({"vgg16": 1.0}, []).best


def test_cheapest_refusals():
    with pytest.raises(AnalysisError, match=exactly("the demand is 0 for every model; there is nothing to serve")):
        cost.cheapest({"resnet50": 0}, OPTIONS)
    with pytest.raises(AnalysisError, match=exactly(
            "dedicated on gpu of AWS g4dn.xlarge in us-east-1 is offered twice; give one a label")):
        cost.cheapest(DEMAND, [OPTIONS[0], OPTIONS[0]])


@pytest.mark.parametrize("args, message", [
    (("shared", "gpu", G4DN, {}), "placement must be one of dedicated, multi_model, multi_process, got 'shared'"),
    (("dedicated", "tpu", G4DN, {}), "device must be one of cpu, gpu, got 'tpu'"),
    (("dedicated", "gpu", C5, {}), "a gpu option needs an instance with a GPU; AWS c5.xlarge in us-east-1 has none"),
    (("dedicated", "gpu", "g4dn.xlarge", {}), "an option's instance must be a PriceRow, got 'g4dn.xlarge'"),
    (("dedicated", "cpu", C5, {"m": -1}), "capacity of dedicated on cpu of AWS c5.xlarge in us-east-1 of model m must not be negative, got -1"),
    (("dedicated", "cpu", C5, {"m": 1}, 3), "an option's label must be text, got 3"),
])
def test_a_cost_option_is_checked(args, message):
    with pytest.raises(AnalysisError, match=exactly(message)):
        cost.CostOption(*args)


def test_a_cpu_option_may_run_on_a_gpu_machine():
    option = cost.CostOption("dedicated", "cpu", G4DN, {"m": 4.0})
    assert (option.device, option.instance.device) == ("cpu", "gpu")


def test_an_option_keeps_its_own_copy_of_the_capacities():
    capacity = {"m": 4.0}
    option = cost.CostOption("dedicated", "cpu", C5, capacity)
    capacity["m"] = 400.0
    assert option.capacity_inferences_per_s == {"m": 4.0}


# --- unit costs (CPU vs GPU side by side)

def test_unit_costs_of_a_dedicated_option_are_per_model():
    rows = cost.unit_costs(OPTIONS[0])
    # inception_v3: 0.526/(3600 × 40) × 1e6 = 3.65278; resnet50: 0.526/(3600 × 50) × 1e6 = 2.92222
    assert [(r.models, r.throughput_inferences_per_s) for r in rows] == [(("inception_v3",), 40.0), (("resnet50",), 50.0)]
    assert [r.usd_per_million for r in rows] == pytest.approx([3.652778, 2.922222], abs=1e-6)
    assert {(r.provider, r.instance, r.price_observed, r.machine_usd_per_hour) for r in rows} == {
        ("AWS", "g4dn.xlarge", datetime.date(2026, 7, 20), 0.526)}


def test_unit_costs_of_a_shared_option_are_for_the_whole_machine():
    (row,) = cost.unit_costs(OPTIONS[1])
    # 30 + 25 = 55 inf/s: 0.526/(3600 × 55) × 1e6 = 2.65657
    assert (row.models, row.throughput_inferences_per_s, row.label) == (("inception_v3", "resnet50"), 55.0, "balanced mix")
    assert row.usd_per_million == pytest.approx(2.656566, abs=1e-6)


def test_unit_costs_leave_out_models_at_zero_and_refuse_an_option_serving_nothing():
    (row,) = cost.unit_costs(cost.CostOption("multi_model", "cpu", C5, {"a": 5.0, "b": 0.0}))
    assert row.models == ("a",)
    with pytest.raises(AnalysisError, match=exactly("dedicated on cpu of AWS c5.xlarge in us-east-1 serves no model (every capacity is 0)")):
        cost.unit_costs(cost.CostOption("dedicated", "cpu", C5, {"a": 0.0}))
