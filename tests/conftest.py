import os
import re
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# TensorFlow's C++ start-up chatter is noise in test logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def exactly(message: str) -> str:
    """A `pytest.raises(match=...)` pattern for exactly this message (an error names its problem)."""
    return f"^{re.escape(message)}$"


def run_env() -> dict:
    """Environment for subprocesses that run this checkout's package with `python -m`."""
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), path) if p))


@pytest.fixture(scope="session")
def known_answer_dir(tmp_path_factory) -> Path:
    """A saved_models-style directory holding half_plus_two versions 1 and 2."""
    from tfs_bench.export import known_answer

    root = tmp_path_factory.mktemp("known_answer")
    known_answer.write_models(str(root))
    return root


@pytest.fixture(scope="session")
def tf1_model_dir(tmp_path_factory) -> Path:
    """A saved_models-style directory holding the TF1-style half_plus_two_tf1 version 1."""
    from tfs_bench.export import tf1_known_answer

    root = tmp_path_factory.mktemp("tf1_known_answer")
    tf1_known_answer.write_model(str(root))
    return root


@pytest.fixture(scope="session")
def two_name_server(known_answer_dir, tmp_path_factory):
    """One embedded server shared by the load stage's test modules that only send it requests:
    half_plus_two under two names, gRPC and REST (tests/load/load_support.py). Each server start
    imports TensorFlow and loads the model, seconds each; its exit status is checked at the end."""
    from load_support import start_two_name_server  # tests/load is on the path of the modules asking for it
    from server_support import log_tail

    server = start_two_name_server(known_answer_dir, tmp_path_factory.mktemp("load_server"))
    yield server
    assert server.stop() == 0, log_tail(server)


@pytest.fixture
def python() -> str:
    return sys.executable
