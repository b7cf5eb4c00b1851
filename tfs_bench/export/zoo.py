"""The model zoo: CNNs buildable by name, with their input size and preprocessing.

Building never touches the network: keras.applications models are created with random
weights (`weights=None`) and a local weights file may be loaded afterwards.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from tfs_bench.errors import ModelError

# keras.applications preprocessing modes, applied inside the exported graph to pixels in [0, 255].
TORCH = "torch"  # scale to [0, 1], then per-channel ImageNet mean/std
TF = "tf"  # scale to [-1, 1]
CAFFE = "caffe"  # RGB->BGR, subtract ImageNet means
RAW = "raw"  # the model takes [0, 255] and rescales itself (EfficientNet)
UNIT = "unit"  # scale to [0, 1] (our small CNN)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    image_size: int
    num_classes: int
    preprocessing: str
    build_fn: Callable[["ModelSpec"], object]
    description: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def build(self):
        """Returns a Keras model with random weights, taking preprocessed images."""
        return self.build_fn(self)


def _application(constructor_name: str, **kwargs):
    def build(spec: ModelSpec):
        import keras

        constructor = getattr(keras.applications, constructor_name)
        return constructor(
            weights=None, input_shape=spec.input_shape, classes=spec.num_classes, **kwargs
        )

    return build


def _tiny_cnn(spec: ModelSpec):
    import keras
    from keras import layers

    inputs = keras.Input(shape=spec.input_shape, name="images")
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(spec.num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=spec.name)


_SPECS = (
    ModelSpec("resnet50", 224, 1000, CAFFE, _application("ResNet50"), "ResNet-50 (PERSEUS)"),
    ModelSpec("inception_v3", 299, 1000, TF, _application("InceptionV3"), "Inception-v3 (PERSEUS)"),
    ModelSpec("mobilenet_v2", 224, 1000, TF, _application("MobileNetV2"), "MobileNetV2, alpha 1.0"),
    ModelSpec("vgg16", 224, 1000, CAFFE, _application("VGG16"), "VGG-16"),
    ModelSpec("densenet121", 224, 1000, TORCH, _application("DenseNet121"), "DenseNet-121"),
    ModelSpec("efficientnet_b0", 224, 1000, RAW, _application("EfficientNetB0"), "EfficientNet-B0"),
    ModelSpec(
        "mobilenet_v2_small",
        96,
        1000,
        TF,
        _application("MobileNetV2", alpha=0.35),
        "MobileNetV2, alpha 0.35, 96 px: the quick-start CNN",
    ),
    ModelSpec("tiny_cnn", 32, 10, UNIT, _tiny_cnn, "three conv layers, 32 px: for tests"),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def get(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ModelError(f"unknown model {name!r}; known models: {known}") from None


def preprocess(images, mode: str):
    """Maps float32 pixels in [0, 255] (NHWC, RGB) to what the model expects. TF ops only."""
    import tensorflow as tf

    if mode == TF:
        return images / 127.5 - 1.0
    if mode == UNIT:
        return images / 255.0
    if mode == RAW:
        return images
    if mode == TORCH:
        mean = tf.constant([0.485, 0.456, 0.406]) * 255.0
        std = tf.constant([0.229, 0.224, 0.225]) * 255.0
        return (images - mean) / std
    if mode == CAFFE:
        return images[..., ::-1] - tf.constant([103.939, 116.779, 123.68])
    raise ValueError(f"unknown preprocessing mode {mode!r}")
