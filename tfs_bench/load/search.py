"""Finding capacity: the PERSEUS ramp and the peak rate under an SLA.

Both are pure functions over a `probe(rate_rps) -> ProbeOutcome` callable, which runs one
measurement at an offered rate (warm-up, windows, verdict) and reports it; they decide which rates
to try and return every probe in order with its verdict and, for a failed probe, why.

A probe *passes* when its run is VALID and its SLA percentile of response time is ≤ the bound.

- `perseus_ramp`: rates qps_start, qps_start + qps_delta, …; a pass *gains* when its throughput
  exceeds the last gaining pass's by more than `min_gain_fraction` (so noise at saturation does
  not keep the ramp going, while slow steady growth still accumulates into a gain). The ramp stops
  after `patience` passes in a row without gain, or after `max_passes`. The best pass is the
  VALID pass with the highest throughput; the result says whether its SLA percentile met the bound.
  Raises SearchError when the first pass is INVALID: nothing above it can be trusted.
- `peak_under_sla`: probes start, 2·start, 4·start, … until one fails (the bracket), then bisects
  between the highest passing and the lowest failing rate until they are within `precision` of
  the lower one. The peak is the highest passing rate. Raises SearchError when the starting rate
  fails. When `max_rate_rps` passes, the peak is that rate and the result is not bracketed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tfs_bench.errors import TfsBenchError
from tfs_bench.load.verdict import RunResult

STOP_NO_GAIN = "no_gain"
STOP_MAX_PASSES = "max_passes"
_MAX_DOUBLINGS = 40
DEFAULT_PRECISION = 0.05  # peak: bisect until the bracket is within 5% of its lower end
DEFAULT_PATIENCE = 6  # ramp: passes without gain before it stops
DEFAULT_MAX_PASSES = 100


@dataclasses.dataclass(frozen=True)
class ProbeOutcome:
    """What one measurement at an offered rate gave."""

    valid: bool
    invalid_reasons: tuple[str, ...]
    throughput_rps: float
    sla_latency_ms: float | None  # None when nothing succeeded

    def __post_init__(self):
        object.__setattr__(self, "invalid_reasons", tuple(self.invalid_reasons))
        if self.valid == bool(self.invalid_reasons):
            raise ValueError("a probe is VALID exactly when it has no invalid reasons")
        if self.throughput_rps < 0:
            raise ValueError(f"throughput must be >= 0, got {self.throughput_rps}")

    @classmethod
    def from_run(cls, run: RunResult, tenant: str | None = None) -> "ProbeOutcome":
        """The run's verdict, with throughput and SLA latency of one tenant (None: all together).

        Validity is the whole run's: when one tenant is ramped while another is held, the probe
        is only as good as the worse of the two measurements.
        """
        pooled = run.aggregate if tenant is None else run.tenants[tenant].pooled
        return cls(
            valid=run.verdict.valid,
            invalid_reasons=tuple(r.message for r in run.verdict.reasons),
            throughput_rps=pooled.throughput_rps,
            sla_latency_ms=run.sla_latency_ms(tenant),
        )

    def to_json(self) -> dict:
        return {
            "valid": self.valid,
            "invalid_reasons": list(self.invalid_reasons),
            "throughput_rps": self.throughput_rps,
            "sla_latency_ms": self.sla_latency_ms,
        }

    @classmethod
    def from_json(cls, d: dict) -> "ProbeOutcome":
        return cls(d["valid"], tuple(d["invalid_reasons"]), d["throughput_rps"], d["sla_latency_ms"])


Probe = Callable[[float], ProbeOutcome]


@dataclasses.dataclass(frozen=True)
class JudgedProbe:
    rate_rps: float
    outcome: ProbeOutcome
    passed: bool
    failures: tuple[str, ...]  # why it did not pass: its INVALID reasons, then the SLA

    def __post_init__(self):
        object.__setattr__(self, "failures", tuple(self.failures))
        if self.passed == bool(self.failures):
            raise ValueError("a probe passes exactly when it has no failures")

    def to_json(self) -> dict:
        return {
            "rate_rps": self.rate_rps,
            "passed": self.passed,
            "failures": list(self.failures),
            "outcome": self.outcome.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict) -> "JudgedProbe":
        return cls(d["rate_rps"], ProbeOutcome.from_json(d["outcome"]), d["passed"], tuple(d["failures"]))


def judge_probe(rate_rps: float, outcome: ProbeOutcome, sla_bound_ms: float) -> JudgedProbe:
    failures = list(outcome.invalid_reasons)
    if outcome.sla_latency_ms is None:
        failures.append("no successful request, so no SLA percentile")
    elif outcome.sla_latency_ms > sla_bound_ms:
        failures.append(f"SLA percentile {outcome.sla_latency_ms:.2f} ms > bound {sla_bound_ms:g} ms")
    return JudgedProbe(rate_rps, outcome, not failures, tuple(failures))


class SearchError(TfsBenchError):
    """The search could not start: its first probe failed. `probes` holds what was measured."""

    def __init__(self, message: str, probes: tuple[JudgedProbe, ...]):
        super().__init__(message)
        self.probes = probes


# ----------------------------------------------------------------------------- PERSEUS ramp


@dataclasses.dataclass(frozen=True)
class RampResult:
    passes: tuple[JudgedProbe, ...]
    best: JudgedProbe  # the VALID pass with the highest throughput
    sla_met: bool  # whether the best pass's SLA percentile is within the bound
    stop_reason: str

    def __post_init__(self):
        object.__setattr__(self, "passes", tuple(self.passes))
        if self.best not in self.passes or not self.best.outcome.valid:
            raise ValueError("the best pass of a ramp is one of its VALID passes")
        if self.stop_reason not in (STOP_NO_GAIN, STOP_MAX_PASSES):
            raise ValueError(f"ramp stop_reason must be {STOP_NO_GAIN!r} or {STOP_MAX_PASSES!r}, got {self.stop_reason!r}")

    def to_json(self) -> dict:
        """The passes, with the best pass named by its rate (rates of a ramp are distinct)."""
        return {
            "best_rate_rps": self.best.rate_rps,
            "best_throughput_rps": self.best.outcome.throughput_rps,
            "sla_met": self.sla_met,
            "stop_reason": self.stop_reason,
            "passes": [p.to_json() for p in self.passes],
        }

    @classmethod
    def from_json(cls, d: dict) -> "RampResult":
        passes = tuple(JudgedProbe.from_json(p) for p in d["passes"])
        best = _probe_at(passes, d["best_rate_rps"], "the ramp's best pass")
        return cls(passes, best, d["sla_met"], d["stop_reason"])


def perseus_ramp(
    probe: Probe,
    qps_start: float,
    qps_delta: float,
    sla_bound_ms: float,
    patience: int = DEFAULT_PATIENCE,
    min_gain_fraction: float = 0.01,
    max_passes: int = DEFAULT_MAX_PASSES,
) -> RampResult:
    if not (qps_start > 0 and qps_delta > 0 and sla_bound_ms > 0 and patience >= 1 and max_passes >= 1):
        raise ValueError("qps_start, qps_delta and sla_bound_ms must be > 0, patience and max_passes >= 1")
    passes: list[JudgedProbe] = []
    reference_rps = None  # throughput of the last pass that gained
    without_gain = 0
    stop_reason = STOP_MAX_PASSES
    for k in range(max_passes):
        rate = qps_start + k * qps_delta
        judged = judge_probe(rate, probe(rate), sla_bound_ms)
        passes.append(judged)
        if k == 0 and not judged.outcome.valid:
            raise SearchError(_first_failed("ramp", judged), tuple(passes))
        throughput = judged.outcome.throughput_rps
        if reference_rps is None or throughput > reference_rps * (1 + min_gain_fraction):
            reference_rps, without_gain = throughput, 0
        else:
            without_gain += 1
            if without_gain >= patience:
                stop_reason = STOP_NO_GAIN
                break
    best = max((p for p in passes if p.outcome.valid), key=lambda p: p.outcome.throughput_rps)
    sla_met = best.outcome.sla_latency_ms is not None and best.outcome.sla_latency_ms <= sla_bound_ms
    return RampResult(tuple(passes), best, sla_met, stop_reason)


# ----------------------------------------------------------------------------- peak under SLA


@dataclasses.dataclass(frozen=True)
class PeakResult:
    peak_rps: float  # the highest rate that passed
    lower: JudgedProbe  # the probe at the peak
    upper: JudgedProbe | None  # the lowest rate that failed; None when not bracketed
    bracketed: bool
    precision: float
    probes: tuple[JudgedProbe, ...]  # in the order they ran

    def __post_init__(self):
        object.__setattr__(self, "probes", tuple(self.probes))
        if self.lower not in self.probes or not self.lower.passed or self.peak_rps != self.lower.rate_rps:
            raise ValueError("the peak is the rate of one of the search's passing probes")
        if self.bracketed != (self.upper is not None):
            raise ValueError("a peak is bracketed exactly when it has an upper, failing probe")
        if self.upper is not None and (self.upper not in self.probes or self.upper.passed):
            raise ValueError("the upper end of a peak's bracket is one of the search's failing probes")

    def to_json(self) -> dict:
        """The probes, with the bracket's ends named by their rates (a search never repeats one)."""
        return {
            "peak_rps": self.peak_rps,
            "peak_throughput_rps": self.lower.outcome.throughput_rps,
            "bracketed": self.bracketed,
            "precision": self.precision,
            "lower_rate_rps": self.lower.rate_rps,
            "upper_rate_rps": self.upper.rate_rps if self.upper else None,
            "probes": [p.to_json() for p in self.probes],
        }

    @classmethod
    def from_json(cls, d: dict) -> "PeakResult":
        probes = tuple(JudgedProbe.from_json(p) for p in d["probes"])
        lower = _probe_at(probes, d["lower_rate_rps"], "the peak's lower end")
        upper = None if d["upper_rate_rps"] is None else _probe_at(probes, d["upper_rate_rps"], "the peak's upper end")
        return cls(d["peak_rps"], lower, upper, d["bracketed"], d["precision"], probes)


def _probe_at(probes: tuple[JudgedProbe, ...], rate_rps: float, what: str) -> JudgedProbe:
    matches = [p for p in probes if p.rate_rps == rate_rps]
    if len(matches) != 1:
        raise ValueError(f"{what} names rate {rate_rps!r}, which {len(matches)} probes have (not 1)")
    return matches[0]


def peak_under_sla(
    probe: Probe,
    start_rps: float,
    sla_bound_ms: float,
    precision: float = DEFAULT_PRECISION,
    max_rate_rps: float | None = None,
) -> PeakResult:
    if not (start_rps > 0 and sla_bound_ms > 0 and 0 < precision < 1):
        raise ValueError("start_rps and sla_bound_ms must be > 0 and precision in (0, 1)")
    if max_rate_rps is not None and max_rate_rps < start_rps:
        raise ValueError(f"max_rate_rps {max_rate_rps} is below start_rps {start_rps}")
    probes: list[JudgedProbe] = []

    def run(rate: float) -> JudgedProbe:
        judged = judge_probe(rate, probe(rate), sla_bound_ms)
        probes.append(judged)
        return judged

    lower = run(start_rps)
    if not lower.passed:
        raise SearchError(_first_failed("peak search", lower), tuple(probes))
    lower, upper = _bracket(run, lower, max_rate_rps)
    if upper is None:
        return PeakResult(lower.rate_rps, lower, None, False, precision, tuple(probes))
    while upper.rate_rps - lower.rate_rps > precision * lower.rate_rps:
        middle = run((lower.rate_rps + upper.rate_rps) / 2)
        lower, upper = (middle, upper) if middle.passed else (lower, middle)
    return PeakResult(lower.rate_rps, lower, upper, True, precision, tuple(probes))


def _bracket(
    run: Callable[[float], JudgedProbe], lower: JudgedProbe, max_rate_rps: float | None
) -> tuple[JudgedProbe, JudgedProbe | None]:
    """Doubles from a passing probe: (highest pass, first failure), or (highest pass, None) at the cap."""
    for _ in range(_MAX_DOUBLINGS):
        if max_rate_rps is not None and lower.rate_rps >= max_rate_rps:
            break
        rate = lower.rate_rps * 2 if max_rate_rps is None else min(lower.rate_rps * 2, max_rate_rps)
        judged = run(rate)
        if not judged.passed:
            return lower, judged
        lower = judged
    return lower, None


def _first_failed(search: str, first: JudgedProbe) -> str:
    return (
        f"{search} cannot start: the first probe at {first.rate_rps:g} requests/s failed "
        f"({'; '.join(first.failures)}); start lower or fix the reasons"
    )
