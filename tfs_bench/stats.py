"""Latency statistics: exact nearest-rank percentiles from raw samples, and a mergeable histogram.

Percentile definition (nearest rank): the p-th percentile of n samples, p in (0, 100], is the
smallest sample x such that at least p% of the samples are ≤ x; on the ascending sorted samples
it is the one at 1-based rank ⌈p·n/100⌉. It is always one of the samples (never interpolated),
p = 100 is the maximum, and ⌈·⌉ is taken exactly (p is read as the decimal it prints as, so
p = 99.9 with n = 1000 is rank 999, not 1000 through floating-point rounding).

Mean and standard deviation are exact over all samples; the standard deviation is the
population one (divide by n): a window's samples are the whole population it describes, and it
keeps histograms and raw samples in exact agreement.

`LatencyHistogram` is for when raw samples are too many to keep or ship between processes: its
count, mean, std and max are exact, its merge is exact (bucket counts add), and a percentile it
reports is never below the true nearest-rank value and at most `relative_error_bound` above it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from fractions import Fraction

REPORTED_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
HISTOGRAM_SCHEMA_VERSION = 1
_NS_PER_MS = 1_000_000


def rank_of(p: float, n: int) -> int:
    """The 1-based rank ⌈p·n/100⌉ of the nearest-rank p-th percentile among n samples."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    if n < 1:
        raise ValueError("a percentile of no samples is undefined")
    return math.ceil(Fraction(str(p)) * n / 100)


def percentile(sorted_samples: Sequence[int | float], p: float) -> int | float:
    """The nearest-rank p-th percentile of ascending samples (see the module docstring)."""
    return sorted_samples[rank_of(p, len(sorted_samples)) - 1]


@dataclasses.dataclass(frozen=True)
class LatencySummary:
    """Latency of `count` requests in ms; every statistic is None when there are none."""

    count: int
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p99_9_ms: float | None
    mean_ms: float | None
    std_ms: float | None
    max_ms: float | None

    def __post_init__(self):
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        values = [getattr(self, name) for name in _STAT_FIELDS]
        if self.count == 0 and any(v is not None for v in values):
            raise ValueError("an empty latency summary has no statistics")
        if self.count > 0:
            if any(v is None or v < 0 for v in values):
                raise ValueError(f"statistics must be >= 0: {self}")
            ordered = [self.p50_ms, self.p90_ms, self.p95_ms, self.p99_ms, self.p99_9_ms, self.max_ms]
            if ordered != sorted(ordered):
                raise ValueError(f"percentiles must not decrease: {self}")

    def at(self, p: float) -> float | None:
        """The reported percentile p (one of REPORTED_PERCENTILES), in ms."""
        return getattr(self, percentile_field(p))

    def to_json(self) -> dict:
        return {"count": self.count, **{name: getattr(self, name) for name in _STAT_FIELDS}}

    @classmethod
    def from_json(cls, d: dict) -> "LatencySummary":
        return cls(count=d["count"], **{name: d[name] for name in _STAT_FIELDS})


_PERCENTILE_FIELDS = {50.0: "p50_ms", 90.0: "p90_ms", 95.0: "p95_ms", 99.0: "p99_ms", 99.9: "p99_9_ms"}
_STAT_FIELDS = tuple(_PERCENTILE_FIELDS.values()) + ("mean_ms", "std_ms", "max_ms")
EMPTY_SUMMARY = LatencySummary(0, *([None] * len(_STAT_FIELDS)))


def percentile_field(p: float) -> str:
    """The LatencySummary field holding percentile p, e.g. 99.9 -> 'p99_9_ms'."""
    try:
        return _PERCENTILE_FIELDS[float(p)]
    except KeyError:
        raise ValueError(f"percentile {p} is not reported; choose one of {REPORTED_PERCENTILES}") from None


def summarize_latencies(samples_ns: Iterable[int]) -> LatencySummary:
    """Exact summary of raw latencies given in integer nanoseconds."""
    ordered = sorted(samples_ns)
    if not ordered:
        return EMPTY_SUMMARY
    total = sum(ordered)
    total_sq = sum(x * x for x in ordered)
    return _summary(len(ordered), total, total_sq, lambda p: percentile(ordered, p))


def _summary(count: int, total: int, total_sq: int, percentile_ns: Callable[[float], int]) -> LatencySummary:
    variance_ns2 = Fraction(count * total_sq - total * total, count * count)
    return LatencySummary(
        count=count,
        **{field: percentile_ns(p) / _NS_PER_MS for p, field in _PERCENTILE_FIELDS.items()},
        mean_ms=total / (count * _NS_PER_MS),
        std_ms=math.sqrt(variance_ns2 / _NS_PER_MS**2),
        max_ms=percentile_ns(100) / _NS_PER_MS,
    )


class LatencyHistogram:
    """Log-linear buckets over non-negative integer nanoseconds (HdrHistogram's layout).

    Values below 2^b (b = `sub_bucket_bits`) have a bucket each; above, a value v with bit length
    L keeps its top b bits: it falls in a bucket [m·2^e, (m+1)·2^e) with e = L − b and
    m = v >> e ≥ 2^(b−1), so a bucket is narrower than 2^−(b−1) of its values. Percentiles report
    the bucket's highest value (capped at the exact maximum), so they are never below the truth.
    """

    def __init__(self, sub_bucket_bits: int = 11):
        if not 2 <= sub_bucket_bits <= 30:
            raise ValueError(f"sub_bucket_bits must be in [2, 30], got {sub_bucket_bits}")
        self.sub_bucket_bits = sub_bucket_bits
        self.count = 0
        self.total_ns = 0
        self.total_sq_ns2 = 0
        self.max_ns = 0
        self._counts: dict[int, int] = {}

    @property
    def relative_error_bound(self) -> float:
        return 2.0 ** -(self.sub_bucket_bits - 1)

    def record(self, value_ns: int, count: int = 1) -> None:
        if value_ns < 0 or count < 1:
            raise ValueError(f"cannot record {count} x {value_ns} ns")
        index = self._index(value_ns)
        self._counts[index] = self._counts.get(index, 0) + count
        self.count += count
        self.total_ns += value_ns * count
        self.total_sq_ns2 += value_ns * value_ns * count
        self.max_ns = max(self.max_ns, value_ns)

    def record_all(self, values_ns: Iterable[int]) -> None:
        for value in values_ns:
            self.record(value)

    def merged(self, other: "LatencyHistogram") -> "LatencyHistogram":
        """A new histogram holding both; equal to one that recorded every value of both."""
        if other.sub_bucket_bits != self.sub_bucket_bits:
            raise ValueError("histograms with different sub_bucket_bits cannot be merged exactly")
        result = LatencyHistogram(self.sub_bucket_bits)
        for source in (self, other):
            for index, count in source._counts.items():
                result._counts[index] = result._counts.get(index, 0) + count
            result.count += source.count
            result.total_ns += source.total_ns
            result.total_sq_ns2 += source.total_sq_ns2
            result.max_ns = max(result.max_ns, source.max_ns)
        return result

    def percentile_ns(self, p: float) -> int:
        rank = rank_of(p, self.count)
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            if seen >= rank:
                return min(self._highest_in_bucket(index), self.max_ns)
        raise AssertionError("bucket counts do not add up to count")

    def summary(self) -> LatencySummary:
        if self.count == 0:
            return EMPTY_SUMMARY
        return _summary(self.count, self.total_ns, self.total_sq_ns2, self.percentile_ns)

    def _index(self, value: int) -> int:
        shift = max(value.bit_length() - self.sub_bucket_bits, 0)
        return shift * (1 << (self.sub_bucket_bits - 1)) + (value >> shift)

    def _highest_in_bucket(self, index: int) -> int:
        half = 1 << (self.sub_bucket_bits - 1)
        shift = max(index // half - 1, 0)
        mantissa = index - shift * half
        return ((mantissa + 1) << shift) - 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return self.to_json() == other.to_json()

    def to_json(self) -> dict:
        return {
            "schema_version": HISTOGRAM_SCHEMA_VERSION,
            "sub_bucket_bits": self.sub_bucket_bits,
            "count": self.count,
            "total_ns": self.total_ns,
            "total_sq_ns2": self.total_sq_ns2,
            "max_ns": self.max_ns,
            "buckets": [[index, self._counts[index]] for index in sorted(self._counts)],
        }

    @classmethod
    def from_json(cls, d: dict) -> "LatencyHistogram":
        if d.get("schema_version") != HISTOGRAM_SCHEMA_VERSION:
            raise ValueError(f"unsupported histogram schema_version {d.get('schema_version')!r}")
        histogram = cls(d["sub_bucket_bits"])
        histogram._counts = {int(index): int(count) for index, count in d["buckets"]}
        histogram.count = d["count"]
        histogram.total_ns = d["total_ns"]
        histogram.total_sq_ns2 = d["total_sq_ns2"]
        histogram.max_ns = d["max_ns"]
        if sum(histogram._counts.values()) != histogram.count:
            raise ValueError("histogram bucket counts do not add up to its count")
        return histogram
