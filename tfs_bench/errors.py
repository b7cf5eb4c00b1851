"""Exceptions the suite raises for bad input; their messages are shown to users as they are."""

from __future__ import annotations

import functools
import sys


class TfsBenchError(Exception):
    """Base class: an error whose message is complete and safe to print without a traceback."""


class ConfigError(TfsBenchError):
    """A config file, flag combination or plan is invalid."""


class ModelError(TfsBenchError):
    """A model name, model directory or SavedModel is unusable."""


class LoadError(TfsBenchError):
    """The load generator could not measure: a target is unreachable or a worker process failed."""


class RunFileError(TfsBenchError, ValueError):
    """A file of a run directory is missing, of another schema version, or not what it should hold."""


class LaunchError(TfsBenchError):
    """A server could not be started, stopped, or made ready (see tfs_bench.launch.launchers)."""


class AnalysisError(TfsBenchError, ValueError):
    """Measurements handed to the analysis stage cannot give the figure asked for (see tfs_bench.analysis)."""


def exits_cleanly(main):
    """Wraps an absl `main`: a TfsBenchError becomes `error: <message>` and exit status 1."""

    @functools.wraps(main)
    def wrapper(argv):
        try:
            return main(argv)
        except TfsBenchError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    return wrapper
