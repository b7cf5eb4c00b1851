"""The plan's Kubernetes manifests: valid against the Kubernetes API's own schema (strict: no
unknown field, every type right), consistent with themselves (selectors, volumes, probes, the
config files the flags name) and with the plan (ports, GPU, memory fraction, pinning)."""

import pytest
import yaml
from kubernetes_validate import ValidationError
from kubernetes_validate import validate

from conftest import exactly
from tfs_bench import tfs_protos
from tfs_bench.errors import ConfigError
from tfs_bench.plan import kubernetes
from tfs_bench.plan import placement
from tfs_bench.plan import plan_files
from tfs_bench.plan.kubernetes import KubernetesOptions

# The oldest Kubernetes release still in its makers' support window when this was written, and the newest schema here.
KUBERNETES_VERSIONS = ("1.32", "1.37")
MODELS = ("tiny_cnn", "mobilenet_v2_small", "half_plus_two")


def plan_of(tmp_path, hosting, device, batching=False):
    entries = []
    for name in MODELS:
        (tmp_path / "models" / name / "1").mkdir(parents=True)
        entries.append(placement.ModelEntry(name, str(tmp_path / "models" / name), (1,), card=None))
    request = placement.PlanRequest(
        tuple(entries), hosting, device, cpu_cores=tuple(range(6)), gpu_memory_bytes=16 * 2**30,
        gpu_memory_fractions={name: 0.25 for name in MODELS} if device == "gpu" else {},
        batching=placement.BatchingSpec(max_batch_size=8) if batching else None,
    )
    return placement.make_plan(request)


def written(tmp_path, plan, options=KubernetesOptions()):
    image = "tensorflow/serving:latest-gpu" if plan.device == "gpu" else "tensorflow/serving:latest"
    plan_files.write_plan(plan, tmp_path / "plan", image, options)
    return list(yaml.safe_load_all((tmp_path / "plan" / plan_files.KUBERNETES_FILE).read_text()))


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def check_consistent(objects):
    """What the schema cannot see: every reference inside the objects points at something there."""
    config_maps = {o["metadata"]["name"]: o for o in by_kind(objects, "ConfigMap")}
    deployments = by_kind(objects, "Deployment")
    for deployment in deployments:
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert {m["name"] for m in container["volumeMounts"]} == set(volumes)
        port_names = {p["name"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            action = container[probe].get("httpGet") or container[probe]["tcpSocket"]
            assert action["port"] in port_names, probe
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        config = config_maps[mounts[kubernetes.CONFIG_MOUNT]["configMap"]["name"]]
        for arg in container["args"]:
            if arg.endswith(".config"):  # --model_config_file=/models/config/models.config and its kind
                path = arg.split("=", 1)[1]
                assert path.startswith(kubernetes.CONFIG_MOUNT + "/") and path.rsplit("/", 1)[1] in config["data"], arg
        served = tfs_protos.parse_text(config["data"]["models.config"], tfs_protos.ModelServerConfig)
        for entry in served.model_config_list.config:
            assert entry.base_path in mounts, entry.base_path  # every model's directory is mounted
        (service,) = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == deployment["metadata"]["name"]]
        assert service["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


@pytest.mark.parametrize("device", ["cpu", "gpu"])
@pytest.mark.parametrize("hosting", ["dedicated", "multi_model", "multi_process"])
def test_every_placement_becomes_objects_the_kubernetes_schema_accepts(tmp_path, hosting, device):
    plan = plan_of(tmp_path, hosting, device, batching=True)
    objects = written(tmp_path, plan)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Deployment", "Service"] * len(plan.servers)
    for version in KUBERNETES_VERSIONS:
        for manifest in objects:
            validate(manifest, version, strict=True)
    check_consistent(objects)
    for server, deployment, service in zip(plan.servers, by_kind(objects, "Deployment"), by_kind(objects, "Service")):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [
            ("grpc", server.grpc_port), ("http", server.rest_port)]
        assert container["args"] == plan_files.server_flags(server, _container_files(plan), ports=False)
        limits = container["resources"].get("limits", {})
        assert (limits.get("nvidia.com/gpu") == 1) == (device == "gpu")
        fraction = [a for a in container["args"] if a.startswith("--per_process_gpu_memory_fraction=")]
        assert fraction == (["--per_process_gpu_memory_fraction=0.25"] if (hosting, device) == ("multi_process", "gpu") else [])
        affinity = deployment["spec"]["template"]["spec"].get("affinity")
        assert (affinity is not None) == (hosting == "multi_process" and device == "gpu")
        requests = container["resources"]["requests"]
        if server.cpu_set is not None:
            assert requests["cpu"] == limits["cpu"] == str(len(server.cpu_set)) and requests["memory"] == limits["memory"]
        else:
            assert "cpu" not in requests and "cpu" not in limits
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "8501",
                               "prometheus.io/path": "/monitoring/prometheus/metrics"}
        readiness = container["readinessProbe"]["httpGet"]
        assert readiness == {"path": f"/v1/models/{server.models[0].name}", "port": "http"}
    per_server = [list(yaml.safe_load_all((tmp_path / "plan" / s.name / plan_files.KUBERNETES_FILE).read_text()))
                  for s in plan.servers]
    assert [o for objects_of_one in per_server for o in objects_of_one] == objects


def _container_files(plan):
    batching = f"{kubernetes.CONFIG_MOUNT}/batching.config" if plan.batching is not None else None
    return plan_files.ConfigFiles(f"{kubernetes.CONFIG_MOUNT}/models.config",
                                  f"{kubernetes.CONFIG_MOUNT}/monitoring.config", batching)


def test_models_from_a_claim_are_sub_paths_of_one_read_only_volume(tmp_path):
    plan = plan_of(tmp_path, "multi_model", "cpu")
    options = KubernetesOptions(namespace="serving", models_claim="model-store", memory="6Gi", service_type="NodePort")
    objects = written(tmp_path, plan, options)
    for manifest in objects:
        validate(manifest, KUBERNETES_VERSIONS[-1], strict=True)
        assert manifest["metadata"]["namespace"] == "serving"
    check_consistent(objects)
    (deployment,) = by_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {"name": "models", "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True}}
    models = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "models"]
    assert [(m["mountPath"], m["subPath"], m["readOnly"]) for m in models] == [(f"/models/{n}", n, True) for n in MODELS]
    assert pod["containers"][0]["resources"]["requests"] == {"memory": "6Gi"}
    assert by_kind(objects, "Service")[0]["spec"]["type"] == "NodePort"


def test_the_schema_check_refuses_what_kubernetes_would():
    # The validator the tests rely on is strict: a misspelt field and a wrong type both fail.
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}
    validate(config, KUBERNETES_VERSIONS[-1], strict=True)
    with pytest.raises(ValidationError, match="'datas' was unexpected"):
        validate({**config, "datas": {}}, KUBERNETES_VERSIONS[-1], strict=True)
    with pytest.raises(ValidationError, match="is not of type 'string'"):
        validate({**config, "data": {"a": 1}}, KUBERNETES_VERSIONS[-1], strict=True)


def test_a_server_without_rest_is_probed_on_grpc_and_not_scraped(tmp_path):
    plan = plan_of(tmp_path, "dedicated", "cpu")
    server = plan.servers[0]
    no_rest = placement.ServerPlan(server.name, server.models, server.host, server.grpc_port, 0, None, None, server.threads)
    deployment = kubernetes.deployment(no_rest, plan, ["--x=1"], "tensorflow/serving:latest", KubernetesOptions())
    service = kubernetes.service(no_rest, plan, KubernetesOptions())
    validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    validate(service, KUBERNETES_VERSIONS[-1], strict=True)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "grpc"}
    assert [p["name"] for p in container["ports"]] == ["grpc"] and [p["name"] for p in service["spec"]["ports"]] == ["grpc"]
    assert "annotations" not in deployment["spec"]["template"]["metadata"]


def test_object_names_are_dns_labels_and_long_names_stay_apart():
    assert kubernetes.object_name("tiny_cnn") == "tfs-bench-tiny-cnn"
    assert kubernetes.object_name("ResNet50.v2") == "tfs-bench-resnet50-v2"
    long_a, long_b = "m" * 80 + "_a", "m" * 80 + "_b"
    names = {kubernetes.object_name(long_a), kubernetes.object_name(long_b)}
    assert len(names) == 2 and all(len(n) <= 63 and n[-1] != "-" for n in names)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(namespace="Serving"), "Kubernetes namespace must be a DNS label (a-z, 0-9, '-'), got 'Serving'"),
        (dict(namespace="a" * 64), "Kubernetes namespace must be a DNS label"),
        (dict(models_claim="my_claim"), "the models' PersistentVolumeClaim must be a DNS name, got 'my_claim'"),
        (dict(memory="4GB"), "Kubernetes memory must be a whole quantity like 4Gi or 512Mi, got '4GB'"),
        (dict(memory="0Gi"), "Kubernetes memory must be a whole quantity"),
        (dict(service_type="Ingress"), "Service type must be one of ClusterIP, NodePort, LoadBalancer, got 'Ingress'"),
    ],
)
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(ConfigError, match=exactly(message) if message.endswith("'") else message):
        KubernetesOptions(**options)


def test_the_file_says_how_to_apply_it_and_what_sharing_a_gpu_needs(tmp_path):
    plan = plan_of(tmp_path, "multi_process", "gpu")
    written(tmp_path, plan)
    text = (tmp_path / "plan" / plan_files.KUBERNETES_FILE).read_text()
    header = text.split("---\n", 1)[0]
    assert "# Apply with: kubectl apply -f <this file>" in header
    assert "device plugin must share GPUs (time-slicing or MPS)" in header
