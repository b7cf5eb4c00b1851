"""The model manager's version lifecycle, with a fake loader and real directories (no TensorFlow)."""

import threading

import grpc
import pytest

from server_support import poll_until
from tfs_bench.errors import ConfigError
from tfs_bench.server.model_config import ModelConfig, VersionPolicy
from tfs_bench.server.models import ModelManager, State, VersionStatus
from tfs_bench.server.status import ServingError

WAIT_S = 10.0


class FakeServable:
    def __init__(self, name, version, path):
        self.name, self.version, self.path = name, version, path


class FakeLoader:
    """Loads instantly, fails the versions in `failing`, and holds loads while `gate` is clear."""

    def __init__(self, failing=(), hold=False):
        self.failing = set(failing)
        self.gate = threading.Event()
        if not hold:
            self.gate.set()
        self.loads = []

    def __call__(self, name, version, path):
        self.loads.append((name, version))
        assert self.gate.wait(WAIT_S)
        if version in self.failing:
            raise ServingError(grpc.StatusCode.DATA_LOSS, "corrupt variables")
        return FakeServable(name, version, path)


def make_versions(base, *versions, names=None):
    base.mkdir(parents=True, exist_ok=True)
    for version in versions:
        (base / (names or {}).get(version, str(version))).mkdir()
    return str(base)


@pytest.fixture
def manager_factory():
    managers = []

    def make(loader=None, poll_interval_s=0.0):
        manager = ModelManager(loader or FakeLoader(), poll_interval_s)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.stop()
    assert not [t for t in threading.enumerate() if t.name == "model-manager"]


def status_of(manager, name, version):
    """The version's status, or None while the manager has not seen it yet."""
    try:
        return manager.version_statuses(name, version)[0]
    except ServingError:
        return None


def serve(manager, *configs):
    assert manager.serve(configs, threading.Event())


def test_versions_are_numeric_directories_and_leading_zeros_are_dropped(tmp_path, manager_factory):
    base = make_versions(tmp_path / "m", 7, 123, names={123: "00000123"})
    (tmp_path / "m" / "not_a_version").mkdir()
    (tmp_path / "m" / "99").write_text("a file, not a directory")
    manager = manager_factory()

    serve(manager, ModelConfig("m", base, VersionPolicy("all")))

    assert [s.version for s in manager.version_statuses("m")] == [123, 7]
    assert manager.find("m").version == 123
    assert manager.find("m").path.endswith("00000123")


@pytest.mark.parametrize(
    "policy, served",
    [
        (VersionPolicy(), [3]),
        (VersionPolicy("latest", num_versions=2), [3, 2]),
        (VersionPolicy("all"), [3, 2, 1]),
        (VersionPolicy("specific", versions=(1, 3)), [3, 1]),
    ],
)
def test_version_policies(tmp_path, manager_factory, policy, served):
    manager = manager_factory()

    serve(manager, ModelConfig("m", make_versions(tmp_path / "m", 1, 2, 3), policy))

    assert [s.version for s in manager.version_statuses("m")] == served
    assert manager.find("m").version == served[0]
    for version in served:
        assert manager.find("m", version=version).version == version


def test_lookup_errors_carry_tf_servings_messages(tmp_path, manager_factory):
    manager = manager_factory()
    serve(manager, ModelConfig("m", make_versions(tmp_path / "m", 1), labels=(("stable", 1),)))

    cases = [
        (lambda: manager.find("x"), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(x)"),
        (lambda: manager.find("m", 5), grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Specific(m, 5)"),
        (lambda: manager.find("m", label="beta"), grpc.StatusCode.INVALID_ARGUMENT,
         "Unrecognized servable version label: beta"),
        (lambda: manager.find("x", label="stable"), grpc.StatusCode.INVALID_ARGUMENT,
         "Unrecognized servable version label: stable"),
    ]
    for call, code, message in cases:
        with pytest.raises(ServingError) as info:
            call()
        assert (info.value.code, info.value.message) == (code, message)
    assert manager.find("m", label="stable").version == 1


def test_a_new_version_directory_is_loaded_by_polling_and_replaces_the_old(tmp_path, manager_factory):
    base = make_versions(tmp_path / "m", 1)
    manager = manager_factory(poll_interval_s=0.05)
    serve(manager, ModelConfig("m", base))

    (tmp_path / "m" / "2").mkdir()

    poll_until(lambda: manager.find("m").version == 2, WAIT_S, "version 2 served")
    poll_until(lambda: manager.version_statuses("m", 1)[0].state == State.END, WAIT_S, "version 1 unloaded")


def test_a_failing_new_version_keeps_the_old_one_serving(tmp_path, manager_factory):
    base = make_versions(tmp_path / "m", 1)
    manager = manager_factory(FakeLoader(failing={2}), poll_interval_s=0.05)
    serve(manager, ModelConfig("m", base))

    (tmp_path / "m" / "2").mkdir()

    status = poll_until(lambda: (s := status_of(manager, "m", 2)) and s.state == State.END and s,
                        WAIT_S, "version 2 failed")
    assert "corrupt variables" in status.error_message and "version 2" in status.error_message
    assert (status.state, status.error_code) == (State.END, grpc.StatusCode.DATA_LOSS)
    assert manager.find("m").version == 1
    assert manager.version_statuses("m", 1) == [VersionStatus(1, State.AVAILABLE)]


def test_a_removed_version_directory_is_unloaded(tmp_path, manager_factory):
    base = make_versions(tmp_path / "m", 1, 2)
    manager = manager_factory(poll_interval_s=0.05)
    serve(manager, ModelConfig("m", base, VersionPolicy("all")))

    (tmp_path / "m" / "2").rmdir()

    poll_until(lambda: manager.find("m").version == 1, WAIT_S, "version 1 latest")
    assert manager.version_statuses("m", 2)[0].state == State.END


def test_start_up_fails_on_a_load_error(tmp_path, manager_factory):
    manager = manager_factory(FakeLoader(failing={1}))

    with pytest.raises(ConfigError, match="Model m version 1 .* failed to load: corrupt variables"):
        manager.serve([ModelConfig("m", make_versions(tmp_path / "m", 1))], threading.Event())


def test_start_up_fails_on_a_missing_base_path(tmp_path, manager_factory):
    with pytest.raises(ConfigError, match=f"Could not find base path {tmp_path}/nope for servable m"):
        manager_factory().serve([ModelConfig("m", str(tmp_path / "nope"))], threading.Event())


def test_start_up_without_versions_fails_when_nothing_polls(tmp_path, manager_factory):
    with pytest.raises(ConfigError, match="No versions found for m"):
        manager_factory().serve([ModelConfig("m", make_versions(tmp_path / "m"))], threading.Event())


def test_start_up_waits_for_a_first_version_when_polling(tmp_path, manager_factory):
    base = make_versions(tmp_path / "m")
    manager = manager_factory(poll_interval_s=0.05)
    stop, result = threading.Event(), []
    # Daemon, and stopped in `finally`: a failed assertion must not leave start-up polling forever.
    thread = threading.Thread(target=lambda: result.append(manager.serve([ModelConfig("m", base)], stop)),
                              daemon=True)
    thread.start()
    try:
        (tmp_path / "m" / "4").mkdir()
        thread.join(WAIT_S)
        assert result == [True]
        assert manager.find("m").version == 4
    finally:
        stop.set()
        thread.join(WAIT_S)


def test_a_model_without_versions_says_what_it_waits_for_and_how_long(tmp_path, manager_factory, caplog):
    base = make_versions(tmp_path / "m")
    manager = manager_factory(poll_interval_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: manager.serve([ModelConfig("m", base)], stop), daemon=True)
    thread.start()
    try:
        poll_until(lambda: any("No versions of servable m" in r.getMessage() for r in caplog.records), WAIT_S,
                   "the warning")
    finally:
        stop.set()
        thread.join(WAIT_S)
    (message,) = {r.getMessage() for r in caplog.records if "No versions of servable m" in r.getMessage()}
    assert message == (
        f"No versions of servable m found under base path {base}; waiting for a version directory (a number, "
        f"e.g. {base}/1, holding a SavedModel), checked every 0.05 s (--file_system_poll_wait_seconds), with no "
        "time limit, as TF Serving waits; until one loads, the model is not AVAILABLE and a starting server does "
        "not open its ports"
    )


def test_start_up_returns_false_when_stopped(tmp_path, manager_factory):
    stop = threading.Event()
    stop.set()

    assert not manager_factory(poll_interval_s=0.05).serve(
        [ModelConfig("m", make_versions(tmp_path / "m"))], stop
    )


def test_stop_ends_a_start_up_still_waiting_for_versions(tmp_path, manager_factory):
    manager = manager_factory(poll_interval_s=0.05)
    result = []
    thread = threading.Thread(
        target=lambda: result.append(manager.serve([ModelConfig("m", make_versions(tmp_path / "m"))],
                                                   threading.Event()))
    )
    thread.start()

    manager.stop()

    thread.join(WAIT_S)
    assert result == [False]


def test_start_up_rejects_a_label_on_a_version_not_served(tmp_path, manager_factory):
    config = ModelConfig("m", make_versions(tmp_path / "m", 1, 2), labels=(("old", 1),))

    with pytest.raises(ConfigError, match="label old to version 1 of model m"):
        manager_factory().serve([config], threading.Event())


def test_reload_adds_and_removes_models(tmp_path, manager_factory):
    a = ModelConfig("a", make_versions(tmp_path / "a", 1))
    b = ModelConfig("b", make_versions(tmp_path / "b", 5))
    manager = manager_factory()
    serve(manager, a)

    manager.reload([b], timeout_s=WAIT_S)

    assert manager.find("b").version == 5
    with pytest.raises(ServingError, match=r"Latest\(a\)"):
        manager.find("a")
    assert manager.version_statuses("a") == [VersionStatus(1, State.END)]
    assert manager.model_names() == ("b",)


@pytest.mark.parametrize(
    "make_config, code, message",
    [
        (lambda tmp: ModelConfig("bad", str(tmp / "missing")), grpc.StatusCode.NOT_FOUND,
         "Could not find base path {tmp}/missing for servable bad"),
        (lambda tmp: ModelConfig("bad", make_versions(tmp / "empty")), grpc.StatusCode.NOT_FOUND,
         "No versions of servable bad found under base path {tmp}/empty"),
        (lambda tmp: ModelConfig("bad", make_versions(tmp / "v1", 1), VersionPolicy("specific", versions=(3,))),
         grpc.StatusCode.NOT_FOUND, "No versions of servable bad found under base path {tmp}/v1 that"),
        (lambda tmp: ModelConfig("bad", make_versions(tmp / "v2", 2), labels=(("x", 1),)),
         grpc.StatusCode.FAILED_PRECONDITION, "Request to assign label x to version 1 of model bad"),
    ],
)
def test_reload_rejects_unloadable_models_at_once_and_changes_nothing(
    tmp_path, manager_factory, make_config, code, message
):
    a = ModelConfig("a", make_versions(tmp_path / "a", 1))
    manager = manager_factory()
    serve(manager, a)

    with pytest.raises(ServingError) as info:
        manager.reload([a, make_config(tmp_path)], timeout_s=WAIT_S)

    assert info.value.code == code
    assert info.value.message.startswith(message.format(tmp=tmp_path))
    assert manager.model_names() == ("a",)


def test_reload_reports_a_load_failure_naming_model_and_path(tmp_path, manager_factory):
    manager = manager_factory(FakeLoader(failing={3}))
    serve(manager, ModelConfig("a", make_versions(tmp_path / "a", 1)))
    base = make_versions(tmp_path / "b", 3)

    with pytest.raises(ServingError) as info:
        manager.reload([ModelConfig("b", base)], timeout_s=WAIT_S)

    assert info.value.code == grpc.StatusCode.DATA_LOSS
    assert f"Model b version 3 (base path {base}) failed to load" in info.value.message


def test_reload_times_out_with_the_model_and_path_instead_of_hanging(tmp_path, manager_factory):
    loader = FakeLoader()
    manager = manager_factory(loader)
    serve(manager, ModelConfig("a", make_versions(tmp_path / "a", 1)))
    loader.gate.clear()  # the next load blocks
    base = make_versions(tmp_path / "slow", 1)

    with pytest.raises(ServingError) as info:
        manager.reload([ModelConfig("slow", base)], timeout_s=0.2)

    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert f"slow (base path {base})" in info.value.message
    assert manager.version_statuses("slow") == [VersionStatus(1, State.LOADING)]
    loader.gate.set()
    poll_until(lambda: status_of(manager, "slow", 1).state == State.AVAILABLE, WAIT_S, "slow loaded")


def test_a_failed_model_is_retried_when_re_added(tmp_path, manager_factory):
    loader = FakeLoader(failing={1})
    manager = manager_factory(loader)
    serve(manager, ModelConfig("a", make_versions(tmp_path / "a", 2)))
    b = ModelConfig("b", make_versions(tmp_path / "b", 1))
    with pytest.raises(ServingError):
        manager.reload([b], timeout_s=WAIT_S)
    manager.reload([], timeout_s=WAIT_S)
    loader.failing.clear()

    manager.reload([b], timeout_s=WAIT_S)

    assert manager.find("b").version == 1


def test_stop_joins_the_worker_even_while_waiting(tmp_path, manager_factory):
    manager = manager_factory(poll_interval_s=3600)
    serve(manager, ModelConfig("a", make_versions(tmp_path / "a", 1)))

    manager.stop()

    assert not [t for t in threading.enumerate() if t.name == "model-manager"]
