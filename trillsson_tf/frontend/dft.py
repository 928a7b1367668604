"""The Wav2Small frontend: its numbers, its fixed DFT and mel weights, and a numpy twin.

Wav2Small computes its own spectrogram with layers a microcontroller runs: a DFT written as a
strided convolution with fixed Hann-windowed cosine/sine kernels (pre-emphasis folded in), a
magnitude (alpha max plus beta min), a fixed mel projection and dB (``log``, or the int8
piecewise-linear ``pwl``: :func:`pwl_coefficients`). The numbers live once, in
:class:`DFTFrontendConfig`; :func:`dft_kernels` and :func:`dft_mel_matrix` are shared by the Keras
layers (:mod:`trillsson_tf.models.wav2small`) and the numpy twin :func:`features`. Each choice and
its reason: docs/DESIGN.md, "Frontend". Imports numpy only.
"""

import dataclasses

import numpy as np

from trillsson_tf.frontend import FrontendConfig, mel_matrix
from trillsson_tf.frontend.numpy_ops import mirror_pad

__all__ = [
    "COMPRESSIONS",
    "DFTFrontendConfig",
    "DEFAULT_DFT_FRONTEND",
    "MAGNITUDE_ALPHA",
    "MAGNITUDE_BETA",
    "dft_kernels",
    "dft_mel_matrix",
    "pwl_coefficients",
    "normalize_clips",
    "features",
]

COMPRESSIONS = ("log", "pwl")
"""``log``: ``20 log10(max(x, floor))``; ``pwl``: its piecewise-linear copy in int8-friendly ops."""

MAGNITUDE_ALPHA = 0.96043387
MAGNITUDE_BETA = 0.39782473
"""The "alpha max plus beta min" constants with the smallest largest error (3.96%)."""


@dataclasses.dataclass(frozen=True)
class DFTFrontendConfig:
    """The numbers of the Wav2Small frontend.

    Attributes:
        sample_rate_hz: Sample rate of the input audio, in Hz.
        window_samples: DFT length and convolution kernel size, in samples (Hann, periodic).
        hop_samples: Convolution stride, in samples.
        num_mel_bins: Mel bands.
        lower_edge_hz: Lower edge of the first mel band, in Hz.
        upper_edge_hz: Upper edge of the last mel band, in Hz.
        pre_emphasis: Coefficient ``a`` of ``x[n] - a x[n-1]``, folded into the kernels (0: none).
        dft_clip: The real and imaginary DFT outputs are clipped to ``[-dft_clip, dft_clip]``.
        floor: Mel magnitudes are clipped below at this value before the dB conversion.
        pwl_octaves: Octaves above ``floor`` that the piecewise-linear log follows (one
            segment per octave; above that it saturates).
        min_samples: Clips shorter than this are mirror-padded to it (1 s at 16 kHz).
        normalization_epsilon: Added to the clip variance before the square root.
    """

    sample_rate_hz: int = 16000
    window_samples: int = 64
    hop_samples: int = 32
    num_mel_bins: int = 20
    lower_edge_hz: float = 125.0
    upper_edge_hz: float = 7500.0
    pre_emphasis: float = 0.97
    dft_clip: float = 16.0
    floor: float = 2.0**-4
    pwl_octaves: int = 14
    min_samples: int = 16000
    normalization_epsilon: float = 1e-8

    @property
    def num_dft_bins(self) -> int:
        """Non-negative DFT bins, ``window_samples // 2 + 1``."""
        return self.window_samples // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """DFT frames of a clip of ``num_samples`` samples, after padding to ``min_samples``."""
        padded = max(int(num_samples), self.min_samples)
        return 1 + (padded - self.window_samples) // self.hop_samples

    def to_dict(self) -> dict:
        """The config as a JSON-friendly dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DFTFrontendConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        return cls(**values)


DEFAULT_DFT_FRONTEND = DFTFrontendConfig()


def dft_kernels(config: DFTFrontendConfig = DEFAULT_DFT_FRONTEND):
    """The real and imaginary DFT kernels, Hann window and pre-emphasis folded in.

    Returns:
        ``(real, imag)``, float32 arrays ``[window_samples, num_dft_bins]``: frame ``t`` of
        the audio times ``real`` is the real part of its (pre-emphasised, windowed) DFT.
    """
    n = np.arange(config.window_samples)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / config.window_samples)  # periodic Hann
    phase = 2.0 * np.pi * np.outer(n, np.arange(config.num_dft_bins)) / config.window_samples
    kernels = []
    for basis in (np.cos(phase), -np.sin(phase)):
        taps = window[:, np.newaxis] * basis
        # sum_m h[m] (x[m] - a x[m-1]) = sum_m (h[m] - a h[m+1]) x[m], since h[0] = 0.
        folded = taps.copy()
        folded[:-1] -= config.pre_emphasis * taps[1:]
        kernels.append(folded.astype(np.float32))
    return tuple(kernels)


def dft_mel_matrix(config: DFTFrontendConfig = DEFAULT_DFT_FRONTEND) -> np.ndarray:
    """The mel projection, float32 ``[num_dft_bins, num_mel_bins]`` (TensorFlow's HTK matrix)."""
    return mel_matrix(
        FrontendConfig(
            sample_rate_hz=config.sample_rate_hz,
            window_samples=config.window_samples,
            hop_samples=config.hop_samples,
            fft_size=config.window_samples,
            num_mel_bins=config.num_mel_bins,
            lower_edge_hz=config.lower_edge_hz,
            upper_edge_hz=config.upper_edge_hz,
        )
    )


def pwl_coefficients(config: DFTFrontendConfig = DEFAULT_DFT_FRONTEND):
    """The piecewise-linear ``20 log10`` used by ``compression='pwl'``.

    ``f(x) = offset + sum_j weights[j] * min(x, breakpoints[j])`` interpolates
    ``20 log10(max(x, floor))`` at ``breakpoints = floor * 2**j`` (``j = 0 .. pwl_octaves``),
    is flat below ``floor`` and above the last breakpoint, and is at most 0.52 dB off the log
    in between. Each ``min(x, b_j)`` is its own int8 tensor with its own scale, so the sum
    keeps the resolution of the input.

    Returns:
        ``(breakpoints, weights, offset)``: float64 ``[pwl_octaves + 1]`` twice and a float.
    """
    breakpoints = config.floor * 2.0 ** np.arange(config.pwl_octaves + 1)
    values = 20.0 * np.log10(breakpoints)
    slopes = np.diff(values) / np.diff(breakpoints)  # segment j covers [b_j, b_j+1]
    # f(x) = v_0 + sum_j slope_j * (min(x, b_j+1) - min(x, b_j)): each segment adds its rise
    # once x passes it; below b_0 every term is x - x = 0 and f is the floor value v_0.
    weights = np.zeros(len(breakpoints))
    weights[:-1] -= slopes
    weights[1:] += slopes
    return breakpoints, weights, float(values[0])


def normalize_clips(audio: np.ndarray, config: DFTFrontendConfig = DEFAULT_DFT_FRONTEND) -> np.ndarray:
    """Mirror-pad to ``min_samples`` and normalise each clip to zero mean, unit variance.

    Args:
        audio: float array ``[batch, samples]`` at 16 kHz.
        config: Frontend numbers.

    Returns:
        float32 ``[batch, max(samples, min_samples)]``; a silent clip stays all zeros.
    """
    audio = mirror_pad(np.asarray(audio, dtype=np.float64), config.min_samples)
    centred = audio - audio.mean(axis=1, keepdims=True)
    return (centred / np.sqrt(np.mean(centred**2, axis=1, keepdims=True) + config.normalization_epsilon)).astype(
        np.float32
    )


def features(
    normalized: np.ndarray, config: DFTFrontendConfig = DEFAULT_DFT_FRONTEND, *, compression: str = "log"
) -> np.ndarray:
    """The compressed mel spectrogram the Wav2Small convolutions see (numpy twin of the layers).

    Args:
        normalized: float ``[batch, samples]`` from :func:`normalize_clips`.
        config: Frontend numbers.
        compression: One of :data:`COMPRESSIONS`.

    Returns:
        float32 ``[batch, frames, num_mel_bins]`` in dB.
    """
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(normalized, np.float64), config.window_samples, axis=1)
    frames = frames[:, :: config.hop_samples]
    real, imag = (frames @ kernel.astype(np.float64) for kernel in dft_kernels(config))
    a, b = (np.minimum(np.abs(part), config.dft_clip) for part in (real, imag))
    magnitude = MAGNITUDE_ALPHA * np.maximum(a, b) + MAGNITUDE_BETA * np.minimum(a, b)
    mel = magnitude @ dft_mel_matrix(config).astype(np.float64)
    if compression == "log":
        return (20.0 * np.log10(np.maximum(mel, config.floor))).astype(np.float32)
    breakpoints, weights, offset = pwl_coefficients(config)
    return (offset + np.sum(weights * np.minimum(mel[..., np.newaxis], breakpoints), axis=-1)).astype(np.float32)
