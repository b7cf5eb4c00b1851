"""Flags, options and config files of the server: every bad configuration fails before serving.

The binary's flags are parsed, and its `main` run up to the refusal, in this process
(tests/binary_flags.py); a subprocess runs where the process itself is under test: TF Serving's
`Failed to start server. Error:` line and exit status 1, --version, a failure after TensorFlow loads.
"""

import subprocess
import sys
import threading
import time

import pytest

from binary_flags import BinaryFlags
from conftest import run_env
from tfs_bench import tfs_protos
from tfs_bench.errors import ConfigError
from tfs_bench.server import config_files, model_config
from tfs_bench.server.batching import BatchingOptions
from tfs_bench.server.model_config import ModelConfig, VersionPolicy
from tfs_bench.server.options import ServerOptions, parse_channel_arguments
from tfs_bench.server import __main__ as server_binary

SERVER = BinaryFlags(server_binary)
FAILED = "Failed to start server. Error: "


def run_server(*flags, timeout_s=60):
    return subprocess.run(
        [sys.executable, "-m", "tfs_bench.server", *flags],
        env=run_env(), capture_output=True, text=True, timeout=timeout_s,
    )


def test_version_prints_versions_and_exits_zero():
    result = run_server("--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("TensorFlow ModelServer: tfs_bench embedded server")
    assert "TensorFlow Library: 2." in result.stdout


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--bogus_flag=1"], "Unknown command line flag 'bogus_flag'"),
        (["--model_base_path=/m", "--port=8600", "--rest_api_port=8600"],
         "--rest_api_port cannot be the same as --port (8600)"),
        (["--model_config_file=/does/not/exist.config"], "cannot read ModelServerConfig file"),
    ],
    ids=["unknown_flag", "same_ports", "missing_config_file"],
)
def test_bad_flags_fail_fast_with_tf_servings_prefix(flags, message):
    result = run_server(*flags)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(FAILED + message), result.stderr


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--bogus_flag=1"], "Unknown command line flag 'bogus_flag'"),
        (["--model_base_path=/m", "--tensorflow_session_parallelism=2",
          "--tensorflow_intra_op_parallelism=2", "--tensorflow_inter_op_parallelism=2"],
         "Either configure server_options.tensorflow_session_parallelism or"),
        (["--model_base_path=/m", "--batching_parameters_file=/b.config"],
         "server_options.batching_parameters_file is set without setting server_options.enable_batching to true."),
        (["--model_base_path=/m", "--port=8600", "--rest_api_port=8600"],
         "--rest_api_port cannot be the same as --port (8600)"),
        (["--model_base_path=models/m"], "--model_base_path must be an absolute path, got 'models/m'"),
        ([], "Both server_options.model_base_path and server_options.model_config_file are empty!"),
        (["--model_base_path=/m", "--per_process_gpu_memory_fraction=1.5"],
         "flag --per_process_gpu_memory_fraction=1.5: 1.5 is not a number in the range [0.0, 1.0]"),
        (["--model_base_path=/m", "--grpc_channel_arguments=novalue"],
         "--grpc_channel_arguments: expected key=value, got 'novalue'"),
        (["--model_base_path=/m", "--port=70000"], "--port=70000 is not a TCP port"),
    ],
    ids=[
        "unknown_flag", "all_three_thread_flags", "batching_file_without_flag", "same_ports",
        "relative_base_path", "no_model", "gpu_fraction_range", "channel_arguments", "port_range",
    ],
)
def test_bad_flags_are_refused_while_parsing(flags, message):
    assert message in SERVER.refusal(*flags)


def test_version_skips_the_rules():
    with SERVER.parsed("--version", "--port=8600", "--rest_api_port=8600") as argv:
        assert argv == ["tfs_bench.server"]


def _start_failure(*flags) -> str:
    """The message main fails with, from its last stderr line, as TF Serving prints it."""
    outcome = SERVER.run_main(*flags)
    assert outcome.exit_code == 1, outcome
    last = outcome.stderr.strip().splitlines()[-1]
    assert last.startswith(FAILED), outcome.stderr
    return last.removeprefix(FAILED)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model_base_path=/m", "extra"], "unexpected arguments: extra"),
        (["--model_config_file=/does/not/exist.config"], "cannot read ModelServerConfig file"),
    ],
    ids=["positional_argument", "missing_config_file"],
)
def test_bad_command_lines_fail_in_main_before_serving(flags, message):
    assert _start_failure(*flags).startswith(message)


@pytest.mark.parametrize(
    "config_text, message",
    [
        ('model_config_list { config { name: "a" base_path: "/m" } }',
         "Model a: model_platform must be 'tensorflow'"),
        ('model_config_list { config { name: "a" base_path: "/m" model_platform: "pytorch" } }',
         "got 'pytorch'"),
        ('model_config_list { config { name: "a" base_path: "m" model_platform: "tensorflow" } }',
         "Model a: base_path must be an absolute path"),
        ('model_config_list { config { name: "a" base_path: "/m" model_platform: "tensorflow" } '
         'config { name: "a" base_path: "/n" model_platform: "tensorflow" } }',
         "Illegal to list model a multiple times"),
        ("model_config_list { config { nme: 1 } }",
         "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:30: "
         'Message type "tensorflow.serving.ModelConfig" has no field named "nme". Invalid protobuf file: '),
        ('custom_model_config { type_url: "x" }', "only model_config_list is supported"),
    ],
    ids=["empty_platform", "unknown_platform", "relative_path", "duplicate", "syntax", "custom"],
)
def test_bad_model_config_files_fail_fast(tmp_path, config_text, message):
    config = tmp_path / "models.config"
    config.write_text(config_text)

    assert message in _start_failure(f"--model_config_file={config}")


def test_bad_batching_file_fails_fast(tmp_path):
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 4 } allowed_batch_sizes: 2 allowed_batch_sizes: 3")

    failure = _start_failure("--model_base_path=/m", "--enable_batching", f"--batching_parameters_file={batching}")

    assert failure == f"{batching}: Last entry in allowed_batch_sizes must match max_batch_size; last entry was 3; expected 4"


def test_missing_base_path_fails_after_loading_tensorflow(tmp_path):
    result = run_server(f"--model_base_path={tmp_path}/nope", "--model_name=m", f"--port={0}")

    assert result.returncode == 1
    assert FAILED + f"Could not find base path {tmp_path}/nope for servable m" in result.stderr


def test_thread_counts_follow_tf_servings_rules():
    def counts(session, intra, inter):
        return ServerOptions(model_base_path="/m", session_parallelism=session,
                             intra_op_parallelism=intra, inter_op_parallelism=inter).thread_counts

    assert counts(4, 0, 0) == (4, 4)
    assert counts(4, 2, 0) == (2, 0)
    assert counts(0, 3, 1) == (3, 1)
    with pytest.raises(ConfigError, match="You cannot configure all"):
        counts(1, 1, 1)


def _options(session=0, intra=0, inter=0):
    return ServerOptions(model_base_path="/m", session_parallelism=session,
                         intra_op_parallelism=intra, inter_op_parallelism=inter)


def test_a_negative_inter_op_count_passes_only_beside_an_intra_op_count_as_in_tf_serving():
    # server.cc: the pair is used when either is > 0; otherwise both take the session count.
    assert _options(intra=2, inter=-1).thread_counts == (2, -1)
    assert not _options(intra=2, inter=-1).ignored_inter_op
    assert _options(session=3, inter=-1).thread_counts == (3, 3)
    assert _options(session=3, inter=-1).ignored_inter_op
    assert _options(inter=-1).thread_counts == (0, 0)
    assert _options(inter=-1).ignored_inter_op
    assert not _options(intra=2, inter=1).ignored_inter_op


@pytest.mark.parametrize("field", ["session", "intra"])
def test_negative_pool_sizes_are_refused(field):
    name = {"session": "session_parallelism", "intra": "intra_op_parallelism"}[field]
    with pytest.raises(ConfigError, match=f"^{name} must be >= 0, got -1$"):
        _options(**{field: -1})


def test_channel_arguments_become_ints_when_numeric():
    assert parse_channel_arguments("grpc.max_concurrent_streams=100, grpc.primary_user_agent=x,") == (
        ("grpc.max_concurrent_streams", 100), ("grpc.primary_user_agent", "x"),
    )
    assert parse_channel_arguments("") == ()


def test_single_model_mode_ignores_name_and_path_with_a_config_file(tmp_path):
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "a" base_path: "/m" model_platform: "tensorflow" '
                      'model_version_policy { latest { } } version_labels { key: "x" value: 3 } } }')
    options = ServerOptions(model_config_file=str(config), model_base_path="relative/ignored")

    models = config_files.read(options).models

    assert models == (ModelConfig("a", "/m", VersionPolicy("latest", 1), (("x", 3),)),)


def test_server_config_defaults():
    options = ServerOptions(model_base_path="/m", enable_batching=True)

    config = config_files.read(options)

    assert config.models == (ModelConfig("default", "/m"),)
    assert config.batching == BatchingOptions()
    assert config.prometheus_path is None


@pytest.mark.parametrize(
    "text, path",
    [
        ('prometheus_config { enable: true }', "/monitoring/prometheus/metrics"),
        ('prometheus_config { enable: true path: "/m" }', "/m"),
        ('prometheus_config { enable: false path: "/m" }', None),
    ],
)
def test_monitoring_config(tmp_path, text, path):
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(text)

    config = config_files.read(ServerOptions(model_base_path="/m", monitoring_config_file=str(monitoring)))

    assert config.prometheus_path == path


def test_specific_policy_needs_versions():
    with pytest.raises(ConfigError, match="lists no versions"):
        model_config.from_proto(tfs_protos.parse_text(
            'model_config_list { config { name: "a" base_path: "/m" model_platform: "tensorflow" '
            'model_version_policy { specific { } } } }', tfs_protos.ModelServerConfig))


def test_the_rest_body_budget_admits_what_fits_and_waits_for_room():
    from tfs_bench.server import rest

    budget = rest.ByteBudget(10)
    assert budget.acquire(8, None)
    assert not budget.acquire(3, time.monotonic())  # no room, deadline reached: refused at once
    got = []
    waiter = threading.Thread(target=lambda: got.append(budget.acquire(3, time.monotonic() + 60)))
    waiter.start()
    budget.release(8)
    waiter.join(60)
    assert got == [True] and budget.in_use == 3
    assert budget.acquire(7, None) and budget.in_use == 10  # exactly full is allowed
    budget.release(10)
    assert budget.acquire(50, None)  # larger than the whole budget: admitted alone
    assert not budget.acquire(1, time.monotonic())
