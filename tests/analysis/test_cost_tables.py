"""The cost records as DataFrames: fixed columns and types, CSV and Parquet written and read back."""

import dataclasses

import pandas as pd
import pytest

from conftest import REPO_ROOT
from conftest import exactly
from tfs_bench.analysis import cost
from tfs_bench.analysis import prices
from tfs_bench.analysis import tables
from tfs_bench.errors import ConfigError

TABLE = prices.read_prices(REPO_ROOT / "configs" / "prices.csv")
G4DN = prices.lookup(TABLE, "AWS", "g4dn.xlarge", "us-east-1")
C5 = prices.lookup(TABLE, "AWS", "c5.xlarge", "us-east-1")
OPTIONS = (
    cost.CostOption("dedicated", "gpu", G4DN, {"resnet50": 50.0, "inception_v3": 40.0}),
    cost.CostOption("multi_process", "gpu", G4DN, {"resnet50": 30.0, "inception_v3": 25.0}, label="balanced mix"),
    cost.CostOption("multi_model", "cpu", C5, {"resnet50": 5.0}),
)
RANKING = cost.cheapest({"resnet50": 120.0, "inception_v3": 60.0}, OPTIONS)
INTERFERENCE = cost.interference_table(
    [cost.TenantPoint("a", 50.0, 45.0, 30.0)], [cost.TenantPoint("a", 50.0, 50.0, 20.0)])


def _frames():
    return {
        "prices": tables.prices_frame(TABLE),
        "costs": tables.costs_frame(RANKING.ranked),
        "skipped": tables.skipped_frame(RANKING.skipped),
        "interference_ratios": tables.interference_frame(INTERFERENCE),
        "unit_costs": tables.unit_costs_frame(u for o in OPTIONS for u in cost.unit_costs(o)),
    }


RECORDS = {"prices": prices.PriceRow, "costs": cost.OptionCost, "skipped": cost.SkippedOption,
           "interference_ratios": cost.Interference, "unit_costs": cost.UnitCost}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_every_table_has_a_column_for_each_field_of_its_record(name):
    fields = {f.name for f in dataclasses.fields(RECORDS[name])}
    columns = {c for c, _ in tables.SCHEMAS[name]}
    extra = {"device"} if name == "prices" else set()  # the price table adds the PriceRow.device property
    assert columns == fields | extra
    assert list(_frames()[name].columns) == [c for c, _ in tables.SCHEMAS[name]]


def test_the_costs_frame_renders_fleets_and_dates_as_text():
    frame = tables.costs_frame(RANKING.ranked)
    assert frame[["rank", "placement", "machines", "machines_by_model", "price_observed"]].values.tolist() == [
        [1, "multi_process", 4, "inception_v3=4;resnet50=4", "2026-07-20"],
        [2, "dedicated", 5, "inception_v3=2;resnet50=3", "2026-07-20"],
    ]
    assert frame["usd_per_hour"].tolist() == pytest.approx([2.104, 2.63])  # 4 × 0.526, 5 × 0.526
    assert frame.dtypes.to_dict() == {name: tables._DTYPES[kind] for name, kind in tables.COSTS}


def test_the_prices_frame_writes_a_cpu_rows_gpu_as_empty_text_and_nan():
    frame = tables.prices_frame(TABLE).set_index("instance")
    assert frame.loc["c5.xlarge", "gpu_model"] == "" and pd.isna(frame.loc["c5.xlarge", "gpu_memory_gib"])
    assert (frame.loc["g4dn.xlarge", "gpu_model"], frame.loc["g4dn.xlarge", "device"]) == ("T4", "gpu")
    assert frame.loc["custom-6-8192", "observed"] == "2026-07-30"


def test_the_unit_costs_frame_joins_a_shared_machines_models():
    frame = tables.unit_costs_frame(cost.unit_costs(OPTIONS[1]))
    assert frame["models"].tolist() == ["inception_v3+resnet50"]


def test_an_empty_list_of_records_is_an_empty_table_with_its_columns_and_types():
    frame = tables.skipped_frame([])
    assert (len(frame), list(frame.columns)) == (0, [c for c, _ in tables.SKIPPED])
    assert set(frame.dtypes.astype(str)) == {"string"}


@pytest.mark.parametrize("fmt", tables.FORMATS)
def test_every_table_round_trips_through_csv_and_parquet(tmp_path, fmt):
    frames = _frames()
    written = tables.write_tables(tmp_path / "tables", frames)
    assert sorted(p.name for p in written) == sorted(f"{n}.{f}" for n in frames for f in tables.FORMATS)
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == sorted(p.name for p in written)  # no temporaries
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(tables.read_table(tmp_path / "tables" / f"{name}.{fmt}"), frame)


def test_plain_pandas_reads_the_files_in_the_schemas_column_order(tmp_path):
    frames = _frames()
    tables.write_tables(tmp_path, frames)
    for name, frame in frames.items():
        assert list(pd.read_csv(tmp_path / f"{name}.csv").columns) == list(frame.columns)
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{name}.parquet"), frame)


def test_write_tables_refuses_to_overwrite_unless_asked(tmp_path):
    tables.write_tables(tmp_path, {"skipped": tables.skipped_frame(RANKING.skipped)})
    with pytest.raises(ConfigError, match=exactly(
            f"refusing to overwrite {tmp_path / 'skipped.csv'}, {tmp_path / 'skipped.parquet'} (pass overwrite=True to replace them)")):
        tables.write_tables(tmp_path, {"skipped": tables.skipped_frame([])})
    assert len(tables.read_table(tmp_path / "skipped.csv")) == 1
    tables.write_tables(tmp_path, {"skipped": tables.skipped_frame([])}, overwrite=True)
    assert len(tables.read_table(tmp_path / "skipped.parquet")) == 0


def test_write_tables_refuses_an_unknown_name_or_a_frame_off_its_schema(tmp_path):
    with pytest.raises(ConfigError, match=exactly(
            "no table schema named 'summary'; the tables are prices, costs, skipped, interference_ratios, unit_costs, "
            "placements, serving_tax, mixes, interference, runs, breakdown, resources, framework")):
        tables.write_tables(tmp_path, {"summary": pd.DataFrame()})
    with pytest.raises(ConfigError, match=exactly("table name '../x' must be lower-case letters, digits and _")):
        tables.write_tables(tmp_path, {"../x": pd.DataFrame()})
    reordered = tables.skipped_frame([])[["reason", "placement", "device", "label", "provider", "instance", "region"]]
    with pytest.raises(ConfigError, match=r"^table skipped has columns \['reason', 'placement'"):
        tables.write_tables(tmp_path, {"skipped": reordered})
    assert list(tmp_path.iterdir()) == []


def test_read_table_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(ConfigError, match=exactly(f"{tmp_path / 'costs.json'}: a table is .csv or .parquet")):
        tables.read_table(tmp_path / "costs.json")
    with pytest.raises(ConfigError, match=exactly(f"cannot read the table {tmp_path / 'costs.csv'}: No such file or directory")):
        tables.read_table(tmp_path / "costs.csv")
    with pytest.raises(ConfigError, match=r"^no table schema named 'other'"):
        tables.read_table(tmp_path / "other.csv")
