"""The cost model: $/1M inferences, sharing capacity and savings, interference, machines for a demand.

Every function is pure and takes plain numbers or the frozen records below; the rules are the
ones docs/methodology.md ("Cost") states, and each refuses input that cannot give its figure
with an AnalysisError naming the problem.

Units: throughputs, capacities and demands are all inferences per second (a request of batch 1
is one inference); prices are USD per hour of one machine. A caller passes only SLA-compliant
VALID throughputs: an INVALID or missing result has no cost and must not reach these functions.

- **$/1M inferences** = usd_per_hour ÷ (3600 × throughput) × 10⁶.
- **Normalised capacity** of a mix = Σ tenant throughput ÷ tenant dedicated peak;
  **sharing savings** = 1 − 1/capacity (negative when sharing serves less than dedicated machines).
- **Interference** of a tenant: co-located p99 ÷ dedicated p99 and co-located throughput ÷
  dedicated throughput, both at the same offered rate.
- **Machines for one model** = ⌈demand ÷ per-machine capacity⌉, where a quotient within 10⁻⁹
  (relative) of a whole number counts as that number, so 2.7/0.3 (9.000000000000002 in floats)
  needs 9 machines, not 10; a
  model with zero demand needs none.
- **dedicated** placement: each model runs on machines of its own, so the fleet is the sum over
  models of the machines for that model at its dedicated peak.
- **multi_model / multi_process** (shared): every machine runs all models at one measured shared
  operating point (e.g. the balanced mix), serving capacity_i of each model i at once. n machines
  serve n × capacity_i of model i, so the fleet is the smallest n with n × capacity_i ≥ demand_i
  for every demanded model: the maximum over demanded models of the machines for that model at
  capacity_i. Only the measured point is used: there is no extrapolation to other mixes and no
  blending of shared and dedicated machines (offer each measured mix as its own option instead).
- **savings** = 1 − shared $/h ÷ dedicated $/h for the same demand.
- **cheapest**: each option's fleet for the demand, its $/h (machines × the instance's price) and
  its $/1M inferences served (fleet $/h at the total demand); ranked by $/h, then machines,
  placement, device, provider, instance, region and label (costs within 10⁻⁹ $/h are ties). An
  option with no capacity (missing or 0) for a demanded model is skipped with that reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from collections.abc import Sequence

from tfs_bench.analysis.prices import PriceRow
from tfs_bench.errors import AnalysisError
from tfs_bench.plan import placement as plan_placement

PLACEMENTS = plan_placement.HOSTINGS
DEVICES = plan_placement.DEVICES
DEDICATED = "dedicated"
SECONDS_PER_HOUR = 3600
INFERENCES_PER_MILLION = 1_000_000
WHOLE_TOLERANCE = 1e-9
COST_TIE_USD_PER_HOUR = 1e-9


def _finite(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AnalysisError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _positive(value, what: str) -> float:
    number = _finite(value, what)
    if number <= 0:
        raise AnalysisError(f"{what} must be above 0, got {value!r}")
    return number


def _not_negative(value, what: str) -> float:
    number = _finite(value, what)
    if number < 0:
        raise AnalysisError(f"{what} must not be negative, got {value!r}")
    return number


def usd_per_million(usd_per_hour: float, throughput_inferences_per_s: float) -> float:
    """USD per 10⁶ inferences of a machine priced usd_per_hour serving this SLA-compliant throughput."""
    price = _positive(usd_per_hour, "usd_per_hour")
    if throughput_inferences_per_s is None:
        raise AnalysisError("no SLA-compliant throughput: an INVALID or missing result has no cost per inference")
    throughput = _positive(throughput_inferences_per_s, "throughput_inferences_per_s")
    return price / (SECONDS_PER_HOUR * throughput) * INFERENCES_PER_MILLION


def _check_tenants(values: Mapping[str, float], peaks: Mapping[str, float]):
    if not values:
        raise AnalysisError("a mix needs at least one tenant throughput")
    missing = sorted(set(values) - set(peaks))
    if missing:
        raise AnalysisError(f"no dedicated peak for tenant(s) {', '.join(missing)}")
    unused = sorted(set(peaks) - set(values))
    if unused:
        raise AnalysisError(f"dedicated peak(s) for tenant(s) not in the mix: {', '.join(unused)}")


def normalised_capacity(tenant_throughputs: Mapping[str, float], dedicated_peaks: Mapping[str, float]) -> float:
    """Σ tenant throughput ÷ its dedicated peak, over the tenants of one mix (the same keys in both)."""
    _check_tenants(tenant_throughputs, dedicated_peaks)
    return sum(
        _not_negative(thr, f"throughput of tenant {tenant}") / _positive(dedicated_peaks[tenant], f"dedicated peak of tenant {tenant}")
        for tenant, thr in sorted(tenant_throughputs.items())
    )


def sharing_savings(capacity: float) -> float:
    """The fraction of hardware a mix of this normalised capacity saves: 1 − 1/capacity."""
    return 1 - 1 / _positive(capacity, "normalised capacity")


@dataclasses.dataclass(frozen=True)
class TenantPoint:
    """One tenant's SLA-compliant result at one offered rate (dedicated or co-located)."""

    tenant: str
    offered_per_s: float
    throughput_inferences_per_s: float
    p99_ms: float

    def __post_init__(self):
        if not isinstance(self.tenant, str) or not self.tenant:
            raise AnalysisError(f"a tenant point needs a tenant name, got {self.tenant!r}")
        _positive(self.offered_per_s, f"offered_per_s of tenant {self.tenant}")
        _not_negative(self.throughput_inferences_per_s, f"throughput_inferences_per_s of tenant {self.tenant}")
        _not_negative(self.p99_ms, f"p99_ms of tenant {self.tenant}")


@dataclasses.dataclass(frozen=True)
class Interference:
    """How much a tenant slows down when co-located: ratios above 1 (p99) or below 1 (throughput) hurt."""

    tenant: str
    offered_per_s: float
    dedicated_p99_ms: float
    colocated_p99_ms: float
    p99_ratio: float
    dedicated_throughput_inferences_per_s: float
    colocated_throughput_inferences_per_s: float
    throughput_ratio: float


def interference(colocated: TenantPoint, dedicated: TenantPoint) -> Interference:
    """Co-located ÷ dedicated p99 and throughput of one tenant at one offered rate."""
    if colocated.tenant != dedicated.tenant:
        raise AnalysisError(f"interference compares one tenant, got {colocated.tenant!r} and {dedicated.tenant!r}")
    if colocated.offered_per_s != dedicated.offered_per_s:
        raise AnalysisError(
            f"tenant {colocated.tenant}: co-located at {colocated.offered_per_s:g}/s but dedicated at "
            f"{dedicated.offered_per_s:g}/s; interference compares the same offered rate"
        )
    p99 = _positive(dedicated.p99_ms, f"dedicated p99_ms of tenant {dedicated.tenant}")
    throughput = _positive(dedicated.throughput_inferences_per_s, f"dedicated throughput of tenant {dedicated.tenant}")
    return Interference(
        tenant=colocated.tenant,
        offered_per_s=colocated.offered_per_s,
        dedicated_p99_ms=dedicated.p99_ms,
        colocated_p99_ms=colocated.p99_ms,
        p99_ratio=colocated.p99_ms / p99,
        dedicated_throughput_inferences_per_s=dedicated.throughput_inferences_per_s,
        colocated_throughput_inferences_per_s=colocated.throughput_inferences_per_s,
        throughput_ratio=colocated.throughput_inferences_per_s / throughput,
    )


def interference_table(colocated: Sequence[TenantPoint], dedicated: Sequence[TenantPoint]) -> tuple[Interference, ...]:
    """Each co-located point against the dedicated point of its tenant at its offered rate, in order."""
    by_key: dict[tuple[str, float], TenantPoint] = {}
    for point in dedicated:
        key = (point.tenant, point.offered_per_s)
        if key in by_key:
            raise AnalysisError(f"two dedicated points of tenant {point.tenant} at {point.offered_per_s:g}/s")
        by_key[key] = point
    rows = []
    for point in colocated:
        match = by_key.get((point.tenant, point.offered_per_s))
        if match is None:
            rates = sorted(r for t, r in by_key if t == point.tenant)
            measured = ", ".join(f"{r:g}/s" for r in rates) or "none"
            raise AnalysisError(
                f"no dedicated point of tenant {point.tenant} at {point.offered_per_s:g}/s (dedicated rates: {measured})"
            )
        rows.append(interference(point, match))
    return tuple(rows)


def _check_demand(demand: Mapping[str, float]) -> dict[str, float]:
    if not demand:
        raise AnalysisError("the demand names no model")
    for model in demand:
        if not isinstance(model, str) or not model:
            raise AnalysisError(f"a demand needs model names, got {model!r}")
    return {m: _not_negative(d, f"demand of model {m}") for m, d in sorted(demand.items())}


def machines_for(demand_inferences_per_s: float, capacity_inferences_per_s: float) -> int:
    """⌈demand ÷ capacity⌉ machines of one model (a quotient within 10⁻⁹ of a whole number is that number)."""
    demand = _not_negative(demand_inferences_per_s, "demand_inferences_per_s")
    if demand == 0:
        return 0
    quotient = demand / _positive(capacity_inferences_per_s, "capacity_inferences_per_s")
    whole = round(quotient)
    if whole >= 1 and math.isclose(quotient, whole, rel_tol=WHOLE_TOLERANCE):
        return whole
    return math.ceil(quotient)


def _unserved(demand: Mapping[str, float], capacity: Mapping[str, float]) -> str | None:
    """Why a capacity cannot serve a demand, or None when it can."""
    for model, wanted in sorted(demand.items()):
        if wanted == 0:
            continue
        if model not in capacity:
            return f"no capacity measured for model {model} (demand {wanted:g}/s)"
        if capacity[model] == 0:
            return f"capacity 0/s for model {model} (demand {wanted:g}/s)"
    return None


def _check_capacity(capacity: Mapping[str, float], what: str) -> dict[str, float]:
    for model in capacity:
        if not isinstance(model, str) or not model:
            raise AnalysisError(f"{what} needs model names, got {model!r}")
    return {m: _not_negative(c, f"{what} of model {m}") for m, c in sorted(capacity.items())}


def _served(demand: Mapping[str, float], capacity: Mapping[str, float], what: str) -> tuple[dict, dict]:
    demand = _check_demand(demand)
    capacity = _check_capacity(capacity, what)
    reason = _unserved(demand, capacity)
    if reason:
        raise AnalysisError(f"{what} cannot serve the demand: {reason}")
    return demand, capacity


def dedicated_machines(demand: Mapping[str, float], dedicated_peaks: Mapping[str, float]) -> dict[str, int]:
    """Machines per model when each model runs on machines of its own (a fleet of their sum)."""
    demand, peaks = _served(demand, dedicated_peaks, "dedicated peak")
    return {m: machines_for(d, peaks[m]) if d else 0 for m, d in demand.items()}


def shared_machines(demand: Mapping[str, float], shared_capacity: Mapping[str, float]) -> int:
    """Machines when each runs all models at one shared operating point serving shared_capacity per model."""
    demand, capacity = _served(demand, shared_capacity, "shared capacity")
    return max((machines_for(d, capacity[m]) for m, d in demand.items() if d), default=0)


def cost_savings(shared_usd_per_hour: float, dedicated_usd_per_hour: float) -> float:
    """1 − shared ÷ dedicated cost of the same demand (negative when sharing costs more)."""
    shared = _not_negative(shared_usd_per_hour, "shared_usd_per_hour")
    return 1 - shared / _positive(dedicated_usd_per_hour, "dedicated_usd_per_hour")


@dataclasses.dataclass(frozen=True)
class CostOption:
    """A way to serve the models: a placement on a device of a priced instance, and what one machine serves.

    capacity_inferences_per_s: per model, the SLA-compliant throughput of one machine: the
    dedicated peak for `dedicated`, the shared operating point's per-model throughput otherwise.
    """

    placement: str
    device: str
    instance: PriceRow
    capacity_inferences_per_s: Mapping[str, float]
    label: str = ""

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise AnalysisError(f"placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        if self.device not in DEVICES:
            raise AnalysisError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if not isinstance(self.instance, PriceRow):
            raise AnalysisError(f"an option's instance must be a PriceRow, got {self.instance!r}")
        if self.device == "gpu" and self.instance.device != "gpu":
            raise AnalysisError(f"a gpu option needs an instance with a GPU; {self.instance} has none")
        if not isinstance(self.label, str):
            raise AnalysisError(f"an option's label must be text, got {self.label!r}")
        capacity = _check_capacity(self.capacity_inferences_per_s, f"capacity of {self.name}")
        object.__setattr__(self, "capacity_inferences_per_s", capacity)

    @property
    def shared(self) -> bool:
        return self.placement != DEDICATED

    @property
    def name(self) -> str:
        label = f" ({self.label})" if self.label else ""
        return f"{self.placement} on {self.device} of {self.instance}{label}"

    @property
    def key(self) -> tuple[str, str, str, str, str, str]:
        return (self.placement, self.device, *self.instance.key, self.label)


@dataclasses.dataclass(frozen=True)
class OptionCost:
    """One option's fleet for a demand and what it costs; `rank` 1 is the cheapest."""

    rank: int
    placement: str
    device: str
    label: str
    provider: str
    instance: str
    region: str
    price_observed: datetime.date
    price_source: str
    machine_usd_per_hour: float
    machines: int
    machines_by_model: tuple[tuple[str, int], ...]  # dedicated: each model's own; shared: machines hosting it
    usd_per_hour: float
    demand_inferences_per_s: float
    usd_per_million: float


@dataclasses.dataclass(frozen=True)
class SkippedOption:
    """An option that cannot serve the demand, and why."""

    placement: str
    device: str
    label: str
    provider: str
    instance: str
    region: str
    reason: str


@dataclasses.dataclass(frozen=True)
class CostRanking:
    ranked: tuple[OptionCost, ...]
    skipped: tuple[SkippedOption, ...]

    @property
    def best(self) -> OptionCost:
        """The cheapest option; an AnalysisError lists why each option was skipped when none serves."""
        if not self.ranked:
            reasons = "; ".join(f"{s.placement} on {s.device} of {s.provider} {s.instance}: {s.reason}" for s in self.skipped)
            raise AnalysisError(f"no option serves the demand ({reasons or 'no options given'})")
        return self.ranked[0]


def _fleet(demand: dict[str, float], option: CostOption) -> tuple[int, tuple[tuple[str, int], ...]]:
    capacity = option.capacity_inferences_per_s
    if option.shared:
        machines = shared_machines(demand, capacity)
        return machines, tuple((m, machines) for m, d in demand.items() if d)
    per_model = dedicated_machines(demand, capacity)
    return sum(per_model.values()), tuple((m, n) for m, n in per_model.items() if n)


def _option_cost(demand: dict[str, float], option: CostOption) -> OptionCost:
    machines, by_model = _fleet(demand, option)
    row = option.instance
    usd_per_hour = machines * row.usd_per_hour
    total = sum(demand.values())
    return OptionCost(
        rank=0, placement=option.placement, device=option.device, label=option.label,
        provider=row.provider, instance=row.instance, region=row.region,
        price_observed=row.observed, price_source=row.source, machine_usd_per_hour=row.usd_per_hour,
        machines=machines, machines_by_model=by_model, usd_per_hour=usd_per_hour,
        demand_inferences_per_s=total, usd_per_million=usd_per_million(usd_per_hour, total),
    )


def _skipped(option: CostOption, reason: str) -> SkippedOption:
    row = option.instance
    return SkippedOption(option.placement, option.device, option.label, row.provider, row.instance, row.region, reason)


def _rank_key(cost: OptionCost):
    ties = round(cost.usd_per_hour / COST_TIE_USD_PER_HOUR)
    return (ties, cost.machines, cost.placement, cost.device, cost.provider, cost.instance, cost.region, cost.label)


def cheapest(demand: Mapping[str, float], options: Sequence[CostOption]) -> CostRanking:
    """Every option's fleet and cost for the demand, cheapest first; options that cannot serve it, with why."""
    demand = _check_demand(demand)
    if not any(demand.values()):
        raise AnalysisError("the demand is 0 for every model; there is nothing to serve")
    seen = set()
    for option in options:
        if option.key in seen:
            raise AnalysisError(f"{option.name} is offered twice; give one a label")
        seen.add(option.key)
    costs, skipped = [], []
    for option in options:
        reason = _unserved(demand, option.capacity_inferences_per_s)
        if reason:
            skipped.append(_skipped(option, reason))
        else:
            costs.append(_option_cost(demand, option))
    ranked = sorted(costs, key=_rank_key)
    return CostRanking(
        ranked=tuple(dataclasses.replace(c, rank=i) for i, c in enumerate(ranked, 1)),
        skipped=tuple(skipped),
    )


@dataclasses.dataclass(frozen=True)
class UnitCost:
    """$/1M inferences of one machine of an option at its measured capacity.

    dedicated: one row per model (its machine serves that model alone); shared: one row for the
    machine's whole output, `models` naming every model it serves at once.
    """

    placement: str
    device: str
    label: str
    provider: str
    instance: str
    region: str
    price_observed: datetime.date
    models: tuple[str, ...]
    throughput_inferences_per_s: float
    machine_usd_per_hour: float
    usd_per_million: float


def unit_costs(option: CostOption) -> tuple[UnitCost, ...]:
    """The option's $/1M inferences at capacity: per model (dedicated) or for the whole machine (shared)."""
    served = {m: c for m, c in option.capacity_inferences_per_s.items() if c > 0}
    if not served:
        raise AnalysisError(f"{option.name} serves no model (every capacity is 0)")
    groups = [((m,), c) for m, c in served.items()] if not option.shared else [(tuple(served), sum(served.values()))]
    row = option.instance
    return tuple(
        UnitCost(option.placement, option.device, option.label, row.provider, row.instance, row.region, row.observed,
                 models, throughput, row.usd_per_hour, usd_per_million(row.usd_per_hour, throughput))
        for models, throughput in groups
    )
