"""The run binary's refusals, parsed and run in this process (tests/binary_flags.py)."""

import subprocess
import sys

import pytest
from absl import app

from binary_flags import BinaryFlags
from conftest import REPO_ROOT
from conftest import run_env
from tfs_bench.run import __main__ as run_binary

RUN = BinaryFlags(run_binary)
CONFIGS = REPO_ROOT / "configs"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models="], "--models is required: the models to serve"),
        (["--models=a,b", "--sla_percentile=97"], "--sla_percentile must be one of"),
        (["--models=a,b", "--server_nice=20"], "--server_nice=20: 20 is not an integer in the range [0, 19]"),
        (["--models=a,b", "--devices=tpu"], "--devices=tpu: value should be one of <auto|cpu|gpu>"),
    ],
)
def test_flags_out_of_range_are_refused_while_parsing(args, message):
    assert message in RUN.refusal(*args)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models=a,b", "--concurrency=1,x"], "error: --concurrency takes integers, got 1,x"),
        (["--models=a,b", "--perseus_fractions=half"], "error: --perseus_fractions takes numbers, got half"),
        (["--models=a,b", "--framework_model=a", "--framework_threads=2"],
         "error: --framework_threads takes INTRAxINTER items, e.g. 2x1, got '2'"),
        (["--models=a,b", "--external_targets=nohost"], "error: --external_targets takes name=host:port items"),
        (["--models=a", "--placements=dedicated,multi_model"], "error: shared placements need at least two models"),
        (["--models=a,b", "--server=docker"], "error: --server=docker: the servers are not our child processes"),
        (["--models=a,b", "--demand=a=10,c=5"], "error: --demand names c, not in --models (a, b)"),
        (["--models=a,b", "--demand=a"], "error: --demand takes MODEL=INFERENCES_PER_S items"),
        (["--models=a,b", "--instances=AWS"], "error: --instances takes PROVIDER:INSTANCE[:REGION] items"),
        (["--models=a,b", "--instances=AWS:nosuch.box"], "error: --instances: AWS:nosuch.box is not in the price table"),
        (["--models=a,b", "--prices=/nonexistent/prices.csv"], "/nonexistent/prices.csv"),
    ],
)
def test_settings_that_cannot_be_measured_are_refused_before_anything_runs(args, message, tmp_path):
    outcome = RUN.run_main(*args, f"--runs_dir={tmp_path}")
    assert outcome.exit_code == 1 and message in outcome.stderr, outcome.stderr
    assert not any(tmp_path.iterdir())


def test_resuming_with_nothing_to_resume_says_so(tmp_path):
    outcome = RUN.run_main("--models=a,b", f"--runs_dir={tmp_path}", "--resume")
    assert outcome.exit_code == 1
    assert f"error: --resume: no unfinished run of 'experiment' under {tmp_path} (give one with --run_dir)" in outcome.stderr
    outcome = RUN.run_main("--models=a,b", f"--run_dir={tmp_path}", "--resume")
    assert "is not an experiment's run directory (no manifest.json)" in outcome.stderr


def test_asking_for_a_gpu_on_a_machine_without_one_names_why_and_writes_nothing(tmp_path):
    outcome = RUN.run_main(f"--flagfile={CONFIGS / 'gpu_example.flags'}", f"--runs_dir={tmp_path}")
    assert outcome.exit_code == 1
    assert outcome.stderr.startswith("error: --devices=gpu: no GPU found: "), outcome.stderr
    assert not any(tmp_path.iterdir())


def test_the_flagfile_recorded_is_the_experiments_flags_without_where_it_runs():
    with RUN.parsed(f"--flagfile={CONFIGS / 'quickstart.flags'}", "--run_dir=/tmp/x", "--resume"):
        recorded = run_binary.experiment_flagfile().splitlines()
        spec = run_binary.spec_from_flags()
    assert "--name=quickstart" in recorded and "--concurrency=1,2" in recorded
    assert not any(line.startswith(("--run_dir", "--resume", "--noresume", "--flagfile")) for line in recorded)
    assert spec.models == ("tiny_cnn", "mobilenet_v2_small") and spec.policy.window_s == 1.5
    assert spec.framework.uint8 and spec.framework.threads == ((1, 1),)


def test_positional_arguments_are_refused():
    with pytest.raises(app.UsageError, match=r"unexpected arguments: \['extra'\]"):
        RUN.run_main("--models=a,b", "extra")


def test_the_perseus_flagfile_asks_for_the_papers_protocol_on_every_device_found():
    from tfs_bench.run.experiment import plan_steps

    with RUN.parsed(f"--flagfile={CONFIGS / 'perseus.flags'}"):
        spec = run_binary.spec_from_flags()
    assert (spec.models, spec.sla_ms, spec.sla_percentile) == (("resnet50", "inception_v3"), 750.0, 95.0)
    assert spec.policy.window_s == 5.0 and spec.policy.stability_windows == 3
    steps = plan_steps(spec, ("cpu", "gpu"))
    perseus = [s for s in steps if s.kind == "perseus"]
    # one tenant at 25/50/75% of its dedicated peak, the other searched; roles swapped; two placements, two devices
    assert len(perseus) == 3 * 2 * 2 * 2
    assert {(s.fixed_model, s.model, s.fraction) for s in perseus if s.device == "gpu" and "multi_process" in s.id} == {
        (a, b, f) for a, b in (("resnet50", "inception_v3"), ("inception_v3", "resnet50")) for f in (0.25, 0.5, 0.75)
    }
    assert [s.id for s in steps if s.kind == "peak"] == [
        "cpu/dedicated/resnet50/peak", "cpu/dedicated/inception_v3/peak",
        "gpu/dedicated/resnet50/peak", "gpu/dedicated/inception_v3/peak",
    ]


def test_the_run_binary_loads_no_tensorflow_until_a_child_needs_it():
    # Its servers, exports and raw measurements run TensorFlow in child processes; the binary
    # itself starts in about a second and answers a bad flag without loading it (TF Serving's
    # config protos, which it writes, do not import TensorFlow).
    probe = ("import sys, tfs_bench.run.__main__; "
             "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=run_env(), cwd=REPO_ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
