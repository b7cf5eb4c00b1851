"""The JSON worker: a child process of the server that parses large REST predict bodies and
encodes large responses, so the serving process's GIL is not held for seconds while it does.

It runs `json_tensors`' own code, so an offloaded request is answered exactly as an in-process
one: the same arrays, the same errors and messages. It imports no TensorFlow.

The protocol, on its stdin and stdout, is frames of a one-byte tag, an 8-byte little-endian
length and the payload. The parent sends:
  P raw body       parse it as a predict body and keep it; reply {"format", "signature_name"}
  D input specs    decode the kept body for a signature whose inputs are
                   [[alias, numpy dtype, dtype name], ...]; reply the arrays; forget the body
  X                forget the kept body (the request failed before its decode)
  E arrays         encode outputs ({"format"} and the arrays); reply the response's JSON bytes
Each reply is tagged O (ok) or E (an error: {"code", "message"} of a ServingError, or
{"kind": "memory" | "recursion" | "exception", ...}). Arrays travel as a JSON header line
followed by .npy blobs (read with allow_pickle=False); bytes tensors as base64 in the header.
Nothing here is unpickled or evaluated.
"""

from __future__ import annotations

import base64
import ctypes
import dataclasses
import gc
import io
import json
import signal
import struct
import sys
from typing import BinaryIO

import numpy as np

from tfs_bench.server import json_tensors
from tfs_bench.server.status import ServingError

PARSE, DECODE, DROP, ENCODE = b"P", b"D", b"X", b"E"
_LARGE_BYTES = 8 << 20
OK, ERROR = b"O", b"E"
_FRAME = struct.Struct("<cQ")


def write_frame(stream: BinaryIO, tag: bytes, payload: bytes) -> None:
    stream.write(_FRAME.pack(tag, len(payload)))
    stream.write(payload)
    stream.flush()


def read_frame(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """(tag, payload), or None at the end of the stream (a frame cut short reads as the end)."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    tag, length = _FRAME.unpack(head)
    payload = stream.read(length)
    return (tag, payload) if len(payload) == length else None


def pack_arrays(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """`meta` and the arrays, in order: numeric ones as .npy, bytes tensors as base64 lists."""
    entries, blobs = [], []
    for alias, array in arrays.items():
        if array.dtype == object:
            entries.append({"alias": alias, "shape": list(array.shape),
                            "b64": [base64.b64encode(v).decode() for v in array.reshape(-1).tolist()]})
            continue
        blob = io.BytesIO()
        np.save(blob, np.ascontiguousarray(array).reshape(array.shape), allow_pickle=False)  # 0-d stays 0-d
        entries.append({"alias": alias, "npy_bytes": blob.tell()})
        blobs.append(blob.getvalue())
    header = json.dumps({**meta, "arrays": entries}).encode() + b"\n"
    return header + b"".join(blobs)


def unpack_arrays(payload: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    end = payload.index(b"\n")
    meta = json.loads(payload[:end])
    offset, arrays = end + 1, {}
    for entry in meta.pop("arrays"):
        if "b64" in entry:
            values = [base64.b64decode(v) for v in entry["b64"]]
            array = np.empty(len(values), dtype=object)
            array[:] = values
            arrays[entry["alias"]] = array.reshape(entry["shape"])
            continue
        size = entry["npy_bytes"]
        arrays[entry["alias"]] = np.load(io.BytesIO(payload[offset:offset + size]), allow_pickle=False)
        offset += size
    return meta, arrays


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What json_tensors reads of a signature input."""

    numpy_dtype: np.dtype
    dtype_name: str


@dataclasses.dataclass(frozen=True)
class SignatureInputs:
    """A signature as json_tensors' decoder sees it: its inputs by alias, in signature order."""

    inputs: dict[str, InputSpec]

    @classmethod
    def from_json(cls, specs: list) -> "SignatureInputs":
        return cls({alias: InputSpec(np.dtype(dtype), name) for alias, dtype, name in specs})


def _error(e: BaseException) -> bytes:
    if isinstance(e, ServingError):
        return json.dumps({"code": e.code.name, "message": e.message}).encode()
    if isinstance(e, MemoryError):
        return json.dumps({"kind": "memory"}).encode()
    if isinstance(e, RecursionError):
        return json.dumps({"kind": "recursion"}).encode()
    return json.dumps({"kind": "exception", "type": type(e).__name__, "message": str(e)[:2000]}).encode()


def _give_back_memory() -> None:
    """Returns freed memory to the system: a parsed document is tens of times its JSON, and an
    idle worker should not keep the peak of the largest body it ever read (glibc only)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def serve(commands: BinaryIO, replies: BinaryIO) -> None:
    body: json_tensors.PredictBody | None = None
    heavy = False  # a large body or response passed through since memory was last given back
    while (frame := read_frame(commands)) is not None:
        tag, payload = frame
        heavy = heavy or len(payload) >= _LARGE_BYTES
        try:
            if tag == PARSE:
                body = None
                body = json_tensors.parse_predict_body(payload)
                reply = json.dumps({"format": body.format, "signature_name": body.signature_name}).encode()
            elif tag == DECODE:
                kept, body = body, None
                if kept is None:
                    raise RuntimeError("decode without a parsed body")
                signature = SignatureInputs.from_json(json.loads(payload))
                reply = pack_arrays({}, json_tensors.decoder(kept)(signature))
                del kept
            elif tag == DROP:
                body, reply = None, b""
            elif tag == ENCODE:
                meta, arrays = unpack_arrays(payload)
                reply = json.dumps(json_tensors.encode_outputs(arrays, meta["format"])).encode()
                del arrays
            else:
                raise RuntimeError(f"unknown command {tag!r}")
        except BaseException as e:  # noqa: BLE001 - every command gets a reply; the parent decides
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            body = None
            reply, tag = _error(e), ERROR
        else:
            tag = OK
        heavy = heavy or len(reply) >= _LARGE_BYTES
        write_frame(replies, tag, reply)
        del reply, payload
        if heavy and body is None:  # after the reply: the request does not wait for this
            _give_back_memory()
            heavy = False


def main() -> int:
    # Ctrl-C in a terminal reaches the server's whole process group: the server stops this worker
    # by closing its stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol_out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the protocol
    serve(sys.stdin.buffer, protocol_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
