"""Keras 3 interop: an export as a Keras 3 layer inside a functional model, in a process without tf_keras."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import trillsson_tf
from trillsson_tf.errors import ParameterError, TrillssonError
from trillsson_tf.models.export import export_savedmodel

# Runs with Keras 3 active: builds a functional model around the layer and reports its outputs.
KERAS3_SCRIPT = """
import json, sys
import numpy as np
import keras
import trillsson_tf

export_dir, audio_file = sys.argv[1], sys.argv[2]
layer = trillsson_tf.keras3_layer(export_dir)
audio = keras.Input(shape=(None,), name="audio_samples")
embedding = layer(audio)["embedding"]
model = keras.Model(audio, {"embedding": embedding, "head": keras.layers.Dense(3, name="head")(embedding)})
outputs = model(np.load(audio_file))
print("RESULT " + json.dumps({
    "keras": keras.__version__,
    "tf_keras_loaded": "tf_keras" in sys.modules or "trillsson_tf._keras" in sys.modules,
    "embedding": np.asarray(outputs["embedding"]).tolist(),
    "head_shape": list(np.asarray(outputs["head"]).shape),
    "layers": [type(layer).__name__ for layer in model.layers],
}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small tiny_cnn student (8-d) and its hub-format export."""
    from trillsson_tf import models

    model = models.build("tiny_cnn", stem_filters=8, filters=(16, 24), strides=(2, 2), embedding_dim=8)
    return model, export_savedmodel(model, tmp_path_factory.mktemp("keras3") / "export")


def test_keras3_layer_in_a_functional_model_matches_the_export(tmp_path, exported, speech_batch):
    model, export_dir = exported
    np.save(tmp_path / "audio.npy", speech_batch)
    env = {key: value for key, value in os.environ.items() if key != "TF_USE_LEGACY_KERAS"}
    completed = subprocess.run(
        [sys.executable, "-c", KERAS3_SCRIPT, export_dir, str(tmp_path / "audio.npy")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (line,) = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line[len("RESULT ") :])
    assert result["keras"].startswith("3.") and not result["tf_keras_loaded"]
    assert "TFSMLayer" in result["layers"] and result["head_shape"] == [2, 3]
    expected = model(speech_batch)["embedding"].numpy()
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(np.array(result["embedding"]), expected, rtol=1e-5, atol=1e-6)


def test_keras3_layer_refuses_a_process_where_tf_keras_is_loaded(tmp_path, exported):
    _, export_dir = exported
    with pytest.raises(TrillssonError, match="tf_keras .*and Keras 3 must not meet in one process"):
        trillsson_tf.keras3_layer(export_dir)
    with pytest.raises(ParameterError, match="not a SavedModel directory"):
        trillsson_tf.keras3_layer(tmp_path)
