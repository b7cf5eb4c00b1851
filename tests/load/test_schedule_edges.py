"""Splits, sweeps, tenant seeds and traffic mixes at their bounds, with their messages.

Companion of test_schedule.py (the arrival schedules' statistics are in
test_schedule_statistics.py).
"""

import pytest

from conftest import exactly
from tfs_bench.errors import ConfigError
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TenantSpec
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.schedule import split_evenly
from tfs_bench.load.schedule import tenant_seed


@pytest.mark.parametrize(
    "total, workers, shares",
    [(5, 1, (5,)), (0, 3, (0, 0, 0)), (1, 2, (1, 0)), (6, 3, (2, 2, 2))],
    ids=["one worker", "nothing to split", "fewer than workers", "even"],
)
def test_split_evenly_at_its_bounds(total, workers, shares):
    assert split_evenly(total, workers) == shares


@pytest.mark.parametrize("total, workers", [(5, 0), (-1, 2), (-1, 0)])
def test_split_evenly_refuses_no_workers_or_a_negative_total(total, workers):
    with pytest.raises(ConfigError, match=exactly(f"cannot split {total} over {workers} workers")):
        split_evenly(total, workers)


def test_tenant_seeds_use_all_64_bits():
    # Uniform 64-bit seeds: the chance that 64 of them all fit in 32 bits is 2⁻²⁰⁴⁸.
    seeds = [tenant_seed(0, f"model_{i}") for i in range(64)]
    assert max(seeds) >= 2**32 and all(0 <= s < 2**64 for s in seeds)


@pytest.mark.parametrize("tenant, model", [("", "m"), ("t", ""), ("", "")])
def test_a_tenant_needs_both_names(tenant, model):
    with pytest.raises(ConfigError, match=exactly("tenant and model names must not be empty")):
        TenantLoad(tenant, model, concurrency=1)


def test_an_empty_mix_is_refused_with_its_reason():
    with pytest.raises(ConfigError, match=exactly("a traffic mix needs at least one tenant")):
        TrafficMix(())


def test_a_mix_keeps_its_tenants_as_a_tuple():
    load = TenantLoad("a", "a", concurrency=1)
    assert TrafficMix([load]).tenants == (load,)


def test_a_closed_loop_mix_keeps_each_tenants_target():
    mix = TrafficMix.closed_loop([TenantSpec("resnet50", "canary"), TenantSpec("vgg16")], concurrency=2)
    assert [(t.tenant, t.target) for t in mix.tenants] == [("resnet50@canary", "canary"), ("vgg16", None)]


def test_an_open_loop_mix_seeds_from_run_seed_0_by_default():
    mix = TrafficMix.open_loop([TenantSpec("a"), TenantSpec("b")], 10.0)
    assert [t.seed for t in mix.tenants] == [tenant_seed(0, "a"), tenant_seed(0, "b")]


def test_moving_a_closed_loop_tenant_to_open_loop_drops_its_concurrency():
    mix = TrafficMix.closed_loop([TenantSpec("a"), TenantSpec("b")], concurrency=4)
    moved = mix.with_rate("b", 25.0)
    b = moved.tenant("b")
    assert (b.rate_rps, b.concurrency, b.open_loop) == (25.0, None, True)
    assert moved.tenant("a") == mix.tenant("a")
