"""The load stage's run directories, their records read back, and printed lines, without a server."""

import dataclasses
import json

import pytest

from tfs_bench.errors import ConfigError
from tfs_bench.errors import RunFileError
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.run_files import RUN_FILE
from tfs_bench.load.run_files import SUMMARY_FILE
from tfs_bench.load.run_files import WINDOWS_FILE
from tfs_bench.load.run_files import ExperimentRun
from tfs_bench.load.run_files import ExperimentSummary
from tfs_bench.load.run_files import PeakSettings
from tfs_bench.load.run_files import RampSettings
from tfs_bench.load.run_files import RunManifest
from tfs_bench.load.run_files import RunSummary
from tfs_bench.load.run_files import SweepSettings
from tfs_bench.load.run_files import WindowLog
from tfs_bench.load.run_files import WorkerTotals
from tfs_bench.load.run_files import check_output_dir
from tfs_bench.load.run_files import claim_output_dir
from tfs_bench.load.run_files import manifest_differences
from tfs_bench.load.run_files import move_aside
from tfs_bench.load.run_files import reopen_for_resume
from tfs_bench.load.console import format_result
from tfs_bench.load.console import format_runs
from tfs_bench.load.console import format_window
from tfs_bench.load.run_files import read_manifest
from tfs_bench.load.run_files import read_summary
from tfs_bench.load.run_files import read_windows
from tfs_bench.load.run_files import write_json_atomic
from tfs_bench.load.run_files import write_summary
from tfs_bench.load.records import RequestRecord
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.load.search import ProbeOutcome
from tfs_bench.load.search import SearchError
from tfs_bench.load.search import peak_under_sla
from tfs_bench.load.search import perseus_ramp
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.verdict import summarize_run
from tfs_bench.load.windows import GeneratorUsage
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import summarize_window

MS = 1_000_000
S = 1_000_000_000
POLICY = WindowPolicy(window_s=1.0, stability_windows=1, max_windows=1)
CRITERIA = ValidityCriteria(min_duration_s=1.0, min_requests=10)
CONFIG = LoadConfig(TrafficMix((TenantLoad("m", "m", rate_rps=100.0),)), ("127.0.0.1:8500",), "out", policy=POLICY,
                    criteria=CRITERIA)
INVOCATION = {"argv": ["tfs_bench.load", "--rate=100"], "flagfile": "--rate=100.0"}


def manifest(label="run") -> RunManifest:
    return RunManifest(CONFIG, INVOCATION, label=label)


def test_a_new_or_empty_directory_is_claimed_and_marked(tmp_path):
    run_dir = claim_output_dir(tmp_path / "a" / "run", False, manifest())
    assert json.loads((run_dir / RUN_FILE).read_text()) == {
        "schema_version": 1, "kind": "run", "label": "run", "config": CONFIG.to_json(), "invocation": INVOCATION,
    }
    (tmp_path / "empty").mkdir()
    claim_output_dir(tmp_path / "empty", False, manifest())


def test_a_previous_run_is_refused_unless_overwrite_replaces_it_whole(tmp_path):
    run_dir = claim_output_dir(tmp_path / "run", False, manifest())
    (run_dir / "records-w0.csv").write_text("old")
    with pytest.raises(ConfigError, match="holds a previous run; pass --overwrite"):
        check_output_dir(run_dir, overwrite=False)
    claim_output_dir(run_dir, True, manifest("again"))
    assert sorted(p.name for p in run_dir.iterdir()) == [RUN_FILE]
    assert read_manifest(run_dir).label == "again"


def test_a_directory_that_is_not_a_run_is_never_deleted(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds no load run"):
        claim_output_dir(tmp_path, True, manifest())
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
    assert all(json.loads(line)["schema_version"] == 2 for line in (tmp_path / WINDOWS_FILE).read_text().splitlines())


def test_a_window_line_cut_short_by_a_crash_is_skipped_and_any_other_bad_line_is_named(tmp_path):
    _, window = _window()
    log = WindowLog(tmp_path)
    log.append(window)
    log.close()
    path = tmp_path / WINDOWS_FILE
    whole = path.read_text()
    path.write_text(whole + whole[:40])  # a second line cut short
    assert read_windows(tmp_path) == [window]
    line = json.loads(whole)
    for bad, words in ((line | {"schema_version": 1}, "unsupported window summary schema_version 1"),
                       ({k: v for k, v in line.items() if k != "schema_version"}, "unsupported window summary schema_version None"),
                       ({k: v for k, v in line.items() if k != "end_ns"}, "no field 'end_ns'"),
                       ([line], "not a JSON object but list")):
        path.write_text(whole + json.dumps(bad) + "\n")
        with pytest.raises(RunFileError, match=f"{WINDOWS_FILE}:2: {words}"):
            read_windows(tmp_path)


def _result():
    records, window = _window()
    return summarize_run(records, [window], POLICY, CRITERIA)


def _outcome(rate_rps: float) -> ProbeOutcome:
    """A server that holds the SLA up to 150 requests/s."""
    return ProbeOutcome(True, (), min(rate_rps, 150.0), 10.0 if rate_rps <= 150 else 900.0)


def test_manifests_of_runs_and_experiments_read_back_equal(tmp_path):
    for k, settings in enumerate([None, SweepSettings((1, 4), "m"), PeakSettings(50.0, 100.0, 0.05, None, None),
                                  RampSettings(50.0, 25.0, 100.0, 6, 100, "m")]):
        written = manifest() if settings is None else RunManifest(CONFIG, INVOCATION, settings=settings)
        run_dir = claim_output_dir(tmp_path / str(k), False, written)
        assert read_manifest(run_dir) == written
        assert read_manifest(run_dir).kind == ("run" if settings is None else settings.KIND)


def test_a_run_summary_reads_back_equal_with_todays_fields(tmp_path):
    summary = RunSummary("open-100rps", "2024-05-01T10:00:00+00:00", "2024-05-01T10:00:09+00:00", 1_000, 2_000,
                         "stable", (WorkerTotals(0, "records-w0.csv", 91, 0.25, "realtime"),), _result())
    write_summary(tmp_path, summary)
    assert read_summary(tmp_path) == summary
    on_disk = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert list(on_disk) == ["schema_version", "kind", "label", "started_at", "finished_at", "start_ns",
                             "warmup_end_ns", "stop_reason", "workers", "result"]
    assert on_disk["workers"] == [
        {"worker": 0, "records_file": "records-w0.csv", "rows": 91, "cpu_s": 0.25, "priority": "realtime"}
    ]


def test_ray_workers_keep_their_node_clock_and_loss_in_the_summary(tmp_path):
    workers = (
        WorkerTotals(0, "records-w0.csv", 91, 0.25, "realtime", node="n1 (1a2b)", clock=(-1_500, 300)),
        WorkerTotals(1, "records-w1.csv", 40, 0.5, "normal", node="n2 (3c4d)", clock=(2_000, 0),
                     lost="its Ray actor on node n2 is gone"),
    )
    summary = RunSummary("open-100rps", "t0", "t1", 1_000, 2_000, "stable", workers, _result())
    write_summary(tmp_path, summary)
    assert read_summary(tmp_path) == summary
    on_disk = json.loads((tmp_path / SUMMARY_FILE).read_text())["workers"]
    assert on_disk[0] == {"worker": 0, "records_file": "records-w0.csv", "rows": 91, "cpu_s": 0.25,
                          "priority": "realtime", "node": "n1 (1a2b)", "clock_offset_ns": -1_500,
                          "clock_uncertainty_ns": 300}
    assert on_disk[1]["lost"] == "its Ray actor on node n2 is gone" and on_disk[1]["clock_uncertainty_ns"] == 0


@pytest.mark.parametrize("clock", [(5, -1), (5,), (1, 2, 3)])
def test_a_worker_clock_needs_an_offset_and_an_uncertainty_of_at_least_zero(clock):
    with pytest.raises(ValueError, match=r"^a worker's clock is \(offset_ns, uncertainty_ns >= 0\), got "):
        WorkerTotals(0, "records-w0.csv", 1, 0.0, clock=clock)


def test_experiment_summaries_read_back_equal_while_running_and_finished(tmp_path):
    result = _result()
    sweep_runs = (ExperimentRun("concurrency-1", "concurrency-1", result, concurrency=1),)
    peak = peak_under_sla(_outcome, 50.0, 100.0)
    probes = tuple(ExperimentRun(f"probe-{k:02d}", f"probe-{k:02d}", result, rate_rps=p.rate_rps)
                   for k, p in enumerate(peak.probes))
    ramp = perseus_ramp(_outcome, 50.0, 50.0, 100.0, patience=2)
    with pytest.raises(SearchError) as failed:
        peak_under_sla(_outcome, 200.0, 100.0)
    summaries = [
        ExperimentSummary(SweepSettings((1, 2)), "2024-05-01T10:00:00+00:00", sweep_runs),
        ExperimentSummary(SweepSettings((1,)), "2024-05-01T10:00:00+00:00", sweep_runs, "2024-05-01T10:01:00+00:00"),
        ExperimentSummary(PeakSettings(50.0, 100.0, 0.05), "t0", probes, "t1", peak=peak),
        ExperimentSummary(PeakSettings(200.0, 100.0, 0.05), "t0", probes[:1], "t1", error=str(failed.value),
                          probes=failed.value.probes),
        ExperimentSummary(RampSettings(50.0, 50.0, 100.0, 2, 100), "t0", probes, "t1", ramp=ramp),
    ]
    for k, summary in enumerate(summaries):
        (tmp_path / str(k)).mkdir()
        write_summary(tmp_path / str(k), summary)
        assert read_summary(tmp_path / str(k)) == summary
    keys = [list(json.loads((tmp_path / str(k) / SUMMARY_FILE).read_text())) for k in range(len(summaries))]
    common = ["schema_version", "kind", "settings", "started_at", "runs"]
    assert keys == [common, common + ["finished_at"], common + ["peak", "finished_at"],
                    common + ["error", "probes", "finished_at"], common + ["ramp", "finished_at"]]
    run = json.loads((tmp_path / "2" / SUMMARY_FILE).read_text())["runs"][0]
    assert list(run) == ["label", "dir", "rate_rps", "attempt", "result"]


def test_repeated_attempts_read_back_and_the_last_attempt_of_each_measurement_is_the_one_used(tmp_path):
    first, again, other = _result(), _result(), _result()
    runs = (
        ExperimentRun("concurrency-1", "concurrency-1", first, concurrency=1),
        ExperimentRun("concurrency-1-retry1", "concurrency-1-retry1", again, concurrency=1, attempt=2),
        ExperimentRun("concurrency-2", "concurrency-2", other, concurrency=2),
    )
    summary = ExperimentSummary(SweepSettings((1, 2)), "t0", runs, "t1")
    write_summary(tmp_path, summary)
    assert read_summary(tmp_path) == summary
    assert [r.label for r in summary.measurements] == ["concurrency-1-retry1", "concurrency-2"]
    assert [r["attempt"] for r in json.loads((tmp_path / SUMMARY_FILE).read_text())["runs"]] == [1, 2, 1]


def test_an_attempt_that_does_not_follow_the_one_before_it_is_refused():
    result = _result()
    with pytest.raises(ValueError, match="attempt 2 but does not follow attempt 1"):
        ExperimentSummary(SweepSettings((1,)), "t0", (ExperimentRun("c-retry1", "c-retry1", result, concurrency=1, attempt=2),))
    twice = (ExperimentRun("c", "c", result, concurrency=1), ExperimentRun("c-retry2", "c-retry2", result, concurrency=1, attempt=3))
    with pytest.raises(ValueError, match="attempt 3 but does not follow attempt 2"):
        ExperimentSummary(SweepSettings((1,)), "t0", twice)
    for attempt in (0, True, 1.0):
        with pytest.raises(ValueError, match="attempt must be an integer >= 1"):
            ExperimentRun("c", "c", result, concurrency=1, attempt=attempt)


def test_an_inconsistent_experiment_summary_is_refused():
    peak = peak_under_sla(_outcome, 50.0, 100.0)
    settings = PeakSettings(50.0, 100.0, 0.05)
    with pytest.raises(ValueError, match="at most one outcome"):
        ExperimentSummary(settings, "t0", (), "t1", error="no", peak=peak)
    with pytest.raises(ValueError, match="with its peak has finished_at"):
        ExperimentSummary(settings, "t0", (), peak=peak)
    with pytest.raises(ValueError, match="only with the error"):
        ExperimentSummary(settings, "t0", (), "t1", probes=peak.probes)
    with pytest.raises(ValueError, match="a sweep has no peak"):
        ExperimentSummary(SweepSettings((1,)), "t0", (), "t1", peak=peak)
    with pytest.raises(ValueError, match="named by concurrency"):
        ExperimentSummary(SweepSettings((1,)), "t0", (ExperimentRun("p", "p", _result(), rate_rps=5.0),))
    with pytest.raises(ConfigError, match="distinct and >= 1"):
        SweepSettings((2, 2))


def test_reading_a_summary_or_manifest_that_is_missing_or_of_another_version_names_the_file(tmp_path):
    with pytest.raises(RunFileError, match=f"cannot read .*{SUMMARY_FILE}"):
        read_summary(tmp_path)
    write_json_atomic(tmp_path / SUMMARY_FILE, {"schema_version": 2, "kind": "run"})
    with pytest.raises(RunFileError, match=f"{SUMMARY_FILE}: unsupported summary schema_version 2"):
        read_summary(tmp_path)
    claim_output_dir(tmp_path / "run", False, manifest())
    text = (tmp_path / "run" / RUN_FILE).read_text()
    (tmp_path / "run" / RUN_FILE).write_text(text.replace('"workers": 1', '"workers": 0'))
    with pytest.raises(RunFileError, match=f"{RUN_FILE}: workers must be in 1..64, got 0"):
        read_manifest(tmp_path / "run")


def test_progress_and_summary_lines_show_rates_latencies_and_the_verdict():
    records, window = _window(client_bound_cpu_s=0.95)
    line = format_window("open-100rps", window, 95.0)
    assert line.startswith("[open-100rps] window 0")
    for words in ("90.0 rps", "offered 100.0 achieved 90.0 rps", "p95 2.00 ms", "dropped 1", "generator cpu 95.0%",
                  "CLIENT-SATURATED"):
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


def test_resume_reopens_a_run_started_with_the_same_settings_and_names_each_difference(tmp_path):
    with pytest.raises(ConfigError, match=f"--resume: {tmp_path / 'run'} holds no load run to continue"):
        reopen_for_resume(tmp_path / "run", manifest())
    run_dir = claim_output_dir(tmp_path / "run", False, manifest())
    # Where and how it is written, and the command line, are not what it measures.
    elsewhere = RunManifest(dataclasses.replace(CONFIG, output_dir="other", overwrite=True), {"argv": []}, label="run")
    assert manifest_differences(manifest(), elsewhere) == []
    assert reopen_for_resume(run_dir, elsewhere) == (run_dir, None)
    faster = RunManifest(dataclasses.replace(CONFIG, workers=2, seed=7), INVOCATION, label="run")
    assert manifest_differences(manifest(), faster) == ["config.seed: was 0, now 7", "config.workers: was 1, now 2"]
    with pytest.raises(ConfigError, match=r"^--resume continues a run with the settings it started with; these "
                                          r"differ: config.seed: was 0, now 7; config.workers: was 1, now 2$"):
        reopen_for_resume(run_dir, faster)
    assert manifest_differences(manifest(), manifest("other")) == ["label: was 'run', now 'other'"]
    (run_dir / RUN_FILE).write_text("{oops")
    with pytest.raises(ConfigError, match=f"^--resume: {run_dir / RUN_FILE}: "):
        reopen_for_resume(run_dir, manifest())
    assert move_aside(run_dir) == tmp_path / "run.interrupted-1" and not run_dir.exists()
    run_dir.mkdir()
    assert move_aside(run_dir) == tmp_path / "run.interrupted-2"
