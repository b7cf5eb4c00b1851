"""Start-up, polling, reload and shutdown of the server, in-process and as a subprocess."""

import shutil
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from server_support import Stubs, log_tail, poll_until, start_embedded, write_config
from tfs_bench.launch.ports import free_port
from tfs_bench.export import known_answer
from tfs_bench.errors import ConfigError
from tfs_bench.server import config_files
from tfs_bench.server.app import ModelServer
from tfs_bench.server.batching import BatchingOptions
from tfs_bench.server.model_config import ModelConfig
from tfs_bench.server.options import ServerOptions

X = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
WAIT_S = 30.0
END = get_model_status_pb2.ModelVersionStatus.END
SERVER_THREADS = ("model-manager", "config-file-poller", "rest-server", "batch_threads", "grpc")


def copy_version(known_answer_dir, base, version):
    """Copies a known-answer version into `base` atomically, as exporters should."""
    base.mkdir(parents=True, exist_ok=True)
    staged = shutil.copytree(known_answer_dir / known_answer.MODEL_NAME / str(version), base / f".{version}")
    staged.rename(base / str(version))


def predict_request(model, version=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(X))
    return request


def answer(stub, model):
    return tf.make_ndarray(stub.Predict(predict_request(model), timeout=10).outputs["y"])


def model_list(*models) -> str:
    entries = "".join(
        f'config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" }} '
        for name, base in models
    )
    return f"model_config_list {{ {entries}}}"


def reload_request(*models):
    from tfs_bench import tfs_protos

    request = model_management_pb2.ReloadConfigRequest()
    request.config.CopyFrom(tfs_protos.parse_text(model_list(*models), tfs_protos.ModelServerConfig))
    return request


# A subprocess server that polls its base paths and its config file every second.


@pytest.fixture(scope="module")
def root(known_answer_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    copy_version(known_answer_dir, root / "polled", 1)
    copy_version(known_answer_dir, root / "other", 2)
    return root


@pytest.fixture(scope="module")
def config_path(root):
    return root / "models.config"


@pytest.fixture(scope="module")
def server(root, config_path):
    write_config(config_path, model_list(("polled", root / "polled")))
    flags = [
        f"--model_config_file={config_path}",
        "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=1",
    ]
    server = start_embedded(flags, root, ["polled"], rest=False)
    yield server
    assert server.stop() == 0, log_tail(server)  # stop is idempotent: the SIGTERM test may have stopped it


@pytest.fixture(scope="module")
def stubs(server):
    stubs = Stubs(server)
    yield stubs
    stubs.close()


def test_a_new_version_directory_becomes_available(server, stubs, root, known_answer_dir):
    copy_version(known_answer_dir, root / "polled", 2)

    poll_until(lambda: stubs.model_available("polled", 2), WAIT_S, "version 2 AVAILABLE", lambda: log_tail(server))
    poll_until(lambda: stubs.model_states("polled").get(1) == END, WAIT_S, "version 1 END", lambda: log_tail(server))
    np.testing.assert_array_equal(answer(stubs.prediction, "polled"), known_answer.expected_output(X, 2))


def test_config_file_changes_are_polled(server, stubs, root, config_path):
    write_config(config_path, model_list(("polled", root / "polled"), ("from_file", root / "other")))
    poll_until(lambda: stubs.model_available("from_file"), WAIT_S, "from_file AVAILABLE", lambda: log_tail(server))

    write_config(config_path, model_list(("polled", root / "polled")))
    poll_until(lambda: stubs.model_states("from_file").get(2) == END, WAIT_S, "from_file END",
               lambda: log_tail(server))


def test_reload_adds_and_removes_models(stubs, root):
    stubs.models.HandleReloadConfigRequest(
        reload_request(("polled", root / "polled"), ("added", root / "other")), timeout=WAIT_S
    )
    # AVAILABLE as soon as the reload returns.
    np.testing.assert_array_equal(answer(stubs.prediction, "added"), known_answer.expected_output(X, 2))

    stubs.models.HandleReloadConfigRequest(reload_request(("polled", root / "polled")), timeout=WAIT_S)

    with pytest.raises(grpc.RpcError) as info:
        answer(stubs.prediction, "added")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert stubs.model_states("added") == {2: END}


@pytest.mark.parametrize(
    "models, code, message",
    [
        ((("bad", "/does/not/exist"),), grpc.StatusCode.NOT_FOUND,
         "Could not find base path /does/not/exist for servable bad"),
        ((("bad", "relative/path"),), grpc.StatusCode.INVALID_ARGUMENT,
         "Model bad: base_path must be an absolute path"),
    ],
)
def test_a_bad_reload_fails_quickly_and_changes_nothing(stubs, root, models, code, message):
    started = time.monotonic()

    with pytest.raises(grpc.RpcError) as info:
        stubs.models.HandleReloadConfigRequest(
            reload_request(("polled", root / "polled"), *models), timeout=WAIT_S
        )

    assert info.value.code() == code
    assert info.value.details().startswith(message), info.value.details()
    assert time.monotonic() - started < 5
    assert stubs.model_available("polled")


def test_sigterm_stops_the_server_with_status_zero(server):
    assert server.stop() == 0, log_tail(server)
    assert "Shutting down on signal" in server.log_tail(5)


# In-process servers, where a test can see inside.


def _in_process_server(options: ServerOptions, models, batching=None) -> ModelServer:
    return ModelServer(options, config_files.ServerConfig(models=tuple(models), batching=batching))


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _server_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(SERVER_THREADS))


def test_ports_open_only_once_every_model_is_available(known_answer_dir, tmp_path):
    port = free_port()
    base = tmp_path / "m"
    base.mkdir()
    options = ServerOptions(model_base_path=str(base), grpc_port=port, file_system_poll_wait_s=1)
    server = _in_process_server(options, [ModelConfig("m", str(base))])
    started = threading.Event()
    starter = threading.Thread(target=lambda: server.start(threading.Event()) and started.set())
    starter.start()
    try:
        assert not started.wait(0.5)  # no version yet: still loading
        assert not _listening(port)

        copy_version(known_answer_dir, base, 1)

        assert started.wait(WAIT_S)
        assert _listening(port)
    finally:
        server.stop()  # also ends a start() still waiting for its models
        starter.join(WAIT_S)
    assert not starter.is_alive()
    assert _server_threads() == []


def test_stop_finishes_requests_in_flight_and_joins_every_thread(known_answer_dir):
    port = free_port()
    base = str(known_answer_dir / known_answer.MODEL_NAME)
    options = ServerOptions(model_base_path=base, grpc_port=port, enable_batching=True)
    batching = BatchingOptions(max_batch_size=8, batch_timeout_micros=1_000_000, num_batch_threads=1)
    server = _in_process_server(options, [ModelConfig("m", base)], batching)
    assert server.start(threading.Event())
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    in_flight = stub.Predict.future(predict_request("m"), timeout=WAIT_S)
    poll_until(lambda: server.batch_scheduler.num_enqueued_tasks(("m", 2, "serving_default", ("y",))),
               WAIT_S, "request waiting in its batch")

    stopper = threading.Thread(target=server.stop)
    stopper.start()

    np.testing.assert_array_equal(
        tf.make_ndarray(in_flight.result().outputs["y"]), known_answer.expected_output(X, 2)
    )
    stopper.join(WAIT_S)
    assert not stopper.is_alive()
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(predict_request("m"), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()
    assert _server_threads() == []


def test_a_load_failure_stops_start_up_with_the_reason(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)  # a version directory without a SavedModel
    options = ServerOptions(model_base_path=str(tmp_path / "m"), grpc_port=free_port())
    server = _in_process_server(options, [ModelConfig("m", str(tmp_path / "m"))])

    with pytest.raises(Exception, match="Model m version 1 .* failed to load"):
        try:
            server.start(threading.Event())
        finally:
            server.stop()


@pytest.mark.parametrize("listener", ["gRPC", "HTTP/REST"])
def test_a_port_in_use_stops_start_up_before_any_model_loads(tmp_path, listener):
    # The model cannot load (a version directory without a SavedModel): the port error comes
    # first, so it was found before loading began, not minutes later as in TF Serving.
    (tmp_path / "m" / "1").mkdir(parents=True)
    base = str(tmp_path / "m")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"grpc_port": port} if listener == "gRPC" else {"grpc_port": free_port(), "rest_api_port": port}
        server = _in_process_server(ServerOptions(model_base_path=base, **ports), [ModelConfig("m", base)])

        with pytest.raises(ConfigError, match=f"cannot listen for {listener} on 127.0.0.1:{port}: Address already in "
                                              "use \\(checked before loading any model\\)"):
            try:
                server.start(threading.Event())
            finally:
                server.stop()
    assert _server_threads() == []
