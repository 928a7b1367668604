"""Teachers: every spec form on models the tests build, plus the real speech_embedding teacher."""

import importlib.util
import socket

import numpy as np
import pytest

from trillsson_tf._keras import tf
from trillsson_tf.errors import ParameterError, TrillssonError
from trillsson_tf.teachers import (
    KerasTeacher,
    SavedModelTeacher,
    SpeechEmbeddingTeacher,
    TFLiteTeacher,
    load_teacher,
)

WINDOW = 1600


def _features(audio):
    """Toy embedding of audio [batch, samples]: [mean, mean |x|, max] -> [batch, 3]."""
    return tf.stack([tf.reduce_mean(audio, 1), tf.reduce_mean(tf.abs(audio), 1), tf.reduce_max(audio, 1)], axis=1)


def _numpy_features(audio):
    return np.stack([audio.mean(1), np.abs(audio).mean(1), audio.max(1)], axis=1)


@pytest.fixture(scope="module")
def speech_embedding():
    return load_teacher("speech_embedding")


@pytest.fixture(scope="module")
def two_output_savedmodel(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("savedmodel"))
    module = tf.Module()
    module.scale = tf.Variable([[1.0, 2.0, 3.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="audio")])
    def serve(audio):
        vectors = _features(audio) * module.scale
        return {"clip_vector": vectors, "frames": tf.stack([vectors, 2 * vectors], axis=1)}

    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    return path


def _tflite(tmp_path, shape):
    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="audio")])
    def embed(audio):
        return {"embedding": _features(audio)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([embed.get_concrete_function()], embed)
    path = tmp_path / f"model_{'dynamic' if shape[1] is None else 'fixed'}.tflite"
    path.write_bytes(converter.convert())
    return str(path)


def test_speech_embedding_gives_96d_clip_and_window_vectors(speech_embedding, librispeech_clips):
    clip = librispeech_clips[0][:32000]
    assert speech_embedding.embedding_dim == 96
    assert 320_000 < speech_embedding.parameters < 340_000  # "328 K parameters"
    windows = speech_embedding.window_embeddings(clip[np.newaxis])
    # 197 mel frames in 2 s -> windows of 76 frames, step 8 -> 16 windows.
    assert windows.shape == (1, 16, 96)
    vector = speech_embedding(clip[np.newaxis])["embedding"]
    np.testing.assert_allclose(vector[0], windows[0].mean(0), rtol=1e-5)
    assert np.all(np.isfinite(vector)) and np.std(vector) > 0.1


def test_speech_embedding_differs_between_utterances(speech_embedding, librispeech_clips):
    speech = speech_embedding(librispeech_clips[0][np.newaxis])["embedding"][0]
    other = speech_embedding(librispeech_clips[1][np.newaxis])["embedding"][0]
    assert not np.allclose(speech, other)


def test_speech_embedding_rows_do_not_depend_on_the_batch(speech_embedding, librispeech_clips):
    # A loud and a quiet 2 s clip: batched, the mel model used to raise the quiet one's floor.
    batch = np.stack([librispeech_clips[0][:32000], 0.02 * librispeech_clips[1][:32000]]).astype(np.float32)
    batched = speech_embedding(batch)["embedding"]
    alone = np.concatenate([speech_embedding(row[np.newaxis])["embedding"] for row in batch])
    np.testing.assert_array_equal(batched, alone)


def test_short_clip_is_padded_and_counted(speech_embedding, fsdd_clips):
    short = fsdd_clips[0]
    assert len(short) < speech_embedding.min_samples
    before = speech_embedding.padded_clips
    vector = speech_embedding(short)["embedding"]
    assert vector.shape == (1, 96)
    assert speech_embedding.padded_clips == before + 1


def test_speech_embedding_located_with_importlib_and_missing_wheel_is_clear(monkeypatch):
    assert SpeechEmbeddingTeacher.models_dir().endswith("models")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TrillssonError, match="pip install"):
        load_teacher("speech_embedding")


def test_savedmodel_output_key_is_discovered_or_listed(two_output_savedmodel, speech_batch):
    with pytest.raises(ParameterError, match="clip_vector.*frames|frames.*clip_vector"):
        load_teacher(two_output_savedmodel)
    with pytest.raises(ParameterError, match="'nope' not found.*clip_vector"):
        load_teacher(two_output_savedmodel, output_key="nope")
    teacher = load_teacher(two_output_savedmodel, output_key="clip_vector")
    assert isinstance(teacher, SavedModelTeacher) and teacher.embedding_dim == 3 and teacher.parameters == 3
    expected = _numpy_features(speech_batch) * [1.0, 2.0, 3.0]
    np.testing.assert_allclose(teacher(speech_batch)["embedding"], expected, rtol=1e-5, atol=1e-6)
    # An output with a time axis is averaged over it: mean of (v, 2v) = 1.5 v.
    frames = load_teacher(two_output_savedmodel, output_key="frames")
    np.testing.assert_allclose(frames(speech_batch)["embedding"], 1.5 * expected, rtol=1e-5, atol=1e-6)


def test_our_export_is_a_teacher(tmp_path, speech_batch):
    from trillsson_tf import models
    from trillsson_tf.models.export import export_savedmodel

    model = models.build("tiny_cnn", filters=(8,), strides=(2,), stem_filters=4, embedding_dim=8)
    export_dir = export_savedmodel(model, tmp_path / "export")
    teacher = load_teacher(export_dir)
    assert teacher.embedding_dim == 8 and teacher.parameters == model.count_params()
    np.testing.assert_allclose(teacher(speech_batch)["embedding"], model(speech_batch)["embedding"].numpy(), atol=1e-4)


def test_keras_file_teacher(tmp_path, speech_batch):
    from trillsson_tf import models

    model = models.build("tiny_cnn", filters=(8,), strides=(2,), stem_filters=4, embedding_dim=8)
    path = str(tmp_path / "student.keras")
    model.save(path)
    teacher = load_teacher(path)
    assert isinstance(teacher, KerasTeacher) and teacher.embedding_dim == 8
    assert teacher.describe()["class"] == "KerasTeacher" and "kind" not in teacher.describe()  # kind: glossary
    np.testing.assert_allclose(teacher(speech_batch)["embedding"], model(speech_batch)["embedding"].numpy(), atol=1e-5)
    with pytest.raises(ParameterError, match="'other' not found.*embedding"):
        load_teacher(path, output_key="other")
    with pytest.raises(ParameterError, match="not found"):
        load_teacher(str(tmp_path / "missing.keras"))


def test_dynamic_tflite_is_called_on_the_whole_clip(tmp_path, speech_batch):
    teacher = load_teacher(_tflite(tmp_path, [None, None]))
    assert isinstance(teacher, TFLiteTeacher) and teacher.window_samples is None
    np.testing.assert_allclose(teacher(speech_batch)["embedding"], _numpy_features(speech_batch), rtol=1e-5, atol=1e-6)


def test_fixed_tflite_averages_consecutive_windows(tmp_path, speech_batch):
    teacher = load_teacher(_tflite(tmp_path, [1, WINDOW]))
    assert teacher.window_samples == WINDOW
    audio = speech_batch[:, : 3 * WINDOW + 100]  # the 100-sample tail is dropped
    windows = audio[:, : 3 * WINDOW].reshape(2, 3, WINDOW)
    expected = np.stack([_numpy_features(clip_windows).mean(0) for clip_windows in windows])
    assert teacher.window_embeddings(audio).shape == (2, 3, 3)
    np.testing.assert_allclose(teacher(audio)["embedding"], expected, rtol=1e-5, atol=1e-6)
    short = teacher(speech_batch[:1, :1000])["embedding"]  # shorter than a window: zero-padded
    assert short.shape == (1, 3) and teacher.padded_clips == 1


def test_unknown_spec_lists_the_accepted_forms():
    with pytest.raises(ParameterError, match="Unknown teacher 'wav2vec'.*speech_embedding.*trillsson1.*tflite"):
        load_teacher("wav2vec")
    with pytest.raises(ParameterError, match="not found"):
        load_teacher("missing.tflite")
    with pytest.raises(ParameterError, match="Unknown teacher 'model.pt'"):
        load_teacher("model.pt")


def test_handle_without_network_fails_fast_and_clearly(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(TrillssonError, match="needs the network"):
        load_teacher("trillsson5")


def test_bad_audio_is_refused(speech_embedding):
    with pytest.raises(ParameterError, match="Hz"):
        speech_embedding(np.zeros((1, 16000), np.float32), sample_rate=8000)
    with pytest.raises(TrillssonError, match="integer"):
        speech_embedding(np.zeros((1, 16000), np.int16))
