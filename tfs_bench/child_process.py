"""How the suite starts its own modules in child processes (`python -m tfs_bench.<module>`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The directory holding the tfs_bench package: children must import this same checkout, even
# when it is not installed and the parent was started from another directory.
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment, with the package importable and TensorFlow's C++ logs quiet."""
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _PACKAGE_PARENT not in paths:
        env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_PARENT, *paths])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(overrides)
    return env
