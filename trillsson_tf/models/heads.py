"""Task heads on encoder frames: keyword logits and a speaker embedding (multi-task fine-tuning).

They live with the models, not with the training code, so that loading a fine-tuned export
(whose ``model.keras`` names :class:`StatsPooling`) needs no training module.
"""

from trillsson_tf._keras import keras, tf
from trillsson_tf.contract import KWS_OUTPUT, SV_OUTPUT
from trillsson_tf.errors import ParameterError

__all__ = ["KWS_OUTPUT", "SV_OUTPUT", "StatsPooling", "build_heads"]

_PACKAGE = "trillsson_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StatsPooling(keras.layers.Layer):
    """Frames ``[batch, frames, W]`` -> ``[batch, 2W]``: mean and standard deviation over time."""

    def call(self, frames):
        mean = tf.reduce_mean(frames, axis=1)
        variance = tf.reduce_mean(tf.square(frames - mean[:, tf.newaxis]), axis=1)
        return tf.concat([mean, tf.sqrt(variance + 1e-6)], axis=-1)


def build_heads(width: int, *, kws_classes: int = 0, speaker_dim: int = 0, hidden: int = 128):
    """The task heads on encoder frames.

    Args:
        width: Frame feature size W.
        kws_classes: Keyword classes (0: no keyword head).
        speaker_dim: Speaker-embedding size (0: no speaker head).
        hidden: Width of each head's ReLU layer.

    Returns:
        tf_keras Model named ``heads``: frames ``[batch, None, W]`` -> a dict with
        ``keyword_logits [batch, kws_classes]`` and/or ``speaker_embedding [batch, speaker_dim]``.
    """
    frames = keras.Input(shape=(None, width), name="frames")
    pooled = StatsPooling(name="stats_pooling")(frames)
    # Pooled statistics of a normalised encoder vary little from clip to clip: standardising them
    # lets the heads learn in tens of steps instead of stalling at chance.
    pooled = keras.layers.BatchNormalization(name="pooled_norm")(pooled)
    outputs = {}
    if kws_classes:
        x = keras.layers.Dense(hidden, activation="relu", name="kws_hidden")(pooled)
        outputs[KWS_OUTPUT] = keras.layers.Dense(kws_classes, name=KWS_OUTPUT)(x)
    if speaker_dim:
        x = keras.layers.Dense(hidden, activation="relu", name="sv_hidden")(pooled)
        outputs[SV_OUTPUT] = keras.layers.Dense(speaker_dim, name=SV_OUTPUT)(x)
    if not outputs:
        raise ParameterError("Give at least one task: kws_labels and/or sv_labels.")
    return keras.Model(frames, outputs, name="heads")
