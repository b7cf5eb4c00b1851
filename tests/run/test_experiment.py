"""The experiment's steps as its settings ask for them (pure), and the settings it refuses."""

import pytest

from conftest import exactly
from tfs_bench.errors import ConfigError
from tfs_bench.plan.placement import Threads
from tfs_bench.run.experiment import Deployment
from tfs_bench.run.experiment import FrameworkSweeps
from tfs_bench.run.experiment import RunSpec
from tfs_bench.run.experiment import exported_names
from tfs_bench.run.experiment import plan_steps

QUICK = RunSpec(
    name="quick",
    models=("tiny_cnn", "mobilenet_v2_small"),
    concurrency=(1, 2),
    perseus_fractions=(0.5,),
    framework=FrameworkSweeps("tiny_cnn", threads=((1, 1),), batching=True, uint8=True),
)


def test_the_steps_of_the_quick_experiment_in_order():
    ids = [s.id for s in plan_steps(QUICK, ("cpu",))]
    assert ids == [
        "cpu/dedicated/tiny_cnn/closed",
        "cpu/dedicated/tiny_cnn/peak",
        "cpu/dedicated/mobilenet_v2_small/closed",
        "cpu/dedicated/mobilenet_v2_small/peak",
        "cpu/raw/tiny_cnn",
        "cpu/raw/mobilenet_v2_small",
        "cpu/multi_model/perseus/tiny_cnn-at-0.5/mobilenet_v2_small",
        "cpu/multi_model/perseus/mobilenet_v2_small-at-0.5/tiny_cnn",
        "cpu/multi_model/balanced",
        "cpu/multi_process/perseus/tiny_cnn-at-0.5/mobilenet_v2_small",
        "cpu/multi_process/perseus/mobilenet_v2_small-at-0.5/tiny_cnn",
        "cpu/multi_process/balanced",
        "cpu/reference/tiny_cnn/alone",
        "cpu/reference/mobilenet_v2_small/alone",
        "cpu/framework/tiny_cnn/server-default/closed",
        "cpu/framework/tiny_cnn/threads-1x1/closed",
        "cpu/framework/tiny_cnn/batching/closed",
        "cpu/framework/tiny_cnn/uint8/closed",
    ]


def test_each_step_needs_the_steps_that_give_its_rates():
    steps = {s.id: s for s in plan_steps(QUICK, ("cpu",))}
    assert steps["cpu/dedicated/tiny_cnn/peak"].needs == ("cpu/dedicated/tiny_cnn/closed",)
    perseus = steps["cpu/multi_model/perseus/tiny_cnn-at-0.5/mobilenet_v2_small"]
    assert (perseus.fixed_model, perseus.model, perseus.fraction) == ("tiny_cnn", "mobilenet_v2_small", 0.5)
    assert perseus.needs == ("cpu/dedicated/tiny_cnn/peak", "cpu/dedicated/mobilenet_v2_small/peak")
    assert steps["cpu/multi_process/balanced"].needs == (
        "cpu/dedicated/tiny_cnn/peak", "cpu/dedicated/mobilenet_v2_small/peak")
    assert steps["cpu/raw/mobilenet_v2_small"].deployment is None
    reference = steps["cpu/reference/tiny_cnn/alone"]
    assert reference.needs == ("cpu/dedicated/tiny_cnn/peak",)
    assert (reference.deployment.hosting, reference.deployment.key) == ("dedicated", "cpu/reference/tiny_cnn")
    uint8 = steps["cpu/framework/tiny_cnn/uint8/closed"].deployment
    assert (uint8.encoding, uint8.served_name("tiny_cnn")) == ("uint8", "tiny_cnn_uint8")
    assert steps["cpu/framework/tiny_cnn/threads-1x1/closed"].deployment.threads == Threads(intra_op=1, inter_op=1)
    assert steps["cpu/framework/tiny_cnn/batching/closed"].deployment.batching


def test_the_steps_of_one_deployment_are_consecutive_so_its_servers_start_once():
    deployments = [s.deployment for s in plan_steps(QUICK, ("cpu", "gpu")) if s.deployment is not None]
    runs = [d for k, d in enumerate(deployments) if k == 0 or deployments[k - 1] != d]
    assert len(runs) == len(set(runs))


def test_a_gpu_gets_every_placement_but_not_the_cpu_framework_sweeps():
    steps = plan_steps(QUICK, ("cpu", "gpu"))
    gpu = [s.id for s in steps if s.device == "gpu"]
    assert "gpu/multi_process/balanced" in gpu and "gpu/raw/tiny_cnn" in gpu
    assert not any("framework" in s for s in gpu)
    assert [s.device for s in steps] == sorted((s.device for s in steps), key=("cpu", "gpu").index)


def test_a_dedicated_only_experiment_of_one_model_without_raw_or_sweeps():
    spec = RunSpec(name="one", models=("tiny_cnn",), placements=("dedicated",), raw=False)
    assert [s.id for s in plan_steps(spec, ("cpu",))] == ["cpu/dedicated/tiny_cnn/closed", "cpu/dedicated/tiny_cnn/peak"]
    assert exported_names(spec) == ("tiny_cnn",)
    assert exported_names(QUICK) == ("tiny_cnn", "mobilenet_v2_small", "tiny_cnn_uint8")


def test_deployment_keys_name_their_directories():
    assert Deployment("cpu", "dedicated", ("m",)).key == "cpu/dedicated/m"
    assert Deployment("gpu", "multi_model", ("a", "b")).key == "gpu/multi_model"
    assert Deployment("cpu", "dedicated", ("m",), variant="batching", batching=True).key == "cpu/framework/m/batching"
    assert Deployment("cpu", "dedicated", ("m",), variant="reference").key == "cpu/reference/m"


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(name="a/b"), "--name must be letters, digits, '_', '.' or '-' (it names the run directory), got 'a/b'"),
        (dict(models=()), "--models: name at least one model"),
        (dict(models=("a", "a")), "--models lists a twice"),
        (dict(placements=("shared",)), "--placements takes dedicated, multi_model, multi_process, got ['shared']"),
        (dict(placements=("multi_model",)), "shared placements are measured against the dedicated baseline: add dedicated to --placements"),
        (dict(models=("a",)), "shared placements need at least two models in --models"),
        (dict(devices="tpu"), "--devices must be one of auto, cpu, gpu, got 'tpu'"),
        (dict(sla_ms=0), "--sla_ms must be > 0, got 0"),
        (dict(concurrency=(1, 0)), "--concurrency takes integers >= 1, got [1, 0]"),
        (dict(concurrency=(2, 2)), "--concurrency lists 2 twice"),
        (dict(perseus_fractions=(1.0,)), "--perseus_fractions must be in (0, 1), got [1.0]"),
        (dict(peak_precision=1.0), "--peak_precision must be in (0, 1), got 1.0"),
        (dict(framework=FrameworkSweeps("resnet50")), "--framework_model 'resnet50' is not one of --models"),
        (dict(server="k8s"), "--server must be one of embedded, binary, docker, external, got 'k8s'"),
        (dict(server="docker"), "--server=docker: the servers are not our child processes, so --server_nice cannot "
                                "reach them; set --server_nice=0"),
    ],
)
def test_settings_that_cannot_be_measured_are_refused_naming_the_flag(changes, message):
    fields = dict(name="x", models=("a", "b"))
    with pytest.raises(ConfigError, match=exactly(message)):
        RunSpec(**{**fields, **changes})


def test_framework_sweeps_refuse_settings_without_a_model_or_with_bad_threads():
    with pytest.raises(ConfigError, match="need a model"):
        FrameworkSweeps(None, batching=True)
    with pytest.raises(ConfigError, match="both >= 1, got 0x1"):
        FrameworkSweeps("m", threads=((0, 1),))
    with pytest.raises(ConfigError, match="list one twice"):
        FrameworkSweeps("m", threads=((1, 1), (1, 1)))
    sweeps = FrameworkSweeps("m", threads=((2, 1),), batching=True)
    assert FrameworkSweeps.from_json(sweeps.to_json()) == sweeps
