"""steps.jsonl: one line per finished step of an experiment, appended and flushed as it ends.

A step is *finished* when its line is on disk: `done` (with its result), `failed` (a measurement
that could not give its figure, with the error) or `skipped` (a step it needs did not finish
done). `--resume` runs only the steps without a line, so Ctrl-C or kill -9 lose at most the
step in progress; its partial directory is moved aside (`<dir>.interrupted-<k>`) before the step
runs again. A last line cut short by a kill is ignored; any other unreadable line is an error
naming the file and line.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

from tfs_bench.errors import RunFileError

SCHEMA_VERSION = 1
JOURNAL_FILE = "steps.jsonl"
STATUSES = ("done", "failed", "skipped")


@dataclasses.dataclass(frozen=True)
class StepRecord:
    step: str
    status: str
    started_at: str
    finished_at: str
    duration_s: float
    dir: str | None  # relative to the run directory; None when nothing was measured
    result: Mapping = dataclasses.field(default_factory=dict)
    error: str | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"step status must be one of {STATUSES}, got {self.status!r}")
        if (self.status == "done") == (self.error is not None):
            raise ValueError(f"step {self.step!r}: a done step has no error, a failed or skipped one has one")
        if self.duration_s < 0:
            raise ValueError(f"step {self.step!r}: duration must be >= 0, got {self.duration_s}")

    def to_json(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(self), "result": dict(self.result)}

    @classmethod
    def from_json(cls, d: Mapping) -> "StepRecord":
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported step record schema_version {d.get('schema_version')!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


class Journal:
    """The run directory's steps.jsonl: what finished, and appending what finishes next."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / JOURNAL_FILE
        self.records: dict[str, StepRecord] = {r.step: r for r in read_journal(run_dir)}

    def finished(self, step_id: str) -> StepRecord | None:
        return self.records.get(step_id)

    def append(self, record: StepRecord) -> None:
        if record.step in self.records:
            raise ValueError(f"step {record.step!r} is already in {self.path}")
        line = json.dumps(record.to_json(), sort_keys=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records[record.step] = record


def read_journal(run_dir: str | os.PathLike) -> list[StepRecord]:
    path = Path(run_dir) / JOURNAL_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise RunFileError(f"cannot read {path}: {e.strerror}") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        last = number == len(lines)  # no newline after it: written when the process died
        try:
            records.append(StepRecord.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError) as e:
            if last:
                break
            raise RunFileError(f"{path}:{number}: not a step record ({e})") from None
    return records
