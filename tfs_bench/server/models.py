"""The model manager: which versions of which models are loaded, and their lifecycle states.

One worker thread does every load and unload, in passes: a pass re-reads each model's base path,
applies its version policy, loads the aspired versions that are missing (newest first) and then
unloads versions no longer aspired — but only once the model has an aspired version AVAILABLE, so a
model never stops serving because a new version failed to load (TF Serving's availability-
preserving policy). Passes run every `poll_interval_s`, and at once when the config changes.

Requests read an immutable snapshot (`_serving`) that passes replace wholesale, so the hot path
takes no lock.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import threading
import time
from typing import Callable, Iterable, Mapping, Sequence

import grpc
from absl import logging

from tfs_bench.errors import ConfigError
from tfs_bench.server import model_config
from tfs_bench.server import status
from tfs_bench.server.model_config import ModelConfig
from tfs_bench.server.status import ServingError

# How often a blocked start-up re-checks whether it was asked to stop.
_STOP_CHECK_S = 0.25


class State(enum.IntEnum):
    """ModelVersionStatus.State values."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: State
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


@dataclasses.dataclass(frozen=True)
class _ServingModel:
    versions: Mapping[int, object]  # version -> servables.LoadedVersion, AVAILABLE ones only
    latest: object | None
    labels: Mapping[str, int]


@dataclasses.dataclass
class _VersionRecord:
    # Mutable on purpose: the worker advances it through the states; guarded by ModelManager._lock.
    state: State
    servable: object | None = None
    error: ServingError | None = None


@dataclasses.dataclass
class _ModelRecord:
    base_path: str
    versions: dict[int, _VersionRecord] = dataclasses.field(default_factory=dict)
    warned: str = ""  # the last warning logged, so each is logged once per cause


Loader = Callable[[str, int, str], object]


class ModelManager:
    """Loads, serves and unloads model versions; `loader(name, version, path)` builds a servable."""

    def __init__(self, loader: Loader, poll_interval_s: float):
        self._loader = loader
        self._poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._configs: dict[str, ModelConfig] = {}
        self._records: dict[str, _ModelRecord] = {}
        self._serving: dict[str, _ServingModel] = {}
        # Passes are numbered; a waiter needs one that started after its change was applied.
        self._passes_started = 0
        self._passes_done = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()  # orders starting the worker against stop()

    # Requests.

    def find(self, name: str, version: int | None = None, label: str | None = None):
        """The servable a request addresses; raises ServingError with TF Serving's message."""
        model = self._serving.get(name)
        if label is not None:
            version = model.labels.get(label) if model else None
            if version is None:
                raise status.invalid_argument(f"Unrecognized servable version label: {label}")
        if version is None:
            if model is None or model.latest is None:
                raise status.not_found(f"Servable not found for request: Latest({name})")
            return model.latest
        servable = model.versions.get(version) if model else None
        if servable is None:
            raise status.not_found(f"Servable not found for request: Specific({name}, {version})")
        return servable

    def version_statuses(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]:
        """GetModelStatus: versions newest first; raises ServingError like TF Serving."""
        with self._lock:
            if label is not None:
                config = self._configs.get(name)
                version = config.label_versions.get(label) if config else None
                if version is None:
                    raise status.invalid_argument(f"Unrecognized servable version label: {label}")
            record = self._records.get(name)
            versions = record.versions if record else {}
            if version is not None:
                if version not in versions:
                    raise status.not_found(f"Could not find version {version} of model {name}")
                return [_status_of(version, versions[version])]
            if not versions:
                raise status.not_found(f"Could not find any versions of model {name}")
            return [_status_of(v, versions[v]) for v in sorted(versions, reverse=True)]

    # Configuration.

    def serve(self, configs: Sequence[ModelConfig], stop) -> bool:
        """Start-up: serves `configs` and waits until every model is AVAILABLE.

        `stop` is anything with is_set(); returns False when it was set (or stop() was called)
        first. Raises ConfigError for a
        missing base path, a version that fails to load, or a label naming a version that is not
        AVAILABLE.
        """
        for config in configs:
            if not os.path.isdir(config.base_path):
                raise ConfigError(_missing_base_path(config))
        wanted = self._apply(configs)
        while not stop.is_set() and not self._stopping.is_set():
            with self._lock:
                self._changed.wait_for(lambda: self._passes_done >= wanted, timeout=_STOP_CHECK_S)
                if self._passes_done < wanted:
                    continue
                wanted = self._passes_done + 1  # the next check needs the next poll
                failures = self._failures(config.name for config in configs)
                waiting = [c for c in configs if not self._is_available(c.name)]
            if failures:
                raise ConfigError(failures[0].message)
            if not waiting:
                self._check_labels(configs)
                return True
            if self._poll_interval_s <= 0:
                names = ", ".join(f"{c.name} ({c.base_path})" for c in waiting)
                raise ConfigError(
                    f"No versions found for {names} and --file_system_poll_wait_seconds=0 "
                    "means no new version will be noticed"
                )
        return False

    def reload(self, configs: Sequence[ModelConfig], timeout_s: float) -> None:
        """HandleReloadConfigRequest: replaces the model list; raises ServingError.

        Models that are new or changed must be loadable: their base path and an aspired version
        must exist (checked before anything changes) and they must become AVAILABLE within
        `timeout_s` (the config stays applied if they do not, as in TF Serving).
        """
        names = [config.name for config in configs]
        if len(set(names)) != len(names):
            raise status.invalid_argument("Illegal to list a model multiple times in config list")
        deadline = time.monotonic() + timeout_s
        # One reload at a time, as in TF Serving; the wait below is bounded, so this lock is too.
        if not self._reload_lock.acquire(timeout=timeout_s):
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"Another reload still running after {timeout_s:g} s")
        try:
            self._reload_locked(configs, timeout_s, deadline)
        finally:
            self._reload_lock.release()

    def _reload_locked(self, configs: Sequence[ModelConfig], timeout_s: float, deadline: float) -> None:
        with self._lock:
            changed = [c for c in configs if self._configs.get(c.name) != c]
        for config in changed:
            _check_loadable(config)
        wanted = self._apply(configs)
        with self._lock:
            done = self._changed.wait_for(
                lambda: self._passes_done >= wanted, timeout=max(0.0, deadline - time.monotonic())
            )
            pending = [c for c in changed if not self._is_available(c.name)]
            failures = self._failures(c.name for c in pending)
        if failures:
            raise failures[0]
        if pending:
            described = "; ".join(f"{c.name} (base path {c.base_path})" for c in pending)
            if not done:
                raise ServingError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"Reload timed out after {timeout_s:g} s: model(s) not AVAILABLE yet: {described}",
                )
            # The versions checked above vanished before the load (see the log for why).
            raise status.not_found(f"Model(s) not AVAILABLE after the reload: {described}")

    def model_names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._configs)

    def stop(self) -> None:
        """Stops the worker (after the load in progress, if any) and joins it."""
        self._stopping.set()
        self._wake.set()
        with self._thread_lock:  # a start-up in another thread may be starting the worker now
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    # The worker.

    def _start_worker(self) -> None:
        with self._thread_lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="model-manager")
                self._thread.start()

    def _apply(self, configs: Sequence[ModelConfig]) -> int:
        self._start_worker()
        with self._lock:
            for config in configs:
                record = self._records.get(config.name)
                if config.name not in self._configs and record is not None:
                    _forget_failures(record)  # a re-added model gets another try
            self._configs = {config.name: config for config in configs}
            wanted = self._passes_started + 1
        self._wake.set()
        return wanted

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            self._pass()
            self._wake.wait(self._poll_interval_s if self._poll_interval_s > 0 else None)

    def _pass(self) -> None:
        with self._lock:
            self._passes_started += 1
            number = self._passes_started
            configs = list(self._configs.values())
            removed = [name for name in self._records if name not in self._configs]
        for name in removed:
            self._unload_all(name)
        for config in configs:
            if self._stopping.is_set():
                return
            self._reconcile(config)
        with self._lock:
            self._passes_done = number
            self._changed.notify_all()

    def _reconcile(self, config: ModelConfig) -> None:
        record = self._record_for(config)
        try:
            on_disk = model_config.discover_versions(config.base_path)
        except OSError as e:
            self._warn(record, f"Could not read base path {config.base_path} for servable {config.name}: {e}")
            return
        aspired = config.policy.select(on_disk)
        if not aspired:
            self._warn(record, f"No versions of servable {config.name} found under base path "
                               f"{config.base_path}" + self._waiting_for(config, on_disk))
        with self._lock:
            to_load = [v for v in aspired if not _attempted(record.versions.get(v))]
        for version in sorted(to_load, reverse=True):
            if self._stopping.is_set():
                return
            self._load(config, record, version)
        with self._lock:
            loaded = {v for v, r in record.versions.items() if r.state == State.AVAILABLE}
            keep_old = not (loaded & aspired)
        for version in sorted(loaded - aspired):
            if not keep_old or version not in on_disk:
                self._unload(config.name, record, version)

    def _record_for(self, config: ModelConfig) -> _ModelRecord:
        with self._lock:
            record = self._records.get(config.name)
        if record is not None and record.base_path != config.base_path:
            self._unload_all(config.name)  # versions of another directory are other models
            record = None
        if record is None:
            with self._lock:
                record = self._records[config.name] = _ModelRecord(config.base_path)
        return record

    def _load(self, config: ModelConfig, record: _ModelRecord, version: int) -> None:
        with self._lock:
            record.versions[version] = _VersionRecord(State.LOADING)
            self._changed.notify_all()
        logging.info("Loading servable version {name: %s version: %d}", config.name, version)
        started = time.monotonic()
        try:
            path = model_config.version_directory(config.base_path, version)
            servable, error = self._loader(config.name, version, path), None
        except ServingError as e:
            servable, error = None, e
        except Exception as e:  # a loader bug must not kill the worker; report it as the load error
            servable, error = None, ServingError(grpc.StatusCode.UNKNOWN, f"{type(e).__name__}: {e}")
        with self._lock:
            if error is None:
                record.versions[version] = _VersionRecord(State.AVAILABLE, servable=servable)
            else:
                error = ServingError(
                    error.code,
                    f"Model {config.name} version {version} (base path {config.base_path}) "
                    f"failed to load: {error.message}",
                )
                record.versions[version] = _VersionRecord(State.END, error=error)
            self._publish(config.name)
        if error is None:
            logging.info("Successfully loaded servable version {name: %s version: %d} in %.2f s",
                         config.name, version, time.monotonic() - started)
        else:
            logging.error("%s", error.message)

    def _unload(self, name: str, record: _ModelRecord, version: int) -> None:
        with self._lock:
            record.versions[version].state = State.UNLOADING
            self._publish(name)
        logging.info("Unloading servable version {name: %s version: %d}", name, version)
        with self._lock:
            # Requests still running hold their own reference; TF frees the model after them.
            record.versions[version] = _VersionRecord(State.END)
            self._changed.notify_all()

    def _unload_all(self, name: str) -> None:
        with self._lock:
            record = self._records.get(name)
            loaded = [v for v, r in record.versions.items() if r.state == State.AVAILABLE] if record else []
        for version in loaded:
            self._unload(name, record, version)

    def _publish(self, name: str) -> None:
        # Caller holds the lock. Replaces the snapshot instead of mutating it: readers hold no lock.
        record = self._records[name]
        config = self._configs.get(name)
        available = {
            v: r.servable for v, r in record.versions.items() if r.state == State.AVAILABLE
        }
        serving = dict(self._serving)
        if config is None or not available:
            serving.pop(name, None)
        else:
            latest = available[max(available)]
            serving[name] = _ServingModel(available, latest, dict(config.label_versions))
        self._serving = serving
        self._changed.notify_all()

    def _waiting_for(self, config: ModelConfig, on_disk) -> str:
        """What a model without versions waits for, and for how long (TF Serving only says the first part)."""
        found = f" (found {sorted(on_disk)}, which its version policy does not serve)" if on_disk else ""
        if self._poll_interval_s <= 0:
            return found
        return (f"{found}; waiting for a version directory (a number, e.g. {os.path.join(config.base_path, '1')}, "
                f"holding a SavedModel), checked every {self._poll_interval_s:g} s "
                "(--file_system_poll_wait_seconds), with no time limit, as TF Serving waits; "
                "until one loads, the model is not AVAILABLE and a starting server does not open its ports")

    def _warn(self, record: _ModelRecord, message: str) -> None:
        if record.warned != message:
            record.warned = message
            logging.warning("%s", message)

    # Helpers for waiters; callers hold the lock.

    def _is_available(self, name: str) -> bool:
        model = self._serving.get(name)
        return model is not None and model.latest is not None

    def _failures(self, names: Iterable[str]) -> list[ServingError]:
        failures = []
        for name in names:
            record = self._records.get(name)
            if record is None or self._is_available(name):
                continue
            failures.extend(r.error for r in record.versions.values() if r.error is not None)
        return failures

    def _check_labels(self, configs: Sequence[ModelConfig]) -> None:
        for config in configs:
            for label, version in config.labels:
                if version not in self._serving[config.name].versions:
                    raise ConfigError(_label_error(config.name, label, version))


def _status_of(version: int, record: _VersionRecord) -> VersionStatus:
    if record.error is None:
        return VersionStatus(version, record.state)
    return VersionStatus(version, record.state, record.error.code, record.error.message)


def _attempted(record: _VersionRecord | None) -> bool:
    # Loading, loaded, or failed (failures are not retried until the model is re-added).
    return record is not None and (record.state != State.END or record.error is not None)


def _forget_failures(record: _ModelRecord) -> None:
    for version in [v for v, r in record.versions.items() if r.error is not None]:
        del record.versions[version]


def _missing_base_path(config: ModelConfig) -> str:
    return f"Could not find base path {config.base_path} for servable {config.name}"


def _label_error(name: str, label: str, version: int) -> str:
    return (
        f"Request to assign label {label} to version {version} of model {name}, "
        "which is not currently available for inference"
    )


def _check_loadable(config: ModelConfig) -> None:
    """Rejects, before anything changes, a reload that could only hang waiting for files."""
    if not os.path.isdir(config.base_path):
        raise status.not_found(_missing_base_path(config))
    try:
        on_disk = model_config.discover_versions(config.base_path)
    except OSError as e:
        raise status.not_found(f"Could not read base path {config.base_path}: {e}") from None
    aspired = config.policy.select(on_disk)
    if not aspired:
        raise status.not_found(
            f"No versions of servable {config.name} found under base path {config.base_path}"
            + (f" that its version policy serves (found {list(on_disk)})" if on_disk else "")
        )
    for label, version in config.labels:
        if version not in aspired:
            raise status.failed_precondition(_label_error(config.name, label, version))
