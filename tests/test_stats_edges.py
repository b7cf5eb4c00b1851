"""Nearest-rank percentiles and LatencySummary validation exactly at their bounds.

Companion of test_stats.py: exact ranks where p·n/100 is an integer, just above it and just
below it, and each rule of LatencySummary.__post_init__ on its own, with its message.
"""

import pytest

from conftest import exactly
from tfs_bench.stats import LatencySummary
from tfs_bench.stats import percentile
from tfs_bench.stats import rank_of

NONE = (None,) * 8


@pytest.mark.parametrize(
    "p, n, rank",
    [
        # p·n/100 an integer: the rank is that integer, not one more.
        (50, 4, 2),
        (25, 4, 1),
        (75, 4, 3),
        (90, 10, 9),
        # Just above: ⌈2.0004⌉ = 3, ⌈9.001⌉ = 10.
        (50.01, 4, 3),
        (90.01, 10, 10),
        # Just below: ⌈1.9996⌉ = 2.
        (49.99, 4, 2),
        # The smallest legal p still picks a sample (rank 1), the largest is the maximum.
        (1e-9, 1000, 1),
        (100, 1000, 1000),
    ],
)
def test_rank_at_just_above_and_just_below_an_integer(p, n, rank):
    assert rank_of(p, n) == rank
    assert percentile(list(range(1, n + 1)), p) == rank  # sample k of 1..n is k


def test_rank_of_no_samples_names_the_problem():
    with pytest.raises(ValueError, match=exactly("a percentile of no samples is undefined")):
        rank_of(50, 0)
    assert rank_of(50, 1) == 1


def test_percentile_bounds_are_open_at_0_and_closed_at_100():
    with pytest.raises(ValueError, match=exactly("percentile must be in (0, 100], got 0")):
        rank_of(0, 5)
    assert rank_of(100, 5) == 5


def summary(count, *values):
    return LatencySummary(count, *values)


def test_an_empty_summary_has_only_nones():
    assert summary(0, *NONE).count == 0


@pytest.mark.parametrize("values", [(1.0,) * 8, (None,) * 7 + (1.0,)], ids=["all set", "one set"])
def test_an_empty_summary_with_a_statistic_is_refused(values):
    with pytest.raises(ValueError, match=exactly("an empty latency summary has no statistics")):
        summary(0, *values)


def test_a_negative_count_is_refused():
    with pytest.raises(ValueError, match=exactly("count must be >= 0, got -1")):
        summary(-1, *NONE)


@pytest.mark.parametrize(
    "values",
    [NONE, (-1.0,) * 8, (0.0,) * 7 + (-0.001,)],
    ids=["missing", "all negative", "one negative"],
)
def test_a_summary_of_one_request_needs_every_statistic_non_negative(values):
    with pytest.raises(ValueError, match=r"^statistics must be >= 0: LatencySummary\(count=1, "):
        summary(1, *values)


def test_zero_latencies_are_a_valid_summary():
    assert summary(1, *(0.0,) * 8).max_ms == 0.0


def test_a_summary_of_one_request_must_not_decrease():
    # p50 .. p99.9 then mean, std, max: p99 (2.0) above p99.9 (1.0).
    with pytest.raises(ValueError, match=r"^percentiles must not decrease: "):
        summary(1, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 0.0, 2.0)
    # Equal neighbours do not decrease.
    assert summary(1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0).p99_ms == 1.0
