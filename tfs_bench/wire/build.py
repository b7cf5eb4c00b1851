"""Compiles serving.proto into serving_pb2.py with grpcio-tools: the build step of the wire
messages (`python -m tfs_bench.wire.build`), also run on first use when the generated file
is missing or older than the .proto.

The generated file starts with a stamp line holding the .proto's SHA-256, so a changed .proto is
rebuilt and a current one never is. It is written beside the .proto through a temporary file
and a rename: workers starting at once see either no file or a whole one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tfs_bench.errors import ConfigError

HERE = Path(__file__).resolve().parent
PROTO = HERE / "serving.proto"
GENERATED = HERE / "serving_pb2.py"
_PACKAGE_ROOT = HERE.parents[1]  # the directory holding tfs_bench/: the .proto's import root
_PROTOC_TIMEOUT_S = 120
_STAMP = "# tfs_bench.wire: generated from serving.proto, sha256 "


def _stamp(proto: Path) -> str:
    return _STAMP + hashlib.sha256(proto.read_bytes()).hexdigest()


def is_current(proto: Path = PROTO, generated: Path = GENERATED) -> bool:
    """Whether the generated module exists and was generated from the .proto as it is now."""
    try:
        with open(generated, encoding="utf-8") as f:
            return f.readline().rstrip("\n") == _stamp(proto)
    except OSError:
        return False


def build(proto: Path = PROTO, generated: Path = GENERATED, root: Path = _PACKAGE_ROOT) -> Path:
    """Generates the module (the .proto's path under `root` is its import path); returns its
    path. Raises ConfigError naming what is missing or what failed."""
    try:
        import grpc_tools
    except ImportError:
        raise ConfigError(
            f"{generated.name} is not built and grpcio-tools is not installed: pip install grpcio-tools "
            "(it is in requirements.txt), then python -m tfs_bench.wire.build"
        ) from None
    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    relative = proto.relative_to(root)
    with tempfile.TemporaryDirectory(prefix="tfs_bench_wire_") as out:
        # In a child process: protoc run twice in one process can crash it, and its messages are
        # wanted in the error.
        argv = [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"-I{include}", f"--python_out={out}",
                str(relative)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=_PROTOC_TIMEOUT_S)
        if proc.returncode != 0:
            said = " ".join(proc.stderr.split())[:2000] or "no message"
            raise ConfigError(f"protoc could not compile {proto} (exit status {proc.returncode}): {said}")
        code = (Path(out) / relative.with_name(generated.name)).read_text(encoding="utf-8")
    staged = generated.with_name(f".{generated.name}.{os.getpid()}.tmp")
    try:
        staged.write_text(f"{_stamp(proto)}\n{code}", encoding="utf-8")
        os.replace(staged, generated)
    except OSError as e:
        staged.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {generated}: {e.strerror or e}") from None
    return generated


def main() -> int:
    try:
        path = build()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
