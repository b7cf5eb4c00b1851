"""LoadGen's settings as the suite's flags give them, and its verdict read from its detail log."""

import json

import mlperf_loadgen as lg
import pytest

from conftest import exactly
from tfs_bench.errors import ConfigError
from tfs_bench.load.loadgen_log import LoadGenSettings
from tfs_bench.load.loadgen_log import LoadGenVerdict
from tfs_bench.load.loadgen_log import parse_detail_log



def entry(key, value):
    return ":::MLLOG " + json.dumps({"key": key, "value": value, "time_ms": 1.0, "namespace": "mlperf::logging"})


def test_server_settings_reach_loadgen_under_its_own_names():
    settings = LoadGenSettings("Server", target_qps=250.5, latency_bound_ms=75.25, latency_percentile=99.9,
                               min_duration_s=12.5, min_query_count=345, seed=7).test_settings(lg)
    assert settings.scenario == lg.TestScenario.Server and settings.mode == lg.TestMode.PerformanceOnly
    assert settings.server_target_qps == 250.5
    assert settings.server_target_latency_ns == 75_250_000
    assert settings.server_target_latency_percentile == pytest.approx(0.999)
    assert (settings.min_duration_ms, settings.min_query_count) == (12_500, 345)
    assert settings.qsl_rng_seed == settings.sample_index_rng_seed == settings.schedule_rng_seed == 7


def test_offline_and_single_stream_settings_reach_loadgen():
    offline = LoadGenSettings("Offline", target_qps=900.0).test_settings(lg)
    assert offline.scenario == lg.TestScenario.Offline and offline.offline_expected_qps == 900.0
    single = LoadGenSettings("SingleStream", latency_bound_ms=2.5, latency_percentile=90.0).test_settings(lg)
    assert single.scenario == lg.TestScenario.SingleStream
    assert single.single_stream_expected_latency_ns == 2_500_000
    assert single.single_stream_target_latency_percentile == pytest.approx(0.9)


@pytest.mark.parametrize("kwargs, message", [
    ({"scenario": "MultiStream"}, "the MLPerf scenario must be one of SingleStream, Server, Offline, got 'MultiStream'"),
    ({"scenario": "Server", "latency_bound_ms": 10.0}, "the Server scenario needs a target rate > 0 (--rate)"),
    ({"scenario": "Offline", "target_qps": 0.0}, "the Offline scenario needs a target rate > 0 (--rate)"),
    ({"scenario": "Server", "target_qps": 5.0}, "the Server scenario needs a latency bound > 0 (--sla_ms)"),
    ({"scenario": "SingleStream", "latency_percentile": 100.0}, "the latency percentile must be in (0, 100), got 100.0"),
    ({"scenario": "SingleStream", "seed": -1},
     "the minimum duration, the minimum query count and the seed must be >= 0"),
])
def test_settings_loadgen_could_not_use_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=exactly(message)):
        LoadGenSettings(**kwargs)


def test_settings_read_back_equal():
    settings = LoadGenSettings("Server", 10.0, 20.0, 95.0, 3.0, 50, 2)
    assert LoadGenSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings


def test_the_verdict_keeps_every_result_and_each_invalid_reason():
    log = "\n".join([
        "a line that is not LoadGen's",
        entry("effective_scenario", "Server"),
        entry("effective_target_qps", 100),
        entry("requested_server_target_qps", 100),  # neither a result nor kept
        entry("result_invalid_reason", "Reduce target QPS to improve latency."),
        entry("result_invalid_reason", "Increase the minimum duration."),
        entry("result_validity", "INVALID"),
        entry("result_completed_samples_per_sec", 98.5),
        entry("result_99.00_percentile_latency_ns", 12_345_678),
        entry("early_stopping_met", False),
    ])
    verdict = parse_detail_log(log, "mlperf")
    assert (verdict.scenario, verdict.validity, verdict.log_dir) == ("Server", "INVALID", "mlperf")
    assert verdict.results == {
        "effective_target_qps": 100,
        "result_invalid_reason": ["Reduce target QPS to improve latency.", "Increase the minimum duration."],
        "result_completed_samples_per_sec": 98.5,
        "result_99.00_percentile_latency_ns": 12_345_678,
        "early_stopping_met": False,
    }
    assert verdict.completed_per_s == 98.5
    assert verdict.latency_ms(99) == 12.345678 and verdict.latency_ms(95) is None
    assert LoadGenVerdict.from_json(json.loads(json.dumps(verdict.to_json()))) == verdict


@pytest.mark.parametrize("key, value", [
    ("result_qps_with_loadgen_overhead", 801.5),  # SingleStream
    ("result_samples_per_second", 1200.0),  # Offline
])
def test_each_scenario_s_throughput_is_read_under_its_own_name(key, value):
    log = "\n".join([entry("effective_scenario", "X"), entry("result_validity", "VALID"), entry(key, value)])
    assert parse_detail_log(log, "mlperf").completed_per_s == value


@pytest.mark.parametrize("log, message", [
    (entry("effective_scenario", "Server"), "LoadGen's detail log has no result_validity: did the test finish?"),
    ("", "LoadGen's detail log has no effective_scenario or result_validity: did the test finish?"),
    (":::MLLOG {not json", "line 1 of LoadGen's detail log is not a log entry: ':::MLLOG {not json'"),
    (":::MLLOG {\"value\": 1}", "line 1 of LoadGen's detail log is not a log entry: ':::MLLOG {\"value\": 1}'"),
])
def test_an_unfinished_or_damaged_log_is_refused_naming_why(log, message):
    with pytest.raises(ValueError, match=exactly(message)):
        parse_detail_log(log, "mlperf")


def test_a_verdict_is_valid_or_invalid():
    with pytest.raises(ValueError, match="LoadGen's validity is VALID or INVALID, got 'MAYBE'"):
        LoadGenVerdict("Server", "MAYBE", {}, "mlperf")
