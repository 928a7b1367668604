"""The kinds of model this library makes and runs, known in one place.

A kind is one form of one model family (:data:`KINDS`: ``chunk``, ``patch``, ``clip``,
``clip_log_mel``, ``waveform``; the table with what each takes is in docs/DESIGN.md, "Embedding").
The converters ask :func:`of_model` which kind a Keras model becomes, the runtime asks
:func:`of_tflite` which kind a ``.tflite`` file is, and both act on the entry's fields (:class:`Kind`)
instead of testing types. A new kind is one more entry in :data:`KINDS`, a converter plan and, for a
new input, a runtime feeder; ``tests/test_kinds.py`` fails until all exist. TensorFlow-free.
"""

import dataclasses

from trillsson_tf.contract import AUDIO_INPUT_NAME, LOG_MEL_INPUT_NAME, PATCH_INPUT_NAME
from trillsson_tf.errors import ParameterError, renamed_attribute

__all__ = [
    "CHUNK",
    "CLIP",
    "EXPORT_FAMILIES",
    "EXPORT_TYPE_KEY",
    "KINDS",
    "Kind",
    "LAYER_STUDENT_EXPORT",
    "MULTITASK_EXPORT",
    "WAVEFORM",
    "export_type",
    "family_of",
    "form",
    "get",
    "of_model",
    "of_tflite",
]

CHUNK, CLIP, WAVEFORM = "chunk", "clip", "waveform"
"""The model families: what the Keras model is, before it is converted."""

EXPORT_TYPE_KEY = "export_type"
"""The key of an export's type in its ``trillsson_tf.json`` (exports written before it was named say ``kind``)."""
LAYER_STUDENT_EXPORT = "layer_student"
"""The export type of a layer-distilled export (``distill-layers``)."""
MULTITASK_EXPORT = "multitask"
"""The export type of a fine-tuned multi-task export (``finetune``)."""

EXPORT_FAMILIES = {LAYER_STUDENT_EXPORT: WAVEFORM, MULTITASK_EXPORT: WAVEFORM}
"""Export types -> the family of their model (exports without one are chunk or clip models)."""


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of model file.

    Attributes:
        name: The kind's name (the key converters and tests use).
        family: The Keras model it is converted from: :data:`CHUNK`, :data:`CLIP` or :data:`WAVEFORM`.
        frontend_inside: True when the file takes audio and computes its own features.
        input_name: What the file takes, named as in our conversions (:mod:`trillsson_tf.contract`).
        whole_clips: True when clips are run whole instead of in 195-frame chunks (no streaming).
        summary: One line on what it is.
    """

    name: str
    family: str
    frontend_inside: bool
    input_name: str
    whole_clips: bool
    summary: str


KINDS = (
    Kind("chunk", CHUNK, True, AUDIO_INPUT_NAME, False, "log-mel patch network with the hub contract, frontend inside"),
    Kind(
        "patch", CHUNK, False, PATCH_INPUT_NAME, False, "the chunk network alone: log-mel patches in, computed outside"
    ),
    Kind("clip", CLIP, True, AUDIO_INPUT_NAME, True, "Wav2Small: whole clips through its own DFT frontend"),
    Kind("clip_log_mel", CLIP, False, LOG_MEL_INPUT_NAME, True, "Wav2Small's network alone: dB mel bands in"),
    Kind(
        "waveform",
        WAVEFORM,
        True,
        AUDIO_INPUT_NAME,
        False,
        "layer-distilled or fine-tuned encoder: raw audio of a fixed length, every output",
    ),
)
"""Every kind, in the order of the table above."""

_BY_NAME = {kind.name: kind for kind in KINDS}


def get(name: str) -> Kind:
    """The :class:`Kind` called ``name``.

    Raises:
        ParameterError: no such kind (the message lists them).
    """
    if name not in _BY_NAME:
        raise ParameterError(f"Unknown model kind {name!r}. Expected one of: {list(_BY_NAME)}.")
    return _BY_NAME[name]


def form(family: str, frontend_inside: bool) -> Kind:
    """The kind a model of ``family`` becomes with its frontend inside (audio in) or outside.

    Raises:
        ParameterError: the family has no such form (the message names the forms it has).
    """
    for kind in KINDS:
        if kind.family == family and kind.frontend_inside == bool(frontend_inside):
            return kind
    forms = [f"{kind.name} (frontend={kind.frontend_inside})" for kind in KINDS if kind.family == family]
    raise ParameterError(f"A {family} model comes only as {forms}: frontend={bool(frontend_inside)} does not apply.")


def family_of(model, metadata=None) -> str:
    """The family of a Keras model and its export metadata (``trillsson_tf.json``; ``None``: none).

    Returns:
        :data:`WAVEFORM` for an export whose :func:`export_type` is in :data:`EXPORT_FAMILIES`, else
        the model's own ``family`` (every model of ``models.build`` has one), else :data:`CHUNK`
        (a plain functional model around a chunk network).
    """
    exported = export_type(metadata)
    if exported in EXPORT_FAMILIES:
        return EXPORT_FAMILIES[exported]
    return getattr(model, "family", CHUNK)


def export_type(metadata) -> str | None:
    """The export type in export metadata (``trillsson_tf.json``; ``None``: none): its
    :data:`EXPORT_TYPE_KEY`, or the ``kind`` key of exports written before the rename."""
    metadata = metadata or {}
    return metadata.get(EXPORT_TYPE_KEY, metadata.get("kind"))


def of_model(model, metadata=None, *, frontend: bool = True) -> Kind:
    """The kind a Keras model is converted to (see :func:`family_of` and :func:`form`).

    Raises:
        ParameterError: ``frontend=False`` for a family that only takes audio.
    """
    return form(family_of(model, metadata), frontend)


def of_tflite(card: dict, input_shape, patch_shape):
    """The kind of a ``.tflite`` file, from its model card and its one input's shape signature.

    Args:
        card: The model card beside the file (``{}`` when none): a ``clip_model`` entry marks a
            whole-clip model (its ``input`` is ``audio`` or ``log_mel``), ``output_keys`` without a
            ``frontend`` a waveform model.
        input_shape: The input's shape signature (``-1`` = any size).
        patch_shape: ``(frames, mels)`` of one log-mel patch of the file's frontend.

    Returns:
        The :class:`Kind`, or ``None`` for an input that is neither audio ``[batch, samples]``
        nor log-mel patches ``[n, frames, mels(, 1)]``.
    """
    clip = card.get("clip_model")
    if clip:
        return form(CLIP, clip["input"] == "audio")
    if card.get("output_keys") and not card.get("frontend"):  # a several-teacher chunk student has both
        return form(WAVEFORM, True)
    shape = tuple(int(size) for size in input_shape)
    if len(shape) == 2:
        return form(CHUNK, True)
    if shape[1:] in (tuple(patch_shape), (*patch_shape, 1)):
        return form(CHUNK, False)
    return None


_RENAMED = {"LAYER_STUDENT_KIND": "LAYER_STUDENT_EXPORT", "MULTITASK_KIND": "MULTITASK_EXPORT"}


def __getattr__(name):  # the old names of _RENAMED, deprecated for one release
    return renamed_attribute(__name__, globals(), _RENAMED, name)
