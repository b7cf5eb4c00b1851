"""Every flagfile in configs/ is read by the binary it is written for."""

import dataclasses
import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from conftest import run_env
from tfs_bench.export import modelcard
from tfs_bench.export import savedmodels

CONFIGS = REPO_ROOT / "configs"


def _run(module, *args, cwd):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=run_env(), cwd=cwd, timeout=600)


def test_every_flagfile_is_covered():
    # quickstart.flags runs end to end in tests/run/test_run_cli.py (a small variant), gpu_example.flags
    # is refused on a machine without a GPU in tests/run/test_run_flags.py, perseus.flags is planned below.
    assert sorted(p.name for p in CONFIGS.glob("*.flags")) == [
        "gpu_example.flags", "perseus.flags", "perseus_gpu_plan.flags", "quick_export.flags", "quick_plan.flags",
        "quickstart.flags"]


@pytest.mark.slow
def test_quick_start_export_and_plan(tmp_path):
    # The footprint (a fresh process per export) is tested with the export stage.
    export = _run("tfs_bench.export", f"--flagfile={CONFIGS / 'quick_export.flags'}",
                  f"--saved_models_dir={tmp_path / 'saved_models'}", "--nomeasure_footprint", cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert [line.split()[0] for line in export.stdout.splitlines()] == ["exported", "exported"]
    for hosting in ("dedicated", "multi_model", "multi_process"):
        plan = _run("tfs_bench.plan", f"--flagfile={CONFIGS / 'quick_plan.flags'}", f"--hosting={hosting}",
                    f"--output_dir=plans/{hosting}", "--cpu_cores=0-1", cwd=tmp_path)
        assert plan.returncode == 0, plan.stderr
        document = json.loads((tmp_path / "plans" / hosting / "plan.json").read_text())
        assert document["hosting"] == hosting


def test_perseus_gpu_plan_reads_fractions_from_cards(tmp_path):
    # Stand-ins for resnet50/inception_v3 exported on a GPU machine: small exports under those
    # names whose cards carry a GPU footprint. The flagfile, not the models, is under test.
    for name, gib in (("resnet50", 3.0), ("inception_v3", 4.0)):
        result = savedmodels.export(savedmodels.ExportRequest(
            "tiny_cnn", str(tmp_path / "saved_models"), export_name=name, measure_footprint=False))
        footprint = modelcard.Footprint(2.0, 2**30, 2**29, gpu_peak_bytes=int(gib * 2**30), device="gpu")
        modelcard.write_card(result.version_dir, dataclasses.replace(result.card, footprint=footprint))
    plan = _run("tfs_bench.plan", f"--flagfile={CONFIGS / 'perseus_gpu_plan.flags'}", "--gpu_memory_gib=16",
                cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    document = json.loads((tmp_path / "plans" / "perseus" / "multi_process" / "plan.json").read_text())
    assert [s["gpu_memory_fraction"] for s in document["servers"]] == [0.225, 0.3]  # 3.6/16, 4.8/16
    assert document["batching"]["allowed_batch_sizes"] == [8, 16, 32]
