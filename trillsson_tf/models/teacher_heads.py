"""Output heads of a several-teacher student: the deployable vector and each teacher's output.

:func:`with_output_heads` turns a student that predicts the standardised row ``z`` (each teacher's
targets, standardised, side by side) into one whose ``embedding`` is its backbone's pooled features
and whose teacher outputs are linear heads on them, in each teacher's units. The heads act on each
vector alone, so they commute with the mean over chunks (``applies_per_vector``): the chunk-vector
form applies them to every chunk (docs/DESIGN.md, "Several teachers").
"""

import numpy as np

from trillsson_tf._keras import keras, tf
from trillsson_tf.contract import AUDIO_INPUT_NAME
from trillsson_tf.errors import ParameterError
from trillsson_tf.models._audio_model import CHUNK_NETWORK_NAME, AudioEmbeddingModel, MeanOverChunks

__all__ = ["BackboneVector", "OutputHead", "TeacherBlock", "TeacherHead", "with_output_heads"]

_PACKAGE = "trillsson_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BackboneVector(keras.layers.Layer):
    """The pooled features as the deployable vector: ``[..., F] -> float32 [..., F]`` (identity)."""

    applies_per_vector = True  # chunk_vectors_model applies it to chunk vectors too

    def call(self, features):
        return tf.cast(features, tf.float32)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TeacherHead(keras.layers.Dense):
    """One teacher's output in its units: ``features [..., F] @ kernel + bias -> float32 [..., D]`` (a Dense)."""

    applies_per_vector = True


@keras.saving.register_keras_serializable(package=_PACKAGE)
class OutputHead(keras.layers.Layer):
    """``z [..., D] -> z[..., start:stop] * scale + offset``: float32 ``[..., stop - start]``.

    Written by exports before the backbone became the ``embedding``; kept so those files load.
    """

    applies_per_vector = True

    def __init__(self, start: int, stop: int, scale, offset, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)
        self.scale = [float(value) for value in np.broadcast_to(scale, [self.stop - self.start])]
        self.offset = [float(value) for value in np.broadcast_to(offset, [self.stop - self.start])]

    def call(self, z):
        block = tf.cast(z[..., self.start : self.stop], tf.float32)
        return block * tf.constant(self.scale, tf.float32) + tf.constant(self.offset, tf.float32)

    def get_config(self):
        return {
            **super().get_config(),
            "start": self.start,
            "stop": self.stop,
            "scale": self.scale,
            "offset": self.offset,
        }


class TeacherBlock:
    """One teacher's block of a standardised row: output name, columns, and its target moments (float32 ``[D]``)."""

    def __init__(self, name: str, start: int, stop: int, scale, offset):
        self.name, self.start, self.stop = name, int(start), int(stop)
        self.scale, self.offset = np.asarray(scale, np.float32), np.asarray(offset, np.float32)

    @property
    def width(self) -> int:
        return self.stop - self.start


def _is_linear(layer) -> bool:
    return isinstance(layer, keras.layers.Dense) and layer.activation in (None, keras.activations.linear)


def _backbone(model, key: str):
    """``(features model {key: [batch, F]}, kernel [F, D], bias [D])``: the student up to its last linear layer.

    A chunk student's chunk network ends in the projection, averaged over chunks after it; any other
    student's ``key`` output may come straight from a Dense. Without such a layer (or when it is not
    linear) the pooled features are the row itself: identity kernel.
    """
    names = {layer.name for layer in model.layers}
    if "log_mel_patches" in names and CHUNK_NETWORK_NAME in names:
        chunk = model.get_layer(CHUNK_NETWORK_NAME)
        last = chunk.layers[-1] if isinstance(chunk, keras.Model) and chunk.layers else None
        if _is_linear(last) and chunk.output is last.output:
            trunk = keras.Model(chunk.input, last.input, name=CHUNK_NETWORK_NAME)
            audio = keras.Input(shape=(None,), dtype="float32", name=AUDIO_INPUT_NAME)
            patches = model.get_layer("log_mel_patches")(audio)
            features = MeanOverChunks(name=key, dtype="float32")([trunk(patches), audio])
            features_model = AudioEmbeddingModel(inputs=audio, outputs={key: features}, name=model.name)
            return features_model, *_weights(last)
    else:
        last = getattr(getattr(model.output[key], "_keras_history", None), "layer", None)
        if _is_linear(last):
            return type(model)(inputs=model.input, outputs={key: last.input}, name=model.name), *_weights(last)
    width = model.output[key].shape[-1]
    return model, np.eye(width, dtype=np.float32), np.zeros(width, np.float32)


def _weights(dense):
    kernel = dense.kernel.numpy().astype(np.float32)
    bias = dense.bias.numpy().astype(np.float32) if dense.use_bias else np.zeros(kernel.shape[1], np.float32)
    return kernel, bias


def with_output_heads(model, blocks: list, *, key: str):
    """The student with the deployable vector under ``key`` and one output per teacher.

    Args:
        model: A student whose output ``key`` is the standardised row ``z`` ``[batch, sum(D)]``.
        blocks: :class:`TeacherBlock` s covering ``z`` in order.
        key: Name of the deployable output (``embedding``): the backbone's pooled features
            ``[batch, F]``, the input of the student's last linear layer (``z`` itself without one).

    Returns:
        A model sharing ``model``'s layers: ``{key: [batch, F], name: [batch, D_i], ...}``; each
        teacher's head is the last linear layer's block, times the block's std, plus its mean (exact).
    """
    z = model.output[key]
    names = [block.name for block in blocks]
    if len(set(names)) != len(names) or key in names:
        raise ParameterError(f"Teacher output names must be unique and not {key!r}; got {names}.")
    if blocks[-1].stop != z.shape[-1]:
        raise ParameterError(f"The teacher blocks cover {blocks[-1].stop} values of a {z.shape[-1]}-wide output.")
    features_model, kernel, bias = _backbone(model, key)
    features = features_model.output[key]
    outputs = {key: BackboneVector(name=f"{key}_head", dtype="float32")(features)}
    for block in blocks:
        columns = slice(block.start, block.stop)
        head = TeacherHead(block.width, name=f"teacher_{block.name}", dtype="float32")
        outputs[block.name] = head(features)
        head.set_weights([kernel[:, columns] * block.scale, bias[columns] * block.scale + block.offset])
    return type(features_model)(inputs=features_model.input, outputs=outputs, name=model.name)
