"""What a load run is asked to do: targets, a traffic mix, request contents, windows and bounds.

`LoadConfig` is the plain-argument input of the library API (`tfs_bench.load.driver`); the
`tfs_bench.load` binary builds one from its flags and uses the parsers here in its validators,
so a rule is written once and holds for both.

- A target is `host:port` (IPv6 as `[addr]:port`): a gRPC port, or the REST port with
  `protocol="rest"`. A tenant without a target uses the first one.
- A `--models` entry is `name[@target][:weight]`; `target` is one of the targets, given as
  written or by its 0-based index. The tenant is then named `name@host:port`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from tfs_bench import addresses
from tfs_bench.cpu_priority import GENERATOR_PRIORITIES
from tfs_bench.errors import ConfigError
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TenantSpec
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.verdict import check_policy
from tfs_bench.load.windows import WindowPolicy

SCHEMA_VERSION = 1
PROTOCOLS = ("grpc", "rest")
DEFAULT_SIGNATURE = "serving_default"
INPUT_RANDOM = "random"
INPUT_IMAGES = "images"
MAX_WORKERS = 64


def parse_tenant_spec(entry: str, targets: Sequence[str]) -> TenantSpec:
    """One `name[@target][:weight]` entry; `target` must be one of `targets` or its index."""
    text = entry.strip()
    model, at, rest = text.partition("@")
    target, weight = None, "1"
    if at:
        if _resolve_target(rest, targets) is not None:
            target = _resolve_target(rest, targets)
        else:
            head, colon, weight = rest.rpartition(":")
            target = _resolve_target(head, targets) if colon else None
            if target is None:
                raise ConfigError(
                    f"--models entry {entry!r}: {rest!r} names no target; targets are "
                    f"{', '.join(targets)} (or their index 0..{len(targets) - 1})"
                )
    else:
        model, colon, given = text.partition(":")
        weight = given if colon else weight
    if not model or any(c in model for c in ",/:\n"):
        raise ConfigError(f"--models entry {entry!r} has no usable model name")
    try:
        value = float(weight)
    except ValueError:
        raise ConfigError(f"--models entry {entry!r}: weight {weight!r} is not a number") from None
    return TenantSpec(model=model, target=target, weight=value)


def _resolve_target(text: str, targets: Sequence[str]) -> str | None:
    if text in targets:
        return text
    if text.isdigit() and int(text) < len(targets):
        return targets[int(text)]
    return None


def parse_tenant_specs(entries: Sequence[str], targets: Sequence[str]) -> tuple[TenantSpec, ...]:
    if not entries:
        raise ConfigError("name at least one model (--models=name[@target][:weight],...)")
    specs = tuple(parse_tenant_spec(e, targets) for e in entries)
    names = [s.tenant for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"--models names the same tenant twice: {', '.join(duplicates)}")
    return specs


@dataclasses.dataclass(frozen=True)
class InputSource:
    """Where request tensors come from: seeded random values, or images from a local folder.

    The folder is checked where it is read (`parse` for a flag, the request builder for a run),
    not here, so a run.json naming a folder of another machine can still be read back.
    """

    kind: str = INPUT_RANDOM
    directory: str | None = None

    def __post_init__(self):
        if self.kind == INPUT_RANDOM:
            if self.directory is not None:
                raise ConfigError("random input takes no directory")
        elif self.kind == INPUT_IMAGES:
            if not self.directory:
                raise ConfigError(f"--input=images:DIR: {self.directory!r} is not a directory")
        else:
            raise ConfigError(f"input must be 'random' or 'images:DIR', got {self.kind!r}")

    @classmethod
    def parse(cls, text: str) -> "InputSource":
        """A --input value; an image folder must exist (it is made absolute)."""
        kind, sep, directory = text.partition(":")
        if kind == INPUT_IMAGES and sep:
            source = cls(INPUT_IMAGES, os.path.abspath(directory) if directory else "")
            check_image_directory(source.directory)
            return source
        if text == INPUT_RANDOM:
            return cls(INPUT_RANDOM)
        raise ConfigError(f"--input must be 'random' or 'images:DIR', got {text!r}")

    def __str__(self) -> str:
        return self.kind if self.directory is None else f"{self.kind}:{self.directory}"

    def to_json(self) -> str:
        return str(self)

    @classmethod
    def from_json(cls, text: str) -> "InputSource":
        """The inverse of to_json (`random` or `images:DIR`, DIR as written)."""
        kind, sep, directory = text.partition(":")
        if kind == INPUT_IMAGES and sep:
            return cls(INPUT_IMAGES, directory)
        if text == INPUT_RANDOM:
            return cls(INPUT_RANDOM)
        raise ConfigError(f"input source must be 'random' or 'images:DIR', got {text!r}")


def check_image_directory(directory: str) -> None:
    if not os.path.isdir(directory):
        raise ConfigError(f"--input=images:DIR: {directory!r} is not a directory")


def scale_open_loop(mix: TrafficMix, total_rate_rps: float) -> TrafficMix:
    """The mix with its open-loop tenants' rates scaled to sum to `total_rate_rps`.

    Their current rates give each one's share (the weights of `TrafficMix.open_loop`);
    closed-loop tenants are kept as they are.
    """
    open_rates = [t.rate_rps for t in mix.tenants if t.open_loop]
    if not open_rates:
        raise ConfigError("the mix has no open-loop tenant whose rate could be scaled")
    if not total_rate_rps > 0:
        raise ConfigError(f"a total rate must be > 0 requests/s, got {total_rate_rps}")
    factor = total_rate_rps / sum(open_rates)
    return TrafficMix(
        tuple(dataclasses.replace(t, rate_rps=t.rate_rps * factor) if t.open_loop else t for t in mix.tenants)
    )


def with_concurrency(mix: TrafficMix, concurrency: int, tenant: str | None = None) -> TrafficMix:
    """The mix with one tenant (None: every tenant) closed loop at `concurrency`."""
    if tenant is not None:
        mix.tenant(tenant)
    return TrafficMix(
        tuple(
            dataclasses.replace(t, concurrency=concurrency, rate_rps=None) if tenant in (None, t.tenant) else t
            for t in mix.tenants
        )
    )


@dataclasses.dataclass(frozen=True)
class LoadConfig:
    """One load run (or each run of a sweep or search): plain values, validated on creation.

    `max_outstanding` caps each open-loop tenant's requests in flight, over all workers
    together (each worker takes an even share); an arrival that finds its tenant at the cap is
    recorded as DROPPED. Closed-loop tenants are bounded by their concurrency instead.
    """

    mix: TrafficMix
    targets: tuple[str, ...]
    output_dir: str
    signature_name: str = DEFAULT_SIGNATURE
    batch_size: int = 1
    input_source: InputSource = InputSource()
    protocol: str = "grpc"
    policy: WindowPolicy = WindowPolicy()
    criteria: ValidityCriteria = ValidityCriteria()
    max_outstanding: int = 1000
    workers: int = 1
    seed: int = 0  # random request data; the mix carries its own schedule seeds
    overwrite: bool = False
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    generator_priority: str = "auto"  # tfs_bench.cpu_priority.GENERATOR_PRIORITIES
    ray_address: str | None = None  # workers as Ray actors on this cluster (tfs_bench.load.ray_workers)
    ray_worker_cpus: float = 1.0  # the CPUs each Ray worker reserves on its node

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(addresses.normalize(t, "target") for t in self.targets))
        if not self.targets:
            raise ConfigError("give at least one target (host:port)")
        if len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"targets must be unique, got {list(self.targets)}")
        for load in self.mix.tenants:
            if load.target is not None and load.target not in self.targets:
                raise ConfigError(f"tenant {load.tenant!r} addresses {load.target}, which is not a target")
        if not self.output_dir:
            raise ConfigError("an output directory is required")
        if not self.signature_name:
            raise ConfigError("the signature name must not be empty")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"workers must be in 1..{MAX_WORKERS}, got {self.workers}")
        check_outstanding(self.max_outstanding, self.workers)
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if not (self.request_timeout_s > 0 and self.connect_timeout_s > 0):
            raise ConfigError("request and connect timeouts must be > 0 s")
        check_policy(self.policy, self.criteria)
        if self.generator_priority not in GENERATOR_PRIORITIES:
            raise ConfigError(
                f"generator_priority must be one of {', '.join(GENERATOR_PRIORITIES)}, got {self.generator_priority!r}"
            )
        if self.ray_address is not None and not self.ray_address.strip():
            raise ConfigError("ray_address must not be empty: give auto, host:port or ray://host:port")
        if not self.ray_worker_cpus >= 0:
            raise ConfigError(f"ray_worker_cpus must be >= 0, got {self.ray_worker_cpus}")

    def target_of(self, load: TenantLoad) -> str:
        return load.target or self.targets[0]

    def to_json(self) -> dict:
        ray = {} if self.ray_address is None else {
            "ray_address": self.ray_address, "ray_worker_cpus": self.ray_worker_cpus
        }
        return {
            "schema_version": SCHEMA_VERSION,
            "mix": self.mix.to_json(),
            "targets": list(self.targets),
            "output_dir": self.output_dir,
            "signature_name": self.signature_name,
            "batch_size": self.batch_size,
            "input_source": self.input_source.to_json(),
            "protocol": self.protocol,
            "policy": self.policy.to_json(),
            "criteria": self.criteria.to_json(),
            "max_outstanding": self.max_outstanding,
            "workers": self.workers,
            "seed": self.seed,
            "overwrite": self.overwrite,
            "request_timeout_s": self.request_timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
            "generator_priority": self.generator_priority,
            **ray,  # only where a run used Ray, so that older runs' settings compare equal
        }

    @classmethod
    def from_json(cls, d: dict) -> "LoadConfig":
        """The config as to_json wrote it (run.json's "config"); validated again on creation."""
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ConfigError(f"unsupported load config schema_version {d.get('schema_version')!r}")
        return cls(
            mix=TrafficMix.from_json(d["mix"]),
            targets=tuple(d["targets"]),
            output_dir=d["output_dir"],
            signature_name=d["signature_name"],
            batch_size=d["batch_size"],
            input_source=InputSource.from_json(d["input_source"]),
            protocol=d["protocol"],
            policy=WindowPolicy.from_json(d["policy"]),
            criteria=ValidityCriteria.from_json(d["criteria"]),
            max_outstanding=d["max_outstanding"],
            workers=d["workers"],
            seed=d["seed"],
            overwrite=d["overwrite"],
            request_timeout_s=d["request_timeout_s"],
            connect_timeout_s=d["connect_timeout_s"],
            generator_priority=d.get("generator_priority", "normal"),
            ray_address=d.get("ray_address"),
            ray_worker_cpus=d.get("ray_worker_cpus", 1.0),
        )


def check_outstanding(max_outstanding: int, workers: int) -> None:
    if max_outstanding < workers:
        raise ConfigError(
            f"max_outstanding ({max_outstanding}) must be at least the number of workers ({workers}): "
            "each worker takes a share of it"
        )
