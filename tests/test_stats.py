import json
import math

import pytest

from tfs_bench.stats import EMPTY_SUMMARY
from tfs_bench.stats import REPORTED_PERCENTILES
from tfs_bench.stats import LatencySummary
from tfs_bench.stats import percentile
from tfs_bench.stats import rank_of
from tfs_bench.stats import summarize_latencies

MS = 1_000_000


@pytest.mark.parametrize(
    "p, expected",
    # The textbook nearest-rank example: ranks ⌈p·5/100⌉.
    [(5, 15), (20, 15), (30, 20), (40, 20), (50, 35), (60, 35), (80, 40), (81, 50), (100, 50)],
)
def test_nearest_rank_known_answers(p, expected):
    assert percentile([15, 20, 35, 40, 50], p) == expected


@pytest.mark.parametrize("p", [0.1, 50, 99.9, 100])
def test_one_sample_is_every_percentile(p):
    assert percentile([7], p) == 7


@pytest.mark.parametrize("p, expected", [(20, 1), (20.1, 2), (80, 2), (80.1, 3), (100, 3)])
def test_ties(p, expected):
    assert percentile([1, 2, 2, 2, 3], p) == expected


def test_rank_is_exact_where_floating_point_would_round_up():
    # 99.9 / 100 * 1000 is 999.0000000000001 in binary floating point; the rank is 999.
    assert 99.9 / 100 * 1000 > 999
    assert rank_of(99.9, 1000) == 999
    assert percentile(list(range(1, 1001)), 99.9) == 999
    assert rank_of(99, 100) == 99
    assert rank_of(100, 7) == 7
    assert rank_of(0.001, 7) == 1


@pytest.mark.parametrize("p", [0, -1, 100.01])
def test_percentile_outside_0_100_is_refused(p):
    with pytest.raises(ValueError, match=r"\(0, 100\]"):
        percentile([1, 2], p)


def test_percentile_of_nothing_is_refused():
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_summary_known_answer():
    s = summarize_latencies([4 * MS, 1 * MS, 3 * MS, 2 * MS])
    assert s == LatencySummary(
        count=4,
        p50_ms=2.0,
        p90_ms=4.0,
        p95_ms=4.0,
        p99_ms=4.0,
        p99_9_ms=4.0,
        mean_ms=2.5,
        std_ms=math.sqrt(1.25),  # population standard deviation
        max_ms=4.0,
        # Ranks ⌊np − 1.96·√(np(1−p))⌋ .. ⌈np + 1.96·√(np(1−p))⌉, clipped to 1..4:
        # p50: 2 ∓ 1.96 → 1..4; p90: 3.6 ∓ 1.176 → 2..4; p95: 3.8 ∓ 0.854 → 2..4;
        # p99: 3.96 ∓ 0.390 → 3..4; p99.9: 3.996 ∓ 0.124 → 3..4.
        bounds_ms={"p50_ms": (1.0, 4.0), "p90_ms": (2.0, 4.0), "p95_ms": (2.0, 4.0), "p99_ms": (3.0, 4.0),
                   "p99_9_ms": (3.0, 4.0)},
    )
    assert s.at(50) == 2.0 and s.at(99.9) == 4.0


def test_summary_of_nothing_is_empty():
    assert summarize_latencies([]) == EMPTY_SUMMARY
    assert EMPTY_SUMMARY.count == 0 and EMPTY_SUMMARY.p99_ms is None and EMPTY_SUMMARY.at(95) is None


def test_unreported_percentile_is_refused():
    with pytest.raises(ValueError, match="not reported"):
        EMPTY_SUMMARY.at(97)


def test_summary_validation():
    with pytest.raises(ValueError, match="must not decrease"):
        LatencySummary(2, 5.0, 4.0, 5.0, 5.0, 5.0, 5.0, 0.0, 5.0)
    with pytest.raises(ValueError, match="no statistics"):
        LatencySummary(0, 1.0, None, None, None, None, None, None, None)


def test_summary_json_round_trip():
    s = summarize_latencies([3 * MS, 1 * MS, 10 * MS])
    assert LatencySummary.from_json(json.loads(json.dumps(s.to_json()))) == s


def test_reported_percentiles():
    assert REPORTED_PERCENTILES == (50.0, 90.0, 95.0, 99.0, 99.9)
