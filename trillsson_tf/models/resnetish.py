"""ResNet-ish students: a bottleneck ResNet-50 layout with a width multiplier.

TRILL and TRILLsson describe their smallest models as "ResNet-ish"; no layer table is
public. This is the standard ResNet-50 bottleneck stack (3, 4, 6, 3 blocks; widths 64, 128,
256, 512 times ``alpha``; expansion 4) on the log-mel patch, then ``Dense(embedding_dim)``.
"""

from trillsson_tf._keras import keras
from trillsson_tf.kinds import CHUNK
from trillsson_tf.models._common import StudentPreset, patch_input, projection_head

layers = keras.layers


def _width(channels: float) -> int:
    return max(8, int(round(channels / 8)) * 8)


def _conv_bn(x, filters, kernel, stride, name, activation=True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if activation else x


def _bottleneck(x, filters, stride, name):
    shortcut = x
    if stride != 1 or x.shape[-1] != 4 * filters:
        shortcut = _conv_bn(x, 4 * filters, 1, stride, f"{name}_shortcut", activation=False)
    y = _conv_bn(x, filters, 1, 1, f"{name}_1")
    y = _conv_bn(y, filters, 3, stride, f"{name}_2")
    y = _conv_bn(y, 4 * filters, 1, 1, f"{name}_3", activation=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def build_resnetish(*, alpha: float = 0.42, blocks=(3, 4, 6, 3), embedding_dim: int = 1024):
    """ResNet-ish per-chunk network.

    Args:
        alpha: Width multiplier (1.0 is ResNet-50's widths).
        blocks: Bottleneck blocks per stage.
        embedding_dim: Output width D.

    Returns:
        keras.Model ``[n, 195, 80, 1]`` log-mel -> ``[n, embedding_dim]``.
    """
    inputs = patch_input()
    x = _conv_bn(inputs, _width(64 * alpha), 7, 2, "stem")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, count in enumerate(blocks):
        filters = _width(64 * 2**stage * alpha)
        for block in range(count):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _bottleneck(x, filters, stride, f"stage{stage + 1}_block{block + 1}")
    pooled = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, projection_head(pooled, embedding_dim))


PRESETS = {
    "trillsson1": StudentPreset(
        name="trillsson1",
        family=CHUNK,
        build=build_resnetish,
        config={"alpha": 0.42, "blocks": (3, 4, 6, 3), "embedding_dim": 1024},
        description="TRILLsson 1: ResNet-ish (ResNet-50 layout, width x0.42) + Dense(1024)",
        published_params=5_000_000,
        verified="Published as 'ResNet-ish', ~5.0 M parameters (unverified).",
        assumed="Layer table not public: ResNet-50 bottleneck layout with width 0.42, chosen to hit ~5 M.",
    ),
}
