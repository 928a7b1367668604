"""Wav2Small and the MobileNet emotion students: registry, shapes, frontend twin, int8, TFLite Micro, runtime."""

import shutil
import subprocess

import numpy as np
import pytest

from trillsson_tf.converters import micro, tflite
from trillsson_tf import models
from trillsson_tf._keras import keras
from trillsson_tf.errors import ConversionError, ParameterError
from trillsson_tf.frontend import dft
from trillsson_tf.metrics import parity
from trillsson_tf.runtime import TFLiteModel

# Two blocks instead of five: the same layers and ops, small enough for quick conversions.
SMALL = {"filters": (8, 8), "pools": ((1, 2), (2, 2))}


@pytest.fixture(scope="module")
def micro_files(librispeech_clips, tmp_path_factory):
    """A small Wav2Small as a full-int8 .tflite for 1 s (dB mel bands in) and its TFLite Micro files."""
    folder = tmp_path_factory.mktemp("w2s")
    calibration = np.stack([np.resize(clip, 16000) for clip in librispeech_clips]).astype(np.float32)
    keras.utils.set_random_seed(0)  # the same random-weight model every run: the agreement check is exact
    model = models.build("wav2small", **SMALL)
    card = tflite.convert(
        model, folder / "w2s.tflite", quantize="int8", frontend=False, representative_audio=calibration
    )
    report = micro.to_micro(folder / "w2s.tflite", folder / "micro", name="w2s_model")
    return folder / "w2s.tflite", card, report


def test_default_wav2small_has_the_documented_size_and_layers():
    model = models.build("wav2small")
    assert model.count_params() == 73_464  # the docstring's layer table
    assert 60_000 <= model.count_params() <= 80_000
    assert model.dft_frontend.count_params() == 4_884 and not model.dft_frontend.trainable_weights
    assert models.get_preset("wav2small").output_key == "scores"


def test_wav2small_shapes_padding_and_batch_independence(librispeech_clips, fsdd_clips):
    model = models.build("wav2small", **SMALL)
    batch = np.stack([clip[:24000] for clip in librispeech_clips[:2]])
    output = model(batch)
    assert output["scores"].shape == (2, 3)
    # Clips under 1 s are mirror-padded to 1 s inside the model: the same scores as padding first.
    short = fsdd_clips[0][np.newaxis]
    assert short.shape[1] < 16000
    from trillsson_tf.frontend.numpy_ops import mirror_pad

    np.testing.assert_allclose(
        model(short)["scores"].numpy(), model(mirror_pad(short, 16000))["scores"].numpy(), atol=1e-5
    )
    # Per-clip normalisation: the scores do not depend on the recording gain.
    np.testing.assert_allclose(model(batch * 0.1)["scores"].numpy(), output["scores"].numpy(), rtol=2e-3, atol=0.01)
    assert models.build("wav2small", embedding_dim=5, **SMALL)(batch)["scores"].shape == (2, 5)


def test_the_numpy_twin_matches_the_keras_frontend(librispeech_clips):
    clips = np.stack([clip[:20000] for clip in librispeech_clips[:2]])
    model = models.build("wav2small", compression="pwl", **SMALL)
    normalized = model.get_layer("clip_normalization")(clips).numpy()
    np.testing.assert_allclose(normalized, dft.normalize_clips(clips), atol=1e-5)
    features = model.dft_frontend(normalized).numpy()
    assert features.shape == (2, dft.DEFAULT_DFT_FRONTEND.num_frames(20000), 20)
    np.testing.assert_allclose(features, dft.features(normalized, compression="pwl"), atol=1e-3)
    # The piecewise-linear dB stays within 0.52 dB of the log on real speech.
    gap = np.abs(dft.features(normalized, compression="pwl") - dft.features(normalized, compression="log"))
    assert gap.max() < 0.53


def test_wav2small_export_says_scores_and_serves_as_a_teacher(librispeech_clips, tmp_path):
    from trillsson_tf.models.export import export_savedmodel, read_metadata
    from trillsson_tf.teachers import load_teacher

    model = models.build("wav2small", **SMALL)
    batch = np.stack([clip[:16000] for clip in librispeech_clips[:2]])
    path = export_savedmodel(model, tmp_path / "export")
    assert read_metadata(path)["output"] == "scores"
    teacher = load_teacher(path)  # the export as a teacher: its only output is picked
    np.testing.assert_allclose(teacher(batch)["embedding"], model(batch)["scores"].numpy(), atol=1e-4)


def test_bad_wav2small_options_are_refused():
    with pytest.raises(ParameterError, match="Unknown compression 'ln'"):
        models.build("wav2small", compression="ln")
    with pytest.raises(ParameterError, match="one entry .* per block"):
        models.build("wav2small", filters=(8, 8), pools=(None,))
    with pytest.raises(ParameterError, match="positive integer"):
        models.build("wav2small", embedding_dim=0)
    with pytest.raises(ParameterError, match="no chunk network"):
        models.build("wav2small", **SMALL).chunk_network  # noqa: B018


@pytest.mark.parametrize("name,parameters", [("mobilenetv3small_adv", 940_563), ("mobilenetv4convsmall", 2_517_539)])
def test_mobilenet_emotion_students_give_scores(name, parameters, librispeech_clips):
    model = models.build(name)
    assert model.count_params() == parameters
    output = model(np.stack([clip[:40000] for clip in librispeech_clips[:2]]))
    assert list(output) == ["scores"] and output["scores"].shape == (2, 3)
    assert models.output_key(model) == "scores"


def test_int8_micro_model_size_tflm_run_and_litert_agreement(micro_files, librispeech_clips):
    path, card, report = micro_files
    assert card["clip_model"] == {
        "frontend": dft.DEFAULT_DFT_FRONTEND.to_dict(),
        "input": "log_mel",
        "compression": "log",
    }
    assert card["inputs"][0]["shape"] == [1, 499, 20] and card["inputs"][0]["dtype"] == "int8"
    assert card["float_ops"] == [] and card["output"] == "scores"
    assert card["size_bytes"] < 20_000  # the small test configuration; the benchmark reports the default's
    assert {"CONV_2D", "SOFTMAX", "FULLY_CONNECTED"} <= set(report["ops"])
    assert 0 < report["arena_used_bytes"] <= 512 * 1024
    content = path.read_bytes()
    features = dft.features(dft.normalize_clips(np.stack([np.resize(clip, 16000) for clip in librispeech_clips])))
    details = report["input"]
    quantized = np.clip(np.round(features / details["scale"]) + details["zero_point"], -128, 127).astype(np.int8)
    on_micro = micro.micro_run(content, quantized, arena_bytes=report["arena_bytes"])
    out = report["output"]
    got = (on_micro.astype(np.float32) - out["zero_point"]) * out["scale"]
    want = tflite.tflite_embeddings(content, features)
    # LiteRT (XNNPACK) and TFLM (reference kernels) round differently along the chain of int8 ops.
    agreement = parity(want, got)
    assert agreement["mean_cosine"] > 0.999 and agreement["max_abs_diff"] <= 10 * out["scale"], agreement


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_the_wav2small_c_array_compiles(micro_files, tmp_path):
    _, _, report = micro_files
    source = open(report["files"]["source"]).read()
    assert 'extern "C" alignas(16) const unsigned char w2s_model[]' in source
    subprocess.run(["g++", "-std=c++17", "-c", report["files"]["source"], "-o", str(tmp_path / "w2s.o")], check=True)
    assert "resolver->AddSoftmax()" in open(report["files"]["resolver"]).read()


def test_runtime_runs_the_micro_model_on_any_length(micro_files, librispeech_clips, fsdd_clips):
    path, _, _ = micro_files
    runtime_model = TFLiteModel(path, num_threads=1)
    assert runtime_model.clip_model["input"] == "log_mel" and runtime_model.embedding_dim == 3
    assert runtime_model.kind.name == "clip_log_mel" and not runtime_model.frontend_inside
    long_clip = librispeech_clips[0][:48000]
    out = runtime_model(long_clip)
    assert set(out) == {"embedding", "scores"} and out["scores"].shape == (1, 3)
    # 3 s = 1499 frames = three 499-frame windows of the whole clip's dB mel bands, outputs averaged.
    content = path.read_bytes()
    windows = dft.features(dft.normalize_clips(long_clip[np.newaxis]))[0, : 3 * 499].reshape(3, 499, 20)
    np.testing.assert_allclose(out["scores"][0], tflite.tflite_embeddings(content, windows).mean(axis=0), atol=1e-5)
    assert runtime_model(fsdd_clips[0])["scores"].shape == (1, 3)  # under 1 s: mirror-padded
    compiled = TFLiteModel(path, num_threads=1, api="compiled")  # LiteRT 2.x: the same numbers
    for clip in (long_clip, fsdd_clips[0]):
        np.testing.assert_allclose(compiled(clip)["scores"], runtime_model(clip)["scores"], rtol=1e-6, atol=1e-6)
    with pytest.raises(ParameterError, match="does not stream"):
        runtime_model.feed(long_clip)


@pytest.mark.slow
def test_frontend_inside_int8_runs_in_litert_and_is_refused_for_micro_with_its_float_ops(librispeech_clips, tmp_path):
    model = models.build("wav2small", **SMALL)
    calibration = np.stack([np.resize(clip, 32000) for clip in librispeech_clips]).astype(np.float32)
    card = tflite.convert(model, tmp_path / "inside.tflite", quantize="int8", representative_audio=calibration)
    assert card["inputs"][0]["shape"] == [-1, -1] and card["output"] == "scores" and len(card["parity"]["ccc"]) == 3
    assert card["clip_model"]["input"] == "audio" and "LOG" in card["float_ops"]  # the spectrogram stays float
    assert {"int8"} <= {dtype for row in card["ops"] if row["op"] == "CONV_2D" for dtype in row["inputs"]}
    clip = librispeech_clips[1][:40000]
    got = TFLiteModel(tmp_path / "inside.tflite")(clip)["scores"]
    np.testing.assert_allclose(
        got, tflite.tflite_embeddings((tmp_path / "inside.tflite").read_bytes(), clip[np.newaxis]), atol=1e-5
    )
    with pytest.raises(ConversionError, match=r"TFLite Micro lacks these ops of the model: \[.*'LOG'"):
        micro.to_micro(tmp_path / "inside.tflite", tmp_path / "micro")
