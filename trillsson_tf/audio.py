"""Audio checks, reading and resampling shared by the models, the runtime and the CLI.

Imports numpy, soundfile and soxr only (no TensorFlow), so the runtime can use it.
"""

import os
import warnings

import numpy as np

from trillsson_tf.contract import SAMPLE_RATE_HZ
from trillsson_tf.errors import AudioTypeError, ParameterError

__all__ = [
    "AUDIO_EXTENSIONS",
    "MAX_SAMPLE_RATE_HZ",
    "check_sample_rate",
    "validate_audio",
    "resample",
    "load_audio",
    "SAMPLE_AUDIO_DIR",
]

SAMPLE_AUDIO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_audio")
"""Folder of the bundled real speech (FSDD and LibriSpeech samples; see its README)."""

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus", ".aiff", ".aif")
"""File endings taken as audio when a folder is searched (lower case; compared case-insensitively)."""

MAX_SAMPLE_RATE_HZ = 768_000
"""The highest sample rate taken (that of the fastest common audio interfaces and formats)."""


def check_sample_rate(sample_rate_hz) -> int:
    """Return ``sample_rate_hz`` as an int, or raise if it is not a positive integer.

    Args:
        sample_rate_hz: Sample rate in Hz.

    Raises:
        ParameterError: for zero, negative, fractional or non-numeric rates, and rates above
            :data:`MAX_SAMPLE_RATE_HZ` (a rate in the wrong unit, which would resample to nothing).
    """
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, (int, np.integer, float)):
        raise ParameterError(f"sample_rate must be a positive integer in Hz, got {sample_rate_hz!r}.")
    if sample_rate_hz <= 0 or not np.isfinite(sample_rate_hz) or int(sample_rate_hz) != sample_rate_hz:
        raise ParameterError(f"sample_rate must be a positive integer in Hz, got {sample_rate_hz!r}.")
    if sample_rate_hz > MAX_SAMPLE_RATE_HZ:
        raise ParameterError(
            f"sample_rate {sample_rate_hz!r} Hz is above {MAX_SAMPLE_RATE_HZ:,} Hz, the highest audio "
            "rate taken; give the rate in Hz (16 kHz audio: 16000)."
        )
    return int(sample_rate_hz)


def validate_audio(
    audio,
    *,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    expected_rate_hz: int = SAMPLE_RATE_HZ,
    allow_1d: bool = False,
) -> np.ndarray:
    """Check audio against the call contract and return it as float32 ``[batch, samples]``.

    The contract: float32 (float64 is accepted and cast), mono, ``expected_rate_hz``,
    values in [-1, 1], ``[batch, samples]`` with the same length for every clip.

    Args:
        audio: array-like ``[batch, samples]`` (or ``[samples]`` when ``allow_1d``).
        sample_rate_hz: The rate the caller says the audio has, in Hz.
        expected_rate_hz: The rate the model needs, in Hz.
        allow_1d: Accept a single clip ``[samples]`` and return it as ``[1, samples]``.

    Returns:
        float32 array ``[batch, samples]``.

    Raises:
        AudioTypeError: integer, boolean, complex or non-numeric samples.
        ParameterError: wrong rank (including stereo ``[batch, samples, channels]``), empty
            clips, NaN or Inf values, or a sample rate other than ``expected_rate_hz``.
    """
    rate = check_sample_rate(sample_rate_hz)
    if rate != expected_rate_hz:
        raise ParameterError(
            f"Audio at {rate} Hz given; the model expects {expected_rate_hz} Hz. "
            f"Resample first: trillsson_tf.audio.resample(audio, {rate}, {expected_rate_hz})."
        )
    array = np.asarray(audio)
    if array.dtype.kind in "iu":
        raise AudioTypeError(
            f"Audio has integer dtype {array.dtype}; expected float32 in [-1, 1]. "
            "For 16-bit PCM use audio.astype(np.float32) / 32768."
        )
    if array.dtype.kind != "f":
        raise AudioTypeError(f"Audio has dtype {array.dtype}; expected float32 in [-1, 1].")
    if array.ndim == 1 and allow_1d:
        array = array[np.newaxis]
    if array.ndim != 2:
        stereo_hint = (
            " For multi-channel audio [batch, samples, channels], mix down first: audio.mean(axis=-1)."
            if array.ndim == 3
            else ""
        )
        expected = "[batch, samples] or [samples]" if allow_1d else "[batch, samples]"
        raise ParameterError(f"Audio must have shape {expected}, got shape {array.shape}.{stereo_hint}")
    if array.shape[1] == 0 or array.shape[0] == 0:
        raise ParameterError(f"Audio is empty (shape {array.shape}); give at least one sample per clip.")
    if array.shape[1] <= 2 < array.shape[0]:
        raise ParameterError(
            f"Audio of shape {array.shape} looks like [samples, channels]; pass mono "
            "[batch, samples] audio (mix down with audio.mean(axis=1)[None])."
        )
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"Audio contains {int(np.size(array) - np.isfinite(array).sum())} NaN or Inf values.")
    return array


def resample(audio: np.ndarray, from_rate_hz: int, to_rate_hz: int = SAMPLE_RATE_HZ):
    """Resample along the last axis with soxr (high quality).

    Args:
        audio: float array ``[samples]`` or ``[batch, samples]``.
        from_rate_hz: Rate of ``audio``, in Hz.
        to_rate_hz: Target rate, in Hz.

    Returns:
        float32 array with the same leading shape, resampled.
    """
    import soxr

    from_rate_hz, to_rate_hz = check_sample_rate(from_rate_hz), check_sample_rate(to_rate_hz)
    audio = np.asarray(audio, dtype=np.float32)
    if from_rate_hz == to_rate_hz:
        return audio
    if audio.ndim == 1:
        resampled = soxr.resample(audio, from_rate_hz, to_rate_hz).astype(np.float32)
    else:  # soxr treats the second axis as channels: resample clips as channels, then transpose back
        resampled = soxr.resample(audio.T, from_rate_hz, to_rate_hz).T.astype(np.float32)
    if resampled.shape[-1] == 0 < audio.shape[-1]:
        raise ParameterError(
            f"{audio.shape[-1]} sample(s) at {from_rate_hz} Hz are shorter than one sample at {to_rate_hz} Hz."
        )
    return resampled


def load_audio(path, *, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Read an audio file as mono float32 at ``sample_rate_hz``.

    wav/flac/ogg (and everything libsndfile reads) go through soundfile; other formats
    through librosa when it is installed. Channels are averaged.

    Args:
        path: File path.
        sample_rate_hz: Output rate, in Hz.

    Returns:
        float32 array ``[samples]`` in [-1, 1].

    Raises:
        ParameterError: the file is missing, empty, not audio or holds NaN/Inf samples (the
            message names it and gives the reason).
    """
    import soundfile

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ParameterError(f"Audio file not found: {path!r}.")
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as sndfile_error:
        samples, rate = _load_with_librosa(path, sndfile_error)
    if samples.shape[0] == 0:
        raise ParameterError(f"Audio file {path!r} holds no samples.")
    bad = samples.size - int(np.isfinite(samples).sum())
    if bad:  # a float WAV may hold NaN/Inf: refused here, so every caller names (and may skip) the file
        raise ParameterError(f"Audio file {path!r} holds {bad} NaN or Inf sample(s).")
    return resample(samples.mean(axis=1), rate, sample_rate_hz)


def _load_with_librosa(path: str, sndfile_error: Exception):
    """``(samples [n, 1], rate)`` of a file libsndfile refused, through librosa when installed."""
    try:
        import librosa
    except ImportError:
        raise ParameterError(f"Cannot read {path!r} as audio: {_reason(sndfile_error)}") from None
    try:
        with warnings.catch_warnings():  # its "PySoundFile failed" notes: the error below says it all
            warnings.simplefilter("ignore")
            mono, rate = librosa.load(path, sr=None, mono=True)
    except Exception as error:  # librosa raises many kinds (audioread, ffmpeg); each means "not audio"
        raise ParameterError(f"Cannot read {path!r} as audio: {_reason(error, sndfile_error)}") from None
    return mono[:, np.newaxis], rate


def _reason(*errors) -> str:
    """The first non-empty error text (some decoders raise with none), else what failed."""
    for error in errors:
        text = str(error).strip()
        if text:
            return text
    return f"not a format soundfile (libsndfile) or librosa can decode ({type(errors[0]).__name__})"
