"""EfficientNetV2 students (keras.applications backbones, as the public TRILLsson code uses).

``include_top=False, weights=None, pooling='avg'`` on a ``(195, 80, 1)`` patch, keeping the
Keras defaults: the ``x / 128 - 1`` rescaling layer (a one-channel input takes that branch)
and 0.2 stochastic depth; then ``Dense(embedding_dim)`` when the pooled width differs.
"""

from trillsson_tf._keras import keras
from trillsson_tf.kinds import CHUNK
from trillsson_tf.models._common import StudentPreset, patch_input, projection_head

_BACKBONES = {
    "b0": keras.applications.EfficientNetV2B0,
    "b1": keras.applications.EfficientNetV2B1,
    "b2": keras.applications.EfficientNetV2B2,
    "b3": keras.applications.EfficientNetV2B3,
    "s": keras.applications.EfficientNetV2S,
    "m": keras.applications.EfficientNetV2M,
    "l": keras.applications.EfficientNetV2L,
}


def build_efficientnetv2(*, variant: str = "b0", embedding_dim: int = 1024):
    """EfficientNetV2 per-chunk network.

    Args:
        variant: One of ``b0 b1 b2 b3 s m l``.
        embedding_dim: Output width D.

    Returns:
        keras.Model ``[n, 195, 80, 1]`` log-mel -> ``[n, embedding_dim]``.
    """
    inputs = patch_input()
    backbone = _BACKBONES[variant](
        include_top=False, weights=None, pooling="avg", input_tensor=inputs, input_shape=inputs.shape[1:]
    )
    return keras.Model(inputs, projection_head(backbone.output, embedding_dim))


_VARIANTS = tuple(_BACKBONES)


def _preset(name, variant, description, **extra):
    return StudentPreset(
        name=name,
        family=CHUNK,
        build=build_efficientnetv2,
        config={"variant": variant, "embedding_dim": 1024},
        description=description,
        **extra,
    )


PRESETS = {
    preset.name: preset
    for preset in (
        _preset(
            "trillsson2",
            "b1",
            "TRILLsson 2: EfficientNetV2-B1 + Dense(1024)",
            published_params=8_100_000,
            verified="Published ~8.1 M parameters; EfficientNetV2-B1 + Dense(1024) matches that count.",
            assumed="The backbone is inferred from the parameter count only (unverified).",
        ),
        _preset(
            "trillsson3",
            "s",
            "TRILLsson 3: EfficientNetV2-S + Dense(1024)",
            published_params=21_500_000,
            verified="EfficientNetV2-S + Dense(1024), 21.5 M parameters (good public support).",
        ),
        _preset(
            "trillsson4",
            "m",
            "TRILLsson 4: EfficientNetV2-M + Dense(1024)",
            published_params=63_400_000,
            verified="Published ~63.4 M parameters (unverified).",
            assumed=(
                "Assumed EfficientNetV2-M, the next size of the family used by trillsson2/3; it has "
                "54.5 M parameters, 14% under the published count, so the true design differs."
            ),
        ),
        _preset("efficientnetv2b0", "b0", "EfficientNetV2-B0 + Dense(D)"),
        _preset("efficientnetv2b1", "b1", "EfficientNetV2-B1 + Dense(D)"),
        _preset("efficientnetv2s", "s", "EfficientNetV2-S + Dense(D)"),
    )
}
