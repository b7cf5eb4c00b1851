"""MLPerf LoadGen's settings as the suite's flags give them, and its verdict as its log states it.

Pure records, without LoadGen itself (tfs_bench.load.mlperf runs it): `LoadGenSettings` is what
`--mode=mlperf` asks of LoadGen, and `LoadGenVerdict` is read from the `mlperf_log_detail.txt`
LoadGen writes, whose lines carry one JSON object each after the `:::MLLOG ` marker:

    :::MLLOG {"key": "result_validity", "value": "VALID", ...}

From the flags to LoadGen's TestSettings (PerformanceOnly mode):

| flag | SingleStream | Server | Offline |
| --- | --- | --- | --- |
| --rate | — | server_target_qps | offline_expected_qps |
| --sla_ms | single_stream_expected_latency_ns | server_target_latency_ns | — |
| --sla_percentile | single_stream_target_latency_percentile | server_target_latency_percentile | — |
| --min_duration_s (at least warm-up + the pooled windows) | min_duration_ms | min_duration_ms | min_duration_ms |
| --min_requests | min_query_count | min_query_count | min_query_count |
| --seed | qsl_rng_seed, sample_index_rng_seed, schedule_rng_seed | same | same |
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from tfs_bench.errors import ConfigError

SCENARIOS = ("SingleStream", "Server", "Offline")
LOG_MARKER = ":::MLLOG "
DETAIL_LOG = "mlperf_log_detail.txt"
SUMMARY_LOG = "mlperf_log_summary.txt"
VERDICTS = ("VALID", "INVALID")
INVALID_REASON = "result_invalid_reason"  # repeated, one line per reason: kept as a list
# Besides every result_* key (names as LoadGen spells them), these are kept.
_ALSO_KEPT = ("early_stopping_met", "effective_target_qps", "effective_target_latency_ns",
              "effective_min_duration_ms", "effective_min_query_count", "loadgen_version")
# Throughput as each scenario names it: Server, SingleStream (a query is one sample), Offline.
_THROUGHPUT_KEYS = ("result_completed_samples_per_sec", "result_qps_with_loadgen_overhead", "result_samples_per_second")
_LATENCY_PREFIX = "result_"
_LATENCY_SUFFIX = "_percentile_latency_ns"


@dataclasses.dataclass(frozen=True)
class LoadGenSettings:
    """What the suite asks of LoadGen (see the module docstring for each field's LoadGen name)."""

    scenario: str
    target_qps: float | None = None
    latency_bound_ms: float | None = None
    latency_percentile: float = 99.0
    min_duration_s: float = 10.0
    min_query_count: int = 100
    seed: int = 0

    def __post_init__(self):
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"the MLPerf scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}")
        if self.scenario in ("Server", "Offline") and not (self.target_qps is not None and self.target_qps > 0):
            raise ConfigError(f"the {self.scenario} scenario needs a target rate > 0 (--rate)")
        if self.scenario == "Server" and not (self.latency_bound_ms is not None and self.latency_bound_ms > 0):
            raise ConfigError("the Server scenario needs a latency bound > 0 (--sla_ms)")
        if not 0 < self.latency_percentile < 100:
            raise ConfigError(f"the latency percentile must be in (0, 100), got {self.latency_percentile}")
        if self.min_duration_s < 0 or self.min_query_count < 0 or self.seed < 0:
            raise ConfigError("the minimum duration, the minimum query count and the seed must be >= 0")

    def test_settings(self, lg):
        """LoadGen's TestSettings (`lg`: the mlperf_loadgen module)."""
        settings = lg.TestSettings()
        settings.scenario = getattr(lg.TestScenario, self.scenario)
        settings.mode = lg.TestMode.PerformanceOnly
        settings.min_duration_ms = round(self.min_duration_s * 1000)
        settings.min_query_count = self.min_query_count
        settings.qsl_rng_seed = settings.sample_index_rng_seed = settings.schedule_rng_seed = self.seed
        fraction = self.latency_percentile / 100
        if self.scenario == "Server":
            settings.server_target_qps = self.target_qps
            settings.server_target_latency_ns = round(self.latency_bound_ms * 1e6)
            settings.server_target_latency_percentile = fraction
        elif self.scenario == "Offline":
            settings.offline_expected_qps = self.target_qps
        else:
            settings.single_stream_target_latency_percentile = fraction
            if self.latency_bound_ms is not None:
                settings.single_stream_expected_latency_ns = round(self.latency_bound_ms * 1e6)
        return settings

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> "LoadGenSettings":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class LoadGenVerdict:
    """LoadGen's own judgement of a run and its figures, as its detail log states them."""

    scenario: str
    validity: str  # VALID or INVALID
    results: dict[str, object]  # every result_* entry, e.g. result_completed_samples_per_sec
    log_dir: str  # relative to the run directory

    def __post_init__(self):
        if self.validity not in VERDICTS:
            raise ValueError(f"LoadGen's validity is VALID or INVALID, got {self.validity!r}")

    @property
    def completed_per_s(self) -> float | None:
        """Samples completed per second, under the name the scenario's log gives it."""
        for key in _THROUGHPUT_KEYS:
            if key in self.results:
                return self.results[key]
        return None

    def latency_ms(self, percentile: float) -> float | None:
        """LoadGen's percentile of latency (from its scheduled send time), when it reported that one."""
        value = self.results.get(f"{_LATENCY_PREFIX}{percentile:.2f}{_LATENCY_SUFFIX}")
        return None if value is None else value / 1e6

    def to_json(self) -> dict:
        return {"scenario": self.scenario, "validity": self.validity, "results": dict(self.results),
                "log_dir": self.log_dir}

    @classmethod
    def from_json(cls, d: Mapping) -> "LoadGenVerdict":
        return cls(d["scenario"], d["validity"], dict(d["results"]), d["log_dir"])


def parse_detail_log(text: str, log_dir: str) -> LoadGenVerdict:
    """The verdict in a `mlperf_log_detail.txt`; ValueError naming what is missing or unreadable."""
    entries: dict[str, object] = {}
    reasons = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith(LOG_MARKER):
            continue
        try:
            entry = json.loads(line[len(LOG_MARKER):])
            key, value = entry["key"], entry["value"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"line {number} of LoadGen's detail log is not a log entry: {line[:200]!r}") from None
        if key == INVALID_REASON:
            reasons.append(value)  # one entry per reason
        else:
            entries[key] = value
    missing = [key for key in ("effective_scenario", "result_validity") if key not in entries]
    if missing:
        raise ValueError(f"LoadGen's detail log has no {' or '.join(missing)}: did the test finish?")
    results = {key: value for key, value in entries.items() if key.startswith("result_") or key in _ALSO_KEPT}
    if reasons:
        results[INVALID_REASON] = reasons
    return LoadGenVerdict(str(entries["effective_scenario"]), str(results.pop("result_validity")), results, log_dir)
