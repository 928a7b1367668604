"""One feeder per input a file takes (:attr:`trillsson_tf.kinds.Kind.input_name`): how clips, the
chunks of chunk vectors and stream chunks reach its interpreters.

:data:`FEEDERS` is the table; :func:`feeder_for` picks the feeder of a loaded file. A kind with a
new input is one more entry (``tests/test_kinds.py`` checks that every input has one).
"""

import numpy as np

from trillsson_tf import kinds
from trillsson_tf.contract import AUDIO_INPUT_NAME, LOG_MEL_INPUT_NAME, PATCH_INPUT_NAME
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import dft, numpy_ops
from trillsson_tf.runtime.card import describe

__all__ = ["FEEDERS", "AudioFeeder", "Feeder", "LogMelFeeder", "PatchFeeder", "feeder_for"]


class Feeder:
    """How clips reach a file that takes one kind of input.

    Args:
        pool: The file's :class:`~trillsson_tf.runtime.pool.InterpreterPool`.
        frontend: Its :class:`~trillsson_tf.frontend.FrontendConfig`.
        kind: Its :class:`~trillsson_tf.kinds.Kind`.
        clip_model: The card's ``clip_model`` entry of a whole-clip model, else ``None``.
        name: The file's name, for messages.

    Attributes:
        input_length: The input's second size (samples or frames); ``-1`` when free.
    """

    def __init__(self, pool, frontend, kind, clip_model=None, name="<bytes>"):
        self.pool, self.frontend, self.kind, self.clip_model, self.name = pool, frontend, kind, clip_model, name
        self.input_length = int(pool.input["shape_signature"][1])

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """float32 ``[batch, samples]`` at the model rate -> float32 ``[batch, D]`` clip vectors."""
        raise NotImplementedError

    def chunk_vectors_refusal(self):
        """Why this input gives no chunk vectors (a message naming the fix), or ``None``."""
        return None

    def chunk_vectors(self, audio: np.ndarray, chunks) -> np.ndarray:
        """float32 ``[batch, samples]`` -> ``[batch, chunks, D]``, one vector per chunk of ``chunks``
        (:class:`~trillsson_tf.frontend.ChunkGrid`)."""
        raise ParameterError(self.chunk_vectors_refusal())

    def embed_chunks(self, segments: np.ndarray) -> np.ndarray:
        """float32 ``[n, span]`` chunk audio -> float32 ``[n, D]`` chunk vectors (a stream's call)."""
        raise ParameterError(self.chunk_vectors_refusal())

    def mean_of_windows(self, values: np.ndarray, length: int) -> np.ndarray:
        """The consecutive windows of ``length`` along axis 1 of ``values`` (the tail dropped), averaged per clip."""
        windows = values.shape[1] // length
        framed = np.ascontiguousarray(values[:, : windows * length].reshape(-1, length, *values.shape[2:]))
        return self.pool.run_chunks(framed).reshape(values.shape[0], windows, -1).mean(axis=1)


class AudioFeeder(Feeder):
    """Audio in (``chunk``, ``clip``, ``waveform``): a fixed input length runs consecutive windows of
    that length (unless it is one chunk); a dynamic one runs each clip whole (whole-clip
    kinds, mirror-padded to their minimum) or the audio of its 195-frame chunks, averaged."""

    def embed(self, audio):
        fixed = self.input_length
        if fixed > 0 and (self.kind.whole_clips or fixed != self.frontend.chunk_span_samples):
            return self.mean_of_windows(numpy_ops.mirror_pad(audio, fixed), fixed)
        if self.kind.whole_clips:
            return self.pool.run(numpy_ops.mirror_pad(audio, self.clip_model["frontend"].min_samples))
        return self.chunk_vectors(audio, self.frontend.chunks()).mean(axis=1)

    def chunk_vectors_refusal(self):
        fixed, span = self.input_length, self.frontend.chunk_span_samples
        if fixed > 0 and fixed != span:
            return (
                f"{self.name!r} takes a fixed [1, {fixed}] input, which is not one chunk of {span} samples: convert "
                "it with chunk_vectors=True (CLI `trillsson-tf convert --chunk-vectors`), or without fixed_samples, "
                "for a file that gives chunk vectors."
            )
        return None

    def chunk_vectors(self, audio, chunks):
        segments = numpy_ops.chunk_audio(audio, self.frontend, chunks=chunks)
        batch, count = segments.shape[:2]
        return self.pool.run_chunks(segments.reshape(batch * count, -1)).reshape(batch, count, -1)

    def embed_chunks(self, segments):
        return self.pool.run_chunks(np.ascontiguousarray(segments))


class PatchFeeder(Feeder):
    """Log-mel patches in (``patch``): the numpy log-mel of each 195-frame chunk, averaged per clip."""

    def embed(self, audio):
        return self.chunk_vectors(audio, self.frontend.chunks()).mean(axis=1)

    def chunk_vectors(self, audio, chunks):
        patches = numpy_ops.log_mel_patches(audio, self.frontend, chunks=chunks)
        batch, count = patches.shape[:2]
        return self.run_patches(patches.reshape(batch * count, *patches.shape[2:])).reshape(batch, count, -1)

    def embed_chunks(self, segments):
        return self.run_patches(numpy_ops.log_mel(segments, self.frontend))

    def run_patches(self, patches: np.ndarray) -> np.ndarray:
        """float32 ``[n, frames, mels]`` log-mel patches -> float32 ``[n, D]`` chunk vectors."""
        if len(self.pool.input["shape_signature"]) == 4:
            patches = patches[..., np.newaxis]
        return self.pool.run_chunks(patches)


class LogMelFeeder(Feeder):
    """dB mel bands in (``clip_log_mel``, a whole-clip network alone): the numpy twin of its frontend,
    whole clips for a dynamic length, else consecutive windows of that many frames averaged. No chunk vectors."""

    def embed(self, audio):
        config, fixed = self.clip_model["frontend"], self.input_length
        if fixed > 0:  # at least one window of frames
            audio = numpy_ops.mirror_pad(audio, (fixed - 1) * config.hop_samples + config.window_samples)
        features = dft.features(dft.normalize_clips(audio, config), config, compression=self.clip_model["compression"])
        if fixed <= 0:
            return self.pool.run(features)
        return self.mean_of_windows(features, fixed)

    def chunk_vectors_refusal(self):
        return (
            f"{self.name!r} takes fixed windows of dB mel bands (the TFLite Micro form): convert with "
            "frontend=True (no --no-frontend) for a file that gives chunk vectors."
        )


FEEDERS = {AUDIO_INPUT_NAME: AudioFeeder, PATCH_INPUT_NAME: PatchFeeder, LOG_MEL_INPUT_NAME: LogMelFeeder}
"""The feeder of each input a kind takes (:attr:`trillsson_tf.kinds.Kind.input_name`)."""


def feeder_for(card: dict, pool, frontend, clip_model, name: str) -> Feeder:
    """The feeder of a loaded file, for its kind (:func:`trillsson_tf.kinds.of_tflite`; :attr:`Feeder.kind`).

    Raises:
        ParameterError: an input that is neither audio ``[batch, samples]`` nor log-mel patches.
    """
    kind = kinds.of_tflite(card, pool.input["shape_signature"], frontend.patch_shape)
    if kind is None:
        patch = frontend.patch_shape
        raise ParameterError(
            f"TFLite model {name!r} takes {describe({pool.input_name: pool.input})[0]}; expected audio "
            f"[batch, samples] or log-mel patches [n, {patch[0]}, {patch[1]}, 1]."
        )
    return FEEDERS[kind.input_name](pool, frontend, kind, clip_model, name)
