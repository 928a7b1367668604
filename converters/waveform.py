"""Layer-distilled and multi-task exports -> ``.tflite`` at a fixed input length, with every output.

The students of :mod:`trillsson_tf.models.distil` take raw audio and have no log-mel layer
or chunk network, and a fine-tuned model (:mod:`trillsson_tf.finetune`) has two outputs,
``keyword_logits`` and ``speaker_embedding``. :func:`convert_waveform` converts them with a
fixed input ``audio_samples [1, fixed_samples]`` (default: the training segment, 1 s; dynamic
shapes are a TFLite trap for the attention layers), keeps every output of the export in the
``serving_default`` signature, and writes the same kind of model card as
:func:`converters.tflite.convert` (op table, size, parity per output on real speech), plus
``output_keys``, which :class:`trillsson_tf.runtime.TFLiteModel` reads to return all outputs.
Every op is a TFLite builtin: the grouped positional convolution is SPLIT + CONV_2D +
CONCATENATION (:class:`trillsson_tf.models.distil.GroupedConv1D`).

:func:`converters.tflite.convert` (``trillsson-tf convert``) hands these exports over here.
"""
import json
import logging
import os
import re

import numpy as np

from converters.tflite import (
    DEFAULT_MIN_COSINE,
    LICENCE_NOTE,
    QUANTIZE_MODES,
    _converter,
    _int8_with_float_frontend,
    _interpreter,
    _tensor_card,
    op_table,
    parity_clips,
    representative_clips,
)
import trillsson_tf.models.heads  # noqa: F401  (registers the custom layers that model.keras refers to)
from trillsson_tf._keras import keras, tf
from trillsson_tf.errors import ConversionError, ParameterError
from trillsson_tf.export import KERAS_FILE, read_metadata
from trillsson_tf.metrics import parity
from trillsson_tf.models import AUDIO_INPUT_NAME
from trillsson_tf.models.distil import ENCODER_NAME

__all__ = ["WAVEFORM_KINDS", "convert_waveform", "frontend_layers", "is_waveform_export"]

_log = logging.getLogger(__name__)

WAVEFORM_KINDS = ("layer_student", "multitask")
"""``kind`` values (in ``trillsson_tf.json``) of the exports converted here."""


def is_waveform_export(source) -> bool:
    """True for an export folder written by ``distill-layers`` or ``finetune``."""
    if isinstance(source, keras.Model):
        return False
    path = os.fspath(source)
    return os.path.isdir(path) and read_metadata(path).get("kind") in WAVEFORM_KINDS


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """Cut (or repeat) each row of float32 ``[n, samples]`` to ``length`` samples."""
    return np.stack([np.resize(row, length) for row in audio]).astype(np.float32)


def frontend_layers(model) -> list:
    """Names of the waveform-frontend layers of an export's encoder: ``clip_norm`` and every ``conv<i>[_norm|_gelu]``."""
    encoder = model.get_layer(ENCODER_NAME)
    return [layer.name for layer in encoder.layers
            if layer.name == "clip_norm" or re.fullmatch(r"conv\d+(_norm|_gelu)?", layer.name)]


def convert_waveform(
    export_dir,
    out_path,
    *,
    quantize: str = "float32",
    fixed_samples=None,
    representative_audio=None,
    float_frontend: bool = True,
    parity_audio=None,
    min_cosine=None,
    strict: bool = False,
    overwrite: bool = False,
) -> dict:
    """Convert a layer-distilled or multi-task export to ``.tflite`` and write its model card.

    Args:
        export_dir: Export folder of ``distill-layers`` or ``finetune``.
        out_path: Output ``.tflite`` path; the card goes to ``<out_path without .tflite>.json``.
        quantize: One of :data:`converters.tflite.QUANTIZE_MODES` (``int8`` quantizes what has
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

    Returns:
        The model card (dict), also written as JSON.

    Raises:
        ParameterError: unknown mode, bad length, an existing output, not such an export.
        ConversionError: the converter failed, or parity is below ``min_cosine`` under ``strict``.
    """
    if quantize not in QUANTIZE_MODES:
        raise ParameterError(f"Unknown quantization mode {quantize!r}. Expected one of: {list(QUANTIZE_MODES)}.")
    export_dir, out_path = os.fspath(export_dir), os.fspath(out_path)
    if not is_waveform_export(export_dir):
        raise ParameterError(f"{export_dir!r} is not an export of `distill-layers` or `finetune` (kind {list(WAVEFORM_KINDS)}).")
    card_path = os.path.splitext(out_path)[0] + ".json"
    if not overwrite and (os.path.exists(out_path) or os.path.exists(card_path)):
        raise ParameterError(f"Output {out_path!r} (or its card {card_path!r}) exists; pass overwrite=True (CLI --force).")
    metadata = read_metadata(export_dir)
    length = int(fixed_samples if fixed_samples is not None else metadata.get("segment_samples", 16000))
    if isinstance(fixed_samples, bool) or length < 400:
        raise ParameterError(f"fixed_samples must be an integer >= 400 samples (one frame), got {fixed_samples!r}.")
    model = keras.models.load_model(os.path.join(export_dir, KERAS_FILE))
    names = list(metadata.get("outputs") or [metadata["output"]])

    spec = tf.TensorSpec([1, length], tf.float32, name=AUDIO_INPUT_NAME)
    call = tf.function(lambda audio_samples: {name: value for name, value in model(audio_samples, training=False).items() if name in names})
    function = call.get_concrete_function(spec)
    calibration = _fit(representative_clips(representative_audio, num_samples=length), length) if quantize == "int8" else None
    try:
        content = _converter(function, model, quantize, with_frontend=True, calibration=calibration).convert()
        float_layers = frontend_layers(model) if quantize == "int8" and float_frontend else []
        if float_layers:
            content = _int8_with_float_frontend(content, function, model, calibration, layers=float_layers)
    except Exception as error:  # the converter raises many unrelated types
        raise ConversionError(f"Converting {export_dir!r} ({quantize}) failed: {error}") from error
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "wb") as handle:
        handle.write(content)

    audio = _fit(parity_clips() if parity_audio is None else np.asarray(parity_audio, np.float32), length)
    reference = {name: np.concatenate([model(row[np.newaxis], training=False)[name].numpy() for row in audio]) for name in names}
    runner = _interpreter(content).get_signature_runner("serving_default")
    results = [runner(**{AUDIO_INPUT_NAME: row[np.newaxis]}) for row in audio]
    candidate = {name: np.concatenate([result[name] for result in results]).astype(np.float32) for name in names}
    threshold = DEFAULT_MIN_COSINE[quantize] if min_cosine is None else float(min_cosine)
    scores = {name: parity(reference[name], candidate[name]) for name in names}
    passed = all(value["mean_cosine"] >= threshold for value in scores.values())
    ops = op_table(content)
    card = {
        "format": "trillsson_tf.tflite/1",
        "model_file": os.path.basename(out_path),
        "name": model.name,
        "quantize": quantize,
        "frontend_inside": True,
        "inputs": [_tensor_card(n, d) for n, d in runner.get_input_details().items()],
        "outputs": [_tensor_card(n, d) for n, d in runner.get_output_details().items()],
        "output": names[0],
        "output_keys": names,
        "signature": "serving_default",
        "sample_rate_hz": 16000,
        "fixed_samples": length,
        "size_bytes": len(content),
        "ops": ops,
        "float_ops": sorted({row["op"] for row in ops if row["float"]}),
        "float_layers": float_layers,
        "parity": {"outputs": scores, "clips": int(len(audio)), "min_mean_cosine": threshold, "passed": passed,
                   "reference": "Keras model"},
        "source": {"export": export_dir, "parameters": int(model.count_params()), "metadata": metadata},
        "converter": {"tensorflow": tf.__version__, "fixed_samples": length},
        "licence": LICENCE_NOTE,
    }
    with open(card_path, "w") as handle:
        json.dump(card, handle, indent=2)
    _log.info("Wrote %s (%d bytes, %s, outputs %s)", out_path, len(content), quantize, names)
    if not passed:
        message = f"Parity of {out_path} below {threshold}: " + ", ".join(
            f"{name} mean cosine {value['mean_cosine']:.6f}" for name, value in scores.items())
        if strict:
            raise ConversionError(message)
        _log.warning(message)
    return card
