"""The student zoo: named configurations as data, one way to build them.

>>> model = trillsson_tf.models.build("trillsson3")
>>> model(audio)["embedding"].shape   # audio: float32 [batch, samples] at 16 kHz
(batch, 1024)

Every model takes ``audio_samples`` float32 ``[batch, None]`` and returns
``{'embedding': float32 [batch, D]}``; its per-chunk network (log-mel patch in, embedding
out) is ``model.chunk_network`` (or :func:`chunk_network`).
"""
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND
from trillsson_tf.models import ast, efficientnet, mobilenet, resnetish, tiny_cnn
from trillsson_tf.models._audio_model import (
    AUDIO_INPUT_NAME,
    EMBEDDING_KEY,
    AudioEmbeddingModel,
    chunk_network,
    wrap_chunk_network,
)
from trillsson_tf.models._common import StudentPreset
from trillsson_tf.models._stats import chunk_gflops

__all__ = [
    "AUDIO_INPUT_NAME",
    "EMBEDDING_KEY",
    "AudioEmbeddingModel",
    "StudentPreset",
    "available",
    "build",
    "chunk_gflops",
    "chunk_network",
    "get_preset",
    "wrap_chunk_network",
]

_REGISTRY = {
    **resnetish.PRESETS,
    **efficientnet.PRESETS,
    **ast.PRESETS,
    **mobilenet.PRESETS,
    **tiny_cnn.PRESETS,
}


def available() -> tuple:
    """Names of the registered students, in registry order."""
    return tuple(_REGISTRY)


def get_preset(name: str) -> StudentPreset:
    """The :class:`StudentPreset` registered under ``name``."""
    if name not in _REGISTRY:
        raise ParameterError(f"Unknown student {name!r}. Expected one of: {list(_REGISTRY)}.")
    return _REGISTRY[name]


def build(name: str, **overrides):
    """Build a registered student with the TF Hub call contract.

    Args:
        name: A name from :func:`available`.
        **overrides: Replace entries of the preset's config, e.g. ``embedding_dim=96``.

    Returns:
        :class:`AudioEmbeddingModel` (a ``tf_keras.Model``): ``audio_samples`` float32
        ``[batch, None]`` at 16 kHz -> ``{'embedding': float32 [batch, D]}``.

    Raises:
        ParameterError: unknown name or override key (the message lists the accepted ones).
    """
    preset = get_preset(name)
    unknown = sorted(set(overrides) - set(preset.config))
    if unknown:
        raise ParameterError(
            f"Unknown option(s) {unknown} for student {name!r}. Expected some of: {sorted(preset.config)}."
        )
    config = {**preset.config, **overrides}
    model = wrap_chunk_network(preset.build_chunk_network(**config), name=name, frontend=DEFAULT_FRONTEND)
    model.build_spec = {"name": name, "config": config}
    return model
