"""Exceptions the suite raises for bad input; their messages are shown to users as they are."""


class TfsBenchError(Exception):
    """Base class: an error whose message is complete and safe to print without a traceback."""


class ConfigError(TfsBenchError):
    """A config file, flag combination or plan is invalid."""


class ModelError(TfsBenchError):
    """A model name, model directory or SavedModel is unusable."""
