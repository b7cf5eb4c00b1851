"""Request records: what the load generator produces, one per request, and their CSV files.

A record stamps a request with three times on one monotonic clock (`time.perf_counter_ns`, which
is CLOCK_MONOTONIC on Linux and so comparable between worker processes on one host):

- `intended_ns`: when the schedule wanted it sent (open loop: start + the schedule's offset;
  closed loop: the moment a slot became free, so intended == sent up to the driver's own delay);
- `sent_ns`: when the driver handed it to gRPC; never before `intended_ns`, because a driver that
  sends early would shorten response times and change the offered load (an early timer re-arms
  for the rest of the wait);
- `done_ns`: when the reply (or error) arrived, or when the driver gave up on sending it.

A request that the open-loop driver could not send because outstanding requests were at the cap
is *dropped*: status `DROPPED`, `sent_ns` None and `done_ns` the moment it was dropped, so drops
fall into the window in which they happened like every other request.

Files are CSV, appended and flushed once per window, so a crash loses at most the window being
written; a truncated last line is ignored by the reader. Every row carries `schema_version` as
its first column, so a file is self-describing to any CSV reader without a sidecar.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path

from tfs_bench.errors import RunFileError

SCHEMA_VERSION = 1
# A send is late when it leaves more than this after its intended time, or more than a share of
# what is measured when that is larger (tfs_bench.load.windows.late_threshold_ns).
LATE_SEND_THRESHOLD_NS = 1_000_000
STATUS_OK = "OK"
STATUS_DROPPED = "DROPPED"  # not a gRPC code: never sent because outstanding requests hit the cap
# grpc.StatusCode names (tests check them against grpcio); this module stays free of grpc.
GRPC_STATUS_CODES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
STATUS_CODES = GRPC_STATUS_CODES + (STATUS_DROPPED,)
CSV_COLUMNS = (
    "schema_version",
    "model",
    "tenant",
    "worker",
    "intended_ns",
    "sent_ns",
    "done_ns",
    "batch_size",
    "status_code",
    "response_bytes",
)


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    model: str
    tenant: str  # the traffic-mix entry that issued it; equals `model` in single-model runs
    intended_ns: int
    sent_ns: int | None  # None only for a dropped request
    done_ns: int
    batch_size: int
    status_code: str  # a grpc.StatusCode name, or DROPPED
    response_bytes: int
    worker: int  # index of the load-generator process that issued it

    def __post_init__(self):
        if not self.model or not self.tenant:
            raise ValueError("model and tenant must not be empty")
        if self.status_code not in STATUS_CODES:
            raise ValueError(f"status_code must be a gRPC code name or DROPPED, got {self.status_code!r}")
        if self.batch_size < 1 or self.response_bytes < 0 or self.worker < 0:
            raise ValueError(f"implausible record: {self}")
        if self.dropped:
            if self.sent_ns is not None:
                raise ValueError("a dropped request was never sent: sent_ns must be None")
            if self.done_ns < self.intended_ns:
                raise ValueError(f"dropped before its intended time: {self}")
            return
        if self.sent_ns is None:
            raise ValueError(f"sent_ns is required unless the request was dropped: {self}")
        if self.sent_ns < self.intended_ns:
            raise ValueError(f"sent before its intended time (sent_ns < intended_ns): {self}")
        if self.done_ns < self.sent_ns:
            raise ValueError(f"done before sent (done_ns < sent_ns): {self}")

    @property
    def dropped(self) -> bool:
        return self.status_code == STATUS_DROPPED

    @property
    def ok(self) -> bool:
        return self.status_code == STATUS_OK

    @property
    def response_time_ns(self) -> int:
        """done − intended: the wait of a user who arrived on schedule (no coordinated omission)."""
        self._require_sent("response time")
        return self.done_ns - self.intended_ns

    @property
    def service_time_ns(self) -> int:
        """done − sent: the time the request spent with the server and the network."""
        self._require_sent("service time")
        return self.done_ns - self.sent_ns

    @property
    def send_delay_ns(self) -> int:
        self._require_sent("send delay")
        return self.sent_ns - self.intended_ns

    def late(self, threshold_ns: int = LATE_SEND_THRESHOLD_NS) -> bool:
        """Sent more than `threshold_ns` after its intended time (a dropped request is not *late*)."""
        return not self.dropped and self.sent_ns - self.intended_ns > threshold_ns

    def _require_sent(self, what: str) -> None:
        if self.dropped:
            raise ValueError(f"a dropped request has no {what}")

    def to_row(self) -> dict[str, str]:
        return {
            "schema_version": str(SCHEMA_VERSION),
            "model": self.model,
            "tenant": self.tenant,
            "worker": str(self.worker),
            "intended_ns": str(self.intended_ns),
            "sent_ns": "" if self.sent_ns is None else str(self.sent_ns),
            "done_ns": str(self.done_ns),
            "batch_size": str(self.batch_size),
            "status_code": self.status_code,
            "response_bytes": str(self.response_bytes),
        }

    @classmethod
    def from_row(cls, row: dict[str, str]) -> "RequestRecord":
        if row.get("schema_version") != str(SCHEMA_VERSION):
            raise ValueError(f"unsupported request record schema_version {row.get('schema_version')!r}")
        return cls(
            model=row["model"],
            tenant=row["tenant"],
            intended_ns=int(row["intended_ns"]),
            sent_ns=int(row["sent_ns"]) if row["sent_ns"] else None,
            done_ns=int(row["done_ns"]),
            batch_size=int(row["batch_size"]),
            status_code=row["status_code"],
            response_bytes=int(row["response_bytes"]),
            worker=int(row["worker"]),
        )


_HEADER_LINE = ",".join(CSV_COLUMNS)


def csv_rows(records: Iterable[RequestRecord]) -> str:
    """The records as rows of a record file, without its header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    for record in records:
        writer.writerow(record.to_row())
    return buffer.getvalue()


def records_from_rows(lines: Iterable[str]) -> list[RequestRecord]:
    """The records in whole rows of a record file (its header left out)."""
    return [RequestRecord.from_row(dict(zip(CSV_COLUMNS, row))) for row in csv.reader(lines)]


class RecordCsvWriter:
    """Appends records to a CSV file, one `append` per window, each written whole and flushed.

    The header is written when the file is new or empty; appending to a file with another header
    (another schema) or ending in a partial row is refused.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        problem = _append_problem(self.path)
        if problem:
            raise ValueError(f"{self.path} {problem}; refusing to append")
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        if self._file.tell() == 0:
            self._write(_HEADER_LINE + "\r\n")

    def append(self, records: Iterable[RequestRecord]) -> int:
        """Writes the records in one write and flushes; returns how many were written."""
        records = list(records)
        self._write(csv_rows(records))
        return len(records)

    def append_rows(self, text: str) -> None:
        """Writes rows already in this format (`csv_rows`' text, whole rows) in one write and flushes."""
        self._write(text)

    def _write(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RecordCsvWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _append_problem(path: Path) -> str | None:
    """Why rows must not be appended to an existing file, or None."""
    try:
        with open(path, "rb") as f:
            first_line = f.readline().decode("utf-8", "replace").rstrip("\r\n")
            if not first_line:
                return None
            f.seek(-1, os.SEEK_END)
            last_byte = f.read(1)
    except FileNotFoundError:
        return None
    if first_line != _HEADER_LINE:
        return f"holds other records (header {first_line!r})"
    if last_byte != b"\n":
        return "ends in a partial row (its writer crashed)"
    return None


def read_records(*paths: str | os.PathLike) -> list[RequestRecord]:
    """Every record of the files in order (e.g. one file per worker); see `iter_records`."""
    return [record for path in paths for record in iter_records(path)]


def iter_records(path: str | os.PathLike) -> Iterator[RequestRecord]:
    """Records of one file; a last line cut short by a crash (no newline) is skipped.

    Raises RunFileError (a ValueError) naming the file, and the line of a bad row.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise RunFileError(f"cannot read {path}: {e.strerror or e}") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is not None and tuple(reader.fieldnames) != CSV_COLUMNS:
        raise RunFileError(f"{path} is not a request record file (header {reader.fieldnames})")
    for row in reader:
        try:
            record = RequestRecord.from_row(row)
        except (ValueError, TypeError) as e:  # TypeError: a row with fewer columns than the header
            raise RunFileError(f"{path}:{reader.line_num}: {e}") from None
        yield record
