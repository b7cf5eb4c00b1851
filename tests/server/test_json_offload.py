"""REST JSON parsed and encoded in a JSON worker process answers exactly as in the server's own
process (the same arrays, the same errors, the same bytes); a worker that dies costs one 503."""

import json
import os
import signal
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest

from conftest import REPO_ROOT
from conftest import run_env
from tfs_bench.server import json_tensors
from tfs_bench.server.json_offload import JsonOffload
from tfs_bench.server.json_worker import SignatureInputs
from tfs_bench.server.json_worker import pack_arrays
from tfs_bench.server.json_worker import unpack_arrays
from tfs_bench.server.status import ServingError

SIGNATURES = {
    "images": SignatureInputs.from_json([["images", "<f4", "DT_FLOAT"]]),
    "pixels": SignatureInputs.from_json([["pixels", "|u1", "DT_UINT8"]]),
    "ids": SignatureInputs.from_json([["ids", "<i4", "DT_INT32"]]),
    "two": SignatureInputs.from_json([["a", "<f8", "DT_DOUBLE"], ["b", "|b1", "DT_BOOL"]]),
    "text": SignatureInputs.from_json([["text", "|O", "DT_STRING"]]),
}
BODIES = [
    ("images", {"instances": [[[1.0, 2.5], [3.0, 4.0]]]}),
    ("images", {"inputs": [[1, 2], [3, 4]], "signature_name": "serving_default"}),
    ("images", {"instances": [{"images": [1.0]}, {"images": [2.0]}]}),
    ("pixels", {"instances": [[0, 255]]}),
    ("pixels", {"instances": [[0, 256]]}),  # out of range: INVALID_ARGUMENT, never a silent wrap
    ("pixels", {"instances": [[-1]]}),
    ("ids", {"inputs": [1.5, 2.5]}),
    ("ids", {"inputs": [float("nan")]}),
    ("ids", {"inputs": [10**30]}),
    ("images", {"inputs": [[1.0], [2.0, 3.0]]}),  # ragged
    ("images", {"inputs": ["x"]}),
    ("two", {"inputs": {"a": [1.0, 2.0], "b": [True, False]}}),
    ("two", {"instances": [{"a": 1.0, "b": True}, {"a": 2.0}]}),
    ("two", {"inputs": [1.0]}),  # unnamed input for a signature of two
    ("two", {"inputs": {"a": [1.0], "b": [True], "c": [1]}}),
    ("text", {"instances": ["héllo", {"b64": "AAEC"}]}),
    ("text", {"instances": [{"b64": "not base64!"}]}),
    ("images", {"instances": []}),
    ("images", {"instances": [1], "inputs": [1]}),
    ("images", {"signature_name": 3, "inputs": [1]}),
    ("images", [1, 2]),
]
RAW_BODIES = [b"{not json", b'{"inputs": [1e400]}', b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
              b'{"inputs": [' + b"9" * 5000 + b"]}", b'{"inputs": [1.0]} trailing', b"\xff\xfe{"]


@pytest.fixture(scope="module")
def offload():
    offload = JsonOffload(workers=2, min_body_bytes=0)
    yield offload
    offload.close()


def in_process(raw: bytes, signature):
    """What the server's own process makes of a body: (format, signature_name, arrays) or the error."""
    try:
        body = json_tensors.parse_predict_body(raw)
        return body.format, body.signature_name, json_tensors.decoder(body)(signature)
    except ServingError as e:
        return e.code, e.message


def offloaded(offload: JsonOffload, raw: bytes, signature):
    try:
        with offload.predict_body(raw) as body:
            return body.format, body.signature_name, body.decode(signature)
    except ServingError as e:
        return e.code, e.message


def assert_same(got, want):
    assert len(got) == len(want) and got[:-1] == want[:-1], (got, want)
    if isinstance(want[-1], dict):
        assert list(got[-1]) == list(want[-1])
        for alias, array in want[-1].items():
            assert got[-1][alias].dtype == array.dtype and got[-1][alias].shape == array.shape, alias
            assert got[-1][alias].tolist() == array.tolist(), alias
    else:
        assert got[-1] == want[-1]


@pytest.mark.parametrize("name, body", BODIES, ids=[f"{i}-{name}" for i, (name, _) in enumerate(BODIES)])
def test_a_body_decodes_in_the_worker_as_in_the_server(offload, name, body):
    raw = json.dumps(body).encode()
    assert_same(offloaded(offload, raw, SIGNATURES[name]), in_process(raw, SIGNATURES[name]))


@pytest.mark.parametrize("raw", RAW_BODIES, ids=["not_json", "too_big", "deep", "many_digits", "trailing", "not_text"])
def test_a_malformed_body_fails_in_the_worker_as_in_the_server(offload, raw):
    got, want = offloaded(offload, raw, SIGNATURES["images"]), in_process(raw, SIGNATURES["images"])
    assert got[0] == want[0] == grpc.StatusCode.INVALID_ARGUMENT and got == want


def test_every_kind_of_body_was_tried_both_ways(offload):
    # The lists above are not all successes or all failures: both paths are exercised.
    outcomes = [in_process(json.dumps(b).encode(), SIGNATURES[n]) for n, b in BODIES]
    assert 6 <= sum(isinstance(o[-1], dict) for o in outcomes) <= len(BODIES) - 6


OUTPUTS = [
    ({"y": np.array([[0.5, 1.25]], dtype=np.float32)}, json_tensors.ROW),
    ({"y": np.array([1, 2], dtype=np.int64), "z": np.array([True, False])}, json_tensors.ROW),
    ({"y": np.array([1, 2], dtype=np.int64), "z": np.array([3], dtype=np.int64)}, json_tensors.ROW),  # batch sizes
    ({"y": np.array([1.0, 2.0]), "z": np.array([3.0])}, json_tensors.COLUMNAR),
    ({"label": np.array([b"cat", b"\xff"], dtype=object), "image_bytes": np.array([b"ab"], dtype=object)},
     json_tensors.COLUMNAR),
    ({"scalar": np.array(2.5, dtype=np.float32)}, json_tensors.COLUMNAR),
]


@pytest.mark.parametrize("outputs, body_format", OUTPUTS, ids=[str(i) for i in range(len(OUTPUTS))])
def test_outputs_encode_in_the_worker_to_the_bytes_the_server_writes(offload, outputs, body_format):
    try:
        want = json.dumps(json_tensors.encode_outputs(outputs, body_format)).encode()
    except ServingError as e:
        with pytest.raises(ServingError) as info:
            offload.encode(outputs, body_format)
        assert (info.value.code, info.value.message) == (e.code, e.message)
        return
    assert offload.encode(outputs, body_format) == want


def test_small_outputs_and_no_workers_stay_in_process():
    assert JsonOffload(workers=2).encode({"y": np.zeros(10)}, json_tensors.ROW) is None
    none = JsonOffload(workers=0, min_body_bytes=0)
    assert not none.wants(b"{}") and none.encode({"y": np.zeros(10**6)}, json_tensors.ROW) is None
    assert JsonOffload(workers=1).wants(b" " * (1 << 20)) and not JsonOffload(workers=1).wants(b" " * 1000)


def test_arrays_travel_whole_without_pickle():
    arrays = {"f": np.arange(6, dtype=np.float16).reshape(2, 3), "s": np.array([[b"a"], [b"\x00b"]], dtype=object),
              "b": np.array([True])}
    meta, back = unpack_arrays(pack_arrays({"format": "row"}, arrays))
    assert meta == {"format": "row"} and list(back) == ["f", "s", "b"]
    for alias, array in arrays.items():
        assert back[alias].dtype == array.dtype and back[alias].tolist() == array.tolist()


def test_a_worker_that_dies_costs_its_request_a_503_and_is_replaced():
    offload = JsonOffload(workers=1, min_body_bytes=0)
    try:
        raw = json.dumps({"inputs": [1.0]}).encode()
        with offload.predict_body(raw) as body:
            (worker,) = [w for w in [body._worker] if w is not None]
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.wait()
            with pytest.raises(ServingError) as info:
                body.decode(SIGNATURES["images"])
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        assert "the JSON worker process exited while handling this request" in info.value.message
        assert offload.live_workers == 0
        assert_same(offloaded(offload, raw, SIGNATURES["images"]), in_process(raw, SIGNATURES["images"]))
        assert offload.live_workers == 1
    finally:
        offload.close()
    assert offload.live_workers == 0


def test_requests_beyond_the_workers_wait_for_one_and_close_ends_them():
    # 8 threads share 2 workers; each gets its own answer.
    offload = JsonOffload(workers=2, min_body_bytes=0)
    raws = [json.dumps({"inputs": [float(i)] * 1000}).encode() for i in range(8)]
    results = [None] * len(raws)

    def one(i):
        results[i] = offloaded(offload, raws[i], SIGNATURES["images"])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(raws))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [r[-1]["images"][0] for r in results] == [float(i) for i in range(8)]
    assert offload.live_workers == 2
    processes = [w.process for w in offload._idle]
    offload.close()
    assert offload.live_workers == 0 and all(p.poll() == 0 for p in processes)
    with pytest.raises(ServingError, match="the server is shutting down"):
        with offload.predict_body(b"{}"):
            pass


def test_the_worker_imports_no_tensorflow():
    proc = subprocess.run([sys.executable, "-c", "import sys, tfs_bench.server.json_worker; print('tensorflow' in sys.modules)"],
                          capture_output=True, text=True, env=run_env(), cwd=REPO_ROOT, timeout=120)
    assert proc.stdout == "False\n", proc.stderr
