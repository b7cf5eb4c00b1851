"""TF Serving config messages and their text format.

`ModelServerConfig` ships in the tensorflow-serving-api wheel. `BatchingParameters` and
`MonitoringConfig` do not, so they are defined here with TF Serving's package, names and field
numbers; files written with them are read unchanged by `tensorflow_model_server`.
"""

from __future__ import annotations

import os

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from tfs_bench.errors import ConfigError

ModelServerConfig = model_server_config_pb2.ModelServerConfig

_FIELD = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, type_name: str = "", repeated: bool = False):
    field = _FIELD(
        name=name,
        number=number,
        type=kind,
        label=_FIELD.LABEL_REPEATED if repeated else _FIELD.LABEL_OPTIONAL,
    )
    if type_name:
        field.type_name = type_name
    return field


def _build_messages():
    # Same layout as tensorflow_serving/servables/tensorflow/session_bundle_config.proto and
    # tensorflow_serving/config/monitoring_config.proto.
    int64_value = ".google.protobuf.Int64Value"
    string_value = ".google.protobuf.StringValue"
    msg = _FIELD.TYPE_MESSAGE
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tfs_bench/tfs_serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    file_proto.message_type.add(
        name="BatchingParameters",
        field=[
            _field("max_batch_size", 1, msg, int64_value),
            _field("batch_timeout_micros", 2, msg, int64_value),
            _field("max_enqueued_batches", 3, msg, int64_value),
            _field("num_batch_threads", 4, msg, int64_value),
            _field("thread_pool_name", 5, msg, string_value),
            _field("allowed_batch_sizes", 6, _FIELD.TYPE_INT64, repeated=True),
            _field("pad_variable_length_inputs", 7, _FIELD.TYPE_BOOL),
        ],
    )
    file_proto.message_type.add(
        name="PrometheusConfig",
        field=[_field("enable", 1, _FIELD.TYPE_BOOL), _field("path", 2, _FIELD.TYPE_STRING)],
    )
    file_proto.message_type.add(
        name="MonitoringConfig",
        field=[_field("prometheus_config", 1, msg, ".tensorflow.serving.PrometheusConfig")],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file_proto)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("BatchingParameters", "PrometheusConfig", "MonitoringConfig")
    )


BatchingParameters, PrometheusConfig, MonitoringConfig = _build_messages()

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def to_text(message) -> str:
    return text_format.MessageToString(message)


def parse_text(text: str, message_class, source: str = "<string>"):
    """Parses a text-format proto; a syntax error reads as TF Serving reports it.

    TF Serving's start-up prints protobuf's own line, "Error parsing text-format
    tensorflow.serving.ModelServerConfig: LINE:COL: MESSAGE", then fails with "Invalid protobuf
    file: '<path>'"; one message here carries both.
    """
    message = message_class()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ConfigError(
            f"Error parsing text-format {message_class.DESCRIPTOR.full_name}: {_position(e)}"
            f"{_parse_message(e)}. Invalid protobuf file: '{source}'"
        ) from None
    return message


def _position(error: text_format.ParseError) -> str:
    line, column = error.GetLine(), error.GetColumn()
    return f"{line}:{column}: " if line is not None else ""


def _parse_message(error: text_format.ParseError) -> str:
    # str() is "LINE:COL : message"; the position is printed in protobuf's C++ form instead.
    text = str(error)
    if error.GetLine() is not None:
        text = text.split(" : ", 1)[-1]
    return text.rstrip(".")


def read_text(path: str | os.PathLike, message_class):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {message_class.DESCRIPTOR.name} file {path}: {e.strerror}") from None
    return parse_text(text, message_class, source=str(path))
