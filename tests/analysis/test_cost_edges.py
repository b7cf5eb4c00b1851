"""The cost model's bounds, exactly at the edge, and each of its refusals one fault at a time.

Companion of test_cost.py. Options, capacities and demands are built inside each test (not at
import time or in parametrize lists), so each check runs the code under test when the test runs.
"""

import dataclasses

import pytest

from conftest import REPO_ROOT
from conftest import exactly
from tfs_bench.analysis import cost
from tfs_bench.analysis import prices
from tfs_bench.errors import AnalysisError

TABLE = prices.read_prices(REPO_ROOT / "configs" / "prices.csv")
G4DN = prices.lookup(TABLE, "AWS", "g4dn.xlarge", "us-east-1")  # $0.526/h, one T4
C5 = prices.lookup(TABLE, "AWS", "c5.xlarge", "us-east-1")  # $0.17/h


# --- machines for one model


def test_a_quotient_just_above_one_machine_is_one_machine():
    # three tenants of 0.1/s each: 0.1 + 0.1 + 0.1 = 0.30000000000000004 in floats, and
    # 0.30000000000000004 / 0.3 = 1.0000000000000002, within 10⁻⁹ of 1: one machine, not two
    assert cost.machines_for(0.1 + 0.1 + 0.1, 0.3) == 1
    assert cost.machines_for(0.3, 0.3) == 1  # exactly one machine's capacity
    assert cost.machines_for(0.300001, 0.3) == 2  # 1.0000033: beyond the tolerance, so a second machine


def test_machines_for_names_the_argument_it_refuses():
    with pytest.raises(AnalysisError, match=exactly("demand_inferences_per_s must not be negative, got -1")):
        cost.machines_for(-1, 50)
    with pytest.raises(AnalysisError, match=exactly("capacity_inferences_per_s must be above 0, got 0")):
        cost.machines_for(1, 0)
    with pytest.raises(AnalysisError, match=exactly("capacity_inferences_per_s must be a finite number, got None")):
        cost.machines_for(1, None)


def test_a_model_without_demand_sorting_first_does_not_end_the_check_of_the_others():
    # "a" (no demand) sorts before "b", whose capacity is missing: b is still found unserved
    with pytest.raises(AnalysisError, match=exactly(
            "dedicated peak cannot serve the demand: no capacity measured for model b (demand 5/s)")):
        cost.dedicated_machines({"a": 0.0, "b": 5.0}, {"a": 1.0})
    with pytest.raises(AnalysisError, match=exactly(
            "shared capacity cannot serve the demand: capacity 0/s for model b (demand 5/s)")):
        cost.shared_machines({"a": 0.0, "b": 5.0}, {"a": 1.0, "b": 0.0})


def test_cheapest_skips_an_option_unserved_beyond_a_model_without_demand():
    option = cost.CostOption("dedicated", "cpu", C5, {"a": 1.0})
    ranking = cost.cheapest({"a": 0.0, "b": 5.0}, [option])
    assert ranking.ranked == ()
    assert ranking.skipped == (cost.SkippedOption(
        "dedicated", "cpu", "", "AWS", "c5.xlarge", "us-east-1", "no capacity measured for model b (demand 5/s)"),)


# --- capacity and tenant names


@pytest.mark.parametrize("function, what", [(cost.dedicated_machines, "dedicated peak"),
                                            (cost.shared_machines, "shared capacity")])
def test_a_capacity_needs_model_names_each_fault_on_its_own(function, what):
    with pytest.raises(AnalysisError, match=exactly(f"{what} needs model names, got ''")):
        function({"m": 1.0}, {"m": 1.0, "": 1.0})  # text, but empty
    with pytest.raises(AnalysisError, match=exactly(f"{what} needs model names, got 3")):
        function({"m": 1.0}, {"m": 1.0, 3: 1.0})  # not empty, but not text


def test_an_option_needs_model_names_too():
    with pytest.raises(AnalysisError, match=exactly(
            "capacity of dedicated on cpu of AWS c5.xlarge in us-east-1 needs model names, got 3")):
        cost.CostOption("dedicated", "cpu", C5, {3: 1.0})


def test_every_missing_and_every_unused_tenant_is_listed():
    with pytest.raises(AnalysisError, match=exactly("no dedicated peak for tenant(s) b, c")):
        cost.normalised_capacity({"a": 1, "c": 1, "b": 1}, {"a": 2})
    with pytest.raises(AnalysisError, match=exactly("dedicated peak(s) for tenant(s) not in the mix: c, d")):
        cost.normalised_capacity({"a": 1}, {"a": 2, "d": 3, "c": 3})


# --- options


def test_a_gpu_option_on_a_gpu_machine_is_accepted():
    option = cost.CostOption("multi_process", "gpu", G4DN, {"m": 4.0})
    assert (option.device, option.instance.device, option.shared) == ("gpu", "gpu", True)
    assert option.name == "multi_process on gpu of AWS g4dn.xlarge in us-east-1"


# --- ranking


def test_the_cheaper_fleet_ranks_first_even_with_more_machines():
    demand = {"m": 10.0}
    options = [
        cost.CostOption("dedicated", "gpu", G4DN, {"m": 10.0}),  # ⌈10/10⌉ = 1 × $0.526 = $0.526/h
        cost.CostOption("dedicated", "cpu", C5, {"m": 5.0}),  # ⌈10/5⌉ = 2 × $0.17 = $0.34/h
    ]
    ranked = cost.cheapest(demand, options).ranked
    assert [(c.rank, c.instance, c.machines) for c in ranked] == [(1, "c5.xlarge", 2), (2, "g4dn.xlarge", 1)]
    assert [c.usd_per_hour for c in ranked] == [0.34, 0.526]  # 2 × 0.17 and 1 × 0.526 are exact in floats


def test_costs_within_the_tie_tolerance_are_ties():
    # 3 × $0.1/h = $0.30000000000000004/h, a float's noise (4·10⁻¹⁷) above 2 × $0.15 = $0.3/h: a tie,
    # so the fleet of fewer machines ranks first although its float is the larger
    three_dimes = dataclasses.replace(C5, instance="dime", usd_per_hour=0.1 + 0.1 + 0.1)
    fifteen = dataclasses.replace(C5, instance="fifteen", usd_per_hour=0.15)
    options = [
        cost.CostOption("dedicated", "cpu", fifteen, {"m": 5.0}),  # ⌈10/5⌉ = 2 × 0.15 = 0.3
        cost.CostOption("dedicated", "cpu", three_dimes, {"m": 10.0}),  # 1 × 0.30000000000000004
    ]
    ranked = cost.cheapest({"m": 10.0}, options).ranked
    assert [(c.instance, c.machines, c.usd_per_hour) for c in ranked] == [
        ("dime", 1, 0.30000000000000004), ("fifteen", 2, 0.3)]


# --- unit costs


def test_unit_costs_carry_the_options_placement_device_and_region():
    option = cost.CostOption("dedicated", "cpu", G4DN, {"m": 4.0}, label="cpu only")
    # 0.526 / (3600 × 4) × 1e6 = 0.526 / 14400 × 1e6 = 36.52778
    assert cost.unit_costs(option) == (cost.UnitCost(
        "dedicated", "cpu", "cpu only", "AWS", "g4dn.xlarge", "us-east-1", G4DN.observed, ("m",), 4.0, 0.526,
        pytest.approx(36.527778, abs=1e-6)),)


def test_unit_costs_keep_every_capacity_above_zero_however_small():
    option = cost.CostOption("multi_model", "cpu", C5, {"a": 1.0, "b": 0.5, "c": 0.0})
    (row,) = cost.unit_costs(option)
    # 1 + 0.5 = 1.5 inf/s: 0.17 / (3600 × 1.5) × 1e6 = 0.17 / 5400 × 1e6 = 31.48148
    assert (row.models, row.throughput_inferences_per_s) == (("a", "b"), 1.5)
    assert row.usd_per_million == pytest.approx(31.481481, abs=1e-6)
    dedicated = cost.unit_costs(cost.CostOption("dedicated", "cpu", C5, {"a": 0.5}))
    assert [(r.models, r.throughput_inferences_per_s) for r in dedicated] == [(("a",), 0.5)]
