"""A run directory read back: step ids, each step's runs and operating point, checked against its raw files."""

import json
import shutil

import pytest

from conftest import REPO_ROOT
from conftest import exactly
from tfs_bench.analysis.run_data import parse_flagfile
from tfs_bench.analysis.run_data import parse_step_id
from tfs_bench.analysis.run_data import read_run
from tfs_bench.errors import RunFileError
from tfs_bench.load import run_files

RUN = REPO_ROOT / "tests" / "data" / "report_run"
DATA = read_run(RUN)


def journal():
    return {r["step"]: r for r in map(json.loads, (RUN / "steps.jsonl").read_text().splitlines())}


def test_every_step_id_the_run_makes_parses_back():
    perseus = parse_step_id("gpu/multi_process/perseus/tiny_cnn-at-0.25/mobilenet_v2_small")
    assert (perseus.device, perseus.placement, perseus.kind, perseus.model, perseus.fixed_model, perseus.fraction) == (
        "gpu", "multi_process", "perseus", "mobilenet_v2_small", "tiny_cnn", 0.25)
    assert perseus.mix == "tiny_cnn at 0.25 of its peak + mobilenet_v2_small searched"
    assert parse_step_id("cpu/multi_model/balanced").mix == "balanced"
    reference = parse_step_id("cpu/reference/tiny_cnn/alone")
    assert (reference.placement, reference.kind, reference.model) == ("dedicated", "reference", "tiny_cnn")
    framework = parse_step_id("cpu/framework/tiny_cnn/threads-1x1/closed")
    assert (framework.kind, framework.variant) == ("framework", "threads-1x1")
    assert parse_step_id("cpu/raw/tiny_cnn").placement is None
    assert [s.id for s in DATA.steps()] == list(journal())


def test_a_step_id_no_run_makes_is_refused():
    with pytest.raises(RunFileError, match=exactly("step 'cpu/sideways/tiny_cnn' in the journal is not a step tfs_bench.run makes")):
        parse_step_id("cpu/sideways/tiny_cnn")


def test_flags_come_back_from_the_flagfile_with_booleans_spelt_out():
    assert parse_flagfile("# note\n--sla_ms=20\n--raw\n--noframework_uint8\n--models=a,b\n") == {
        "sla_ms": "20", "raw": "true", "framework_uint8": "false", "models": "a,b",
    }
    assert (DATA.sla_ms, DATA.sla_percentile, DATA.batch_size) == (20.0, 95.0, 1)
    assert DATA.models == ("tiny_cnn", "mobilenet_v2_small")


def test_a_peak_steps_operating_point_is_the_probe_at_the_journals_peak():
    record = journal()["cpu/dedicated/tiny_cnn/peak"]["result"]
    search = json.loads((RUN / record["search_dir"] / "summary.json").read_text())
    point = DATA.operating_point("cpu/dedicated/tiny_cnn/peak")
    assert point.rate_rps == record["peak_rps"]
    probe = next(r for r in search["runs"] if r["rate_rps"] == record["peak_rps"])
    assert point.dir == RUN / record["search_dir"] / probe["dir"]
    assert point.result.tenants["tiny_cnn"].pooled.throughput_rps == pytest.approx(record["throughput_rps"])
    assert [r.label for r in DATA.runs("cpu/dedicated/tiny_cnn/peak")] == [r["label"] for r in search["runs"]]


def test_a_sweep_steps_operating_point_is_its_best_concurrency():
    record = journal()["cpu/dedicated/tiny_cnn/closed"]["result"]
    point = DATA.operating_point("cpu/dedicated/tiny_cnn/closed")
    assert point.concurrency == record["best_concurrency"]
    assert point.result.tenants["tiny_cnn"].pooled.throughput_rps == pytest.approx(record["best_throughput_rps"])


def test_a_reference_step_holds_one_run_per_rate_and_a_failed_step_has_no_operating_point():
    summary = json.loads((RUN / journal()["cpu/reference/tiny_cnn/alone"]["dir"] / "summary.json").read_text())
    assert [r.rate_rps for r in DATA.runs("cpu/reference/tiny_cnn/alone")] == [r["rate_rps"] for r in summary["runs"]]
    failed = "cpu/multi_process/perseus/tiny_cnn-at-0.5/mobilenet_v2_small"
    assert DATA.step(failed).status == "failed"
    assert DATA.done(failed) is None and DATA.operating_point(failed) is None
    assert DATA.runs("cpu/raw/tiny_cnn") == []


def test_response_times_are_the_pooled_windows_requests_from_the_records():
    point = DATA.operating_point("cpu/multi_model/balanced")
    for tenant, result in point.result.tenants.items():
        times = point.response_times_ms(tenant)
        assert len(times) == result.pooled.response_time.count
        assert max(times) == pytest.approx(result.pooled.response_time.max_ms, abs=1e-3)
    assert point.response_times_ms("no_such_model") == []


def test_resources_of_the_pooled_windows_only():
    runs = [r for s in DATA.steps() for r in DATA.runs(s.id)]
    for run in runs:
        assert [w.window for w in run.pooled_resources()] == list(run.result.pooled_windows), run.dir
    assert any(len(r.resources()) > len(r.pooled_resources()) for r in runs)  # unpooled windows are monitored too


def test_a_directory_that_is_not_a_run_is_refused_by_name(tmp_path):
    with pytest.raises(RunFileError, match=exactly(f"--run_dir {tmp_path / 'nope'} is not a directory")):
        read_run(tmp_path / "nope")
    with pytest.raises(RunFileError, match="manifest"):
        read_run(tmp_path)


def test_a_run_stopped_part_way_reads_what_finished(tmp_path):
    copy = tmp_path / "partial"
    shutil.copytree(RUN, copy)
    lines = (copy / "steps.jsonl").read_text().splitlines()
    (copy / "steps.jsonl").write_text("\n".join(lines[:4]) + "\n")
    partial = read_run(copy)
    assert [s.id for s in partial.steps()] == list(journal())[:4]
    assert partial.operating_point("cpu/dedicated/tiny_cnn/peak") is not None


def _stop_part_way(copy, steps_kept):
    """The journal cut after `steps_kept` steps; returns the next step's record (now unfinished)."""
    lines = (copy / "steps.jsonl").read_text().splitlines()
    (copy / "steps.jsonl").write_text("\n".join(lines[:steps_kept]) + "\n")
    return json.loads(lines[steps_kept])


def test_runs_a_stop_left_without_a_summary_are_listed_with_how_they_ended(tmp_path):
    copy = tmp_path / "partial"
    shutil.copytree(RUN, copy)
    next_step = _stop_part_way(copy, 14)  # the framework steps did not finish
    assert DATA.unfinished() == [] and read_run(copy).unfinished() == []  # every load run there has its summary

    # Ctrl-C: the load run wrote failure.json in place of its summary.
    interrupted = next(p.parent for p in sorted((copy / next_step["dir"]).rglob("windows.jsonl")))
    (interrupted / "summary.json").unlink()
    kept = len(run_files.read_windows(interrupted))
    run_files.write_failure(interrupted, run_files.RunFailure(
        "x", "2026-12-04T10:00:00Z", "2026-12-04T10:00:09Z", run_files.INTERRUPTED, "interrupted", kept))
    # kill -9 of an earlier attempt, moved aside by --resume: windows only, no marker.
    aside = copy / f"{next_step['dir']}.interrupted-1" / "level"
    aside.mkdir(parents=True)
    shutil.copy(interrupted / "windows.jsonl", aside / "windows.jsonl")
    # A failed step's failure.json belongs to its journal error, and is not listed again.
    failed_dir = copy / DATA.step("cpu/multi_process/perseus/tiny_cnn-at-0.5/mobilenet_v2_small").dir
    failed_probe = next(p.parent for p in sorted(failed_dir.rglob("windows.jsonl")))
    (failed_probe / "summary.json").unlink()
    shutil.copy(interrupted / "failure.json", failed_probe / "failure.json")

    got = read_run(copy).unfinished()
    relative = str(interrupted.relative_to(copy))
    assert [(u.dir, u.ended, u.windows, u.moved_aside) for u in got] == [
        (relative, "interrupted", kept, False), (f"{next_step['dir']}.interrupted-1/level", "killed", kept, True),
    ]
    assert got[0].describe() == (
        f"{relative}: interrupted (interrupted, at 2026-12-04T10:00:09Z); {kept} window(s) kept in windows.jsonl, "
        "in none of the figures; --resume measures the step again"
    )
    assert got[1].describe().endswith("--resume measured the step again")
    assert "no failure.json: the process died without writing one" in got[1].describe()
