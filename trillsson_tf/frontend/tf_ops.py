"""The TRILLsson frontend as TensorFlow ops, for Keras models and TFLite conversion.

Every op here converts to TFLite builtins (GATHER, RFFT2D, COMPLEX_ABS, FULLY_CONNECTED,
LOG, RESHAPE, ...) when computed in float32, and shapes may be dynamic in the sample axis.

Why a ``compute_dtype``: the reference code computes the frontend in float64. In float32 the
STFT's rounding error (about 1e-7 of a frame's loudest bin) lands in quiet mel bands next to
loud ones, and the log magnifies it: up to 5e-4 off the float64 result on real speech, with
a mean of 4e-6. Keras models therefore compute in float64 (matching the numpy twin to 1e-6);
TFLite has no float64 FFT, so converters build the float32 variant.
"""
from trillsson_tf._keras import tf
from trillsson_tf.frontend import DEFAULT_FRONTEND, FrontendConfig, mel_matrix

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


def log_mel(audio, config: FrontendConfig = DEFAULT_FRONTEND, *, compute_dtype: str = "float64"):
    """Log-mel spectrogram without padding: ``log(max(mel, floor) + offset)``.

    Args:
        audio: float32 tensor ``[batch, samples]`` at ``config.sample_rate_hz``, values in
            [-1, 1], at least ``config.window_samples`` samples.
        config: Frontend numbers.
        compute_dtype: ``'float64'`` (reference precision) or ``'float32'`` (TFLite).

    Returns:
        float32 tensor ``[batch, frames, num_mel_bins]``.
    """
    stft = tf.signal.stft(
        tf.cast(audio, compute_dtype),
        frame_length=config.window_samples,
        frame_step=config.hop_samples,
        fft_length=config.fft_size,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )
    mel = tf.tensordot(tf.abs(stft), tf.constant(mel_matrix(config), dtype=compute_dtype), axes=1)
    return tf.cast(tf.math.log(tf.maximum(mel, config.log_floor) + config.log_offset), tf.float32)


def log_mel_patches(
    audio, config: FrontendConfig = DEFAULT_FRONTEND, *, compute_dtype: str = "float64"
):
    """Pad, log-mel and cut into the non-overlapping patches the network sees.

    Args:
        audio: float32 tensor ``[batch, samples]`` at ``config.sample_rate_hz``.
        config: Frontend numbers.
        compute_dtype: ``'float64'`` (reference precision) or ``'float32'`` (TFLite).

    Returns:
        float32 tensor ``[batch * chunks, chunk_frames, num_mel_bins, 1]``, clip-major (the
        chunks of clip 0 first); the frames after the last whole chunk are dropped.
    """
    features = log_mel(mirror_pad(audio, config.min_samples), config, compute_dtype=compute_dtype)
    chunks = tf.shape(features)[1] // config.chunk_frames
    features = features[:, : chunks * config.chunk_frames]
    return tf.reshape(features, [-1, config.chunk_frames, config.num_mel_bins, 1])
