"""Pieces shared by the student families: the families, the preset record, the patch input, the head."""

import dataclasses
from typing import Callable, Optional

from trillsson_tf._keras import keras
from trillsson_tf.contract import EMBEDDING_KEY, OUTPUT_KEYS, PATCH_INPUT_NAME
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND
from trillsson_tf.kinds import CHUNK, CLIP, WAVEFORM


FAMILIES = (CHUNK, CLIP, WAVEFORM)
"""What a preset builds (:mod:`trillsson_tf.kinds` names the families):

- ``chunk``: a per-chunk network (log-mel patch ``[n, 195, 80, 1]`` -> ``[n, D]``) that
  :func:`trillsson_tf.models.build` puts behind the fixed log-mel frontend, averaging 2 s chunks;
- ``clip``: a whole-clip model with its own fixed frontend (Wav2Small);
- ``waveform``: a raw-audio encoder trained by layer distillation (``distill-layers``), its
  frames averaged over time.
"""


BATCH_NORM_MOMENTUM = 0.9
"""BatchNormalization momentum of the MobileNet students (Keras: 0.99 by default, 0.999 in MobileNetV3).

Their depthwise normalisations see activation variances of 0.002-0.015 in a fresh network while
the moving variances start at 1: with 0.99 or 0.999 the start still dominates after a few hundred
steps and inference divides every layer by far more than its real spread (near-constant scores:
``benchmarks/mobilenet_students.py``); at 0.9 it is forgotten in about 60 steps."""


@dataclasses.dataclass(frozen=True)
class StudentPreset:
    """One named student configuration of the registry.

    Attributes:
        name: Registry name.
        family: One of :data:`FAMILIES`: what ``build`` returns.
        build: For ``chunk`` students ``(**config) -> keras.Model``, the per-chunk network
            (log-mel patch ``[n, 195, 80, 1]`` -> ``[n, embedding_dim]``); for ``clip`` and
            ``waveform`` students ``(name=..., **config) -> keras.Model``, the whole audio model.
        config: Default keyword arguments of ``build`` (all overridable).
        description: One line for ``trillsson-tf models`` and the README.
        published_params: Parameter count of the published model, or ``None``.
        verified: What is known from public sources.
        assumed: What this re-implementation chose where nothing is public.
        output_key: The name of the model's one output, from :data:`OUTPUT_KEYS`.

    Raises:
        ParameterError: an unknown family or output key.
    """

    name: str
    family: str
    build: Callable
    config: dict
    description: str
    published_params: Optional[int] = None
    verified: str = ""
    assumed: str = ""
    output_key: str = EMBEDDING_KEY

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ParameterError(
                f"Unknown student family {self.family!r} for {self.name!r}. Expected one of: {list(FAMILIES)}."
            )
        if self.output_key not in OUTPUT_KEYS:
            raise ParameterError(
                f"Unknown output key {self.output_key!r} for {self.name!r}. Expected one of: {list(OUTPUT_KEYS)}."
            )


def patch_input():
    """The per-chunk network input: one log-mel patch ``[n, 195, 80, 1]``."""
    return keras.Input(shape=(*DEFAULT_FRONTEND.patch_shape, 1), name=PATCH_INPUT_NAME)


def projection_head(pooled, embedding_dim: int):
    """``Dense(embedding_dim)`` after the pooled features, unless they already have that width."""
    if pooled.shape[-1] == embedding_dim:
        return pooled
    return keras.layers.Dense(embedding_dim, name="projection")(pooled)
