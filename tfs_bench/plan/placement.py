"""The plan stage: a placement of models onto TF Serving servers.

`make_plan` is pure: it takes the models (with their cards), the hosting and device choices and
the machine's facts (GPU memory, usable cores) and returns a `Plan` of servers, each with its
ports, GPU memory fraction or CPU core set and thread settings. `tfs_bench.plan.plan_files` turns a
plan into the files TF Serving reads, and `tfs_bench.plan.plan_record` is the plan.json record
built from these types (hence their to_json/from_json).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

from tfs_bench.export import modelcard
from tfs_bench.errors import ConfigError
from tfs_bench.errors import ModelError
from tfs_bench import addresses
from tfs_bench import batching_rules
from tfs_bench.version_policy import VersionPolicy

HOSTINGS = ("dedicated", "multi_model", "multi_process")
DEVICES = ("cpu", "gpu")

_NUMERIC = re.compile(r"^\d+$")


# ----------------------------------------------------------------------------- models


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model to host: its TF Serving name, absolute base path and versions on disk."""

    name: str
    base_path: str
    versions: tuple[int, ...]
    card: modelcard.ModelCard | None  # of the newest version; None when it has no card

    def __post_init__(self):
        if not os.path.isabs(self.base_path):
            raise ConfigError(
                f"base path of model {self.name!r} must be absolute (TF Serving rejects "
                f"relative paths), got {self.base_path!r}"
            )
        if not self.versions:
            raise ModelError(f"model {self.name!r} has no versions under {self.base_path}")

    @property
    def gpu_footprint_bytes(self) -> int | None:
        if self.card and self.card.footprint:
            return self.card.footprint.gpu_peak_bytes
        return None


def version_dirs(base_path: str | os.PathLike) -> dict[int, Path]:
    """Numeric subdirectories holding a saved_model.pb by version ('00000123' is version 123)."""
    base = Path(base_path)
    if not base.is_dir():
        raise ModelError(f"model directory {base} does not exist")
    numeric = [p for p in base.iterdir() if p.is_dir() and _NUMERIC.match(p.name)]
    if not numeric:
        raise ModelError(
            f"{base} has no numeric version directories (expected {base}/1/saved_model.pb); "
            "TF Serving would never make this model AVAILABLE"
        )
    not_savedmodels = sorted(p.name for p in numeric if not (p / "saved_model.pb").is_file())
    if not_savedmodels:
        raise ModelError(f"{base}: version directories without saved_model.pb: {', '.join(not_savedmodels)}")
    return {int(p.name): p for p in numeric}


def load_model_entry(name: str, base_path: str | os.PathLike) -> ModelEntry:
    base = os.fspath(base_path)
    if not os.path.isabs(base):
        raise ConfigError(f"base path of model {name!r} must be absolute, got {base!r}")
    dirs = version_dirs(base)
    try:
        card = modelcard.read_card(dirs[max(dirs)])
    except ModelError:
        card = None  # planned all the same; only GPU fractions need a card
    return ModelEntry(name=name, base_path=base, versions=tuple(sorted(dirs)), card=card)


# ----------------------------------------------------------------------------- policies


def parse_version_labels(text: str) -> dict[str, dict[str, int]]:
    """'model:label=version,...' -> {model: {label: version}}."""
    labels: dict[str, dict[str, int]] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        match = re.fullmatch(r"([^:=]+):([A-Za-z0-9_\-]+)=(\d+)", item)
        if not match:
            raise ConfigError(f"bad version label {item!r}: expected model:label=version")
        model, label, version = match.groups()
        if label in labels.setdefault(model, {}):
            raise ConfigError(f"label {label!r} of model {model!r} is given twice")
        labels[model][label] = int(version)
    return labels


# ----------------------------------------------------------------------------- server settings


@dataclasses.dataclass(frozen=True)
class BatchingSpec:
    """Server-side batching parameters; None fields are left to TF Serving's defaults."""

    max_batch_size: int | None = None
    batch_timeout_micros: int | None = None
    max_enqueued_batches: int | None = None
    num_batch_threads: int | None = None
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"batching {name} must be >= 1, got {value}")
        if self.batch_timeout_micros is not None and self.batch_timeout_micros < 0:
            raise ConfigError(f"batching batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
        # An unset max_batch_size is written as unset, and TF Serving checks against its default.
        max_batch_size = batching_rules.DEFAULT_MAX_BATCH_SIZE if self.max_batch_size is None else self.max_batch_size
        batching_rules.check_allowed_batch_sizes(self.allowed_batch_sizes, max_batch_size)

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**d, "allowed_batch_sizes": list(self.allowed_batch_sizes)}

    @classmethod
    def from_json(cls, d: dict) -> BatchingSpec:
        kwargs = {f.name: d[f.name] for f in dataclasses.fields(cls)}
        return cls(**{**kwargs, "allowed_batch_sizes": tuple(json_list(d, "allowed_batch_sizes"))})


@dataclasses.dataclass(frozen=True)
class Threads:
    """TF Serving's thread flags; 0 leaves the choice to TensorFlow.

    A negative inter_op runs every op in the thread that calls the Session (TensorFlow's
    ConfigProto), and TF Serving applies it only beside a positive intra_op.
    """

    intra_op: int = 0
    inter_op: int = 0
    session: int = 0

    def __post_init__(self):
        if min(self.intra_op, self.session) < 0:
            raise ConfigError("intra-op and session thread counts must be >= 0")
        if self.inter_op < 0 and self.intra_op <= 0:
            raise ConfigError(
                f"inter_op={self.inter_op} (each op in the caller's thread) needs intra_op > 0: "
                "without it tensorflow_model_server ignores the setting"
            )
        if self.intra_op and self.inter_op and self.session:
            raise ConfigError(
                "set --tensorflow_session_parallelism or the intra/inter-op pair, not all three "
                "(tensorflow_model_server refuses that combination)"
            )

    def flags(self) -> list[str]:
        out = []
        if self.session:
            out.append(f"--tensorflow_session_parallelism={self.session}")
        if self.intra_op:
            out.append(f"--tensorflow_intra_op_parallelism={self.intra_op}")
        if self.inter_op:
            out.append(f"--tensorflow_inter_op_parallelism={self.inter_op}")
        return out

    def to_json(self) -> dict:
        return {"intra_op": self.intra_op, "inter_op": self.inter_op, "session": self.session}

    @classmethod
    def from_json(cls, d: dict) -> Threads:
        return cls(intra_op=d["intra_op"], inter_op=d["inter_op"], session=d["session"])


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class PlanRequest:
    models: tuple[ModelEntry, ...]
    hosting: str
    device: str
    version_policy: VersionPolicy = VersionPolicy()
    version_labels: dict = dataclasses.field(default_factory=dict)
    batching: BatchingSpec | None = None
    threads: Threads = Threads()
    gpu_memory_headroom: float = 0.2
    gpu_memory_fractions: dict = dataclasses.field(default_factory=dict)  # model -> explicit fraction
    gpu_memory_bytes: int | None = None  # one GPU's total memory
    cpu_cores: tuple[int, ...] = ()  # usable cores; only multi_process on CPU needs them
    host: str = "127.0.0.1"
    port_base: int = 8500

    def __post_init__(self):
        if self.hosting not in HOSTINGS:
            raise ConfigError(f"hosting must be one of {', '.join(HOSTINGS)}, got {self.hosting!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if not self.models:
            raise ConfigError("no models to place")
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"duplicate model names: {', '.join(duplicates)} (TF Serving rejects them)")
        if not 0 <= self.gpu_memory_headroom < 10:
            raise ConfigError(f"gpu_memory_headroom must be in [0, 10), got {self.gpu_memory_headroom}")
        unknown = sorted(set(self.gpu_memory_fractions) - set(names))
        if unknown:
            raise ConfigError(f"GPU memory fractions given for models not in the plan: {', '.join(unknown)}")
        for model, fraction in self.gpu_memory_fractions.items():
            if not 0 < fraction <= 1:
                raise ConfigError(f"GPU memory fraction of {model} must be in (0, 1], got {fraction}")
        unknown = sorted(set(self.version_labels) - set(names))
        if unknown:
            raise ConfigError(f"version labels given for models not in the plan: {', '.join(unknown)}")
        last_port = self.port_base + 2 * len(self.models) - 1
        if not 1 <= self.port_base or last_port > 65535:
            raise ConfigError(f"ports {self.port_base}..{last_port} are outside 1..65535")


@dataclasses.dataclass(frozen=True)
class HostedModel:
    name: str
    base_path: str
    versions: tuple[int, ...]  # served under the version policy; readiness waits for each
    labels: dict  # label -> version

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"a hosted model needs a name, got {self.name!r}")
        if not self.versions or any(not _is_int(v) or v < 0 for v in self.versions):
            raise ConfigError(
                f"model {self.name!r} needs at least one served version, as non-negative integers; "
                f"got {list(self.versions)}"
            )
        if any(not isinstance(k, str) or not _is_int(v) for k, v in self.labels.items()):
            raise ConfigError(f"labels of model {self.name!r} must map names to versions, got {self.labels!r}")

    def to_json(self) -> dict:
        return {"name": self.name, "base_path": self.base_path, "versions": list(self.versions), "labels": dict(self.labels)}

    @classmethod
    def from_json(cls, d: dict) -> HostedModel:
        labels = d["labels"]
        if not isinstance(labels, dict):
            raise TypeError(f"labels must be an object, got {labels!r}")
        return cls(name=d["name"], base_path=d["base_path"], versions=tuple(json_list(d, "versions")), labels=dict(labels))


@dataclasses.dataclass(frozen=True)
class ServerPlan:
    name: str
    models: tuple[HostedModel, ...]
    host: str
    grpc_port: int
    rest_port: int  # 0: no REST listener
    gpu_memory_fraction: float | None  # None: TensorFlow's default (nearly the whole GPU)
    cpu_set: tuple[int, ...] | None  # None: not pinned
    threads: Threads

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"a plan server needs a name, got {self.name!r}")
        if not self.models:
            raise ConfigError(f"plan server {self.name!r} hosts no models")
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"plan server {self.name!r} lists {', '.join(duplicates)} more than once")
        if not self.host or not isinstance(self.host, str):
            raise ConfigError(f"plan server {self.name!r} has no host")
        addresses.check_port(self.grpc_port, f"gRPC port of plan server {self.name!r}")
        if self.rest_port != 0:
            addresses.check_port(self.rest_port, f"REST port of plan server {self.name!r}")
        fraction = self.gpu_memory_fraction
        if fraction is not None and (not isinstance(fraction, (int, float)) or not 0 < fraction <= 1):
            raise ConfigError(f"GPU memory fraction of plan server {self.name!r} must be in (0, 1], got {fraction!r}")
        if self.cpu_set is not None and (not self.cpu_set or any(not _is_int(c) or c < 0 for c in self.cpu_set)):
            raise ConfigError(f"cpu_set of plan server {self.name!r} must be non-empty core numbers, got {self.cpu_set}")

    @property
    def grpc_target(self) -> str:
        return addresses.join(self.host, self.grpc_port)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "models": [m.to_json() for m in self.models],
            "host": self.host,
            "grpc_port": self.grpc_port,
            "rest_port": self.rest_port,
            "gpu_memory_fraction": self.gpu_memory_fraction,
            "cpu_set": list(self.cpu_set) if self.cpu_set is not None else None,
            "threads": self.threads.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict) -> ServerPlan:
        cpu_set = d["cpu_set"]
        return cls(
            name=d["name"],
            models=tuple(HostedModel.from_json(m) for m in json_list(d, "models")),
            host=d["host"],
            grpc_port=d["grpc_port"],
            rest_port=d["rest_port"],
            gpu_memory_fraction=d["gpu_memory_fraction"],
            cpu_set=None if cpu_set is None else tuple(json_list(d, "cpu_set")),
            threads=Threads.from_json(d["threads"]),
        )


def json_list(d: dict, key: str) -> list:
    """d[key], which JSON must hold as a list (a string would pass for a sequence of letters)."""
    value = d[key]
    if not isinstance(value, list):
        raise TypeError(f"{key} must be a list, got {value!r}")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Plan:
    hosting: str
    device: str
    servers: tuple[ServerPlan, ...]
    version_policy: VersionPolicy
    batching: BatchingSpec | None
    notes: tuple[str, ...]  # facts a reader of the plan should know (fallbacks taken, and so on)


def make_plan(request: PlanRequest) -> Plan:
    hosted = tuple(_hosted(m, request) for m in request.models)
    if request.hosting == "multi_model":
        groups = [("all_models", hosted)]
    else:
        groups = [(m.name, (m,)) for m in hosted]
    notes: list[str] = []
    fractions = _gpu_fractions(request, notes) if request.device == "gpu" else {}
    cpu_sets = _cpu_sets(request, len(groups)) if _pinned(request) else {}
    servers = []
    for index, (name, models) in enumerate(groups):
        cpu_set = cpu_sets.get(index)
        servers.append(
            ServerPlan(
                name=name,
                models=models,
                host=request.host,
                grpc_port=request.port_base + 2 * index,
                rest_port=request.port_base + 2 * index + 1,
                gpu_memory_fraction=fractions.get(name),
                cpu_set=cpu_set,
                threads=_threads_for(request.threads, cpu_set, notes, name),
            )
        )
    if request.hosting == "dedicated":
        notes.append("dedicated servers are meant to run one at a time, each with the whole device")
    return Plan(
        hosting=request.hosting,
        device=request.device,
        servers=tuple(servers),
        version_policy=request.version_policy,
        batching=request.batching,
        notes=tuple(notes),
    )


def _hosted(model: ModelEntry, request: PlanRequest) -> HostedModel:
    policy = request.version_policy
    served = tuple(sorted(policy.select(model.versions)))
    if policy.kind == "specific":
        missing = sorted(set(policy.versions) - set(model.versions))
        if missing:
            raise ModelError(
                f"model {model.name!r} has no version {', '.join(map(str, missing))} under "
                f"{model.base_path} (found {', '.join(map(str, model.versions))})"
            )
    labels = request.version_labels.get(model.name, {})
    for label, version in labels.items():
        if version not in served:
            raise ConfigError(
                f"label {label!r} of model {model.name!r} points to version {version}, which is not "
                f"served under the version policy (served: {', '.join(map(str, served))})"
            )
    return HostedModel(model.name, model.base_path, served, dict(labels))


def _pinned(request: PlanRequest) -> bool:
    return request.device == "cpu" and request.hosting == "multi_process"


def _gpu_fractions(request: PlanRequest, notes: list[str]) -> dict[str, float]:
    """Per-process memory fractions for multi_process on GPU; a fit check for the others."""
    needs = {m.name: _gpu_need_bytes(m, request.gpu_memory_headroom) for m in request.models}
    total = request.gpu_memory_bytes
    if request.hosting != "multi_process":
        known = {n: b for n, b in needs.items() if b is not None}
        if total and known and request.hosting == "multi_model" and sum(known.values()) > total:
            raise ConfigError(
                f"the models' measured GPU footprints plus headroom ({_gib(sum(known.values()))}) "
                f"exceed one GPU's memory ({_gib(total)}): {_list_bytes(known)}"
            )
        return {}
    fractions: dict[str, float] = {}
    for name, need in needs.items():
        explicit = request.gpu_memory_fractions.get(name)
        if need is None and explicit is None:
            raise ConfigError(
                f"no measured GPU footprint for {name} (its model card has none: it was exported "
                f"without a GPU); give its share with --gpu_memory_fractions={name}=FRACTION"
            )
        if need is not None and not total:
            raise ConfigError(
                "GPU memory fractions need the GPU's total memory: none was detected; pass --gpu_memory_gib"
            )
        needed_fraction = None if need is None else need / total
        if explicit is not None:
            if needed_fraction is not None and explicit < needed_fraction:
                raise ConfigError(
                    f"GPU memory fraction {explicit} for {name} is below its need "
                    f"{needed_fraction:.3f} ({_gib(need)} of {_gib(total)}, headroom included)"
                )
            fractions[name] = explicit
        else:
            # Round up to 0.001; the epsilon keeps a need of exactly 0.15 from becoming 0.151.
            fractions[name] = math.ceil(needed_fraction * 1000 - 1e-6) / 1000
            if need is not None:
                notes.append(f"{name}: GPU memory fraction {fractions[name]} from its measured footprint")
        if need is None:
            notes.append(f"{name}: no measured GPU footprint; using the explicit fraction {explicit}")
    if sum(fractions.values()) > 1 + 1e-9:
        raise ConfigError(
            f"GPU memory fractions sum to {sum(fractions.values()):.3f} > 1: "
            + ", ".join(f"{n}={f}" for n, f in fractions.items())
            + "; these models do not fit on one GPU together"
        )
    return fractions


def _gpu_need_bytes(model: ModelEntry, headroom: float) -> int | None:
    footprint = model.gpu_footprint_bytes
    return None if footprint is None else int(math.ceil(footprint * (1 + headroom)))


def _cpu_sets(request: PlanRequest, servers: int) -> dict[int, tuple[int, ...]]:
    """Disjoint, contiguous core sets; sizes differ by at most one."""
    cores = tuple(sorted(set(request.cpu_cores)))
    if not cores:
        raise ConfigError("multi_process on CPU needs the usable cores (none were given)")
    if servers > len(cores):
        raise ConfigError(
            f"multi_process on CPU pins each server to its own cores, but {servers} servers do not "
            f"fit on {len(cores)} cores ({format_core_list(cores)}); use fewer models, more cores "
            "(--cpu_cores), or --hosting=multi_model"
        )
    size, extra = divmod(len(cores), servers)
    sets, start = {}, 0
    for index in range(servers):
        end = start + size + (1 if index < extra else 0)
        sets[index] = cores[start:end]
        start = end
    return sets


def _threads_for(threads: Threads, cpu_set, notes: list[str], server: str) -> Threads:
    """Pinned servers get pools sized to their cores unless the user set the pools."""
    if cpu_set is None:
        return threads
    if threads != Threads():
        intra = threads.intra_op or threads.session
        if intra > len(cpu_set):
            notes.append(f"{server}: {intra} intra-op threads on {len(cpu_set)} pinned cores oversubscribes them")
        return threads
    # One inter-op thread: a CNN is a chain of ops, and a second pool would compete for the
    # same pinned cores (the usual advice for CPU inference).
    return Threads(intra_op=len(cpu_set), inter_op=1)


def parse_core_list(text: str) -> tuple[int, ...]:
    """'0-3,6' -> (0, 1, 2, 3, 6), the format of taskset and docker --cpuset-cpus."""
    cores: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            raise ConfigError(f"bad core list {text!r}: expected e.g. 0-3,6")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        cores.update(range(low, high + 1))
    return tuple(sorted(cores))


def format_core_list(cores: tuple[int, ...]) -> str:
    """(0, 1, 2, 5) -> '0-2,5'."""
    parts, start = [], None
    for i, core in enumerate(cores):
        if start is None:
            start = core
        if i + 1 == len(cores) or cores[i + 1] != core + 1:
            parts.append(str(start) if start == core else f"{start}-{core}")
            start = None
    return ",".join(parts)


def _gib(num_bytes: int) -> str:
    return f"{num_bytes / 2**30:.2f} GiB"


def _list_bytes(sizes: dict[str, int]) -> str:
    return ", ".join(f"{n}={_gib(b)}" for n, b in sizes.items())
