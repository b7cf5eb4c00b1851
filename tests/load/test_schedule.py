import itertools
import json
import math

import numpy as np
import pytest

from tfs_bench.errors import ConfigError
from tfs_bench.load.schedule import ArrivalSchedule
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TenantSpec
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.schedule import split_evenly
from tfs_bench.load.schedule import tenant_seed


def take(iterator, n: int) -> list[int]:
    return list(itertools.islice(iterator, n))


def test_constant_schedule_known_answers():
    assert take(ArrivalSchedule(3.0, "constant").offsets_ns(), 4) == [0, 333_333_333, 666_666_667, 1_000_000_000]
    assert take(ArrivalSchedule(1000.0, "constant").offsets_ns(), 5) == [0, 1_000_000, 2_000_000, 3_000_000, 4_000_000]


def test_constant_schedule_does_not_drift():
    offsets = ArrivalSchedule(3.0, "constant").offsets_ns()
    # Arrival 3·10⁶ of a 3 rps schedule is exactly 10⁶ s after the start.
    assert next(itertools.islice(offsets, 3_000_000, None)) == 1_000_000 * 1_000_000_000


def test_poisson_schedule_is_reproducible_from_its_seed_and_lazy():
    schedule = ArrivalSchedule(500.0, "poisson", seed=42)
    whole = take(schedule.offsets_ns(), 10_000)
    assert whole[0] == 0
    assert whole == take(ArrivalSchedule(500.0, "poisson", seed=42).offsets_ns(), 10_000)
    # Taken in pieces across the generator's internal chunks, it is the same sequence.
    it = schedule.offsets_ns()
    assert take(it, 3) + take(it, 5_000) + take(it, 4_997) == whole
    assert whole != take(ArrivalSchedule(500.0, "poisson", seed=43).offsets_ns(), 10_000)
    assert all(isinstance(t, int) for t in whole) and whole == sorted(whole)


def test_poisson_gaps_are_exponential_with_mean_one_over_rate():
    n = 20_000
    rate = 250.0
    offsets = take(ArrivalSchedule(rate, "poisson", seed=7).offsets_ns(), n + 1)
    gaps = np.diff(np.array(offsets, dtype=np.float64))
    mean_gap = 1e9 / rate
    # The sample mean of n exponential gaps has standard deviation mean/√n; allow 5 of them.
    assert abs(gaps.mean() - mean_gap) <= 5 * mean_gap / math.sqrt(n)
    # Its variance is mean²; the sample variance's standard deviation is √(8/n)·mean².
    assert abs(gaps.var() / mean_gap**2 - 1) <= 5 * math.sqrt(8 / n)
    # Memoryless: about e⁻¹ of the gaps exceed the mean (binomial standard deviation, 5 of them).
    share = (gaps > mean_gap).mean()
    assert abs(share - math.exp(-1)) <= 5 * math.sqrt(math.exp(-1) * (1 - math.exp(-1)) / n)


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
@pytest.mark.parametrize("workers", [1, 2, 3, 7])
def test_worker_shares_union_to_the_whole_schedule(arrival, workers):
    schedule = ArrivalSchedule(800.0, arrival, seed=11)
    n = 6_001
    whole = take(schedule.offsets_ns(), n)
    shares = [take(schedule.worker_offsets_ns(w, workers), math.ceil((n - w) / workers)) for w in range(workers)]
    assert sum(len(s) for s in shares) == n
    for w, share in enumerate(shares):
        assert share == whole[w::workers]
    assert sorted(itertools.chain.from_iterable(shares)) == whole


def test_worker_index_out_of_range_is_refused():
    with pytest.raises(ConfigError, match=r"worker must be in \[0, 2\)"):
        ArrivalSchedule(1.0).worker_offsets_ns(2, 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rate_rps=0.0), "rate must be > 0"),
        (dict(rate_rps=1.0, arrival="bursty"), "arrival must be one of"),
        (dict(rate_rps=1.0, seed=-1), "seed must be >= 0"),
    ],
)
def test_bad_schedules_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ArrivalSchedule(**kwargs)


def test_split_evenly():
    assert split_evenly(7, 3) == (3, 2, 2)
    assert split_evenly(2, 4) == (1, 1, 0, 0)
    assert sum(split_evenly(1001, 16)) == 1001
    with pytest.raises(ConfigError, match="cannot split"):
        split_evenly(3, 0)


def test_tenant_seeds_are_deterministic_and_distinct():
    assert tenant_seed(0, "resnet50") == tenant_seed(0, "resnet50")
    seeds = {tenant_seed(s, t) for s in (0, 1) for t in ("resnet50", "inception_v3")}
    assert len(seeds) == 4


def test_open_loop_mix_shares_the_rate_by_weight():
    mix = TrafficMix.open_loop(
        [TenantSpec("resnet50", weight=1.0), TenantSpec("inception_v3", "canary", 3.0)], 100.0, "constant", run_seed=5
    )
    assert mix.offered_rates_rps() == {"resnet50": 25.0, "inception_v3@canary": 75.0}
    b = mix.tenant("inception_v3@canary")
    assert (b.model, b.target, b.arrival, b.seed) == ("inception_v3", "canary", "constant", tenant_seed(5, b.tenant))
    assert b.schedule() == ArrivalSchedule(75.0, "constant", tenant_seed(5, b.tenant))


def test_holding_one_tenant_and_moving_the_other():
    mix = TrafficMix.open_loop([TenantSpec("a"), TenantSpec("b")], 20.0)
    moved = mix.with_rate("b", 40.0)
    assert moved.offered_rates_rps() == {"a": 10.0, "b": 40.0}
    assert mix.offered_rates_rps() == {"a": 10.0, "b": 10.0}
    with pytest.raises(ConfigError, match="no tenant 'c'"):
        mix.with_rate("c", 1.0)


def test_closed_loop_mix():
    mix = TrafficMix.closed_loop([TenantSpec("a"), TenantSpec("b")], concurrency=4)
    assert [t.concurrency for t in mix.tenants] == [4, 4]
    assert mix.offered_rates_rps() == {"a": None, "b": None}
    with pytest.raises(ConfigError, match="no arrival schedule"):
        mix.tenants[0].schedule()
    with pytest.raises(ConfigError, match="drop the weights"):
        TrafficMix.closed_loop([TenantSpec("a", weight=2.0)], 4)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: TenantLoad("a", "a"), "exactly one of"),
        (lambda: TenantLoad("a", "a", rate_rps=1.0, concurrency=1), "exactly one of"),
        (lambda: TenantLoad("a", "a", concurrency=0), "concurrency must be >= 1"),
        (lambda: TenantLoad("a", "a", rate_rps=-1.0), "rate must be > 0"),
        (lambda: TrafficMix((TenantLoad("a", "a", concurrency=1),) * 2), "unique"),
        (lambda: TrafficMix(()), "at least one tenant"),
        (lambda: TenantSpec("a", weight=0.0), "weight"),
        (lambda: TenantSpec("a", target=""), "must not be empty"),
    ],
)
def test_bad_mixes_are_refused(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_mix_json_round_trip():
    mix = TrafficMix(
        (TenantLoad("a", "resnet50", rate_rps=12.5, seed=3), TenantLoad("b", "vgg16", target="2", concurrency=8))
    )
    assert TrafficMix.from_json(json.loads(json.dumps(mix.to_json()))) == mix


def test_tenants_built_without_a_seed_get_their_own_stream_and_keep_it_through_json():
    a = TenantLoad("resnet50", "resnet50", rate_rps=10.0)
    b = TenantLoad("inception_v3", "inception_v3", rate_rps=20.0)
    assert (a.seed, b.seed) == (tenant_seed(0, "resnet50"), tenant_seed(0, "inception_v3"))
    assert a.seed != b.seed
    assert TenantLoad("resnet50", "resnet50", rate_rps=5.0).seed == a.seed  # stable for a name
    assert TenantLoad("resnet50", "resnet50", rate_rps=10.0, seed=0).seed == 0  # a seed given is kept
    assert TenantLoad.from_json(json.loads(json.dumps(b.to_json()))) == b
    # Not one stream scaled in time: the gaps, rescaled to the same rate, differ.
    gaps_a = np.diff(list(itertools.islice(a.schedule().offsets_ns(), 200))) * a.rate_rps
    gaps_b = np.diff(list(itertools.islice(b.schedule().offsets_ns(), 200))) * b.rate_rps
    assert not np.allclose(gaps_a, gaps_b, rtol=1e-3)
