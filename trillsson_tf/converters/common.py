"""What the converters share: loading our exports, the parity and calibration audio, the TFLite converter set-up.

:mod:`trillsson_tf.converters.tflite`, :mod:`trillsson_tf.converters.waveform` and :mod:`trillsson_tf.converters.onnx` sit on top of
this module; it imports none of them. The kind of a model (which decides how it is traced) is
asked of :mod:`trillsson_tf.kinds`; the LiteRT side (interpreter, op table, tensor cards) is
:mod:`trillsson_tf.litert`.
"""

import contextlib
import glob
import logging
import os
import warnings

import numpy as np

import trillsson_tf.models.heads  # noqa: F401  (registers StatsPooling, which fine-tuned exports' model.keras names)
from trillsson_tf import kinds, litert
from trillsson_tf._keras import keras, tf
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.train.data import source_paths
from trillsson_tf.errors import ConversionError, ParameterError
from trillsson_tf.models.export import KERAS_FILE, METADATA_FILE, read_metadata
from trillsson_tf.folders import refuse_inputs, write_atomic
from trillsson_tf.contract import SIGNATURE_KEY
from trillsson_tf.formats.model_card import CARD_FORMATS, card_path
from trillsson_tf.formats.run_record import RUN_FILE, read_record
from trillsson_tf.frontend import numpy_ops
from trillsson_tf.models import inner_network

__all__ = [
    "DEFAULT_MIN_COSINE",
    "LICENCE_NOTE",
    "QUANTIZE_MODES",
    "check_parity",
    "check_quantize",
    "conversion_inputs",
    "fit_clips",
    "int8_with_float_layers",
    "load_keras_model",
    "log_mel_patch_rows",
    "output_paths",
    "parity_clips",
    "parity_message",
    "parity_threshold",
    "quiet_tf_interpreter",
    "representative_clips",
    "run_info",
    "tflite_card_fields",
    "tflite_converter",
    "write_model",
]

_log = logging.getLogger(__name__)

QUANTIZE_MODES = ("float32", "float16", "dynamic", "int8")
"""Accepted values of ``quantize`` (and of ``trillsson-tf convert --quantize``)."""

DEFAULT_MIN_COSINE = {"float32": 0.9999, "float16": 0.999, "dynamic": 0.99, "int8": 0.98}
"""Mean cosine to the Keras model on real speech below which a conversion warns (or fails under ``strict``)."""

LICENCE_NOTE = (
    "Model code: Apache-2.0 (trillsson_tf). The weights carry the terms of the data and teacher "
    "they were trained from; the parity audio is LibriSpeech (CC BY 4.0)."
)
_PARITY_CLIPS = 6
_PARITY_SAMPLES = 64000  # 4 s: two chunks per clip
_REPRESENTATIVE_CLIPS = 32
_RUN_KEYS = ("student", "teacher", "step", "target_mode", "loss", "data")


def load_keras_model(model_or_export_dir):
    """The Keras model and its export metadata.

    Args:
        model_or_export_dir: A model built by :func:`trillsson_tf.models.build` (or loaded from
            ``model.keras``), an export directory written by
            :func:`trillsson_tf.models.export.export_savedmodel` (also those of ``distill-layers`` and
            ``finetune``), or a ``.keras`` file.

    Returns:
        ``(model, metadata)``: the tf_keras model, and the export's ``trillsson_tf.json`` (``{}``
        for a model object or a bare file).

    Raises:
        ParameterError: a path that is not one of our exports (the message says what was
            expected), or a model that is none of :data:`trillsson_tf.kinds.KINDS`.
    """
    if isinstance(model_or_export_dir, keras.Model):
        model, metadata = model_or_export_dir, {}
    else:
        path = os.fspath(model_or_export_dir)
        if os.path.isdir(path):
            keras_file = os.path.join(path, KERAS_FILE)
            if not os.path.isfile(keras_file):
                raise ParameterError(
                    f"{path!r} is not a trillsson_tf export directory: expected {KERAS_FILE!r} and {METADATA_FILE!r} "
                    "in it (written by `trillsson-tf export` / trillsson_tf.models.export.export_savedmodel)."
                )
            metadata = read_metadata(path)
        elif path.endswith(".keras") and os.path.isfile(path):
            keras_file, metadata = path, {}
        else:
            raise ParameterError(f"Cannot convert {path!r}: expected a trillsson_tf export directory or a .keras file.")
        if (metadata.get("optimization") or {}).get("qat"):  # `trillsson-tf optimize --qat`: tfmot layers inside
            from trillsson_tf.optimize import quantize_scope

            with quantize_scope():
                model = keras.models.load_model(keras_file)
        else:
            model = keras.models.load_model(keras_file)
    if kinds.family_of(model, metadata) != kinds.WAVEFORM:
        inner_network(model)  # a chunk or clip network inside, or a clear error
    return model, metadata


def _bundled_librispeech() -> list:
    return sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))


def parity_clips(*, num_clips: int = _PARITY_CLIPS, num_samples: int = _PARITY_SAMPLES) -> np.ndarray:
    """Real speech for parity checks: the last bundled LibriSpeech files, cut to one length.

    The last files of the sorted list are used, so that representative data drawn from the
    first ones (as :func:`representative_clips` does by default) stays held out.

    Returns:
        float32 array ``[num_clips, num_samples]`` at 16 kHz, values in [-1, 1].
    """
    clips = [load_audio(path) for path in _bundled_librispeech()[-num_clips:]]
    return np.stack([np.resize(clip, num_samples) for clip in clips]).astype(np.float32)


def representative_clips(source, *, max_clips: int = _REPRESENTATIVE_CLIPS, num_samples: int = 32000) -> np.ndarray:
    """Audio for int8 calibration (or QAT/recovery training), as equal-length real clips.

    Args:
        source: An audio folder or CSV manifest (see :func:`trillsson_tf.train.data.find_audio`), a list
            of file paths, or a float32 array ``[n, samples]`` at 16 kHz (used as it is).
        max_clips: At most this many files are read.
        num_samples: Each file is cut (or repeated) to this length, in samples.

    Returns:
        float32 array ``[n, num_samples]`` (or the given array).

    Raises:
        ParameterError: no source, or a source without audio.
    """
    if source is None:
        raise ParameterError(
            "int8 quantization needs representative audio to calibrate activation ranges: pass "
            "representative_audio=<folder, CSV or list of files> (CLI: --data DIR)."
        )
    if isinstance(source, np.ndarray):
        if source.ndim != 2 or source.shape[0] == 0:
            raise ParameterError(f"Representative audio array must be float32 [n, samples], got shape {source.shape}.")
        return source.astype(np.float32)
    from trillsson_tf.train.data import find_audio

    items = find_audio(source)[:max_clips]
    return np.stack([np.resize(load_audio(item.path), num_samples) for item in items]).astype(np.float32)


def fit_clips(clips: np.ndarray, num_samples) -> np.ndarray:
    """float32 ``[n, samples]`` -> ``[n, num_samples]``, each clip cut or repeated (``None``: unchanged)."""
    if num_samples is None:
        return clips
    return np.stack([np.resize(clip, num_samples) for clip in clips]).astype(np.float32)


def log_mel_patch_rows(clips: np.ndarray, frontend) -> np.ndarray:
    """float32 ``[n, samples]`` -> float32 patches ``[n * chunks, frames, mels, 1]`` (numpy frontend)."""
    patches = numpy_ops.log_mel_patches(clips, frontend)
    return patches.reshape(-1, *frontend.patch_shape, 1).astype(np.float32)


def run_info(source):
    """The training-run summary of an export written by the distiller (its ``run.json``), or ``None``.

    Raises:
        ParameterError: a damaged ``run.json`` (one line naming it).
    """
    if isinstance(source, keras.Model) or not os.path.isdir(os.fspath(source)):
        return None
    run_file = os.path.join(os.fspath(source), RUN_FILE)  # the distiller writes it into its export
    if not os.path.isfile(run_file):
        return None
    record = read_record(run_file).fields()
    return {key: record[key] for key in _RUN_KEYS if key in record}


def check_quantize(quantize: str) -> None:
    """Raise unless ``quantize`` is one of :data:`QUANTIZE_MODES`."""
    if quantize not in QUANTIZE_MODES:
        raise ParameterError(f"Unknown quantization mode {quantize!r}. Expected one of: {list(QUANTIZE_MODES)}.")


def conversion_inputs(model_or_export_dir, audio=None) -> list:
    """What a conversion reads, for :func:`output_paths`: the model file or every file of the
    export folder (a card ``<out>.json`` could land on its ``trillsson_tf.json``), and calibration audio."""
    model = [] if isinstance(model_or_export_dir, keras.Model) or model_or_export_dir is None else [model_or_export_dir]
    if model and os.path.isdir(model[0]):
        model = [os.path.join(root, name) for root, _, names in os.walk(model[0]) for name in names]
    return [("model", model), ("--data", source_paths(audio))]


def output_paths(out_path, overwrite: bool, inputs=()) -> tuple:
    """``(out_path, card_path)`` of a conversion: the card is ``<out_path without extension>.json``.

    Args:
        out_path: The output file.
        overwrite: Replace existing outputs (CLI ``--force``).
        inputs: What the conversion reads (:func:`conversion_inputs`); neither output may be one,
            ``overwrite`` or not.

    Raises:
        ParameterError: either output is an input, or exists and ``overwrite`` is false.
    """
    out_path = os.fspath(out_path)
    card = card_path(out_path)
    for path in (out_path, card):
        refuse_inputs(path, inputs, what="Output", folder=False)
    if not overwrite and (os.path.exists(out_path) or os.path.exists(card)):
        raise ParameterError(f"Output {out_path!r} (or its card {card!r}) exists; pass overwrite=True (CLI --force).")
    return out_path, card


def write_model(out_path: str, content: bytes) -> None:
    """Write converted model bytes, making the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    write_atomic(out_path, content)


def parity_message(checked, out_path) -> str:
    """The warning of a :class:`~trillsson_tf.formats.model_card.Parity` that did not pass: each output below it."""
    many = len(checked.outputs) > 1
    below = [
        f"mean cosine {value.mean_cosine:.6f} < {checked.min_mean_cosine}"
        + (f" ({name})" if many else "")
        + f" (min {value.min_cosine:.6f}, max abs diff {value.max_abs_diff:.3g}, reference rms {value.reference_rms:.3g})"
        for name, value in checked.outputs.items()
        if value.mean_cosine < checked.min_mean_cosine
    ]
    return f"Parity of {out_path} below threshold: " + "; ".join(below) + "."


def parity_threshold(quantize: str, min_cosine=None, defaults: dict = DEFAULT_MIN_COSINE) -> float:
    """The mean cosine a conversion's parity must reach: ``min_cosine``, or the mode's default
    (:data:`DEFAULT_MIN_COSINE`, or ``defaults``: another quantizer's table)."""
    return defaults[quantize] if min_cosine is None else float(min_cosine)


def check_parity(passed: bool, message: str, *, strict: bool) -> None:
    """Do nothing when ``passed``; else raise ``message`` (``strict``) or log it as a warning."""
    if passed:
        return
    if strict:
        raise ConversionError(message)
    _log.warning(message)


def tflite_converter(function, trackable, quantize: str, kind: kinds.Kind, *, calibration=None):
    """A ``TFLiteConverter`` for one concrete function, set up for a quantization mode.

    Args:
        function: The concrete function to convert (one input, named ``kind.input_name``).
        trackable: The Keras model whose variables it reads.
        quantize: One of :data:`QUANTIZE_MODES`.
        kind: The :class:`trillsson_tf.kinds.Kind` being made: with the frontend inside, ``int8``
            lets the ops without int8 kernels stay float and keeps float32 input and output;
            without it, the model is integer only, input and output included.
        calibration: float32 ``[n, ...]`` rows of the model input, for ``int8``.
    """
    # The converter first saves its trackable as a SavedModel, which traces a Keras model layer by
    # layer; a module holding only the variables gives the same bytes 3-7x faster (measured: 13.7 s
    # against 1.9 s for a tiny MobileNetV3-Small).
    variables = tf.Module()
    variables.held = list(trackable.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], variables)
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({kind.input_name: row[np.newaxis]} for row in calibration)
        if kind.frontend_inside:
            # RFFT2D and COMPLEX_ABS have no int8 kernels: allow them to stay float.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter


@contextlib.contextmanager
def quiet_tf_interpreter():
    """Silence the deprecation warning of the ``tf.lite.Interpreter`` that TensorFlow's own int8 calibrator
    and quantization debugger build inside a conversion (this library runs every check in ``ai_edge_litert``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated", category=UserWarning
        )
        yield


def int8_with_float_layers(content: bytes, function, trackable, kind: kinds.Kind, calibration, layers) -> bytes:
    """Convert an audio-in model to int8 again with every tensor of the ``layers`` denylisted (kept float).

    Quantizing the mel matmul and the log costs about 0.01 in mean cosine on real speech
    (0.987-0.993 against 0.9999 with them in float, measured on a tiny trillsson1); the float
    mel matrix adds ``257 * 80 * 4`` bytes.

    Args:
        content: The plain int8 conversion (its tensor names locate the layers).
        function, trackable, kind, calibration: As for :func:`tflite_converter`.
        layers: Names of the Keras layers whose tensors stay float.

    Returns:
        The ``.tflite`` bytes.
    """
    names = [
        t["name"]
        for t in litert.make_interpreter(model_content=content, num_threads=1, delegates=False).get_tensor_details()
    ]
    frontend_nodes = [name for name in names if any(f"/{layer}/" in name for layer in layers)]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=tflite_converter(function, trackable, "int8", kind, calibration=calibration),
        debug_dataset=lambda: ({kind.input_name: row[np.newaxis]} for row in calibration[:1]),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=frontend_nodes),
    )
    return debugger.get_nondebug_quantized_model()


def tflite_card_fields(content: bytes, out_path, model, quantize: str, kind) -> dict:
    """The model card fields every ``.tflite`` converter fills alike: file, tensors, size, op table, licence."""
    runner = litert.make_interpreter(model_content=content, num_threads=1).get_signature_runner(SIGNATURE_KEY)
    ops = litert.op_table(content)
    return {
        "format": CARD_FORMATS["tflite"],
        "model_file": os.path.basename(out_path),
        "name": model.name,
        "quantize": quantize,
        "frontend_inside": kind.frontend_inside,
        "inputs": [litert.tensor_card(n, d) for n, d in runner.get_input_details().items()],
        "outputs": [litert.tensor_card(n, d) for n, d in runner.get_output_details().items()],
        "signature": SIGNATURE_KEY,
        "size_bytes": len(content),
        "ops": ops,
        "float_ops": sorted({row["op"] for row in ops if row["float"]}),
        "licence": LICENCE_NOTE,
    }
