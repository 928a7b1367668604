"""MobileNetV3 students (keras.applications), small enough for phones.

``include_top=False, weights=None, pooling='avg'`` on a ``(195, 80, 1)`` patch, then
``Dense(embedding_dim)``, with two Keras defaults changed: no input preprocessing (its rescaling is
for 0-255 pixels) and BatchNormalization momentum 0.9
(:data:`trillsson_tf.models._common.BATCH_NORM_MOMENTUM`). Together the two defaults made
``mobilenetv3small_adv`` give near-constant scores at inference (measurements: docs/DESIGN.md, "Student").
"""

from trillsson_tf._keras import keras
from trillsson_tf.kinds import CHUNK
from trillsson_tf.models._audio_model import SCORES_KEY
from trillsson_tf.models._common import BATCH_NORM_MOMENTUM, StudentPreset, patch_input, projection_head

_BACKBONES = {"small": keras.applications.MobileNetV3Small, "large": keras.applications.MobileNetV3Large}


def build_mobilenetv3(
    *, variant: str = "small", alpha: float = 1.0, minimalistic: bool = False, embedding_dim: int = 1024
):
    """MobileNetV3 per-chunk network.

    Args:
        variant: ``small`` or ``large``.
        alpha: Width multiplier of the backbone.
        minimalistic: Keras' minimalistic variant (no squeeze-excite, no hard-swish, 3x3 kernels).
        embedding_dim: Output width D.

    Returns:
        keras.Model ``[n, 195, 80, 1]`` log-mel -> ``[n, embedding_dim]``.
    """
    inputs = patch_input()
    backbone = _BACKBONES[variant](
        input_tensor=inputs,
        input_shape=inputs.shape[1:],
        alpha=alpha,
        minimalistic=minimalistic,
        include_top=False,
        weights=None,
        pooling="avg",
        include_preprocessing=False,
    )
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BATCH_NORM_MOMENTUM
    return keras.Model(inputs, projection_head(backbone.output, embedding_dim))


PRESETS = {
    name: StudentPreset(
        name=name,
        family=CHUNK,
        build=build_mobilenetv3,
        config={"variant": variant, "alpha": 1.0, "minimalistic": False, "embedding_dim": 1024},
        description=f"MobileNetV3-{variant.capitalize()} + Dense(D)",
    )
    for name, variant in (("mobilenetv3small", "small"), ("mobilenetv3large", "large"))
}
PRESETS["mobilenetv3small_adv"] = StudentPreset(
    name="mobilenetv3small_adv",
    family=CHUNK,
    build=build_mobilenetv3,
    output_key=SCORES_KEY,
    config={"variant": "small", "alpha": 1.0, "minimalistic": False, "embedding_dim": 3},
    description="MobileNetV3-Small + Dense(k): A/D/V scores (the Wav2Small paper's MobileNet student)",
)
