"""The contents of the config files the options name: models, batching and monitoring.

Reads and validates without importing TensorFlow, so a bad file fails the server in milliseconds.
"""

from __future__ import annotations

import dataclasses

from tfs_bench import tfs_protos
from tfs_bench.errors import ConfigError
from tfs_bench.server import batching
from tfs_bench.server import model_config
from tfs_bench.server.model_config import ModelConfig
from tfs_bench.server.options import ServerOptions


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    models: tuple[ModelConfig, ...]
    batching: batching.BatchingOptions | None = None  # None when batching is off
    prometheus_path: str | None = None  # None when Prometheus export is off

    def __post_init__(self):
        if self.prometheus_path is not None and not self.prometheus_path.startswith("/"):
            raise ConfigError(f"the Prometheus path must start with '/', got {self.prometheus_path!r}")


def read_models(options: ServerOptions) -> tuple[ModelConfig, ...]:
    if options.model_config_file:
        return model_config.read_file(options.model_config_file)
    return model_config.single_model(options.model_name, options.model_base_path)


def read_batching(options: ServerOptions) -> batching.BatchingOptions | None:
    if not options.enable_batching:
        return None
    if not options.batching_parameters_file:
        return batching.BatchingOptions()  # TF Serving's defaults
    parameters = tfs_protos.read_text(options.batching_parameters_file, tfs_protos.BatchingParameters)
    try:
        return batching.BatchingOptions.from_proto(parameters)
    except ConfigError as e:
        raise ConfigError(f"{options.batching_parameters_file}: {e}") from None


def read_prometheus_path(options: ServerOptions) -> str | None:
    if not options.monitoring_config_file:
        return None
    monitoring = tfs_protos.read_text(options.monitoring_config_file, tfs_protos.MonitoringConfig)
    prometheus = monitoring.prometheus_config
    if not prometheus.enable:
        return None
    return prometheus.path or tfs_protos.DEFAULT_PROMETHEUS_PATH


def read(options: ServerOptions) -> ServerConfig:
    """Raises ConfigError naming the file and the problem."""
    return ServerConfig(
        models=read_models(options),
        batching=read_batching(options),
        prometheus_path=read_prometheus_path(options),
    )
