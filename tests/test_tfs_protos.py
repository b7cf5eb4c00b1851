import pytest
from google.protobuf import descriptor

from tfs_bench import tfs_protos
from tfs_bench.errors import ConfigError

_INT64_VALUE = "google.protobuf.Int64Value"


def test_batching_parameters_have_tf_serving_field_numbers_and_types():
    fields = {f.name: f for f in tfs_protos.BatchingParameters.DESCRIPTOR.fields}
    assert tfs_protos.BatchingParameters.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"
    expected = {
        "max_batch_size": (1, _INT64_VALUE),
        "batch_timeout_micros": (2, _INT64_VALUE),
        "max_enqueued_batches": (3, _INT64_VALUE),
        "num_batch_threads": (4, _INT64_VALUE),
        "thread_pool_name": (5, "google.protobuf.StringValue"),
    }
    for name, (number, type_name) in expected.items():
        assert fields[name].number == number
        assert fields[name].message_type.full_name == type_name
    assert fields["allowed_batch_sizes"].number == 6
    assert fields["allowed_batch_sizes"].type == descriptor.FieldDescriptor.TYPE_INT64
    assert fields["allowed_batch_sizes"].is_repeated
    assert fields["pad_variable_length_inputs"].number == 7
    assert fields["pad_variable_length_inputs"].type == descriptor.FieldDescriptor.TYPE_BOOL


def test_monitoring_config_field_numbers():
    monitoring = tfs_protos.MonitoringConfig.DESCRIPTOR
    assert monitoring.fields_by_name["prometheus_config"].number == 1
    prometheus = tfs_protos.PrometheusConfig.DESCRIPTOR
    assert prometheus.fields_by_name["enable"].number == 1
    assert prometheus.fields_by_name["path"].number == 2


def test_batching_text_is_tf_serving_text_format():
    # The form of TF Serving's documented batching_parameters_file examples.
    text = """
        max_batch_size { value: 128 }
        batch_timeout_micros { value: 0 }
        max_enqueued_batches { value: 1000000 }
        num_batch_threads { value: 8 }
        allowed_batch_sizes: 32
        allowed_batch_sizes: 128
    """
    params = tfs_protos.parse_text(text, tfs_protos.BatchingParameters)
    assert params.max_batch_size.value == 128
    assert params.HasField("batch_timeout_micros")  # an explicit 0 is distinguishable from unset
    assert list(params.allowed_batch_sizes) == [32, 128]
    again = tfs_protos.parse_text(tfs_protos.to_text(params), tfs_protos.BatchingParameters)
    assert again == params


def test_monitoring_round_trip():
    text = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
    config = tfs_protos.parse_text(text, tfs_protos.MonitoringConfig)
    assert config.prometheus_config.enable
    assert tfs_protos.parse_text(tfs_protos.to_text(config), tfs_protos.MonitoringConfig) == config


def test_parse_error_reads_as_tf_servings():
    with pytest.raises(ConfigError) as error:
        tfs_protos.parse_text("max_batch_size { valu: 3 }", tfs_protos.BatchingParameters, source="batching.config")

    assert str(error.value) == (
        "Error parsing text-format tensorflow.serving.BatchingParameters: 1:18: "
        'Message type "google.protobuf.Int64Value" has no field named "valu". '
        "Invalid protobuf file: 'batching.config'"
    )


def test_parse_error_without_a_position():
    with pytest.raises(ConfigError, match=r"^Error parsing text-format tensorflow\.serving\.BatchingParameters: "
                                          r".*Invalid protobuf file: 'b\.config'$"):
        tfs_protos.parse_text("max_batch_size: 3", tfs_protos.BatchingParameters, source="b.config")


def test_read_text_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read ModelServerConfig file .*nope.config"):
        tfs_protos.read_text(tmp_path / "nope.config", tfs_protos.ModelServerConfig)
