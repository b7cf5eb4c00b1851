"""The launch stage against real server subprocesses: every kind, readiness, failures, no orphans.

Plans are made on the known-answer model with the planner itself, on free ports. The binary and
docker launchers run with fakes on PATH that hand the command to the embedded server, so the
plan's flags, mounts and port maps are proven complete by a server that has to start from them.
"""

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from conftest import REPO_ROOT
from conftest import run_env
from server_support import poll_until
from tfs_bench.export import known_answer
from tfs_bench.launch import child_exec
from tfs_bench.launch import launchers
from tfs_bench.launch import ports
from tfs_bench.launch import processes
from tfs_bench.plan import placement
from tfs_bench.plan import plan_files
from tfs_bench.plan import plan_record
from tfs_bench.errors import ConfigError

MODEL = known_answer.MODEL_NAME
SECOND = "half_plus_two_b"
READY_TIMEOUT_S = 60.0
X = [1.0, 2.0, 5.0]


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, known_answer_dir) -> Path:
    """half_plus_two and a copy under another name, so multi-process plans have two servers."""
    root = tmp_path_factory.mktemp("launch_models")
    for name in (MODEL, SECOND):
        shutil.copytree(known_answer_dir / MODEL, root / name)
    return root


def _plan(out: Path, model_paths: dict, hosting="multi_model", cpu_cores=(), policy="all"):
    models = tuple(placement.load_model_entry(name, str(path)) for name, path in model_paths.items())
    request = placement.PlanRequest(
        models=models,
        hosting=hosting,
        device="cpu",
        version_policy=placement.VersionPolicy.parse(policy),
        cpu_cores=tuple(cpu_cores),
        port_base=ports.free_port_base(len(models)),
    )
    path = plan_files.write_plan(placement.make_plan(request), out, "tensorflow/serving:latest")
    return plan_record.read_plan(path).servers


def _predict(target: str, model: str, version: int) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.version.value = version
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add().size = 1
    tensor.tensor_shape.dim.add().size = len(X)
    tensor.float_val.extend(X)
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return list(response.outputs["y"].float_val)


def _assert_known_answers(server: launchers.RunningServer, model: str) -> None:
    for version in known_answer.VERSIONS:
        assert _predict(server.grpc_target, model, version) == [
            known_answer.expected_output(x, version) for x in X
        ]


def _children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead; its new parent reaps it
    except psutil.NoSuchProcess:
        return True


# ----------------------------------------------------------------------------- validation (no server)


def _entry(**changes) -> plan_record.PlannedServer:
    placed = placement.ServerPlan(
        name="s",
        models=(placement.HostedModel("m", "/abs/m", (1,), {}),),
        host="127.0.0.1",
        grpc_port=9000,
        rest_port=9001,
        gpu_memory_fraction=None,
        cpu_set=None,
        threads=placement.Threads(),
    )
    files = plan_record.ServerFiles(*(f"/plan/s/{name}" for name in (
        "", "models.config", "monitoring.config", "batching.config", "flags.txt", "docker-run.sh", "docker-compose.yml")))
    image = "tensorflow/serving:latest"
    docker = plan_record.DockerSpec(image, ("docker", "run", "--rm", "--name", "tfs-bench-s", image), {})
    entry = plan_record.PlannedServer.of(placed, flags=("--port=9000",), files=files, docker=docker)
    return dataclasses.replace(entry, **changes)


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="kubernetes", log_dir="l"), "launcher kind must be one of embedded, binary, docker, external"),
        (dict(kind="embedded"), "needs a log directory"),
        (dict(kind="embedded", log_dir="l", binary_path="/bin/true"), "binary_path is only for kinds binary and docker"),
        (dict(kind="embedded", log_dir="l", external_address="h:1"), "external_address is only for kind external"),
        (dict(kind="embedded", log_dir="l", ready_timeout_s=0), "ready_timeout_s > 0"),
        (dict(kind="embedded", log_dir="l", poll_interval_s=5, ready_timeout_s=1), "poll_interval_s <= ready_timeout_s"),
        (dict(kind="external"), "needs the running server's address"),
        (dict(kind="external", external_address="localhost"), "external server address .localhost. is not host:port"),
        (dict(kind="external", external_address="localhost:http"), "is not host:port"),
        (dict(kind="external", external_address=":8500"), "is not host:port"),
        (dict(kind="external", external_address="localhost:0"), "must be in 1..65535"),
        (dict(kind="external", external_address="localhost:70000"), "must be in 1..65535"),
    ],
)
def test_launch_spec_rejects_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        launchers.LaunchSpec(server=_entry(), **kwargs)


def test_binary_and_docker_not_on_path_name_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=f"tensorflow_model_server not found on PATH \\({tmp_path}\\)"):
        launchers.LaunchSpec("binary", _entry(), log_dir="l")
    with pytest.raises(ConfigError, match=f"docker not found on PATH \\({tmp_path}\\)"):
        launchers.LaunchSpec("docker", _entry(), log_dir="l")
    not_executable = tmp_path / "tfs"
    not_executable.write_text("")
    with pytest.raises(ConfigError, match="is not an executable file"):
        launchers.LaunchSpec("binary", _entry(), log_dir="l", binary_path=str(not_executable))


def test_commands_per_kind(tmp_path, monkeypatch):
    fake = _executable(tmp_path / "tensorflow_model_server", "#!/bin/sh\n")
    _executable(tmp_path / "docker", "#!/bin/sh\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    embedded = launchers.LaunchSpec("embedded", _entry(), log_dir="l")
    assert embedded.command() == [sys.executable, "-m", "tfs_bench.server", "--port=9000", "--host=127.0.0.1"]
    binary = launchers.LaunchSpec("binary", _entry(), log_dir="l")
    assert binary.binary_path == str(fake)
    assert binary.command() == [str(fake), "--port=9000"]  # the real binary has no --host
    docker = launchers.LaunchSpec("docker", _entry(), log_dir="l")
    assert docker.command() == [str(tmp_path / "docker"), *_entry().docker.run_argv[1:]]
    external = launchers.LaunchSpec("external", _entry(), external_address="[::1]:8600")
    assert (external.grpc_target, external.rest_url) == ("[::1]:8600", "http://[::1]:9001")
    assert (embedded.grpc_target, embedded.rest_url) == ("127.0.0.1:9000", "http://127.0.0.1:9001")
    with pytest.raises(launchers.LaunchError, match="not started by the launcher"):
        external.command()


def test_docker_argv_needs_a_container_name(tmp_path, monkeypatch):
    _executable(tmp_path / "docker", "#!/bin/sh\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    unnamed = _entry(docker=plan_record.DockerSpec("img", ("docker", "run", "--rm", "img"), {}))
    with pytest.raises(ConfigError, match="has no --name"):
        launchers.LaunchSpec("docker", unnamed, log_dir="l")
    assert processes.container_name(["docker", "run", "--name=x", "img"]) == "x"


def test_cpu_set_must_be_usable_here():
    with pytest.raises(ConfigError, match=r"pinned to cores 0,4096, but 4096 cannot be used here"):
        launchers.LaunchSpec("embedded", _entry(cpu_set=(0, 4096)), log_dir="l")


def test_launching_twice_the_same_server_is_refused_before_starting_anything(tmp_path):
    spec = launchers.LaunchSpec("embedded", _entry(), log_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="same server names: s"):
        launchers.launch_all([spec, spec])
    assert _children() == []


def test_a_port_in_use_fails_the_launch_and_stops_servers_already_started(models_dir, tmp_path):
    first, second = _plan(tmp_path / "plan", {MODEL: models_dir / MODEL, SECOND: models_dir / SECOND}, "dedicated")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", second.rest_port))
        taken.listen()
        specs = [launchers.LaunchSpec("embedded", e, log_dir=str(tmp_path / "logs")) for e in (first, second)]
        with pytest.raises(launchers.LaunchError, match=f"127.0.0.1:{second.rest_port} is not free"):
            launchers.launch_all(specs)
    assert _children() == []  # the first server was started, then stopped
    assert (tmp_path / "logs" / f"{first.name}.log").exists()
    assert not (tmp_path / "logs" / f"{second.name}.log").exists()


# ----------------------------------------------------------------------------- embedded and external


@pytest.mark.slow
def test_embedded_multi_model_plan_is_ready_answers_and_stops_without_orphans(models_dir, tmp_path):
    (entry,) = _plan(tmp_path / "plan", {MODEL: models_dir / MODEL, SECOND: models_dir / SECOND})
    spec = launchers.LaunchSpec("embedded", entry, log_dir=str(tmp_path / "logs"), ready_timeout_s=READY_TIMEOUT_S)
    with launchers.launch(spec) as server:
        assert (server.name, server.kind, server.grpc_target) == ("all_models", "embedded", entry.grpc_target)
        assert server.rest_url == f"http://127.0.0.1:{entry.rest_port}"
        assert sorted(server.model_ready_s) == [MODEL, SECOND]
        assert all(0 < s <= server.startup_s for s in server.model_ready_s.values())
        assert server.startup_s < READY_TIMEOUT_S
        _assert_known_answers(server, MODEL)
        _assert_known_answers(server, SECOND)
        assert server.log_path == tmp_path / "logs" / "all_models.log"
        assert server.log_tail(1000).splitlines()[0].endswith("--host=127.0.0.1")
        assert psutil.Process(server.pid).cmdline()[1:3] == ["-m", "tfs_bench.server"]
        assert server.poll() is None

        _external_launch_leaves_the_server_alone(entry, server)
    assert _gone(server.pid) and _children() == []
    assert server.stop() == 0 and server.stop(timeout_s=0.1) == 0  # SIGTERM exits 0; stop is idempotent


def _external_launch_leaves_the_server_alone(entry, server):
    spec = launchers.LaunchSpec("external", entry, external_address=server.grpc_target, ready_timeout_s=10)
    with launchers.launch(spec) as external:
        assert external.pid is None and external.log_path is None and external.log_tail() == ""
        assert sorted(external.model_ready_s) == [MODEL, SECOND]
        _assert_known_answers(external, MODEL)
    assert external.stop() is None
    assert server.poll() is None  # still serving


@pytest.mark.slow
def test_embedded_multi_process_plan_pins_each_server_to_its_cores(models_dir, tmp_path):
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        pytest.skip("multi_process on CPU pins two servers to distinct cores; this machine has one")
    entries = _plan(tmp_path / "plan", {MODEL: models_dir / MODEL, SECOND: models_dir / SECOND}, "multi_process", usable[:2])
    assert [e.cpu_set for e in entries] == [(usable[0],), (usable[1],)]
    specs = [launchers.LaunchSpec("embedded", e, log_dir=str(tmp_path / "logs"), ready_timeout_s=READY_TIMEOUT_S) for e in entries]
    servers = launchers.launch_all(specs)
    try:
        for server, entry in zip(servers, entries):
            assert psutil.Process(server.pid).cpu_affinity() == list(entry.cpu_set)
            assert list(server.model_ready_s) == [entry.models[0].name]
            _assert_known_answers(server, entry.models[0].name)
    finally:
        codes = [server.stop() for server in servers]
    assert codes == [0, 0] and _children() == []


# ----------------------------------------------------------------------------- binary and docker


@pytest.mark.slow
def test_binary_launcher_runs_the_plan_flags_through_tensorflow_model_server_on_path(models_dir, tmp_path, monkeypatch):
    (entry,) = _plan(tmp_path / "plan", {MODEL: models_dir / MODEL})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Stands in for TF Serving's binary: our server must accept the plan's flags as they are.
    fake = _executable(
        bin_dir / "tensorflow_model_server",
        f'#!/bin/sh\nPYTHONPATH={REPO_ROOT}\nexport PYTHONPATH\nexec {sys.executable} -m tfs_bench.server "$@"\n',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    spec = launchers.LaunchSpec("binary", entry, log_dir=str(tmp_path / "logs"), ready_timeout_s=READY_TIMEOUT_S)
    assert spec.binary_path == str(fake)
    with launchers.launch(spec) as server:
        assert psutil.Process(server.pid).cmdline()[3:] == list(entry.flags)  # exec'd: same pid, no --host
        _assert_known_answers(server, MODEL)
    assert server.stop() == 0 and _gone(server.pid)


@pytest.mark.slow
def test_stop_signals_the_whole_group_and_kills_what_ignores_sigterm(models_dir, tmp_path):
    (entry,) = _plan(tmp_path / "plan", {MODEL: models_dir / MODEL})
    # A wrapper that ignores SIGTERM and never exits, with the real server as its child.
    wrapper = _executable(
        tmp_path / "stubborn_model_server",
        f"#!/bin/sh\ntrap '' TERM\nPYTHONPATH={REPO_ROOT} {sys.executable} -m tfs_bench.server \"$@\" &\n"
        "exec tail -f /dev/null\n",
    )
    spec = launchers.LaunchSpec(
        "binary", entry, log_dir=str(tmp_path / "logs"), binary_path=str(wrapper), ready_timeout_s=READY_TIMEOUT_S
    )
    server = launchers.launch(spec)
    try:
        (child,) = psutil.Process(server.pid).children()
        _assert_known_answers(server, MODEL)
        started = time.monotonic()
        assert server.stop(timeout_s=1.0) == -signal.SIGKILL
        assert 1.0 <= time.monotonic() - started < 10
        poll_until(lambda: _gone(child.pid), 10, "the server in the wrapper's group stopped by SIGTERM")
    finally:
        server.stop()
    assert _gone(server.pid) and _children() == []


_FAKE_DOCKER = '''#!{python}
"""A fake docker: records its argv; `run` starts the embedded server as the image would."""
import json
import os
import re
import sys
from pathlib import Path

RECORD = Path({record!r})
with RECORD.open("a") as record:
    record.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if args[:2] == ["rm", "-f"]:
    sys.exit(0)
if args[:1] != ["run"]:
    sys.exit(f"fake docker: unsupported command {{args}}")
ports, mounts, i = {{}}, [], 1
while not args[i].startswith("tensorflow/serving"):
    option = args[i]
    if option == "-p":
        host, host_port, container_port = args[i + 1].split(":")
        ports[container_port] = (host, host_port)
    elif option == "-v":
        source, target, mode = args[i + 1].split(":")
        assert mode == "ro", args[i + 1]
        mounts.append((target, source))
    elif option not in ("--name", "--gpus"):
        assert option == "--rm" or option.startswith("--cpuset-cpus="), f"unknown option {{option}}"
        i -= 1
    i += 2
flags = args[i + 1:]


def on_host(path):
    for target, source in sorted(mounts, key=lambda m: -len(m[0])):
        if path == target or path.startswith(target + "/"):
            return source + path[len(target):]
    sys.exit(f"fake docker: {{path}} is not inside any -v mount")


scratch = RECORD.parent / f"container-{{os.getpid()}}"
scratch.mkdir()
host_flags = []
for flag in flags:
    name, _, value = flag.partition("=")
    if value.startswith("/"):
        value = on_host(value)
        if name == "--model_config_file":  # the container sees its model paths under /models
            text = re.sub(r'base_path: "([^"]*)"', lambda m: f'base_path: "{{on_host(m.group(1))}}"', Path(value).read_text())
            value = str(scratch / "models.config")
            Path(value).write_text(text)
        assert Path(value).exists(), value
    host_flags.append(f"{{name}}={{value}}")
entrypoint = ["--port=8500", "--rest_api_port=8501", "--model_name=model", "--model_base_path=/models/model"]
published = [f"--port={{ports['8500'][1]}}", f"--rest_api_port={{ports['8501'][1]}}", f"--host={{ports['8500'][0]}}"]
env = dict(os.environ, PYTHONPATH={repo!r})
os.execve({python!r}, [{python!r}, "-m", "tfs_bench.server", *entrypoint, *host_flags, *published], env)
'''


@pytest.mark.slow
def test_docker_launcher_argv_has_every_mount_and_port_the_server_needs(models_dir, tmp_path, monkeypatch):
    (entry,) = _plan(tmp_path / "plan", {MODEL: models_dir / MODEL, SECOND: models_dir / SECOND})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "docker-calls.jsonl"
    _executable(bin_dir / "docker", _FAKE_DOCKER.format(python=sys.executable, record=str(record), repo=str(REPO_ROOT)))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    spec = launchers.LaunchSpec("docker", entry, log_dir=str(tmp_path / "logs"), ready_timeout_s=READY_TIMEOUT_S)
    with launchers.launch(spec) as server:
        assert server.container_name == "tfs-bench-all-models"
        _assert_known_answers(server, MODEL)
        _assert_known_answers(server, SECOND)
    assert _gone(server.pid) and _children() == []
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls == [list(entry.docker.run_argv[1:]), ["rm", "-f", "tfs-bench-all-models"]]
    assert "rm -f tfs-bench-all-models" in server.log_tail()


# ----------------------------------------------------------------------------- failures


def test_a_server_that_exits_at_once_fails_the_launch_with_its_exit_code(models_dir, tmp_path):
    (entry,) = _plan(tmp_path / "plan", {MODEL: models_dir / MODEL})
    broken = dataclasses.replace(entry, flags=entry.flags + ("--no_such_flag=1",))
    spec = launchers.LaunchSpec("embedded", broken, log_dir=str(tmp_path / "logs"), ready_timeout_s=READY_TIMEOUT_S)
    started = time.monotonic()
    with pytest.raises(launchers.ServerExitedError) as raised:
        launchers.launch(spec)
    assert time.monotonic() - started < READY_TIMEOUT_S / 2  # at once, not at the deadline
    assert raised.value.exit_code == 1
    message = str(raised.value)
    assert "server 'all_models' (embedded, gRPC 127.0.0.1:" in message and "exited with code 1" in message
    assert f"last 20 lines of {tmp_path / 'logs' / 'all_models.log'}" in message
    assert "no_such_flag" in message.split("---")[-1]  # the server's own complaint, from its log
    assert _children() == []


def _corrupt_model(tmp_path: Path) -> list[str]:
    version = tmp_path / "corrupt" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"not a SavedModel")
    return ["--model_name=corrupt", f"--model_base_path={version.parent}"]


def _malformed_config(tmp_path: Path) -> list[str]:
    config = tmp_path / "models.config"
    config.write_text("model_config_list { config { name: 'm' base_path: }")
    return [f"--model_config_file={config}"]


@pytest.mark.parametrize(
    "make_flags, reason",
    [
        (_corrupt_model, "failed to load: Could not parse SavedModel at "),
        (lambda tmp_path: ["--model_name=m", f"--model_base_path={tmp_path / 'nowhere'}"],
         "Could not find base path "),
        (_malformed_config, "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:"),
    ],
    ids=["corrupt_saved_model", "missing_base_path", "malformed_config"],
)
def test_a_server_that_cannot_start_fails_the_launch_at_once_with_its_reason(tmp_path, make_flags, reason):
    spec = launchers.EmbeddedSpec(tuple(make_flags(tmp_path)), ("m",), str(tmp_path / "logs"),
                                  ready_timeout_s=READY_TIMEOUT_S)
    started = time.monotonic()
    with pytest.raises(launchers.ServerExitedError) as raised:
        launchers.launch(spec)
    assert time.monotonic() - started < READY_TIMEOUT_S / 2  # at once, not at the deadline
    assert raised.value.exit_code == 1
    tail = str(raised.value).split("---")[-1]
    assert "Failed to start server. Error: " in tail and reason in tail, tail
    assert _children() == []


@pytest.mark.slow
def test_models_that_never_become_available_time_out_with_the_log_tail(models_dir, tmp_path):
    never = tmp_path / "models" / "never_ready"
    shutil.copytree(models_dir / MODEL, never)
    (entry,) = _plan(tmp_path / "plan", {"never_ready": never})
    for version_dir in never.iterdir():  # planned with versions, then they disappear
        version_dir.rename(never / f"moved-{version_dir.name}")
    # Long enough for the server to start and poll its base path once, which takes about 10 s on a
    # busy 2-core machine; the warning it then logs must be in the error's log tail.
    timeout_s = 25
    spec = launchers.LaunchSpec("embedded", entry, log_dir=str(tmp_path / "logs"), ready_timeout_s=timeout_s, poll_interval_s=0.2)
    started = time.monotonic()
    with pytest.raises(launchers.ReadinessTimeoutError) as raised:
        launchers.launch(spec)
    elapsed_s = time.monotonic() - started
    assert timeout_s <= elapsed_s < timeout_s + 10  # the deadline, plus a bounded stop
    message = str(raised.value)
    assert message.startswith(f"server 'all_models' (embedded, gRPC {entry.grpc_target}) was not ready after {timeout_s} s")
    assert "models not ready: never_ready: UNAVAILABLE" in message
    tail = message.split(f"--- last 20 lines of {tmp_path / 'logs' / 'all_models.log'} ---\n")[1]
    assert str(never) in tail  # the server's warning about the base path holding no version
    assert _children() == []


@pytest.mark.slow
def test_a_sigkilled_parent_takes_its_server_down(models_dir, tmp_path):
    (entry,) = _plan(tmp_path / "plan", {MODEL: models_dir / MODEL})
    pid_file = tmp_path / "server.pid"
    parent_script = (
        "import os, sys, threading\n"
        "from tfs_bench.launch import launchers\n"
        "from tfs_bench.plan import plan_record\n"
        "plan, logs, pid_file = sys.argv[1:]\n"
        "(entry,) = plan_record.read_plan(plan).servers\n"
        "server = launchers.launch(launchers.LaunchSpec('embedded', entry, log_dir=logs, ready_timeout_s=60))\n"
        "open(pid_file + '.tmp', 'w').write(str(server.pid))\n"
        "os.replace(pid_file + '.tmp', pid_file)\n"
        "threading.Event().wait()\n"
    )
    with open(tmp_path / "parent.log", "wb") as log:
        parent = subprocess.Popen(
            [sys.executable, "-c", parent_script, str(tmp_path / "plan"), str(tmp_path / "logs"), str(pid_file)],
            env=run_env(), stdout=log, stderr=subprocess.STDOUT,
        )
    server_pid = None
    try:
        poll_until(lambda: pid_file.exists() or parent.poll() is not None, READY_TIMEOUT_S, "parent launched its server")
        assert parent.poll() is None, (tmp_path / "parent.log").read_text()[-3000:]
        server_pid = int(pid_file.read_text())
        assert psutil.Process(server_pid).ppid() == parent.pid
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        poll_until(lambda: _gone(server_pid), 30, f"server {server_pid} gone after its parent was SIGKILLed")
    finally:
        parent.kill()
        parent.wait()
        if server_pid is not None and not _gone(server_pid):
            os.kill(server_pid, signal.SIGKILL)  # the test failed; do not leave the server behind


def test_free_port_base_and_port_free():
    base = ports.free_port_base(2)
    assert base % 2 == 0
    assert all(ports.port_free("127.0.0.1", p) is None for p in range(base, base + 4))
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", base))
        listening.listen()
        assert ports.port_free("127.0.0.1", base)  # the reason it is taken


_REPORT_SELF = (
    "import ctypes, json, os, signal, sys\n"
    "sig = ctypes.c_int()\n"
    "ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG\n"
    "print(json.dumps({'argv': sys.argv[1:], 'pdeathsig': sig.value, 'cores': sorted(os.sched_getaffinity(0)),"
    " 'session': os.getsid(0) == os.getpid(), 'pid': os.getpid()}))\n"
)


@pytest.mark.parametrize("pinned", [False, True])
def test_a_started_process_is_the_program_itself_in_its_own_session_pinned_and_tied_to_its_parent(tmp_path, pinned):
    core = min(os.sched_getaffinity(0))
    process = processes.ServerProcess(
        "reporter", [sys.executable, "-c", _REPORT_SELF, "--flag=1"], tmp_path, env=run_env(),
        cpu_set=(core,) if pinned else None,
    )
    assert process.wait(30) == 0, process.log_tail()
    log = (tmp_path / "reporter.log").read_text().splitlines()
    assert log[0].startswith(f"# {sys.executable} -c ")  # the program's own argv, as started
    seen = json.loads(log[-1])
    assert seen["argv"] == ["--flag=1"] and seen["pid"] == process.pid  # exec'd, not a child of a wrapper
    assert seen["pdeathsig"] == signal.SIGTERM and seen["session"]
    assert seen["cores"] == ([core] if pinned else sorted(os.sched_getaffinity(0)))


def test_a_program_that_cannot_run_exits_with_127_and_says_why(tmp_path):
    process = processes.ServerProcess("missing", [str(tmp_path / "no_such_server")], tmp_path, env=run_env())
    assert process.wait(30) == child_exec.EXEC_FAILED
    assert f"cannot run {tmp_path / 'no_such_server'}: [Errno 2]" in process.log_tail()


# ----------------------------------------------------------------------------- the embedded server without a plan


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(flags=("--port=8500",)), "--port=8500: the launcher picks free ports"),
        (dict(flags=("--rest_api_port", "8501")), "--rest_api_port: the launcher picks free ports"),
        (dict(flags=("--host=0.0.0.0",)), "--host=0.0.0.0: the launcher picks free ports"),
        (dict(ready_models=()), "ready_models must name each model to wait for once, got \\[\\]"),
        (dict(ready_models=("m", "m")), "ready_models must name each model to wait for once"),
        (dict(log_dir=""), "needs a log directory"),
        (dict(name="a/b"), "needs a name that can name its log file"),
        (dict(ready_timeout_s=1, poll_interval_s=2), "poll_interval_s <= ready_timeout_s"),
    ],
)
def test_embedded_spec_rejects_bad_settings(kwargs, message):
    fields = {**dict(flags=("--model_name=m",), ready_models=("m",), log_dir="logs"), **kwargs}
    with pytest.raises(ConfigError, match=message):
        launchers.EmbeddedSpec(**fields)


def test_embedded_spec_picks_free_ports_and_adds_the_listening_flags():
    spec = launchers.EmbeddedSpec(("--model_name=m", "--model_base_path=/m"), ("m",), "logs")
    assert spec.rest_port == spec.grpc_port + 1
    assert all(ports.port_free("127.0.0.1", p) is None for p in (spec.grpc_port, spec.rest_port))
    assert spec.command() == [
        sys.executable, "-m", "tfs_bench.server", f"--port={spec.grpc_port}", f"--rest_api_port={spec.rest_port}",
        "--model_name=m", "--model_base_path=/m", "--host=127.0.0.1",
    ]
    assert (spec.grpc_target, spec.rest_address) == (f"127.0.0.1:{spec.grpc_port}", f"127.0.0.1:{spec.rest_port}")
    grpc_only = launchers.EmbeddedSpec(("--model_name=m",), ("m",), "logs", rest=False)
    assert grpc_only.rest_port is None and grpc_only.rest_url is None
    assert not any(arg.startswith("--rest_api_port") for arg in grpc_only.command())


@pytest.mark.slow
def test_embedded_spec_is_ready_on_any_version_and_times_out_naming_a_model_never_served(known_answer_dir, tmp_path):
    flags = (f"--model_name={MODEL}", f"--model_base_path={known_answer_dir / MODEL}")
    spec = launchers.EmbeddedSpec(flags, (MODEL,), str(tmp_path / "logs"), ready_timeout_s=READY_TIMEOUT_S)
    with launchers.launch(spec) as server:
        assert (server.kind, server.name, server.grpc_target) == ("embedded", "embedded", spec.grpc_target)
        assert server.rest_address == spec.rest_address and list(server.model_ready_s) == [MODEL]
        assert _predict(server.grpc_target, MODEL, 2) == [known_answer.expected_output(x, 2) for x in X]
    assert server.stop() == 0 and _children() == []

    absent = launchers.EmbeddedSpec(flags, ("absent",), str(tmp_path / "logs"), name="absent", ready_timeout_s=5)
    with pytest.raises(launchers.ReadinessTimeoutError) as raised:
        launchers.launch(absent)
    message = str(raised.value)
    assert message.startswith(f"server 'absent' (embedded, gRPC {absent.grpc_target}) was not ready after 5 s")
    assert "models not ready: absent: " in message  # UNAVAILABLE while loading, NOT_FOUND once up
    assert f"--- last 20 lines of {tmp_path / 'logs' / 'absent.log'} ---\n# " in message
    assert _children() == []
