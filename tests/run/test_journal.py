"""steps.jsonl: what finished survives a kill, and a damaged journal is named, not guessed at."""

import json

import pytest

from tfs_bench.errors import RunFileError
from tfs_bench.run.journal import JOURNAL_FILE
from tfs_bench.run.journal import Journal
from tfs_bench.run.journal import StepRecord
from tfs_bench.run.journal import read_journal

DONE = StepRecord("cpu/dedicated/m/closed", "done", "t0", "t1", 12.5, "cpu/dedicated/m/closed", {"best_throughput_rps": 90.0})
FAILED = StepRecord("cpu/dedicated/m/peak", "failed", "t1", "t2", 3.0, "cpu/dedicated/m/peak", {}, "first probe failed")


def test_records_appended_are_read_back_by_a_new_journal(tmp_path):
    journal = Journal(tmp_path)
    journal.append(DONE)
    journal.append(FAILED)
    again = Journal(tmp_path)
    assert again.records == {DONE.step: DONE, FAILED.step: FAILED}
    assert again.finished("cpu/dedicated/m/closed").result == {"best_throughput_rps": 90.0}
    assert again.finished("cpu/raw/m") is None
    with pytest.raises(ValueError, match="already in"):
        again.append(DONE)


def test_a_last_line_cut_short_by_a_kill_is_ignored_and_any_other_bad_line_is_named(tmp_path):
    Journal(tmp_path).append(DONE)
    path = tmp_path / JOURNAL_FILE
    whole = path.read_text()
    path.write_text(whole + whole[:40])  # the process died while writing its next line
    assert read_journal(tmp_path) == [DONE]
    path.write_text(whole[:40] + "\n" + whole)
    with pytest.raises(RunFileError, match=f"{JOURNAL_FILE}:1: not a step record"):
        read_journal(tmp_path)
    path.write_text(json.dumps(DONE.to_json() | {"schema_version": 9}) + "\n" + whole)
    with pytest.raises(RunFileError, match="unsupported step record schema_version 9"):
        read_journal(tmp_path)


def test_no_journal_yet_means_nothing_finished(tmp_path):
    assert read_journal(tmp_path) == [] and Journal(tmp_path).records == {}


@pytest.mark.parametrize(
    "status, error, message",
    [("done", "oops", "a done step has no error"), ("failed", None, "a failed or skipped one has one"),
     ("paused", None, "step status must be one of")],
)
def test_a_record_says_why_exactly_when_it_did_not_finish_done(status, error, message):
    with pytest.raises(ValueError, match=message):
        StepRecord("s", status, "t0", "t1", 1.0, None, {}, error)
