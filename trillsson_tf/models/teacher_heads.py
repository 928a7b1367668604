"""Output heads of a several-teacher student: each teacher's output and the deployable vector, cut from one row.

A student distilled from several teachers predicts one standardised row ``z`` (each teacher's
targets, standardised, side by side). :class:`OutputHead` maps ``z`` to one output: a block of it
times a scale plus an offset. The maps act on each vector alone, so they commute with the mean
over chunks: :func:`~trillsson_tf.models.frames_model` applies the same heads to every frame.
"""

import numpy as np

from trillsson_tf._keras import keras, tf
from trillsson_tf.errors import ParameterError

__all__ = ["OutputHead", "TeacherBlock", "with_output_heads"]

_PACKAGE = "trillsson_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class OutputHead(keras.layers.Layer):
    """``z [..., D] -> z[..., start:stop] * scale + offset``: float32 ``[..., stop - start]``."""

    applies_per_vector = True  # frames_model applies it to frame vectors too

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


def with_output_heads(model, blocks: list, *, key: str):
    """The student with one output per teacher and the deployable vector under ``key``.

    Args:
        model: A student whose output ``key`` is the standardised row ``z`` ``[batch, sum(D)]``.
        blocks: :class:`TeacherBlock` s covering ``z`` in order.
        key: Name of the deployable output (``embedding``): the standardised blocks side by side,
            each divided by the square root of its width so that every teacher weighs the same in
            a cosine or a distance.

    Returns:
        A model of ``model``'s class sharing its layers: ``{key: [batch, sum(D)], name: [batch, D_i], ...}``.
    """
    z = model.output[key]
    names = [block.name for block in blocks]
    if len(set(names)) != len(names) or key in names:
        raise ParameterError(f"Teacher output names must be unique and not {key!r}; got {names}.")
    if blocks[-1].stop != z.shape[-1]:
        raise ParameterError(f"The teacher blocks cover {blocks[-1].stop} values of a {z.shape[-1]}-wide output.")
    balance = np.concatenate([np.full(block.width, 1.0 / np.sqrt(block.width), np.float32) for block in blocks])
    outputs = {key: OutputHead(0, len(balance), balance, 0.0, name=f"{key}_head")(z)}
    for block in blocks:
        outputs[block.name] = OutputHead(
            block.start, block.stop, block.scale, block.offset, name=f"teacher_{block.name}"
        )(z)
    return type(model)(inputs=model.input, outputs=outputs, name=model.name)
