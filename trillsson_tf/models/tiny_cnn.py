"""A tiny depthwise-separable CNN student for microcontroller-sized distillation.

Designed here: BatchNorm on the log-mel, one 3x3 stride-2 convolution, depthwise-separable blocks,
global average pooling and ``Dense(embedding_dim)``: 74,156 parameters at D=96 (the
``speech_embedding`` teacher's width), under a quarter of that teacher's 328 K. ``tiny_cnn_k5`` has
5x5 depthwise kernels (80,044 parameters), which follow the teacher more closely at equal steps
(docs/DESIGN.md, "Student"; ``benchmarks/distill_benchmark.py``).
"""

from trillsson_tf._keras import keras
from trillsson_tf.errors import ParameterError
from trillsson_tf.kinds import CHUNK
from trillsson_tf.models._common import StudentPreset, patch_input, projection_head

layers = keras.layers


def _separable_block(x, filters: int, stride: int, kernel_size: int, name: str):
    x = layers.DepthwiseConv2D(kernel_size, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = layers.ReLU(name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(name=f"{name}_pw_bn")(x)
    return layers.ReLU(name=f"{name}_pw_relu")(x)


def build_tiny_cnn(
    *,
    stem_filters: int = 24,
    filters=(48, 72, 96, 128, 192),
    strides=(2, 2, 2, 1, 1),
    kernel_size: int = 3,
    embedding_dim: int = 96,
):
    """Tiny depthwise-separable per-chunk network.

    Args:
        stem_filters: Channels of the first (full) 3x3 stride-2 convolution.
        filters: Output channels of each depthwise-separable block.
        strides: Stride of each block's depthwise convolution (same length as ``filters``).
        kernel_size: Side of each block's square depthwise kernel.
        embedding_dim: Output width D.

    Returns:
        keras.Model ``[n, 195, 80, 1]`` log-mel -> ``[n, embedding_dim]``.
    """
    if len(filters) != len(strides):
        raise ParameterError(f"filters {tuple(filters)} and strides {tuple(strides)} must have the same length.")
    inputs = patch_input()
    x = layers.BatchNormalization(name="input_norm")(inputs)
    x = layers.Conv2D(stem_filters, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for index, (width, stride) in enumerate(zip(filters, strides)):
        x = _separable_block(x, int(width), int(stride), int(kernel_size), name=f"block{index + 1}")
    pooled = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, projection_head(pooled, embedding_dim))


_LAYERS = {"stem_filters": 24, "filters": (48, 72, 96, 128, 192), "strides": (2, 2, 2, 1, 1), "embedding_dim": 96}
_ASSUMED = "whole layer table designed here for a <= 82 K budget; no published reference"

PRESETS = {
    "tiny_cnn": StudentPreset(
        name="tiny_cnn",
        family=CHUNK,
        build=build_tiny_cnn,
        config={**_LAYERS, "kernel_size": 3},
        description="tiny depthwise-separable CNN (74 K params at D=96), for the speech_embedding teacher",
        assumed=_ASSUMED,
    ),
    "tiny_cnn_k5": StudentPreset(
        name="tiny_cnn_k5",
        family=CHUNK,
        build=build_tiny_cnn,
        config={**_LAYERS, "kernel_size": 5},
        description="tiny_cnn with 5x5 depthwise kernels (80 K params at D=96): closer to speech_embedding",
        assumed=_ASSUMED,
    ),
}
