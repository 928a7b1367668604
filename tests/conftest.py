"""Shared fixtures: real speech from the bundled samples, tiny students."""

import glob
import os

import numpy as np
import pytest

from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio

# Tiny configurations of every registered student (overrides of its preset): the same layers and
# ops, small enough for a 2-core CI machine. tests/test_students.py runs each through the shared
# checks and fails for a registered student that has none here.
_TINY_AST = {"width": 32, "depth": 1, "heads": 2, "mlp_dim": 64, "embedding_dim": 24}
# EfficientNetV2 has no width or depth option in keras.applications: B0 is its smallest network.
_TINY_EFFICIENTNET = {"variant": "b0", "embedding_dim": 16}
_TINY_MOBILENETV3 = {"alpha": 0.1, "embedding_dim": 16}
_TINY_CNN = {"stem_filters": 8, "filters": (16, 24), "strides": (2, 2), "embedding_dim": 8}
TINY_STUDENTS = {
    "trillsson1": {"alpha": 0.1, "blocks": (1, 1, 1, 1), "embedding_dim": 32},
    "trillsson2": _TINY_EFFICIENTNET,
    "trillsson3": _TINY_EFFICIENTNET,
    "trillsson4": _TINY_EFFICIENTNET,
    "efficientnetv2b0": _TINY_EFFICIENTNET,
    "efficientnetv2b1": _TINY_EFFICIENTNET,
    "efficientnetv2s": _TINY_EFFICIENTNET,
    "trillsson5": _TINY_AST,
    "ast_tiny": _TINY_AST,
    "mobilenetv3small": _TINY_MOBILENETV3,
    "mobilenetv3large": _TINY_MOBILENETV3,
    "mobilenetv3small_adv": {"alpha": 0.1},
    "tiny_cnn": _TINY_CNN,
    "tiny_cnn_k5": _TINY_CNN,
    "wav2small": {"filters": (8, 8), "pools": ((1, 2), (2, 2))},
    "mobilenetv4convsmall": {"width_multiplier": 0.25},
    "distil-small": {"width": 16, "depth": 1, "heads": 2, "ffn_dim": 64, "conv_channels": 16, "pos_conv_kernel": 16},
}


def tampered_copy(path, folder, *, offset: int = 1 << 20):
    """A copy of ``path`` in ``folder`` with the byte at ``offset`` flipped (a weights file that must be refused)."""
    import shutil

    copy = os.path.join(folder, os.path.basename(path))
    shutil.copyfile(path, copy)
    with open(copy, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return copy


def _files(pattern):
    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, pattern)))
    assert files, f"no bundled audio matches {pattern}"
    return files


@pytest.fixture(scope="session")
def librispeech_clips():
    """The four longest bundled LibriSpeech utterances, float32 [samples] at 16 kHz (> 4 s each)."""
    clips = sorted((load_audio(path) for path in _files("librispeech/*.flac")), key=len, reverse=True)
    return clips[:4]


@pytest.fixture(scope="session")
def fsdd_clips():
    """Four real FSDD digits (8 kHz files resampled to 16 kHz), float32 [samples], under 1 s each."""
    return [load_audio(path) for path in _files("fsdd/*_0.wav")[:4]]


@pytest.fixture(scope="session")
def speech_batch(librispeech_clips):
    """Two real clips cut to one length: float32 [2, 64000] (4 s, two chunks each)."""
    return np.stack([clip[:64000] for clip in librispeech_clips[:2]]).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny ResNet-ish student (trillsson1 layout) with 32-d embeddings, seeded.

    Seeded so that its weights, and the int8 error bounds tested on them, do not depend on
    which tests drew random numbers before it was first built.
    """
    from trillsson_tf import models
    from trillsson_tf._keras import keras

    keras.utils.set_random_seed(0)
    return models.build("trillsson1", **TINY_STUDENTS["trillsson1"])


@pytest.fixture(scope="session")
def tiny_layered_teacher(tmp_path_factory):
    """A Keras teacher with two named frame outputs (``low`` 8-d, ``high`` 6-d; one frame per 320 samples), as a .keras file."""
    from trillsson_tf._keras import keras

    keras.utils.set_random_seed(0)
    audio = keras.Input(shape=(None,), name="audio_samples")
    x = keras.layers.Reshape((-1, 1))(audio)
    low = keras.layers.Conv1D(8, 400, strides=320, activation="tanh", name="low")(x)
    high = keras.layers.Conv1D(6, 3, padding="same", activation="tanh", name="high")(low)
    path = str(tmp_path_factory.mktemp("teacher") / "layered_teacher.keras")
    keras.Model(audio, {"low": low, "high": high}).save(path)
    return path
