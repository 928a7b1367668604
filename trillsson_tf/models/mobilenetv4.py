"""MobileNetV4 conv-small in tf_keras (not in keras.applications), as an A/D/V emotion student.

The layout of MobileNetV4-Conv-S (Qin et al. 2024; blocks as the TensorFlow Model Garden's
``MNV4ConvSmall_BLOCK_SPECS``): a stem, FusedIB and universal inverted bottleneck blocks (IB,
ConvNext, ExtraDW), a 1x1 head to 1280, here on one log-mel patch ``[195, 80, 1]`` per chunk with
``Dense(embedding_dim)`` after it (2.5 M parameters with 3 outputs). BatchNorm momentum 0.9
(:data:`trillsson_tf.models._common.BATCH_NORM_MOMENTUM`). Block table: docs/DESIGN.md, "Student".
"""

from trillsson_tf._keras import keras
from trillsson_tf.kinds import CHUNK
from trillsson_tf.models._audio_model import SCORES_KEY
from trillsson_tf.models._common import BATCH_NORM_MOMENTUM, StudentPreset, patch_input, projection_head

__all__ = ["CONV_SMALL_BLOCKS", "build_mobilenetv4_conv_small", "PRESETS"]

layers = keras.layers

# (kind, start_dw_kernel, middle_dw_kernel, stride, expansion, width); kind: fused | uib.
CONV_SMALL_BLOCKS = (
    ("fused", 3, 0, 2, 1.0, 32),
    ("fused", 3, 0, 2, 3.0, 64),
    ("uib", 5, 5, 2, 3.0, 96),
    ("uib", 0, 3, 1, 2.0, 96),
    ("uib", 0, 3, 1, 2.0, 96),
    ("uib", 0, 3, 1, 2.0, 96),
    ("uib", 0, 3, 1, 2.0, 96),
    ("uib", 3, 0, 1, 4.0, 96),
    ("uib", 3, 3, 2, 6.0, 128),
    ("uib", 5, 5, 1, 4.0, 128),
    ("uib", 0, 5, 1, 4.0, 128),
    ("uib", 0, 5, 1, 3.0, 128),
    ("uib", 0, 3, 1, 4.0, 128),
    ("uib", 0, 3, 1, 4.0, 128),
)
"""The MobileNetV4-Conv-S block table after the stem."""


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, *, activation: bool = True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if activation else x


def _depthwise_bn(x, kernel: int, stride: int, name: str, *, activation: bool):
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_dw_bn")(x)
    return layers.ReLU(name=f"{name}_dw_relu")(x) if activation else x


def _block(x, kind: str, start_kernel: int, middle_kernel: int, stride: int, expansion: float, width: int, name: str):
    inputs, in_width = x, x.shape[-1]
    hidden = _make_divisible(in_width * expansion)
    if kind == "fused":
        x = _conv_bn(x, hidden, start_kernel, stride, f"{name}_expand")
    else:
        if start_kernel:
            x = _depthwise_bn(x, start_kernel, 1 if middle_kernel else stride, f"{name}_start", activation=False)
        x = _conv_bn(x, hidden, 1, 1, f"{name}_expand")
        if middle_kernel:
            x = _depthwise_bn(x, middle_kernel, stride, f"{name}_middle", activation=True)
    x = _conv_bn(x, width, 1, 1, f"{name}_project", activation=False)
    if stride == 1 and in_width == width:
        x = layers.Add(name=f"{name}_add")([inputs, x])
    return x


def build_mobilenetv4_conv_small(*, width_multiplier: float = 1.0, embedding_dim: int = 3):
    """MobileNetV4-Conv-S per-chunk network with a linear head.

    Args:
        width_multiplier: Scales every block width (1.0 = the published model).
        embedding_dim: Output width (3 scores for arousal, dominance, valence).

    Returns:
        keras.Model ``[n, 195, 80, 1]`` log-mel -> ``[n, embedding_dim]``.
    """
    inputs = patch_input()
    x = _conv_bn(inputs, _make_divisible(32 * width_multiplier), 3, 2, "stem")
    for index, (kind, start, middle, stride, expansion, width) in enumerate(CONV_SMALL_BLOCKS, start=1):
        x = _block(
            x, kind, start, middle, stride, expansion, _make_divisible(width * width_multiplier), f"block{index}"
        )
    x = _conv_bn(x, _make_divisible(960 * width_multiplier), 1, 1, "head")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(1280, name="features")(x)
    x = layers.ReLU(name="features_relu")(x)
    return keras.Model(inputs, projection_head(x, embedding_dim))


PRESETS = {
    "mobilenetv4convsmall": StudentPreset(
        name="mobilenetv4convsmall",
        family=CHUNK,
        build=build_mobilenetv4_conv_small,
        output_key=SCORES_KEY,
        config={"width_multiplier": 1.0, "embedding_dim": 3},
        description="MobileNetV4-Conv-S (tf_keras) + Dense(k): A/D/V scores, the Wav2Small paper's larger student",
        verified="block table of MobileNetV4-Conv-S (UIB/FusedIB, widths 32-64-96-128, 960/1280 head)",
        assumed="run per 195x80 log-mel chunk with the TRILLsson frontend; ReLU 1280-wide features before the head",
    ),
}
