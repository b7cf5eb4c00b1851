"""GPU memory fraction and thread pools, with tf.config faked at its narrowest seam."""

import dataclasses
import logging

from tfs_bench.server import devices

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class FakeDevice:
    name: str
    device_type: str = "GPU"


@dataclasses.dataclass(frozen=True)
class FakeLogicalDeviceConfiguration:
    memory_limit: int


class FakeThreading:
    def __init__(self):
        self.intra = self.inter = None

    def set_intra_op_parallelism_threads(self, n):
        self.intra = n

    def set_inter_op_parallelism_threads(self, n):
        self.inter = n


class FakeTfConfig:
    """The parts of tf.config the server uses; records what was set."""

    LogicalDeviceConfiguration = FakeLogicalDeviceConfiguration

    def __init__(self, gpus=()):
        self.gpus = [FakeDevice(f"/physical_device:GPU:{i}") for i in range(len(gpus))]
        self.configured = {}
        self.threading = FakeThreading()

    def list_physical_devices(self, device_type):
        assert device_type == "GPU"
        return list(self.gpus)

    def set_logical_device_configuration(self, device, configurations):
        self.configured[device.name] = configurations


def test_fraction_limits_every_visible_gpu():
    totals = [80 * GIB, 16 * GIB]
    config = FakeTfConfig(gpus=totals)

    limits = devices.limit_gpu_memory(0.25, tf_config=config, total_memory_bytes=totals.__getitem__)

    assert [l.limit_mib for l in limits] == [20 * 1024, 4 * 1024]
    assert config.configured == {
        "/physical_device:GPU:0": [FakeLogicalDeviceConfiguration(20 * 1024)],
        "/physical_device:GPU:1": [FakeLogicalDeviceConfiguration(4 * 1024)],
    }


def test_fraction_without_gpus_is_not_applicable(caplog):
    caplog.set_level(logging.INFO, logger="absl")
    config = FakeTfConfig(gpus=[])

    limits = devices.limit_gpu_memory(0.5, tf_config=config, total_memory_bytes=lambda i: 1 / 0)

    assert limits == [] and config.configured == {}
    assert "not applicable" in caplog.text


def test_zero_fraction_leaves_tensorflows_default():
    config = FakeTfConfig(gpus=[16 * GIB])

    assert devices.limit_gpu_memory(0.0, tf_config=config) == []
    assert config.configured == {}


def test_thread_pools_are_set_only_when_asked():
    config = FakeTfConfig()

    devices.configure_threads(3, 0, tf_config=config)

    assert (config.threading.intra, config.threading.inter) == (3, None)


def test_a_negative_inter_op_count_reaches_tensorflow():
    # TensorFlow's ConfigProto: negative inter-op parallelism runs each op in the caller's thread.
    config = FakeTfConfig()

    devices.configure_threads(2, -1, tf_config=config)

    assert (config.threading.intra, config.threading.inter) == (2, -1)
