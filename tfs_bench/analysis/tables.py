"""The cost model's records as pandas tables, written as CSV and Parquet with a fixed column order.

Each table has a schema in `SCHEMAS`: its columns in order, each of one kind:
- text: a pandas "string" column that never holds a missing value (an absent model is ""), so
  CSV, which cannot tell "" from missing, reads back the same;
- int (int64), float (float64; a missing number is NaN, an empty CSV cell);
- date: the ISO form YYYY-MM-DD as text, the same in both formats.
Tuples are written as text: a fleet's machines per model as "model=n;model=n", a shared
machine's models as "a+b".

`write_tables` writes `<name>.csv` and `<name>.parquet` for each table, each through a temporary
file and os.replace, and refuses to replace existing files unless asked. `read_table` reads
either file back with its schema's types.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from tfs_bench.analysis.cost import Interference
from tfs_bench.analysis.cost import OptionCost
from tfs_bench.analysis.cost import SkippedOption
from tfs_bench.analysis.cost import UnitCost
from tfs_bench.analysis.prices import PriceRow
from tfs_bench.errors import ConfigError

TEXT, INT, FLOAT, DATE, BOOL = "text", "int", "float", "date", "bool"
_DTYPES = {TEXT: "string", INT: "int64", FLOAT: "float64", DATE: "string", BOOL: "bool"}
FORMATS = ("csv", "parquet")

PRICES = (
    ("provider", TEXT), ("instance", TEXT), ("device", TEXT), ("vcpus", INT), ("memory_gib", FLOAT),
    ("gpu_model", TEXT), ("gpu_count", INT), ("gpu_memory_gib", FLOAT), ("usd_per_hour", FLOAT),
    ("region", TEXT), ("observed", DATE), ("source", TEXT), ("note", TEXT),
)
COSTS = (
    ("rank", INT), ("placement", TEXT), ("device", TEXT), ("label", TEXT), ("provider", TEXT),
    ("instance", TEXT), ("region", TEXT), ("machines", INT), ("machines_by_model", TEXT),
    ("machine_usd_per_hour", FLOAT), ("usd_per_hour", FLOAT), ("demand_inferences_per_s", FLOAT),
    ("usd_per_million", FLOAT), ("price_observed", DATE), ("price_source", TEXT),
)
SKIPPED = (
    ("placement", TEXT), ("device", TEXT), ("label", TEXT), ("provider", TEXT), ("instance", TEXT),
    ("region", TEXT), ("reason", TEXT),
)
INTERFERENCE = (
    ("tenant", TEXT), ("offered_per_s", FLOAT), ("dedicated_p99_ms", FLOAT), ("colocated_p99_ms", FLOAT),
    ("p99_ratio", FLOAT), ("dedicated_throughput_inferences_per_s", FLOAT),
    ("colocated_throughput_inferences_per_s", FLOAT), ("throughput_ratio", FLOAT),
)
UNIT_COSTS = (
    ("placement", TEXT), ("device", TEXT), ("label", TEXT), ("provider", TEXT), ("instance", TEXT),
    ("region", TEXT), ("models", TEXT), ("throughput_inferences_per_s", FLOAT),
    ("machine_usd_per_hour", FLOAT), ("usd_per_million", FLOAT), ("price_observed", DATE),
)

# The experiment's tables (tfs_bench.analysis.results): one run directory's figures.
_LATENCIES = tuple((name, FLOAT) for name in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms", "mean_ms", "max_ms"))
_TENANT = (
    ("offered_rate_rps", FLOAT), ("throughput_rps", FLOAT), ("inferences_per_s", FLOAT), ("valid", BOOL),
    ("invalid_reasons", TEXT), ("sla_latency_ms", FLOAT), ("meets_sla", BOOL), *_LATENCIES,
)
_UTILISATION = (
    ("system_cpu_percent", FLOAT), ("servers_cpu_cores", FLOAT), ("generator_cpu_cores", FLOAT),
    ("servers_rss_max_mib", FLOAT), ("gpu_utilisation_percent", FLOAT), ("gpu_memory_max_mib", FLOAT),
    ("gpu_power_w", FLOAT),
)
PLACEMENTS = (
    ("device", TEXT), ("placement", TEXT), ("model", TEXT), ("step", TEXT), *_TENANT, *_UTILISATION,
    ("serving_tax", FLOAT),
)
SERVING_TAX = (
    ("device", TEXT), ("model", TEXT), ("served_inferences_per_s", FLOAT), ("served_concurrency", INT),
    ("raw_inferences_per_s", FLOAT), ("raw_concurrency", INT), ("serving_tax", FLOAT),
)
MIXES = (
    ("device", TEXT), ("placement", TEXT), ("mix", TEXT), ("step", TEXT), ("tenant", TEXT), ("searched", BOOL),
    ("offered_rate_rps", FLOAT), ("inferences_per_s", FLOAT), ("dedicated_peak_inferences_per_s", FLOAT),
    ("share_of_dedicated_peak", FLOAT), ("valid", BOOL), ("invalid_reasons", TEXT), ("sla_latency_ms", FLOAT),
    ("normalised_capacity", FLOAT), ("savings_fraction", FLOAT),
)
TENANT_INTERFERENCE = (
    ("device", TEXT), ("placement", TEXT), ("mix", TEXT), ("tenant", TEXT), ("offered_rate_rps", FLOAT),
    ("dedicated_p99_ms", FLOAT), ("colocated_p99_ms", FLOAT), ("p99_ratio", FLOAT),
    ("dedicated_inferences_per_s", FLOAT), ("colocated_inferences_per_s", FLOAT), ("throughput_ratio", FLOAT),
    ("colocated_valid", BOOL), ("dedicated_valid", BOOL), ("invalid_reasons", TEXT),
)
RUNS = (
    ("device", TEXT), ("placement", TEXT), ("kind", TEXT), ("step", TEXT), ("label", TEXT), ("tenant", TEXT),
    ("concurrency", INT), *_TENANT,
)
BREAKDOWN = (
    ("device", TEXT), ("placement", TEXT), ("step", TEXT), ("variant", TEXT), ("tenant", TEXT), ("valid", BOOL),
    ("client_mean_service_time_ms", FLOAT), ("request_latency_mean_ms", FLOAT), ("runtime_latency_mean_ms", FLOAT),
    ("network_serialisation_ms", FLOAT), ("request_handling_ms", FLOAT), ("batch_wait_ms", FLOAT),
)
RESOURCES = (
    ("device", TEXT), ("placement", TEXT), ("step", TEXT), ("label", TEXT), ("duration_s", FLOAT),
    ("system_cpu_percent", FLOAT), ("servers_cpu_cores", FLOAT), ("generator_cpu_cores", FLOAT),
    ("servers_rss_mib", FLOAT), ("gpu_utilisation_percent", FLOAT), ("gpu_memory_used_mib", FLOAT),
    ("gpu_power_w", FLOAT), ("t_s", FLOAT),
)
FRAMEWORK = (
    ("device", TEXT), ("model", TEXT), ("variant", TEXT), ("concurrency", INT), ("throughput_rps", FLOAT),
    ("p99_ms", FLOAT), ("sla_latency_ms", FLOAT), ("valid", BOOL), ("invalid_reasons", TEXT),
    ("change_vs_default", FLOAT),
)

SCHEMAS = {
    "prices": PRICES, "costs": COSTS, "skipped": SKIPPED, "interference_ratios": INTERFERENCE, "unit_costs": UNIT_COSTS,
    "placements": PLACEMENTS, "serving_tax": SERVING_TAX, "mixes": MIXES, "interference": TENANT_INTERFERENCE,
    "runs": RUNS, "breakdown": BREAKDOWN, "resources": RESOURCES, "framework": FRAMEWORK,
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _cell(value, kind: str):
    if kind == TEXT:
        return "" if value is None else str(value)
    if kind == DATE:
        return value.isoformat() if isinstance(value, datetime.date) else str(value)
    if kind == FLOAT:
        return math.nan if value is None else float(value)
    if kind == BOOL:
        return bool(value)
    return int(value)


def _frame(records: Iterable, schema, render: Mapping[str, Callable] | None = None) -> pd.DataFrame:
    render = render or {}
    rows = [
        [_cell(render[name](getattr(r, name)) if name in render else getattr(r, name), kind) for name, kind in schema]
        for r in records
    ]
    frame = pd.DataFrame(rows, columns=[name for name, _ in schema])
    return frame.astype({name: _DTYPES[kind] for name, kind in schema})


def rows_frame(name: str, rows: Iterable[Mapping]) -> pd.DataFrame:
    """The table `name` from dicts holding exactly its schema's columns (a missing or extra key is a bug)."""
    schema = _schema(name)
    columns = [c for c, _ in schema]
    cells = []
    for row in rows:
        if set(row) != set(columns):
            raise ValueError(f"a {name} row has {sorted(set(row) ^ set(columns))} beyond or short of its schema")
        cells.append([_cell(row[c], kind) for c, kind in schema])
    frame = pd.DataFrame(cells, columns=columns)
    return frame.astype({c: _DTYPES[kind] for c, kind in schema})


def _machines_text(by_model: tuple[tuple[str, int], ...]) -> str:
    return ";".join(f"{model}={n}" for model, n in by_model)


def prices_frame(rows: Iterable[PriceRow]) -> pd.DataFrame:
    return _frame(rows, PRICES)


def costs_frame(costs: Iterable[OptionCost]) -> pd.DataFrame:
    return _frame(costs, COSTS, {"machines_by_model": _machines_text})


def skipped_frame(skipped: Iterable[SkippedOption]) -> pd.DataFrame:
    return _frame(skipped, SKIPPED)


def interference_frame(rows: Iterable[Interference]) -> pd.DataFrame:
    return _frame(rows, INTERFERENCE)


def unit_costs_frame(rows: Iterable[UnitCost]) -> pd.DataFrame:
    return _frame(rows, UNIT_COSTS, {"models": "+".join})


def _schema(name: str):
    if name not in SCHEMAS:
        raise ConfigError(f"no table schema named {name!r}; the tables are {', '.join(SCHEMAS)}")
    return SCHEMAS[name]


def _check_frame(name: str, frame: pd.DataFrame):
    columns = [c for c, _ in _schema(name)]
    if list(frame.columns) != columns:
        raise ConfigError(f"table {name} has columns {list(frame.columns)}, its schema {columns}")


def _write_atomic(path: Path, write: Callable[[str], None]):
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_tables(directory: str | Path, frames: Mapping[str, pd.DataFrame], overwrite: bool = False) -> tuple[Path, ...]:
    """`<name>.csv` and `<name>.parquet` in directory (created) for each table; the paths written."""
    directory = Path(directory)
    for name, frame in frames.items():
        if not _NAME.match(name):
            raise ConfigError(f"table name {name!r} must be lower-case letters, digits and _")
        _check_frame(name, frame)
    paths = [directory / f"{name}.{fmt}" for name in frames for fmt in FORMATS]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"refusing to overwrite {', '.join(existing)} (pass overwrite=True to replace them)")
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        _write_atomic(directory / f"{name}.csv", lambda p, f=frame: f.to_csv(p, index=False))
        _write_atomic(directory / f"{name}.parquet", lambda p, f=frame: f.to_parquet(p, index=False))
    return tuple(paths)


def read_table(path: str | Path) -> pd.DataFrame:
    """A table written by write_tables, typed by the schema its file name names (`costs.csv`: COSTS)."""
    path = Path(path)
    schema = _schema(path.stem)
    dtypes = {name: _DTYPES[kind] for name, kind in schema}
    if path.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"{path}: a table is .csv or .parquet")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            numbers = {name: [""] for name, kind in schema if kind == FLOAT}
            frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=numbers)
    except OSError as e:
        raise ConfigError(f"cannot read the table {path}: {e.strerror or e}") from None
    _check_frame(path.stem, frame)
    return frame.astype(dtypes)
