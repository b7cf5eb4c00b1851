"""The plan binary: every hosting x device, files parsed back with TF Serving's protos, and its refusals.

Refusals are checked in-process (tests/binary_flags.py): while parsing for the flag rules, and by
running `main` for what it checks; a subprocess runs where the process itself is under test.
"""

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from binary_flags import BinaryFlags
from conftest import REPO_ROOT
from conftest import run_env
from tfs_bench.export import modelcard
from tfs_bench.export import savedmodels
from tfs_bench import tfs_protos
from tfs_bench.plan import __main__ as plan_binary

PLAN = BinaryFlags(plan_binary)
GIB = 2**30
MODELS = ("tiny_cnn", "tiny_cnn_uint8", "half_plus_two")


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory, known_answer_dir):
    """Three exports whose cards carry a GPU footprint, as if exported on a GPU machine."""
    root = tmp_path_factory.mktemp("plan_models")
    for encoding in ("float32", "uint8"):
        result = savedmodels.export(
            savedmodels.ExportRequest("tiny_cnn", str(root), input_encoding=encoding, measure_footprint=False)
        )
        footprint = modelcard.Footprint(1.0, GIB, GIB // 4, gpu_peak_bytes=2 * GIB, device="gpu")
        modelcard.write_card(result.version_dir, dataclasses.replace(result.card, footprint=footprint))
    shutil.copytree(known_answer_dir / "half_plus_two", root / "half_plus_two")
    return root


def _plan(saved_models, out, *args):
    argv = [sys.executable, "-m", "tfs_bench.plan", f"--saved_models_dir={saved_models}", f"--output_dir={out}", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=run_env(), cwd=REPO_ROOT, timeout=120)


def _parse_file(path, message_class):
    message = message_class()
    text_format.Parse(Path(path).read_text(), message)  # strict: unknown fields fail
    return message


@pytest.mark.parametrize("device", ["cpu", "gpu"])
@pytest.mark.parametrize("hosting", ["dedicated", "multi_model", "multi_process"])
def test_every_hosting_and_device_writes_files_tf_serving_reads(saved_models, tmp_path, hosting, device):
    proc = _plan(
        saved_models, tmp_path / "plan", f"--models={','.join(MODELS)}", f"--hosting={hosting}", f"--device={device}",
        "--cpu_cores=0-5", "--gpu_memory_gib=16", "--gpu_memory_fractions=half_plus_two=0.05",
        "--enable_batching", "--max_batch_size=8", "--allowed_batch_sizes=2,4,8", "--batch_timeout_micros=500",
        "--version_policy=latest:1", "--port_base=9100",
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert (plan["hosting"], plan["device"]) == (hosting, device)
    servers = plan["servers"]
    assert len(servers) == (1 if hosting == "multi_model" else 3)
    assert sorted(m["name"] for s in servers for m in s["models"]) == sorted(MODELS)
    for index, server in enumerate(servers):
        assert (server["grpc_port"], server["rest_port"]) == (9100 + 2 * index, 9101 + 2 * index)
        files = server["files"]
        config = _parse_file(files["model_config"], model_server_config_pb2.ModelServerConfig)
        entries = config.model_config_list.config
        assert [e.name for e in entries] == [m["name"] for m in server["models"]]
        assert all(e.base_path == str(saved_models / e.name) and e.model_platform == "tensorflow" for e in entries)
        assert all(e.model_version_policy.latest.num_versions == 1 for e in entries)
        docker_config = _parse_file(Path(files["dir"]) / "docker" / "models.config", model_server_config_pb2.ModelServerConfig)
        assert [e.base_path for e in docker_config.model_config_list.config] == [f"/models/{e.name}" for e in entries]
        monitoring = _parse_file(files["monitoring_config"], tfs_protos.MonitoringConfig)
        assert monitoring.prometheus_config.enable
        assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"
        batching = _parse_file(files["batching_parameters"], tfs_protos.BatchingParameters)
        assert batching.max_batch_size.value == 8 and list(batching.allowed_batch_sizes) == [2, 4, 8]
        assert batching.batch_timeout_micros.value == 500 and not batching.HasField("num_batch_threads")

        flags = server["flags"]
        assert flags[:4] == [
            f"--port={server['grpc_port']}", f"--rest_api_port={server['rest_port']}",
            f"--model_config_file={files['model_config']}", f"--monitoring_config_file={files['monitoring_config']}",
        ]
        assert f"--batching_parameters_file={files['batching_parameters']}" in flags
        assert Path(files["flags"]).read_text().split() == flags
        _check_placement(server, hosting, device)
        _check_docker(server, device)

    compose = yaml.safe_load((tmp_path / "plan" / "docker-compose.yml").read_text())
    assert list(compose["services"]) == [s["name"] for s in servers]


def _check_placement(server, hosting, device):
    fraction = [f for f in server["flags"] if f.startswith("--per_process_gpu_memory_fraction=")]
    if hosting == "multi_process" and device == "gpu":
        expected = 0.05 if server["name"] == "half_plus_two" else 0.15  # 2 GiB * 1.2 / 16 GiB
        assert server["gpu_memory_fraction"] == expected
        assert fraction == [f"--per_process_gpu_memory_fraction={expected}"]
    else:
        assert fraction == [] and server["gpu_memory_fraction"] is None
    if hosting == "multi_process" and device == "cpu":
        assert len(server["cpu_set"]) == 2  # six cores over three servers
        assert "--tensorflow_intra_op_parallelism=2" in server["flags"]
        assert "--tensorflow_inter_op_parallelism=1" in server["flags"]
    else:
        assert server["cpu_set"] is None


def _check_docker(server, device):
    argv = server["docker"]["run_argv"]
    script = Path(server["files"]["docker_run"]).read_text().splitlines()[-1]
    assert shlex.split(script) == ["exec", *argv]
    image = "tensorflow/serving:latest-gpu" if device == "gpu" else "tensorflow/serving:latest"
    assert image in argv and ("--gpus" in argv) == (device == "gpu")
    assert f"127.0.0.1:{server['grpc_port']}:8500" in argv and f"127.0.0.1:{server['rest_port']}:8501" in argv
    for model in server["models"]:
        assert f"{model['base_path']}:/models/{model['name']}:ro" in argv
    tail = argv[argv.index(image) + 1 :]
    assert "--model_config_file=/models/config/models.config" in tail
    assert not any(flag.startswith("--port=") for flag in tail)  # the image's entrypoint sets the ports
    (service,) = yaml.safe_load(Path(server["files"]["docker_compose"]).read_text())["services"].values()
    assert service["image"] == image and service["command"] == tail
    assert ("deploy" in service) == (device == "gpu")
    if device == "gpu":
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    if server["cpu_set"]:
        assert service["cpuset"] == f"{server['cpu_set'][0]}-{server['cpu_set'][-1]}"


def test_versions_labels_and_replanning(saved_models, tmp_path):
    out = tmp_path / "plan"
    proc = _plan(saved_models, out, "--models=half_plus_two", "--version_policy=all",
                 "--version_labels=half_plus_two:stable=1,half_plus_two:canary=2")
    assert proc.returncode == 0, proc.stderr
    (entry,) = _parse_file(out / "half_plus_two" / "models.config", model_server_config_pb2.ModelServerConfig).model_config_list.config
    assert entry.model_version_policy.HasField("all")
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}
    # A second plan replaces the first whole: no stale server directories survive.
    assert _plan(saved_models, out, "--models=tiny_cnn").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["docker-compose.yml", "kubernetes.yaml", "plan.json", "tiny_cnn"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models=tiny_cnn", "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1",
          "--tensorflow_session_parallelism=1"], "not all three"),
        (["--models=tiny_cnn", "--max_batch_size=8"], "batching parameters need --enable_batching"),
        (["--models=tiny_cnn", "--hosting=shared"], "value should be one of"),
        ([], "--models is required"),
    ],
)
def test_impossible_flags_are_refused_while_parsing(args, message):
    assert message in PLAN.refusal(*args)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models=resnet51"], "no export of resnet51 in .* \\(found: half_plus_two, tiny_cnn, tiny_cnn_uint8\\)"),
        (["--models=tiny_cnn,tiny_cnn"], "duplicate model names in --models: tiny_cnn"),
        (["--models=tiny_cnn", "--enable_batching", "--max_batch_size=8", "--allowed_batch_sizes=2,4"],
         "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; expected 8"),
        (["--models=tiny_cnn", "--model_base_paths=tiny_cnn=relative/dir"], "must be absolute"),
        (["--models=tiny_cnn", "--model_base_paths=other=/x"], "--model_base_paths names models not in --models: other"),
        (["--models=tiny_cnn,half_plus_two", "--hosting=multi_process", "--cpu_cores=0"],
         "2 servers do not fit on 1 cores \\(0\\)"),
        (["--models=half_plus_two", "--hosting=multi_process", "--device=gpu"],
         "no measured GPU footprint for half_plus_two"),
        (["--models=tiny_cnn,tiny_cnn_uint8", "--hosting=multi_process", "--device=gpu", "--gpu_memory_gib=4"],
         "sum to 1.200 > 1"),
        (["--models=half_plus_two", "--version_policy=specific:3"], "has no version 3 .* \\(found 1, 2\\)"),
        (["--models=half_plus_two", "--version_policy=newest"], "version policy must be"),
        (["--models=tiny_cnn", "--docker_image_tag=bad tag"], "invalid docker image tag"),
    ],
)
def test_bad_input_is_refused_by_main_before_writing(saved_models, tmp_path, args, message):
    outcome = PLAN.run_main(f"--saved_models_dir={saved_models}", f"--output_dir={tmp_path / 'plan'}", *args)
    assert outcome.exit_code == 1
    assert outcome.stderr.startswith("error: ") and re.search(message, outcome.stderr), outcome.stderr
    assert not (tmp_path / "plan").exists()


def test_model_without_numeric_versions_is_refused(tmp_path):
    (tmp_path / "models" / "empty" / "assets").mkdir(parents=True)
    outcome = PLAN.run_main(f"--saved_models_dir={tmp_path / 'models'}", f"--output_dir={tmp_path / 'plan'}",
                            "--models=empty")
    assert outcome.exit_code == 1
    assert "has no numeric version directories" in outcome.stderr


def test_a_refusal_while_parsing_exits_1_with_the_message_and_writes_nothing(saved_models, tmp_path):
    proc = _plan(saved_models, tmp_path / "plan", "--models=tiny_cnn", "--max_batch_size=8")
    assert proc.returncode == 1
    assert "batching parameters need --enable_batching" in proc.stderr
    assert not (tmp_path / "plan").exists()


def test_refuses_to_replace_a_directory_that_is_not_a_plan(saved_models, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    proc = _plan(saved_models, tmp_path, "--models=tiny_cnn")
    assert proc.returncode == 1 and "holds no plan.json; refusing to replace it" in proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("below", ["", "sub"], ids=["the_file_itself", "a_directory_under_it"])
def test_an_output_dir_that_is_a_file_is_refused_in_one_line(saved_models, tmp_path, below):
    (tmp_path / "afile").write_text("keep me")
    out = tmp_path / "afile" / below if below else tmp_path / "afile"
    proc = _plan(saved_models, out, "--models=tiny_cnn")
    expected = (f"error: --output_dir {out} is a file, not a directory" if not below
                else f"error: --output_dir {out}: {tmp_path / 'afile'} is a file, not a directory")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == expected, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and (tmp_path / "afile").read_text() == "keep me"


def test_the_kubernetes_flags_reach_the_manifests_and_bad_ones_are_refused(saved_models, tmp_path):
    proc = _plan(saved_models, tmp_path / "plan", "--models=tiny_cnn,half_plus_two", "--hosting=multi_model",
                 "--kubernetes_namespace=bench", "--kubernetes_models_claim=model-store", "--kubernetes_memory=3Gi",
                 "--kubernetes_service_type=LoadBalancer")
    assert proc.returncode == 0, proc.stderr
    objects = list(yaml.safe_load_all((tmp_path / "plan" / "kubernetes.yaml").read_text()))
    assert {o["metadata"]["namespace"] for o in objects} == {"bench"}
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "model-store"
    assert pod["containers"][0]["resources"]["requests"] == {"memory": "3Gi"}
    assert [o["spec"]["type"] for o in objects if o["kind"] == "Service"] == ["LoadBalancer"]

    bad = _plan(saved_models, tmp_path / "bad", "--models=tiny_cnn", "--kubernetes_memory=4GB")
    assert bad.returncode == 1 and not (tmp_path / "bad").exists()
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: Kubernetes memory must be a whole quantity like 4Gi or 512Mi, got '4GB'")
