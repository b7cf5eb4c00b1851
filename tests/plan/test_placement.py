import dataclasses

import pytest

from plan_support import model_card
from tfs_bench.plan import placement
from tfs_bench.errors import ConfigError
from tfs_bench.errors import ModelError

GIB = 2**30


def _model(name, gpu_gib=None, versions=(1,)):
    card = model_card(name, None if gpu_gib is None else int(gpu_gib * GIB))
    return placement.ModelEntry(name=name, base_path=f"/models/{name}", versions=versions, card=card)


def _request(models, **kwargs):
    kwargs.setdefault("hosting", "multi_process")
    kwargs.setdefault("device", "gpu")
    return placement.PlanRequest(models=tuple(models), **kwargs)


def test_dedicated_gives_each_model_a_server_and_its_own_ports():
    plan = placement.make_plan(_request([_model("a"), _model("b")], hosting="dedicated", device="cpu", port_base=9000))
    assert [(s.name, s.grpc_port, s.rest_port) for s in plan.servers] == [("a", 9000, 9001), ("b", 9002, 9003)]
    assert all(s.cpu_set is None and s.gpu_memory_fraction is None for s in plan.servers)


def test_multi_model_puts_every_model_in_one_server():
    plan = placement.make_plan(_request([_model("a"), _model("b")], hosting="multi_model", device="cpu"))
    (server,) = plan.servers
    assert [m.name for m in server.models] == ["a", "b"]


def test_gpu_fractions_come_from_footprints_plus_headroom():
    models = [_model("resnet", gpu_gib=2.0), _model("incep", gpu_gib=3.0)]
    plan = placement.make_plan(_request(models, gpu_memory_bytes=20 * GIB, gpu_memory_headroom=0.25))
    fractions = {s.name: s.gpu_memory_fraction for s in plan.servers}
    assert fractions == {"resnet": 0.125, "incep": 0.188}  # 2.5/20 exactly; 3.75/20 = 0.1875 rounded up
    assert all(s.gpu_memory_fraction >= need / 20 for s, need in zip(plan.servers, (2.5, 3.75)))


def test_gpu_fractions_that_do_not_fit_name_models_and_numbers():
    models = [_model("a", gpu_gib=6), _model("b", gpu_gib=5)]
    with pytest.raises(ConfigError, match=r"sum to 1\.100 > 1: a=0\.6, b=0\.5"):
        placement.make_plan(_request(models, gpu_memory_bytes=12 * GIB, gpu_memory_headroom=0.2))


def test_explicit_fraction_below_need_is_refused():
    models = [_model("a", gpu_gib=4)]
    with pytest.raises(ConfigError, match=r"fraction 0\.1 for a is below its need 0\.500 \(4\.00 GiB of 8\.00 GiB"):
        placement.make_plan(_request(models, gpu_memory_bytes=8 * GIB, gpu_memory_headroom=0.0, gpu_memory_fractions={"a": 0.1}))


def test_missing_footprint_needs_an_explicit_fraction():
    models = [_model("a"), _model("b", gpu_gib=1)]
    with pytest.raises(ConfigError, match=r"no measured GPU footprint for a .*--gpu_memory_fractions=a=FRACTION"):
        placement.make_plan(_request(models, gpu_memory_bytes=8 * GIB))
    plan = placement.make_plan(_request(models, gpu_memory_bytes=8 * GIB, gpu_memory_fractions={"a": 0.4}))
    assert [s.gpu_memory_fraction for s in plan.servers] == [0.4, 0.15]
    assert any("no measured GPU footprint; using the explicit fraction 0.4" in n for n in plan.notes)


def test_footprints_without_gpu_total_ask_for_it():
    with pytest.raises(ConfigError, match="pass --gpu_memory_gib"):
        placement.make_plan(_request([_model("a", gpu_gib=1)]))


def test_multi_model_on_gpu_checks_that_models_fit_together():
    models = [_model("a", gpu_gib=5), _model("b", gpu_gib=5)]
    with pytest.raises(ConfigError, match=r"exceed one GPU's memory \(8\.00 GiB\): a=5\.00 GiB, b=5\.00 GiB"):
        placement.make_plan(_request(models, hosting="multi_model", gpu_memory_bytes=8 * GIB, gpu_memory_headroom=0))
    plan = placement.make_plan(_request(models, hosting="multi_model", gpu_memory_bytes=16 * GIB))
    assert plan.servers[0].gpu_memory_fraction is None  # one process: TensorFlow takes the GPU


def test_cpu_multi_process_pins_disjoint_cores_with_matching_threads():
    models = [_model(n) for n in "abc"]
    plan = placement.make_plan(_request(models, device="cpu", cpu_cores=tuple(range(8))))
    sets = [s.cpu_set for s in plan.servers]
    assert sets == [(0, 1, 2), (3, 4, 5), (6, 7)]
    assert [(s.threads.intra_op, s.threads.inter_op) for s in plan.servers] == [(3, 1), (3, 1), (2, 1)]


def test_cpu_multi_process_keeps_user_threads_and_notes_oversubscription():
    plan = placement.make_plan(
        _request([_model("a"), _model("b")], device="cpu", cpu_cores=(0, 1), threads=placement.Threads(intra_op=4))
    )
    assert all(s.threads.intra_op == 4 for s in plan.servers)
    assert any("4 intra-op threads on 1 pinned cores oversubscribes" in n for n in plan.notes)


def test_more_processes_than_cores_is_refused():
    with pytest.raises(ConfigError, match=r"3 servers do not fit on 2 cores \(0-1\)"):
        placement.make_plan(_request([_model(n) for n in "abc"], device="cpu", cpu_cores=(0, 1)))


def test_duplicate_models_are_refused():
    with pytest.raises(ConfigError, match="duplicate model names: a"):
        _request([_model("a"), _model("a")])


def test_relative_base_path_is_refused():
    with pytest.raises(ConfigError, match="must be absolute .* got 'models/a'"):
        placement.ModelEntry(name="a", base_path="models/a", versions=(1,), card=None)
    with pytest.raises(ConfigError, match="must be absolute"):
        placement.load_model_entry("a", "saved_models/a")


def test_bad_enums_and_ports_are_refused():
    with pytest.raises(ConfigError, match="hosting must be one of dedicated, multi_model, multi_process"):
        _request([_model("a")], hosting="shared")
    with pytest.raises(ConfigError, match="device must be one of cpu, gpu"):
        _request([_model("a")], device="tpu")
    with pytest.raises(ConfigError, match=r"ports 65535\.\.65538 are outside"):
        _request([_model("a"), _model("b")], port_base=65535)


def test_version_directories(tmp_path):
    base = tmp_path / "m"
    with pytest.raises(ModelError, match="does not exist"):
        placement.version_dirs(base)
    (base / "assets").mkdir(parents=True)
    with pytest.raises(ModelError, match="no numeric version directories"):
        placement.load_model_entry("m", str(base))
    (base / "00000123").mkdir()
    with pytest.raises(ModelError, match="version directories without saved_model.pb: 00000123"):
        placement.version_dirs(base)
    (base / "00000123" / "saved_model.pb").write_bytes(b"")
    (base / "7").mkdir()
    (base / "7" / "saved_model.pb").write_bytes(b"")
    entry = placement.load_model_entry("m", str(base))
    assert entry.versions == (7, 123) and entry.card is None


@pytest.mark.parametrize(
    "text, available, served",
    [("latest", (1, 2, 3), (3,)), ("latest:2", (1, 2, 3), (2, 3)), ("all", (1, 2), (1, 2)), ("specific:1,3", (1, 2, 3), (1, 3))],
)
def test_version_policies(text, available, served):
    assert tuple(sorted(placement.VersionPolicy.parse(text).select(available))) == served


@pytest.mark.parametrize("text", ["newest", "latest:0", "latest:x", "specific:", "all:2"])
def test_bad_version_policies(text):
    with pytest.raises(ConfigError):
        placement.VersionPolicy.parse(text)


def test_specific_versions_must_exist():
    with pytest.raises(ModelError, match=r"model 'a' has no version 3 under /models/a \(found 1, 2\)"):
        placement.make_plan(_request([_model("a", versions=(1, 2))], device="cpu", hosting="dedicated",
                                     version_policy=placement.VersionPolicy.parse("specific:2,3")))


def test_version_labels():
    assert placement.parse_version_labels("a:stable=1,a:canary=2,b:stable=3") == {
        "a": {"stable": 1, "canary": 2}, "b": {"stable": 3}}
    with pytest.raises(ConfigError, match="expected model:label=version"):
        placement.parse_version_labels("a=1")
    with pytest.raises(ConfigError, match="label 'x' of model 'a' is given twice"):
        placement.parse_version_labels("a:x=1,a:x=2")
    plan = placement.make_plan(_request([_model("a", versions=(1, 2))], device="cpu", hosting="dedicated",
                                        version_policy=placement.VersionPolicy.parse("all"),
                                        version_labels={"a": {"stable": 1, "canary": 2}}))
    assert plan.servers[0].models[0].labels == {"stable": 1, "canary": 2}
    with pytest.raises(ConfigError, match="points to version 1, which is not served"):
        placement.make_plan(_request([_model("a", versions=(1, 2))], device="cpu", hosting="dedicated",
                                     version_labels={"a": {"stable": 1}}))


def test_batching_spec_validation():
    assert placement.BatchingSpec(max_batch_size=8, allowed_batch_sizes=(2, 4, 8)).allowed_batch_sizes == (2, 4, 8)
    # TF Serving's rule and words, the same as the embedded server's (tfs_bench.batching_rules).
    with pytest.raises(ConfigError, match="Last entry in allowed_batch_sizes must match max_batch_size; "
                                          "last entry was 8; expected 16"):
        placement.BatchingSpec(max_batch_size=16, allowed_batch_sizes=(2, 4, 8))
    with pytest.raises(ConfigError, match=r"must be monotonically increasing; got \[4, 2, 8\]"):
        placement.BatchingSpec(max_batch_size=8, allowed_batch_sizes=(4, 2, 8))
    with pytest.raises(ConfigError, match=r"must be integers >= 1; got \[0, 8\]"):
        placement.BatchingSpec(max_batch_size=8, allowed_batch_sizes=(0, 8))
    # Left unset, max_batch_size is TF Serving's default, and the last size must match that.
    assert placement.BatchingSpec(allowed_batch_sizes=(10, 1000)).allowed_batch_sizes == (10, 1000)
    with pytest.raises(ConfigError, match="last entry was 8; expected 1000"):
        placement.BatchingSpec(allowed_batch_sizes=(2, 8))
    with pytest.raises(ConfigError, match="max_batch_size must be >= 1"):
        placement.BatchingSpec(max_batch_size=0)


def test_all_three_thread_settings_are_refused():
    with pytest.raises(ConfigError, match="not all three"):
        placement.Threads(intra_op=2, inter_op=2, session=2)
    assert placement.Threads(session=4).flags() == ["--tensorflow_session_parallelism=4"]


def test_core_lists():
    assert placement.parse_core_list("0-3,6") == (0, 1, 2, 3, 6)
    assert placement.format_core_list((0, 1, 2, 3, 6, 8, 9)) == "0-3,6,8-9"
    for bad in ("3-1", "a", "1-"):
        with pytest.raises(ConfigError, match="bad core list"):
            placement.parse_core_list(bad)


def test_plans_are_plain_values():
    plan = placement.make_plan(_request([_model("a")], hosting="dedicated", device="cpu"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.servers[0].grpc_port = 1


def test_version_policy_round_trips_through_tf_serving_protos():
    from tensorflow_serving.config import model_server_config_pb2

    for text in ("latest:3", "all", "specific:2,5"):
        policy = placement.VersionPolicy.parse(text)
        config = model_server_config_pb2.ModelConfig()
        policy.fill_proto(config.model_version_policy)
        assert placement.VersionPolicy.from_proto(config.model_version_policy) == policy
    assert placement.VersionPolicy.from_proto(model_server_config_pb2.ModelConfig().model_version_policy) == \
        placement.VersionPolicy("latest", 1)  # unset: TF Serving serves the latest version
