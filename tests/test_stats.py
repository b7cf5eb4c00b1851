import json
import math

import numpy as np
import pytest

from tfs_bench.stats import EMPTY_SUMMARY
from tfs_bench.stats import REPORTED_PERCENTILES
from tfs_bench.stats import LatencyHistogram
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


def _lognormal_ns(seed: int, n: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.lognormal(mean=math.log(5 * MS), sigma=1.0, size=n)]


def test_histogram_is_exact_below_its_first_wide_bucket():
    values = list(range(0, 2048, 3)) * 2
    histogram = LatencyHistogram(sub_bucket_bits=11)
    histogram.record_all(values)
    assert histogram.summary() == summarize_latencies(values)


@pytest.mark.parametrize("bits", [4, 7, 11])
def test_histogram_percentiles_are_never_low_and_within_the_relative_error_bound(bits):
    values = _lognormal_ns(seed=1, n=20_000)
    ordered = sorted(values)
    histogram = LatencyHistogram(bits)
    histogram.record_all(values)
    for p in (0.1, 1, 25, 50, 90, 95, 99, 99.9, 99.99, 100):
        true = percentile(ordered, p)
        approx = histogram.percentile_ns(p)
        assert true <= approx <= true * (1 + histogram.relative_error_bound), (p, true, approx)
    assert histogram.percentile_ns(100) == max(values)


@pytest.mark.parametrize("bits", [2, 5, 11])
def test_every_bucket_is_narrower_than_the_bound(bits):
    # A value's percentile reports its bucket's top; sweep values across many powers of two.
    bound = 2.0 ** -(bits - 1)
    for value in [v for k in range(1, 45) for v in (2**k - 1, 2**k, 2**k + 1, 3 * 2**k // 2)]:
        histogram = LatencyHistogram(bits)
        histogram.record_all([value, 2**50])
        assert value <= histogram.percentile_ns(50) <= value * (1 + bound), value


def test_histogram_mean_std_max_and_count_are_exact():
    values = _lognormal_ns(seed=2, n=5_000)
    histogram = LatencyHistogram()
    histogram.record_all(values)
    exact, approx = summarize_latencies(values), histogram.summary()
    assert (approx.count, approx.mean_ms, approx.std_ms, approx.max_ms) == (
        exact.count,
        exact.mean_ms,
        exact.std_ms,
        exact.max_ms,
    )


def test_histogram_merge_equals_recording_everything_in_one():
    values = _lognormal_ns(seed=3, n=9_000)
    parts = [values[0::3], values[1::3], values[2::3]]
    whole = LatencyHistogram()
    whole.record_all(values)
    shards = []
    for part in parts:
        shards.append(LatencyHistogram())
        shards[-1].record_all(part)
    merged = shards[0].merged(shards[1]).merged(shards[2])
    assert merged == whole
    assert shards[2].merged(shards[0]).merged(shards[1]) == whole
    assert merged.summary() == whole.summary()
    assert shards[0].count == 3_000  # merging did not change its inputs


def test_histogram_merge_of_different_resolutions_is_refused():
    with pytest.raises(ValueError, match="different sub_bucket_bits"):
        LatencyHistogram(8).merged(LatencyHistogram(9))


def test_histogram_json_round_trip_for_shipping_between_workers():
    histogram = LatencyHistogram()
    histogram.record_all(_lognormal_ns(seed=4, n=1_000))
    again = LatencyHistogram.from_json(json.loads(json.dumps(histogram.to_json())))
    assert again == histogram and again.summary() == histogram.summary()
    tampered = histogram.to_json() | {"count": 999}
    with pytest.raises(ValueError, match="do not add up"):
        LatencyHistogram.from_json(tampered)


def test_empty_histogram_and_bad_values():
    assert LatencyHistogram().summary() == EMPTY_SUMMARY
    with pytest.raises(ValueError):
        LatencyHistogram().record(-1)


def test_reported_percentiles():
    assert REPORTED_PERCENTILES == (50.0, 90.0, 95.0, 99.0, 99.9)
