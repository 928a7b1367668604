""":class:`TFLiteModel`: a ``.tflite`` student called like a TF Hub TRILLsson model, without TensorFlow.

It reads the card (:mod:`.card`), loads the interpreters (:mod:`.pool`), feeds them through the
feeder of the file's input (:mod:`.feeders`) and streams through :class:`~.stream.ChunkStream`.
"""

import logging
import os
import threading

import numpy as np

from trillsson_tf import kinds
from trillsson_tf.audio import load_audio
from trillsson_tf.contract import EMBEDDING_KEY, SCORES_KEY, START_S_KEY
from trillsson_tf.errors import ParameterError, deprecated
from trillsson_tf.frontend import DEFAULT_HOP_S
from trillsson_tf.runtime import card as cards
from trillsson_tf.runtime.compiled import DEFAULT_API
from trillsson_tf.runtime.feeders import feeder_for
from trillsson_tf.runtime.inputs import prepare_audio, progress_bar
from trillsson_tf.runtime.pool import InterpreterPool
from trillsson_tf.runtime.stream import ChunkStream, iterate, refuse_chunk_stream

__all__ = ["TFLiteModel"]

_log = logging.getLogger(__package__)  # "trillsson_tf.runtime", the name the log lines have always had


class TFLiteModel:
    """A ``.tflite`` embedding model called like a TF Hub TRILLsson model, without TensorFlow.

    Audio contract: mono float32 in [-1, 1] at :attr:`sample_rate_hz` (16 kHz), any length; int16 is
    16-bit PCM (scaled by 1/32768), other integer dtypes are refused. Multi-channel *arrays* are
    refused with a mix-down hint (``[2, samples]`` is a batch of two clips); *files* are mixed down
    (:meth:`embed_file`). Silent clips are embedded and logged as a warning; empty clips and NaN/Inf raise.

    Thread-safe: one instance may be called (``__call__``, :meth:`embed_file`, :meth:`chunk_vectors`,
    :meth:`stream`, :meth:`feed`, streams from :meth:`open_stream`) from any number of threads,
    and every call gives what it gives alone. Each interpreter runs one call at a time (a lock
    each), so threads share it in turn; for calls that run side by side, give each thread its own
    instance. One :class:`ChunkStream` is fed by one thread at a time.

    Args:
        model: Path of a ``.tflite`` file, or its contents as ``bytes``.
        num_threads: Interpreter threads; ``None`` leaves the interpreter's default.
        output_key: Output to return as ``embedding``; by default the model card's output,
            else ``embedding``, else the model's only ``[batch, D]`` output.
        api: ``'interpreter'`` (LiteRT's ``Interpreter``, the default) or ``'compiled'`` (LiteRT 2.x's
            ``CompiledModel``); both give the same numbers (``benchmarks/runtime_benchmark.py``).
        accelerator: ``'cpu'``, or ``'gpu'`` (``api='compiled'``; ops the GPU lacks run on the CPU).

    Attributes:
        path: The ``.tflite`` path, or ``None`` when built from bytes.
        card: The model card beside the file (:func:`read_model_card`), ``{}`` when none.
        frontend: :class:`FrontendConfig` (the card's, else the default TRILLsson numbers).
        sample_rate_hz: Rate the model expects, in Hz.
        kind: The :class:`trillsson_tf.kinds.Kind` of the file, which decides its :attr:`feeder`.
        frontend_inside: True when the model takes audio, False for log-mel patches or mel bands.
        clip_model: The card's ``clip_model`` entry of a whole-clip model (``frontend`` as a
            :class:`~trillsson_tf.frontend.dft.DFTFrontendConfig`, ``input``, ``compression``), else ``None``.
        output_key: The model output returned as ``embedding``.
        output_keys: Every output a call returns: ``(output_key,)``, or the card's ``output_keys`` of a
            multi-output model (a fine-tuned multi-task model's ``keyword_logits``, ``speaker_embedding``).
        embedding_dim: Width D of the embedding.
        pool: The :class:`~.pool.InterpreterPool`: a runner per call size (4, 2, 1 chunks), a lock each.
        feeder: The :class:`~.feeders.Feeder` of the file's input, which runs clips and chunks.

    Raises:
        ParameterError: missing or unreadable file, an input neither audio nor log-mel patches, no
            embedding-like output (the message lists the outputs), a card that disagrees with the model,
            a GPU that does not start (the message names the fallback).
        TrillssonError: neither ``ai_edge_litert`` nor ``tflite_runtime`` is installed.
    """

    def __init__(self, model, *, num_threads=None, output_key=None, api=DEFAULT_API, accelerator="cpu"):
        if isinstance(model, (bytes, bytearray, memoryview)):
            self.path, source, self.card = None, {"model_content": bytes(model)}, {}
        elif isinstance(model, (str, os.PathLike)):
            self.path = os.fspath(model)
            if not os.path.isfile(self.path):
                raise ParameterError(f"TFLite model file not found: {self.path!r}.")
            source, self.card = {"model_path": self.path}, cards.read_model_card(self.path)
        else:
            raise ParameterError(f"model must be a .tflite path or its bytes, got {type(model).__name__}.")
        self._name = name = self.path or "<bytes>"
        self.frontend = cards.frontend(self.card, name)
        self.sample_rate_hz = cards.sample_rate_hz(self.card, self.frontend, name)
        self._stream_lock = threading.Lock()  # the stream of feed() / reset()
        self.pool = InterpreterPool(source, num_threads=num_threads, name=name, api=api, accelerator=accelerator)
        self.clip_model = cards.clip_model(self.card, name)
        self.feeder = feeder_for(self.card, self.pool, self.frontend, self.clip_model, name)
        self.kind = self.feeder.kind
        self.frontend_inside = self.kind.frontend_inside
        outputs = self.pool.outputs
        self.output_key = cards.output_key(self.card, outputs, output_key, name)
        self.embedding_dim = int(outputs[self.output_key]["shape_signature"][-1])
        self.output_keys = (self.output_key,)  # output_key=...: that output alone; else the card's outputs
        if output_key is None:
            self.output_keys = cards.output_keys(self.card, outputs, self.output_key, name)
        self.pool.use_outputs(self.output_keys)
        self.reset()
        _log.info(
            "Loaded %s: %s model, input %s, output %r (%d-d)",
            name,
            self.kind.name,
            cards.describe({self.pool.input_name: self.pool.input})[0],
            self.output_key,
            self.embedding_dim,
        )

    def __repr__(self):
        return (
            f"TFLiteModel({self._name!r}, frontend_inside={self.frontend_inside}, "
            f"input_dtype={np.dtype(self.pool.input['dtype']).name}, embedding_dim={self.embedding_dim})"
        )

    def __call__(self, audio, *, sample_rate=None) -> dict:
        """Embed clips, one vector per clip (the TF Hub call).

        Args:
            audio: float32 ``[samples]`` or ``[batch, samples]`` in [-1, 1] (int16 PCM is scaled), or a
                list of ``[samples]`` clips of different lengths (each padded and chunked as if alone).
            sample_rate: Rate of ``audio`` in Hz; other rates than :attr:`sample_rate_hz` are
                resampled with soxr. Default: the model's rate.

        Returns:
            ``{'embedding': float32 [batch, D]}``; a score model (output ``scores``) returns
            the same array under ``scores`` too; a multi-output model returns
            ``{name: float32 [batch, D_name]}`` for each of :attr:`output_keys`.

        Raises:
            ParameterError: empty clips, NaN/Inf, multi-channel arrays, a bad sample rate.
            AudioTypeError: integer dtypes other than int16, non-numeric audio.
        """
        if isinstance(audio, (list, tuple)) and audio and np.ndim(audio[0]) == 1:
            rate = self.sample_rate_hz
            clips = [prepare_audio(clip, sample_rate, rate, what=f"Audio[{i}]") for i, clip in enumerate(audio)]
            if len({clip.shape[1] for clip in clips}) == 1:
                return self.split(self.feeder.embed(np.concatenate(clips)))
            return self.split(np.concatenate([self.feeder.embed(clip) for clip in clips]))
        return self.split(self.feeder.embed(prepare_audio(audio, sample_rate, self.sample_rate_hz)))

    def split(self, vectors: np.ndarray) -> dict:
        """A stream's (or feed's) vectors ``[..., sum of widths]`` -> ``{output: [..., width]}`` (several outputs)."""
        if len(self.output_keys) > 1:
            widths = [int(self.pool.outputs[key]["shape_signature"][-1]) for key in self.output_keys]
            return dict(zip(self.output_keys, np.split(vectors, np.cumsum(widths)[:-1], axis=-1)))
        if self.output_key == SCORES_KEY:
            return {EMBEDDING_KEY: vectors, SCORES_KEY: vectors}
        return {EMBEDDING_KEY: vectors}

    def embed_file(self, path) -> np.ndarray:
        """Embed one audio file (wav/flac/ogg and all libsndfile reads; any rate), channels mixed down.

        Returns:
            float32 ``[D]``; for a multi-output model, ``{output: float32 [D_output]}``.

        Raises:
            ParameterError: the file is missing or not audio (the message names it).
        """
        outputs = self(load_audio(path, sample_rate_hz=self.sample_rate_hz))
        if len(self.output_keys) > 1:
            return {key: value[0] for key, value in outputs.items()}
        return outputs[EMBEDDING_KEY][0]

    def file_vector(self, path) -> np.ndarray:
        """:meth:`embed_file`'s float32 ``[D]``; of a multi-output model, its ``output_key``'s."""
        vector = self.embed_file(path)
        return vector[self.output_key] if isinstance(vector, dict) else vector

    def embed_files(self, paths, *, progress: bool = False) -> np.ndarray:
        """float32 ``[len(paths), D]``: :meth:`file_vector` of each path, in order (``progress``: a tqdm bar)."""
        vectors = [self.file_vector(path) for path in progress_bar(list(paths), progress)]
        return np.stack(vectors) if vectors else np.zeros((0, self.embedding_dim), np.float32)

    def chunk_vectors_refusal(self):
        """Why this file cannot give chunk vectors (a message naming the fix), or ``None`` when it can.

        Dynamic-length audio-in files and patch-in files give chunk vectors at any hop; a fixed-length
        audio-in file only when its input is one chunk (``convert(..., chunk_vectors=True)``).
        """
        if self.kind.family == kinds.WAVEFORM:  # a several-teacher student's outputs are per-vector heads: chunks hold
            return (
                f"{self._name!r} is a {self.kind.name} model with outputs {list(self.output_keys)}: it gives one "
                "vector per clip, no chunk vectors."
            )
        return self.feeder.chunk_vectors_refusal()

    def chunk_grid(self, hop_s=DEFAULT_HOP_S):
        """The :class:`~trillsson_tf.frontend.ChunkGrid` at ``hop_s`` (``None``: the non-overlapping chunks).

        Raises:
            ParameterError: a bad hop, or a file that gives no chunk vectors (:meth:`chunk_vectors_refusal`).
        """
        chunks = self.frontend.chunks(hop_s)
        refusal = self.chunk_vectors_refusal()
        if refusal:
            raise ParameterError(refusal)
        return chunks

    def chunk_vectors(self, audio, *, hop_s=DEFAULT_HOP_S, sample_rate=None) -> dict:
        """One vector per chunk (one 195-frame patch), a chunk every ``hop_s`` seconds.

        Chunk ``k`` reads samples ``[k hop, k hop + 31440)`` of the clip (mirror-padded to 2 s
        when shorter), its ``end_s - start_s`` is :attr:`chunk_s`; at ``hop_s=1.95``
        (hop = chunk step) they are the clip call's chunks and their mean is its clip vector.
        Whole-clip (Wav2Small) files run whole on each chunk's audio.

        Args:
            audio: float32 ``[samples]`` or ``[batch, samples]`` (one length), as for a call.
            hop_s: Seconds between chunk starts, a multiple of 0.01 s in (0, 1.95].
            sample_rate: Rate of ``audio`` in Hz (resampled when not :attr:`sample_rate_hz`).

        Returns:
            ``{'embedding': float32 [batch, chunks, D], 'start_s': float32 [chunks]}`` (and
            ``scores``, the same array, for score models).

        Raises:
            ParameterError: a bad hop (zero, negative, longer than the chunk step, not whole frames),
                a file that gives no chunk vectors (:meth:`chunk_vectors_refusal`), bad audio.
        """
        chunks = self.chunk_grid(hop_s)
        vectors = self.feeder.chunk_vectors(prepare_audio(audio, sample_rate, self.sample_rate_hz), chunks)
        return {**self.split(vectors), START_S_KEY: chunks.starts_s(vectors.shape[1])}

    _RENAMED = {"frames": "chunk_vectors", "frames_refusal": "chunk_vectors_refusal", "window_s": "chunk_s"}

    def __getattr__(self, name):  # the old names of _RENAMED, for one release
        if name not in TFLiteModel._RENAMED:
            raise AttributeError(f"'TFLiteModel' object has no attribute {name!r}")
        old, new = (f"trillsson_tf.runtime.TFLiteModel.{attribute}" for attribute in (name, self._RENAMED[name]))
        deprecated(old, new)
        return getattr(self, TFLiteModel._RENAMED[name])

    @property
    def chunk_s(self) -> float:
        """Seconds of audio one chunk reads (1.965 s: 31,440 samples at 16 kHz)."""
        return self.frontend.chunk_span_samples / self.sample_rate_hz

    @property
    def chunk_span_samples(self) -> int:
        """Samples one chunk covers: ``(chunk_frames - 1) * hop + window`` (31,440 at 16 kHz)."""
        return self.frontend.chunk_span_samples

    @property
    def chunk_step_samples(self) -> int:
        """Samples between the starts of two chunks: ``chunk_frames * hop`` (31,200 at 16 kHz)."""
        return self.frontend.chunk_step_samples

    # -- streaming: open_stream is the API; stream() and feed() wrap it, with its default --

    def open_stream(self, hop_s=None, *, sample_rate=None) -> ChunkStream:
        """A live stream: blocks in, each chunk's vector as soon as its audio has arrived (:class:`ChunkStream`).

        The one streaming API; :meth:`stream` (an iterable of blocks) and :meth:`feed` (one
        stream shared by the instance) are wrappers around it with the same default.

        Args:
            hop_s: Seconds between chunk starts, as for :meth:`chunk_vectors`: the numbers of
                :meth:`chunk_vectors` on the concatenated blocks. ``None`` (the default): the
                non-overlapping 195-frame chunks, whose mean equals the offline call.
            sample_rate: Rate of the blocks in Hz (default: set by the first block, else the model's).

        Raises:
            ParameterError: a bad hop, or a file that gives no chunk vectors (:meth:`chunk_vectors_refusal`);
                with ``hop_s=None``, a whole-clip model (its clip vector is no mean of chunks).
            The stream's own :meth:`ChunkStream.feed` refuses bad blocks and leaves the stream as it was.
        """
        if hop_s is None:
            refuse_chunk_stream(self, self._name)
        return ChunkStream(self, self.chunk_grid(hop_s), sample_rate=sample_rate)

    def stream(self, blocks, *, hop_s=None, sample_rate=None):
        """:meth:`open_stream` (same arguments) fed an iterable of mono ``[samples]`` blocks, then closed.

        Yields ``(start_s, float32 [D])`` with ``hop_s``, else float32 ``[D]`` chunk vectors. A
        stream shorter than its first chunk gives the chunks of its mirror-padded audio, as the
        offline call does. A bad block (NaN, stereo) raises and ends the generator;
        :meth:`open_stream` keeps a stream going past a refused block.
        """
        yield from iterate(self.open_stream(hop_s, sample_rate=sample_rate), blocks, with_times=hop_s is not None)

    def feed(self, block, *, sample_rate=None) -> np.ndarray:
        """Push one block of the instance's own stream (``open_stream()``, the 195-frame chunks);
        return the vectors of the chunks it completes, float32 ``[k, D]``, ``k >= 0``.

        Chunk ``k`` covers samples ``[31200 k, 31200 k + 31440)`` at 16 kHz, exactly the chunks
        the offline call averages. Blocks may have any size, including zero; ``sample_rate`` is
        the same for every block of a stream. :meth:`reset` starts a new stream.
        """
        with self._stream_lock:  # one shared stream: blocks from several threads go in one at a time
            if self._stream is None:
                self._stream = self.open_stream(None)
            return self._stream.feed(block, sample_rate=sample_rate)[1]

    def reset(self) -> None:
        """Forget buffered stream audio: the next :meth:`feed` starts a new stream."""
        with self._stream_lock:
            self._stream = None
