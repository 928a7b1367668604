"""The prosody teacher: interpretable scores on signals with known answers, gain invariance, teacher contract."""

import numpy as np
import pytest

from trillsson_tf.errors import ParameterError
from trillsson_tf.teachers.prosody import PROSODY_SCORES, STANDARDISATION, prosody_scores, raw_prosody
from trillsson_tf.teachers import ProsodyTeacher, load_teacher

RATE = 16000


def _harmonic_tone(f0_hz, seconds=1.0, rolloff_db_per_octave=-12.0):
    """A buzz with harmonics whose level falls by ``rolloff_db_per_octave``, with a 50% loudness swing."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = sum(
        10 ** (rolloff_db_per_octave * np.log2(k) / 20) * np.sin(2 * np.pi * k * f0_hz * t)
        for k in range(1, 40)
        if k * f0_hz < RATE / 2
    )
    envelope = 1.0 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * tone / np.abs(tone).max() * envelope / 1.5).astype(np.float32)


def test_pitch_and_tilt_follow_the_signal():
    low, high = raw_prosody(_harmonic_tone(110.0)), raw_prosody(_harmonic_tone(220.0))
    assert low["pitch"] == pytest.approx(12 * np.log2(1.1), abs=0.3)  # 110 Hz = 1.65 semitones re 100 Hz
    assert high["pitch"] - low["pitch"] == pytest.approx(12.0, abs=0.3)  # one octave
    steep, flat = (
        raw_prosody(_harmonic_tone(150.0, rolloff_db_per_octave=-18.0)),
        raw_prosody(_harmonic_tone(150.0, rolloff_db_per_octave=-6.0)),
    )
    assert steep["tilt"] < flat["tilt"] - 6.0  # 12 dB/octave apart in the source
    assert 0 < low["loudness_range"] < 10


def test_scores_are_gain_invariant_standardised_and_defined_on_silence(librispeech_clips):
    clip = librispeech_clips[0]
    scores = prosody_scores(clip)
    assert scores.shape == (3,) and scores.dtype == np.float32 and np.all(np.abs(scores) < 5)
    np.testing.assert_allclose(prosody_scores(clip * 0.05), scores, atol=1e-3)
    raw = raw_prosody(clip)
    expected = [(raw[name] - STANDARDISATION[name][0]) / STANDARDISATION[name][1] for name in PROSODY_SCORES]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    np.testing.assert_array_equal(prosody_scores(np.zeros(RATE, np.float32)), np.zeros(3))
    with pytest.raises(ParameterError, match="16000 Hz"):
        raw_prosody(clip, sample_rate_hz=8000)
    with pytest.raises(ParameterError, match="one clip"):
        raw_prosody(np.zeros((2, 100)))


def test_prosody_is_a_teacher_like_any_other(librispeech_clips):
    teacher = load_teacher("prosody")
    assert isinstance(teacher, ProsodyTeacher) and teacher.embedding_dim == 3
    assert teacher.describe()["score_names"] == list(PROSODY_SCORES)
    batch = np.stack([clip[:32000] for clip in librispeech_clips[:2]])
    out = teacher(batch)["embedding"]
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[1], prosody_scores(batch[1]), atol=1e-6)
    with pytest.raises(ParameterError, match="one output"):
        load_teacher("prosody", output_key="pitch")
