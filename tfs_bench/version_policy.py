"""TF Serving's model_version_policy: which of a model's versions on disk are served.

One type for the planner (which writes it into models.config), and for the embedded server (which
reads it back from there and applies it to the version directories it finds).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

from tfs_bench.errors import ConfigError

KINDS = ("latest", "all", "specific")
_USAGE = "latest[:N], all or specific:V[,V...]"


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    kind: str = "latest"
    num_versions: int = 1  # for latest
    versions: tuple[int, ...] = ()  # for specific

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"version policy must be {_USAGE}, got {self.kind!r}")
        if self.kind == "latest" and self.num_versions < 1:
            raise ConfigError(f"version policy latest needs N >= 1, got {self.num_versions}")
        if self.kind == "specific" and not self.versions:
            raise ConfigError("version policy specific lists no versions")

    @classmethod
    def parse(cls, text: str) -> "VersionPolicy":
        """The command-line form: latest, latest:N, all, specific:V[,V...]."""
        kind, _, arg = text.partition(":")
        try:
            if kind == "latest":
                return cls("latest", num_versions=int(arg) if arg else 1)
            if kind == "specific":
                return cls("specific", versions=tuple(sorted({int(v) for v in arg.split(",") if v})))
        except ValueError:
            raise ConfigError(f"bad version policy {text!r}: versions must be integers") from None
        if kind == "all" and not arg:
            return cls("all")
        raise ConfigError(f"version policy must be {_USAGE}, got {text!r}")

    @classmethod
    def from_proto(cls, policy) -> "VersionPolicy":
        """From a ModelConfig's FileSystemStoragePathSourceConfig.ServableVersionPolicy."""
        choice = policy.WhichOneof("policy_choice")
        if choice == "all":
            return cls("all")
        if choice == "specific":
            return cls("specific", versions=tuple(sorted(set(policy.specific.versions))))
        if choice == "latest":
            return cls("latest", num_versions=max(1, policy.latest.num_versions))  # TF Serving: unset is 1
        return cls()

    def fill_proto(self, policy) -> None:
        if self.kind == "latest":
            policy.latest.num_versions = self.num_versions
        elif self.kind == "all":
            policy.all.SetInParent()
        else:
            policy.specific.versions.extend(self.versions)

    def select(self, on_disk: Iterable[int]) -> frozenset[int]:
        found = sorted(set(on_disk), reverse=True)
        if self.kind == "latest":
            return frozenset(found[: self.num_versions])
        if self.kind == "all":
            return frozenset(found)
        return frozenset(found).intersection(self.versions)

    def to_json(self) -> dict:
        return {"kind": self.kind, "num_versions": self.num_versions, "versions": list(self.versions)}

    @classmethod
    def from_json(cls, d: dict) -> "VersionPolicy":
        versions = d["versions"]
        if not isinstance(versions, list):
            raise TypeError(f"versions must be a list, got {versions!r}")
        return cls(kind=d["kind"], num_versions=d["num_versions"], versions=tuple(versions))
