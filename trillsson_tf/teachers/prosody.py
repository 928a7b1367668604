"""Three interpretable per-clip prosody scores, computed with librosa: the offline A/D/V stand-in.

No arousal/dominance/valence teacher can be downloaded here, so :func:`prosody_scores` gives three
scores a speech model can learn from audio alone, in the A/D/V slots' order (:data:`PROSODY_SCORES`:
``loudness_range``, ``pitch``, ``tilt``; a stand-in, not a claim that they measure emotion), gain
invariant and standardised with :data:`STANDARDISATION`; :func:`raw_prosody` gives the raw values.
Definitions, frames and constants: docs/DESIGN.md, "Teacher". Imports numpy and librosa only.
"""

import numpy as np

from trillsson_tf.errors import ParameterError

__all__ = ["PROSODY_SCORES", "STANDARDISATION", "PROSODY_VERSION", "raw_prosody", "prosody_scores"]

PROSODY_SCORES = ("loudness_range", "pitch", "tilt")
"""Names of the three scores, in output order (the A, D and V slots)."""

STANDARDISATION = {
    "loudness_range": (7.99, 1.63),
    "pitch": (4.33, 3.98),
    "tilt": (-7.72, 2.62),
}
"""score -> (mean, std) of its raw value over ``../shared/data`` (3,100 files), for standardising."""

PROSODY_VERSION = "prosody/1"
"""Changes whenever a definition or a constant above changes (teacher identity, target cache)."""

_SAMPLE_RATE_HZ = 16000
_FRAME_SAMPLES = 400
_HOP_SAMPLES = 160
_FFT_SIZE = 512
_ACTIVE_RANGE_DB = 30.0
_PITCH_FRAME_SAMPLES = 1024  # YIN needs two periods of the lowest F0 (60 Hz: 533 samples)
_FMIN_HZ, _FMAX_HZ = 60.0, 400.0
_VOICED_CORRELATION = 0.5
_TILT_BAND_HZ = (100.0, 4000.0)
_POWER_FLOOR = 1e-12


def _frame_levels_db(clip: np.ndarray) -> np.ndarray:
    import librosa

    rms = librosa.feature.rms(y=clip, frame_length=_FRAME_SAMPLES, hop_length=_HOP_SAMPLES, center=True)[0]
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def _pitch_semitones(clip: np.ndarray, active: np.ndarray) -> float:
    """Median F0 of the voiced active frames in semitones re 100 Hz, NaN when none is voiced."""
    import librosa

    padded = np.pad(clip, _PITCH_FRAME_SAMPLES // 2)
    f0 = librosa.yin(
        padded,
        fmin=_FMIN_HZ,
        fmax=_FMAX_HZ,
        sr=_SAMPLE_RATE_HZ,
        frame_length=_PITCH_FRAME_SAMPLES,
        hop_length=_HOP_SAMPLES,
        center=False,
    )
    frames = librosa.util.frame(padded, frame_length=_PITCH_FRAME_SAMPLES, hop_length=_HOP_SAMPLES, axis=0)
    count = min(len(f0), len(frames), len(active))
    f0, frames = f0[:count], frames[:count]
    # Voicing: the normalised correlation of the frame with itself one YIN period later.
    lag = np.clip(np.round(_SAMPLE_RATE_HZ / f0).astype(int), 1, _PITCH_FRAME_SAMPLES // 2)
    half = _PITCH_FRAME_SAMPLES // 2
    rows = np.arange(count)[:, np.newaxis]
    head = frames[:, :half]
    tail = frames[rows, np.arange(half)[np.newaxis] + lag[:, np.newaxis]]
    energy = np.sqrt(np.sum(head**2, axis=1) * np.sum(tail**2, axis=1))
    correlation = np.sum(head * tail, axis=1) / np.maximum(energy, 1e-12)
    voiced = (correlation >= _VOICED_CORRELATION) & active[:count]
    if not voiced.any():
        return float("nan")
    return float(12.0 * np.log2(np.median(f0[voiced]) / 100.0))


def _tilt_db_per_octave(clip: np.ndarray, active: np.ndarray) -> float:
    import librosa

    power = (
        np.abs(librosa.stft(clip, n_fft=_FFT_SIZE, hop_length=_HOP_SAMPLES, win_length=_FRAME_SAMPLES, center=True))
        ** 2
    )
    count = min(power.shape[1], len(active))
    spectrum = power[:, :count][:, active[:count]].mean(axis=1)
    frequencies = librosa.fft_frequencies(sr=_SAMPLE_RATE_HZ, n_fft=_FFT_SIZE)
    band = (frequencies >= _TILT_BAND_HZ[0]) & (frequencies <= _TILT_BAND_HZ[1])
    slope, _ = np.polyfit(np.log2(frequencies[band]), 10.0 * np.log10(spectrum[band] + _POWER_FLOOR), 1)
    return float(slope)


def raw_prosody(clip, *, sample_rate_hz: int = _SAMPLE_RATE_HZ) -> dict:
    """The three prosody measures of one clip, in their own units (see the module table).

    Args:
        clip: float ``[samples]`` mono audio in [-1, 1].
        sample_rate_hz: Must be 16000.

    Returns:
        ``{'loudness_range': dB, 'pitch': semitones re 100 Hz, 'tilt': dB/octave}``; a value
        is NaN when the clip has no active (or, for pitch, no voiced) frame.

    Raises:
        ParameterError: another sample rate, or not a 1-D array.
    """
    if sample_rate_hz != _SAMPLE_RATE_HZ:
        raise ParameterError(
            f"Prosody scores are defined at {_SAMPLE_RATE_HZ} Hz; got sample_rate_hz={sample_rate_hz}."
        )
    clip = np.asarray(clip, dtype=np.float32)
    if clip.ndim != 1:
        raise ParameterError(f"raw_prosody takes one clip [samples], got shape {clip.shape}.")
    if not np.any(clip):
        return {name: float("nan") for name in PROSODY_SCORES}
    levels = _frame_levels_db(clip)
    active = levels >= levels.max() - _ACTIVE_RANGE_DB
    return {
        "loudness_range": float(np.std(levels[active])),
        "pitch": _pitch_semitones(clip, active),
        "tilt": _tilt_db_per_octave(clip, active),
    }


def prosody_scores(clip, *, sample_rate_hz: int = _SAMPLE_RATE_HZ) -> np.ndarray:
    """Standardised prosody scores of one clip.

    Args:
        clip: float ``[samples]`` mono audio at 16 kHz in [-1, 1].
        sample_rate_hz: Must be 16000.

    Returns:
        float32 ``[3]`` in :data:`PROSODY_SCORES` order, each ``(raw - mean) / std`` with
        :data:`STANDARDISATION`; a missing measure (silence, no voiced frame) is 0.
    """
    raw = raw_prosody(clip, sample_rate_hz=sample_rate_hz)
    values = [(raw[name] - STANDARDISATION[name][0]) / STANDARDISATION[name][1] for name in PROSODY_SCORES]
    return np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
