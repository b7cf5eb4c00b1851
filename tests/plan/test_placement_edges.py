"""GPU memory fractions, core sets, thread settings and every request bound, exactly at the edge.

Companion of test_placement.py. GPU totals here are round numbers of bytes (10⁷), so a footprint
is a fraction to the digit: 1,231,000 bytes of 10,000,000 is 0.1231.
"""

import pytest

from conftest import exactly
from tfs_bench.errors import ConfigError
from tfs_bench.errors import ModelError
from plan_support import model_card
from tfs_bench.export import modelcard
from tfs_bench.plan import placement

TOTAL = 10_000_000  # bytes of the fake GPU


def model(name: str, gpu_bytes: int | None = None, versions=(1,)) -> placement.ModelEntry:
    return placement.ModelEntry(name=name, base_path=f"/models/{name}", versions=versions, card=model_card(name, gpu_bytes))


def gpu_plan(*models, **kwargs) -> placement.Plan:
    kwargs = {"hosting": "multi_process", "device": "gpu", "gpu_memory_bytes": TOTAL, "gpu_memory_headroom": 0.0,
              **kwargs}
    return placement.make_plan(placement.PlanRequest(models=tuple(models), **kwargs))


def cpu_plan(*models, **kwargs) -> placement.Plan:
    kwargs = {"hosting": "multi_process", "device": "cpu", **kwargs}
    return placement.make_plan(placement.PlanRequest(models=tuple(models), **kwargs))


def request(*models, **kwargs) -> placement.PlanRequest:
    kwargs = {"hosting": "dedicated", "device": "cpu", **kwargs}
    return placement.PlanRequest(models=tuple(models) or (model("a"),), **kwargs)


# ----------------------------------------------------------------------------- GPU fractions


@pytest.mark.parametrize(
    "need_bytes, fraction",
    [
        (1_231_000, 0.124),  # 0.1231 rounds *up*: to nearest it would be 0.123, below the need
        (1_239_000, 0.124),  # 0.1239: up and nearest agree
        (1_500_000, 0.15),  # exactly 0.150: no extra thousandth
        (1_499_999, 0.15),  # just under
        (1_500_001, 0.151),  # one byte over 0.15 of the GPU
        (1, 0.001),  # the smallest share
        (TOTAL, 1.0),  # the whole GPU
    ],
)
def test_a_fraction_is_the_need_rounded_up_to_a_thousandth(need_bytes, fraction):
    plan = gpu_plan(model("a", need_bytes))
    assert plan.servers[0].gpu_memory_fraction == fraction
    assert plan.notes == (f"a: GPU memory fraction {fraction} from its measured footprint",)


def test_headroom_is_added_before_rounding():
    # 1,000,000 bytes + 23% = 1,230,000 → 0.123 exactly; + 23.1% → 0.1231 → 0.124.
    assert gpu_plan(model("a", 1_000_000), gpu_memory_headroom=0.23).servers[0].gpu_memory_fraction == 0.123
    assert gpu_plan(model("a", 1_000_000), gpu_memory_headroom=0.231).servers[0].gpu_memory_fraction == 0.124


def test_an_explicit_fraction_exactly_at_the_need_is_accepted():
    plan = gpu_plan(model("a", 5_000_000), gpu_memory_fractions={"a": 0.5})
    assert plan.servers[0].gpu_memory_fraction == 0.5 and plan.notes == ()


def test_an_explicit_fraction_just_under_the_need_is_refused():
    with pytest.raises(ConfigError, match=r"^GPU memory fraction 0\.499 for a is below its need 0\.500 "):
        gpu_plan(model("a", 5_000_000), gpu_memory_fractions={"a": 0.499})


def test_fractions_summing_to_exactly_one_fit():
    plan = gpu_plan(model("a", 5_000_000), model("b", 5_000_000))
    assert [s.gpu_memory_fraction for s in plan.servers] == [0.5, 0.5]


def test_fractions_just_over_one_do_not_fit():
    with pytest.raises(ConfigError, match=exactly(
        "GPU memory fractions sum to 1.001 > 1: a=0.5, b=0.501; these models do not fit on one GPU together"
    )):
        gpu_plan(model("a", 5_000_000), model("b", 5_000_001))


def test_footprints_need_the_gpus_total_memory():
    with pytest.raises(ConfigError, match=exactly(
        "GPU memory fractions need the GPU's total memory: none was detected; pass --gpu_memory_gib"
    )):
        gpu_plan(model("a", 1), gpu_memory_bytes=None)


def test_multi_model_fits_when_the_footprints_fill_the_gpu_exactly():
    plan = gpu_plan(model("a", 6_000_000), model("b", 4_000_000), hosting="multi_model")
    assert plan.servers[0].gpu_memory_fraction is None
    with pytest.raises(ConfigError, match="exceed one GPU's memory"):
        gpu_plan(model("a", 6_000_000), model("b", 4_000_001), hosting="multi_model")


# ----------------------------------------------------------------------------- CPU core sets and threads


def test_as_many_servers_as_cores_get_one_core_each():
    plan = cpu_plan(model("a"), model("b"), cpu_cores=(5, 3))
    assert [(s.cpu_set, s.threads) for s in plan.servers] == [
        ((3,), placement.Threads(intra_op=1, inter_op=1)),
        ((5,), placement.Threads(intra_op=1, inter_op=1)),
    ]


def test_core_sets_are_contiguous_in_sorted_order_and_ignore_repeats():
    plan = cpu_plan(model("a"), model("b"), model("c"), cpu_cores=(7, 0, 3, 1, 2, 3, 6, 5, 4))
    assert [s.cpu_set for s in plan.servers] == [(0, 1, 2), (3, 4, 5), (6, 7)]


def test_no_cores_is_refused_by_name():
    with pytest.raises(ConfigError, match=exactly("multi_process on CPU needs the usable cores (none were given)")):
        cpu_plan(model("a"), cpu_cores=())


def test_too_many_servers_for_the_cores_says_what_to_do():
    with pytest.raises(ConfigError, match=exactly(
        "multi_process on CPU pins each server to its own cores, but 3 servers do not fit on 2 cores (4-5); "
        "use fewer models, more cores (--cpu_cores), or --hosting=multi_model"
    )):
        cpu_plan(model("a"), model("b"), model("c"), cpu_cores=(4, 5))


@pytest.mark.parametrize("intra_op, oversubscribed", [(2, False), (3, True)], ids=["at", "outside"])
def test_user_threads_oversubscribe_only_beyond_the_pinned_cores(intra_op, oversubscribed):
    plan = cpu_plan(model("a"), model("b"), cpu_cores=(0, 1, 2, 3), threads=placement.Threads(intra_op=intra_op))
    expected = [f"{n}: {intra_op} intra-op threads on 2 pinned cores oversubscribes them" for n in "ab"]
    assert list(plan.notes) == (expected if oversubscribed else [])


@pytest.mark.parametrize("field", ["intra_op", "session"])
def test_each_negative_pool_size_is_refused(field):
    with pytest.raises(ConfigError, match=exactly("intra-op and session thread counts must be >= 0")):
        placement.Threads(**{field: -1})


def test_inter_op_in_the_callers_thread_is_planned_beside_an_intra_op_count():
    threads = placement.Threads(intra_op=1, inter_op=-1)
    assert threads.flags() == ["--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=-1"]
    assert placement.Threads.from_json(threads.to_json()) == threads


def test_inter_op_in_the_callers_thread_without_an_intra_op_count_is_refused():
    with pytest.raises(ConfigError, match=exactly(
        "inter_op=-1 (each op in the caller's thread) needs intra_op > 0: "
        "without it tensorflow_model_server ignores the setting"
    )):
        placement.Threads(inter_op=-1, session=2)


def test_all_three_thread_settings_are_refused_with_the_reason():
    with pytest.raises(ConfigError, match=exactly(
        "set --tensorflow_session_parallelism or the intra/inter-op pair, not all three "
        "(tensorflow_model_server refuses that combination)"
    )):
        placement.Threads(intra_op=1, inter_op=1, session=1)


def test_thread_flags():
    assert placement.Threads(intra_op=3, inter_op=1).flags() == [
        "--tensorflow_intra_op_parallelism=3",
        "--tensorflow_inter_op_parallelism=1",
    ]
    assert placement.Threads().flags() == []


# ----------------------------------------------------------------------------- the plan's servers


def test_a_multi_model_plan_is_one_server_named_all_models():
    plan = placement.make_plan(request(model("a"), model("b", versions=(1, 2)), hosting="multi_model",
                                       host="10.0.0.7"))
    (server,) = plan.servers
    assert (server.name, server.host) == ("all_models", "10.0.0.7")
    assert server.models == (
        placement.HostedModel("a", "/models/a", (1,), {}),
        placement.HostedModel("b", "/models/b", (2,), {}),
    )
    assert plan.notes == ()


def test_a_plan_carries_the_requests_choices():
    batching = placement.BatchingSpec(max_batch_size=8)
    policy = placement.VersionPolicy.parse("all")
    plan = placement.make_plan(request(model("a"), hosting="dedicated", device="gpu", batching=batching,
                                       version_policy=policy))
    assert (plan.hosting, plan.device, plan.batching, plan.version_policy) == ("dedicated", "gpu", batching, policy)
    assert plan.notes == ("dedicated servers are meant to run one at a time, each with the whole device",)


def test_missing_and_unserved_versions_are_listed():
    with pytest.raises(ModelError, match=r"^model 'a' has no version 3, 4 under /models/a \(found 1, 2\)$"):
        placement.make_plan(request(model("a", versions=(1, 2)), version_policy=placement.VersionPolicy.parse(
            "specific:1,3,4")))
    with pytest.raises(ConfigError, match=r"\(served: 2, 3\)$"):
        placement.make_plan(request(model("a", versions=(1, 2, 3)), version_policy=placement.VersionPolicy.parse(
            "latest:2"), version_labels={"a": {"old": 1}}))


# ----------------------------------------------------------------------------- request bounds


def test_no_models_is_refused_by_name():
    with pytest.raises(ConfigError, match=exactly("no models to place")):
        placement.PlanRequest(models=(), hosting="dedicated", device="cpu")


def test_every_duplicate_name_is_listed():
    with pytest.raises(ConfigError, match=exactly("duplicate model names: a, b (TF Serving rejects them)")):
        request(model("a"), model("b"), model("a"), model("b"))


@pytest.mark.parametrize("headroom, refused", [(0.0, False), (9.99, False), (10.0, True), (10.5, True), (-0.01, True)])
def test_gpu_memory_headroom_bounds(headroom, refused):
    if refused:
        with pytest.raises(ConfigError, match=exactly(f"gpu_memory_headroom must be in [0, 10), got {headroom}")):
            request(gpu_memory_headroom=headroom)
    else:
        assert request(gpu_memory_headroom=headroom).gpu_memory_headroom == headroom


@pytest.mark.parametrize("fraction, refused", [(0.0, True), (0.001, False), (1.0, False), (1.5, True)])
def test_explicit_fraction_bounds(fraction, refused):
    if refused:
        with pytest.raises(ConfigError, match=exactly(f"GPU memory fraction of a must be in (0, 1], got {fraction}")):
            request(gpu_memory_fractions={"a": fraction})
    else:
        assert request(gpu_memory_fractions={"a": fraction}).gpu_memory_fractions == {"a": fraction}


def test_settings_for_models_not_in_the_plan_are_listed():
    with pytest.raises(ConfigError, match=exactly("GPU memory fractions given for models not in the plan: x, y")):
        request(gpu_memory_fractions={"y": 0.1, "x": 0.1})
    with pytest.raises(ConfigError, match=exactly("version labels given for models not in the plan: x, y")):
        request(version_labels={"y": {"s": 1}, "x": {"s": 1}})


@pytest.mark.parametrize(
    "port_base, models, refused",
    [(1, 1, False), (0, 1, True), (65534, 1, False), (65535, 1, True), (65532, 2, False), (65533, 2, True)],
)
def test_every_port_must_be_in_1_to_65535(port_base, models, refused):
    entries = [model(n) for n in "ab"[:models]]
    last = port_base + 2 * models - 1
    if refused:
        with pytest.raises(ConfigError, match=exactly(f"ports {port_base}..{last} are outside 1..65535")):
            request(*entries, port_base=port_base)
    else:
        plan = placement.make_plan(request(*entries, port_base=port_base))
        assert plan.servers[-1].rest_port == last


def test_a_model_without_versions_is_refused_by_name():
    with pytest.raises(ModelError, match=exactly("model 'a' has no versions under /models/a")):
        placement.ModelEntry(name="a", base_path="/models/a", versions=(), card=None)


# ----------------------------------------------------------------------------- batching bounds


def test_the_smallest_legal_batching():
    spec = placement.BatchingSpec(max_batch_size=1, batch_timeout_micros=0, max_enqueued_batches=1,
                                  num_batch_threads=1, allowed_batch_sizes=(1,))
    assert spec.allowed_batch_sizes == (1,)


def test_a_negative_batch_timeout_is_refused():
    with pytest.raises(ConfigError, match=exactly("batching batch_timeout_micros must be >= 0, got -1")):
        placement.BatchingSpec(batch_timeout_micros=-1)


@pytest.mark.parametrize(
    "sizes, message",
    [
        ((2, 2, 8), "allowed_batch_sizes entries must be monotonically increasing; got [2, 2, 8]"),
        ((0, 8), "batching parameter allowed_batch_sizes entries must be integers >= 1; got [0, 8]"),
        ((-1, 8), "batching parameter allowed_batch_sizes entries must be integers >= 1; got [-1, 8]"),
    ],
    ids=["repeated", "zero first", "negative first"],
)
def test_allowed_batch_sizes_must_be_positive_and_strictly_increasing(sizes, message):
    with pytest.raises(ConfigError, match=exactly(message)):
        placement.BatchingSpec(max_batch_size=8, allowed_batch_sizes=sizes)


def test_the_last_allowed_size_is_named_when_it_is_not_the_maximum():
    with pytest.raises(ConfigError, match=exactly(
        "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 8; expected 16"
    )):
        placement.BatchingSpec(max_batch_size=16, allowed_batch_sizes=(2, 4, 8))


def test_allowed_batch_sizes_without_a_maximum_end_at_tf_servings_default():
    assert placement.BatchingSpec(allowed_batch_sizes=(8, 1000)).allowed_batch_sizes == (8, 1000)
    with pytest.raises(ConfigError, match=exactly(
        "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 8; expected 1000"
    )):
        placement.BatchingSpec(allowed_batch_sizes=(2, 8))


# ----------------------------------------------------------------------------- files and lists


def test_a_model_entry_reads_the_newest_versions_card(tmp_path):
    base = tmp_path / "m"
    for version in (1, 2):
        (base / str(version)).mkdir(parents=True)
        (base / str(version) / "saved_model.pb").write_bytes(b"")
    newest = model_card("m", 123)
    modelcard.write_card(base / "2", newest)
    entry = placement.load_model_entry("m", str(base))
    assert (entry.name, entry.base_path, entry.versions, entry.card) == ("m", str(base), (1, 2), newest)
    assert entry.gpu_footprint_bytes == 123


def test_version_directories_messages_name_the_problem(tmp_path):
    base = tmp_path / "m"
    (base / "assets").mkdir(parents=True)
    with pytest.raises(ModelError, match=exactly(
        f"{base} has no numeric version directories (expected {base}/1/saved_model.pb); "
        "TF Serving would never make this model AVAILABLE"
    )):
        placement.version_dirs(base)
    (base / "2").mkdir()
    (base / "10").mkdir()
    with pytest.raises(ModelError, match=exactly(f"{base}: version directories without saved_model.pb: 10, 2")):
        placement.version_dirs(base)


def test_a_single_core_range_and_labels_in_any_case():
    assert placement.parse_core_list("3-3") == (3,)
    assert placement.parse_version_labels("a:Stable-2=4") == {"a": {"Stable-2": 4}}


# ----------------------------------------------------------------------------- plan.json's records, one fault at a time


def hosted(**changes) -> placement.HostedModel:
    fields = {"name": "m", "base_path": "/models/m", "versions": (1,), "labels": {}}
    return placement.HostedModel(**{**fields, **changes})


def server(**changes) -> placement.ServerPlan:
    fields = {"name": "s", "models": (hosted(),), "host": "127.0.0.1", "grpc_port": 8500, "rest_port": 8501,
              "gpu_memory_fraction": None, "cpu_set": None, "threads": placement.Threads()}
    return placement.ServerPlan(**{**fields, **changes})


@pytest.mark.parametrize("name", ["", 5], ids=["empty", "not text"])
def test_a_hosted_model_needs_a_name(name):
    with pytest.raises(ConfigError, match=exactly(f"a hosted model needs a name, got {name!r}")):
        hosted(name=name)


@pytest.mark.parametrize(
    "versions, refused",
    [((0,), False), ((0, 7), False), ((-1,), True), ((1, -1), True), ((1.0,), True), ((True,), True), ((), True)],
    ids=["zero", "zero and seven", "negative", "one negative", "float", "bool", "none"],
)
def test_served_versions_are_non_negative_integers(versions, refused):
    if refused:
        with pytest.raises(ConfigError, match=exactly(
            f"model 'm' needs at least one served version, as non-negative integers; got {list(versions)}"
        )):
            hosted(versions=versions)
    else:
        assert hosted(versions=versions).versions == versions


@pytest.mark.parametrize(
    "labels",
    [{1: 1}, {"stable": "1"}, {"stable": 1.0}, {"stable": True}],
    ids=["name not text", "version text", "version float", "version bool"],
)
def test_labels_map_names_to_integer_versions(labels):
    with pytest.raises(ConfigError, match=exactly(f"labels of model 'm' must map names to versions, got {labels!r}")):
        hosted(labels=labels)


def test_labels_naming_served_versions_are_accepted():
    assert hosted(versions=(0, 1), labels={"stable": 0, "canary": 1}).labels == {"stable": 0, "canary": 1}


@pytest.mark.parametrize("name", ["", 5], ids=["empty", "not text"])
def test_a_plan_server_needs_a_name(name):
    with pytest.raises(ConfigError, match=exactly(f"a plan server needs a name, got {name!r}")):
        server(name=name)


@pytest.mark.parametrize("host", ["", 5], ids=["empty", "not text"])
def test_a_plan_server_needs_a_host(host):
    with pytest.raises(ConfigError, match=exactly("plan server 's' has no host")):
        server(host=host)


def test_every_model_a_server_lists_twice_is_named():
    with pytest.raises(ConfigError, match=exactly("plan server 's' lists a more than once")):
        server(models=(hosted(name="a"), hosted(name="a")))
    with pytest.raises(ConfigError, match=exactly("plan server 's' lists a, b more than once")):
        server(models=(hosted(name="b"), hosted(name="a"), hosted(name="c"), hosted(name="a"), hosted(name="b")))
    assert [m.name for m in server(models=(hosted(name="a"), hosted(name="b"))).models] == ["a", "b"]


@pytest.mark.parametrize(
    "rest_port, refused", [(0, False), (1, False), (65535, False), (65536, True), (-1, True)],
    ids=["no REST", "lowest", "highest", "above", "negative"],
)
def test_rest_port_zero_means_no_rest_listener_and_others_are_ports(rest_port, refused):
    if refused:
        with pytest.raises(ConfigError, match=exactly(
            f"REST port of plan server 's' must be in 1..65535, got {rest_port}"
        )):
            server(rest_port=rest_port)
    else:
        assert server(rest_port=rest_port).rest_port == rest_port


@pytest.mark.parametrize(
    "fraction, refused",
    [(None, False), (0.001, False), (1, False), (1.0, False), (0.0, True), (-0.5, True), (1.001, True), (1.5, True),
     ("0.5", True)],
    ids=["default", "smallest", "whole int", "whole", "zero", "negative", "just over", "over", "text"],
)
def test_a_servers_gpu_memory_fraction_is_in_0_to_1(fraction, refused):
    if refused:
        with pytest.raises(ConfigError, match=exactly(
            f"GPU memory fraction of plan server 's' must be in (0, 1], got {fraction!r}"
        )):
            server(gpu_memory_fraction=fraction)
    else:
        assert server(gpu_memory_fraction=fraction).gpu_memory_fraction == fraction


@pytest.mark.parametrize(
    "cpu_set, refused",
    [(None, False), ((0,), False), ((0, 3), False), ((), True), ((-1,), True), ((0, -1), True), ((1.0,), True),
     ((True,), True)],
    ids=["unpinned", "core 0", "two cores", "empty", "negative", "one negative", "float", "bool"],
)
def test_a_servers_cpu_set_is_non_empty_core_numbers(cpu_set, refused):
    if refused:
        with pytest.raises(ConfigError, match=exactly(
            f"cpu_set of plan server 's' must be non-empty core numbers, got {cpu_set}"
        )):
            server(cpu_set=cpu_set)
    else:
        assert server(cpu_set=cpu_set).cpu_set == cpu_set
