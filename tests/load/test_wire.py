"""The load stage's own TF Serving messages: the same fields and bytes as TensorFlow's protos,
built from the .proto by grpcio-tools (rebuilt when it changes), and no TensorFlow in the
generator."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from conftest import exactly
from conftest import run_env
from load_support import MODEL
from load_support import QUICK_FLAGS
from tfs_bench.errors import ConfigError
from tfs_bench import wire
from tfs_bench.load.request_bodies import InputSpec
from tfs_bench.load.request_bodies import encode_grpc
from tfs_bench.wire import build


@pytest.fixture
def server(two_name_server):
    """The load tests' shared server (tests/conftest.py)."""
    return two_name_server


SERVING = wire.messages()


def tensorflow_messages():
    from tensorflow.core.framework import tensor_pb2
    from tensorflow.core.framework import tensor_shape_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2
    from tensorflow_serving.apis import get_model_status_pb2
    from tensorflow_serving.apis import model_pb2
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import status_pb2

    return {
        "TensorShapeProto": tensor_shape_pb2.TensorShapeProto,
        "TensorShapeProto.Dim": tensor_shape_pb2.TensorShapeProto.Dim,
        "TensorProto": tensor_pb2.TensorProto,
        "ModelSpec": model_pb2.ModelSpec,
        "PredictRequest": predict_pb2.PredictRequest,
        "PredictResponse": predict_pb2.PredictResponse,
        "TensorInfo": meta_graph_pb2.TensorInfo,
        "SignatureDef": meta_graph_pb2.SignatureDef,
        "GetModelMetadataRequest": get_model_metadata_pb2.GetModelMetadataRequest,
        "GetModelMetadataResponse": get_model_metadata_pb2.GetModelMetadataResponse,
        "SignatureDefMap": get_model_metadata_pb2.SignatureDefMap,
        "StatusProto": status_pb2.StatusProto,
        "ModelVersionStatus": get_model_status_pb2.ModelVersionStatus,
        "GetModelStatusRequest": get_model_status_pb2.GetModelStatusRequest,
        "GetModelStatusResponse": get_model_status_pb2.GetModelStatusResponse,
    }


def ours(name):
    message = SERVING
    for part in name.split("."):
        message = getattr(message, part)
    return message


def field_shape(field):
    """What decides a field's bytes on the wire: number, type, repeated, and for a map or message
    the shape of what it holds (by its own name, without the package)."""
    inner = field.message_type
    if inner is not None and inner.GetOptions().map_entry:
        inner = (field_shape(inner.fields_by_name["key"]), field_shape(inner.fields_by_name["value"]))
    elif inner is not None:
        inner = inner.full_name.split(".")[-1]
    return (field.number, field.type, field.is_repeated if hasattr(field, "is_repeated") else field.label == 3, inner)


@pytest.mark.parametrize("name", list(tensorflow_messages()))
def test_every_declared_field_is_tensorflows_field_with_its_number_and_type(name):
    theirs = tensorflow_messages()[name].DESCRIPTOR
    mine = ours(name).DESCRIPTOR
    assert mine.fields, name
    for field in mine.fields:
        assert field.name in theirs.fields_by_name, f"{name}.{field.name} is not a field of {theirs.full_name}"
        assert field_shape(field) == field_shape(theirs.fields_by_name[field.name]), f"{name}.{field.name}"


def test_the_dtype_enum_is_tensorflows_non_reference_values():
    from tensorflow.core.framework import types_pb2

    theirs = {v.name: v.number for v in types_pb2.DataType.DESCRIPTOR.values if not v.name.endswith("_REF")}
    assert {v.name: v.number for v in SERVING.DataType.DESCRIPTOR.values} == theirs


def test_the_model_version_states_are_tensorflow_servings():
    from tensorflow_serving.apis import get_model_status_pb2

    theirs = get_model_status_pb2.ModelVersionStatus.State.DESCRIPTOR
    assert {v.name: v.number for v in SERVING.ModelVersionStatus.State.DESCRIPTOR.values} == {
        v.name: v.number for v in theirs.values
    }


def test_a_request_the_generator_encodes_is_read_by_tensorflow_serving_as_the_same_tensors():
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    rng = np.random.default_rng(7)
    batch = {"images": rng.random((2, 3, 4, 3), dtype=np.float32), "ids": np.array([[1, 2], [3, 4]], dtype=np.int64)}
    specs = (InputSpec("ids", "DT_INT64", (-1, 2)), InputSpec("images", "DT_FLOAT", (-1, 3, 4, 3)))
    request = predict_pb2.PredictRequest.FromString(encode_grpc("m", "serving_default", specs, batch))
    assert (request.model_spec.name, request.model_spec.signature_name) == ("m", "serving_default")
    assert sorted(request.inputs) == ["ids", "images"]
    for alias, array in batch.items():
        got = tf.make_ndarray(request.inputs[alias])
        assert got.dtype == array.dtype and np.array_equal(got, array), alias


def test_metadata_tensorflow_serving_sends_reads_back_with_its_signatures():
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    defs = get_model_metadata_pb2.SignatureDefMap()
    signature = defs.signature_def["serving_default"]
    signature.method_name = "tensorflow/serving/predict"
    x = signature.inputs["x"]
    x.name, x.dtype = "x:0", types_pb2.DT_UINT8
    for size in (-1, 224, 224, 3):
        x.tensor_shape.dim.add(size=size)
    signature.outputs["y"].tensor_shape.unknown_rank = True
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = "m"
    response.model_spec.version.value = 3
    response.metadata["signature_def"].Pack(defs)

    mine = SERVING.GetModelMetadataResponse.FromString(response.SerializeToString())
    assert (mine.model_spec.name, mine.model_spec.version.value) == ("m", 3)
    assert mine.metadata["signature_def"].type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    read = SERVING.SignatureDefMap.FromString(mine.metadata["signature_def"].value).signature_def["serving_default"]
    assert read.method_name == "tensorflow/serving/predict"
    assert (read.inputs["x"].name, SERVING.DataType.Name(read.inputs["x"].dtype)) == ("x:0", "DT_UINT8")
    assert [d.size for d in read.inputs["x"].tensor_shape.dim] == [-1, 224, 224, 3]
    assert read.outputs["y"].tensor_shape.unknown_rank


def copy_proto(tmp_path):
    proto = tmp_path / build.PROTO.relative_to(build.PROTO.parents[2])  # tfs_bench/wire/serving.proto
    proto.parent.mkdir(parents=True)
    shutil.copy(build.PROTO, proto)
    return proto, proto.with_name(build.GENERATED.name)


def test_the_build_writes_a_stamped_module_and_rebuilds_only_when_the_proto_changes(tmp_path):
    proto, generated = copy_proto(tmp_path)
    assert not build.is_current(proto, generated)
    assert build.build(proto, generated, tmp_path) == generated
    assert build.is_current(proto, generated)
    assert generated.read_text().splitlines()[1:] == build.GENERATED.read_text().splitlines()[1:]
    assert "_PREDICTREQUEST" in generated.read_text() and list(generated.parent.glob(".*.tmp")) == []
    proto.write_text(proto.read_text() + "\n// changed\n")
    assert not build.is_current(proto, generated)
    build.build(proto, generated, tmp_path)
    assert build.is_current(proto, generated)


def test_a_build_that_cannot_run_or_fails_says_why(tmp_path, monkeypatch):
    proto, generated = copy_proto(tmp_path)
    proto.write_text("syntax = \"proto3\";\nmessage Broken {\n")
    with pytest.raises(ConfigError, match=f"protoc could not compile {proto} \\(exit status 1\\): .*serving.proto:3"):
        build.build(proto, generated, tmp_path)
    assert not generated.exists()
    monkeypatch.setitem(sys.modules, "grpc_tools", None)  # as on a machine without grpcio-tools
    with pytest.raises(ConfigError, match=exactly(
            "serving_pb2.py is not built and grpcio-tools is not installed: pip install grpcio-tools "
            "(it is in requirements.txt), then python -m tfs_bench.wire.build")):
        build.build(proto, generated, tmp_path)


def test_the_build_command_builds_and_says_where():
    proc = subprocess.run([sys.executable, "-m", "tfs_bench.wire.build"], capture_output=True, text=True,
                          env=run_env(), cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"built {build.GENERATED}\n" and build.is_current()


# Runs the load CLI in this interpreter, then reports which heavy packages it imported.
_PROBE = """
import json, runpy, sys
sys.argv = ["tfs_bench.load", *sys.argv[1:]]
status = 0
try:
    runpy.run_module("tfs_bench.load", run_name="__main__", alter_sys=True)
except SystemExit as e:
    status = 0 if e.code is None else e.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "tensorflow_serving", "keras", "ray"})
# VmHWM: this address space's peak since exec (ru_maxrss would count the pytest parent's pages at fork).
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"status": status, "heavy": heavy, "peak_rss_mib": int(hwm.split()[1]) / 1024}))
"""


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_a_load_run_imports_no_tensorflow_in_the_generator(server, tmp_path, protocol):
    target = server.grpc_target if protocol == "grpc" else server.rest_address
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, f"--target={target}", f"--protocol={protocol}", f"--models={MODEL}",
         f"--output_dir={tmp_path / 'run'}", *QUICK_FLAGS],
        capture_output=True, text=True, env=run_env(), cwd=REPO_ROOT, timeout=180,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe["status"] == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").is_file()
    assert probe["heavy"] == []
    assert probe["peak_rss_mib"] < 300, probe  # about 0.7 GB when TensorFlow came with the protos


def test_a_worker_imports_no_tensorflow():
    worker = subprocess.run(
        [sys.executable, "-c", "import sys, tfs_bench.load.worker; print('tensorflow' in sys.modules)"],
        capture_output=True, text=True, env=run_env(), cwd=REPO_ROOT, timeout=120,
    )
    assert worker.stdout == "False\n", worker.stderr
