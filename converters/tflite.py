"""Keras model or export directory -> ``.tflite`` (float32, float16, dynamic-range, int8) + model card.

Two forms:

* **frontend inside** (``frontend=True``): float32 audio ``audio_samples`` ``[batch, samples]``
  (or ``[1, fixed_samples]``) at 16 kHz -> ``embedding`` ``[batch, D]``, signature
  ``serving_default``. The model is rebuilt around the same chunk network with the frontend
  computed in float32 (TFLite has no float64 FFT); its ops are builtins (RFFT2D, COMPLEX_ABS, ...).
* **frontend outside** (``frontend=False``): the chunk network alone, log-mel patches
  ``log_mel_patch`` ``[n, 195, 80, 1]`` -> ``embedding`` ``[n, D]``; the runtime's numpy frontend
  feeds it. This is the form for int8-only targets and TFLite Micro.

Quantization and the frontend: dynamic-range quantization turns every constant weight with
at least 1,024 values into int8, the 257 x 80 mel matrix included, which costs the embedding
0.04-0.10 in cosine (spec section 3). ``quantize='dynamic'`` is therefore only offered with
``frontend=False``. ``float16`` is allowed with the frontend: its analysis window is
applied as a float16-exact part plus the remainder (``float16_safe`` in
:mod:`trillsson_tf.frontend.tf_ops`), without which the rounded window alone cost up to 0.01 in
cosine on 8 kHz recordings (FSDD; 0.0009 on average). ``int8`` with the frontend keeps the whole frontend in float32 (its tensors are
denylisted in the quantizer; RFFT2D and COMPLEX_ABS have no int8 kernels anyway) and quantizes
the chunk network from a representative dataset of real audio; the op table of the card lists
every op left in float so that this is visible.

Whole-clip students (Wav2Small) compute their own spectrogram with builtin ops: per-clip
normalisation, a DFT written as a strided convolution, magnitude, mel projection, dB. With
``frontend=True`` all of it is inside (audio in, any length); under ``int8`` the normalisation
and the spectrogram stay float32 and the network is int8, because int8 audio and an int8
linear spectrum keep too little dynamic range (measured in ``benchmarks/emotion_benchmark.py``:
the lowest per-score CCC against the teacher falls from 0.82 to 0.69 when it is int8 too). With ``frontend=False`` the model
is the network alone, dB mel bands ``log_mel [1, frames, mels]`` of ``fixed_samples`` of audio
(default 1 s: 499 frames) in, which the board (or the runtime, with
:func:`trillsson_tf.frontend.dft.features`) computes: the form TFLite Micro runs, all int8.
Their output is ``scores``; the card holds a ``clip_model`` entry the runtime reads.

After each conversion :func:`convert` writes a JSON model card next to the model
(``<out without .tflite>.json``, where :func:`trillsson_tf.runtime.read_model_card` finds it):
tensors, quantization parameters, frontend numbers, op table, size, parity on real speech.
"""
import glob
import json
import logging
import os

import numpy as np

from trillsson_tf._keras import keras, tf
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.errors import ConversionError, ParameterError
from trillsson_tf.export import KERAS_FILE, METADATA_FILE, read_metadata
from trillsson_tf.frontend import DEFAULT_FRONTEND, dft, numpy_ops
from trillsson_tf.metrics import ccc, parity
from trillsson_tf.models import (
    AUDIO_INPUT_NAME,
    SCORES_KEY,
    chunk_network,
    float32_frontend_model,
    inner_network,
    output_key,
)
from trillsson_tf.models.wav2small import FEATURES_INPUT_NAME, Wav2SmallModel

__all__ = [
    "QUANTIZE_MODES",
    "DEFAULT_MIN_COSINE",
    "PATCH_INPUT_NAME",
    "convert",
    "load_keras_model",
    "float32_frontend_model",
    "op_table",
    "parity_clips",
    "representative_clips",
    "tflite_embeddings",
]

_log = logging.getLogger(__name__)

QUANTIZE_MODES = ("float32", "float16", "dynamic", "int8")
"""Accepted values of ``quantize`` (and of ``trillsson-tf convert --quantize``)."""

DEFAULT_MIN_COSINE = {"float32": 0.9999, "float16": 0.999, "dynamic": 0.99, "int8": 0.98}
"""Mean cosine to the Keras model on real speech below which a conversion warns (or fails under ``strict``)."""

PATCH_INPUT_NAME = "log_mel_patch"
LICENCE_NOTE = (
    "Model code: Apache-2.0 (trillsson_tf). The weights carry the terms of the data and teacher "
    "they were trained from; the parity audio is LibriSpeech (CC BY 4.0)."
)
_PARITY_CLIPS = 6
_PARITY_SAMPLES = 64000  # 4 s: two chunks per clip
_REPRESENTATIVE_CLIPS = 32
_FLOAT_DTYPES = ("float32", "float16", "float64")
_QUANT_PLUMBING = ("QUANTIZE", "DEQUANTIZE")
_FRONTEND_LAYER = "log_mel_patches"
_RUN_FILE = "run.json"  # written by trillsson_tf.distill next to its export
_RUN_KEYS = ("student", "teacher", "step", "target_mode", "loss", "data")


def load_keras_model(model_or_export_dir):
    """The Keras model and its export metadata.

    Args:
        model_or_export_dir: A model built by :func:`trillsson_tf.models.build` (or loaded from
            ``model.keras``), an export directory written by
            :func:`trillsson_tf.export.export_savedmodel`, or a ``.keras`` file.

    Returns:
        ``(model, metadata)``: the tf_keras model with a ``chunk_network`` layer, and the export's
        ``trillsson_tf.json`` (``{}`` for a model object or a bare file).

    Raises:
        ParameterError: a path that is not one of our exports (the message says what was expected).
    """
    if isinstance(model_or_export_dir, keras.Model):
        inner_network(model_or_export_dir)
        return model_or_export_dir, {}
    path = os.fspath(model_or_export_dir)
    if os.path.isdir(path):
        keras_file = os.path.join(path, KERAS_FILE)
        if not os.path.isfile(keras_file):
            raise ParameterError(
                f"{path!r} is not a trillsson_tf export directory: expected {KERAS_FILE!r} and {METADATA_FILE!r} "
                "in it (written by `trillsson-tf export` / trillsson_tf.export.export_savedmodel)."
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
    inner_network(model)
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
        source: An audio folder or CSV manifest (see :func:`trillsson_tf.data.find_audio`), a list
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
    from trillsson_tf.data import find_audio

    items = find_audio(source)[:max_clips]
    return np.stack([np.resize(load_audio(item.path), num_samples) for item in items]).astype(np.float32)


def _run_info(source):
    """The training-run summary of an export written by the distiller (its ``run.json``), or ``None``."""
    if isinstance(source, keras.Model) or not os.path.isdir(os.fspath(source)):
        return None
    run_file = os.path.join(os.fspath(source), _RUN_FILE)
    if not os.path.isfile(run_file):
        return None
    with open(run_file) as handle:
        record = json.load(handle)
    return {key: record[key] for key in _RUN_KEYS if key in record}


def _patches(clips: np.ndarray, frontend) -> np.ndarray:
    """float32 ``[n, samples]`` -> float32 patches ``[n * chunks, frames, mels, 1]`` (numpy frontend)."""
    patches = numpy_ops.log_mel_patches(clips, frontend)
    return patches.reshape(-1, *frontend.patch_shape, 1).astype(np.float32)


def _compression(model) -> str:
    return model.dft_frontend.get_layer("compression").compression


def _clip_features(model, clips: np.ndarray) -> np.ndarray:
    """float32 audio ``[n, samples]`` -> the dB mel ``[n, frames, mels]`` a Wav2Small network takes (numpy twin)."""
    return dft.features(dft.normalize_clips(clips, model.frontend), model.frontend, compression=_compression(model))


def _fit(clips: np.ndarray, num_samples) -> np.ndarray:
    """float32 ``[n, samples]`` -> ``[n, num_samples]``, each clip cut or repeated (``None``: unchanged)."""
    if num_samples is None:
        return clips
    return np.stack([np.resize(clip, num_samples) for clip in clips]).astype(np.float32)


def _converter(function, trackable, quantize: str, *, with_frontend: bool, calibration, input_name=None):
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], trackable)
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        name = input_name or (AUDIO_INPUT_NAME if with_frontend else PATCH_INPUT_NAME)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({name: row[np.newaxis]} for row in calibration)
        if with_frontend:
            # RFFT2D and COMPLEX_ABS have no int8 kernels: allow them to stay float.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter


def _int8_with_float_frontend(content: bytes, function, trackable, calibration, *, layers=(_FRONTEND_LAYER,)) -> bytes:
    """Convert again with every tensor of the frontend ``layers`` denylisted (kept float).

    Quantizing the mel matmul and the log costs about 0.01 in mean cosine on real speech
    (0.987-0.993 against 0.9999 with them in float, measured on a tiny trillsson1); the float
    mel matrix adds ``257 * 80 * 4`` bytes.
    """
    names = [t["name"] for t in _interpreter(content, delegates=False).get_tensor_details()]
    frontend_nodes = [name for name in names if any(f"/{layer}/" in name for layer in layers)]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=_converter(function, trackable, "int8", with_frontend=True, calibration=calibration),
        debug_dataset=lambda: ({AUDIO_INPUT_NAME: row[np.newaxis]} for row in calibration[:1]),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=frontend_nodes),
    )
    return debugger.get_nondebug_quantized_model()


def _interpreter(model_content: bytes, *, delegates: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=model_content, num_threads=1, experimental_op_resolver_type=resolver)


def op_table(model_content: bytes) -> list:
    """The operators of a ``.tflite`` model with the dtypes of their tensors (no delegate fusing).

    Args:
        model_content: The flatbuffer bytes.

    Returns:
        list of ``{'index', 'op', 'inputs': [dtype names], 'outputs': [dtype names], 'float': bool}``;
        ``float`` marks a compute op (not QUANTIZE/DEQUANTIZE) with a floating-point tensor.
    """
    interpreter = _interpreter(model_content, delegates=False)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    rows = []
    for op in interpreter._get_ops_details():
        inputs = [dtypes.get(int(i), "none") for i in op["inputs"] if int(i) >= 0]
        outputs = [dtypes.get(int(i), "none") for i in op["outputs"] if int(i) >= 0]
        is_float = op["op_name"] not in _QUANT_PLUMBING and any(d in _FLOAT_DTYPES for d in inputs + outputs)
        rows.append({"index": int(op["index"]), "op": op["op_name"], "inputs": inputs, "outputs": outputs, "float": is_float})
    return rows


def _quantize_input(values: np.ndarray, details: dict) -> np.ndarray:
    scale, zero_point = details["quantization"]
    if np.dtype(details["dtype"]).kind != "i" or not scale:
        return values.astype(details["dtype"])
    limits = np.iinfo(details["dtype"])
    return np.clip(np.round(values / scale) + zero_point, limits.min, limits.max).astype(details["dtype"])


def _dequantize_output(values: np.ndarray, details: dict) -> np.ndarray:
    scale, zero_point = details["quantization"]
    if np.dtype(details["dtype"]).kind != "i" or not scale:
        return values.astype(np.float32)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def tflite_embeddings(model_content: bytes, inputs: np.ndarray) -> np.ndarray:
    """Run a ``.tflite`` model row by row through its ``serving_default`` signature.

    Args:
        model_content: The flatbuffer bytes.
        inputs: float32 ``[n, samples]`` audio (frontend inside) or ``[n, 195, 80, 1]`` patches;
            int8 inputs are quantized with the model's input scale and zero point.

    Returns:
        float32 ``[n, D]`` (dequantized when the output is int8).
    """
    interpreter = _interpreter(model_content)
    runner = interpreter.get_signature_runner("serving_default")
    (in_name, in_details), = runner.get_input_details().items()
    (out_name, out_details), = runner.get_output_details().items()
    rows = [runner(**{in_name: _quantize_input(row[np.newaxis], in_details)})[out_name] for row in inputs]
    return np.concatenate([_dequantize_output(row, out_details) for row in rows])


def _tensor_card(name: str, details: dict) -> dict:
    scale, zero_point = details["quantization"]
    return {
        "name": name,
        "shape": [int(s) for s in details["shape_signature"]],
        "dtype": np.dtype(details["dtype"]).name,
        "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None,
    }


def _check_choices(quantize: str, frontend: bool, fixed_samples, *, clip_model: bool = False) -> None:
    if quantize not in QUANTIZE_MODES:
        raise ParameterError(f"Unknown quantization mode {quantize!r}. Expected one of: {list(QUANTIZE_MODES)}.")
    if quantize == "dynamic" and frontend:
        raise ParameterError(
            "Dynamic-range quantization would quantize the frontend's mel matrix (cosine 0.90-0.96 against the "
            "float model). Use quantize='dynamic' with frontend=False (CLI --no-frontend), or 'float16' / 'int8'."
        )
    if fixed_samples is not None:
        if not frontend and not clip_model:
            raise ParameterError("fixed_samples applies to audio input; it cannot be used with frontend=False.")
        least = dft.DEFAULT_DFT_FRONTEND.window_samples if clip_model else DEFAULT_FRONTEND.window_samples
        if isinstance(fixed_samples, bool) or not isinstance(fixed_samples, int) or fixed_samples < least:
            raise ParameterError(f"fixed_samples must be an integer >= {least} samples, got {fixed_samples!r}.")


def convert(
    model_or_export_dir,
    out_path,
    *,
    quantize: str = "float32",
    frontend: bool = True,
    fixed_samples=None,
    representative_audio=None,
    parity_audio=None,
    min_cosine=None,
    strict: bool = False,
    overwrite: bool = False,
) -> dict:
    """Convert a model to ``.tflite`` and write its JSON model card beside it.

    Args:
        model_or_export_dir: Model, export directory or ``.keras`` file (see :func:`load_keras_model`).
        out_path: Output ``.tflite`` path; the card goes to ``<out_path without .tflite>.json``.
        quantize: One of :data:`QUANTIZE_MODES`.
        frontend: Put the log-mel frontend inside (audio in) or leave it out (patches in); for
            whole-clip students, keep the per-clip normalisation inside or leave it out
            (normalised audio ``[1, fixed_samples]`` in).
        fixed_samples: Fix the audio input to ``[1, fixed_samples]`` samples; ``None`` keeps
            ``[None, None]`` (any batch, any length), or 1 s for a whole-clip student without
            its normalisation (TFLite Micro needs a fixed shape).
        representative_audio: Calibration audio for ``int8`` (folder, CSV, file list or float32
            ``[n, samples]`` array); required for ``int8``.
        parity_audio: float32 ``[n, samples]`` at 16 kHz to check parity on; default: held-out
            bundled LibriSpeech speech (6 clips of 4 s).
        min_cosine: Parity threshold (mean cosine); default :data:`DEFAULT_MIN_COSINE` for the mode.
        strict: Raise instead of warning when parity is below the threshold.
        overwrite: Replace an existing ``out_path``.

    Returns:
        The model card (dict), also written as JSON.

    Raises:
        ParameterError: unknown mode, ``int8`` without representative audio, dynamic range with the
            frontend, an existing output without ``overwrite``, or a path that is not our export.
        ConversionError: the converter failed, or parity is below ``min_cosine`` under ``strict``.
    """
    from converters.waveform import convert_waveform, is_waveform_export

    if is_waveform_export(model_or_export_dir):  # layer-distilled and multi-task students: raw audio, several outputs
        if not frontend:
            raise ParameterError("Layer-distilled and multi-task models take raw audio: frontend=False does not apply.")
        return convert_waveform(model_or_export_dir, out_path, quantize=quantize, fixed_samples=fixed_samples,
                                representative_audio=representative_audio, parity_audio=parity_audio,
                                min_cosine=min_cosine, strict=strict, overwrite=overwrite)
    out_path = os.fspath(out_path)
    card_path = os.path.splitext(out_path)[0] + ".json"
    if not overwrite and (os.path.exists(out_path) or os.path.exists(card_path)):
        raise ParameterError(f"Output {out_path!r} (or its card {card_path!r}) exists; pass overwrite=True (CLI --force).")
    model, metadata = load_keras_model(model_or_export_dir)
    clip_model = isinstance(model, Wav2SmallModel)
    _check_choices(quantize, frontend, fixed_samples, clip_model=clip_model)
    key = output_key(model)
    frontend_config = model.frontend if clip_model else model.get_layer(_FRONTEND_LAYER).frontend
    if clip_model and not frontend and fixed_samples is None:
        fixed_samples = frontend_config.min_samples
    calibration = None
    if quantize == "int8":
        calibration = representative_clips(representative_audio)
        if clip_model and not frontend:
            calibration = _clip_features(model, _fit(calibration, fixed_samples))
        elif not frontend:
            calibration = _patches(calibration, frontend_config)
    audio = parity_clips() if parity_audio is None else np.asarray(parity_audio, dtype=np.float32)

    input_name = None
    if clip_model and frontend:
        keras_model = model  # its frontend is float32 convolutions already
        spec = tf.TensorSpec([None, None] if fixed_samples is None else [1, fixed_samples], tf.float32, name=AUDIO_INPUT_NAME)
        call = tf.function(lambda audio_samples: {key: keras_model(audio_samples, training=False)[key]})
        parity_inputs = audio if fixed_samples is None else _fit(audio, fixed_samples)
        reference = model(parity_inputs)[key].numpy()
        if quantize == "int8":
            calibration = _fit(calibration, fixed_samples)
    elif clip_model:
        keras_model, input_name = model.clip_network, FEATURES_INPUT_NAME
        frames = frontend_config.num_frames(fixed_samples)
        spec = tf.TensorSpec([1, frames, frontend_config.num_mel_bins], tf.float32, name=FEATURES_INPUT_NAME)
        call = tf.function(lambda log_mel: {key: keras_model(log_mel, training=False)})
        parity_inputs = _clip_features(model, _fit(audio, fixed_samples))
        reference = keras_model(parity_inputs, training=False).numpy()
    elif frontend:
        keras_model = float32_frontend_model(model, float16_safe=quantize == "float16")
        shape = [None, None] if fixed_samples is None else [1, fixed_samples]
        spec = tf.TensorSpec(shape, tf.float32, name=AUDIO_INPUT_NAME)
        call = tf.function(lambda audio_samples: {key: keras_model(audio_samples, training=False)[key]})
        parity_inputs = audio if fixed_samples is None else _fit(audio, fixed_samples)
        reference = model(parity_inputs)[key].numpy()
    else:
        keras_model = chunk_network(model)
        spec = tf.TensorSpec([None, *frontend_config.patch_shape, 1], tf.float32, name=PATCH_INPUT_NAME)
        call = tf.function(lambda log_mel_patch: {key: keras_model(log_mel_patch, training=False)})
        parity_inputs = _patches(audio, frontend_config)
        reference = keras_model(parity_inputs, training=False).numpy()
    function = call.get_concrete_function(spec)
    try:
        content = _converter(
            function, keras_model, quantize, with_frontend=frontend, calibration=calibration, input_name=input_name
        ).convert()
        if quantize == "int8" and frontend:
            layers = ("clip_normalization", "dft_frontend") if clip_model else (_FRONTEND_LAYER,)
            content = _int8_with_float_frontend(content, function, keras_model, calibration, layers=layers)
    except Exception as error:  # the converter raises many unrelated types
        raise ConversionError(f"Converting {model.name!r} ({quantize}, frontend={frontend}) failed: {error}") from error
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "wb") as handle:
        handle.write(content)

    ops = op_table(content)
    float_ops = sorted({row["op"] for row in ops if row["float"]})
    if quantize == "int8" and float_ops:
        _log.warning("int8 model %s keeps these ops in float: %s", out_path, ", ".join(float_ops))
    candidate = tflite_embeddings(content, parity_inputs)
    scores = parity(reference, candidate)
    threshold = DEFAULT_MIN_COSINE[quantize] if min_cosine is None else float(min_cosine)
    scores.update({"clips": int(len(audio)), "rows": int(len(parity_inputs)), "min_mean_cosine": threshold,
                   "passed": scores["mean_cosine"] >= threshold,
                   "reference": "Keras model" + (" (float64 frontend)" if not clip_model else "") if frontend
                   else "Keras " + ("clip" if clip_model else "chunk") + " network"})
    if key == SCORES_KEY:
        # Cosine is a weak check on a few scores; CCC over the parity rows says whether each score follows.
        scores["ccc"] = ccc(reference, candidate).tolist()

    runner = _interpreter(content).get_signature_runner("serving_default")
    card = {
        "format": "trillsson_tf.tflite/1",
        "model_file": os.path.basename(out_path),
        "name": model.name,
        "quantize": quantize,
        "frontend_inside": bool(frontend),
        "inputs": [_tensor_card(n, d) for n, d in runner.get_input_details().items()],
        "outputs": [_tensor_card(n, d) for n, d in runner.get_output_details().items()],
        "output": key,
        "signature": "serving_default",
        "sample_rate_hz": frontend_config.sample_rate_hz,
        "frontend": None if clip_model else frontend_config.to_dict(),
        # Read by trillsson_tf.runtime: whole clips (no 2 s chunks), and who normalises them.
        "clip_model": {"frontend": frontend_config.to_dict(), "input": "audio" if frontend else FEATURES_INPUT_NAME,
                       "compression": _compression(model)} if clip_model else None,
        "size_bytes": len(content),
        "ops": ops,
        "float_ops": float_ops,
        "parity": scores,
        "source": {
            "export": None if isinstance(model_or_export_dir, keras.Model) else os.fspath(model_or_export_dir),
            "parameters": int(model.count_params()),
            "build": metadata.get("build", getattr(model, "build_spec", None)),
            "teacher": metadata.get("teacher"),
            "run": _run_info(model_or_export_dir),
            "optimization": metadata.get("optimization"),
        },
        "converter": {"tensorflow": tf.__version__, "fixed_samples": fixed_samples},
        "licence": LICENCE_NOTE,
    }
    with open(card_path, "w") as handle:
        json.dump(card, handle, indent=2)
    _log.info("Wrote %s (%d bytes, %s, mean cosine %.6f) and %s", out_path, len(content), quantize, scores["mean_cosine"], card_path)
    if not scores["passed"]:
        message = (
            f"Parity of {out_path} below threshold: mean cosine {scores['mean_cosine']:.6f} < {threshold} "
            f"(min {scores['min_cosine']:.6f}, max abs diff {scores['max_abs_diff']:.3g}, reference rms {scores['reference_rms']:.3g})."
        )
        if strict:
            raise ConversionError(message)
        _log.warning(message)
    return card
