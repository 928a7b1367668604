"""The TRILLsson frontend as TensorFlow ops, for Keras models and TFLite conversion.

Every op here converts to TFLite builtins (GATHER, RFFT2D, COMPLEX_ABS, FULLY_CONNECTED, LOG,
RESHAPE, ...) when computed in float32, and shapes may be dynamic in the sample axis. Keras models
compute in float64 (``compute_dtype``; the numpy twin agrees to 1e-6), converters build the float32
variant (TFLite has no float64 FFT), and ``float16_safe`` applies the window as two parts so that a
float16 conversion keeps it exact. Measurements behind both: docs/DESIGN.md, "Frontend".
"""

import numpy as np

from trillsson_tf._keras import tf
from trillsson_tf.frontend import DEFAULT_FRONTEND, FrontendConfig, hann_window, mel_matrix

__all__ = ["COMPUTE_DTYPES", "mirror_pad", "log_mel", "log_mel_patches"]


def mirror_pad(audio, min_samples: int):
    """Pad clips shorter than ``min_samples`` by repeated mirroring (``x, reversed(x), x, ...``).

    ``tf.pad(mode='SYMMETRIC')`` cannot pad past the clip's own length, so the padded signal
    is gathered with indices that fold back every ``2 * samples``; a clip already long
    enough gathers itself.

    Args:
        audio: float32 tensor ``[batch, samples]``, at least one sample per clip.
        min_samples: Length to pad to, in samples.

    Returns:
        float32 tensor ``[batch, max(samples, min_samples)]``.
    """
    num_samples = tf.shape(audio)[1]
    position = tf.math.floormod(tf.range(tf.maximum(num_samples, min_samples)), 2 * num_samples)
    index = tf.where(position < num_samples, position, 2 * num_samples - 1 - position)
    return tf.gather(audio, index, axis=1)


COMPUTE_DTYPES = ("float64", "float32")


def _apply_window(frames, config: FrontendConfig, dtype: str, float16_safe: bool):
    """``frames * window``; with ``float16_safe``, ``frames * high + frames * (window - high)``, ``high`` exact in float16."""
    window = hann_window(config)
    if not float16_safe:
        return frames * tf.constant(window, dtype=dtype)
    high = window.astype(np.float16).astype(np.float64)
    return frames * tf.constant(high, dtype=dtype) + frames * tf.constant(window - high, dtype=dtype)


def log_mel(
    audio, config: FrontendConfig = DEFAULT_FRONTEND, *, compute_dtype: str = "float64", float16_safe: bool = False
):
    """Log-mel spectrogram without padding: ``log(max(mel, floor) + offset)``.

    Args:
        audio: float32 tensor ``[batch, samples]`` at ``config.sample_rate_hz``, values in
            [-1, 1], at least ``config.window_samples`` samples.
        config: Frontend numbers.
        compute_dtype: ``'float64'`` (reference precision) or ``'float32'`` (TFLite).
        float16_safe: Apply the window so that a float16 conversion keeps it to float32
            precision (see the module docstring).

    Returns:
        float32 tensor ``[batch, frames, num_mel_bins]``.
    """
    frames = tf.signal.frame(tf.cast(audio, compute_dtype), config.window_samples, config.hop_samples)
    windowed = _apply_window(frames, config, compute_dtype, float16_safe)
    spectrum = tf.abs(tf.signal.rfft(windowed, fft_length=[config.fft_size]))
    mel = tf.tensordot(spectrum, tf.constant(mel_matrix(config), dtype=compute_dtype), axes=1)
    return tf.cast(tf.math.log(tf.maximum(mel, config.log_floor) + config.log_offset), tf.float32)


def log_mel_patches(
    audio,
    config: FrontendConfig = DEFAULT_FRONTEND,
    *,
    compute_dtype: str = "float64",
    float16_safe: bool = False,
    hop_frames=None,
):
    """Pad, log-mel and cut into the 195-frame patches the network sees.

    Args:
        audio: float32 tensor ``[batch, samples]`` at ``config.sample_rate_hz``.
        config: Frontend numbers.
        compute_dtype: ``'float64'`` (reference precision) or ``'float32'`` (TFLite).
        float16_safe: See :func:`log_mel`.
        hop_frames: Frames between patch starts (chunks every chunk hop, see
            :meth:`trillsson_tf.frontend.FrontendConfig.chunks`); ``None``: the non-overlapping
            patches of the clip call.

    Returns:
        float32 tensor ``[batch * patches, chunk_frames, num_mel_bins, 1]``, clip-major (the
        patches of clip 0 first); the frames after the last whole patch are dropped.
    """
    features = log_mel(
        mirror_pad(audio, config.min_samples), config, compute_dtype=compute_dtype, float16_safe=float16_safe
    )
    if hop_frames is None or hop_frames == config.chunk_frames:
        chunks = tf.shape(features)[1] // config.chunk_frames
        features = features[:, : chunks * config.chunk_frames]
    else:  # overlapping patches: each frame computed once above, gathered into every patch it is in
        features = tf.signal.frame(features, config.chunk_frames, int(hop_frames), axis=1)
    return tf.reshape(features, [-1, config.chunk_frames, config.num_mel_bins, 1])
