"""The TRILLsson frontend in numpy, for the TensorFlow-free runtime.

A twin of :mod:`trillsson_tf.frontend.tf_ops`; ``tests/test_frontend.py`` checks that both
agree on real speech. Arithmetic runs in float64 (as the reference code does) and the
results are float32.
"""
import numpy as np

from trillsson_tf.frontend import DEFAULT_FRONTEND, FrontendConfig, mel_matrix

__all__ = ["mirror_pad", "log_mel", "log_mel_patches"]


def mirror_pad(audio: np.ndarray, min_samples: int) -> np.ndarray:
    """Pad clips shorter than ``min_samples`` by repeated mirroring (``x, reversed(x), x, ...``).

    Args:
        audio: float array ``[batch, samples]``, at least one sample per clip.
        min_samples: Length to pad to, in samples. Longer clips are returned unchanged.

    Returns:
        Array ``[batch, max(samples, min_samples)]`` of the input dtype.
    """
    num_samples = audio.shape[1]
    if num_samples >= min_samples:
        return audio
    position = np.arange(min_samples) % (2 * num_samples)
    index = np.where(position < num_samples, position, 2 * num_samples - 1 - position)
    return audio[:, index]


def _hann_window(length: int) -> np.ndarray:
    # Periodic Hann, as tf.signal.hann_window(periodic=True).
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def log_mel(audio: np.ndarray, config: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """Log-mel spectrogram without padding: ``log(max(mel, floor) + offset)``.

    Args:
        audio: float array ``[batch, samples]`` at ``config.sample_rate_hz``, values in
            [-1, 1], at least ``config.window_samples`` samples.
        config: Frontend numbers.

    Returns:
        float32 array ``[batch, frames, num_mel_bins]``, natural-log mel magnitudes.
    """
    audio = np.asarray(audio, dtype=np.float64)
    num_frames = 1 + (audio.shape[1] - config.window_samples) // config.hop_samples
    frames = np.lib.stride_tricks.sliding_window_view(audio, config.window_samples, axis=1)
    frames = frames[:, : num_frames * config.hop_samples : config.hop_samples]
    spectrum = np.abs(np.fft.rfft(frames * _hann_window(config.window_samples), n=config.fft_size))
    mel = spectrum @ mel_matrix(config).astype(np.float64)
    return np.log(np.maximum(mel, config.log_floor) + config.log_offset).astype(np.float32)


def log_mel_patches(audio: np.ndarray, config: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """Pad, log-mel and cut into the non-overlapping patches the network sees.

    Args:
        audio: float array ``[batch, samples]`` at ``config.sample_rate_hz``, values in [-1, 1].
        config: Frontend numbers.

    Returns:
        float32 array ``[batch, chunks, chunk_frames, num_mel_bins]``; the frames after the
        last whole chunk are dropped.
    """
    features = log_mel(mirror_pad(audio, config.min_samples), config)
    batch, frames, bins = features.shape
    chunks = frames // config.chunk_frames
    features = features[:, : chunks * config.chunk_frames]
    return features.reshape(batch, chunks, config.chunk_frames, bins)


def chunk_windows(audio: np.ndarray, config: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """The audio each patch of :func:`log_mel_patches` is computed from.

    Chunk ``k`` of a clip depends only on samples ``[k * chunk_step, k * chunk_step + chunk_span)``
    of the padded clip, so a model with the frontend inside gives the same chunk vector for that
    window alone: a runtime can call it at one constant input shape.

    Args:
        audio: float array ``[batch, samples]`` at ``config.sample_rate_hz``.
        config: Frontend numbers.

    Returns:
        float32 array ``[batch, chunks, chunk_span_samples]`` (a copy).
    """
    padded = mirror_pad(np.asarray(audio, dtype=np.float32), config.min_samples)
    chunks = config.num_chunks(padded.shape[1])
    windows = np.lib.stride_tricks.sliding_window_view(padded, config.chunk_span_samples, axis=1)
    return np.ascontiguousarray(windows[:, : chunks * config.chunk_step_samples : config.chunk_step_samples])
