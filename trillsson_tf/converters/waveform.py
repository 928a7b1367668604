"""Layer-distilled and multi-task exports (the ``waveform`` kind) -> ``.tflite`` at a fixed input length.

:func:`convert_waveform` converts a raw-audio student of :mod:`trillsson_tf.models.distil` or a
fine-tuned model (``keyword_logits`` and ``speaker_embedding``) with a fixed input
``audio_samples [1, fixed_samples]`` (default: the training segment, 1 s; dynamic shapes are a
TFLite trap for the attention layers), keeps every output in ``serving_default``, and writes the
model card of :func:`trillsson_tf.converters.tflite.convert` plus ``output_keys`` (which the runtime reads to
return all outputs) and the same metadata. Every op is a builtin. :func:`trillsson_tf.converters.tflite.convert`
hands these models to :func:`convert_waveform_model`.
"""

import logging
import os
import re

import numpy as np

from trillsson_tf.converters.common import (
    tflite_card_fields,
    check_parity,
    check_quantize,
    conversion_inputs,
    fit_clips,
    int8_with_float_layers,
    load_keras_model,
    output_paths,
    parity_clips,
    parity_message,
    parity_threshold,
    quiet_tf_interpreter,
    representative_clips,
    tflite_converter,
    write_model,
)
from trillsson_tf.converters.metadata import check_request, converter_metadata
from trillsson_tf import __version__, kinds, litert
from trillsson_tf._keras import tf
from trillsson_tf.contract import AUDIO_INPUT_NAME, SAMPLE_RATE_HZ, SIGNATURE_KEY
from trillsson_tf.errors import ConversionError, ParameterError
from trillsson_tf.formats.model_card import ModelCard, Parity, write_card
from trillsson_tf.metrics import parity
from trillsson_tf.models import output_key
from trillsson_tf.models.distil import ENCODER_NAME

__all__ = ["convert_waveform", "convert_waveform_model", "frontend_layers"]

_log = logging.getLogger(__name__)

_MIN_SAMPLES = 400  # one frame of the waveform frontend


def frontend_layers(model) -> list:
    """Names of the waveform-frontend layers of an export's encoder: ``clip_norm`` and every ``conv<i>[_norm|_gelu]``."""
    encoder = model.get_layer(ENCODER_NAME)
    return [
        layer.name
        for layer in encoder.layers
        if layer.name == "clip_norm" or re.fullmatch(r"conv\d+(_norm|_gelu)?", layer.name)
    ]


def convert_waveform(export_dir, out_path, **options) -> dict:
    """Convert a layer-distilled or multi-task export to ``.tflite`` and write its model card.

    Args:
        export_dir: Export folder of ``distill-layers`` or ``finetune``.
        out_path: Output ``.tflite`` path.
        **options: The keyword options of :func:`convert_waveform_model` (``quantize``,
            ``fixed_samples``, ``float_frontend``, ...).

    Returns:
        The model card (dict), also written as JSON.

    Raises:
        ParameterError: not such an export (or not an export at all), and as for
            :func:`convert_waveform_model`.
        ConversionError: as for :func:`convert_waveform_model`.
    """
    model, metadata = load_keras_model(export_dir)
    if kinds.family_of(model, metadata) != kinds.WAVEFORM:
        raise ParameterError(
            f"{os.fspath(export_dir)!r} is not an export of `distill-layers` or `finetune` "
            f"(kind {list(kinds.EXPORT_FAMILIES)})."
        )
    return convert_waveform_model(model, metadata, out_path, source=export_dir, **options)


def _input_length(model, metadata, fixed_samples) -> tuple:
    """``(metadata, input length in samples)``: the metadata with the segment and output a built model carries."""
    # A model built by models.build (not loaded from an export) carries its segment and output itself.
    metadata = {"segment_samples": getattr(model, "min_samples", 16000), **(metadata or {})}
    if not metadata.get("outputs") and not metadata.get("output"):
        metadata["output"] = output_key(model)
    length = int(fixed_samples if fixed_samples is not None else metadata["segment_samples"])
    if isinstance(fixed_samples, bool) or length < _MIN_SAMPLES:
        raise ParameterError(
            f"fixed_samples must be an integer >= {_MIN_SAMPLES} samples (one frame), got {fixed_samples!r}."
        )
    return metadata, length


def _convert(model, names: list, length: int, quantize: str, representative_audio, float_frontend: bool, source):
    """``(.tflite bytes, float layers)`` of the model on ``audio_samples [1, length]``, outputs ``names``.

    Raises:
        ConversionError: the converter failed.
    """
    kind = kinds.form(kinds.WAVEFORM, True)
    spec = tf.TensorSpec([1, length], tf.float32, name=AUDIO_INPUT_NAME)
    call = tf.function(
        lambda audio_samples: {
            name: value for name, value in model(audio_samples, training=False).items() if name in names
        }
    )
    function = call.get_concrete_function(spec)
    calibration = (
        fit_clips(representative_clips(representative_audio, num_samples=length), length)
        if quantize == "int8"
        else None
    )
    try:
        with quiet_tf_interpreter():  # TensorFlow's own calibrator builds a deprecated tf.lite.Interpreter
            content = tflite_converter(function, model, quantize, kind, calibration=calibration).convert()
            float_layers = frontend_layers(model) if quantize == "int8" and float_frontend else []
            if float_layers:
                content = int8_with_float_layers(content, function, model, kind, calibration, float_layers)
    except Exception as error:  # the converter raises many unrelated types
        raise ConversionError(f"Converting {source or model.name!r} ({quantize}) failed: {error}") from error
    return content, float_layers


def _parity(model, content: bytes, names: list, length: int, parity_audio, min_mean_cosine: float):
    """:class:`~trillsson_tf.formats.model_card.Parity` of every output of the ``.tflite`` bytes against the Keras model.

    The clips (``parity_audio``, default held-out bundled speech) are cut or padded to ``length`` samples.
    """
    audio = fit_clips(parity_clips() if parity_audio is None else np.asarray(parity_audio, np.float32), length)
    reference = {
        name: np.concatenate([model(row[np.newaxis], training=False)[name].numpy() for row in audio]) for name in names
    }
    runner = litert.make_interpreter(model_content=content, num_threads=1).get_signature_runner(SIGNATURE_KEY)
    results = [runner(**{AUDIO_INPUT_NAME: row[np.newaxis]}) for row in audio]
    candidate = {name: np.concatenate([result[name] for result in results]).astype(np.float32) for name in names}
    return Parity.of(
        {name: parity(reference[name], candidate[name]) for name in names},
        clips=len(audio),
        min_mean_cosine=min_mean_cosine,
        reference="Keras model",
    )


def convert_waveform_model(
    model,
    metadata: dict,
    out_path,
    *,
    source,
    quantize: str = "float32",
    fixed_samples=None,
    representative_audio=None,
    float_frontend: bool = True,
    parity_audio=None,
    min_cosine=None,
    strict: bool = False,
    overwrite: bool = False,
    tflite_metadata=None,
) -> dict:
    """Convert a loaded layer-distilled or multi-task model to ``.tflite`` and write its model card.

    Args:
        model: The export's Keras model (:func:`trillsson_tf.converters.common.load_keras_model`).
        metadata: Its ``trillsson_tf.json`` (``outputs`` or ``output``, ``segment_samples``).
        out_path: Output ``.tflite`` path; the card goes to ``<out_path without .tflite>.json``.
        source: The export folder, recorded in the card (``None`` for a model built in memory).
        quantize: One of :data:`trillsson_tf.converters.common.QUANTIZE_MODES` (``int8`` quantizes what has
            int8 kernels and keeps the rest float; inputs and outputs stay float32).
        fixed_samples: Input length in samples (default: the export's training segment).
        representative_audio: Calibration audio for ``int8`` (folder, CSV, list, or array).
        float_frontend: With ``int8``, keep the waveform frontend (:func:`frontend_layers`) float32
            (the mixed mode of the module docstring); ``False``: quantize it too.
        parity_audio: float32 ``[n, samples]`` at 16 kHz for the parity check (default: held-out
            bundled LibriSpeech speech), cut to ``fixed_samples``.
        min_cosine: Parity threshold (mean cosine of every output); default per mode.
        strict: Raise instead of warning when parity is below the threshold.
        overwrite: Replace existing outputs.
        tflite_metadata: Fields of the TFLite Model Metadata to set (see :func:`trillsson_tf.converters.tflite.convert`).

    Returns:
        The model card (dict), also written as JSON.

    Raises:
        ParameterError: unknown mode, bad length, an existing output, a metadata sample rate
            other than the model's.
        ConversionError: the converter failed, or parity is below ``min_cosine`` under ``strict``.
    """
    check_quantize(quantize)
    check_request(tflite_metadata, model_sample_rate_hz=SAMPLE_RATE_HZ)
    out_path, card_path = output_paths(out_path, overwrite, conversion_inputs(source, representative_audio))
    metadata, length = _input_length(model, metadata, fixed_samples)
    kind = kinds.form(kinds.WAVEFORM, True)
    names = list(metadata.get("outputs") or [metadata["output"]])
    content, float_layers = _convert(model, names, length, quantize, representative_audio, float_frontend, source)
    content, written = converter_metadata(
        content,
        name=model.name,
        version=__version__,
        model_sample_rate_hz=SAMPLE_RATE_HZ,
        audio_input=True,
        request=tflite_metadata,
    )
    write_model(out_path, content)
    checked = _parity(model, content, names, length, parity_audio, parity_threshold(quantize, min_cosine))
    card = ModelCard(
        **tflite_card_fields(content, out_path, model, quantize, kind),
        output=names[0],
        output_keys=list(names),
        sample_rate_hz=SAMPLE_RATE_HZ,
        parity=checked,
        source={
            "export": None if source is None else os.fspath(source),
            "parameters": int(model.count_params()),
            "metadata": metadata,
        },
        converter={"tensorflow": tf.__version__, "fixed_samples": length},
        extra={"fixed_samples": length, "tflite_metadata": written, "float_layers": float_layers},
    )
    written_card = write_card(card_path, card)
    _log.info("Wrote %s (%d bytes, %s, outputs %s)", out_path, len(content), quantize, names)
    check_parity(checked.passed, parity_message(checked, out_path), strict=strict)
    return written_card
