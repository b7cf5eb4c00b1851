"""Model cards: what an export is, what it costs to load, and a hash of its files.

A card lives inside its version directory, at `assets.extra/model_card.json`, so it travels with
the SavedModel (TF Serving ignores that folder apart from warm-up records).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from tfs_bench.errors import ModelError

SCHEMA_VERSION = 1
CARD_RELPATH = os.path.join("assets.extra", "model_card.json")
INPUT_ENCODINGS = ("float32", "uint8")
# Bumped when the same export request starts producing a different SavedModel; a card without the
# field is format 1. 2: the Keras model's tf.Variables are tracked directly (format-1 exports fail
# on TF Serving, or any Session-based loader, with "Could not find variable ...").
EXPORT_FORMAT = 2


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]  # -1 marks the batch dimension

    def __post_init__(self):
        if not self.name:
            raise ValueError("tensor name must not be empty")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, d: dict) -> "TensorInfo":
        return cls(name=d["name"], dtype=d["dtype"], shape=tuple(d["shape"]))


@dataclasses.dataclass(frozen=True)
class Footprint:
    """Measured by loading the SavedModel in a fresh process and running one batch."""

    load_time_s: float
    peak_rss_bytes: int
    rss_increase_bytes: int  # peak RSS minus RSS after importing TensorFlow
    gpu_peak_bytes: int | None  # TensorFlow's peak GPU allocation; None without a GPU
    device: str

    def __post_init__(self):
        if self.load_time_s < 0 or self.peak_rss_bytes <= 0 or self.rss_increase_bytes < 0:
            raise ValueError(f"implausible footprint: {self}")
        if self.gpu_peak_bytes is not None and self.gpu_peak_bytes < 0:
            raise ValueError(f"negative gpu_peak_bytes: {self.gpu_peak_bytes}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Footprint":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class ModelCard:
    model: str  # zoo name (or "known_answer")
    export_name: str  # directory name under saved_models/
    version: int
    input_encoding: str
    signature_name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    parameters: int
    flops_per_image: int  # 2 x multiply-accumulates of conv and dense layers
    savedmodel_bytes: int
    savedmodel_sha256: str  # over every file of the version except this card
    export_key: str  # hash of what was asked for: model, encoding, seed, weights
    weights: str  # "random(seed=N)" or the weights file path
    exported_at: str  # ISO 8601 UTC
    export_time_s: float
    footprint: Footprint | None
    versions: dict  # tensorflow / keras versions used to export
    export_format: int = EXPORT_FORMAT  # how the SavedModel was written (see EXPORT_FORMAT)

    def __post_init__(self):
        if self.version < 0:
            raise ValueError(f"version must be >= 0, got {self.version}")
        if self.input_encoding not in INPUT_ENCODINGS:
            raise ValueError(f"input_encoding must be one of {INPUT_ENCODINGS}")
        if self.parameters < 0 or self.flops_per_image < 0 or self.savedmodel_bytes <= 0:
            raise ValueError("parameters, flops and bytes must be non-negative")
        if len(self.savedmodel_sha256) != 64:
            raise ValueError("savedmodel_sha256 must be a hex SHA-256")

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["inputs"] = [t.to_json() for t in self.inputs]
        d["outputs"] = [t.to_json() for t in self.outputs]
        d["footprint"] = self.footprint.to_json() if self.footprint else None
        return {"schema_version": SCHEMA_VERSION, **d}

    @classmethod
    def from_json(cls, d: dict) -> "ModelCard":
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported model card schema_version {d.get('schema_version')!r}")
        kwargs = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name != "export_format"}
        kwargs["export_format"] = d.get("export_format", 1)
        kwargs["inputs"] = tuple(TensorInfo.from_json(t) for t in d["inputs"])
        kwargs["outputs"] = tuple(TensorInfo.from_json(t) for t in d["outputs"])
        kwargs["footprint"] = Footprint.from_json(d["footprint"]) if d["footprint"] else None
        return cls(**kwargs)


def card_path(version_dir: str | os.PathLike) -> Path:
    return Path(version_dir) / CARD_RELPATH


def write_card(version_dir: str | os.PathLike, card: ModelCard) -> Path:
    path = card_path(version_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_card(version_dir: str | os.PathLike) -> ModelCard:
    path = card_path(version_dir)
    try:
        return ModelCard.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ModelError(f"no model card at {path}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"unreadable model card {path}: {e}") from None


def savedmodel_files(version_dir: str | os.PathLike) -> list[Path]:
    root = Path(version_dir)
    files = [p for p in root.rglob("*") if p.is_file()]
    return sorted(p for p in files if p.relative_to(root).as_posix() != Path(CARD_RELPATH).as_posix())


def hash_savedmodel(version_dir: str | os.PathLike) -> tuple[str, int]:
    """SHA-256 over relative paths and contents of the version's files (the card excluded)."""
    root = Path(version_dir)
    digest = hashlib.sha256()
    total = 0
    for path in savedmodel_files(root):
        rel = path.relative_to(root).as_posix().encode()
        digest.update(len(rel).to_bytes(8, "little") + rel)
        size = path.stat().st_size
        digest.update(size.to_bytes(8, "little"))
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        total += size
    return digest.hexdigest(), total
