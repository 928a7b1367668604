"""Keras model or export directory -> ONNX (float32) + model card, checked in onnxruntime.

Two forms, as for ``.tflite``: the **whole model** (``frontend=True``: audio ``audio_samples`` in,
only for frontends ONNX can express, such as Wav2Small's DFT convolution) and the **per-chunk
network** (``frontend=False``: log-mel patches ``log_mel_patch [n, 195, 80, 1]`` in). A whole model
with an STFT frontend is refused (why: docs/DESIGN.md, "Conversion"). :func:`convert_onnx` runs each
file in onnxruntime on held-out real speech, compares it with the Keras model and writes
``<out without .onnx>.json``. Needs the ``[onnx]`` extra (tf2onnx, onnx, onnxruntime).
"""

import collections
import logging
import os

import numpy as np

from trillsson_tf.converters.common import (
    LICENCE_NOTE,
    check_parity,
    conversion_inputs,
    load_keras_model,
    log_mel_patch_rows,
    output_paths,
    parity_clips,
    parity_message,
    parity_threshold,
    run_info,
    write_model,
)
from trillsson_tf import kinds
from trillsson_tf._keras import keras, tf
from trillsson_tf.contract import AUDIO_INPUT_NAME, PATCH_INPUT_NAME, SAMPLE_RATE_HZ
from trillsson_tf.errors import ConversionError, ParameterError, TrillssonError
from trillsson_tf.formats.model_card import CARD_FORMATS, ModelCard, Parity, write_card
from trillsson_tf.metrics import parity
from trillsson_tf.models import chunk_network, output_key

__all__ = ["DEFAULT_OPSET", "ONNX_PACKAGE", "UNSUPPORTED_OPS", "convert_onnx", "onnx_session", "onnx_outputs"]

_log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
ONNX_PACKAGE = "trillsson-tf[onnx]"
UNSUPPORTED_OPS = ("RFFT", "RFFT2D", "RFFT3D", "IRFFT", "FFT", "IFFT", "FFT2D", "ComplexAbs", "Complex")
"""TensorFlow ops of a traced model that tf2onnx cannot turn into a graph onnxruntime runs."""
_FRONTEND_LAYER = "log_mel_patches"


def _onnx_modules():
    """``(tf2onnx, onnxruntime)``, or a clear error naming the extra to install."""
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as error:
        raise TrillssonError(
            f"ONNX export needs tf2onnx and onnxruntime ({error}): pip install '{ONNX_PACKAGE}'."
        ) from None
    return tf2onnx, onnxruntime


def onnx_session(model_content: bytes, *, num_threads: int = 1):
    """An onnxruntime CPU session over the model bytes (``num_threads`` intra-op threads)."""
    _, onnxruntime = _onnx_modules()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model_content, options, providers=["CPUExecutionProvider"])


def onnx_outputs(session, inputs: np.ndarray) -> np.ndarray:
    """Run a one-input, one-output session on float32 ``inputs`` (one batch); returns float32 ``[n, D]``."""
    (model_input,) = session.get_inputs()
    return np.asarray(session.run(None, {model_input.name: inputs.astype(np.float32)})[0], dtype=np.float32)


def _traced_ops(function) -> set:
    graph = function.graph.as_graph_def()
    return {node.op for node in graph.node} | {node.op for fn in graph.library.function for node in fn.node_def}


def _refuse_unsupported(function, model) -> None:
    found = sorted(_traced_ops(function) & set(UNSUPPORTED_OPS))
    if not found:
        return
    has_stft = any(layer.name == _FRONTEND_LAYER for layer in model.layers)
    where = "Its log-mel frontend computes an STFT (tf.signal.stft)" if has_stft else "The model computes an FFT"
    raise ConversionError(
        f"Cannot export {model.name!r} to ONNX with its frontend inside. {where}: ops {found} on complex tensors, "
        "which tf2onnx cannot express (it leaves a ComplexAbs node onnxruntime rejects). Export the per-chunk "
        "network instead: frontend=False (CLI --no-frontend) takes log-mel patches [n, 195, 80, 1] and the log-mel "
        "is computed outside (trillsson_tf.frontend.numpy_ops, as the runtime does); or use a student whose frontend "
        "is a convolution (wav2small)."
    )


def _tensor_card(value) -> dict:
    return {"name": value.name, "shape": [d if isinstance(d, int) else None for d in value.shape], "dtype": value.type}


def _traced(model, kind, key: str, audio: np.ndarray) -> tuple:
    """``(tf.function, its input spec, parity inputs, Keras reference outputs)`` of the form to export.

    The whole model takes ``audio`` (float32 ``[n, samples]``); the chunk network takes its log-mel
    patches ``[rows, 195, 80, 1]``.

    Raises:
        ConversionError: the whole model computes an FFT (an STFT frontend).
        ParameterError: ``frontend=False`` for a model without a per-chunk network.
    """
    if kind.frontend_inside:
        spec = tf.TensorSpec([None, None], tf.float32, name=AUDIO_INPUT_NAME)
        call = tf.function(lambda audio_samples: {key: model(audio_samples, training=False)[key]})
        _refuse_unsupported(call.get_concrete_function(spec), model)
        return call, spec, audio, model(audio)[key].numpy()
    if kind.input_name != PATCH_INPUT_NAME:
        raise ParameterError(
            f"{model.name!r} has no per-chunk network (it works on whole clips); export it with frontend=True."
        )
    network = chunk_network(model)
    frontend_config = model.get_layer(_FRONTEND_LAYER).frontend
    spec = tf.TensorSpec([None, *frontend_config.patch_shape, 1], tf.float32, name=PATCH_INPUT_NAME)
    call = tf.function(lambda log_mel_patch: {key: network(log_mel_patch, training=False)})
    parity_inputs = log_mel_patch_rows(audio, frontend_config)
    return call, spec, parity_inputs, network(parity_inputs, training=False).numpy()


def _card(model_or_export_dir, model, metadata: dict, kind, out_path: str, proto, session, checked, opset: int):
    """The :class:`~trillsson_tf.formats.model_card.ModelCard` of an ``.onnx`` file (graph ``proto``, ``session`` on it)."""
    tf2onnx, onnxruntime = _onnx_modules()
    return ModelCard(
        format=CARD_FORMATS["onnx"],
        model_file=os.path.basename(out_path),
        name=model.name,
        frontend_inside=kind.frontend_inside,
        inputs=[_tensor_card(value) for value in session.get_inputs()],
        outputs=[_tensor_card(value) for value in session.get_outputs()],
        output=output_key(model),
        sample_rate_hz=SAMPLE_RATE_HZ,
        size_bytes=proto.ByteSize(),
        ops=dict(sorted(collections.Counter(node.op_type for node in proto.graph.node).items())),
        parity=checked,
        source={
            "export": None if isinstance(model_or_export_dir, keras.Model) else os.fspath(model_or_export_dir),
            "parameters": int(model.count_params()),
            "build": metadata.get("build", getattr(model, "build_spec", None)),
            "teacher": metadata.get("teacher"),
            "run": run_info(model_or_export_dir),
        },
        converter={
            "tensorflow": tf.__version__,
            "tf2onnx": tf2onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        licence=LICENCE_NOTE,
        extra={"opset": opset},
    )


def convert_onnx(
    model_or_export_dir,
    out_path,
    *,
    frontend: bool = True,
    opset: int = DEFAULT_OPSET,
    parity_audio=None,
    min_cosine=None,
    strict: bool = False,
    overwrite: bool = False,
) -> dict:
    """Convert a model to a float32 ``.onnx`` file and write its JSON model card beside it.

    Args:
        model_or_export_dir: Model, export directory or ``.keras`` file
            (see :func:`trillsson_tf.converters.common.load_keras_model`).
        out_path: Output ``.onnx`` path; the card goes to ``<out_path without .onnx>.json``.
        frontend: Whole model, audio in (refused for an STFT frontend), or the per-chunk network
            on log-mel patches (``False``; only students with a chunk network).
        opset: ONNX opset to target.
        parity_audio: float32 ``[n, samples]`` at 16 kHz to check parity on; default: held-out
            bundled LibriSpeech speech (6 clips of 4 s).
        min_cosine: Parity threshold (mean cosine); default that of float32 ``.tflite`` (0.9999).
        strict: Raise instead of warning when parity is below the threshold.
        overwrite: Replace an existing ``out_path``.

    Returns:
        The model card (dict), also written as JSON.

    Raises:
        ParameterError: an existing output without ``overwrite``, a bad opset, ``frontend=False``
            for a model without a chunk network, a path that is not our export.
        ConversionError: an STFT frontend with ``frontend=True``; tf2onnx failed; parity below
            ``min_cosine`` under ``strict``.
        TrillssonError: tf2onnx or onnxruntime is not installed.
    """
    tf2onnx, onnxruntime = _onnx_modules()
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        raise ParameterError(f"opset must be an integer >= 13, got {opset!r}.")
    out_path, card_path = output_paths(out_path, overwrite, conversion_inputs(model_or_export_dir))
    model, metadata = load_keras_model(model_or_export_dir)
    kind = kinds.of_model(model, metadata, frontend=frontend)
    if kind.family == kinds.WAVEFORM:
        raise ParameterError(
            f"{model.name!r} is a layer-distilled or fine-tuned model ({kind.summary}); ONNX export takes "
            "the students of trillsson_tf.models: convert it to .tflite instead."
        )
    key = output_key(model)
    audio = parity_clips() if parity_audio is None else np.asarray(parity_audio, dtype=np.float32)
    call, spec, parity_inputs, reference = _traced(model, kind, key, audio)
    try:
        proto, _ = tf2onnx.convert.from_function(call, input_signature=[spec], opset=opset)
        content = proto.SerializeToString()
        session = onnx_session(content)
    except Exception as error:  # tf2onnx and onnxruntime raise many unrelated types
        raise ConversionError(
            f"Converting {model.name!r} to ONNX (opset {opset}, frontend={frontend}) failed: {error}"
        ) from error
    write_model(out_path, content)

    checked = Parity.of(
        {key: parity(reference, onnx_outputs(session, parity_inputs))},
        clips=len(audio),
        rows=len(parity_inputs),
        min_mean_cosine=parity_threshold("float32", min_cosine),
        reference="Keras model" if kind.frontend_inside else "Keras chunk network",
    )
    card = _card(model_or_export_dir, model, metadata, kind, out_path, proto, session, checked, opset)
    written = write_card(card_path, card)
    _log.info(
        "Wrote %s (%d bytes, mean cosine %.6f) and %s", out_path, len(content), checked.first.mean_cosine, card_path
    )
    check_parity(checked.passed, parity_message(checked, out_path), strict=strict)
    return written
