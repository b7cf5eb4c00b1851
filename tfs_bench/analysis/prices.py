"""The dated price table (configs/prices.csv) as `PriceRow` records.

The file is plain CSV with a header naming exactly `COLUMNS` (any order). One row is one
machine at its on-demand Linux list price in USD per hour:

- `vcpus` and `gpu_count` are whole numbers, `vcpus` ≥ 1 and `gpu_count` ≥ 0; `memory_gib` and
  `usd_per_hour` are finite numbers above 0.
- A GPU row (`gpu_count` ≥ 1) names its `gpu_model` and a `gpu_memory_gib` above 0 (per GPU);
  a CPU row (`gpu_count` 0) leaves both empty.
- `usd_per_hour` is what the machine costs with its GPUs (GCP N1: the VM plus each attached GPU).
- `observed` is the date the price was read, `YYYY-MM-DD`; `source` names where (never empty),
  `note` may be empty.
- (provider, instance, region) is the key: it appears once in a file.

`read_prices` refuses a file that breaks any of these with a ConfigError naming the file, the
line and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
import re
from collections.abc import Iterable
from pathlib import Path

from tfs_bench.errors import ConfigError

COLUMNS = (
    "provider", "instance", "vcpus", "memory_gib", "gpu_model", "gpu_count", "gpu_memory_gib",
    "usd_per_hour", "region", "observed", "source", "note",
)
# The suite's own dated table, where --prices names none (found from any working directory).
DEFAULT_PRICES = Path(__file__).resolve().parents[2] / "configs" / "prices.csv"
DEVICE_CPU = "cpu"
DEVICE_GPU = "gpu"

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TEXT_COLUMNS = ("provider", "instance", "region", "source")


def _column_error(column: str, problem: str) -> ConfigError:
    return ConfigError(f"column {column}: {problem}")


@dataclasses.dataclass(frozen=True)
class PriceRow:
    """One machine type's hourly price, with when and where the price was read."""

    provider: str
    instance: str
    vcpus: int
    memory_gib: float
    gpu_model: str | None
    gpu_count: int
    gpu_memory_gib: float | None
    usd_per_hour: float
    region: str
    observed: datetime.date
    source: str
    note: str = ""

    def __post_init__(self):
        for column in _TEXT_COLUMNS:
            value = getattr(self, column)
            if not isinstance(value, str) or not value.strip():
                raise _column_error(column, f"must not be empty, got {value!r}")
        _check_whole(self.vcpus, "vcpus", minimum=1)
        _check_whole(self.gpu_count, "gpu_count", minimum=0)
        _check_positive(self.memory_gib, "memory_gib")
        _check_positive(self.usd_per_hour, "usd_per_hour")
        if not isinstance(self.observed, datetime.date) or isinstance(self.observed, datetime.datetime):
            raise _column_error("observed", f"must be a date, got {self.observed!r}")
        if not isinstance(self.note, str):
            raise _column_error("note", f"must be text, got {self.note!r}")
        self._check_gpu()

    def _check_gpu(self):
        if self.gpu_count:
            if not self.gpu_model:
                raise _column_error("gpu_model", f"empty, but gpu_count is {self.gpu_count} (a GPU row names its model)")
            if self.gpu_memory_gib is None:
                raise _column_error("gpu_memory_gib", f"empty, but gpu_count is {self.gpu_count}")
            _check_positive(self.gpu_memory_gib, "gpu_memory_gib")
        else:
            if self.gpu_model:
                raise _column_error("gpu_model", f"{self.gpu_model!r} given, but gpu_count is 0")
            if self.gpu_memory_gib is not None:
                raise _column_error("gpu_memory_gib", f"{self.gpu_memory_gib!r} given, but gpu_count is 0")

    @property
    def device(self) -> str:
        """"gpu" for a machine with a GPU, else "cpu"."""
        return DEVICE_GPU if self.gpu_count else DEVICE_CPU

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.instance, self.region)

    def __str__(self) -> str:
        return f"{self.provider} {self.instance} in {self.region}"


def _check_whole(value, column: str, minimum: int):
    if isinstance(value, bool) or not isinstance(value, int):
        raise _column_error(column, f"must be a whole number, got {value!r}")
    if value < minimum:
        raise _column_error(column, f"must be ≥ {minimum}, got {value}")


def _check_positive(value, column: str):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _column_error(column, f"must be a finite number, got {value!r}")
    if value < 0:
        raise _column_error(column, f"must not be negative, got {value!r}")
    if value == 0:
        raise _column_error(column, "must be above 0, got 0")


def _parse_whole(text: str, column: str) -> int:
    if not re.fullmatch(r"-?\d+", text):
        raise _column_error(column, f"{text!r} is not a whole number")
    return int(text)


def _parse_number(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _column_error(column, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise _column_error(column, f"{text!r} is not a finite number")
    return value


def _parse_date(text: str) -> datetime.date:
    try:
        if not _ISO_DATE.match(text):
            raise ValueError
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise _column_error("observed", f"{text!r} is not a date (YYYY-MM-DD)") from None


def _row(fields: dict[str, str]) -> PriceRow:
    gpu_memory = fields["gpu_memory_gib"]
    return PriceRow(
        provider=fields["provider"],
        instance=fields["instance"],
        vcpus=_parse_whole(fields["vcpus"], "vcpus"),
        memory_gib=_parse_number(fields["memory_gib"], "memory_gib"),
        gpu_model=fields["gpu_model"] or None,
        gpu_count=_parse_whole(fields["gpu_count"], "gpu_count"),
        gpu_memory_gib=_parse_number(gpu_memory, "gpu_memory_gib") if gpu_memory else None,
        usd_per_hour=_parse_number(fields["usd_per_hour"], "usd_per_hour"),
        region=fields["region"],
        observed=_parse_date(fields["observed"]),
        source=fields["source"],
        note=fields["note"],
    )


def _check_header(header: list[str], where: str):
    names = [h.strip() for h in header]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{where}, line 1: column(s) named twice: {', '.join(duplicated)}")
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ConfigError(f"{where}, line 1: missing column(s) {', '.join(missing)}")
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ConfigError(f"{where}, line 1: unknown column(s) {', '.join(unknown)}; the columns are {', '.join(COLUMNS)}")


def parse_prices(lines: Iterable[str], where: str) -> tuple[PriceRow, ...]:
    """The rows of a price CSV given as lines; `where` names it in errors (normally the path)."""
    reader = csv.reader(lines, strict=True)
    try:
        return _parse_rows(reader, where)
    except csv.Error as e:
        raise ConfigError(f"{where}, line {reader.line_num}: not valid CSV: {e}") from None


def _parse_rows(reader, where: str) -> tuple[PriceRow, ...]:
    header = next(reader, None)
    if header is None:
        raise ConfigError(f"{where} is empty; its first line must name the columns {', '.join(COLUMNS)}")
    _check_header(header, where)
    names = [h.strip() for h in header]
    rows: list[PriceRow] = []
    first_line: dict[tuple[str, str, str], int] = {}
    line = reader.line_num + 1
    for values in reader:
        if not any(v.strip() for v in values):
            line = reader.line_num + 1
            continue
        if len(values) != len(names):
            raise ConfigError(f"{where}, line {line}: {len(values)} fields, but the header names {len(names)} columns")
        try:
            row = _row({n: v.strip() for n, v in zip(names, values)})
        except ConfigError as e:
            raise ConfigError(f"{where}, line {line}, {e}") from None
        if row.key in first_line:
            raise ConfigError(f"{where}, line {line}: {row} is already priced on line {first_line[row.key]}")
        first_line[row.key] = line
        rows.append(row)
        line = reader.line_num + 1
    if not rows:
        raise ConfigError(f"{where} holds no price rows")
    return tuple(rows)


def read_prices(path: str | Path) -> tuple[PriceRow, ...]:
    """Every row of a price CSV, in file order; a ConfigError names the file, line and column."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return parse_prices(f, str(path))
    except OSError as e:
        raise ConfigError(f"cannot read the price table {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None


def lookup(rows: Iterable[PriceRow], provider: str, instance: str, region: str) -> PriceRow:
    """The row priced for (provider, instance, region); a ConfigError names what the table holds."""
    rows = tuple(rows)
    for row in rows:
        if row.key == (provider, instance, region):
            return row
    known = sorted(str(r) for r in rows if r.provider == provider) or sorted(str(r) for r in rows)
    raise ConfigError(f"no price for {provider} {instance} in {region}; the table prices {'; '.join(known)}")
