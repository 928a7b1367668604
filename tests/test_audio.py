"""Audio checks, file reading and resampling."""

import os

import numpy as np
import pytest

from trillsson_tf.audio import SAMPLE_AUDIO_DIR, check_sample_rate, load_audio, resample, validate_audio
from trillsson_tf.errors import AudioTypeError, ParameterError


def test_valid_audio_passes_as_float32():
    audio = validate_audio(np.zeros((2, 100), np.float64))
    assert audio.dtype == np.float32 and audio.shape == (2, 100)
    assert validate_audio(np.zeros(50, np.float32), allow_1d=True).shape == (1, 50)


@pytest.mark.parametrize(
    "audio, error, match",
    [
        (np.zeros((1, 100), np.int16), TypeError, "int16.*32768"),
        (np.array([["a"]]), TypeError, "dtype"),
        (np.zeros((1, 100, 2), np.float32), ValueError, "mix down"),
        (np.zeros((16000, 2), np.float32), ValueError, r"\[samples, channels\]"),
        (np.zeros((1, 0), np.float32), ValueError, "empty"),
        (np.zeros(100, np.float32), ValueError, r"\[batch, samples\]"),
        (np.array([[0.0, np.nan, np.inf]], np.float32), ValueError, "2 NaN or Inf"),
    ],
)
def test_bad_audio_raises_clear_errors(audio, error, match):
    with pytest.raises(error, match=match):
        validate_audio(audio)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16k", None, True])
def test_sample_rate_must_be_positive_integer(rate):
    with pytest.raises(ParameterError, match="positive integer"):
        check_sample_rate(rate)


def test_wrong_sample_rate_names_both_rates():
    with pytest.raises(ParameterError, match="44100 Hz.*16000 Hz"):
        validate_audio(np.zeros((1, 100), np.float32), sample_rate_hz=44100)


def test_load_audio_resamples_fsdd_to_16k():
    path = os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "0_jackson_0.wav")
    import soundfile

    info = soundfile.info(path)
    audio = load_audio(path)
    assert info.samplerate == 8000
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 2 * info.frames) <= 2
    assert 0.01 < np.max(np.abs(audio)) <= 1.0


def test_resample_keeps_a_tone():
    tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
    resampled = resample(tone, 44100, 16000)
    assert resampled.shape == (16000,)
    assert np.argmax(np.abs(np.fft.rfft(resampled))) == 440
    assert resample(np.stack([tone, tone]), 44100, 16000).shape == (2, 16000)


def test_non_audio_and_missing_files_are_named(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(ParameterError, match="notes.wav"):
        load_audio(text)
    with pytest.raises(ParameterError, match="missing.flac"):
        load_audio(tmp_path / "missing.flac")
    with pytest.raises(AudioTypeError):
        validate_audio(np.zeros((1, 10), np.uint8))
