"""Writes a plan as the files TF Serving reads, and `plan.json` describing every server.

For each server, `<output_dir>/<server>/` holds:
  models.config         ModelServerConfig (text) with this machine's absolute model paths
  batching.config       BatchingParameters (text), only when batching is on
  monitoring.config     MonitoringConfig (text) enabling Prometheus on the REST port
  flags.txt             the tensorflow_model_server flags, one per line
  docker/               the same configs with container paths (/models/<model>), mounted
                        read-only at /models/config
  docker-run.sh         the equivalent `docker run` of the tensorflow/serving image
  docker-compose.yml    the same as a compose service
  kubernetes.yaml       the same as Kubernetes objects: ConfigMap, Deployment, Service
                        (tfs_bench.plan.kubernetes says what each placement becomes)
and `<output_dir>/docker-compose.yml` holds every server as one compose project,
`<output_dir>/kubernetes.yaml` every server's objects as one file for `kubectl apply -f`. `plan.json` is a
`tfs_bench.plan.plan_record.PlanRecord`; read it back with `plan_record.read_plan`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path

from tfs_bench import flag_rules
from tfs_bench import tfs_protos
from tfs_bench.errors import ConfigError
from tfs_bench.plan import docker_deploy
from tfs_bench.plan import kubernetes
from tfs_bench.plan import placement
from tfs_bench.plan.plan_record import PLAN_FILE
from tfs_bench.plan.plan_record import DockerSpec
from tfs_bench.plan.plan_record import PlannedServer
from tfs_bench.plan.plan_record import PlanRecord
from tfs_bench.plan.plan_record import ServerFiles
from tfs_bench.version_policy import VersionPolicy

CONTAINER_MODELS_ROOT = kubernetes.MODELS_MOUNT
CONTAINER_CONFIG_DIR = kubernetes.CONFIG_MOUNT
KUBERNETES_FILE = "kubernetes.yaml"


@dataclasses.dataclass(frozen=True)
class ConfigFiles:
    """Where one server's config files are, as the server will see them."""

    model_config: str
    monitoring_config: str
    batching_parameters: str | None


def model_server_config(models, policy: VersionPolicy, base_path_of=None):
    """A ModelServerConfig listing `models`; `base_path_of(model)` maps paths (e.g. to a container)."""
    config = tfs_protos.ModelServerConfig()
    for model in models:
        entry = config.model_config_list.config.add()
        entry.name = model.name
        entry.base_path = base_path_of(model) if base_path_of else model.base_path
        entry.model_platform = "tensorflow"
        policy.fill_proto(entry.model_version_policy)
        for label, version in sorted(model.labels.items()):
            entry.version_labels[label] = version
    return config


def batching_parameters(spec: placement.BatchingSpec):
    params = tfs_protos.BatchingParameters()
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        value = getattr(spec, name)
        if value is not None:
            getattr(params, name).value = value
    params.allowed_batch_sizes.extend(spec.allowed_batch_sizes)
    params.pad_variable_length_inputs = spec.pad_variable_length_inputs
    return params


def monitoring_config(path: str = tfs_protos.DEFAULT_PROMETHEUS_PATH):
    config = tfs_protos.MonitoringConfig()
    config.prometheus_config.enable = True
    config.prometheus_config.path = path
    return config


def server_flags(server: placement.ServerPlan, files: ConfigFiles, ports: bool = True) -> list[str]:
    """tensorflow_model_server flags; `ports=False` for docker, whose entrypoint sets them."""
    flags = []
    if ports:
        flags += [f"--port={server.grpc_port}", f"--rest_api_port={server.rest_port}"]
    flags += [f"--model_config_file={files.model_config}", f"--monitoring_config_file={files.monitoring_config}"]
    if files.batching_parameters:
        flags += ["--enable_batching=true", f"--batching_parameters_file={files.batching_parameters}"]
    if server.gpu_memory_fraction is not None:
        flags.append(f"--per_process_gpu_memory_fraction={server.gpu_memory_fraction}")
    return flags + server.threads.flags()


def write_plan(plan: placement.Plan, output_dir: str | os.PathLike, docker_image: str,
               k8s: kubernetes.KubernetesOptions = kubernetes.KubernetesOptions()) -> Path:
    """Writes every file of the plan; the directory is replaced whole, never left half-written."""
    output_dir = Path(output_dir).absolute()
    problem = flag_rules.directory_path_problem("output_dir", str(output_dir))
    if problem:
        raise ConfigError(problem)
    if output_dir.exists() and any(output_dir.iterdir()) and not (output_dir / PLAN_FILE).exists():
        raise ConfigError(f"{output_dir} is not empty and holds no {PLAN_FILE}; refusing to replace it")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    replaced = None
    try:
        objects: list[dict] = []
        servers = tuple(_write_server(plan, server, staging, output_dir, docker_image, k8s, objects)
                        for server in plan.servers)
        services = [s.docker.compose_service for s in servers]
        (staging / "docker-compose.yml").write_text(docker_deploy.compose_yaml(services))
        (staging / KUBERNETES_FILE).write_text(kubernetes.manifest_yaml(objects, kubernetes.note(plan)))
        record = _plan_record(plan, servers, docker_image)
        (staging / PLAN_FILE).write_text(json.dumps(record.to_json(), indent=2) + "\n")
        if output_dir.exists():
            replaced = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old-", dir=output_dir.parent))
            os.replace(output_dir, replaced / "plan")
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
    return output_dir / PLAN_FILE


def _write_server(plan, server, staging: Path, final_root: Path, docker_image: str,
                  k8s: kubernetes.KubernetesOptions, objects: list[dict]) -> PlannedServer:
    """Writes one server's files; appends its Kubernetes objects to `objects`."""
    local_dir, final_dir = staging / server.name, final_root / server.name
    local_dir.mkdir()
    (local_dir / "docker").mkdir()
    local = _write_configs(plan, server, local_dir, final_dir, base_path_of=None)
    container = _write_configs(
        plan,
        server,
        local_dir / "docker",
        Path(CONTAINER_CONFIG_DIR),
        base_path_of=lambda m: f"{CONTAINER_MODELS_ROOT}/{m.name}",
    )
    flags = server_flags(server, local)
    (local_dir / "flags.txt").write_text("\n".join(flags) + "\n")
    deployment = docker_deploy.Deployment(
        server=server,
        image=docker_image,
        gpu=plan.device == "gpu",
        flags=tuple(server_flags(server, container, ports=False)),
        mounts=tuple((m.base_path, f"{CONTAINER_MODELS_ROOT}/{m.name}") for m in server.models)
        + ((str(final_dir / "docker"), CONTAINER_CONFIG_DIR),),
    )
    run_script = local_dir / "docker-run.sh"
    run_script.write_text(docker_deploy.run_script(deployment))
    run_script.chmod(0o755)
    (local_dir / "docker-compose.yml").write_text(docker_deploy.compose_yaml([deployment.compose_service()]))
    configs = {p.name: p.read_text() for p in sorted((local_dir / "docker").iterdir())}
    server_objects = kubernetes.server_objects(server, plan, configs, list(deployment.flags), docker_image, k8s)
    (local_dir / KUBERNETES_FILE).write_text(kubernetes.manifest_yaml(server_objects, kubernetes.note(plan)))
    objects += server_objects
    files = ServerFiles(
        dir=str(final_dir),
        model_config=local.model_config,
        monitoring_config=local.monitoring_config,
        batching_parameters=local.batching_parameters,
        flags=str(final_dir / "flags.txt"),
        docker_run=str(final_dir / "docker-run.sh"),
        docker_compose=str(final_dir / "docker-compose.yml"),
    )
    docker = DockerSpec(docker_image, tuple(deployment.run_argv()), deployment.compose_service())
    return PlannedServer.of(server, flags=flags, files=files, docker=docker)


def _write_configs(plan, server, write_dir: Path, seen_dir: Path, base_path_of) -> ConfigFiles:
    """Writes the text protos into `write_dir`; returns their paths as the server sees them."""
    config = model_server_config(server.models, plan.version_policy, base_path_of)
    (write_dir / "models.config").write_text(tfs_protos.to_text(config))
    (write_dir / "monitoring.config").write_text(tfs_protos.to_text(monitoring_config()))
    batching = None
    if plan.batching is not None:
        (write_dir / "batching.config").write_text(tfs_protos.to_text(batching_parameters(plan.batching)))
        batching = str(seen_dir / "batching.config")
    return ConfigFiles(
        model_config=str(seen_dir / "models.config"),
        monitoring_config=str(seen_dir / "monitoring.config"),
        batching_parameters=batching,
    )


def _plan_record(plan: placement.Plan, servers: tuple[PlannedServer, ...], docker_image: str) -> PlanRecord:
    return PlanRecord(
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        hosting=plan.hosting,
        device=plan.device,
        version_policy=plan.version_policy,
        batching=plan.batching,
        prometheus_path=tfs_protos.DEFAULT_PROMETHEUS_PATH,
        docker_image=docker_image,
        notes=plan.notes,
        servers=servers,
    )
