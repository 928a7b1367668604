"""trillsson_tf.converters.tflite: each variant runs in LiteRT and follows the Keras model on real speech."""

import glob
import json
import os

import numpy as np
import pytest

from trillsson_tf.converters import tflite
from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.errors import ConversionError, ParameterError


@pytest.fixture(scope="module")
def calibration_files():
    """The first eight bundled LibriSpeech files (the parity clips are the last six: held out)."""
    return sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))[:8]


@pytest.fixture(scope="module")
def converted(tiny_model, calibration_files, tmp_path_factory):
    """Cards of the variants of the tiny trillsson1 student, keyed by (quantize, frontend)."""
    folder = tmp_path_factory.mktemp("tflite")
    variants = [("float32", True), ("float16", True), ("int8", True), ("int8", False), ("dynamic", False)]
    cards = {}
    for quantize, frontend in variants:
        out = folder / f"tiny_{quantize}_{'fe' if frontend else 'patch'}.tflite"
        cards[quantize, frontend] = tflite.convert(
            tiny_model, out, quantize=quantize, frontend=frontend, representative_audio=calibration_files
        )
        cards[quantize, frontend]["path"] = str(out)
    return cards


def test_float32_with_frontend_has_the_hub_signature_and_matches_keras(converted, tiny_model, speech_batch):
    from ai_edge_litert.interpreter import Interpreter

    card = converted["float32", True]
    interpreter = Interpreter(model_path=card["path"])
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["audio_samples"], "outputs": ["embedding"]}
    }
    assert card["inputs"] == [{"name": "audio_samples", "shape": [-1, -1], "dtype": "float32", "quantization": None}]
    runner = interpreter.get_signature_runner("serving_default")
    got = runner(audio_samples=speech_batch)["embedding"]  # batch of two real 4 s clips, variable length
    want = tiny_model(speech_batch)["embedding"].numpy()
    assert np.sqrt(np.mean(want**2)) > 0.05  # real values, not near-zero embeddings
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())
    assert card["parity"]["mean_cosine"] > 0.99999 and card["parity"]["reference_rms"] > 0.05


def test_card_sits_beside_the_model_with_frontend_numbers_and_size(converted):
    card = converted["float32", True]
    with open(os.path.splitext(card["path"])[0] + ".json") as handle:
        written = json.load(handle)
    assert written["size_bytes"] == os.path.getsize(card["path"])
    assert written["sample_rate_hz"] == 16000 and written["frontend"]["num_mel_bins"] == 80
    assert written["output"] == "embedding" and written["outputs"][0]["shape"] == [-1, 32]
    assert written["ops"] and {"op", "inputs", "outputs", "float"} <= set(written["ops"][0])
    assert "licence" in written and written["source"]["build"]["name"] == "trillsson1"


def test_float16_halves_the_size_and_keeps_fidelity(converted):
    ratio = converted["float16", True]["size_bytes"] / converted["float32", True]["size_bytes"]
    assert ratio < 0.6
    assert converted["float16", True]["parity"]["mean_cosine"] >= 0.9999


@pytest.mark.parametrize("float16_safe", [True, False])
def test_float16_log_mel_of_8khz_speech_follows_the_numpy_frontend(fsdd_clips, float16_safe):
    """FSDD is 8 kHz speech: its 4-8 kHz bands are empty, where a float16-rounded window leaks."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from trillsson_tf.frontend import numpy_ops, tf_ops

    function = tf.function(
        lambda audio: tf_ops.log_mel(audio, compute_dtype="float32", float16_safe=float16_safe),
        input_signature=[tf.TensorSpec([1, None], tf.float32)],
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    interpreter = Interpreter(model_content=converter.convert())
    errors = []
    for clip in fsdd_clips:
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], [1, len(clip)])
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], clip[np.newaxis].astype(np.float32))
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        errors.append(np.abs(got - numpy_ops.log_mel(clip[np.newaxis])).max())
    error = max(errors)
    if float16_safe:
        assert error < 0.01
    else:  # the failure float16_safe exists for: rounded-window leakage, magnified by the log
        assert error > 0.3


def test_int8_with_frontend_lists_the_float_frontend_ops(converted):
    card = converted["int8", True]
    assert {"RFFT2D", "COMPLEX_ABS", "LOG"} <= set(card["float_ops"])
    assert "CONV_2D" not in card["float_ops"]
    assert card["parity"]["mean_cosine"] >= 0.99


def test_int8_without_frontend_is_integer_only(converted):
    card = converted["int8", False]
    assert card["inputs"][0]["name"] == "log_mel_patch" and card["inputs"][0]["dtype"] == "int8"
    assert card["inputs"][0]["quantization"]["scale"] > 0
    assert card["float_ops"] == []
    assert card["parity"]["mean_cosine"] >= 0.99 and card["parity"]["rows"] == 12  # 6 clips x 2 chunks
    assert card["size_bytes"] / converted["float32", True]["size_bytes"] < 0.35


def test_dynamic_range_without_frontend(converted):
    card = converted["dynamic", False]
    assert card["inputs"][0]["dtype"] == "float32"
    assert card["parity"]["mean_cosine"] >= 0.99


def test_export_directory_carries_teacher_into_the_card(tiny_model, tmp_path):
    from trillsson_tf.models.export import export_savedmodel

    export = export_savedmodel(
        tiny_model, tmp_path / "export", extra_metadata={"teacher": {"spec": "speech_embedding"}}
    )
    card = tflite.convert(export, tmp_path / "m.tflite", quantize="float32", frontend=False, fixed_samples=None)
    assert card["source"]["teacher"] == {"spec": "speech_embedding"}
    assert card["parity"]["mean_cosine"] > 0.9999


def test_fixed_length_input(tiny_model, tmp_path):
    card = tflite.convert(tiny_model, tmp_path / "fixed.tflite", fixed_samples=32000)
    assert card["inputs"][0]["shape"] == [1, 32000]
    assert card["parity"]["mean_cosine"] > 0.9999


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"quantize": "int4"}, r"Unknown quantization mode 'int4'. Expected one of: \['float32'"),
        ({"quantize": "int8"}, "needs representative audio"),
        ({"quantize": "dynamic"}, "frontend=False"),
        ({"fixed_samples": 10}, "fixed_samples must be an integer"),
    ],
)
def test_bad_options_are_refused(tiny_model, tmp_path, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        tflite.convert(tiny_model, tmp_path / "bad.tflite", **kwargs)


def test_a_directory_that_is_not_ours_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="not a trillsson_tf export directory: expected 'model.keras'"):
        tflite.convert(tmp_path, tmp_path / "m.tflite")


def test_existing_output_is_refused_and_strict_parity_raises(converted, tiny_model, caplog):
    path = converted["dynamic", False]["path"]
    with pytest.raises(ParameterError, match="exists; pass overwrite=True"):
        tflite.convert(tiny_model, path, quantize="dynamic", frontend=False)
    with pytest.raises(ConversionError, match="below threshold: mean cosine"):
        tflite.convert(
            tiny_model, path, quantize="dynamic", frontend=False, overwrite=True, min_cosine=1.01, strict=True
        )
    caplog.clear()
    tflite.convert(tiny_model, path, quantize="dynamic", frontend=False, overwrite=True, min_cosine=1.01)
    assert "below threshold" in caplog.text
