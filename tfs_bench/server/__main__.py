"""tfs-bench-server: a TF-Serving-compatible model server on TensorFlow, in Python.

Accepts `tensorflow_model_server`'s flags (`--name=value`), config files and gRPC/REST APIs:

    python -m tfs_bench.server --port=8500 --rest_api_port=8501 \
        --model_name=half_plus_two --model_base_path=/abs/saved_models/half_plus_two

Deliberate differences from TF Serving:
- `--host` (ours; default 127.0.0.1) is the address both listeners bind. TF Serving listens on all
  interfaces; a benchmark server should not be reachable from the network unless asked
  (`--host=0.0.0.0`).
- A missing base path fails start-up at once ("Could not find base path ...") instead of being
  retried forever, and start-up fails when a model has no version and
  --file_system_poll_wait_seconds=0 (no version could ever appear).
- HandleReloadConfigRequest never hangs: a new model's base path and versions are checked before
  anything changes, and loading is bounded (120 s, or 90% of the client's deadline if sooner).
- A version that fails to load is not retried until its model is removed and re-added.
- A model config file, batching or monitoring file that does not parse fails with protobuf's
  "Error parsing text-format ...: LINE:COL: ..." and TF Serving's "Invalid protobuf file: '<path>'"
  in one message.
- The --grpc_max_threads default also leaves enough threads for batches to fill (see options).
- Failures print `Failed to start server. Error: <message>` to stderr (TF Serving: stdout) and
  exit with status 1.
"""

from __future__ import annotations

import importlib.metadata
import sys

from absl import app
from absl import flags

import tfs_bench
from tfs_bench import flag_rules
from tfs_bench.errors import TfsBenchError
from tfs_bench.server import config_files
from tfs_bench.server import json_offload
from tfs_bench.server import options as options_lib

_PORT = flags.DEFINE_integer("port", 8500, "gRPC TCP port (0 = no TCP gRPC listener).")
_GRPC_SOCKET_PATH = flags.DEFINE_string(
    "grpc_socket_path", "", "Also serve gRPC on this UNIX domain socket."
)
_GRPC_CHANNEL_ARGUMENTS = flags.DEFINE_string(
    "grpc_channel_arguments", "", "gRPC server arguments as key=value,key=value."
)
_GRPC_MAX_THREADS = flags.DEFINE_integer(
    "grpc_max_threads", 0,
    "Max gRPC handler threads (0 = 4 per core, at least 64, more when batches need them to fill).",
    lower_bound=0,
)
_REST_API_PORT = flags.DEFINE_integer("rest_api_port", 0, "HTTP/REST port (0 = off).")
_REST_API_TIMEOUT_IN_MS = flags.DEFINE_integer(
    "rest_api_timeout_in_ms", 30000, "Deadline for REST requests.", lower_bound=0
)
_REST_MAX_BODY_BYTES = flags.DEFINE_integer(
    "rest_max_body_bytes", 64 * 2**20,
    "Largest REST request body; a larger one gets 413 without being read (ours).", lower_bound=1,
)
_REST_MAX_INFLIGHT_BODY_BYTES = flags.DEFINE_integer(
    "rest_max_inflight_body_bytes", 128 * 2**20,
    "REST body bytes read and parsed at once (JSON takes 10-40x its size in memory); later bodies "
    "wait for room until their deadline, then get 503 (ours).", lower_bound=1,
)
_REST_IDLE_TIMEOUT_S = flags.DEFINE_float(
    "rest_idle_timeout_s", 30.0,
    "Close a REST connection that sends nothing for this long, idle or mid-request (ours).",
    lower_bound=0.001,
)
_REST_MAX_CONNECTIONS = flags.DEFINE_integer(
    "rest_max_connections", 512,
    "Open REST connections served at once; more get 503 and are closed (ours).", lower_bound=1,
)
_REST_JSON_WORKERS = flags.DEFINE_integer(
    "rest_json_workers", json_offload.DEFAULT_WORKERS,
    "Child processes that parse large REST bodies and encode large responses, so that parsing "
    "does not hold up other requests; 0: everything in the server process (ours).", lower_bound=0,
)
_REST_JSON_OFFLOAD_BYTES = flags.DEFINE_integer(
    "rest_json_offload_bytes", json_offload.DEFAULT_MIN_BODY_BYTES,
    "REST predict bodies at least this large are parsed in a JSON worker (ours).", lower_bound=0,
)
_MAX_TENSOR_FILL_BYTES = flags.DEFINE_integer(
    "max_tensor_fill_bytes", 64 * 2**20,
    "Bytes of a request tensor TensorFlow would fill because its values fall short of its shape; "
    "beyond this the request gets INVALID_ARGUMENT (ours).", lower_bound=0,
)
_HOST = flags.DEFINE_string(
    "host", "127.0.0.1", "Address the gRPC and REST listeners bind (ours, not TF Serving's)."
)
_MODEL_NAME = flags.DEFINE_string(
    "model_name", "default", "Model name in single-model mode (ignored with --model_config_file)."
)
_MODEL_BASE_PATH = flags.DEFINE_string(
    "model_base_path", "", "Absolute path of the model's version directories (single-model mode)."
)
_MODEL_CONFIG_FILE = flags.DEFINE_string(
    "model_config_file", "", "Text-format ModelServerConfig listing the models to serve."
)
_MODEL_CONFIG_FILE_POLL_WAIT_SECONDS = flags.DEFINE_integer(
    "model_config_file_poll_wait_seconds", 0,
    "Re-read --model_config_file every N seconds (0 = read once).", lower_bound=0,
)
_FILE_SYSTEM_POLL_WAIT_SECONDS = flags.DEFINE_integer(
    "file_system_poll_wait_seconds", 1,
    "Poll model base paths for new versions every N seconds (0 = only at start and reload).",
    lower_bound=0,
)
_ENABLE_BATCHING = flags.DEFINE_boolean("enable_batching", False, "Batch requests server-side.")
_BATCHING_PARAMETERS_FILE = flags.DEFINE_string(
    "batching_parameters_file", "", "Text-format BatchingParameters (needs --enable_batching)."
)
_MONITORING_CONFIG_FILE = flags.DEFINE_string(
    "monitoring_config_file", "", "Text-format MonitoringConfig (Prometheus on the REST port)."
)
_PER_PROCESS_GPU_MEMORY_FRACTION = flags.DEFINE_float(
    "per_process_gpu_memory_fraction", 0.0,
    "Fraction of each GPU's memory this process may use (0 = TensorFlow's default).",
    lower_bound=0.0, upper_bound=1.0,
)
_TENSORFLOW_SESSION_PARALLELISM = flags.DEFINE_integer(
    "tensorflow_session_parallelism", 0, "Sets intra- and inter-op threads together.", lower_bound=0
)
_TENSORFLOW_INTRA_OP_PARALLELISM = flags.DEFINE_integer(
    "tensorflow_intra_op_parallelism", 0, "Threads within one op (0 = TF default).", lower_bound=0
)
_TENSORFLOW_INTER_OP_PARALLELISM = flags.DEFINE_integer(
    "tensorflow_inter_op_parallelism", 0,
    "Ops run in parallel (0 = TF default; negative = each op in the calling thread, which TF Serving "
    "applies only together with --tensorflow_intra_op_parallelism > 0)."
)
_ENABLE_MODEL_WARMUP = flags.DEFINE_boolean(
    "enable_model_warmup", True, "Replay assets.extra/tf_serving_warmup_requests at load."
)
_ENABLE_SIGNATURE_METHOD_NAME_CHECK = flags.DEFINE_boolean(
    "enable_signature_method_name_check", False,
    "Classify/Regress require the signature's method_name to be tensorflow/serving/classify|regress.",
)
_VERSION = flags.DEFINE_boolean("version", False, "Print the versions and exit.")


# Cross-flag rules from options_lib; skipped under --version, like TF Serving.
flag_rules.rule(
    "tensorflow_session_parallelism", "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism",
    unless="version",
)(options_lib.check_thread_counts)
flag_rules.rule("enable_batching", "batching_parameters_file", unless="version")(options_lib.check_batching)
flag_rules.rule("port", "rest_api_port", unless="version")(options_lib.check_ports)
flag_rules.rule("model_config_file", "model_base_path", unless="version")(options_lib.check_model_source)
flag_rules.rule("grpc_channel_arguments", unless="version")(options_lib.parse_channel_arguments)


def _fail(message: str):
    print(f"Failed to start server. Error: {message}", file=sys.stderr)
    sys.exit(1)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:  # unknown flags, bad values, broken rules
        _fail("; ".join(_without_flag_values(line) for line in str(e).splitlines()))


def _without_flag_values(message: str) -> str:
    # absl prefixes a rule's message with every flag it involves ("flags a=1, ..., version=False:
    # <message>"); our rules all end with --version, and their messages name the flags already.
    _, marker, rest = message.partition(", version=False: ")
    return rest if marker else message


def version_text() -> str:
    return (
        f"TensorFlow ModelServer: tfs_bench embedded server {tfs_bench.__version__}\n"
        f"TensorFlow Library: {importlib.metadata.version('tensorflow')}"
    )


def _options() -> options_lib.ServerOptions:
    return options_lib.ServerOptions(
        model_base_path=_MODEL_BASE_PATH.value,
        model_name=_MODEL_NAME.value,
        model_config_file=_MODEL_CONFIG_FILE.value,
        host=_HOST.value,
        grpc_port=_PORT.value,
        grpc_socket_path=_GRPC_SOCKET_PATH.value,
        grpc_channel_arguments=options_lib.parse_channel_arguments(_GRPC_CHANNEL_ARGUMENTS.value),
        grpc_max_threads=_GRPC_MAX_THREADS.value,
        rest_api_port=_REST_API_PORT.value,
        rest_api_timeout_ms=_REST_API_TIMEOUT_IN_MS.value,
        rest_max_body_bytes=_REST_MAX_BODY_BYTES.value,
        rest_max_inflight_body_bytes=_REST_MAX_INFLIGHT_BODY_BYTES.value,
        rest_idle_timeout_s=_REST_IDLE_TIMEOUT_S.value,
        rest_max_connections=_REST_MAX_CONNECTIONS.value,
        rest_json_workers=_REST_JSON_WORKERS.value,
        rest_json_offload_bytes=_REST_JSON_OFFLOAD_BYTES.value,
        max_tensor_fill_bytes=_MAX_TENSOR_FILL_BYTES.value,
        model_config_file_poll_wait_s=_MODEL_CONFIG_FILE_POLL_WAIT_SECONDS.value,
        file_system_poll_wait_s=_FILE_SYSTEM_POLL_WAIT_SECONDS.value,
        enable_batching=_ENABLE_BATCHING.value,
        batching_parameters_file=_BATCHING_PARAMETERS_FILE.value,
        monitoring_config_file=_MONITORING_CONFIG_FILE.value,
        per_process_gpu_memory_fraction=_PER_PROCESS_GPU_MEMORY_FRACTION.value,
        session_parallelism=_TENSORFLOW_SESSION_PARALLELISM.value,
        intra_op_parallelism=_TENSORFLOW_INTRA_OP_PARALLELISM.value,
        inter_op_parallelism=_TENSORFLOW_INTER_OP_PARALLELISM.value,
        enable_model_warmup=_ENABLE_MODEL_WARMUP.value,
        enable_signature_method_name_check=_ENABLE_SIGNATURE_METHOD_NAME_CHECK.value,
    )


def main(argv):
    if _VERSION.value:
        print(version_text())
        return 0
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        options = _options()
        config = config_files.read(options)
        # Imported only now: TensorFlow takes seconds to import and a bad flag should not wait.
        from tfs_bench.server import app as server_app

        return server_app.serve_until_signalled(options, config)
    except TfsBenchError as e:
        _fail(str(e))


def run():
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
