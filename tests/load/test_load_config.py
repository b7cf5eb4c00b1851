"""LoadConfig, its JSON form, and the --models/--target/--input parsers."""

import dataclasses
import json

import pytest

from tfs_bench.errors import ConfigError
from tfs_bench.load.config import InputSource
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.config import parse_tenant_spec
from tfs_bench.load.config import parse_tenant_specs
from tfs_bench.load.config import scale_open_loop
from tfs_bench.load.config import with_concurrency
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TenantSpec
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.windows import WindowPolicy

TARGETS = ("127.0.0.1:8500", "[::1]:9000")


@pytest.mark.parametrize(
    "entry, spec",
    [
        ("m", TenantSpec("m")),
        ("m:2.5", TenantSpec("m", weight=2.5)),
        ("m@127.0.0.1:8500", TenantSpec("m", "127.0.0.1:8500")),
        ("m@[::1]:9000:3", TenantSpec("m", "[::1]:9000", 3.0)),
        ("m@1", TenantSpec("m", "[::1]:9000")),
        ("m@0:0.5", TenantSpec("m", "127.0.0.1:8500", 0.5)),
    ],
)
def test_models_entries_name_a_model_a_target_and_a_weight(entry, spec):
    assert parse_tenant_spec(entry, TARGETS) == spec


@pytest.mark.parametrize(
    "entry, words",
    [
        ("m@elsewhere:1", "names no target"),
        ("m@2", "names no target"),
        ("m:heavy", "is not a number"),
        ("m:0", "must be > 0"),
        ("@127.0.0.1:8500", "no usable model name"),
        ("", "no usable model name"),
    ],
)
def test_bad_models_entries_are_refused_with_the_entry_named(entry, words):
    with pytest.raises(ConfigError, match=words):
        parse_tenant_spec(entry, TARGETS)


def test_a_tenant_given_twice_is_refused_but_the_same_model_on_two_targets_is_two_tenants():
    specs = parse_tenant_specs(["m", "m@1"], TARGETS)
    assert [s.tenant for s in specs] == ["m", "m@[::1]:9000"]
    with pytest.raises(ConfigError, match="same tenant twice: m"):
        parse_tenant_specs(["m", "m:2"], TARGETS)
    with pytest.raises(ConfigError, match="at least one model"):
        parse_tenant_specs([], TARGETS)


def test_input_sources(tmp_path):
    assert InputSource.parse("random") == InputSource()
    assert InputSource.parse(f"images:{tmp_path}") == InputSource("images", str(tmp_path))
    assert str(InputSource("images", str(tmp_path))) == f"images:{tmp_path}"
    for text in ("images", "pictures:/x", f"images:{tmp_path / 'missing'}"):
        with pytest.raises(ConfigError):
            InputSource.parse(text)


def _config(**overrides) -> LoadConfig:
    mix = TrafficMix.open_loop([TenantSpec("a"), TenantSpec("b", TARGETS[1], 3.0)], 100.0, "constant", 1)
    fields = {"mix": mix, "targets": TARGETS, "output_dir": "out"}
    return LoadConfig(**{**fields, **overrides})


def test_config_resolves_each_tenants_target_and_serialises():
    config = _config()
    assert [config.target_of(t) for t in config.mix.tenants] == list(TARGETS)
    assert config.to_json()["mix"] == config.mix.to_json()
    assert config.to_json()["policy"]["window_s"] == 5.0


def _every_field_set(tmp_path) -> LoadConfig:
    mix = TrafficMix(
        (
            TenantLoad("a", "a", rate_rps=12.5, arrival="constant", seed=7),
            TenantLoad("b@[::1]:9000", "b", target=TARGETS[1], concurrency=3),
        )
    )
    policy = WindowPolicy(window_s=2.0, window_min_requests=7, window_max_s=12.0, warmup_s=1.5, warmup_requests=9,
                          max_windows=8, stability_windows=4, stability_tolerance=0.2, sla_percentile=99.9,
                          client_cpu_saturation=0.8, timing_tolerance=0.1)
    criteria = ValidityCriteria(min_duration_s=6.0, min_requests=11, max_error_rate=0.02, max_late_fraction=0.03,
                                max_dropped_fraction=0.04)
    return LoadConfig(
        mix=mix, targets=TARGETS, output_dir=str(tmp_path / "out"), signature_name="times_two", batch_size=4,
        input_source=InputSource("images", str(tmp_path)), protocol="rest", policy=policy, criteria=criteria,
        max_outstanding=64, workers=3, seed=5, overwrite=True, request_timeout_s=3.5, connect_timeout_s=2.5,
        generator_priority="normal", ray_address="ray://head:10001", ray_worker_cpus=0.5,
    )


def test_config_json_round_trip_with_every_field_set(tmp_path):
    config = _every_field_set(tmp_path)
    for record in (config, config.policy, config.criteria):  # a field left at its default would go untested
        unset = [f.name for f in dataclasses.fields(record)
                 if f.default is not dataclasses.MISSING and getattr(record, f.name) == f.default]
        assert unset == [], type(record).__name__
    assert LoadConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert LoadConfig.from_json(_config().to_json()) == _config()


def test_a_config_without_ray_writes_no_ray_settings_so_older_runs_compare_equal():
    assert not any(key.startswith("ray_") for key in _config().to_json())
    d = _config(ray_address="auto").to_json()
    assert (d["ray_address"], d["ray_worker_cpus"]) == ("auto", 1.0)


@pytest.mark.parametrize("overrides, message", [
    ({"ray_address": " "}, "ray_address must not be empty"),
    ({"ray_worker_cpus": -0.5}, "ray_worker_cpus must be >= 0, got -0.5"),
])
def test_ray_settings_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _config(**overrides)


def test_a_config_naming_an_image_folder_of_another_machine_still_reads_back(tmp_path):
    config = _config(input_source=InputSource("images", "/data/elsewhere/images"))
    assert LoadConfig.from_json(config.to_json()).input_source == InputSource("images", "/data/elsewhere/images")


def test_a_config_of_another_schema_or_with_a_bad_value_is_refused():
    d = _config().to_json()
    with pytest.raises(ConfigError, match="schema_version 2"):
        LoadConfig.from_json({**d, "schema_version": 2})
    with pytest.raises(ConfigError, match="input source must be"):
        LoadConfig.from_json({**d, "input_source": "video"})
    with pytest.raises(ConfigError, match="stability_windows must be >= 1"):
        LoadConfig.from_json({**d, "policy": {**d["policy"], "stability_windows": 0}})


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"targets": ()}, "at least one target"),
        ({"targets": (TARGETS[0], TARGETS[0])}, "unique"),
        ({"targets": (TARGETS[0],)}, "not a target"),
        ({"max_outstanding": 1, "workers": 2}, "at least the number of workers"),
        ({"workers": 0}, "workers must be"),
        ({"batch_size": 0}, "batch_size"),
        ({"protocol": "http"}, "protocol"),
        ({"output_dir": ""}, "output directory"),
        ({"policy": WindowPolicy(window_s=1.0)}, "shorter than the minimum duration"),
        ({"request_timeout_s": 0}, "timeouts"),
    ],
)
def test_impossible_configs_are_refused(overrides, words):
    with pytest.raises(ConfigError, match=words):
        _config(**overrides)


def test_short_windows_are_fine_with_a_matching_minimum_duration():
    _config(policy=WindowPolicy(window_s=0.5), criteria=ValidityCriteria(min_duration_s=1.5))


def test_scaling_an_open_mix_keeps_the_shares_and_leaves_closed_tenants_alone():
    mix = TrafficMix(
        (
            TenantLoad("a", "a", rate_rps=10.0),
            TenantLoad("b", "b", rate_rps=30.0),
            TenantLoad("c", "c", concurrency=2),
        )
    )
    scaled = scale_open_loop(mix, 200.0)
    assert scaled.offered_rates_rps() == {"a": 50.0, "b": 150.0, "c": None}
    with pytest.raises(ConfigError, match="no open-loop tenant"):
        scale_open_loop(TrafficMix((TenantLoad("c", "c", concurrency=2),)), 10.0)


def test_with_concurrency_sets_one_tenant_or_all():
    mix = TrafficMix((TenantLoad("a", "a", rate_rps=10.0), TenantLoad("b", "b", rate_rps=30.0)))
    assert with_concurrency(mix, 4).offered_rates_rps() == {"a": None, "b": None}
    one = with_concurrency(mix, 4, "b")
    assert one.tenant("b").concurrency == 4 and one.tenant("a").rate_rps == 10.0
    with pytest.raises(ConfigError, match="no tenant 'z'"):
        with_concurrency(mix, 4, "z")
