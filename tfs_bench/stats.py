"""Latency statistics: exact nearest-rank percentiles from raw samples.

Percentile definition (nearest rank): the p-th percentile of n samples, p in (0, 100], is the
smallest sample x such that at least p% of the samples are ≤ x; on the ascending sorted samples
it is the one at 1-based rank ⌈p·n/100⌉. It is always one of the samples (never interpolated),
p = 100 is the maximum, and ⌈·⌉ is taken exactly (p is read as the decimal it prints as, so
p = 99.9 with n = 1000 is rank 999, not 1000 through floating-point rounding).

Mean and standard deviation are exact over all samples; the standard deviation is the
population one (divide by n): a window's samples are the whole population it describes.

Each reported percentile carries a distribution-free 95% confidence interval, `bounds_ms`: the
samples at ranks ⌊np − z·√(np(1−p))⌋ and ⌈np + z·√(np(1−p))⌉ (p as a fraction, z = 1.96, ranks
clipped to [1, n]), the normal approximation of the binomial count of samples below the true
percentile. It says how far a percentile of few samples can move by chance alone: stability
judges a window's percentile by it (tfs_bench.load.windows).

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
CONFIDENCE_Z = 1.96  # two-sided 95%
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


def rank_bounds(p: float, n: int, z: float = CONFIDENCE_Z) -> tuple[int, int]:
    """1-based ranks (low, high) of the confidence interval of the p-th percentile of n samples."""
    rank = rank_of(p, n)
    q = Fraction(str(p)) / 100
    centre = q * n
    half = z * math.sqrt(centre * (1 - q))
    low = max(1, math.floor(centre - Fraction(half)))
    high = min(n, math.ceil(centre + Fraction(half)))
    return min(low, rank), max(high, rank)


def percentile_bounds(sorted_samples: Sequence[int | float], p: float) -> tuple[int | float, int | float]:
    """The samples bounding the p-th percentile's confidence interval (see the module docstring)."""
    low, high = rank_bounds(p, len(sorted_samples))
    return sorted_samples[low - 1], sorted_samples[high - 1]


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
    # Per reported percentile's field, its confidence interval (low, high) in ms; None when not
    # computed (summaries read from files written before it existed, or made by hand).
    bounds_ms: dict[str, tuple[float, float]] | None = None

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
        if self.bounds_ms is not None:
            object.__setattr__(self, "bounds_ms", {k: tuple(v) for k, v in self.bounds_ms.items()})
            if self.count == 0 or set(self.bounds_ms) != set(_PERCENTILE_FIELDS.values()):
                raise ValueError(f"bounds_ms needs an interval for each of {list(_PERCENTILE_FIELDS.values())}")
            for name, (low, high) in self.bounds_ms.items():
                if not low <= getattr(self, name) <= high:
                    raise ValueError(f"{name} {getattr(self, name)} lies outside its bounds [{low}, {high}]")

    def at(self, p: float) -> float | None:
        """The reported percentile p (one of REPORTED_PERCENTILES), in ms."""
        return getattr(self, percentile_field(p))

    def interval(self, p: float) -> tuple[float, float] | None:
        """The confidence interval of reported percentile p in ms: the point itself without bounds."""
        value = self.at(p)
        if value is None:
            return None
        if self.bounds_ms is None:
            return value, value
        return self.bounds_ms[percentile_field(p)]

    def to_json(self) -> dict:
        d = {"count": self.count, **{name: getattr(self, name) for name in _STAT_FIELDS}}
        if self.bounds_ms is not None:
            d["bounds_ms"] = {name: list(bounds) for name, bounds in self.bounds_ms.items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "LatencySummary":
        return cls(count=d["count"], **{name: d[name] for name in _STAT_FIELDS}, bounds_ms=d.get("bounds_ms"))


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
        bounds_ms={
            field: tuple(x / _NS_PER_MS for x in percentile_bounds(ordered, p)) for p, field in _PERCENTILE_FIELDS.items()
        },
    )
