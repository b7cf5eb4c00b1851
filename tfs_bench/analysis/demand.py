"""What the cost section is asked: the demand to serve and which priced machines the measured ones stand for.

    demand = parse_demand(["tiny_cnn=2000", "mobilenet_v2_small=400"])   # inferences/s per model
    choice = parse_instances(["AWS:c5.xlarge", "GCP:n1-standard-4 + 1×T4:us-central1"])

Both come from flags (`--demand`, `--instances`) of tfs_bench.run (kept in the run's flags.txt)
and of tfs_bench.report (which override the run's). Each refuses bad text with a ConfigError
naming the flag and the item.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from collections.abc import Sequence

from tfs_bench.analysis.prices import PriceRow
from tfs_bench.errors import ConfigError


def parse_demand(values: Iterable[str]) -> dict[str, float]:
    """`model=inferences_per_s` items → {model: rate}; a model twice, a bad or negative rate is refused."""
    demand: dict[str, float] = {}
    for value in values:
        model, sep, rate = value.partition("=")
        model = model.strip()
        try:
            number = float(rate)
        except ValueError:
            number = math.nan
        if not sep or not model or not math.isfinite(number) or number < 0:
            raise ConfigError(f"--demand takes MODEL=INFERENCES_PER_S items with a rate >= 0, e.g. tiny_cnn=500, got {value!r}")
        if model in demand:
            raise ConfigError(f"--demand names {model} twice")
        demand[model] = number
    return demand


@dataclasses.dataclass(frozen=True)
class InstanceChoice:
    """A price-table row named by provider and instance, and optionally region."""

    provider: str
    instance: str
    region: str | None = None

    def matches(self, row: PriceRow) -> bool:
        return (row.provider, row.instance) == (self.provider, self.instance) and self.region in (None, row.region)

    def __str__(self) -> str:
        return ":".join(p for p in (self.provider, self.instance, self.region) if p)


def parse_instances(values: Iterable[str]) -> tuple[InstanceChoice, ...]:
    """`PROVIDER:INSTANCE[:REGION]` items (instance names hold spaces and '+', never ':')."""
    choices = []
    for value in values:
        parts = [p.strip() for p in value.split(":")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ConfigError(f"--instances takes PROVIDER:INSTANCE[:REGION] items, e.g. AWS:c5.xlarge, got {value!r}")
        choices.append(InstanceChoice(*parts))
    return tuple(choices)


def select_rows(rows: Sequence[PriceRow], choices: Sequence[InstanceChoice]) -> tuple[PriceRow, ...]:
    """The rows the choices name, in table order; a choice that names no row is refused."""
    for choice in choices:
        if not any(choice.matches(row) for row in rows):
            raise ConfigError(f"--instances: {choice} is not in the price table")
    return tuple(row for row in rows if any(c.matches(row) for c in choices))
