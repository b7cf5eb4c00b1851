"""plan.json as a typed record: what the planner writes is what the launcher reads, and bad files are named."""

import dataclasses
import json
import shutil

import pytest

from tfs_bench.errors import ConfigError
from tfs_bench.export import known_answer
from tfs_bench.plan import placement
from tfs_bench.plan import plan_files
from tfs_bench.plan import plan_record

MODEL = known_answer.MODEL_NAME


@pytest.fixture(scope="module")
def models(known_answer_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("record_models")
    for name in (MODEL, "second"):
        shutil.copytree(known_answer_dir / MODEL, root / name)
    return tuple(placement.load_model_entry(name, str(root / name)) for name in (MODEL, "second"))


def _plan(models, **request) -> placement.Plan:
    return placement.make_plan(placement.PlanRequest(models=models, device="cpu", **request))


BATCHED = dict(
    hosting="multi_model",
    version_policy=placement.VersionPolicy.parse("all"),
    version_labels={MODEL: {"stable": 1, "canary": 2}},
    batching=placement.BatchingSpec(max_batch_size=8, batch_timeout_micros=500, allowed_batch_sizes=(2, 8)),
)
PINNED = dict(hosting="multi_process", cpu_cores=(0, 1), port_base=9000)


def _placed(server: plan_record.PlannedServer) -> placement.ServerPlan:
    return placement.ServerPlan(**{f.name: getattr(server, f.name) for f in dataclasses.fields(placement.ServerPlan)})


@pytest.mark.parametrize("request_fields", [BATCHED, PINNED], ids=["multi_model_batched", "multi_process_pinned"])
def test_a_written_plan_reads_back_as_the_plan_that_was_written(models, tmp_path, request_fields):
    plan = _plan(models, **request_fields)
    path = plan_files.write_plan(plan, tmp_path / "plan", "tensorflow/serving:2.14.1")

    record = plan_record.read_plan(tmp_path / "plan")  # the directory, as users pass it

    assert (record.hosting, record.device, record.notes) == (plan.hosting, plan.device, plan.notes)
    assert (record.version_policy, record.batching) == (plan.version_policy, plan.batching)
    assert tuple(_placed(s) for s in record.servers) == plan.servers
    assert record.docker_image == "tensorflow/serving:2.14.1"
    assert record.to_json() == json.loads(path.read_text())  # every field of the file, and no more
    assert plan_record.read_plan(path) == record
    for server in record.servers:
        assert list(server.flags) == (tmp_path / "plan" / server.name / "flags.txt").read_text().split()
        assert server.docker.run_argv[:2] == ("docker", "run")
        assert server.files.dir == str(tmp_path / "plan" / server.name)


def test_to_json_and_from_json_are_inverse(models, tmp_path):
    path = plan_files.write_plan(_plan(models, **BATCHED), tmp_path / "plan", "tensorflow/serving:latest")
    record = plan_record.read_plan(path)

    assert plan_record.PlanRecord.from_json(record.to_json()) == record
    server = record.servers[0]
    assert plan_record.PlannedServer.from_json(server.to_json()) == server
    assert placement.ServerPlan.from_json(_placed(server).to_json()) == _placed(server)
    assert server.models[0].labels == {"stable": 1, "canary": 2}
    assert record.batching.allowed_batch_sizes == (2, 8)


def test_every_field_of_a_server_reads_back_from_its_json():
    # The planned servers above leave gpu_memory_fraction and the session threads unset; here each
    # field holds a value that is not its default, so a field read back as its default is caught.
    hosted = placement.HostedModel("m", "/models/m", (0, 3), {"stable": 3})
    threads = placement.Threads(session=2)
    server = placement.ServerPlan("s", (hosted,), "10.0.0.7", 9000, 0, 0.25, (2, 3), threads)
    document = json.loads(json.dumps(server.to_json()))
    assert document["gpu_memory_fraction"] == 0.25 and document["threads"] == {"intra_op": 0, "inter_op": 0, "session": 2}
    assert placement.ServerPlan.from_json(document) == server
    assert placement.Threads.from_json(threads.to_json()) == threads
    assert placement.Threads.from_json(placement.Threads(intra_op=4, inter_op=1).to_json()) == placement.Threads(4, 1, 0)


def test_the_fields_of_plan_json_stay_as_users_read_them(models, tmp_path):
    path = plan_files.write_plan(_plan(models, **PINNED), tmp_path / "plan", "tensorflow/serving:latest")
    document = json.loads(path.read_text())

    assert list(document) == [
        "schema_version", "created_at", "hosting", "device", "version_policy", "batching",
        "prometheus_path", "docker_image", "notes", "servers",
    ]
    server = document["servers"][0]
    assert list(server) == [
        "name", "models", "host", "grpc_port", "rest_port", "gpu_memory_fraction", "cpu_set", "threads",
        "flags", "files", "docker",
    ]
    assert list(server["models"][0]) == ["name", "base_path", "versions", "labels"]
    assert server["threads"] == {"intra_op": 1, "inter_op": 1, "session": 0}
    assert server["cpu_set"] == [0]
    assert list(server["files"]) == [
        "dir", "model_config", "monitoring_config", "batching_parameters", "flags", "docker_run", "docker_compose",
    ]
    assert list(server["docker"]) == ["image", "run_argv", "compose_service"]
    assert document["version_policy"] == {"kind": "latest", "num_versions": 1, "versions": []}
    assert document["batching"] is None and document["schema_version"] == 1


# ----------------------------------------------------------------------------- malformed files


@pytest.fixture
def written(models, tmp_path):
    """A real plan.json and a way to write a changed copy of it."""
    path = plan_files.write_plan(_plan(models, **PINNED), tmp_path / "plan", "tensorflow/serving:latest")
    document = json.loads(path.read_text())

    def rewrite(change) -> str:
        changed = json.loads(json.dumps(document))
        change(changed)
        path.write_text(json.dumps(changed))
        return str(path)

    return rewrite


def _set(*keys_and_value):
    *keys, last, value = keys_and_value

    def change(document):
        for key in keys:
            document = document[key]
        document[last] = value

    return change


def _delete(*keys):
    *keys, last = keys

    def change(document):
        for key in keys:
            document = document[key]
        del document[last]

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("schema_version", 2), "plan schema_version 2, expected 1"),
        (_delete("schema_version"), "plan schema_version None, expected 1"),
        (_delete("hosting"), "the plan has no 'hosting'"),
        (_set("hosting", "shared"), "hosting must be one of dedicated, multi_model, multi_process, got 'shared'"),
        (_set("notes", "one note"), "the plan is malformed: notes must be a list, got 'one note'"),
        (_set("servers", []), "the plan lists no servers"),
        (_set("version_policy", "kind", "newest"), "version policy must be"),
        (_delete("version_policy", "kind"), "version_policy has no 'kind'"),
        (_set("batching", {"max_batch_size": 8}), "batching has no 'batch_timeout_micros'"),
        (_set("servers", 1, "name", MODEL), f"the plan lists server {MODEL} more than once"),
        (_set("servers", 0, "half_plus_two"), "a plan server entry is a JSON object, got 'half_plus_two'"),
        (_delete("servers", 0, "host"), f"plan server entry '{MODEL}' has no 'host'"),
        (_delete("servers", 0, "flags"), f"plan server entry '{MODEL}' has no 'flags'"),
        (_set("servers", 0, "flags", "--port=9000"), f"plan server entry '{MODEL}' is malformed: flags must be a list"),
        (_set("servers", 0, "flags", [9000]), f"flags of plan server '{MODEL}' must be strings"),
        (_set("servers", 0, "grpc_port", "9000"), f"gRPC port of plan server '{MODEL}' must be in 1..65535, got '9000'"),
        (_set("servers", 0, "rest_port", 70000), f"REST port of plan server '{MODEL}' must be in 1..65535"),
        (_set("servers", 0, "cpu_set", []), f"cpu_set of plan server '{MODEL}' must be non-empty core numbers"),
        (_set("servers", 0, "models", []), f"plan server '{MODEL}' hosts no models"),
        (_set("servers", 0, "models", 0, "versions", []), f"model '{MODEL}' needs at least one served version"),
        (_set("servers", 0, "models", 0, "labels", ["stable"]), "is malformed: labels must be an object"),
        (_set("servers", 0, "threads", {"intra_op": 1}), f"plan server entry '{MODEL}' has no 'inter_op'"),
        (_delete("servers", 1, "files", "dir"), "plan server entry 'second': files has no 'dir'"),
        (_set("servers", 1, "files", "flags", "flags.txt"),
         "plan server entry 'second': files.flags must be an absolute path, got 'flags.txt'"),
        (_set("servers", 1, "docker", "run_argv", "docker run"),
         "plan server entry 'second': docker is malformed: run_argv must be a list"),
    ],
)
def test_a_malformed_plan_is_refused_naming_the_file_and_the_problem(written, change, message):
    path = written(change)
    with pytest.raises(ConfigError) as raised:
        plan_record.read_plan(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_a_missing_plan_says_how_to_write_one(tmp_path):
    with pytest.raises(ConfigError, match=f"no plan at {tmp_path / 'plan.json'}; write one with python -m tfs_bench.plan"):
        plan_record.read_plan(tmp_path)


def test_a_plan_that_is_not_json_is_named(tmp_path):
    (tmp_path / "plan.json").write_text('{"schema_version": 1,')
    with pytest.raises(ConfigError, match=f"{tmp_path / 'plan.json'} is not valid JSON: "):
        plan_record.read_plan(tmp_path / "plan.json")
    (tmp_path / "plan.json").write_text("[1]")
    with pytest.raises(ConfigError, match="a plan is a JSON object, got list"):
        plan_record.read_plan(tmp_path / "plan.json")
