"""trillsson_tf.contract: one TF-free home of the call contract; the runtime and the LiteRT teacher load no TensorFlow."""

import os
import subprocess
import sys

import pytest

from trillsson_tf import contract
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tensorflow_free(script: str) -> None:
    """Run ``script`` in a fresh interpreter and fail if it imported TensorFlow (or any Keras)."""
    check = (
        "\nleaked = sorted(name for name in sys.modules if name.split('.')[0] in ('tensorflow', 'tf_keras', 'keras'))"
        "\nassert 'tensorflow' not in sys.modules and not leaked, leaked[:5]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import sys\n" + script + check], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_import_runtime_loads_no_tensorflow():
    _tensorflow_free("import trillsson_tf.runtime, trillsson_tf.kinds, trillsson_tf.litert, trillsson_tf.contract")


def test_speech_embedding_teacher_loads_and_runs_without_tensorflow():
    _tensorflow_free("""
import numpy as np
from trillsson_tf.teachers import SpeechEmbeddingTeacher, load_teacher
teacher = load_teacher("speech_embedding")
assert teacher(np.zeros((1, 16000), np.float32))["embedding"].shape == (1, 96)
import os
mel = os.path.join(SpeechEmbeddingTeacher.models_dir(), SpeechEmbeddingTeacher.MEL_MODEL)
assert load_teacher(mel).embedding_dim == 32  # a .tflite file teacher: TensorFlow-free too
""")


def test_the_models_use_the_contract_names():
    from trillsson_tf import models
    from trillsson_tf.models import heads

    assert contract.SAMPLE_RATE_HZ == DEFAULT_FRONTEND.sample_rate_hz == 16000
    assert (models.AUDIO_INPUT_NAME, models.EMBEDDING_KEY, models.SCORES_KEY, models.OUTPUT_KEYS) == (
        "audio_samples",
        "embedding",
        "scores",
        ("embedding", "scores"),
    )
    assert models.AUDIO_INPUT_NAME is contract.AUDIO_INPUT_NAME and models.OUTPUT_KEYS is contract.OUTPUT_KEYS
    assert (heads.KWS_OUTPUT, heads.SV_OUTPUT) == (contract.KWS_OUTPUT, contract.SV_OUTPUT)


def test_select_output_key():
    assert contract.select_output_key(["scores", "embedding"]) == "embedding"
    assert contract.select_output_key(["output_0"]) == "output_0"
    assert contract.select_output_key(["a", "b"], "b") == "b"
    with pytest.raises(ParameterError, match=r"Output key 'c' not found in model; it has outputs \['a', 'b'\]"):
        contract.select_output_key(["a", "b"], "c")
    with pytest.raises(ParameterError, match="no 'embedding' output and several outputs"):
        contract.select_output_key(["a", "b"])
