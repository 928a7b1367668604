"""The student zoo: named configurations as data, one way to build them.

>>> model = trillsson_tf.models.build("trillsson3")
>>> model(audio)["embedding"].shape   # audio: float32 [batch, samples] at 16 kHz
(batch, 1024)

Every model takes ``audio_samples`` float32 ``[batch, None]`` and returns ``{'embedding': ...}``,
or ``{'scores': ...}`` for score regressors (:func:`output_key`). Each preset names its family
(:data:`FAMILIES`: ``chunk``, ``clip``, ``waveform``; docs/DESIGN.md, "Student");
``model.inner_network`` (:func:`inner_network`) is the trainable part of any of them.
"""

from trillsson_tf._keras import keras
from trillsson_tf.errors import ParameterError, renamed_attribute
from trillsson_tf.frontend import DEFAULT_FRONTEND
from trillsson_tf.kinds import CHUNK
from trillsson_tf.models import ast, distil, efficientnet, mobilenet, mobilenetv4, resnetish, tiny_cnn, wav2small
from trillsson_tf.models import teacher_heads  # noqa: F401  (registers its layers, so model.keras files load)
from trillsson_tf.models._audio_model import (
    AUDIO_INPUT_NAME,
    EMBEDDING_KEY,
    OUTPUT_KEYS,
    SCORES_KEY,
    AudioEmbeddingModel,
    LogMelPatches,
    MeanOverChunks,
    chunk_network,
    chunk_vectors_model,
    output_heads,
    wrap_chunk_network,
)
from trillsson_tf.models._common import FAMILIES, StudentPreset
from trillsson_tf.models._stats import chunk_gflops, clip_gflops

__all__ = [
    "AUDIO_INPUT_NAME",
    "EMBEDDING_KEY",
    "FAMILIES",
    "OUTPUT_KEYS",
    "SCORES_KEY",
    "AudioEmbeddingModel",
    "StudentPreset",
    "available",
    "build",
    "chunk_gflops",
    "chunk_network",
    "chunk_vectors_model",
    "clip_gflops",
    "float32_frontend_model",
    "get_preset",
    "inner_network",
    "output_key",
    "wrap_chunk_network",
]

_REGISTRY = {
    **resnetish.PRESETS,
    **efficientnet.PRESETS,
    **ast.PRESETS,
    **mobilenet.PRESETS,
    **tiny_cnn.PRESETS,
    **wav2small.PRESETS,
    **mobilenetv4.PRESETS,
    **distil.PRESETS,
}


def available(*, family=None) -> tuple:
    """Names of the registered students, in registry order.

    Args:
        family: Only the students of this family (one of :data:`FAMILIES`; ``'waveform'``: the
            layer-distillation students); ``None``: all.

    Raises:
        ParameterError: an unknown family.
    """
    if family is None:
        return tuple(_REGISTRY)
    if family not in FAMILIES:
        raise ParameterError(f"Unknown student family {family!r}. Expected one of: {list(FAMILIES)}.")
    return tuple(name for name, preset in _REGISTRY.items() if preset.family == family)


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
        :class:`AudioEmbeddingModel` (a ``tf_keras.Model``; for ``clip`` and ``waveform``
        students its subclass): ``audio_samples`` float32 ``[batch, None]`` at 16 kHz ->
        ``{'embedding': float32 [batch, D]}`` (or ``{'scores': ...}`` for the score regressors,
        see :func:`output_key`). ``model.build_spec`` is ``{'name': name, 'config': config}``:
        ``build(spec['name'], **spec['config'])`` builds the same architecture again.

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
    if preset.family == CHUNK:
        model = wrap_chunk_network(
            preset.build(**config), name=name, frontend=DEFAULT_FRONTEND, output_key=preset.output_key
        )
    else:
        model = preset.build(name=name, **config)
    # Set past Keras' attribute tracking, which would wrap the dict in a DictWrapper that json cannot encode.
    object.__setattr__(model, "build_spec", {"name": name, "config": config})
    return model


def output_key(model) -> str:
    """The name of a student's one output: ``'embedding'`` or ``'scores'`` (see :data:`OUTPUT_KEYS`).

    Raises:
        ParameterError: the model does not output a dict with exactly one of those keys.
    """
    outputs = model.output if isinstance(model.output, dict) else {}
    keys = [key for key in OUTPUT_KEYS if key in outputs]
    if len(keys) != 1:
        raise ParameterError(
            f"Model {model.name!r} must output a dict with one of {list(OUTPUT_KEYS)}; it outputs {model.output!r}."
        )
    return keys[0]


def inner_network(model):
    """The trainable network after a student's fixed frontend.

    Returns:
        ``model.inner_network`` for a student of this package: the chunk network (log-mel patch
        in), Wav2Small's clip network (dB mel bands in) or a layer student's encoder (audio in);
        for another model with a ``chunk_network`` layer (:func:`float32_frontend_model`), that layer.

    Raises:
        ParameterError: none of these.
    """
    if isinstance(model, AudioEmbeddingModel):
        return model.inner_network
    return chunk_network(model)


def float32_frontend_model(model, *, float16_safe: bool = False):
    """The same model with its log-mel frontend computed in float32.

    TFLite has no float64 FFT, so converters build this form; the distiller trains through it
    too (10% more steps/s for ``tiny_cnn_k5``, measured; the float32 log-mel is within 5e-4 of float64).

    Args:
        model: A model with layers ``log_mel_patches`` and ``chunk_network``.
        float16_safe: Build the frontend's constants for a float16 conversion
            (:func:`trillsson_tf.frontend.tf_ops.log_mel`).

    Returns:
        tf_keras model sharing ``model``'s chunk network (same weight variables): float32 audio
        ``[batch, None]`` -> ``{key: float32 [batch, D]}`` with ``model``'s output key (and its
        teacher heads, for a several-teacher student).
    """
    frontend = model.get_layer("log_mel_patches").frontend
    key = output_key(model)
    audio = keras.Input(shape=(None,), dtype="float32", name=AUDIO_INPUT_NAME)
    patches = LogMelPatches(frontend, compute_dtype="float32", float16_safe=float16_safe, name="log_mel_patches")(audio)
    heads = output_heads(model)
    vectors = MeanOverChunks(name="chunk_rows" if heads else key)([chunk_network(model)(patches), audio])
    outputs = {name: head(vectors) for name, head in heads.items()} if heads else {key: vectors}
    return keras.Model(audio, outputs, name=f"{model.name}_float32_frontend")


_RENAMED = {"frames_model": "chunk_vectors_model"}


def __getattr__(name):  # the old names of _RENAMED, deprecated for one release
    return renamed_attribute(__name__, globals(), _RENAMED, name)
