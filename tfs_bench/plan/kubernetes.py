"""Kubernetes manifests for a plan: per server a ConfigMap, a Deployment and a Service.

The container is the tensorflow/serving image, as in docker-run.sh: its entrypoint starts
`tensorflow_model_server --port=8500 --rest_api_port=8501 ...` and appends the container's
arguments, which are the plan's remaining flags with container paths. So that a deployment is
measured as the plan describes it, each Service listens on the plan's own gRPC and REST ports
and forwards them to 8500/8501: `tfs_bench.run --server=external
--external_targets=<server>=<service address>:<grpc port>` (the REST address is the same host on
the plan's REST port) measures it, through a port-forward or from inside the cluster.

What Kubernetes can express of a placement, and how:
- configs: models.config, monitoring.config and batching.config in a ConfigMap mounted
  read-only at /models/config; the models' directories as read-only volumes at /models/<name>
  (hostPath of the plan's base paths by default, for a single-node cluster or nodes that hold
  the exports at the same path; or sub-paths `<name>` of a PersistentVolumeClaim).
- GPU: `nvidia.com/gpu: 1` in the container's limits. multi_process servers share one GPU:
  each also gets its `--per_process_gpu_memory_fraction`, and a required pod affinity on the
  node's hostname keeps them on one node; several pods on one physical GPU further need the
  NVIDIA device plugin's GPU sharing (time-slicing or MPS), which is cluster configuration.
- CPU pinning: a pinned server asks for as many whole CPUs as its core set has, with memory
  and CPU requests equal to limits (Guaranteed QoS). The kubelet's static CPU manager policy
  then gives it that many exclusive cores; which cores, Kubernetes does not let a pod choose.
- readiness: an HTTP GET of TF Serving's model status endpoint (/v1/models/<model>) of the
  server's first model; liveness: the gRPC port accepts connections.
- Prometheus: the pod template's `prometheus.io/scrape`, `port` and `path` annotations point at
  the monitoring endpoint of monitoring.config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from tfs_bench import tfs_protos
from tfs_bench.errors import ConfigError
from tfs_bench.plan import docker_deploy
from tfs_bench.plan import placement

APP_LABEL = "tfs-bench"
GPU_RESOURCE = "nvidia.com/gpu"
CONFIG_MOUNT = "/models/config"
MODELS_MOUNT = "/models"
_MEMORY = re.compile(r"[1-9][0-9]*(Ki|Mi|Gi|Ti)")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")


@dataclasses.dataclass(frozen=True)
class KubernetesOptions:
    """How the plan's servers become objects: their namespace, where the models come from, the
    memory each server asks for, and the Services' type."""

    namespace: str = "default"
    models_claim: str | None = None  # None: hostPath volumes of the plan's base paths
    memory: str = "4Gi"
    service_type: str = "ClusterIP"

    def __post_init__(self):
        if not _DNS_LABEL.fullmatch(self.namespace) or len(self.namespace) > 63:
            raise ConfigError(f"Kubernetes namespace must be a DNS label (a-z, 0-9, '-'), got {self.namespace!r}")
        if self.models_claim is not None and (not _DNS_LABEL.fullmatch(self.models_claim) or len(self.models_claim) > 253):
            raise ConfigError(f"the models' PersistentVolumeClaim must be a DNS name, got {self.models_claim!r}")
        if not _MEMORY.fullmatch(self.memory):
            raise ConfigError(f"Kubernetes memory must be a whole quantity like 4Gi or 512Mi, got {self.memory!r}")
        if self.service_type not in _SERVICE_TYPES:
            raise ConfigError(f"Service type must be one of {', '.join(_SERVICE_TYPES)}, got {self.service_type!r}")


def object_name(name: str) -> str:
    """A DNS-1123 label for a server name: lower case, '-' for anything else, at most 63
    characters (a long name keeps a hash of itself, so two long names stay apart)."""
    label = re.sub(r"[^a-z0-9]+", "-", f"{APP_LABEL}-{name}".lower()).strip("-")
    if len(label) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        label = f"{label[:54].rstrip('-')}-{digest}"
    return label


def _labels(server: placement.ServerPlan, plan: placement.Plan) -> dict:
    return {
        "app.kubernetes.io/name": APP_LABEL,
        "app.kubernetes.io/instance": object_name(server.name),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": f"{APP_LABEL}-{plan.hosting.replace('_', '-')}",
    }


def config_map(server: placement.ServerPlan, plan: placement.Plan, configs: dict[str, str],
               options: KubernetesOptions) -> dict:
    """The server's config files (container paths) by file name."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{object_name(server.name)}-config", "namespace": options.namespace,
                     "labels": _labels(server, plan)},
        "data": dict(sorted(configs.items())),
    }


def _model_volumes(server: placement.ServerPlan, options: KubernetesOptions) -> tuple[list[dict], list[dict]]:
    volumes, mounts = [], []
    if options.models_claim is not None:
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": options.models_claim, "readOnly": True}})
        mounts += [{"name": "models", "mountPath": f"{MODELS_MOUNT}/{m.name}", "subPath": m.name, "readOnly": True}
                   for m in server.models]
        return volumes, mounts
    for i, model in enumerate(server.models):
        volumes.append({"name": f"model-{i}", "hostPath": {"path": model.base_path, "type": "Directory"}})
        mounts.append({"name": f"model-{i}", "mountPath": f"{MODELS_MOUNT}/{model.name}", "readOnly": True})
    return volumes, mounts


def _resources(server: placement.ServerPlan, plan: placement.Plan, options: KubernetesOptions) -> dict:
    requests: dict = {"memory": options.memory}
    limits: dict = {}
    if server.cpu_set is not None:
        cpus = str(len(server.cpu_set))
        requests["cpu"] = cpus
        limits.update({"cpu": cpus, "memory": options.memory})  # Guaranteed: requests == limits
    if plan.device == "gpu":
        limits[GPU_RESOURCE] = 1
    return {"requests": requests, **({"limits": limits} if limits else {})}


def deployment(server: placement.ServerPlan, plan: placement.Plan, args: list[str], image: str,
               options: KubernetesOptions) -> dict:
    labels = _labels(server, plan)
    selector = {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    volumes, mounts = _model_volumes(server, options)
    volumes.append({"name": "config", "configMap": {"name": f"{object_name(server.name)}-config"}})
    mounts.append({"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True})
    ports = [{"name": "grpc", "containerPort": docker_deploy.CONTAINER_GRPC_PORT, "protocol": "TCP"}]
    container = {
        "name": "tensorflow-serving",
        "image": image,
        "args": list(args),
        "ports": ports,
        "volumeMounts": mounts,
        "resources": _resources(server, plan, options),
        "livenessProbe": {"tcpSocket": {"port": "grpc"}, "initialDelaySeconds": 10, "periodSeconds": 10},
    }
    annotations = {}
    if server.rest_port:
        ports.append({"name": "http", "containerPort": docker_deploy.CONTAINER_REST_PORT, "protocol": "TCP"})
        container["readinessProbe"] = {
            "httpGet": {"path": f"/v1/models/{server.models[0].name}", "port": "http"},
            "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 60,
        }
        annotations = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(docker_deploy.CONTAINER_REST_PORT),
            "prometheus.io/path": tfs_protos.DEFAULT_PROMETHEUS_PATH,
        }
    else:
        container["readinessProbe"] = {"tcpSocket": {"port": "grpc"}, "periodSeconds": 5, "failureThreshold": 60}
    pod_spec: dict = {"containers": [container], "volumes": volumes}
    if plan.device == "gpu" and plan.hosting == "multi_process":
        part_of = {"app.kubernetes.io/part-of": labels["app.kubernetes.io/part-of"]}
        pod_spec["affinity"] = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": part_of}, "topologyKey": "kubernetes.io/hostname"},
        ]}}
    template_metadata: dict = {"labels": labels}
    if annotations:
        template_metadata["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": object_name(server.name), "namespace": options.namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {"metadata": template_metadata, "spec": pod_spec},
        },
    }


def service(server: placement.ServerPlan, plan: placement.Plan, options: KubernetesOptions) -> dict:
    """The plan's ports, forwarded to the container's 8500/8501."""
    labels = _labels(server, plan)
    ports = [{"name": "grpc", "port": server.grpc_port, "targetPort": "grpc", "protocol": "TCP"}]
    if server.rest_port:
        ports.append({"name": "http", "port": server.rest_port, "targetPort": "http", "protocol": "TCP"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": object_name(server.name), "namespace": options.namespace, "labels": labels},
        "spec": {
            "type": options.service_type,
            "selector": {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")},
            "ports": ports,
        },
    }


def server_objects(server: placement.ServerPlan, plan: placement.Plan, configs: dict[str, str], args: list[str],
                   image: str, options: KubernetesOptions) -> list[dict]:
    """ConfigMap, Deployment and Service of one server, in the order `kubectl apply` wants."""
    return [config_map(server, plan, configs, options), deployment(server, plan, args, image, options),
            service(server, plan, options)]


def manifest_yaml(objects: list[dict], note: str) -> str:
    """A multi-document YAML file (every scalar a JSON string, which YAML reads unchanged)."""
    header = "".join(f"# {line}\n" if line else "#\n" for line in note.splitlines())
    documents = ["\n".join(docker_deploy.yaml_block(o, indent=0)) + "\n" for o in objects]
    return header + "---\n" + "---\n".join(documents)


def note(plan: placement.Plan) -> str:
    lines = [f"TF Serving servers of a {plan.hosting} plan on {plan.device}, written by tfs_bench.plan.",
             "Apply with: kubectl apply -f <this file>   (docs/scale-out.md)"]
    if plan.device == "gpu" and plan.hosting == "multi_process" and len(plan.servers) > 1:
        lines.append("These servers share one GPU: the cluster's NVIDIA device plugin must share GPUs "
                     "(time-slicing or MPS), or each pod gets a GPU of its own.")
    if any(s.cpu_set is not None for s in plan.servers):
        lines.append("Pinned servers ask for whole CPUs with requests == limits: with the kubelet's static "
                     "CPU manager policy each gets exclusive cores (Kubernetes chooses which).")
    return "\n".join(lines)
