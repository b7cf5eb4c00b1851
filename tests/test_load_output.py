"""The load stage's run directories and printed lines, without a server."""

import json

import pytest

from tfs_bench.errors import ConfigError
from tfs_bench.load.run_files import RUN_FILE
from tfs_bench.load.run_files import WindowLog
from tfs_bench.load.run_files import check_output_dir
from tfs_bench.load.run_files import claim_output_dir
from tfs_bench.load.run_files import format_result
from tfs_bench.load.run_files import format_runs
from tfs_bench.load.run_files import format_window
from tfs_bench.load.run_files import read_windows
from tfs_bench.load.run_files import write_json_atomic
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.verdict import summarize_run
from tfs_bench.load.windows import GeneratorUsage
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import summarize_window

MS = 1_000_000
S = 1_000_000_000
POLICY = WindowPolicy(window_s=1.0, stability_windows=1, max_windows=1)


def test_a_new_or_empty_directory_is_claimed_and_marked(tmp_path):
    run_dir = claim_output_dir(tmp_path / "a" / "run", False, {"kind": "run"})
    assert json.loads((run_dir / RUN_FILE).read_text()) == {"schema_version": 1, "kind": "run"}
    (tmp_path / "empty").mkdir()
    claim_output_dir(tmp_path / "empty", False, {"kind": "run"})


def test_a_previous_run_is_refused_unless_overwrite_replaces_it_whole(tmp_path):
    run_dir = claim_output_dir(tmp_path / "run", False, {"kind": "run"})
    (run_dir / "records-w0.csv").write_text("old")
    with pytest.raises(ConfigError, match="holds a previous run; pass --overwrite"):
        check_output_dir(run_dir, overwrite=False)
    claim_output_dir(run_dir, True, {"kind": "run", "again": True})
    assert sorted(p.name for p in run_dir.iterdir()) == [RUN_FILE]


def test_a_directory_that_is_not_a_run_is_never_deleted(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds no load run"):
        claim_output_dir(tmp_path, True, {"kind": "run"})
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="not a directory"):
        check_output_dir(tmp_path / "precious.txt", True)


def test_atomic_json_leaves_no_temporary_file(tmp_path):
    write_json_atomic(tmp_path / "summary.json", {"a": 1})
    write_json_atomic(tmp_path / "summary.json", {"a": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    assert json.loads((tmp_path / "summary.json").read_text()) == {"a": 2}


def _window(client_bound_cpu_s=0.1):
    records = [RequestRecord("m", "m", k * 10 * MS, k * 10 * MS, k * 10 * MS + 2 * MS, 1, "OK", 10, 0) for k in range(90)]
    records.append(RequestRecord("m", "m", 905 * MS, None, 905 * MS, 1, "DROPPED", 0, 0))
    usage = (GeneratorUsage(0, client_bound_cpu_s, 0.2),)
    return records, summarize_window(0, 0, S, records, {"m": 100.0}, POLICY, usage)


def test_windows_are_appended_one_line_each_and_read_back(tmp_path):
    _, window = _window()
    log = WindowLog(tmp_path)
    log.append(window)
    log.append(window)
    log.close()
    assert read_windows(tmp_path) == [window, window]


def test_progress_and_summary_lines_show_rates_latencies_and_the_verdict():
    records, window = _window(client_bound_cpu_s=0.95)
    line = format_window("open-100rps", window, 95.0)
    assert line.startswith("[open-100rps] window 0")
    for words in ("90.0 rps", "offered 100.0 achieved 90.0 rps", "p95 2.00 ms", "dropped 1", "generator cpu 95.0%",
                  "CLIENT-BOUND"):
        assert words in line
    result = summarize_run(records, [window], POLICY, ValidityCriteria(min_duration_s=1.0, min_requests=10))
    text = format_result("open-100rps", result, sla_ms=1.0)
    assert "open-100rps: INVALID" in text and "SLA p95 <= 1 ms: NOT met (2.00 ms)" in text
    assert "INVALID: client_saturated" in text and "INVALID: dropped" in text
    assert "m  " in text and "90.0 rps" in text


def test_a_sweep_prints_one_line_per_run():
    records, window = _window()
    result = summarize_run(records, [window], POLICY, ValidityCriteria(min_duration_s=1.0, min_requests=10))
    lines = format_runs([("concurrency-1", result), ("concurrency-2", result)]).splitlines()
    assert lines == [f"  concurrency-{n}: {result.verdict.label:7}  90.0 rps  p95 2.00 ms" for n in (1, 2)]
