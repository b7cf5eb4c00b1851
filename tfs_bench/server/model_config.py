"""Validated model entries: what a `ModelServerConfig` (or --model_name/--model_base_path) asks to serve.

Validation follows TF Serving's ServerCore: duplicate names, relative base paths and an empty or
non-"tensorflow" platform are rejected before anything is loaded.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Mapping

from tfs_bench import tfs_protos
from tfs_bench.errors import ConfigError
from tfs_bench.version_policy import VersionPolicy

PLATFORM = "tensorflow"
_TENSORFLOW_MODEL_TYPE = 1  # the deprecated ModelConfig.model_type enum value TENSORFLOW
_VERSION_DIR = re.compile(r"[0-9]+")


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
    try:
        return VersionPolicy.from_proto(policy)
    except ConfigError as e:
        raise ConfigError(f"Model {name}: {e}") from None
