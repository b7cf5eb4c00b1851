"""configs/prices.csv against the project's price sources, and every rule of the price-table reader."""

import codecs
import dataclasses
import datetime
import io
import math
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from conftest import exactly
from conftest import run_env
from tfs_bench.analysis import prices
from tfs_bench.errors import ConfigError

PRICE_TABLE = REPO_ROOT / "configs" / "prices.csv"

# PRICES.md's table, transcribed: (provider, instance) -> (vCPU, GiB, GPU model or None, $/h, region, observed).
PRICES_MD = {
    ("GCP", "n1-standard-4"): (4, 15, None, 0.189999, "us-central1", "2026-07-30"),
    ("GCP", "n1-standard-8"): (8, 30, None, 0.379998, "us-central1", "2026-07-30"),
    ("GCP", "n1-standard-4 + 1×T4"): (4, 15, "T4", 0.539999, "us-central1", "2026-07-30"),
    ("GCP", "n1-standard-4 + 1×P4"): (4, 15, "P4", 0.789999, "us-central1", "2026-07-30"),
    ("GCP", "n1-standard-8 + 1×V100"): (8, 30, "V100", 2.859998, "us-central1", "2026-07-30"),
    ("GCP", "n2-standard-4"): (4, 16, None, 0.194236, "us-central1", "2026-07-30"),
    ("GCP", "c2-standard-8"): (8, 32, None, 0.417616, "us-central1", "2026-07-30"),
    ("GCP", "e2-standard-4"): (4, 16, None, 0.134023, "us-central1", "2026-07-30"),
    ("GCP", "g2-standard-4"): (4, 16, "L4", 0.706832, "us-central1", "2026-07-30"),
    ("GCP", "a2-highgpu-1g"): (12, 85, "A100", 3.673385, "us-central1", "2026-07-30"),
    ("GCP", "a3-highgpu-1g"): (26, 234, "H100", 11.06125, "us-central1", "2026-07-30"),
    ("AWS", "c5.xlarge"): (4, 8, None, 0.17, "us-east-1", "2026-07-20"),
    ("AWS", "c6i.2xlarge"): (8, 16, None, 0.34, "us-east-1", "2026-07-20"),
    ("AWS", "c7i.xlarge"): (4, 8, None, 0.1785, "us-east-1", "2026-07-20"),
    ("AWS", "m6i.xlarge"): (4, 16, None, 0.192, "us-east-1", "2026-07-20"),
    ("AWS", "g4dn.xlarge"): (4, 16, "T4", 0.526, "us-east-1", "2026-07-20"),
    ("AWS", "g4dn.2xlarge"): (8, 32, "T4", 0.752, "us-east-1", "2026-07-20"),
    ("AWS", "g5.xlarge"): (4, 16, "A10G", 1.006, "us-east-1", "2026-07-20"),
    ("AWS", "g6.xlarge"): (4, 16, "L4", 0.8048, "us-east-1", "2026-07-20"),
    ("AWS", "p5.4xlarge"): (16, 256, "H100", 6.88, "us-east-1", "2026-07-20"),
}
SOURCE_KEYS = {"GCP-C", "GCP-C + GCP-S", "AWS-K"}

HEADER = ",".join(prices.COLUMNS)
GOOD = {
    "provider": "AWS", "instance": "g4dn.xlarge", "vcpus": "4", "memory_gib": "16", "gpu_model": "T4",
    "gpu_count": "1", "gpu_memory_gib": "16", "usd_per_hour": "0.526", "region": "us-east-1",
    "observed": "2026-07-20", "source": "AWS-K: Karpenter table", "note": "",
}


def _line(**changes) -> str:
    return ",".join({**GOOD, **changes}[c] for c in prices.COLUMNS)


def _parse(*lines: str, header: str = HEADER):
    return prices.parse_prices(io.StringIO("\n".join([header, *lines]) + "\n"), "t.csv")


@pytest.fixture(scope="module")
def table():
    return prices.read_prices(PRICE_TABLE)


def test_the_price_table_holds_every_instance_of_prices_md_as_written_there(table):
    by_key = {(r.provider, r.instance): r for r in table}
    for key, (vcpus, memory, gpu, usd, region, observed) in PRICES_MD.items():
        row = by_key[key]
        got = (row.vcpus, row.memory_gib, row.gpu_model, row.usd_per_hour, row.region, row.observed.isoformat())
        assert got == (vcpus, memory, gpu, usd, region, observed), key


def test_every_row_is_dated_and_sourced(table):
    for row in table:
        assert isinstance(row.observed, datetime.date), row
        key, colon, description = row.source.partition(": ")
        assert key in SOURCE_KEYS and colon and description, row
        assert row.observed.isoformat() in description, row  # each source is a version generated that day


def test_the_only_row_beyond_prices_md_is_the_perseus_custom_vm_marked_historical(table):
    extra = [r for r in table if (r.provider, r.instance) not in PRICES_MD]
    assert [(r.provider, r.instance, r.vcpus, r.memory_gib, r.device) for r in extra] == [
        ("GCP", "custom-6-8192", 6, 8, "cpu")]
    custom = extra[0]
    assert custom.note.startswith("HISTORICAL")
    # 6 vCPU × $0.03319155 + 8 GB × $0.004446 = 0.1991493 + 0.035568 = $0.2347173/h (PRICES.md: $0.2347)
    assert custom.usd_per_hour == pytest.approx(0.2347173, abs=1e-12)
    assert round(custom.usd_per_hour, 4) == 0.2347
    assert (custom.observed, custom.source.split(":")[0]) == (datetime.date(2026, 7, 30), "GCP-C")


def test_gcp_n1_gpu_rows_are_the_vm_plus_the_gpu_and_say_so(table):
    by_instance = {r.instance: r for r in table if r.provider == "GCP"}
    n1_gpu = [r for r in by_instance.values() if r.instance.startswith("n1-") and r.gpu_count]
    assert len(n1_gpu) == 3
    for row in n1_gpu:
        vm, vm_usd, gpu, gpu_usd = re.search(r"VM (\S+) ([\d.]+) \+ GPU (\S+) ([\d.]+)", row.note).groups()
        assert vm == row.instance.split(" ")[0] and gpu == row.gpu_model
        assert float(vm_usd) == by_instance[vm].usd_per_hour
        assert float(vm_usd) + float(gpu_usd) == pytest.approx(row.usd_per_hour, abs=1e-9)


def test_gpu_rows_carry_their_gpu_memory_and_cpu_rows_none(table):
    assert {r.instance: r.gpu_memory_gib for r in table if r.device == "gpu"} == {
        "n1-standard-4 + 1×T4": 16, "n1-standard-4 + 1×P4": 8, "n1-standard-8 + 1×V100": 16,
        "g2-standard-4": 24, "a2-highgpu-1g": 40, "a3-highgpu-1g": 80, "g4dn.xlarge": 16,
        "g4dn.2xlarge": 16, "g5.xlarge": 24, "g6.xlarge": 24, "p5.4xlarge": 80,
    }
    assert all(r.gpu_model is None and r.gpu_memory_gib is None for r in table if r.device == "cpu")


def test_a_good_row_reads_back_with_its_types():
    (row,) = _parse(_line(note='"two, parts"'))
    assert row == prices.PriceRow("AWS", "g4dn.xlarge", 4, 16.0, "T4", 1, 16.0, 0.526, "us-east-1",
                                  datetime.date(2026, 7, 20), "AWS-K: Karpenter table", "two, parts")
    assert (row.device, row.key, str(row)) == ("gpu", ("AWS", "g4dn.xlarge", "us-east-1"), "AWS g4dn.xlarge in us-east-1")


def test_a_cpu_row_has_device_cpu_and_columns_may_come_in_any_order():
    header = ",".join(reversed(prices.COLUMNS))
    cpu = {**GOOD, "gpu_model": "", "gpu_count": "0", "gpu_memory_gib": ""}
    (row,) = _parse(",".join(cpu[c] for c in reversed(prices.COLUMNS)), header=header)
    assert (row.device, row.gpu_model, row.gpu_memory_gib) == ("cpu", None, None)


def test_blank_lines_are_skipped_and_line_numbers_count_them():
    with pytest.raises(ConfigError, match=exactly("t.csv, line 4, column usd_per_hour: 'x' is not a number")):
        _parse(_line(), "", _line(instance="b", usd_per_hour="x"))


def test_line_numbers_count_a_quoted_field_that_spans_lines():
    with pytest.raises(ConfigError, match=exactly("t.csv, line 4, column vcpus: 'four' is not a whole number")):
        _parse(_line(note='"one\ntwo"'), _line(instance="b", vcpus="four"))


@pytest.mark.parametrize("changes, message", [
    ({"vcpus": "4.0"}, "column vcpus: '4.0' is not a whole number"),
    ({"vcpus": "0"}, "column vcpus: must be ≥ 1, got 0"),
    ({"gpu_count": "-1"}, "column gpu_count: must be ≥ 0, got -1"),
    ({"gpu_count": "one"}, "column gpu_count: 'one' is not a whole number"),
    ({"memory_gib": "lots"}, "column memory_gib: 'lots' is not a number"),
    ({"memory_gib": "0"}, "column memory_gib: must be above 0, got 0"),
    ({"usd_per_hour": ""}, "column usd_per_hour: '' is not a number"),
    ({"usd_per_hour": "-0.5"}, "column usd_per_hour: must not be negative, got -0.5"),
    ({"usd_per_hour": "0"}, "column usd_per_hour: must be above 0, got 0"),
    ({"usd_per_hour": "inf"}, "column usd_per_hour: 'inf' is not a finite number"),
    ({"usd_per_hour": "nan"}, "column usd_per_hour: 'nan' is not a finite number"),
    ({"observed": "2026-13-01"}, "column observed: '2026-13-01' is not a date (YYYY-MM-DD)"),
    ({"observed": "20260720"}, "column observed: '20260720' is not a date (YYYY-MM-DD)"),
    ({"observed": ""}, "column observed: '' is not a date (YYYY-MM-DD)"),
    ({"gpu_model": ""}, "column gpu_model: empty, but gpu_count is 1 (a GPU row names its model)"),
    ({"gpu_memory_gib": ""}, "column gpu_memory_gib: empty, but gpu_count is 1"),
    ({"gpu_memory_gib": "-16"}, "column gpu_memory_gib: must not be negative, got -16.0"),
    ({"gpu_memory_gib": "lots"}, "column gpu_memory_gib: 'lots' is not a number"),
    ({"gpu_memory_gib": "inf"}, "column gpu_memory_gib: 'inf' is not a finite number"),
    ({"gpu_count": "0", "gpu_memory_gib": ""}, "column gpu_model: 'T4' given, but gpu_count is 0"),
    ({"gpu_count": "0", "gpu_model": ""}, "column gpu_memory_gib: 16.0 given, but gpu_count is 0"),
    ({"provider": " "}, "column provider: must not be empty, got ''"),
    ({"instance": ""}, "column instance: must not be empty, got ''"),
    ({"region": ""}, "column region: must not be empty, got ''"),
    ({"source": ""}, "column source: must not be empty, got ''"),
])
def test_a_bad_cell_is_named_by_file_line_and_column(changes, message):
    with pytest.raises(ConfigError, match=exactly(f"t.csv, line 3, {message}")):
        _parse(_line(instance="first"), _line(**changes))


def test_a_duplicate_key_names_both_lines():
    with pytest.raises(ConfigError, match=exactly(
            "t.csv, line 4: AWS g4dn.xlarge in us-east-1 is already priced on line 2")):
        _parse(_line(), _line(instance="other"), _line(usd_per_hour="0.6"))


def test_the_same_instance_in_another_region_is_another_row():
    rows = _parse(_line(), _line(region="us-west-2"))
    assert [r.region for r in rows] == ["us-east-1", "us-west-2"]


def test_a_row_with_the_wrong_number_of_fields():
    with pytest.raises(ConfigError, match=exactly("t.csv, line 2: 13 fields, but the header names 12 columns")):
        _parse(_line() + ",extra")


@pytest.mark.parametrize("header, message", [
    (HEADER.replace(",note", ""), "t.csv, line 1: missing column(s) note"),
    (HEADER.replace("vcpus,memory_gib", "cpus,memory"), "t.csv, line 1: missing column(s) vcpus, memory_gib"),
    (HEADER + ",comment", "t.csv, line 1: unknown column(s) comment; the columns are " + ", ".join(prices.COLUMNS)),
    (HEADER + ",note", "t.csv, line 1: column(s) named twice: note"),
    (HEADER + ",region,note,region", "t.csv, line 1: column(s) named twice: note, region"),
    (HEADER + ",comment,alias", "t.csv, line 1: unknown column(s) comment, alias; the columns are " + ", ".join(prices.COLUMNS)),
])
def test_a_bad_header_is_named(header, message):
    with pytest.raises(ConfigError, match=exactly(message)):
        _parse(header=header)


def test_an_empty_file_and_a_file_without_rows_are_refused():
    with pytest.raises(ConfigError, match=exactly(f"t.csv is empty; its first line must name the columns {', '.join(prices.COLUMNS)}")):
        prices.parse_prices(io.StringIO(""), "t.csv")
    with pytest.raises(ConfigError, match=exactly("t.csv holds no price rows")):
        _parse("", "")


def test_malformed_csv_is_named_by_line():
    with pytest.raises(ConfigError, match=r"^t\.csv, line 2: not valid CSV: "):
        _parse(_line(note='"open"x'))


def test_read_prices_names_a_missing_file_and_one_that_is_not_text(tmp_path):
    missing = tmp_path / "absent.csv"
    with pytest.raises(ConfigError, match=exactly(f"cannot read the price table {missing}: No such file or directory")):
        prices.read_prices(missing)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=exactly(f"{binary} is not UTF-8 text")):
        prices.read_prices(binary)


def test_a_cell_that_spans_lines_is_read_as_the_file_holds_it(tmp_path):
    # csv needs the file opened with newline="": otherwise the CRLF inside the quoted note would
    # reach it as "\n", and the note would not be the text the file holds.
    path = tmp_path / "crlf.csv"
    path.write_bytes((HEADER + "\r\n" + _line(note='"one\r\ntwo"') + "\r\n" + _line(instance="b", vcpus="x") + "\r\n")
                     .encode("utf-8"))
    with pytest.raises(ConfigError, match=exactly(f"{path}, line 4, column vcpus: 'x' is not a whole number")):
        prices.read_prices(path)
    path.write_bytes((HEADER + "\r\n" + _line(note='"one\r\ntwo"') + "\r\n").encode("utf-8"))
    (row,) = prices.read_prices(path)
    assert row.note == "one\r\ntwo"


def test_the_table_is_read_as_utf_8_whatever_the_locale(table):
    # Under the C locale without Python's UTF-8 mode, open() would default to ASCII and stop at the
    # "×" of "n1-standard-4 + 1×T4"; read_prices names its encoding, so the table reads the same.
    env = {**run_env(), "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    code = ("import locale, sys; from tfs_bench.analysis import prices; "
            "print(locale.getpreferredencoding(False)); "
            f"print(len(prices.read_prices({str(PRICE_TABLE)!r})))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    locale_encoding, rows = done.stdout.split()
    if codecs.lookup(locale_encoding).name == "utf-8":
        pytest.skip("the C locale is UTF-8 on this machine; nothing to tell apart")
    assert int(rows) == len(table) == len(prices.read_prices(PRICE_TABLE))
    assert "n1-standard-4 + 1×T4" in {r.instance for r in table}


def test_read_prices_names_the_path_it_was_given(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(HEADER + "\n" + _line(vcpus="x") + "\n")
    with pytest.raises(ConfigError, match=exactly(f"{path}, line 2, column vcpus: 'x' is not a whole number")):
        prices.read_prices(path)


def test_a_price_row_built_in_code_is_checked_too():
    (row,) = _parse(_line())
    with pytest.raises(ConfigError, match=exactly("column vcpus: must be a whole number, got True")):
        dataclasses.replace(row, vcpus=True)
    with pytest.raises(ConfigError, match=exactly("column usd_per_hour: must be a finite number, got nan")):
        dataclasses.replace(row, usd_per_hour=math.nan)
    # a bool is an int to Python, and a number in text is no number: each refused on its own
    with pytest.raises(ConfigError, match=exactly("column memory_gib: must be a finite number, got True")):
        dataclasses.replace(row, memory_gib=True)
    with pytest.raises(ConfigError, match=exactly("column usd_per_hour: must be a finite number, got '0.526'")):
        dataclasses.replace(row, usd_per_hour="0.526")
    with pytest.raises(ConfigError, match=exactly("column observed: must be a date, got '2026-07-20'")):
        dataclasses.replace(row, observed="2026-07-20")
    with pytest.raises(ConfigError, match=r"^column observed: must be a date, got datetime\.datetime"):
        dataclasses.replace(row, observed=datetime.datetime(2026, 7, 20))
    with pytest.raises(ConfigError, match=exactly("column note: must be text, got None")):
        dataclasses.replace(row, note=None)


def test_lookup_finds_a_row_or_names_what_the_provider_prices(table):
    assert prices.lookup(table, "AWS", "c5.xlarge", "us-east-1").usd_per_hour == 0.17
    aws = "; ".join(sorted(str(r) for r in table if r.provider == "AWS"))
    with pytest.raises(ConfigError, match=exactly(f"no price for AWS c5.xlarge in eu-west-1; the table prices {aws}")):
        prices.lookup(table, "AWS", "c5.xlarge", "eu-west-1")
    everything = "; ".join(sorted(str(r) for r in table))
    with pytest.raises(ConfigError, match=exactly(f"no price for Azure F4s in eastus; the table prices {everything}")):
        prices.lookup(table, "Azure", "F4s", "eastus")
