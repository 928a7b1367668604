"""The teacher base classes: the call contract in numpy, padding, and fixed-window models."""

import hashlib
import logging
import os

import numpy as np

from trillsson_tf.audio import validate_audio
from trillsson_tf.contract import EMBEDDING_KEY
from trillsson_tf.errors import ParameterError

__all__ = ["Teacher", "WindowedTeacher", "clip_vectors", "file_fingerprint"]

_log = logging.getLogger("trillsson_tf.teachers")
_PROBE_SAMPLES = 32000


def file_fingerprint(path: str) -> str:
    """``sha1`` of a file's bytes, or of every file under a directory (names and bytes)."""
    digest = hashlib.sha1()
    files = (
        [path]
        if os.path.isfile(path)
        else sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    )
    for file in files:
        digest.update(os.path.relpath(file, path).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def clip_vectors(outputs) -> np.ndarray:
    """Model outputs ``[batch, D]`` or ``[batch, ..., D]`` -> float32 ``[batch, D]`` (mean over the middle axes)."""
    array = np.asarray(outputs, dtype=np.float32)
    if array.ndim == 1:
        return array[:, np.newaxis]
    return array.reshape(array.shape[0], -1, array.shape[-1]).mean(axis=1)


class Teacher:
    """An embedding model with the hub call contract, returning numpy.

    Attributes:
        spec: The spec the teacher was loaded from.
        identity: A string that changes when the teacher's weights or output change (used
            by the target cache and by ``--resume`` to recognise a teacher).
        embedding_dim: Width D of the clip vectors.
        parameters: Number of learned parameters, or ``None`` when unknown.
        min_samples: Clips shorter than this (in samples at 16 kHz) are zero-padded to it.
        padded_clips: How many clips were padded so far.
    """

    min_samples = 0

    def __init__(self, spec: str):
        self.spec = spec
        self.padded_clips = 0
        self.embedding_dim = 0
        self.parameters = None
        self.identity = spec

    def _finish_init(self) -> None:
        self.embedding_dim = int(
            self._embed(np.zeros((1, max(_PROBE_SAMPLES, self.min_samples)), np.float32)).shape[-1]
        )

    def __call__(self, audio, *, sample_rate: int = 16000) -> dict:
        """Clip vectors of ``audio``.

        Args:
            audio: float32 ``[batch, samples]`` (or ``[samples]``) at 16 kHz, in [-1, 1].
            sample_rate: Rate of ``audio`` in Hz (must be 16000).

        Returns:
            ``{'embedding': float32 numpy [batch, D]}``.
        """
        audio = self._pad(validate_audio(audio, sample_rate_hz=sample_rate, allow_1d=True))
        return {EMBEDDING_KEY: self._embed(audio)}

    def _pad(self, audio: np.ndarray) -> np.ndarray:
        if audio.shape[1] >= self.min_samples:
            return audio
        self.padded_clips += audio.shape[0]
        missing = self.min_samples - audio.shape[1]
        _log.debug("Zero-padding %d clip(s) of %d samples to %d", audio.shape[0], audio.shape[1], self.min_samples)
        return np.pad(audio, ((0, 0), (missing // 2, missing - missing // 2)))

    def _embed(self, audio: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-friendly summary: spec, identity, class (the teacher's class name), embedding_dim, parameters."""
        return {
            "spec": self.spec,
            "identity": self.identity,
            "class": type(self).__name__,
            "embedding_dim": self.embedding_dim,
            "parameters": self.parameters,
        }


class WindowedTeacher(Teacher):
    """A model of float32 audio ``[batch, samples]`` (or ``[samples]``) run whole or over fixed windows.

    A dynamic length is called on whole clips. A fixed length N is run over the consecutive
    N-sample windows of each clip (the tail shorter than N is dropped; a clip shorter than N is
    zero-padded) and the window outputs averaged. Subclasses set ``window_samples``,
    ``_rank`` (1 or 2), ``_batched`` and implement :meth:`_invoke`.
    """

    window_samples = None
    _rank = 2
    _batched = True

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``[n, samples]`` (``n == 1`` unless batched) -> the chosen output."""
        raise NotImplementedError

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``[n, samples]`` -> ``[n, D]``, one invoke per row unless the batch is dynamic."""
        if self._batched:
            return clip_vectors(self._invoke(batch))
        rows = [clip_vectors(self._invoke(row[np.newaxis]))[0] for row in batch]
        return np.stack(rows)

    def window_embeddings(self, audio) -> np.ndarray:
        """Per-window vectors of a fixed-length model.

        Args:
            audio: float32 ``[batch, samples]`` at 16 kHz, in [-1, 1].

        Returns:
            float32 ``[batch, windows, D]``, windows of ``window_samples`` with no overlap.
        """
        if self.window_samples is None:
            raise ParameterError(f"Teacher {self.spec!r} has a dynamic input length and no windows.")
        audio = self._pad(validate_audio(audio, allow_1d=True))
        windows = audio.shape[1] // self.window_samples
        framed = audio[:, : windows * self.window_samples].reshape(-1, self.window_samples)
        return self._run(framed).reshape(audio.shape[0], windows, -1)

    def _embed(self, audio):
        if self.window_samples is None:
            return self._run(audio)
        return self.window_embeddings(audio).mean(axis=1)
