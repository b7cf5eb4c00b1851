"""plan.json as a record: what the plan stage writes and the launch stage reads.

`PlanRecord` is the whole file; each of its `servers` is a `PlannedServer`, which is placement's
`ServerPlan` plus what was written for it (its tensorflow_model_server flags, its files, its
`docker run`). `read_plan` checks a file against these types, so a hand-edited or stale plan.json
fails with a message naming the field instead of somewhere inside a launch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

from tfs_bench.errors import ConfigError
from tfs_bench.plan import placement
from tfs_bench.version_policy import VersionPolicy

SCHEMA_VERSION = 1
PLAN_FILE = "plan.json"


@dataclasses.dataclass(frozen=True)
class ServerFiles:
    """The files written for one server, as absolute paths on this machine."""

    dir: str
    model_config: str
    monitoring_config: str
    batching_parameters: str | None  # None: batching is off
    flags: str
    docker_run: str
    docker_compose: str

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.name == "batching_parameters":
                continue
            if not isinstance(value, str) or not os.path.isabs(value):
                raise ConfigError(f"files.{field.name} must be an absolute path, got {value!r}")

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: dict) -> ServerFiles:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class DockerSpec:
    """One server as TF Serving's docker image runs it: the image, `docker run` argv, compose service."""

    image: str
    run_argv: tuple[str, ...]
    compose_service: dict  # as docker_deploy.Deployment.compose_service() builds it

    def __post_init__(self):
        if not self.image or not isinstance(self.image, str):
            raise ConfigError(f"docker.image must be an image name, got {self.image!r}")
        if not all(isinstance(arg, str) for arg in self.run_argv):
            raise ConfigError(f"docker.run_argv must be strings, got {list(self.run_argv)}")
        if not isinstance(self.compose_service, Mapping):
            raise ConfigError(f"docker.compose_service must be an object, got {self.compose_service!r}")

    def to_json(self) -> dict:
        return {"image": self.image, "run_argv": list(self.run_argv), "compose_service": dict(self.compose_service)}

    @classmethod
    def from_json(cls, d: dict) -> DockerSpec:
        return cls(
            image=d["image"],
            run_argv=tuple(placement.json_list(d, "run_argv")),
            compose_service=d["compose_service"],
        )


@dataclasses.dataclass(frozen=True)
class PlannedServer(placement.ServerPlan):
    """A ServerPlan as written to plan.json: with its flags, its files and its docker run."""

    flags: tuple[str, ...]  # tensorflow_model_server flags with this machine's paths
    files: ServerFiles
    docker: DockerSpec

    def __post_init__(self):
        super().__post_init__()
        if not all(isinstance(flag, str) for flag in self.flags):
            raise ConfigError(f"flags of plan server {self.name!r} must be strings, got {list(self.flags)}")

    @classmethod
    def of(cls, server: placement.ServerPlan, flags, files: ServerFiles, docker: DockerSpec) -> PlannedServer:
        placed = {f.name: getattr(server, f.name) for f in dataclasses.fields(placement.ServerPlan)}
        return cls(**placed, flags=tuple(flags), files=files, docker=docker)

    def to_json(self) -> dict:
        return {
            **super().to_json(),
            "flags": list(self.flags),
            "files": self.files.to_json(),
            "docker": self.docker.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict) -> PlannedServer:
        """One element of plan.json's `servers`; ConfigError names the server and what is wrong."""
        if not isinstance(d, dict):
            raise ConfigError(f"a plan server entry is a JSON object, got {d!r}")
        name = d.get("name", "?")
        where = f"plan server entry {name!r}"
        try:
            return _parse(where, lambda: cls.of(
                placement.ServerPlan.from_json(d),
                flags=placement.json_list(d, "flags"),
                files=_parse(f"{where}: files", ServerFiles.from_json, d["files"]),
                docker=_parse(f"{where}: docker", DockerSpec.from_json, d["docker"]),
            ))
        except ConfigError as e:
            if repr(name) in str(e):  # the server's own checks name it already, its parts' may not
                raise
            raise ConfigError(f"{where}: {e}") from None


@dataclasses.dataclass(frozen=True)
class PlanRecord:
    """The whole of plan.json."""

    created_at: str  # ISO 8601, UTC
    hosting: str
    device: str
    version_policy: VersionPolicy
    batching: placement.BatchingSpec | None  # None: batching is off
    prometheus_path: str
    docker_image: str
    notes: tuple[str, ...]  # facts a reader of the plan should know (fallbacks taken, and so on)
    servers: tuple[PlannedServer, ...]
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.schema_version != SCHEMA_VERSION:
            raise ConfigError(f"plan schema_version {self.schema_version!r}, expected {SCHEMA_VERSION}")
        if self.hosting not in placement.HOSTINGS:
            raise ConfigError(f"hosting must be one of {', '.join(placement.HOSTINGS)}, got {self.hosting!r}")
        if self.device not in placement.DEVICES:
            raise ConfigError(f"device must be one of {', '.join(placement.DEVICES)}, got {self.device!r}")
        if not self.servers:
            raise ConfigError("the plan lists no servers")
        names = [s.name for s in self.servers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"the plan lists server {', '.join(duplicates)} more than once")
        for what in ("created_at", "docker_image", "prometheus_path"):
            if not isinstance(getattr(self, what), str) or not getattr(self, what):
                raise ConfigError(f"{what} must be a non-empty string, got {getattr(self, what)!r}")
        if not all(isinstance(note, str) for note in self.notes):
            raise ConfigError(f"notes must be strings, got {list(self.notes)}")

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "created_at": self.created_at,
            "hosting": self.hosting,
            "device": self.device,
            "version_policy": self.version_policy.to_json(),
            "batching": self.batching.to_json() if self.batching is not None else None,
            "prometheus_path": self.prometheus_path,
            "docker_image": self.docker_image,
            "notes": list(self.notes),
            "servers": [s.to_json() for s in self.servers],
        }

    @classmethod
    def from_json(cls, d: dict) -> PlanRecord:
        if not isinstance(d, dict):
            raise ConfigError(f"a plan is a JSON object, got {type(d).__name__}")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ConfigError(f"plan schema_version {d.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        return _parse("the plan", lambda: cls(
            created_at=d["created_at"],
            hosting=d["hosting"],
            device=d["device"],
            version_policy=_parse("version_policy", VersionPolicy.from_json, d["version_policy"]),
            batching=None if d["batching"] is None else _parse("batching", placement.BatchingSpec.from_json, d["batching"]),
            prometheus_path=d["prometheus_path"],
            docker_image=d["docker_image"],
            notes=tuple(placement.json_list(d, "notes")),
            servers=tuple(PlannedServer.from_json(s) for s in placement.json_list(d, "servers")),
            schema_version=d["schema_version"],
        ))


def _parse(what: str, build, *args):
    """build(*args), with a missing key or a wrong type turned into a ConfigError naming `what`."""
    try:
        return build(*args)
    except KeyError as e:
        raise ConfigError(f"{what} has no {e.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{what} is malformed: {e}") from None


def plan_path(path: str | os.PathLike) -> Path:
    """plan.json itself, given the file or the plan directory holding it."""
    path = Path(path)
    return path / PLAN_FILE if path.is_dir() else path


def read_plan(path: str | os.PathLike) -> PlanRecord:
    """Reads a plan.json (or the plan directory holding one); ConfigError names what is wrong."""
    path = plan_path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no plan at {path}; write one with python -m tfs_bench.plan") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    try:
        return PlanRecord.from_json(document)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
