"""The one place that knows each metric: its unit, how it prints and whether higher is better.

Names carry their unit (`throughput_rps`, `p99_ms`, `duration_s`); fractions are stored as
fractions (0.012) and printed as percentages (1.2%). Tables, plots and comparisons look metrics
up here instead of guessing from a name.
"""

from __future__ import annotations

import dataclasses
import types

UNITS = ("rps", "inferences/s", "ms", "s", "fraction", "count")


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    higher_is_better: bool | None  # None: a setting or a size, not a quality
    decimals: int
    description: str

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"unit of {self.name} must be one of {UNITS}, got {self.unit!r}")
        if self.decimals < 0:
            raise ValueError(f"decimals of {self.name} must be >= 0")

    def format(self, value: float | int | None, with_unit: bool = True) -> str:
        """The value as tables print it; None (no samples) prints as 'n/a'."""
        if value is None:
            return "n/a"
        if self.unit == "fraction":
            return f"{100 * value:.{self.decimals}f}%"
        if self.unit == "count":
            return f"{int(value):d}"
        text = f"{value:.{self.decimals}f}"
        return f"{text} {self.unit}" if with_unit else text

    def better(self, a: float, b: float) -> bool:
        """Whether a is strictly better than b."""
        if self.higher_is_better is None:
            raise ValueError(f"{self.name} is not a quality; neither value is better")
        return a > b if self.higher_is_better else a < b


def _metrics(*metrics: Metric) -> types.MappingProxyType:
    return types.MappingProxyType({m.name: m for m in metrics})


METRICS = _metrics(
    Metric("throughput_rps", "rps", True, 1, "successful requests per second"),
    Metric("inferences_per_s", "inferences/s", True, 1, "images inferred per second (requests × batch size)"),
    Metric("offered_rate_rps", "rps", None, 1, "the rate the schedule asked for (open loop)"),
    Metric("achieved_rate_rps", "rps", None, 1, "requests answered per second, errors included (drops excluded)"),
    Metric("p50_ms", "ms", False, 2, "median latency"),
    Metric("p90_ms", "ms", False, 2, "90th percentile latency (nearest rank)"),
    Metric("p95_ms", "ms", False, 2, "95th percentile latency (nearest rank)"),
    Metric("p99_ms", "ms", False, 2, "99th percentile latency (nearest rank)"),
    Metric("p99_9_ms", "ms", False, 2, "99.9th percentile latency (nearest rank)"),
    Metric("mean_ms", "ms", False, 2, "mean latency"),
    Metric("std_ms", "ms", False, 2, "population standard deviation of latency"),
    Metric("max_ms", "ms", False, 2, "largest latency"),
    Metric("error_rate", "fraction", False, 2, "sent requests answered with a non-OK gRPC code"),
    Metric("late_fraction", "fraction", False, 2, "sent requests sent later than the timing bound after their intended time"),
    Metric("late_threshold_ms", "ms", None, 2, "the timing bound: max(1 ms, 5% of the median service time)"),
    Metric("scheduled", "count", None, 0, "arrivals the open-loop schedule intended in the interval"),
    Metric("dropped_fraction", "fraction", False, 2, "requests not sent because outstanding requests hit the cap"),
    Metric("requests", "count", True, 0, "successful requests"),
    Metric("errors", "count", False, 0, "requests answered with a non-OK gRPC code"),
    Metric("dropped", "count", False, 0, "requests not sent because outstanding requests hit the cap"),
    Metric("duration_s", "s", None, 1, "measured time"),
    Metric("generator_cpu_fraction", "fraction", False, 1, "load-generator CPU time ÷ wall time, busiest worker"),
    Metric("loop_lag_p99_ms", "ms", False, 2, "p99 of the load generator's event-loop wake-up lag, busiest worker"),
)


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}") from None
