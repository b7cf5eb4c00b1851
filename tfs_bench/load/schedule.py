"""Arrival schedules and traffic mixes: when each request should be sent, and by whom.

Open loop: an `ArrivalSchedule` yields intended send times as integer nanosecond offsets from
the run's start, lazily and without end (the driver stops taking them when the run ends). The
first arrival is at offset 0 in both processes; after it,
- constant: arrival i is at round(i · 10⁹ / λ) ns, computed from i (no accumulated drift);
- Poisson: gaps are exponential with mean 10⁹/λ ns from numpy's PCG64 seeded with `seed`, drawn
  in fixed chunks and rounded to whole ns before they are added up, so the offsets are exact
  integers that depend on the seed only.

Workers share a schedule by index: worker w of W takes arrivals w, w + W, w + 2W, …, each worker
regenerating the schedule from the seed, so their union is exactly the single-worker schedule.

Closed loop: a tenant keeps `concurrency` requests outstanding; workers split it as evenly as
integers allow.
"""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from tfs_bench.errors import ConfigError

ARRIVALS = ("constant", "poisson")
_POISSON_CHUNK = 4096
_NS_PER_S = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class ArrivalSchedule:
    rate_rps: float
    arrival: str = "poisson"
    seed: int = 0

    def __post_init__(self):
        if not self.rate_rps > 0:
            raise ConfigError(f"arrival rate must be > 0 requests/s, got {self.rate_rps}")
        if self.arrival not in ARRIVALS:
            raise ConfigError(f"arrival must be one of {ARRIVALS}, got {self.arrival!r}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")

    def offsets_ns(self) -> Iterator[int]:
        """Intended send times, in ns after the start, in order and without end."""
        return self._constant() if self.arrival == "constant" else self._poisson()

    def worker_offsets_ns(self, worker: int, workers: int) -> Iterator[int]:
        """Worker `worker`'s share (every `workers`-th arrival, starting at index `worker`)."""
        if not 0 <= worker < workers:
            raise ConfigError(f"worker must be in [0, {workers}), got {worker}")
        return itertools.islice(self.offsets_ns(), worker, None, workers)

    def _constant(self) -> Iterator[int]:
        period = Fraction(_NS_PER_S) / Fraction(self.rate_rps)  # exact: the float rate as a rational
        num, den = period.numerator, period.denominator
        for i in itertools.count():
            yield (2 * i * num + den) // (2 * den)  # round(i · period), halves up

    def _poisson(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed)
        mean_gap_ns = _NS_PER_S / self.rate_rps
        offset = 0
        while True:
            gaps = np.rint(rng.exponential(mean_gap_ns, _POISSON_CHUNK)).astype(np.int64)
            for gap in gaps.tolist():
                yield offset
                offset += gap


class ArrivalCounter:
    """How many of a schedule's arrivals fall before successive offsets (asked in increasing order).

    The driver counts each window's scheduled arrivals with it, from the same seed the workers
    send by, so a window's completions can be judged against what it was sent.
    """

    def __init__(self, schedule: ArrivalSchedule):
        self._offsets = schedule.offsets_ns()
        self._next = next(self._offsets)
        self._count = 0
        self._last_asked: int | None = None

    def count_before(self, offset_ns: int) -> int:
        """Arrivals with offset < `offset_ns` (offsets from the run's start, in ns)."""
        if self._last_asked is not None and offset_ns < self._last_asked:
            raise ValueError(f"offsets must not decrease: {offset_ns} after {self._last_asked}")
        self._last_asked = offset_ns
        while self._next < offset_ns:
            self._count += 1
            self._next = next(self._offsets)
        return self._count


def tenant_seed(run_seed: int, tenant: str) -> int:
    """A seed for one tenant's schedule, stable across processes and independent of other tenants."""
    sequence = np.random.SeedSequence(run_seed, spawn_key=(zlib.crc32(tenant.encode("utf-8")),))
    return int(sequence.generate_state(1, np.uint64)[0])


def split_evenly(total: int, workers: int) -> tuple[int, ...]:
    """`total` (e.g. a concurrency) over `workers`: the first total % workers get one more."""
    if workers < 1 or total < 0:
        raise ConfigError(f"cannot split {total} over {workers} workers")
    base, extra = divmod(total, workers)
    return tuple(base + (w < extra) for w in range(workers))


# ----------------------------------------------------------------------------- traffic mixes


@dataclasses.dataclass(frozen=True)
class TenantLoad:
    """One tenant of a traffic mix: a model under open-loop rate or closed-loop concurrency."""

    tenant: str
    model: str
    target: str | None = None  # what the driver addresses (e.g. a version label); None: the default
    rate_rps: float | None = None
    concurrency: int | None = None
    arrival: str = "poisson"
    seed: int | None = None  # None: tenant_seed(0, tenant), so tenants of a mix never share a stream

    def __post_init__(self):
        if not self.tenant or not self.model:
            raise ConfigError("tenant and model names must not be empty")
        if self.seed is None:
            object.__setattr__(self, "seed", tenant_seed(0, self.tenant))
        if (self.rate_rps is None) == (self.concurrency is None):
            raise ConfigError(f"tenant {self.tenant!r} needs exactly one of a rate and a concurrency")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"tenant {self.tenant!r}: concurrency must be >= 1, got {self.concurrency}")
        if self.rate_rps is not None:
            self.schedule()  # validates rate, arrival and seed

    @property
    def open_loop(self) -> bool:
        return self.rate_rps is not None

    def schedule(self) -> ArrivalSchedule:
        if self.rate_rps is None:
            raise ConfigError(f"tenant {self.tenant!r} runs closed loop; it has no arrival schedule")
        return ArrivalSchedule(self.rate_rps, self.arrival, self.seed)

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: dict) -> "TenantLoad":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class TenantSpec:
    """One `model[@target][:weight]` entry of a mix as the CLI parses it."""

    model: str
    target: str | None = None
    weight: float = 1.0

    def __post_init__(self):
        if not self.model or self.target == "":
            raise ConfigError(f"model and target must not be empty in {self}")
        if not self.weight > 0:
            raise ConfigError(f"weight of {self.model!r} must be > 0, got {self.weight}")

    @property
    def tenant(self) -> str:
        """The tenant's name: the model, or model@target when a target is given."""
        return self.model if self.target is None else f"{self.model}@{self.target}"


@dataclasses.dataclass(frozen=True)
class TrafficMix:
    tenants: tuple[TenantLoad, ...]

    def __post_init__(self):
        object.__setattr__(self, "tenants", tuple(self.tenants))
        names = [t.tenant for t in self.tenants]
        if not names:
            raise ConfigError("a traffic mix needs at least one tenant")
        if len(set(names)) != len(names):
            raise ConfigError(f"tenant names must be unique, got {names}")

    @classmethod
    def open_loop(
        cls, specs: Sequence[TenantSpec], total_rate_rps: float, arrival: str = "poisson", run_seed: int = 0
    ) -> "TrafficMix":
        """Tenants sharing `total_rate_rps` in proportion to their weights, each with its own seed."""
        total_weight = sum(s.weight for s in specs)
        return cls(
            tuple(
                TenantLoad(
                    tenant=s.tenant,
                    model=s.model,
                    target=s.target,
                    rate_rps=total_rate_rps * s.weight / total_weight,
                    arrival=arrival,
                    seed=tenant_seed(run_seed, s.tenant),
                )
                for s in specs
            )
        )

    @classmethod
    def closed_loop(cls, specs: Sequence[TenantSpec], concurrency: int) -> "TrafficMix":
        """Every tenant with `concurrency` outstanding requests (weights have no meaning here)."""
        weighted = [s.tenant for s in specs if s.weight != 1.0]
        if weighted:
            raise ConfigError(f"closed loop gives every tenant the same concurrency; drop the weights of {weighted}")
        return cls(
            tuple(TenantLoad(tenant=s.tenant, model=s.model, target=s.target, concurrency=concurrency) for s in specs)
        )

    def tenant(self, name: str) -> TenantLoad:
        for load in self.tenants:
            if load.tenant == name:
                return load
        raise ConfigError(f"no tenant {name!r} in the mix; tenants: {[t.tenant for t in self.tenants]}")

    def with_rate(self, name: str, rate_rps: float) -> "TrafficMix":
        """The same mix with one tenant moved to open loop at `rate_rps` (a ramp or search step)."""
        self.tenant(name)
        return TrafficMix(
            tuple(
                dataclasses.replace(t, rate_rps=rate_rps, concurrency=None) if t.tenant == name else t
                for t in self.tenants
            )
        )

    def offered_rates_rps(self) -> Mapping[str, float | None]:
        """Tenant → offered rate (None for closed-loop tenants), as window summaries take it."""
        return {t.tenant: t.rate_rps for t in self.tenants}

    def to_json(self) -> dict:
        return {"tenants": [t.to_json() for t in self.tenants]}

    @classmethod
    def from_json(cls, d: dict) -> "TrafficMix":
        return cls(tuple(TenantLoad.from_json(t) for t in d["tenants"]))
