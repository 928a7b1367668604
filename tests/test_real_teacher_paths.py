"""A student of the real CAM++ teacher through every path after distillation: optimize, convert (chunk
vectors, MediaPipe, int8), the runtime and its stream (slow: make test-slow; the demo test covers float/int8/micro)."""

import glob
import os

import numpy as np
import pytest

from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from trillsson_tf.train.distill import distill

    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_5.wav")))
    run = distill(
        files,
        out_dir=str(tmp_path_factory.mktemp("run")),
        teacher="campplus",
        student="tiny_cnn_k5",
        steps=30,
        lr=1e-2,
        validation_fraction=0.0,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )
    assert run["teacher"]["spec"] == "campplus" and run["student"]["parameters"] < 6_848_544 / 20
    return run["export"]


def test_optimize_convert_and_stream(export, tmp_path):
    from trillsson_tf.converters.tflite import convert
    from trillsson_tf.optimize.pipeline import optimize_export
    from trillsson_tf.runtime import TFLiteModel

    data = os.path.join(SAMPLE_AUDIO_DIR, "librispeech")
    optimized = optimize_export(export, str(tmp_path / "opt"), data=data, prune=0.5, steps=10, num_patches=64)
    clip = load_audio(sorted(glob.glob(os.path.join(data, "*.flac")))[0])[:64000]
    for name, options in {
        "int8": {"quantize": "int8", "representative_audio": data},
        "one_chunk": {"chunk_vectors": True},
        "mediapipe": {"mediapipe": True, "fixed_samples": 31440},
    }.items():
        card = convert(optimized["export"], str(tmp_path / f"{name}.tflite"), **options)
        assert card["parity"]["mean_cosine"] > 0.95, name
    model = TFLiteModel(str(tmp_path / "int8.tflite"))
    offline = model.chunk_vectors(clip, hop_s=0.5)["embedding"][0]
    streamed = np.stack([vector for _, vector in model.stream(np.array_split(clip, 7), hop_s=0.5)])
    assert offline.shape[-1] == 192 and np.allclose(streamed[: len(offline)], offline, atol=1e-5)
