"""Plans a placement and writes its TF Serving config files, flags and docker files.

  python -m tfs_bench.plan --models=tiny_cnn,mobilenet_v2_small --hosting=multi_model --device=cpu
  python -m tfs_bench.plan --flagfile=configs/quick.plan.flags

Writes `<output_dir>/plan.json` and one directory per server (see tfs_bench.plan.plan_files).
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

from tfs_bench.plan import docker_deploy
from tfs_bench.plan import gpu_info
from tfs_bench.plan import kubernetes
from tfs_bench.plan import placement
from tfs_bench.plan import plan_files
from tfs_bench import flag_rules
from tfs_bench.errors import ConfigError
from tfs_bench.errors import exits_cleanly

# The planner's request record holds the defaults; the flags show them.
_REQUEST = placement.PlanRequest.__dataclass_fields__

_MODELS = flags.DEFINE_list("models", [], "Names of exported models (directories under --saved_models_dir).")
_MODEL_BASE_PATHS = flags.DEFINE_list(
    "model_base_paths", [], "name=/absolute/path entries for models stored outside --saved_models_dir."
)
_SAVED_MODELS_DIR = flags.DEFINE_string("saved_models_dir", "saved_models", "Where exports are.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "plans/default", "Directory to write the plan into.")
_HOSTING = flags.DEFINE_enum("hosting", "dedicated", list(placement.HOSTINGS), "How models share servers.")
_DEVICE = flags.DEFINE_enum("device", "cpu", list(placement.DEVICES), "Device the servers run on.")
_VERSION_POLICY = flags.DEFINE_string("version_policy", "latest", "latest[:N], all, or specific:V[,V...].")
_VERSION_LABELS = flags.DEFINE_list("version_labels", [], "model:label=version entries.")

_ENABLE_BATCHING = flags.DEFINE_bool("enable_batching", False, "Server-side batching.")
_MAX_BATCH_SIZE = flags.DEFINE_integer("max_batch_size", None, "Batching: largest batch.", lower_bound=1)
_BATCH_TIMEOUT = flags.DEFINE_integer(
    "batch_timeout_micros", None, "Batching: how long a batch waits to fill.", lower_bound=0
)
_MAX_ENQUEUED = flags.DEFINE_integer(
    "max_enqueued_batches", None, "Batching: queue bound per model.", lower_bound=1
)
_BATCH_THREADS = flags.DEFINE_integer("num_batch_threads", None, "Batching: threads running batches.", lower_bound=1)
_ALLOWED_SIZES = flags.DEFINE_list("allowed_batch_sizes", [], "Batching: sizes batches are padded to.")
_PAD = flags.DEFINE_bool("pad_variable_length_inputs", False, "Batching: pad variable-length inputs.")

_INTRA = flags.DEFINE_integer("tensorflow_intra_op_parallelism", 0, "Intra-op threads (0: TF decides).", lower_bound=0)
_INTER = flags.DEFINE_integer("tensorflow_inter_op_parallelism", 0, "Inter-op threads (0: TF decides).", lower_bound=0)
_SESSION = flags.DEFINE_integer(
    "tensorflow_session_parallelism", 0, "Sets intra and inter together (0: unset).", lower_bound=0
)

_GPU_HEADROOM = flags.DEFINE_float(
    "gpu_memory_headroom", _REQUEST["gpu_memory_headroom"].default,
    "Extra GPU memory over a model's measured footprint, as a ratio.", lower_bound=0.0,
)
_GPU_FRACTIONS = flags.DEFINE_list(
    "gpu_memory_fractions", [], "model=fraction entries overriding the footprint-based fractions."
)
_GPU_MEMORY_GIB = flags.DEFINE_float(
    "gpu_memory_gib", None, "One GPU's memory; read from NVML when unset.", lower_bound=0.0
)
_CPU_CORES = flags.DEFINE_string("cpu_cores", None, "Cores the servers may use, e.g. 0-7 (default: all usable).")
_HOST = flags.DEFINE_string("host", _REQUEST["host"].default, "Address the servers listen on and clients dial.")
_PORT_BASE = flags.DEFINE_integer(
    "port_base", _REQUEST["port_base"].default, "Server i gets gRPC port base+2i and REST port base+2i+1.",
    lower_bound=1, upper_bound=65534,
)
_DOCKER_TAG = flags.DEFINE_string("docker_image_tag", "latest", "tensorflow/serving image tag.")
_K8S_DEFAULTS = kubernetes.KubernetesOptions()
_K8S_NAMESPACE = flags.DEFINE_string("kubernetes_namespace", _K8S_DEFAULTS.namespace, "kubernetes.yaml: the namespace.")
_K8S_CLAIM = flags.DEFINE_string(
    "kubernetes_models_claim", None,
    "kubernetes.yaml: a PersistentVolumeClaim holding each model under <name>/ (default: hostPath volumes of the "
    "plan's base paths).",
)
_K8S_MEMORY = flags.DEFINE_string("kubernetes_memory", _K8S_DEFAULTS.memory, "kubernetes.yaml: memory per server.")
_K8S_SERVICE_TYPE = flags.DEFINE_enum(
    "kubernetes_service_type", _K8S_DEFAULTS.service_type, ["ClusterIP", "NodePort", "LoadBalancer"],
    "kubernetes.yaml: the type of each server's Service.",
)

_BATCHING_FLAGS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")


@flag_rules.rule("enable_batching", *_BATCHING_FLAGS, "allowed_batch_sizes", "pad_variable_length_inputs")
def _check_batching(enabled, *given):
    *numbers, sizes, pad = given
    if not enabled and (any(n is not None for n in numbers) or sizes or pad):
        return "batching parameters need --enable_batching (as in tensorflow_model_server)"
    return None


flag_rules.rule("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism", "tensorflow_session_parallelism")(
    placement.Threads
)


@flag_rules.rule("models")
def _check_models(models):
    return None if models else "--models is required"


def _pairs(entries: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"bad {what} entry {entry!r}: expected name=value")
        if key in pairs:
            raise ConfigError(f"{what} for {key!r} is given twice")
        pairs[key] = value
    return pairs


def _model_entries() -> tuple[placement.ModelEntry, ...]:
    overrides = _pairs(_MODEL_BASE_PATHS.value, "--model_base_paths")
    unknown = sorted(set(overrides) - set(_MODELS.value))
    if unknown:
        raise ConfigError(f"--model_base_paths names models not in --models: {', '.join(unknown)}")
    duplicates = sorted({n for n in _MODELS.value if _MODELS.value.count(n) > 1})
    if duplicates:
        raise ConfigError(f"duplicate model names in --models: {', '.join(duplicates)}")
    saved_models = os.path.abspath(_SAVED_MODELS_DIR.value)
    missing = [n for n in _MODELS.value if n not in overrides and not os.path.isdir(os.path.join(saved_models, n))]
    if missing:
        found = sorted(e.name for e in os.scandir(saved_models) if e.is_dir() and not e.name.startswith(".")) if os.path.isdir(saved_models) else []
        raise ConfigError(
            f"no export of {', '.join(missing)} in {saved_models} (found: {', '.join(found) or 'nothing'}); "
            f"export it with python -m tfs_bench.export --models={','.join(missing)}"
        )
    return tuple(
        placement.load_model_entry(name, overrides.get(name, os.path.join(saved_models, name)))
        for name in _MODELS.value
    )


def _batching() -> placement.BatchingSpec | None:
    if not _ENABLE_BATCHING.value:
        return None
    try:
        sizes = tuple(int(s) for s in _ALLOWED_SIZES.value)
    except ValueError:
        raise ConfigError(f"--allowed_batch_sizes must be integers, got {_ALLOWED_SIZES.value}") from None
    return placement.BatchingSpec(
        max_batch_size=_MAX_BATCH_SIZE.value,
        batch_timeout_micros=_BATCH_TIMEOUT.value,
        max_enqueued_batches=_MAX_ENQUEUED.value,
        num_batch_threads=_BATCH_THREADS.value,
        allowed_batch_sizes=sizes,
        pad_variable_length_inputs=_PAD.value,
    )


def _gpu_fractions() -> dict[str, float]:
    fractions = {}
    for model, text in _pairs(_GPU_FRACTIONS.value, "--gpu_memory_fractions").items():
        try:
            fractions[model] = float(text)
        except ValueError:
            raise ConfigError(f"GPU memory fraction of {model} must be a number, got {text!r}") from None
    return fractions


def _gpu_memory_bytes() -> int | None:
    if _GPU_MEMORY_GIB.value is not None:
        return int(_GPU_MEMORY_GIB.value * 2**30)
    if _DEVICE.value != "gpu":
        return None
    return gpu_info.total_memory_bytes()


def _cpu_cores() -> tuple[int, ...]:
    if _CPU_CORES.value is not None:
        return placement.parse_core_list(_CPU_CORES.value)
    return tuple(sorted(os.sched_getaffinity(0)))


def _request() -> placement.PlanRequest:
    return placement.PlanRequest(
        models=_model_entries(),
        hosting=_HOSTING.value,
        device=_DEVICE.value,
        version_policy=placement.VersionPolicy.parse(_VERSION_POLICY.value),
        version_labels=placement.parse_version_labels(",".join(_VERSION_LABELS.value)),
        batching=_batching(),
        threads=placement.Threads(_INTRA.value, _INTER.value, _SESSION.value),
        gpu_memory_headroom=_GPU_HEADROOM.value,
        gpu_memory_fractions=_gpu_fractions(),
        gpu_memory_bytes=_gpu_memory_bytes(),
        cpu_cores=_cpu_cores(),
        host=_HOST.value,
        port_base=_PORT_BASE.value,
    )


def _summary(plan: placement.Plan, path) -> str:
    lines = [f"{plan.hosting} on {plan.device}: {len(plan.servers)} server(s) -> {path}"]
    for server in plan.servers:
        where = []
        if server.gpu_memory_fraction is not None:
            where.append(f"GPU fraction {server.gpu_memory_fraction}")
        if server.cpu_set is not None:
            where.append(f"cores {placement.format_core_list(server.cpu_set)}")
        models = ", ".join(m.name for m in server.models)
        lines.append(
            f"  {server.name}: gRPC {server.host}:{server.grpc_port}, REST {server.rest_port}; "
            f"{models}" + (f"; {'; '.join(where)}" if where else "")
        )
    lines += [f"  note: {note}" for note in plan.notes]
    return "\n".join(lines)


@exits_cleanly
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    plan = placement.make_plan(_request())
    try:
        image = docker_deploy.image_name(_DOCKER_TAG.value, gpu=plan.device == "gpu")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    k8s = kubernetes.KubernetesOptions(_K8S_NAMESPACE.value, _K8S_CLAIM.value, _K8S_MEMORY.value, _K8S_SERVICE_TYPE.value)
    path = plan_files.write_plan(plan, _OUTPUT_DIR.value, image, k8s)
    print(_summary(plan, path))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
