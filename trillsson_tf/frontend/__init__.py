"""The TRILLsson log-mel frontend: its numbers, its mel matrix, and two implementations.

The numbers live once, in :class:`FrontendConfig`. The mel matrix is built once, in numpy, by
:func:`mel_matrix`, and shared by the TensorFlow ops (:mod:`trillsson_tf.frontend.tf_ops`, inside
the Keras models and their TFLite conversions) and the numpy twin
(:mod:`trillsson_tf.frontend.numpy_ops`, the TensorFlow-free runtime). :class:`ChunkGrid` places
the chunks of chunk-level outputs. Wav2Small's frontend is :mod:`trillsson_tf.frontend.dft`.
This package imports numpy only (and the contract's sample rate).
"""

import dataclasses
import functools

import numpy as np

from trillsson_tf.contract import SAMPLE_RATE_HZ
from trillsson_tf.errors import ParameterError, deprecated, renamed_attribute

__all__ = [
    "DEFAULT_HOP_S",
    "ChunkGrid",
    "FrontendConfig",
    "DEFAULT_FRONTEND",
    "hann_window",
    "mel_matrix",
    "hertz_to_mel",
]

DEFAULT_HOP_S = 0.5
"""Default chunk hop: seconds between the starts of two chunks of chunk-level outputs."""


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """The numbers of the TRILLsson log-mel frontend (docs/DESIGN.md, "Frontend").

    Attributes:
        sample_rate_hz: Sample rate of the input audio, in Hz.
        window_samples: STFT window length (Hann, periodic), in samples (25 ms).
        hop_samples: STFT hop, in samples (10 ms).
        fft_size: FFT length, in samples; frames are zero-padded from ``window_samples``.
        num_mel_bins: Number of mel bands.
        lower_edge_hz: Lower edge of the first mel band, in Hz.
        upper_edge_hz: Upper edge of the last mel band, in Hz.
        log_floor: Mel energies are clipped below at this value before the log.
        log_offset: Added after the floor: ``log(max(mel, log_floor) + log_offset)``.
        min_samples: Clips shorter than this are mirror-padded to it (2 s at 16 kHz).
        chunk_frames: Frames per non-overlapping log-mel patch fed to the network.
    """

    sample_rate_hz: int = SAMPLE_RATE_HZ
    window_samples: int = 400
    hop_samples: int = 160
    fft_size: int = 512
    num_mel_bins: int = 80
    lower_edge_hz: float = 125.0
    upper_edge_hz: float = 7500.0
    log_floor: float = 1e-12
    log_offset: float = 0.001
    min_samples: int = 32000
    chunk_frames: int = 195

    @property
    def num_spectrogram_bins(self) -> int:
        """Number of rFFT bins, ``fft_size // 2 + 1``."""
        return self.fft_size // 2 + 1

    @property
    def patch_shape(self) -> tuple:
        """Shape of one log-mel patch, ``(chunk_frames, num_mel_bins)``."""
        return (self.chunk_frames, self.num_mel_bins)

    def num_frames(self, num_samples: int) -> int:
        """STFT frames for a clip of ``num_samples`` samples, after padding (no centring)."""
        padded = max(int(num_samples), self.min_samples)
        return 1 + (padded - self.window_samples) // self.hop_samples

    def num_chunks(self, num_samples: int) -> int:
        """Non-overlapping patches for a clip of ``num_samples`` samples (tail dropped)."""
        return self.chunks().count(num_samples)

    def chunks(self, hop_s=None) -> "ChunkGrid":
        """The chunks of this frontend: one 195-frame patch every ``hop_s`` seconds.

        Args:
            hop_s: Seconds between chunk starts, a multiple of the frame hop (0.01 s) in
                ``(0, chunk step]`` (chunk step = 195 frames = 1.95 s); ``None``: the
                non-overlapping chunks of the clip call (hop = chunk step).

        Raises:
            ParameterError: a hop that is not a number, zero, negative, larger than the chunk step
                or not a whole number of frames.
        """
        if hop_s is None:
            return ChunkGrid(self, self.chunk_frames)
        step_s = self.chunk_step_samples / self.sample_rate_hz
        frame_s = self.hop_samples / self.sample_rate_hz
        if (
            isinstance(hop_s, bool)
            or not isinstance(hop_s, (int, float, np.integer, np.floating))
            or not np.isfinite(hop_s)
        ):
            raise ParameterError(f"hop_s must be a number of seconds, got {hop_s!r}.")
        if not 0 < hop_s <= step_s + 1e-9:
            raise ParameterError(
                f"hop_s must be in (0, {step_s:g}] seconds (the chunk step of {self.chunk_frames} frames), got {hop_s!r}."
            )
        frames = int(round(hop_s / frame_s))
        if frames < 1 or abs(frames * frame_s - hop_s) > 1e-6:
            raise ParameterError(f"hop_s must be a whole number of {frame_s:g} s frames, got {hop_s!r}.")
        return ChunkGrid(self, frames)

    def windows(self, hop_s=None) -> "ChunkGrid":
        """Deprecated name of :meth:`chunks` (for one release)."""
        deprecated("trillsson_tf.frontend.FrontendConfig.windows", "trillsson_tf.frontend.FrontendConfig.chunks")
        return self.chunks(hop_s)

    @property
    def chunk_span_samples(self) -> int:
        """Samples one chunk's frames cover: ``(chunk_frames - 1) * hop + window`` (31,440 at 16 kHz)."""
        return (self.chunk_frames - 1) * self.hop_samples + self.window_samples

    @property
    def chunk_step_samples(self) -> int:
        """Samples between the starts of two chunks: ``chunk_frames * hop`` (31,200 at 16 kHz)."""
        return self.chunk_frames * self.hop_samples

    def to_dict(self) -> dict:
        """The config as a JSON-friendly dict (model cards, SavedModel metadata)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "FrontendConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class ChunkGrid:
    """Where the chunks of a clip lie: one 195-frame patch every ``hop_frames`` frames.

    Chunk ``k`` reads samples ``[k * hop_samples, k * hop_samples + span_samples)`` of the clip
    mirror-padded to ``min_samples`` (2 s), the same samples its patch's frames come from; with
    ``hop_frames == chunk_frames`` they are the non-overlapping chunks the clip vector averages.
    Made by :meth:`FrontendConfig.chunks`.

    Attributes:
        frontend: The :class:`FrontendConfig` whose frames the chunks are cut from.
        hop_frames: Frames between chunk starts (195: non-overlapping).
    """

    frontend: FrontendConfig
    hop_frames: int

    @property
    def hop_samples(self) -> int:
        """Samples between chunk starts (8,000 for 0.5 s at 16 kHz)."""
        return self.hop_frames * self.frontend.hop_samples

    @property
    def hop_s(self) -> float:
        """Seconds between chunk starts."""
        return self.hop_samples / self.frontend.sample_rate_hz

    @property
    def span_samples(self) -> int:
        """Samples one chunk reads: ``(chunk_frames - 1) * hop + window`` (31,440 at 16 kHz)."""
        return self.frontend.chunk_span_samples

    @property
    def chunk_s(self) -> float:
        """Seconds of audio one chunk reads (1.965 s at 16 kHz): ``end_s - start_s`` of each chunk."""
        return self.span_samples / self.frontend.sample_rate_hz

    @property
    def window_s(self) -> float:
        """Deprecated name of :attr:`chunk_s` (for one release)."""
        deprecated("trillsson_tf.frontend.ChunkGrid.window_s", "trillsson_tf.frontend.ChunkGrid.chunk_s")
        return self.chunk_s

    def count(self, num_samples: int) -> int:
        """Chunks of a clip of ``num_samples`` samples (at least one: short clips are mirror-padded)."""
        padded = max(int(num_samples), self.frontend.min_samples)
        return 1 + (padded - self.span_samples) // self.hop_samples

    def starts_s(self, count: int) -> np.ndarray:
        """float32 ``[count]`` chunk start times in seconds: ``k * hop_s``."""
        return (np.arange(int(count)) * self.hop_samples / self.frontend.sample_rate_hz).astype(np.float32)


DEFAULT_FRONTEND = FrontendConfig()

_RENAMED = {"FrameWindows": "ChunkGrid"}


def __getattr__(name):  # the old names of _RENAMED, deprecated for one release
    return renamed_attribute(__name__, globals(), _RENAMED, name)


def hertz_to_mel(frequencies_hz):
    """HTK mel scale as TensorFlow defines it: ``1127 * log(1 + f / 700)``.

    Args:
        frequencies_hz: float array of frequencies in Hz, any shape.

    Returns:
        float64 array of the same shape, in mels.
    """
    return 1127.0 * np.log1p(np.asarray(frequencies_hz, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=8)
def _mel_matrix_cached(config: FrontendConfig) -> np.ndarray:
    nyquist_hz = config.sample_rate_hz / 2.0
    # Like tf.signal.linear_to_mel_weight_matrix: the DC bin gets no weight.
    linear_hz = np.linspace(0.0, nyquist_hz, config.num_spectrogram_bins)[1:]
    bins_mel = hertz_to_mel(linear_hz)[:, np.newaxis]
    edges_mel = np.linspace(
        hertz_to_mel(config.lower_edge_hz),
        hertz_to_mel(config.upper_edge_hz),
        config.num_mel_bins + 2,
    )
    lower, center, upper = edges_mel[:-2], edges_mel[1:-1], edges_mel[2:]
    lower_slopes = (bins_mel - lower) / (center - lower)
    upper_slopes = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    weights = np.concatenate([np.zeros((1, config.num_mel_bins)), weights], axis=0)
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


def hann_window(config: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """The periodic Hann analysis window of ``tf.signal.hann_window(periodic=True)``.

    Args:
        config: Frontend numbers.

    Returns:
        float64 array ``[window_samples]``.
    """
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(config.window_samples) / config.window_samples)


def mel_matrix(config: FrontendConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """The HTK-style mel weight matrix of TensorFlow's ``linear_to_mel_weight_matrix``.

    Args:
        config: Frontend numbers.

    Returns:
        Read-only float32 array ``[fft_size // 2 + 1, num_mel_bins]`` mapping magnitude
        spectrum bins to mel bands.
    """
    return _mel_matrix_cached(config)
