"""Latency statistics: exact nearest-rank percentiles from raw samples.

Percentile definition (nearest rank): the p-th percentile of n samples, p in (0, 100], is the
smallest sample x such that at least p% of the samples are ≤ x; on the ascending sorted samples
it is the one at 1-based rank ⌈p·n/100⌉. It is always one of the samples (never interpolated),
p = 100 is the maximum, and ⌈·⌉ is taken exactly (p is read as the decimal it prints as, so
p = 99.9 with n = 1000 is rank 999, not 1000 through floating-point rounding).

Mean and standard deviation are exact over all samples; the standard deviation is the
population one (divide by n): a window's samples are the whole population it describes.

Statistics over several workers or windows are never merged from their summaries: the raw
samples are pooled and summarised again (see tfs_bench.load.verdict).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from collections.abc import Sequence
from fractions import Fraction

REPORTED_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
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
    count, total = len(ordered), sum(ordered)
    variance_ns2 = Fraction(count * sum(x * x for x in ordered) - total * total, count * count)
    return LatencySummary(
        count=count,
        **{field: percentile(ordered, p) / _NS_PER_MS for p, field in _PERCENTILE_FIELDS.items()},
        mean_ms=total / (count * _NS_PER_MS),
        std_ms=math.sqrt(variance_ns2 / _NS_PER_MS**2),
        max_ms=ordered[-1] / _NS_PER_MS,
    )
