"""The Poisson schedule's gaps are independent exponentials: fit, autocorrelation, no repeats.

test_schedule.py checks the gaps' mean, variance and the memoryless share; a generator can pass
all three and still be wrong in ways that bias a load test: repeating its gaps every chunk (a
generator re-seeded per chunk), gaps that lean on their neighbours (smoothed or batched draws),
or a distribution with the right mean and variance but the wrong shape. Each test here would
fail on one of those. Seeds are fixed, so every figure below is the same on every run; the
bounds are the usual critical values, so a correct generator clears them by a wide margin.
"""

import itertools
import math

import numpy as np
import pytest

from tfs_bench.load.schedule import ArrivalSchedule
from tfs_bench.load.schedule import tenant_seed

N = 20_000  # gaps per test: several of the generator's internal chunks
RATE_RPS = 250.0
MEAN_GAP_NS = 1e9 / RATE_RPS


def gaps_ns(seed: int, n: int = N, rate_rps: float = RATE_RPS) -> np.ndarray:
    offsets = list(itertools.islice(ArrivalSchedule(rate_rps, "poisson", seed=seed).offsets_ns(), n + 1))
    return np.diff(np.array(offsets, dtype=np.float64))


def autocorrelation(x: np.ndarray) -> np.ndarray:
    """r_k for every lag k = 0 … n − 1 (r_0 = 1), through the FFT (zero-padded: not circular)."""
    centred = x - x.mean()
    spectrum = np.fft.rfft(centred, 2 * len(x))
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: len(x)]
    return acf / acf[0]


def ks_statistic(sample: np.ndarray, cdf) -> float:
    """Kolmogorov–Smirnov D: the largest distance between the sample's and the model's CDF."""
    ordered = np.sort(sample)
    n = len(ordered)
    model = cdf(ordered)
    above = np.arange(1, n + 1) / n - model
    below = model - np.arange(0, n) / n
    return float(max(above.max(), below.max()))


def runs_of_8(gaps: np.ndarray) -> set[tuple[int, ...]]:
    whole = gaps.astype(np.int64).tolist()
    return {tuple(whole[i : i + 8]) for i in range(len(whole) - 7)}


@pytest.mark.parametrize("seed", [7, tenant_seed(0, "resnet50")])
def test_gaps_fit_an_exponential_distribution(seed):
    gaps = gaps_ns(seed)
    d = ks_statistic(gaps, lambda x: 1 - np.exp(-x / MEAN_GAP_NS))
    # Kolmogorov's critical value at α = 0.001 is 1.949/√n (about 0.0138 for 20,000 gaps).
    assert d < 1.949 / math.sqrt(N), d
    # Chi-square over 20 bins of equal expected count (edges at the exponential's quantiles):
    # 19 degrees of freedom, critical value 43.82 at α = 0.001.
    edges = -MEAN_GAP_NS * np.log(1 - np.arange(1, 20) / 20)
    counts = np.bincount(np.searchsorted(edges, gaps), minlength=20)
    expected = N / 20
    assert ((counts - expected) ** 2 / expected).sum() < 43.82


def test_a_uniform_distribution_with_the_same_mean_fails_the_fit():
    # The fit test can fail: uniform gaps on [0, 2·mean] have the exponential's mean.
    uniform = np.random.default_rng(1).uniform(0, 2 * MEAN_GAP_NS, N)
    assert ks_statistic(uniform, lambda x: 1 - np.exp(-x / MEAN_GAP_NS)) > 1.949 / math.sqrt(N)


def test_gaps_are_uncorrelated_at_every_lag():
    gaps = gaps_ns(seed=7)
    r = autocorrelation(gaps)
    # Independent gaps: each r_k is about normal with standard deviation 1/√n. Over the 10,000
    # lags checked the largest |r_k| stays near √(2 ln 10⁴)/√n ≈ 4.3/√n; 6/√n is far beyond
    # chance, while a schedule repeating with period p has r_p near 1, and one whose gaps are
    # averaged with a neighbour has r_1 near 0.5.
    assert np.abs(r[1 : N // 2]).max() < 6 / math.sqrt(N)


def test_the_autocorrelation_test_sees_a_repeat():
    # The check above can fail: gaps repeating every 4,096 arrivals give r_4096 near 1.
    block = np.random.default_rng(2).exponential(MEAN_GAP_NS, 4_096)
    r = autocorrelation(np.tile(block, 5)[:N])
    assert r[4_096] > 0.7


def test_no_run_of_gaps_ever_repeats():
    # Gaps are whole nanoseconds around 4 ms, so two equal gaps happen now and then (a pair has
    # a chance of about 1/(2·mean) = 1.25·10⁻⁷), but eight in a row essentially never.
    assert len(runs_of_8(gaps_ns(seed=7))) == N - 7


def test_every_chunk_of_the_schedule_is_new():
    # Cut into blocks of 1,000 gaps (no multiple of any plausible internal chunk): no two equal.
    gaps = gaps_ns(seed=7).astype(np.int64)
    blocks = {gaps[i : i + 1_000].tobytes() for i in range(0, N, 1_000)}
    assert len(blocks) == N // 1_000


def test_tenants_schedules_are_independent_of_each_other():
    a = gaps_ns(tenant_seed(3, "resnet50"))
    b = gaps_ns(tenant_seed(3, "inception_v3"))
    # Correlation of independent samples: standard deviation 1/√n; 5 of them is the bound.
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(N)
    # Nor is one the other shifted: no run of 8 gaps is in both.
    assert not runs_of_8(a) & runs_of_8(b)
