"""Hub-format export and loading: Keras, hub.load, hub.KerasLayer and trillsson_tf.load agree."""

import json
import os
import socket

import numpy as np
import pytest
import tensorflow_hub as hub

import trillsson_tf
from trillsson_tf import models
from trillsson_tf.models import export
from trillsson_tf._keras import keras, tf
from trillsson_tf.errors import TrillssonError
from trillsson_tf.metrics import parity

from conftest import TINY_STUDENTS


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = models.build("ast_tiny", **TINY_STUDENTS["ast_tiny"])
    path = str(tmp_path_factory.mktemp("export") / "ast_tiny")
    trillsson_tf.export_savedmodel(model, path)
    return model, path


def test_keras_hub_load_keraslayer_and_load_agree(exported, speech_batch):
    model, path = exported
    reference = model(speech_batch)["embedding"].numpy()
    assert np.sqrt(np.mean(reference**2)) > 0.1  # the comparison below is not trivially small
    outputs = {
        "hub.load": hub.load(path)(speech_batch)["embedding"],
        "signature": hub.load(path).signatures["serving_default"](audio_samples=tf.constant(speech_batch))["embedding"],
        "hub.KerasLayer": hub.KerasLayer(path)(speech_batch)["embedding"],
        "trillsson_tf.load": trillsson_tf.load(path)(speech_batch)["embedding"],
    }
    for name, output in outputs.items():
        assert output.shape == reference.shape, name
        assert parity(reference, output.numpy())["max_abs_diff"] <= 1e-5, name


def test_variable_length_and_short_clips_match_keras(exported, fsdd_clips):
    model, path = exported
    loaded = hub.load(path)
    for clip in fsdd_clips[:2]:
        audio = clip[np.newaxis]
        np.testing.assert_allclose(loaded(audio)["embedding"].numpy(), model(audio)["embedding"].numpy(), atol=1e-5)


def test_trainable_layer_fine_tunes_inside_a_keras_model(exported, speech_batch):
    _, path = exported
    layer = trillsson_tf.load(path, trainable=True)
    audio = keras.Input(shape=(None,), name="audio_samples")
    head = keras.layers.Dense(3)(layer(audio)["embedding"])
    classifier = keras.Model(audio, head)
    assert len(classifier.trainable_weights) > 2
    before = [w.numpy().copy() for w in layer.trainable_weights]
    classifier.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    classifier.fit(speech_batch, np.ones((2, 3), np.float32), epochs=1, verbose=0)
    assert any(not np.allclose(b, a.numpy()) for b, a in zip(before, layer.trainable_weights))
    assert not trillsson_tf.load(path).trainable_weights


def test_metadata_and_keras_file_are_written(exported, speech_batch):
    model, path = exported
    metadata = json.load(open(os.path.join(path, export.METADATA_FILE)))
    assert metadata["embedding_dim"] == 24 and metadata["sample_rate_hz"] == 16000
    assert metadata["frontend"]["chunk_frames"] == 195 and metadata["build"]["name"] == "ast_tiny"
    restored = trillsson_tf.load(os.path.join(path, export.KERAS_FILE))
    np.testing.assert_allclose(
        restored(speech_batch)["embedding"].numpy(), model(speech_batch)["embedding"].numpy(), atol=1e-5
    )


def test_export_refuses_to_overwrite(exported):
    model, path = exported
    with pytest.raises(ValueError, match="overwrite=True"):
        trillsson_tf.export_savedmodel(model, path)


def _save_module(path, outputs):
    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="audio_samples")])
        def serve(self, audio_samples):
            mean = tf.reduce_mean(audio_samples, axis=1, keepdims=True)
            return {key: mean * (index + 1) for index, key in enumerate(outputs)}

    module = Module()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def test_output_keys_are_discovered_and_missing_keys_listed(tmp_path):
    single = _save_module(str(tmp_path / "single"), ["tf.math.reduce_mean"])
    layer = trillsson_tf.load(single)
    audio = np.full((2, 100), 0.5, np.float32)
    np.testing.assert_allclose(layer(audio)["embedding"].numpy(), 0.5)
    several = _save_module(str(tmp_path / "several"), ["scores", "frames"])
    with pytest.raises(
        ValueError, match=r"several outputs \['frames', 'scores'\]|several outputs \['scores', 'frames'\]"
    ):
        trillsson_tf.load(several)
    with pytest.raises(ValueError, match=r"'embedding' not found.*outputs"):
        trillsson_tf.load(several, output_key="embedding")
    np.testing.assert_allclose(trillsson_tf.load(several, output_key="frames")(audio)["embedding"].numpy(), 1.0)
    with pytest.raises(ValueError, match="cannot be fine-tuned"):
        trillsson_tf.load(several, trainable=True, output_key="frames")


def test_bad_specs_are_explained(tmp_path):
    with pytest.raises(ValueError, match="expected a SavedModel directory"):
        trillsson_tf.load("no_such_model")
    with pytest.raises(ValueError, match="holds no SavedModel"):
        trillsson_tf.load(str(tmp_path))
    with pytest.raises(ValueError, match="not found"):
        trillsson_tf.load(str(tmp_path / "missing.keras"))


def test_shortcuts_resolve_to_published_handles():
    assert export.resolve_handle("trillsson3") == "https://tfhub.dev/google/trillsson3/1"
    assert export.resolve_handle("kaggle:google/trillsson/tensorFlow2/3") == (
        "https://www.kaggle.com/models/google/trillsson/tensorFlow2/3/1"
    )
    assert export.resolve_handle("/some/dir") == "/some/dir"


def test_published_handle_without_network_fails_fast(monkeypatch):
    def unreachable(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(TrillssonError, match="needs the network.*local directory"):
        trillsson_tf.load("trillsson1")


def test_a_layer_student_exports_with_the_metadata_its_type_needs(tmp_path, speech_batch):
    """``trillsson-tf export distil-small`` must give an export that ``convert`` and ``finetune`` accept."""
    from trillsson_tf import kinds
    from trillsson_tf.train.finetune import load_encoder

    model = models.build("distil-small", **TINY_STUDENTS["distil-small"], min_samples=8000)
    path = export.export_savedmodel(model, str(tmp_path / "layer"))
    metadata = export.read_metadata(path)
    assert metadata["export_type"] == kinds.LAYER_STUDENT_EXPORT and metadata["segment_samples"] == 8000
    assert "kind" not in metadata
    encoder, _ = load_encoder(path)
    np.testing.assert_allclose(encoder(speech_batch).numpy(), model.encoder(speech_batch).numpy(), atol=1e-5)
    # An export written before the rename says "kind": it still loads, and still converts as a waveform model.
    del metadata["export_type"]
    with open(os.path.join(path, export.METADATA_FILE), "w") as handle:
        json.dump({**metadata, "kind": "layer_student"}, handle)
    old, _ = load_encoder(path)
    np.testing.assert_allclose(old(speech_batch).numpy(), encoder(speech_batch).numpy(), atol=1e-6)
    assert kinds.family_of(old, export.read_metadata(path)) == kinds.WAVEFORM
