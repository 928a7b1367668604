"""TensorFlow-free inference on ``.tflite`` students, with the TF Hub call contract.

>>> from trillsson_tf.runtime import TFLiteModel
>>> model = TFLiteModel("t1_int8.tflite", num_threads=1)
>>> model(audio)["embedding"]        # float32 [samples] or [batch, samples] at 16 kHz -> [batch, D]
>>> model.embed_file("clip.flac")    # -> float32 [D]
>>> model.frames(audio, hop_s=0.5)   # {'embedding': [batch, windows, D], 'start_s': [windows]}
>>> for start_s, vector in model.stream(blocks, hop_s=0.5):   # live audio, one [D] every hop
...     pass

Two kinds of model files are run:

* **frontend inside**: one input ``[batch, samples]`` (audio; ``audio_samples`` in our
  conversions), called through its ``serving_default`` signature (or, in files without
  signatures, its main subgraph) on the audio window of each chunk
  (:func:`~trillsson_tf.frontend.numpy_ops.chunk_windows`), so the input shape never changes
  (a model converted with a fixed input length N runs on the clip mirror-padded to N samples,
  window by consecutive N-sample window, and the window outputs are averaged);
* **frontend outside**: one input ``[n, 195, 80, 1]`` (log-mel patches); the numpy twin of the
  frontend (:mod:`trillsson_tf.frontend.numpy_ops`) computes the patches, which run at a
  constant input shape (one patch per call, or the model's own fixed batch size), and the
  chunk vectors are averaged per clip.

Both follow the semantics of the Keras models and the hub models: any length, clips shorter
than 2 s mirror-padded to 2 s, non-overlapping 195-frame chunks (the tail is dropped), one
vector per clip, the mean over its chunks. Frame-level outputs (:meth:`TFLiteModel.frames`,
:meth:`TFLiteModel.stream` with ``hop_s``, :class:`FrameStream`) run the same per-window calls
on windows of one 195-frame patch every hop (:class:`trillsson_tf.frontend.FrameWindows`); the
clip call is the mean of its non-overlapping windows, on the same code path.

Whole-clip models (Wav2Small; their card has a ``clip_model`` entry) take whole clips, not
2 s chunks: clips shorter than 1 s are mirror-padded to 1 s. A model that takes dB mel bands
(``log_mel [1, frames, mels]``, the TFLite Micro form) gets them from the numpy twin of its
frontend (:func:`trillsson_tf.frontend.dft.features`, after normalising the whole clip); a
dynamic length runs each clip whole, a fixed length runs the consecutive windows of that
length (the tail is dropped) and averages their outputs. Their output is ``scores``: the call
returns it under ``scores`` and, like every model here, under ``embedding`` (the runtime's
uniform key, so one comparison helper takes any model). Those that take audio give frames and
stream windows (``hop_s``), the whole model on each window; those that take mel bands do not.
Integer (int8/uint8) inputs and outputs are quantized and dequantized with the model's own scale
and zero point.

Which of these a file is, is asked of :func:`trillsson_tf.kinds.of_tflite` once, when it is
loaded (:attr:`TFLiteModel.kind`); the interpreter and the (de)quantization are those of
:mod:`trillsson_tf.litert`.

This module imports numpy, the frontend numbers and their numpy twin, and the audio helpers
(soundfile and soxr, lazily); the interpreter is imported when a model is built:
``ai_edge_litert`` first, ``tflite_runtime`` as the fallback. It never imports TensorFlow.
"""
import csv
import io
import json
import logging
import os
import threading

import numpy as np

from trillsson_tf import kinds, litert
from trillsson_tf.audio import AUDIO_EXTENSIONS, check_sample_rate, load_audio, resample, validate_audio
from trillsson_tf.contract import (
    AUDIO_INPUT_NAME,
    EMBEDDING_KEY,
    LOG_MEL_INPUT_NAME,
    PATCH_INPUT_NAME,
    SCORES_KEY,
    START_S_KEY,
)
from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import refuse_inputs, write_atomic
from trillsson_tf.frontend import DEFAULT_FRONTEND, DEFAULT_HOP_S, FrontendConfig, dft, numpy_ops

__all__ = [
    "OUTPUT_FORMATS",
    "FrameStream",
    "TFLiteModel",
    "audio_files",
    "embed_to_file",
    "read_model_card",
]

_log = logging.getLogger(__package__)  # "trillsson_tf.runtime", the name the log lines have always had

OUTPUT_FORMATS = (".npy", ".csv")
"""File endings :func:`embed_to_file` writes."""

# Chunks (patches or audio windows) per interpreter call for models whose batch size is free,
# largest first: n chunks go in calls of these sizes (7 = 4 + 2 + 1). Each size has its own
# interpreter, made on first use, so no input shape ever changes: a resize makes the interpreter
# re-plan its memory and XNNPACK re-prepare the graph, about 8 ms against 1.4 ms for one int8
# EfficientNetV2-B0 patch. Batched calls are what lets the threads share the work: per patch
# 1.37 / 1.06 / 0.87 / 0.79 ms at 1 / 2 / 4 / 8 patches a call with 2 threads (1.81 / 1.61 /
# 1.51 / 1.47 ms with one; measured on a 2-core machine). No call of 8: its float32 arena added
# 72 MB to the process's peak memory (126 -> 198 MB) for 9% less time per int8 patch.
_CALL_SIZES = (4, 2, 1)
_PCM16_SCALE = 32768.0


def read_model_card(model_path) -> dict:
    """The JSON model card written beside a ``.tflite`` file, or ``{}`` when there is none.

    Looked for as ``<name>.json`` and then ``<name>.tflite.json`` next to the model.

    Args:
        model_path: Path of the ``.tflite`` file.

    Returns:
        The card as a dict (keys used here: ``sample_rate_hz``, ``output``, ``frontend``).

    Raises:
        ParameterError: a card exists but is not a JSON object (the message names the file).
    """
    model_path = os.fspath(model_path)
    for card_path in (os.path.splitext(model_path)[0] + ".json", model_path + ".json"):
        if not os.path.isfile(card_path):
            continue
        try:
            with open(card_path) as handle:
                card = json.load(handle)
        except (OSError, ValueError) as error:
            raise ParameterError(f"Model card {card_path!r} cannot be read as JSON: {error}") from None
        if not isinstance(card, dict):
            raise ParameterError(f"Model card {card_path!r} must hold a JSON object, got {type(card).__name__}.")
        _log.info("Read model card %s", card_path)
        return card
    return {}


def _describe(details: dict) -> list:
    return [f"{name} {np.dtype(d['dtype']).name}{[int(size) for size in d['shape_signature']]}" for name, d in details.items()]


class TFLiteModel:
    """A ``.tflite`` embedding model called like a TF Hub TRILLsson model, without TensorFlow.

    Audio contract: mono float32 in [-1, 1] at :attr:`sample_rate_hz` (16 kHz), any length.
    int16 arrays are taken as 16-bit PCM and scaled by 1/32768; other integer dtypes are
    refused. Multi-channel *arrays* are refused (``[2, samples]`` is read as a batch of two
    clips, ``[samples, channels]`` and ``[batch, samples, channels]`` raise with a mix-down
    hint), while *files* are mixed down to mono by :meth:`embed_file`. All-zero (silent) clips
    are embedded like any other and logged as a warning; empty clips and NaN/Inf raise.

    A clip's chunks (and those of a batch) run in calls of 4, 2 and 1 chunks, each call size on
    an interpreter of its own made on first use, so a model whose batch size is free may hold up
    to three interpreters (for a float32 EfficientNetV2-B0, 13 MB more peak memory than one).

    Thread-safe: one instance may be called (``__call__``, :meth:`embed_file`, :meth:`frames`,
    :meth:`stream`, :meth:`feed`, streams from :meth:`open_stream`) from any number of threads,
    and every call gives what it gives alone. Each interpreter runs one call at a time (a lock
    each), so threads share it in turn; for calls that run side by side, give each thread its own
    instance. One :class:`FrameStream` is fed by one thread at a time.

    Args:
        model: Path of a ``.tflite`` file, or its contents as ``bytes``.
        num_threads: Interpreter threads; ``None`` leaves the interpreter's default.
        output_key: Output to return as ``embedding``; by default the model card's output,
            else ``embedding``, else the model's only ``[batch, D]`` output.

    Attributes:
        path: The ``.tflite`` path, or ``None`` when built from bytes.
        card: The model card beside the file (:func:`read_model_card`), ``{}`` when none.
        frontend: :class:`FrontendConfig` (the card's, else the default TRILLsson numbers).
        sample_rate_hz: Rate the model expects, in Hz.
        kind: The :class:`trillsson_tf.kinds.Kind` of the file (chunk, patch, clip,
            clip_log_mel or waveform), which decides how clips are fed to it.
        frontend_inside: True when the model takes audio, False when it takes log-mel
            patches or mel bands.
        clip_model: The card's ``clip_model`` entry of a whole-clip model (``frontend`` as a
            :class:`~trillsson_tf.frontend.dft.DFTFrontendConfig`, ``input``, ``compression``), else ``None``.
        output_key: The model output returned as ``embedding``.
        output_keys: Every output a call returns: ``(output_key,)``, or the card's
            ``output_keys`` for a multi-output model (``keyword_logits`` and
            ``speaker_embedding`` of a fine-tuned multi-task model), which a call returns
            under their own names (and which do not stream).
        embedding_dim: Width D of the embedding.

    Raises:
        ParameterError: missing or unreadable file, an input that is neither audio
            ``[batch, samples]`` nor log-mel patches ``[n, 195, 80, 1]``, no embedding-like
            output (the message lists the outputs), a model card whose sample rate or output
            disagrees with the model.
        TrillssonError: neither ``ai_edge_litert`` nor ``tflite_runtime`` is installed.
    """

    def __init__(self, model, *, num_threads=None, output_key=None):
        if isinstance(model, (bytes, bytearray, memoryview)):
            self.path, source, self.card = None, {"model_content": bytes(model)}, {}
        elif isinstance(model, (str, os.PathLike)):
            self.path = os.fspath(model)
            if not os.path.isfile(self.path):
                raise ParameterError(f"TFLite model file not found: {self.path!r}.")
            source, self.card = {"model_path": self.path}, read_model_card(self.path)
        else:
            raise ParameterError(f"model must be a .tflite path or its bytes, got {type(model).__name__}.")
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1):
            raise ParameterError(f"num_threads must be a positive integer or None, got {num_threads!r}.")
        self._name = self.path or "<bytes>"
        self.frontend = self._card_frontend()
        self.sample_rate_hz = self._card_sample_rate()

        interpreter_class = litert.interpreter_class()
        self._new_interpreter = lambda: interpreter_class(**source, num_threads=num_threads)
        self._locks = {}  # id(runner) -> the lock its set-input/invoke/get-output sequence holds
        self._runners_lock = threading.Lock()  # making a sized runner
        self._stream_lock = threading.Lock()  # the stream of feed() / reset()
        try:
            self._runner = self._new_runner()
        except ValueError as error:
            raise ParameterError(f"Cannot load {self._name!r} as a TFLite model: {error}") from None
        self._runners = {}

        inputs = self._runner.get_input_details()
        if len(inputs) != 1:
            raise ParameterError(f"TFLite model {self._name!r} must have one input; it has {_describe(inputs)}.")
        (self._input_name, self._input), = inputs.items()
        self.clip_model = self._card_clip_model()
        self.kind = self._file_kind()
        self.frontend_inside = self.kind.frontend_inside
        fixed_batch = int(self._input["shape_signature"][0])
        self._call_sizes = (fixed_batch,) if fixed_batch > 0 else _CALL_SIZES
        outputs = self._runner.get_output_details()
        self.output_key = self._select_output(outputs, output_key)
        self._output = outputs[self.output_key]
        self.embedding_dim = int(self._output["shape_signature"][-1])
        self.output_keys = self._card_output_keys(outputs) if output_key is None else (self.output_key,)
        self._output_details = {key: outputs[key] for key in self.output_keys}
        self.reset()
        _log.info(
            "Loaded %s: %s model, input %s, output %r (%d-d)",
            self._name,
            self.kind.name,
            _describe(inputs)[0],
            self.output_key,
            self.embedding_dim,
        )

    def __repr__(self):
        return (
            f"TFLiteModel({self._name!r}, frontend_inside={self.frontend_inside}, "
            f"input_dtype={np.dtype(self._input['dtype']).name}, embedding_dim={self.embedding_dim})"
        )

    # -- construction helpers -------------------------------------------------------------

    def _card_frontend(self) -> FrontendConfig:
        values = self.card.get("frontend")
        if not isinstance(values, dict):
            return DEFAULT_FRONTEND
        try:
            return FrontendConfig.from_dict(values)
        except TypeError as error:
            raise ParameterError(f"Model card of {self._name!r} has an unknown frontend entry: {error}") from None

    def _card_clip_model(self):
        """The card's ``clip_model`` entry (``frontend`` as a DFTFrontendConfig, ``input``, ``compression``), or ``None``."""
        values = self.card.get("clip_model")
        if not values:
            return None
        try:
            entry = {"frontend": dft.DFTFrontendConfig.from_dict(values["frontend"]), "input": values["input"],
                     "compression": values["compression"]}
        except (KeyError, TypeError) as error:
            raise ParameterError(f"Model card of {self._name!r} has a malformed clip_model entry: {error}") from None
        if entry["input"] not in ("audio", LOG_MEL_INPUT_NAME) or entry["compression"] not in dft.COMPRESSIONS:
            raise ParameterError(f"Model card of {self._name!r} has an unknown clip_model input or compression: {values}.")
        return entry

    def _card_output_keys(self, outputs: dict) -> tuple:
        """The outputs a call returns: the card's ``output_keys`` (multi-task models), else the one output."""
        keys = tuple(self.card.get("output_keys") or (self.output_key,))
        missing = [key for key in keys if key not in outputs]
        if missing:
            raise ParameterError(f"Model card of {self._name!r} lists outputs {missing} the model lacks; it has {_describe(outputs)}.")
        return keys

    def _card_sample_rate(self) -> int:
        rate = self.card.get("sample_rate_hz")
        if rate is None:
            return self.frontend.sample_rate_hz
        rate = check_sample_rate(rate)
        if rate != self.frontend.sample_rate_hz:
            raise ParameterError(
                f"Model card of {self._name!r} says sample_rate_hz={rate} but its frontend runs at "
                f"{self.frontend.sample_rate_hz} Hz."
            )
        return rate

    def _file_kind(self) -> kinds.Kind:
        kind = kinds.of_tflite(self.card, self._input["shape_signature"], self.frontend.patch_shape)
        if kind is not None:
            return kind
        patch = self.frontend.patch_shape
        raise ParameterError(
            f"TFLite model {self._name!r} takes {_describe({self._input_name: self._input})[0]}; expected audio "
            f"[batch, samples] or log-mel patches [n, {patch[0]}, {patch[1]}, 1]."
        )

    def _select_output(self, outputs: dict, output_key) -> str:
        choices = _describe(outputs)
        wanted = output_key or self.card.get("output")
        if wanted is not None:
            if wanted not in outputs:
                source = "output_key" if output_key else f"the model card of {self._name!r}"
                raise ParameterError(f"Output {wanted!r} (from {source}) not found; the model has outputs {choices}.")
            return wanted
        if EMBEDDING_KEY in outputs:
            return EMBEDDING_KEY
        vectors = [name for name, details in outputs.items() if len(details["shape_signature"]) == 2]
        if len(vectors) == 1:
            return vectors[0]
        raise ParameterError(
            f"TFLite model {self._name!r} has no embedding-like output (named {EMBEDDING_KEY!r}, or the only "
            f"[batch, D] one); its outputs are {choices}. Choose one with output_key=..."
        )

    # -- running --------------------------------------------------------------------------

    def _new_runner(self):
        """A fresh interpreter's ``serving_default`` (or first) signature runner, else its main subgraph."""
        runner = litert.runner(self._new_interpreter())
        self._locks[id(runner)] = threading.Lock()
        return runner

    def _run(self, values: np.ndarray, runner=None) -> np.ndarray:
        """One interpreter call (``runner``, default the first one): float32 model input -> float32 ``[n, D]``.

        An interpreter holds its input and output in its own tensors, so two threads in one
        interpreter read each other's outputs or crash it (issue 39): the call holds the
        interpreter's lock. A lock, not an interpreter per thread: a thread costs no memory and
        no interpreter start (XNNPACK's preparation) per thread, results stay bit-identical, and
        an uncontended lock costs nothing against a call (a single thread runs no slower).
        """
        runner = runner or self._runner
        inputs = {self._input_name: litert.quantize(values, self._input)}
        with self._locks[id(runner)]:
            outputs = runner(**inputs)  # the outputs are copies, read out before the lock is let go
        # Several outputs travel concatenated through the chunk averaging and are split in _outputs.
        return np.concatenate([litert.dequantize(outputs[key], self._output_details[key]) for key in self.output_keys], axis=-1)

    def _run_patches(self, patches: np.ndarray) -> np.ndarray:
        """float32 ``[n, frames, mels]`` log-mel patches -> float32 ``[n, D]`` chunk vectors."""
        if len(self._input["shape_signature"]) == 4:
            patches = patches[..., np.newaxis]
        return self._run_fixed(patches)

    def _run_fixed(self, inputs: np.ndarray) -> np.ndarray:
        """``[n, ...]`` chunk inputs -> float32 ``[n, D]``, in calls of :data:`_CALL_SIZES` chunks.

        Every call size has its own interpreter, whose input shape therefore never changes (see
        :data:`_CALL_SIZES`); a model with a fixed batch size gets its last call filled with zeros.
        """
        vectors, start = [], 0
        while start < len(inputs):
            size = next((size for size in self._call_sizes if size <= len(inputs) - start), self._call_sizes[-1])
            group = inputs[start : start + size]
            start += len(group)
            missing = size - len(group)
            if missing:
                group = np.concatenate([group, np.zeros((missing, *group.shape[1:]), group.dtype)])
            vectors.append(self._run(group, self._sized_runner(size))[: len(group) - missing])
        return np.concatenate(vectors)

    def _sized_runner(self, size: int):
        """The runner that takes ``size`` chunks a call (the first runner for the smallest size)."""
        if size == self._call_sizes[-1]:
            return self._runner
        if size not in self._runners:
            with self._runners_lock:  # two threads must not both make (and lose) one
                if size not in self._runners:
                    self._runners[size] = self._new_runner()
        return self._runners[size]

    def _embed_audio(self, audio: np.ndarray) -> np.ndarray:
        """Audio-in files: a fixed input length runs consecutive windows of that length (unless it is
        one window, :meth:`_window_vectors`); a dynamic one runs each clip whole (whole-clip kinds,
        mirror-padded to their minimum) or its 195-frame chunks, averaged."""
        fixed = int(self._input["shape_signature"][1])
        if fixed > 0 and (self.kind.whole_clips or fixed != self.frontend.chunk_span_samples):
            return self._run_windows(audio, fixed)
        if self.kind.whole_clips:
            return self._run(numpy_ops.mirror_pad(audio, self.clip_model["frontend"].min_samples))
        return self._window_vectors(audio, self.frontend.windows()).mean(axis=1)

    def _embed_patches(self, audio: np.ndarray) -> np.ndarray:
        """Patch-in files: the numpy log-mel of each 195-frame chunk, chunk vectors averaged per clip."""
        return self._window_vectors(audio, self.frontend.windows()).mean(axis=1)

    def _window_vectors(self, audio: np.ndarray, windows) -> np.ndarray:
        """float32 ``[batch, samples]`` -> ``[batch, windows, D]``, one vector per frame-level window.

        Patch-in files get the patches of one log-mel of the whole clip; audio-in files the audio
        of each window (:func:`~trillsson_tf.frontend.numpy_ops.chunk_windows`), one call shape.
        """
        if self.kind.input_name == PATCH_INPUT_NAME:
            patches = numpy_ops.log_mel_patches(audio, self.frontend, windows=windows)
            batch, count = patches.shape[:2]
            vectors = self._run_patches(patches.reshape(batch * count, *patches.shape[2:]))
        else:
            segments = numpy_ops.chunk_windows(audio, self.frontend, windows=windows)
            batch, count = segments.shape[:2]
            vectors = self._run_fixed(segments.reshape(batch * count, -1))
        return vectors.reshape(batch, count, -1)

    def _run_segments(self, segments: np.ndarray) -> np.ndarray:
        """float32 ``[n, 31440]`` window audio -> float32 ``[n, D]`` window vectors (the stream's call)."""
        if self.kind.input_name == PATCH_INPUT_NAME:
            return self._run_patches(numpy_ops.log_mel(segments, self.frontend))
        return self._run_fixed(np.ascontiguousarray(segments))

    def _embed_log_mel(self, audio: np.ndarray) -> np.ndarray:
        """Mel-band-in files (a whole-clip network alone): the numpy twin of its frontend, whole clips
        for a dynamic length, else consecutive windows of that many frames averaged."""
        config = self.clip_model["frontend"]
        fixed = int(self._input["shape_signature"][1])
        if fixed > 0:  # at least one window of frames
            audio = numpy_ops.mirror_pad(audio, (fixed - 1) * config.hop_samples + config.window_samples)
        features = dft.features(dft.normalize_clips(audio, config), config, compression=self.clip_model["compression"])
        if fixed <= 0:
            return self._run(features)
        windows = features.shape[1] // fixed
        framed = np.ascontiguousarray(features[:, : windows * fixed].reshape(-1, fixed, features.shape[2]))
        return self._run_fixed(framed).reshape(audio.shape[0], windows, -1).mean(axis=1)

    def _run_windows(self, audio: np.ndarray, fixed: int) -> np.ndarray:
        """Fixed-length models: clips mirror-padded to ``fixed`` samples, consecutive windows averaged."""
        audio = numpy_ops.mirror_pad(audio, fixed)
        windows = audio.shape[1] // fixed
        framed = np.ascontiguousarray(audio[:, : windows * fixed].reshape(-1, fixed))
        return self._run_fixed(framed).reshape(audio.shape[0], windows, -1).mean(axis=1)

    def _embed_batch(self, audio: np.ndarray) -> np.ndarray:
        """float32 ``[batch, samples]`` at the model rate -> float32 ``[batch, D]`` clip vectors."""
        return _EMBEDDERS[self.kind.input_name](self, audio)

    def _prepare(self, audio, sample_rate, *, what="Audio") -> np.ndarray:
        """Scale int16, validate, resample: -> float32 ``[batch, samples]`` at the model rate."""
        rate = self.sample_rate_hz if sample_rate is None else check_sample_rate(sample_rate)
        array = np.asarray(audio)
        if array.dtype == np.int16:
            array = array.astype(np.float32) / _PCM16_SCALE
        array = validate_audio(array, sample_rate_hz=rate, expected_rate_hz=rate, allow_1d=True)
        peak = np.max(np.abs(array), axis=1)
        if np.any(peak == 0):
            _log.warning("%s clip(s) %s are silent (all zeros).", what, np.flatnonzero(peak == 0).tolist())
        if np.any(peak > 1.0):
            _log.warning(
                "%s peaks at %.3g, outside [-1, 1]; unscaled 16-bit PCM as float? Divide by 32768.", what, peak.max()
            )
        return resample(array, rate, self.sample_rate_hz)

    def __call__(self, audio, *, sample_rate=None) -> dict:
        """Embed clips, one vector per clip (the TF Hub call).

        Args:
            audio: float32 ``[samples]`` or ``[batch, samples]`` in [-1, 1] (int16 PCM is
                scaled), or a list of ``[samples]`` clips of different lengths (each is
                padded and chunked on its own, as if called alone).
            sample_rate: Rate of ``audio`` in Hz (a positive integer); other rates than
                :attr:`sample_rate_hz` are resampled with soxr. Default: the model's rate.

        Returns:
            ``{'embedding': float32 [batch, D]}``; a score model (output ``scores``) returns
            the same array under ``scores`` too; a multi-output model returns
            ``{name: float32 [batch, D_name]}`` for each of :attr:`output_keys`.

        Raises:
            ParameterError: empty clips, NaN/Inf, multi-channel arrays, a bad sample rate.
            AudioTypeError: integer dtypes other than int16, non-numeric audio.
        """
        if isinstance(audio, (list, tuple)) and audio and np.ndim(audio[0]) == 1:
            clips = [self._prepare(clip, sample_rate, what=f"Audio[{i}]") for i, clip in enumerate(audio)]
            if len({clip.shape[1] for clip in clips}) == 1:
                return self._outputs(self._embed_batch(np.concatenate(clips)))
            return self._outputs(np.concatenate([self._embed_batch(clip) for clip in clips]))
        return self._outputs(self._embed_batch(self._prepare(audio, sample_rate)))

    def _outputs(self, vectors: np.ndarray) -> dict:
        if len(self.output_keys) > 1:
            widths = [int(self._output_details[key]["shape_signature"][-1]) for key in self.output_keys]
            return dict(zip(self.output_keys, np.split(vectors, np.cumsum(widths)[:-1], axis=-1)))
        if self.output_key == SCORES_KEY:
            return {EMBEDDING_KEY: vectors, SCORES_KEY: vectors}
        return {EMBEDDING_KEY: vectors}

    def embed_file(self, path) -> np.ndarray:
        """Embed one audio file (wav/flac/ogg and all libsndfile reads), channels mixed down.

        Args:
            path: Audio file; any sample rate (resampled to :attr:`sample_rate_hz`).

        Returns:
            float32 ``[D]``; for a multi-output model, ``{output: float32 [D_output]}``.

        Raises:
            ParameterError: the file is missing or not audio (the message names it).
        """
        audio = load_audio(path, sample_rate_hz=self.sample_rate_hz)
        outputs = self(audio)
        if len(self.output_keys) > 1:
            return {key: value[0] for key, value in outputs.items()}
        return outputs[EMBEDDING_KEY][0]

    def embed_files(self, paths, *, progress: bool = False) -> np.ndarray:
        """Embed audio files one by one.

        Args:
            paths: Sequence of audio file paths.
            progress: Show a tqdm progress bar when tqdm is installed.

        Returns:
            float32 ``[len(paths), D]``, rows in the order of ``paths``.
        """
        vectors = [self.embed_file(path) for path in _progress(list(paths), progress)]
        return np.stack(vectors) if vectors else np.zeros((0, self.embedding_dim), np.float32)

    # -- frame-level outputs --------------------------------------------------------------

    def frames_refusal(self):
        """Why this file cannot give frame-level outputs (a message naming the fix), or ``None`` when it can.

        Dynamic-length audio-in files and patch-in files give frames at any hop; a fixed-length
        audio-in file only when its input is one window (``convert(..., frames=True)``).
        """
        if len(self.output_keys) > 1 or self.kind.family == kinds.WAVEFORM:
            return (f"{self._name!r} is a {self.kind.name} model with outputs {list(self.output_keys)}: it gives one "
                    "vector per clip, no frames.")
        if self.kind.input_name == LOG_MEL_INPUT_NAME:
            return (f"{self._name!r} takes fixed windows of dB mel bands (the TFLite Micro form): convert with "
                    "frontend=True (no --no-frontend) for a file that gives frames.")
        fixed = int(self._input["shape_signature"][1]) if self.kind.input_name == AUDIO_INPUT_NAME else -1
        span = self.frontend.chunk_span_samples
        if fixed > 0 and fixed != span:
            return (f"{self._name!r} takes a fixed [1, {fixed}] input, which is not one frame window of {span} samples: "
                    f"convert it with frames=True (CLI `trillsson-tf convert --frames`), or without fixed_samples, for "
                    "a file that gives frames.")
        return None

    def frames(self, audio, *, hop_s=DEFAULT_HOP_S, sample_rate=None) -> dict:
        """Frame-level outputs: one vector per window of one 195-frame patch, every ``hop_s`` seconds.

        Window ``k`` reads samples ``[k hop, k hop + 31440)`` of the clip (mirror-padded to 2 s
        when shorter), the window ``end_s - start_s`` is :attr:`window_s`; at
        ``hop_s=1.95`` (hop = window) the windows are the clip call's chunks and their mean is its
        clip vector. Whole-clip (Wav2Small) files run whole on each window's audio.

        Args:
            audio: float32 ``[samples]`` or ``[batch, samples]`` (one length), as for a call.
            hop_s: Seconds between window starts, a multiple of 0.01 s in (0, 1.95].
            sample_rate: Rate of ``audio`` in Hz (resampled when not :attr:`sample_rate_hz`).

        Returns:
            ``{'embedding': float32 [batch, windows, D], 'start_s': float32 [windows]}`` (and
            ``scores``, the same array, for score models).

        Raises:
            ParameterError: a bad hop (zero, negative, larger than the window, not whole frames),
                a file that gives no frames (:meth:`frames_refusal`), bad audio.
        """
        windows = self._frame_windows(hop_s)
        vectors = self._window_vectors(self._prepare(audio, sample_rate), windows)
        return {**self._outputs(vectors), START_S_KEY: windows.starts_s(vectors.shape[1])}

    def _frame_windows(self, hop_s):
        windows = self.frontend.windows(hop_s)
        refusal = self.frames_refusal()
        if refusal:
            raise ParameterError(refusal)
        return windows

    @property
    def window_s(self) -> float:
        """Seconds of audio one frame-level window reads (1.965 s: 31,440 samples at 16 kHz)."""
        return self.frontend.chunk_span_samples / self.sample_rate_hz

    # -- streaming ------------------------------------------------------------------------

    @property
    def chunk_span_samples(self) -> int:
        """Samples one chunk covers: ``(chunk_frames - 1) * hop + window`` (31,440 at 16 kHz)."""
        return self.frontend.chunk_span_samples

    @property
    def chunk_step_samples(self) -> int:
        """Samples between the starts of two chunks: ``chunk_frames * hop`` (31,200 at 16 kHz)."""
        return self.frontend.chunk_step_samples

    def reset(self) -> None:
        """Forget buffered stream audio: the next :meth:`feed` starts a new stream."""
        with self._stream_lock:
            self._stream = None

    def feed(self, block, *, sample_rate=None) -> np.ndarray:
        """Push one block of a live stream; return the vectors of the chunks it completes.

        A chunk is complete once its 195 frames have all their samples; chunk ``k`` covers
        samples ``[31200 k, 31200 k + 31440)`` at 16 kHz, exactly the chunks the offline call
        averages. Blocks may have any size, including zero. (:meth:`open_stream` gives windows
        every hop instead.)

        Args:
            block: Mono float32 ``[samples]`` in [-1, 1] (int16 PCM is scaled).
            sample_rate: Rate of the block in Hz; the same for every block of a stream
                (resampled continuously when it is not :attr:`sample_rate_hz`).

        Returns:
            float32 ``[k, D]``, ``k >= 0`` chunk vectors.
        """
        self._refuse_chunk_stream()
        with self._stream_lock:  # one shared stream: blocks from several threads go in one at a time
            if self._stream is None:
                self._stream = self.open_stream(None)
            return self._stream.feed(block, sample_rate=sample_rate)[1]

    def _refuse_chunk_stream(self) -> None:
        """Raise for a file without 195-frame chunks (whole-clip models) or without frames."""
        refusal = self.frames_refusal()
        if refusal:
            raise ParameterError(f"{self._name!r} does not stream: {refusal}")
        if self.kind.whole_clips:
            raise ParameterError(f"{self._name!r} is a whole-clip model (Wav2Small): its clip vector is no mean of "
                                 "chunks, so it does not stream chunk vectors; stream its windows with hop_s=....")

    def open_stream(self, hop_s=DEFAULT_HOP_S, *, sample_rate=None) -> "FrameStream":
        """A live stream that gives one window vector every ``hop_s`` seconds (:class:`FrameStream`).

        Args:
            hop_s: As for :meth:`frames`; ``None``: the non-overlapping 195-frame chunks.
            sample_rate: Rate of the blocks in Hz (default: set by the first block, else the model's).

        Raises:
            ParameterError: a bad hop, or a file that gives no frames (:meth:`frames_refusal`).
        """
        return FrameStream(self, self._frame_windows(hop_s), sample_rate=sample_rate)

    def stream(self, blocks, *, hop_s=None, sample_rate=None):
        """Embed a live stream, window by window, each vector as soon as its audio has arrived.

        With ``hop_s`` it yields ``(start_s, vector)`` every hop once the first window is full:
        the numbers of :meth:`frames` on the concatenated blocks (the latency after a window's
        last sample is one model call). With ``hop_s=None`` it yields one vector per
        non-overlapping 195-frame chunk, whose mean equals the offline call. Either way a stream
        that ends before its first window is full gives the windows of its mirror-padded audio,
        as the offline call does; the tail after the last whole window is dropped.

        Args:
            blocks: Iterable of mono float32 ``[samples]`` blocks of any size.
            hop_s: Seconds between window starts (as for :meth:`frames`), or ``None``.
            sample_rate: Rate of the blocks in Hz (default: the model's); resampled continuously.

        Yields:
            ``(start_s, float32 [D])`` with ``hop_s``, else float32 ``[D]`` chunk vectors.

        Raises:
            ParameterError: a bad hop, a file that does not stream, a bad block (NaN, stereo):
                the generator ends there; :meth:`open_stream` keeps a stream going past a refused block.
        """
        if hop_s is None:
            self._refuse_chunk_stream()
        stream = self.open_stream(hop_s, sample_rate=sample_rate)
        for block in blocks:
            yield from _pairs(*stream.feed(block), with_times=hop_s is not None)
        yield from _pairs(*stream.close(), with_times=hop_s is not None)


def _pairs(starts, vectors, *, with_times):
    return zip(starts.tolist(), vectors) if with_times else iter(vectors)


class FrameStream:
    """A live stream through a :class:`TFLiteModel`: blocks in, the windows they complete out.

    Window ``k`` reads samples ``[k hop, k hop + 31440)`` of the stream at the model rate, the
    windows of :meth:`TFLiteModel.frames`; it is run as soon as its last sample arrives. Made by
    :meth:`TFLiteModel.open_stream`. A refused block (NaN/Inf, stereo, another rate) raises and
    leaves the stream as it was.

    Attributes:
        windows: The :class:`~trillsson_tf.frontend.FrameWindows` of the stream.
        sample_rate_hz: Rate of the blocks (``None`` until the first block sets it).
        emitted: Windows given so far.
    """

    def __init__(self, model: TFLiteModel, windows, *, sample_rate=None):
        self._model, self.windows = model, windows
        self.sample_rate_hz = None if sample_rate is None else check_sample_rate(sample_rate)
        self._resampler = None
        self._buffer = np.zeros(0, np.float32)  # stream samples from window `emitted`'s start on
        self._head = np.zeros(0, np.float32)  # the first 2 s, for a stream shorter than that (close)
        self.emitted = 0
        self._received = 0

    def _empty(self):
        return np.zeros(0, np.float32), np.zeros((0, self._model.embedding_dim), np.float32)

    def feed(self, block, *, sample_rate=None) -> tuple:
        """Push one block; return ``(start_s float32 [k], vectors float32 [k, D])`` of the windows it completes.

        Args:
            block: Mono float32 ``[samples]`` in [-1, 1] (int16 PCM is scaled), any size.
            sample_rate: Rate of the block in Hz; default the stream's (set by its first block or
                :meth:`TFLiteModel.open_stream`), else the model's.

        Raises:
            ParameterError: NaN/Inf, a block that is not mono ``[samples]``, a rate other than
                the stream's; nothing of the block is kept.
        """
        rate = check_sample_rate(sample_rate) if sample_rate is not None else (self.sample_rate_hz or self._model.sample_rate_hz)
        if self.sample_rate_hz not in (None, rate):
            raise ParameterError(f"Stream started at {self.sample_rate_hz} Hz, got a block at {rate} Hz; call reset() first.")
        block = np.asarray(block)
        if block.ndim != 1:
            raise ParameterError(f"Stream blocks must be mono [samples], got shape {block.shape}.")
        if block.size:
            if block.dtype == np.int16:
                block = block.astype(np.float32) / _PCM16_SCALE
            block = validate_audio(block, sample_rate_hz=rate, expected_rate_hz=rate, allow_1d=True)[0]
        self.sample_rate_hz = rate  # only once the block is accepted
        if not block.size:
            return self._empty()
        self._append(block, last=False)
        return self._drain()

    def close(self) -> tuple:
        """End the stream: the windows still due, as ``(start_s, vectors)`` (see :meth:`feed`).

        The resampler's last samples are flushed; a stream shorter than 2 s gives the windows of
        its mirror-padded audio that the offline call has and the stream has not given.
        """
        if self._resampler is not None:
            self._append(np.zeros(0, np.float32), last=True)
        starts, vectors = self._drain()
        min_samples = self._model.frontend.min_samples
        if 0 < self._received < min_samples:
            padded = self._model._window_vectors(self._head[np.newaxis], self.windows)[0]
            late = padded[self.emitted :]
            starts = np.concatenate([starts, self.windows.starts_s(len(padded))[self.emitted :]])
            vectors = np.concatenate([vectors, late])
            self.emitted = len(padded)
        return starts, vectors

    def _append(self, block: np.ndarray, *, last: bool) -> None:
        if self.sample_rate_hz not in (None, self._model.sample_rate_hz):
            if self._resampler is None:
                import soxr

                self._resampler = soxr.ResampleStream(self.sample_rate_hz, self._model.sample_rate_hz, 1, dtype="float32")
            block = self._resampler.resample_chunk(block, last=last)
        block = block.astype(np.float32, copy=False)
        min_samples = self._model.frontend.min_samples
        if self._received < min_samples:
            self._head = np.concatenate([self._head, block[: min_samples - self._received]])
        self._received += len(block)
        self._buffer = np.concatenate([self._buffer, block])

    def _drain(self) -> tuple:
        span, hop = self.windows.span_samples, self.windows.hop_samples
        count = 0 if len(self._buffer) < span else 1 + (len(self._buffer) - span) // hop
        if not count:
            return self._empty()
        segments = np.lib.stride_tricks.sliding_window_view(self._buffer, span)[: count * hop : hop]
        vectors = self._model._run_segments(segments)
        starts = self.windows.starts_s(self.emitted + count)[self.emitted :]
        self._buffer = self._buffer[count * hop :]
        self.emitted += count
        return starts, vectors


_EMBEDDERS = {
    AUDIO_INPUT_NAME: TFLiteModel._embed_audio,
    PATCH_INPUT_NAME: TFLiteModel._embed_patches,
    LOG_MEL_INPUT_NAME: TFLiteModel._embed_log_mel,
}
"""How a batch of clips is fed to a file, for each input a kind takes (:attr:`trillsson_tf.kinds.Kind.input_name`)."""


def audio_files(inputs) -> list:
    """Expand files and folders into a list of audio files.

    Args:
        inputs: Paths; a folder contributes every file under it (recursively, sorted) whose
            name ends with one of :data:`AUDIO_EXTENSIONS`; files are kept as given.

    Returns:
        List of file paths, in input order.

    Raises:
        ParameterError: a path does not exist, a folder holds no audio, or nothing was given.
    """
    files = []
    for path in map(os.fspath, inputs):
        if os.path.isdir(path):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(path)
                for name in names
                if name.lower().endswith(AUDIO_EXTENSIONS)
            )
            if not found:
                raise ParameterError(f"Folder {path!r} holds no audio files (looked for {list(AUDIO_EXTENSIONS)}).")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ParameterError(f"Input {path!r} is neither an audio file nor a folder.")
    if not files:
        raise ParameterError("No input files given.")
    return files


def embed_to_file(model, inputs, out_path, *, num_threads=None, progress: bool = False, overwrite: bool = False,
                  frames: bool = False, hop_s=None) -> dict:
    """Embed audio files and folders with a ``.tflite`` model and write the vectors.

    One vector per file: ``.npy`` holds float32 ``[n, D]`` and a ``<out>.files.txt`` beside it
    names the file of each row; ``.csv`` has a header ``path,e0,...`` and one row per file.
    With ``frames``, one vector per window (:meth:`TFLiteModel.frames`): ``.npy`` holds float32
    ``[windows of all files, D]`` and a ``<out>.windows.csv`` beside it the ``file,start_s,end_s``
    of each row; ``.csv`` has rows ``file,start_s,end_s,v0,...``.

    Args:
        model: ``.tflite`` path (or a :class:`TFLiteModel`).
        inputs: Audio files and folders (see :func:`audio_files`).
        out_path: Output file ending with one of :data:`OUTPUT_FORMATS`.
        num_threads: Interpreter threads (``None``: the interpreter's default).
        progress: Show a progress bar (tqdm, when installed).
        overwrite: Replace an existing output file or sidecar (``<out>.files.txt``,
            ``<out>.windows.csv``); refused otherwise, before any audio is read.
        frames: Write frame-level vectors instead of one per file.
        hop_s: Seconds between window starts with ``frames`` (default 0.5).

    Returns:
        ``{'out': str, 'files': int, 'embedding_dim': int, 'skipped': [(path, error)]}`` (and
        ``'windows': int`` with ``frames``); files that cannot be read (not audio, NaN/Inf
        samples) are logged by name, left out of the output and listed in ``skipped``.

    Raises:
        ParameterError: unknown output format, existing output or sidecar, an output that is an
            input (even with ``overwrite``), an output folder that cannot be written (checked
            before any audio is read), no readable file, bad inputs or model, a hop
            without ``frames``, a bad hop, a model that gives no frames (the message names the fix).
    """
    out_path = os.fspath(out_path)
    extension = os.path.splitext(out_path)[1].lower()
    if extension not in OUTPUT_FORMATS:
        raise ParameterError(f"Unknown output format {extension!r} for {out_path!r}. Expected one of: {list(OUTPUT_FORMATS)}.")
    if hop_s is not None and not frames:
        raise ParameterError("A hop applies to frame-level outputs only: pass frames=True (CLI --frames) with it.")
    files = audio_files(inputs)
    _check_outputs(_output_files(out_path, frames), overwrite=overwrite,
                   inputs=[("model", getattr(model, "path", model)), ("audio file", files)])
    _check_writable(out_path)
    if not isinstance(model, TFLiteModel):
        model = TFLiteModel(model, num_threads=num_threads)
    if frames:
        return _frames_to_file(model, files, out_path, extension, DEFAULT_HOP_S if hop_s is None else hop_s)
    files, vectors, skipped = _embed_readable(model, files, progress=progress)
    if extension == ".npy":
        write_atomic(out_path, _npy_bytes(vectors))
        write_atomic(_output_files(out_path, frames=False)[-1], "".join(f"{path}\n" for path in files))
    else:
        header = ["path", *(f"e{i}" for i in range(vectors.shape[1]))]
        write_atomic(out_path, _csv_text([header, *([path, *(f"{value:.8g}" for value in vector)]
                                                    for path, vector in zip(files, vectors))]))
    _log.info("Wrote %d embeddings (%d-d) to %s", len(files), vectors.shape[1], out_path)
    return {"out": out_path, "files": len(files), "embedding_dim": int(vectors.shape[1]), "skipped": skipped}


def _npy_bytes(vectors: np.ndarray) -> bytes:
    """``vectors`` as the bytes of a ``.npy`` file (written whole by ``write_atomic``: a full disk leaves no 0-byte file)."""
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    return buffer.getvalue()


def _csv_text(rows) -> str:
    """``rows`` as CSV text."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def _embed_readable(model: TFLiteModel, files: list, *, progress: bool = False):
    """``(files, vectors [n, D], skipped)``: the files that read, their vectors, and ``(path, error)`` of the others."""
    kept, vectors, skipped = [], [], []
    for path in _progress(files, progress):
        try:
            vectors.append(model.embed_file(path))
        except ParameterError as error:  # one bad file must not stop a batch job: named, counted, left out
            _log.warning("Skipping %s: %s", path, error)
            skipped.append((path, str(error)))
            continue
        kept.append(path)
    _refuse_none_read(files, skipped)
    return kept, np.stack(vectors), skipped


def _progress(files: list, progress: bool):
    """``files``, behind a tqdm bar when ``progress`` and tqdm is installed."""
    if not progress:
        return files
    try:
        from tqdm import tqdm
    except ImportError:
        _log.info("Install tqdm to see a progress bar.")
        return files
    return tqdm(files, desc="embed", unit="file")


def _refuse_none_read(files: list, skipped: list) -> None:
    """Log how many files were left out; raise when that is all of them."""
    if skipped:
        _log.warning("Skipped %d unreadable file(s) of %d.", len(skipped), len(files))
    if len(skipped) == len(files):
        raise ParameterError(f"None of the {len(files)} audio file(s) could be read; first error: {skipped[0][1]}")


def _check_writable(out_path: str) -> None:
    """Make the output's folder and try a file in it, so an unwritable place fails before the work, not after.

    Raises:
        ParameterError: the folder cannot be made or written (read-only, a file in the way, no permission).
    """
    import tempfile

    folder = os.path.dirname(os.path.abspath(out_path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ParameterError(f"Cannot write the output {out_path!r}: {existing!r} is a file, not a folder.")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ParameterError(f"Cannot write the output {out_path!r}: {error.strerror or error} "
                             f"({error.filename or folder!r}).") from None


def _output_files(out_path: str, frames: bool) -> list:
    """The files :func:`embed_to_file` writes: the output, and beside a ``.npy`` its rows' names (a sidecar)."""
    if not out_path.lower().endswith(".npy"):
        return [out_path]
    return [out_path, os.path.splitext(out_path)[0] + (".windows.csv" if frames else ".files.txt")]


def _check_outputs(paths: list, *, overwrite: bool, inputs: list) -> None:
    """Refuse, before any work, an output that is an input, or one that exists without ``overwrite``."""
    for path in paths:
        refuse_inputs(path, inputs, what="Output", folder=False)
        if os.path.exists(path) and not overwrite:
            raise ParameterError(f"Output {path!r} exists; pass overwrite=True (--force) to replace it.")


def _frames_to_file(model: TFLiteModel, files: list, out_path: str, extension: str, hop_s) -> dict:
    """The ``frames`` branch of :func:`embed_to_file`: every file's windows, one row each."""
    model._frame_windows(hop_s)  # a bad hop or a file without frames fails before any audio is read
    rows, vectors, skipped = [], [], []
    for path in files:
        try:
            result = model.frames(load_audio(path, sample_rate_hz=model.sample_rate_hz), hop_s=hop_s)
        except ParameterError as error:  # as in one-vector mode: named, counted, left out
            _log.warning("Skipping %s: %s", path, error)
            skipped.append((path, str(error)))
            continue
        rows += [(path, float(start), float(start) + model.window_s) for start in result[START_S_KEY]]
        vectors.append(result[EMBEDDING_KEY][0])
    _refuse_none_read(files, skipped)
    vectors = np.concatenate(vectors)
    header = ["file", "start_s", "end_s"]
    times = [[path, f"{start:.3f}", f"{end:.3f}"] for path, start, end in rows]
    if extension == ".npy":
        write_atomic(out_path, _npy_bytes(vectors))
        write_atomic(_output_files(out_path, frames=True)[-1], _csv_text([header, *times]))
    else:
        columns = [*header, *(f"v{i}" for i in range(vectors.shape[1]))]
        write_atomic(out_path, _csv_text([columns, *([*row, *(f"{value:.8g}" for value in vector)]
                                                     for row, vector in zip(times, vectors))]))
    read = len(files) - len(skipped)
    _log.info("Wrote %d windows of %d files (%d-d, hop %g s) to %s", len(rows), read, vectors.shape[1], hop_s, out_path)
    return {"out": out_path, "files": read, "windows": len(rows), "embedding_dim": int(vectors.shape[1]),
            "skipped": skipped}
