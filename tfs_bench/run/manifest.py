"""manifest.json: what an experiment was asked, on what, with what, and when.

Written when the run directory is claimed, rewritten (atomically) when the generator's priority
is known, at each resume and at the end. It holds the flags as a flagfile (the run can be
repeated with `--flagfile=<run>/flags.txt`), package versions, TensorFlow's version and build
info, the host (CPU model and count, memory, hostname), the GPUs NVML and TensorFlow see (or why
none), each served SavedModel's version and hash, the seeds, the co-location choice (generator
priority asked and got, server niceness), start, resume and end times, and a schema version.

`comparable_key()` is what results must share to be pooled: the hardware (CPU model, count,
GPUs) and the SavedModel hashes. The report never pools runs whose keys differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from tfs_bench.errors import RunFileError
from tfs_bench.load.run_files import write_json_atomic

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
FLAGS_FILE = "flags.txt"


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """One served export: where it is, its newest version, and the hash of that version's files."""

    name: str
    base_path: str
    version: int
    sha256: str | None  # from its model card; None when it has none

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ExperimentManifest:
    name: str
    flagfile: str  # the experiment's flags, one per line, as absl writes them
    argv: tuple[str, ...]
    started_at: str
    packages: Mapping[str, str | None]
    tensorflow: Mapping
    host: Mapping
    gpu: Mapping
    devices: tuple[str, ...]
    gpu_note: str
    models: tuple[ModelFacts, ...]
    seeds: Mapping[str, int]
    co_location: Mapping  # generator_priority asked / got, server_nice
    resumed_at: tuple[str, ...] = ()
    finished_at: str | None = None

    def comparable_key(self) -> str:
        hardware = {k: self.host.get(k) for k in ("cpu_model", "logical_cpus")} | {"gpus": list(self.gpu.get("names", []))}
        models = {m.name: m.sha256 for m in self.models}
        return hashlib.sha256(json.dumps([hardware, models], sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["models"] = [m.to_json() for m in self.models]
        return {"schema_version": SCHEMA_VERSION, **d, "comparable_key": self.comparable_key()}

    @classmethod
    def from_json(cls, d: Mapping) -> "ExperimentManifest":
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported manifest schema_version {d.get('schema_version')!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in fields}
        values["models"] = tuple(ModelFacts(**m) for m in d["models"])
        for name in ("argv", "devices", "resumed_at"):
            values[name] = tuple(values[name])
        return cls(**values)


def write_manifest(run_dir: str | os.PathLike, manifest: ExperimentManifest) -> None:
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / MANIFEST_FILE, manifest.to_json())
    (run_dir / FLAGS_FILE).write_text(manifest.flagfile + "\n", encoding="utf-8")


def read_manifest(run_dir: str | os.PathLike) -> ExperimentManifest:
    path = Path(run_dir) / MANIFEST_FILE
    try:
        return ExperimentManifest.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise RunFileError(f"{run_dir} is not an experiment's run directory: it has no {MANIFEST_FILE}") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise RunFileError(f"cannot read {path}: {e}") from None
