"""Validated model entries: what a `ModelServerConfig` (or --model_name/--model_base_path) asks to serve.

Validation follows TF Serving's ServerCore: duplicate names, relative base paths and an empty or
non-"tensorflow" platform are rejected before anything is loaded.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterable, Mapping

from tfs_bench import tfs_protos
from tfs_bench.errors import ConfigError

PLATFORM = "tensorflow"
_TENSORFLOW_MODEL_TYPE = 1  # the deprecated ModelConfig.model_type enum value TENSORFLOW
_VERSION_DIR = re.compile(r"[0-9]+")


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which of the versions found on disk are served: latest N, all, or specific ones."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in ("latest", "all", "specific"):
            raise ConfigError(f"unknown version policy {self.kind!r}")
        if self.kind == "latest" and self.num_versions < 1:
            raise ConfigError(f"latest version policy needs num_versions >= 1, got {self.num_versions}")
        if self.kind == "specific" and not self.versions:
            raise ConfigError("specific version policy lists no versions")

    def select(self, on_disk: Iterable[int]) -> frozenset[int]:
        found = sorted(set(on_disk), reverse=True)
        if self.kind == "latest":
            return frozenset(found[: self.num_versions])
        if self.kind == "all":
            return frozenset(found)
        return frozenset(found).intersection(self.versions)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        if not self.name:
            raise ConfigError("a model config has an empty name")
        if not os.path.isabs(self.base_path):
            raise ConfigError(
                f"Model {self.name}: base_path must be an absolute path, got {self.base_path!r}"
            )
        label_names = [label for label, _ in self.labels]
        if len(set(label_names)) != len(label_names):
            raise ConfigError(f"Model {self.name}: duplicate version label")

    @property
    def label_versions(self) -> Mapping[str, int]:
        return dict(self.labels)


def discover_versions(base_path: str) -> tuple[int, ...]:
    """Numeric subdirectories of base_path as versions (`00000123` is 123); raises OSError."""
    versions = set()
    with os.scandir(base_path) as entries:
        for entry in entries:
            if _VERSION_DIR.fullmatch(entry.name) and entry.is_dir():
                versions.add(int(entry.name))
    return tuple(sorted(versions))


def version_directory(base_path: str, version: int) -> str:
    """The directory holding `version`, which may be spelt with leading zeros."""
    with os.scandir(base_path) as entries:
        for entry in entries:
            if _VERSION_DIR.fullmatch(entry.name) and int(entry.name) == version and entry.is_dir():
                return entry.path
    raise FileNotFoundError(f"version {version} is not under {base_path}")


def single_model(name: str, base_path: str) -> tuple[ModelConfig, ...]:
    return (ModelConfig(name=name, base_path=base_path),)


def from_proto(config) -> tuple[ModelConfig, ...]:
    """Validates a ModelServerConfig message; raises ConfigError naming the bad entry."""
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(
            "ModelServerConfig type not supported: only model_config_list is supported"
        )
    models = tuple(_model_from_proto(entry) for entry in config.model_config_list.config)
    names = [model.name for model in models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"Illegal to list model {duplicates[0]} multiple times in config list")
    return models


def read_file(path: str) -> tuple[ModelConfig, ...]:
    return from_proto(tfs_protos.read_text(path, tfs_protos.ModelServerConfig))


def _model_from_proto(entry) -> ModelConfig:
    _check_platform(entry)
    return ModelConfig(
        name=entry.name,
        base_path=entry.base_path,
        policy=_policy_from_proto(entry.name, entry.model_version_policy),
        labels=tuple(sorted(entry.version_labels.items())),
    )


def _check_platform(entry) -> None:
    platform = entry.model_platform
    if entry.model_type == _TENSORFLOW_MODEL_TYPE and not platform:
        platform = PLATFORM
    elif entry.model_type and platform:
        raise ConfigError(
            f"Model {entry.name}: illegal setting both model_type (deprecated) and model_platform"
        )
    if platform != PLATFORM:
        raise ConfigError(
            f"Model {entry.name}: model_platform must be {PLATFORM!r} "
            f"(the only platform this server has), got {platform!r}"
        )


def _policy_from_proto(name: str, policy) -> VersionPolicy:
    choice = policy.WhichOneof("policy_choice")
    try:
        if choice == "all":
            return VersionPolicy(kind="all")
        if choice == "specific":
            return VersionPolicy(kind="specific", versions=tuple(sorted(set(policy.specific.versions))))
        if choice == "latest":
            # TF Serving treats an unset num_versions as 1.
            return VersionPolicy(kind="latest", num_versions=max(1, policy.latest.num_versions))
        return VersionPolicy()
    except ConfigError as e:
        raise ConfigError(f"Model {name}: {e}") from None
