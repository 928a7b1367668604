"""Layered teachers: speech_embedding blocks, Hugging Face configs, Keras outputs, .tflite tensors."""

import numpy as np
import pytest

from trillsson_tf.errors import ParameterError
from trillsson_tf.teachers.layers import default_layers, load_layered_teacher, parse_layers
from trillsson_tf.teachers import load_teacher


def test_speech_embedding_layers_match_the_teacher(speech_batch):
    teacher = load_layered_teacher("speech_embedding", layers="7,14,20")
    outputs = teacher.layer_outputs(speech_batch)
    windows = (speech_batch.shape[1] - 12512) // 1280 + 1
    assert {name: value.shape for name, value in outputs.items()} == {
        "7": (2, windows, 48),
        "14": (2, windows, 96),
        "20": (2, windows, 96),
    }
    # Layer 20 is the embedding itself: its time-mean is the ordinary teacher's clip vector.
    reference = load_teacher("speech_embedding")(speech_batch)["embedding"]
    np.testing.assert_allclose(outputs["20"].mean(axis=1), reference, atol=1e-5)
    assert teacher.parameters == 328_224 and teacher.embedding_dim == 48 + 96 + 96
    spans = teacher.frame_spans(speech_batch.shape[1], windows)
    assert spans[1].tolist() == [1280, 1280 + 12512]
    assert teacher.layers == ("7", "14", "20") and "layers=7,14,20" in teacher.identity


def test_missing_layers_are_listed():
    with pytest.raises(ParameterError, match=r"has no layer\(s\) \['21'\]\. Its layers are: \['1', '2', .*'20'\]"):
        load_layered_teacher("speech_embedding", layers=[7, 21])
    with pytest.raises(ParameterError, match="Unknown layered teacher 'nope'"):
        load_layered_teacher("nope")
    assert parse_layers("4, 8,12") == ("4", "8", "12") and default_layers(12) == ("4", "8", "12")


def test_hugging_face_hubert_from_a_config(speech_batch):
    transformers = pytest.importorskip("transformers")
    config = transformers.HubertConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    teacher = load_layered_teacher("hf:tiny-hubert", model=transformers.TFHubertModel(config))
    assert teacher.layers == ("1", "2", "3") and teacher.available_layers == ("0", "1", "2", "3")
    assert (teacher.hop_samples, teacher.field_samples) == (20, 45)
    outputs = teacher.layer_outputs(speech_batch[:, :16000])
    frames = (16000 - 10) // 5 + 1
    frames = (frames - 8) // 4 + 1
    assert outputs["3"].shape == (2, frames, 32) and np.all(np.isfinite(outputs["3"]))
    with pytest.raises(ParameterError, match=r"no layer\(s\) \['4'\].*\['0', '1', '2', '3'\]"):
        load_layered_teacher("hf:tiny-hubert", model=transformers.TFHubertModel(config), layers="4")


def test_keras_outputs_and_tflite_tensors(tmp_path, speech_batch):
    from trillsson_tf._keras import keras, tf

    keras.utils.set_random_seed(0)
    audio = keras.Input(shape=(None,), name="audio_samples")
    x = keras.layers.Reshape((-1, 1))(audio)
    low = keras.layers.Conv1D(4, 400, strides=320, name="low")(x)
    high = keras.layers.Conv1D(6, 1, activation="tanh", name="high")(low)
    model = keras.Model(audio, {"low": low, "high": high})
    path = str(tmp_path / "layered.keras")
    model.save(path)
    teacher = load_layered_teacher(path, layers="low,high", hop_samples=320, field_samples=400)
    outputs = teacher.layer_outputs(speech_batch[:, :16000])
    assert outputs["low"].shape == (2, 49, 4) and outputs["high"].shape == (2, 49, 6)
    assert teacher.frame_spans(16000, 49)[2].tolist() == [640, 1040]

    # The same network as a fixed-length .tflite whose intermediate tensor is named by the user.
    call = tf.function(lambda audio_samples: {"out": model(audio_samples)["high"]})
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [call.get_concrete_function(tf.TensorSpec([1, 16000], tf.float32, name="audio_samples"))], model
    )
    tflite_path = tmp_path / "layered.tflite"
    tflite_path.write_bytes(converter.convert())
    with pytest.raises(ParameterError, match=r"no layer\(s\) \['nope'\]\. Its layers are: \["):
        load_layered_teacher(str(tflite_path), layers="nope")
    probe = load_layered_teacher(str(tflite_path))  # default: the last computed tensor
    tflite_teacher = load_layered_teacher(str(tflite_path), layers=[probe.available_layers[-1]])
    vectors = tflite_teacher.layer_outputs(speech_batch[:, :32000])[probe.available_layers[-1]]
    assert vectors.shape == (2, 2, 6)  # two 16,000-sample windows, one pooled vector each
    expected = model(speech_batch[:, :16000])["high"].numpy().mean(axis=1)
    np.testing.assert_allclose(vectors[:, 0], expected, atol=1e-5)
