import dataclasses

import grpc
import pytest

from tfs_bench.errors import RunFileError
from tfs_bench.load.records import CSV_COLUMNS
from tfs_bench.load.records import GRPC_STATUS_CODES
from tfs_bench.load.records import RecordCsvWriter
from tfs_bench.load.records import STATUS_CODES
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.records import read_records

MS = 1_000_000


def record(**overrides) -> RequestRecord:
    fields = dict(
        model="resnet50",
        tenant="resnet50",
        intended_ns=1_000 * MS,
        sent_ns=1_000 * MS + 300_000,
        done_ns=1_012 * MS,
        batch_size=1,
        status_code="OK",
        response_bytes=4004,
        worker=0,
    )
    fields.update(overrides)
    return RequestRecord(**fields)


def dropped(**overrides) -> RequestRecord:
    return record(sent_ns=None, done_ns=1_000 * MS + 5, status_code="DROPPED", response_bytes=0, **overrides)


def test_response_time_counts_from_the_intended_time_and_service_time_from_the_send():
    r = record()
    assert r.response_time_ns == 12 * MS
    assert r.service_time_ns == 12 * MS - 300_000
    assert r.send_delay_ns == 300_000
    assert not r.late() and r.ok and not r.dropped


def test_a_send_is_late_only_when_more_than_one_ms_after_its_intended_time():
    assert not record(sent_ns=1_000 * MS + 1_000_000).late()
    assert record(sent_ns=1_000 * MS + 1_000_001).late()


def test_closed_loop_record_has_equal_response_and_service_time():
    r = record(sent_ns=1_000 * MS)
    assert r.response_time_ns == r.service_time_ns


def test_dropped_request_has_no_latency_and_is_not_late():
    r = dropped()
    assert r.dropped and not r.ok and not r.late()
    with pytest.raises(ValueError, match="dropped request has no response time"):
        r.response_time_ns
    with pytest.raises(ValueError, match="service time"):
        r.service_time_ns


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(done_ns=1_000 * MS), "done before sent"),
        (dict(sent_ns=1_000 * MS - 1), "sent before its intended time"),
        (dict(sent_ns=None), "sent_ns is required"),
        (dict(status_code="DROPPED"), "never sent"),
        (dict(status_code="TIMEOUT"), "gRPC code name"),
        (dict(model=""), "must not be empty"),
        (dict(batch_size=0), "implausible"),
        (dict(response_bytes=-1), "implausible"),
        (dict(worker=-1), "implausible"),
    ],
)
def test_invalid_records_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        record(**overrides)


def test_dropped_before_its_intended_time_is_refused():
    with pytest.raises(ValueError, match="dropped before"):
        record(sent_ns=None, done_ns=999 * MS, status_code="DROPPED")


def test_status_codes_are_grpcs_own_names():
    assert set(GRPC_STATUS_CODES) == {code.name for code in grpc.StatusCode}


def test_records_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        record().done_ns = 0


def test_csv_round_trip_across_appends_and_reopens(tmp_path):
    path = tmp_path / "records.csv"
    first = [record(), dropped(tenant="b@canary", model="b"), record(status_code="UNAVAILABLE", worker=3)]
    second = [record(done_ns=2_000 * MS, batch_size=8, model='odd,"name"')]
    with RecordCsvWriter(path) as writer:
        assert writer.append(first) == 3
        # Flushed per window: another reader sees the rows while the writer is still open.
        assert read_records(path) == first
    with RecordCsvWriter(path) as writer:
        writer.append(second)
        writer.append([])
    assert read_records(path) == first + second
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert lines.count(lines[0]) == 1
    assert lines[2].startswith("1,b,b@canary,0,1000000000,,")


def test_every_status_round_trips_through_a_real_file(tmp_path):
    path = tmp_path / "records-w0.csv"
    rows = [dropped(worker=1)] + [
        record(status_code=code, response_bytes=0 if code != "OK" else 4004, done_ns=(1_100 + k) * MS)
        for k, code in enumerate(GRPC_STATUS_CODES)
    ]
    with RecordCsvWriter(path) as writer:
        writer.append(rows)
    again = read_records(path)
    assert again == rows
    assert {r.status_code for r in again} == set(STATUS_CODES)
    assert again[0].sent_ns is None and again[0].dropped


def test_a_bad_row_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "records.csv"
    with RecordCsvWriter(path) as writer:
        writer.append([record(), record(worker=1)])
    good = path.read_text()
    path.write_text(good + ",".join(record().to_row().values()).replace(",OK,", ",TIMEOUT,") + "\n")
    with pytest.raises(RunFileError, match=f"{path}:4: status_code must be a gRPC code name or DROPPED, got 'TIMEOUT'"):
        read_records(path)
    path.write_text(",".join(CSV_COLUMNS) + "\r\n1,m,m,0\r\n")
    with pytest.raises(RunFileError, match=f"{path}:2: "):
        read_records(path)
    with pytest.raises(RunFileError, match="cannot read"):
        read_records(tmp_path / "missing.csv")


def test_reading_several_worker_files_concatenates_them(tmp_path):
    per_worker = {w: [record(worker=w, done_ns=(1_010 + w) * MS)] for w in range(3)}
    paths = []
    for w, recs in per_worker.items():
        paths.append(tmp_path / f"records-{w}.csv")
        with RecordCsvWriter(paths[-1]) as writer:
            writer.append(recs)
    assert read_records(*paths) == [r for recs in per_worker.values() for r in recs]


def test_a_last_line_cut_short_by_a_crash_is_ignored(tmp_path):
    path = tmp_path / "records.csv"
    with RecordCsvWriter(path) as writer:
        writer.append([record(), record(worker=1)])
    text = path.read_text()
    path.write_text(text[:-7])
    assert read_records(path) == [record()]


def test_appending_after_a_partial_row_is_refused(tmp_path):
    path = tmp_path / "records.csv"
    with RecordCsvWriter(path) as writer:
        writer.append([record(), record(worker=1)])
    path.write_text(path.read_text()[:-7])
    with pytest.raises(ValueError, match="ends in a partial row"):
        RecordCsvWriter(path)


def test_appending_to_a_file_of_another_schema_is_refused(tmp_path):
    path = tmp_path / "records.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="refusing to append"):
        RecordCsvWriter(path)
    assert path.read_text() == "a,b,c\n1,2,3\n"


def test_rows_of_an_unknown_schema_version_are_refused(tmp_path):
    path = tmp_path / "records.csv"
    with RecordCsvWriter(path) as writer:
        writer.append([record()])
    path.write_text(path.read_text().replace("\n1,", "\n2,"))
    with pytest.raises(ValueError, match="schema_version '2'"):
        read_records(path)
