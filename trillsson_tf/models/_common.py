"""Pieces shared by the student families: the preset record, the patch input, the head."""
import dataclasses
from typing import Callable, Optional

from trillsson_tf._keras import keras
from trillsson_tf.contract import EMBEDDING_KEY, PATCH_INPUT_NAME
from trillsson_tf.frontend import DEFAULT_FRONTEND


@dataclasses.dataclass(frozen=True)
class StudentPreset:
    """One named student configuration of the registry.

    Attributes:
        name: Registry name.
        build_chunk_network: ``(**config) -> keras.Model`` mapping a log-mel patch
            ``[n, 195, 80, 1]`` to ``[n, embedding_dim]``; ``None`` when ``build_model`` is set.
        config: Default keyword arguments of ``build_chunk_network`` (all overridable).
        description: One line for ``trillsson-tf models`` and the README.
        published_params: Parameter count of the published model, or ``None``.
        verified: What is known from public sources.
        assumed: What this re-implementation chose where nothing is public.
        build_model: ``(name=..., **config) -> keras.Model`` building the whole audio model,
            for students with their own frontend (Wav2Small); ``None`` for chunk students.
        output_key: The name of the model's one output, from :data:`OUTPUT_KEYS`.
    """

    name: str
    build_chunk_network: Callable
    config: dict
    description: str
    published_params: Optional[int] = None
    verified: str = ""
    assumed: str = ""
    build_model: Optional[Callable] = None
    output_key: str = EMBEDDING_KEY


def patch_input():
    """The per-chunk network input: one log-mel patch ``[n, 195, 80, 1]``."""
    return keras.Input(shape=(*DEFAULT_FRONTEND.patch_shape, 1), name=PATCH_INPUT_NAME)


def projection_head(pooled, embedding_dim: int):
    """``Dense(embedding_dim)`` after the pooled features, unless they already have that width."""
    if pooled.shape[-1] == embedding_dim:
        return pooled
    return keras.layers.Dense(embedding_dim, name="projection")(pooled)
