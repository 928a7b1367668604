"""Keras model or export directory -> ``.tflite`` (float32, float16, dynamic-range, int8) + model card.

:func:`convert` asks :func:`trillsson_tf.kinds.of_model` which kind a model is and follows that
kind's plan (:data:`_PLANS`): the frontend inside (``frontend=True``: audio ``audio_samples`` in) or
outside (``frontend=False``: log-mel patches, or Wav2Small's dB mel bands, in: the form for int8-only
targets and TFLite Micro). ``waveform`` models go to :func:`trillsson_tf.converters.waveform.convert_waveform_model`.
Every file gets a model card beside it (``<out without .tflite>.json``) and TFLite Model Metadata
inside (:mod:`trillsson_tf.converters.metadata`); ``mediapipe=True`` makes the fixed ``[1, N]`` form MediaPipe
Tasks runs. Which quantization goes with which frontend, and why: docs/DESIGN.md, "Conversion".
"""

import dataclasses
import logging
import os

import numpy as np

from trillsson_tf.converters.common import (
    DEFAULT_MIN_COSINE,
    tflite_card_fields,
    check_parity,
    check_quantize,
    conversion_inputs,
    fit_clips,
    int8_with_float_layers,
    load_keras_model,
    log_mel_patch_rows,
    output_paths,
    parity_clips,
    parity_message,
    parity_threshold,
    quiet_tf_interpreter,
    representative_clips,
    run_info,
    tflite_converter,
    write_model,
)
from trillsson_tf.converters import litert_quantizer
from trillsson_tf.converters.metadata import check_metadata, check_request, converter_metadata, score_labels
from trillsson_tf.converters.waveform import convert_waveform_model
from trillsson_tf import __version__, kinds, litert
from trillsson_tf._keras import keras, tf
from trillsson_tf.contract import (
    AUDIO_INPUT_NAME,
    LOG_MEL_INPUT_NAME,
    PATCH_INPUT_NAME,
    SCORES_KEY,
    SIGNATURE_KEY,
)
from trillsson_tf.errors import ConversionError, ParameterError, renamed_keywords
from trillsson_tf.formats.model_card import ModelCard, Parity, write_card
from trillsson_tf.frontend import DEFAULT_FRONTEND, dft
from trillsson_tf.metrics import ccc, parity
from trillsson_tf.models import chunk_network, float32_frontend_model, output_heads, output_key

__all__ = ["MEDIAPIPE_SAMPLES", "convert", "tflite_embeddings", "tflite_outputs"]

_log = logging.getLogger(__name__)

MEDIAPIPE_SAMPLES = 32000
"""Default window of the MediaPipe form, in samples: the 2 s a clip is mirror-padded to, so each
of MediaPipe's zero-padded, non-overlapping windows is one whole 195-frame chunk."""

_FRONTEND_LAYER = "log_mel_patches"
_CLIP_FRONTEND_LAYERS = ("clip_normalization", "dft_frontend")


def tflite_embeddings(model_content: bytes, inputs: np.ndarray, output=None) -> np.ndarray:
    """Run a ``.tflite`` model row by row through its ``serving_default`` signature.

    Args:
        model_content: The flatbuffer bytes.
        inputs: float32 ``[n, samples]`` audio (frontend inside) or ``[n, 195, 80, 1]`` patches;
            int8/uint8 inputs are quantized with the model's input scale and zero point.
        output: The output to return when the model has several (:func:`tflite_outputs` gives all).

    Returns:
        float32 ``[n, D]`` (dequantized when the output is an integer tensor).
    """
    outputs = tflite_outputs(model_content, inputs)
    if output is None and len(outputs) > 1:
        raise ParameterError(f"The model has outputs {sorted(outputs)}: name one (output=...).")
    return outputs[output] if output is not None else next(iter(outputs.values()))


def tflite_outputs(model_content: bytes, inputs: np.ndarray) -> dict:
    """As :func:`tflite_embeddings`, every output: ``{name: float32 [n, D_name]}``."""
    runner = litert.make_interpreter(model_content=model_content, num_threads=1).get_signature_runner(SIGNATURE_KEY)
    ((in_name, in_details),) = runner.get_input_details().items()
    rows = [runner(**{in_name: litert.quantize(row[np.newaxis], in_details)}) for row in inputs]
    return {
        name: np.concatenate([litert.dequantize(row[name], details) for row in rows])
        for name, details in runner.get_output_details().items()
    }


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How one kind is converted: what is traced, and the rows its parity and calibration run on."""

    network: object  # the Keras model whose variables the function reads
    function: object  # the concrete function converted, one input named kind.input_name
    parity_inputs: np.ndarray  # rows of that input made from the parity audio
    reference: dict  # {output: float32 [rows, D]}: the Keras outputs on them, the main output first
    calibration: object  # rows of that input for int8, else None
    float_layers: tuple  # Keras layers kept float under int8
    reference_name: str  # what the parity compares with
    fixed_samples: object  # the audio length the input is fixed to, or None
    card: dict  # the card's frontend entries, which the runtime reads

    @property
    def keys(self) -> list:
        """The outputs converted, the main one first (then a several-teacher student's other heads)."""
        return list(self.reference)


def _chunk_card(config) -> dict:
    return {"frontend": config.to_dict(), "clip_model": None}


def _clip_card(model, config, takes: str) -> dict:
    # Read by trillsson_tf.runtime: whole clips (no 2 s chunks), what the file takes, and who normalises them.
    compression = model.dft_frontend.get_layer("compression").compression
    return {"frontend": None, "clip_model": {"frontend": config.to_dict(), "input": takes, "compression": compression}}


def _clip_features(model, clips: np.ndarray) -> np.ndarray:
    """float32 audio ``[n, samples]`` -> the dB mel ``[n, frames, mels]`` a Wav2Small network takes (numpy twin)."""
    compression = model.dft_frontend.get_layer("compression").compression
    return dft.features(dft.normalize_clips(clips, model.frontend), model.frontend, compression=compression)


def _audio_spec(fixed_samples):
    return tf.TensorSpec(
        [None, None] if fixed_samples is None else [1, fixed_samples], tf.float32, name=AUDIO_INPUT_NAME
    )


def _headed(network, keys, heads: dict):
    """``network`` -> ``{key: vectors}``; with heads (a several-teacher student), one Keras model of them all.

    The heads have weights of their own, so the converter must be given a model that tracks them.
    """
    if not heads:
        return network, lambda inputs: {keys[0]: network(inputs, training=False)}
    outputs = {key: heads[key](network.output) for key in keys}
    headed = keras.Model(network.input, outputs, name=network.name)
    return headed, lambda inputs: headed(inputs, training=False)


def _chunk_plan(model, keys, config, audio, calibration, fixed_samples, quantize) -> _Plan:
    """Audio in, the frontend rebuilt in float32 (TFLite has no float64 FFT) around the same chunk network."""
    network = float32_frontend_model(model, float16_safe=quantize == "float16")
    call = tf.function(lambda audio_samples: {key: network(audio_samples, training=False)[key] for key in keys})
    parity_inputs = fit_clips(audio, fixed_samples)
    outputs = model(parity_inputs)
    return _Plan(
        network,
        call.get_concrete_function(_audio_spec(fixed_samples)),
        parity_inputs,
        {key: outputs[key].numpy() for key in keys},
        calibration,
        (_FRONTEND_LAYER,),
        "Keras model (float64 frontend)",
        fixed_samples,
        _chunk_card(config),
    )


def _patch_plan(model, keys, config, audio, calibration, fixed_samples, quantize) -> _Plan:
    """The chunk network alone on log-mel patches (computed here, as the runtime does, in numpy), and its heads."""
    network, run = _headed(chunk_network(model), keys, output_heads(model))
    spec = tf.TensorSpec([None, *config.patch_shape, 1], tf.float32, name=PATCH_INPUT_NAME)
    call = tf.function(lambda log_mel_patch: run(log_mel_patch))
    parity_inputs = log_mel_patch_rows(audio, config)
    calibration = None if calibration is None else log_mel_patch_rows(calibration, config)
    reference = run(parity_inputs)
    return _Plan(
        network,
        call.get_concrete_function(spec),
        parity_inputs,
        {key: value.numpy() for key, value in reference.items()},
        calibration,
        (),
        "Keras chunk network",
        fixed_samples,
        _chunk_card(config),
    )


def _clip_plan(model, keys, config, audio, calibration, fixed_samples, quantize) -> _Plan:
    """A whole-clip model as it is: its frontend is float32 convolutions already."""
    call = tf.function(lambda audio_samples: {key: model(audio_samples, training=False)[key] for key in keys})
    parity_inputs = fit_clips(audio, fixed_samples)
    calibration = None if calibration is None else fit_clips(calibration, fixed_samples)
    outputs = model(parity_inputs)
    return _Plan(
        model,
        call.get_concrete_function(_audio_spec(fixed_samples)),
        parity_inputs,
        {key: outputs[key].numpy() for key in keys},
        calibration,
        _CLIP_FRONTEND_LAYERS,
        "Keras model",
        fixed_samples,
        _clip_card(model, config, "audio"),
    )


def _clip_log_mel_plan(model, keys, config, audio, calibration, fixed_samples, quantize) -> _Plan:
    """A whole-clip network alone on the dB mel of ``fixed_samples`` of audio (default: the 1 s minimum clip)."""
    fixed_samples = config.min_samples if fixed_samples is None else fixed_samples
    network, run = _headed(model.clip_network, keys, output_heads(model))
    spec = tf.TensorSpec(
        [1, config.num_frames(fixed_samples), config.num_mel_bins], tf.float32, name=LOG_MEL_INPUT_NAME
    )
    call = tf.function(lambda log_mel: run(log_mel))
    parity_inputs = _clip_features(model, fit_clips(audio, fixed_samples))
    calibration = None if calibration is None else _clip_features(model, fit_clips(calibration, fixed_samples))
    reference = run(parity_inputs)
    return _Plan(
        network,
        call.get_concrete_function(spec),
        parity_inputs,
        {key: value.numpy() for key, value in reference.items()},
        calibration,
        (),
        "Keras clip network",
        fixed_samples,
        _clip_card(model, config, LOG_MEL_INPUT_NAME),
    )


_PLANS = {"chunk": _chunk_plan, "patch": _patch_plan, "clip": _clip_plan, "clip_log_mel": _clip_log_mel_plan}
"""Kind name -> how a model of that kind is traced (the waveform kind has a module of its own)."""

_FRONTENDS = {
    kinds.CHUNK: lambda model: model.get_layer(_FRONTEND_LAYER).frontend,
    kinds.CLIP: lambda model: model.frontend,
}
"""Model family -> its frontend numbers (a FrontendConfig or a DFTFrontendConfig)."""


def _check_choices(quantize: str, kind: kinds.Kind, fixed_samples, *, least: int) -> None:
    check_quantize(quantize)
    if quantize == "dynamic" and kind.frontend_inside:
        raise ParameterError(
            "Dynamic-range quantization would quantize the frontend's mel matrix (cosine 0.90-0.96 against the "
            "float model). Use quantize='dynamic' with frontend=False (CLI --no-frontend), or 'float16' / 'int8'."
        )
    if fixed_samples is not None:
        if kind.input_name == PATCH_INPUT_NAME:
            raise ParameterError("fixed_samples applies to audio input; it cannot be used with frontend=False.")
        if isinstance(fixed_samples, bool) or not isinstance(fixed_samples, int) or fixed_samples < least:
            raise ParameterError(f"fixed_samples must be an integer >= {least} samples, got {fixed_samples!r}.")


def _chunk_samples(kind: kinds.Kind, fixed_samples) -> int:
    """The input length of a ``chunk_vectors=True`` conversion: one chunk of the TRILLsson frontend (31,440 samples)."""
    span = DEFAULT_FRONTEND.chunk_span_samples
    if kind.input_name != AUDIO_INPUT_NAME:
        raise ParameterError(
            "chunk_vectors=True fixes the audio input to one chunk; a file without its frontend (frontend=False) "
            "takes one patch per row and gives chunk vectors already."
        )
    if fixed_samples not in (None, span):
        raise ParameterError(
            f"chunk_vectors=True fixes the input to one chunk of {span} samples; got fixed_samples={fixed_samples}."
        )
    return span


def _check_forms(kind: kinds.Kind, *, chunk_vectors: bool, mediapipe: bool) -> None:
    """Raise when a fixed-length form (chunk vectors, MediaPipe) does not fit ``kind``, or both are asked for."""
    if chunk_vectors and kind.family == kinds.WAVEFORM:
        raise ParameterError(
            "chunk_vectors=True applies to chunk and whole-clip students; a waveform export gives one vector per clip."
        )
    if mediapipe and not kind.frontend_inside:
        raise ParameterError(
            "The MediaPipe form takes audio: mediapipe=True (CLI --mediapipe) needs the frontend "
            "inside; drop frontend=False (--no-frontend, --micro)."
        )
    if chunk_vectors and mediapipe:
        raise ParameterError(
            "chunk_vectors=True and mediapipe=True fix the input to different lengths (31,440 and the "
            "MediaPipe window); make one file of each."
        )


def _litert_recipe(quantize: str, quantizer: str, float_layers, kind: kinds.Kind) -> tuple:
    """``(LiteRT recipe or None, the mode of TensorFlow's conversion)``, checked: with ``quantizer='litert'``
    TensorFlow converts to float32 and LiteRT's quantizer applies the recipe ``quantize`` after it."""
    litert_recipe = quantize if quantizer == "litert" else None
    if litert_recipe:
        litert_quantizer.check_recipe(quantize)
    elif quantizer != "tensorflow" or float_layers:
        raise ParameterError(f"quantizer must be one of {list(litert_quantizer.QUANTIZERS)} (float_layers: litert).")
    elif quantize in litert_quantizer.RECIPES and quantize != "int8":  # int8: both quantizers have it
        raise ParameterError(f"quantize={quantize!r} is a recipe of LiteRT's quantizer: add quantizer='litert'.")
    if kind.family == kinds.WAVEFORM and litert_recipe:
        raise ParameterError("quantizer='litert' converts chunk and whole-clip students; not waveform exports yet.")
    return litert_recipe, "float32" if litert_recipe else quantize


def _mediapipe_samples(fixed_samples) -> int:
    """The MediaPipe form's audio length in samples: ``fixed_samples``, or :data:`MEDIAPIPE_SAMPLES` (a log line)."""
    if fixed_samples is None:
        fixed_samples = MEDIAPIPE_SAMPLES
        _log.info(
            "MediaPipe form: the model's input is dynamic; fixing it to [1, %d] samples (pass fixed_samples / "
            "--fixed-samples for another window)",
            fixed_samples,
        )
    return fixed_samples


def _frontend_input(model, kind: kinds.Kind, fixed_samples, quantize: str, chunk_vectors: bool, request) -> tuple:
    """``(frontend numbers, audio input length in samples or None)``: one chunk for ``chunk_vectors``; the
    length, the mode and the metadata ``request`` checked against the model."""
    config = _FRONTENDS[kind.family](model)
    if chunk_vectors:
        fixed_samples = _chunk_samples(kind, fixed_samples)
    _check_choices(quantize, kind, fixed_samples, least=config.window_samples)
    check_request(request, model_sample_rate_hz=config.sample_rate_hz)
    return config, fixed_samples


def _plan(
    model, kind: kinds.Kind, config, fixed_samples, quantize: str, litert_recipe, representative_audio, parity_audio
) -> tuple:
    """``(the kind's plan, number of parity clips)``, for every output: a several-teacher student has several heads.

    Calibration clips are read for int8 (either quantizer) and for a LiteRT recipe given audio; the parity
    audio defaults to held-out bundled speech.
    """
    key = output_key(model)
    keys = [key, *(name for name in output_heads(model) if name != key)]
    calibrate = quantize == "int8" or (litert_recipe and (representative_audio is not None or litert_recipe == "int8"))
    calibration = representative_clips(representative_audio) if calibrate else None
    audio = parity_clips() if parity_audio is None else np.asarray(parity_audio, dtype=np.float32)
    return _PLANS[kind.name](model, keys, config, audio, calibration, fixed_samples, quantize), len(audio)


def _tflite_content(plan: _Plan, kind: kinds.Kind, quantize: str, name: str, frontend: bool) -> bytes:
    """TensorFlow's conversion of ``plan``'s function; under int8 its float layers stay float.

    Raises:
        ConversionError: the converter failed (``name``, ``frontend``: for the message).
    """
    try:
        with quiet_tf_interpreter():
            content = tflite_converter(plan.function, plan.network, quantize, kind, calibration=plan.calibration)
            content = content.convert()
        if quantize == "int8" and plan.float_layers:
            with quiet_tf_interpreter():
                content = int8_with_float_layers(
                    content, plan.function, plan.network, kind, plan.calibration, plan.float_layers
                )
    except Exception as error:  # the converter raises many unrelated types
        raise ConversionError(f"Converting {name!r} ({quantize}, frontend={frontend}) failed: {error}") from error
    return content


def _model_content(plan: _Plan, kind: kinds.Kind, quantize: str, litert_recipe, float_layers, name, frontend) -> tuple:
    """``(.tflite bytes, their quantization, the card's quantizer entry or None)``: TensorFlow's conversion, then
    LiteRT's quantizer on that float32 file when there is a recipe (metadata is written after it).

    ``name`` (the model's) and ``frontend`` go into the conversion's error message.
    """
    content = _tflite_content(plan, kind, quantize, name, frontend)
    if not litert_recipe:
        return content, quantize, None
    content, quantizer_entry = litert_quantizer.quantize(
        content,
        litert_recipe,
        input_name=kind.input_name,
        report_inputs=plan.parity_inputs if plan.calibration is None else plan.calibration,
        calibration=plan.calibration,
        float_layers=float_layers,
        frontend_layers=plan.float_layers,
    )
    return content, litert_recipe, quantizer_entry


def _write_tflite(
    out_path, content: bytes, model, metadata: dict, kind: kinds.Kind, plan: _Plan, config, request, check
) -> tuple:
    """Write the bytes with TFLite Model Metadata inside (read back when ``check``); ``(bytes, the metadata written)``."""
    key = plan.keys[0]
    content, written = converter_metadata(
        content,
        name=model.name,
        version=__version__,
        model_sample_rate_hz=config.sample_rate_hz,
        audio_input=kind.input_name == AUDIO_INPUT_NAME,
        score_names=score_labels(metadata.get("teacher"), plan.reference[key].shape[1]) if key == SCORES_KEY else None,
        request=request,
    )
    if check:
        check_metadata(content, written)
    write_model(out_path, content)
    return content, written


def _check_file(content: bytes, plan: _Plan, clips: int, out_path, quantize: str, min_cosine, litert_recipe) -> Parity:
    """Warn when an int8 file keeps ops in float; the :class:`~trillsson_tf.formats.model_card.Parity` of every
    output on ``plan``'s rows, against ``min_cosine`` (default: the mode's, of either quantizer)."""
    ops = litert.op_table(content)
    float_ops = sorted({row["op"] for row in ops if row["float"]})
    if quantize == "int8" and float_ops:
        _log.warning("int8 model %s keeps these ops in float: %s", out_path, ", ".join(float_ops))
    candidate = tflite_outputs(content, plan.parity_inputs)
    scores = {name: parity(plan.reference[name], candidate[name]) for name in plan.keys}
    if plan.keys[0] == SCORES_KEY:
        # Cosine is a weak check on a few scores; CCC over the parity rows says whether each score follows.
        scores[SCORES_KEY]["ccc"] = ccc(plan.reference[SCORES_KEY], candidate[SCORES_KEY]).tolist()
    defaults = litert_quantizer.DEFAULT_MIN_COSINE if litert_recipe else DEFAULT_MIN_COSINE
    return Parity.of(
        scores,
        clips=clips,
        rows=len(plan.parity_inputs),
        min_mean_cosine=parity_threshold(quantize, min_cosine, defaults),
        reference=plan.reference_name,
    )


def _student_entries(plan: _Plan, config, chunk_vectors: bool) -> dict:
    """The card entries of a chunk or whole-clip student: its outputs, frontend numbers and conversion."""
    keys = plan.keys
    return {
        "output": keys[0],
        "output_keys": keys if len(keys) > 1 else None,
        "sample_rate_hz": config.sample_rate_hz,
        **plan.card,
        # "frames": the card key cards have always had for chunk_vectors (docs/DESIGN.md, "Glossary").
        "converter": {"tensorflow": tf.__version__, "fixed_samples": plan.fixed_samples, "frames": bool(chunk_vectors)},
    }


def _card_source(source, model, metadata: dict) -> dict:
    """The card's ``source``: the export (``None`` for a model object), parameters, build, teacher, run, optimization."""
    return {
        "export": source,
        "parameters": int(model.count_params()),
        "build": metadata.get("build", getattr(model, "build_spec", None)),
        "teacher": metadata.get("teacher"),
        "run": None if source is None else run_info(source),
        "optimization": metadata.get("optimization"),
    }


def _write_card(card_path, card: ModelCard, out_path, *, strict: bool) -> dict:
    """Write the card and log the conversion, then check its parity (a warning, or under ``strict`` an error)."""
    written_card = write_card(card_path, card)
    _log.info(
        "Wrote %s (%d bytes, %s, mean cosine %.6f) and %s",
        out_path,
        card.size_bytes,
        card.quantize,
        card.parity.first.mean_cosine,
        card_path,
    )
    check_parity(card.parity.passed, parity_message(card.parity, out_path), strict=strict)
    return written_card


def convert(
    model_or_export_dir,
    out_path,
    *,
    quantize: str = "float32",
    frontend: bool = True,
    fixed_samples=None,
    chunk_vectors: bool = False,
    representative_audio=None,
    parity_audio=None,
    min_cosine=None,
    strict: bool = False,
    overwrite: bool = False,
    mediapipe: bool = False,
    tflite_metadata=None,
    quantizer: str = "tensorflow",
    float_layers=(),
    **renamed,
) -> dict:
    """Convert a model to ``.tflite`` with metadata inside and write its JSON model card beside it.

    Args:
        model_or_export_dir: Model, export directory or ``.keras`` file (see
            :func:`trillsson_tf.converters.common.load_keras_model`); layer-distilled and fine-tuned exports
            go to :func:`trillsson_tf.converters.waveform.convert_waveform_model`.
        out_path: Output ``.tflite`` path; the card goes to ``<out_path without .tflite>.json``.
        quantize: One of :data:`trillsson_tf.converters.common.QUANTIZE_MODES`.
        frontend: Put the log-mel frontend inside (audio in) or leave it out (patches in); for
            whole-clip students, keep the per-clip normalisation inside or leave it out
            (normalised audio ``[1, fixed_samples]`` in).
        fixed_samples: Fix the audio input to ``[1, fixed_samples]`` samples; ``None`` keeps
            ``[None, None]`` (any batch, any length), or 1 s for a whole-clip student without
            its normalisation (TFLite Micro needs a fixed shape).
        chunk_vectors: Fix the audio input to one chunk, ``[1, 31440]`` (one 195-frame patch): the
            fixed-shape file that gives chunk vectors (:meth:`trillsson_tf.runtime.TFLiteModel.chunk_vectors`;
            on a device, one call per hop on the last 31,440 samples). Dynamic-length and
            patch-in files give chunk vectors without it. ``frames`` is its old name.
        representative_audio: Calibration audio for ``int8`` (folder, CSV, file list or float32
            ``[n, samples]`` array); required for ``int8``.
        parity_audio: float32 ``[n, samples]`` at 16 kHz to check parity on; default: held-out
            bundled LibriSpeech speech (6 clips of 4 s).
        min_cosine: Parity threshold (mean cosine); default :data:`trillsson_tf.converters.common.DEFAULT_MIN_COSINE` for the mode.
        strict: Raise instead of warning when parity is below the threshold.
        overwrite: Replace an existing ``out_path``.
        mediapipe: Write the MediaPipe Tasks form: audio in at a fixed ``[1, fixed_samples]``
            (default :data:`MEDIAPIPE_SAMPLES`, said in a log line); needs the frontend inside.
        tflite_metadata: Fields of the TFLite Model Metadata to set (keys of
            :data:`trillsson_tf.converters.metadata.REQUEST_FIELDS`: name, description, version, author,
            licence, sample_rate_hz); ``None``: the defaults.
        quantizer: ``'tensorflow'`` (TensorFlow's converter quantizes, ``quantize`` one of its modes) or
            ``'litert'``: the float32 file goes through LiteRT's quantizer, ``quantize`` one of
            :data:`trillsson_tf.converters.litert_quantizer.RECIPES`, and the card gets its per-layer
            error report (``quantizer``); the frontend's layers stay float.
        float_layers: Layer names kept float by LiteRT's quantizer (names in the error report).

    Returns:
        The model card (dict), also written as JSON; ``tflite_metadata`` holds the metadata written.

    Raises:
        ParameterError: unknown mode, ``int8`` without representative audio, dynamic range with the
            frontend, ``frontend=False`` for a waveform export or with ``mediapipe``, an existing
            output without ``overwrite``, a path that is not our export, or a metadata sample
            rate other than the model's.
        ConversionError: the converter failed, or parity is below ``min_cosine`` under ``strict``.
    """
    old = renamed_keywords("trillsson_tf.converters.tflite.convert", renamed, {"frames": "chunk_vectors"})
    chunk_vectors = old.get("chunk_vectors", chunk_vectors)
    model, metadata = load_keras_model(model_or_export_dir)
    source = None if isinstance(model_or_export_dir, keras.Model) else os.fspath(model_or_export_dir)
    kind = kinds.of_model(model, metadata, frontend=frontend)
    _check_forms(kind, chunk_vectors=chunk_vectors, mediapipe=mediapipe)
    litert_recipe, quantize = _litert_recipe(quantize, quantizer, float_layers, kind)
    if kind.family == kinds.WAVEFORM:  # raw audio at a fixed length, every output of the export
        return convert_waveform_model(
            model,
            metadata,
            out_path,
            source=source,
            quantize=quantize,
            fixed_samples=fixed_samples,
            representative_audio=representative_audio,
            parity_audio=parity_audio,
            min_cosine=min_cosine,
            strict=strict,
            overwrite=overwrite,
            tflite_metadata=tflite_metadata,
        )
    fixed_samples = _mediapipe_samples(fixed_samples) if mediapipe else fixed_samples
    out_path, card_path = output_paths(out_path, overwrite, conversion_inputs(source, representative_audio))
    config, fixed_samples = _frontend_input(model, kind, fixed_samples, quantize, chunk_vectors, tflite_metadata)
    plan, clips = _plan(model, kind, config, fixed_samples, quantize, litert_recipe, representative_audio, parity_audio)
    content, quantize, quantizer_entry = _model_content(
        plan, kind, quantize, litert_recipe, float_layers, model.name, frontend
    )
    check = bool(litert_recipe)  # LiteRT's quantizer ran: read the metadata back
    content, written = _write_tflite(out_path, content, model, metadata, kind, plan, config, tflite_metadata, check)
    checked = _check_file(content, plan, clips, out_path, quantize, min_cosine, litert_recipe)
    card = ModelCard(
        **tflite_card_fields(content, out_path, model, quantize, kind),
        **_student_entries(plan, config, chunk_vectors),
        parity=checked,
        source=_card_source(source, model, metadata),
        extra={"tflite_metadata": written, **({"quantizer": quantizer_entry} if quantizer_entry else {})},
    )
    return _write_card(card_path, card, out_path, strict=strict)
