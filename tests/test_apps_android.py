"""The committed Android demo assets: golden outputs regenerate, metadata matches the models.

Everything here runs without TensorFlow on the committed files (fast); regenerating the whole
folder from a distillation is ``slow``.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from trillsson_tf.apps import android
from trillsson_tf.audio import load_audio
from trillsson_tf.errors import ParameterError
from trillsson_tf.teachers.weights import sha256

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(REPO, "android_demo_assets")


def _json(name):
    with open(os.path.join(ASSETS, name)) as handle:
        return json.load(handle)


def _metadata():
    paths = sorted(glob.glob(os.path.join(ASSETS, "*" + android.METADATA_SUFFIX)))
    assert paths, "android_demo_assets holds no metadata; run `trillsson-tf android-assets --force`"
    return [(path, _json(os.path.basename(path))) for path in paths]


def test_assets_folder_is_complete_and_under_10_mb():
    golden = _json(android.GOLDEN_FILE)
    expected = {android.SAMPLE_FILE, android.GOLDEN_FILE, android.README_FILE}
    for _, meta in _metadata():
        expected |= {meta["model_file"], meta["model_file"].replace(".tflite", android.METADATA_SUFFIX)}
        if meta["labels_file"]:
            expected.add(meta["labels_file"])
    assert expected <= set(os.listdir(ASSETS))
    assert android.EMBEDDING_FILE in golden["models"]
    assert set(golden["models"]) == {meta["model_file"] for _, meta in _metadata()}
    size = sum(os.path.getsize(path) for path in glob.glob(os.path.join(ASSETS, "*")))
    assert 0 < size < android.MAX_FOLDER_BYTES


def test_sample_wav_is_16k_mono_pcm16_and_matches_the_golden_record():
    info = soundfile.info(os.path.join(ASSETS, android.SAMPLE_FILE))
    sample = _json(android.GOLDEN_FILE)["sample"]
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert info.frames == sample["samples"] == 40000
    assert sample["sha256"] == sha256(os.path.join(ASSETS, android.SAMPLE_FILE))


def test_golden_outputs_regenerate_with_the_runtime():
    golden = _json(android.GOLDEN_FILE)
    audio = load_audio(os.path.join(ASSETS, android.SAMPLE_FILE))
    for model_file, expected in golden["models"].items():
        actual = android.golden_outputs(os.path.join(ASSETS, model_file), audio)
        assert set(actual) == set(expected)
        for name in expected:
            # Same host, same LiteRT: equal to float32 rounding, far inside the on-device tolerance.
            np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6)
        assert all(row["passed"] for row in android.check_golden(expected, actual).values())


def test_kotlin_recipe_reproduces_the_golden_outputs():
    """The README's Kotlin steps in Python: PCM16 / 32768, resize input 0 to [1, n], run, read output 0."""
    from ai_edge_litert.interpreter import Interpreter

    pcm, rate = soundfile.read(os.path.join(ASSETS, android.SAMPLE_FILE), dtype="int16")
    assert rate == 16000
    golden = _json(android.GOLDEN_FILE)["models"]
    for _, meta in _metadata():
        interpreter = Interpreter(model_path=os.path.join(ASSETS, meta["model_file"]), num_threads=1)
        model_input = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(model_input["index"], [1, len(pcm)])
        interpreter.allocate_tensors()
        interpreter.set_tensor(model_input["index"], (pcm / 32768.0).astype(np.float32)[np.newaxis])
        interpreter.invoke()
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        name = meta["outputs"][0]["name"]
        report = android.check_golden({name: golden[meta["model_file"]][name]}, {name: output})[name]
        assert report["cosine"] > 0.99999 and report["relative_error"] < 1e-4, meta["model_file"]


def test_metadata_matches_the_model_files():
    for path, meta in _metadata():
        model_path = os.path.join(ASSETS, meta["model_file"])
        regenerated = android.model_metadata(
            model_path,
            task=meta["task"],
            description=meta["description"],
            output_meaning={out["name"]: out["meaning"] for out in meta["outputs"]},
            labels=meta["labels"],
            source=meta["source"],
        )
        assert regenerated == meta, path
        assert meta["input"]["sample_rate_hz"] == 16000 and meta["input"]["value_range"] == [-1.0, 1.0]
        assert meta["input"]["dtype"] == "float32" and meta["input"]["shape"][0] in (-1, 1)


def test_embedding_metadata_describes_the_distilled_student():
    meta = _json(android.EMBEDDING_FILE.replace(".tflite", android.METADATA_SUFFIX))
    (output,) = meta["outputs"]
    assert meta["input"]["name"] == "audio_samples" and meta["input"]["shape"] == [-1, -1]
    assert output["name"] == "embedding" and output["shape"] == [-1, 96]
    assert meta["source"]["teacher"] == "speech_embedding" and meta["source"]["quantize"] == "int8"
    assert meta["source"]["parity_vs_keras"]["mean_cosine"] > 0.98


def test_labels_files_name_every_output_column():
    for _, meta in _metadata():
        if not meta["labels_file"]:
            continue
        with open(os.path.join(ASSETS, meta["labels_file"])) as handle:
            lines = handle.read().splitlines()
        assert lines == meta["labels"]
        assert len(lines) == meta["outputs"][0]["shape"][-1]


def test_readme_kotlin_uses_the_metadata_names():
    with open(os.path.join(ASSETS, android.README_FILE)) as handle:
        readme = handle.read()
    for _, meta in _metadata():
        width = meta["outputs"][0]["shape"][-1]
        assert f'AudioModel(context, "{meta["model_file"]}", outputWidth = {width})' in readme
        assert f'"{meta["input"]["name"]}"' in readme
    assert "org.tensorflow.lite.Interpreter" in readme and "resizeInput(0, intArrayOf(1, pcm16.size))" in readme


def test_readme_compiled_model_recipe_python_twin(tmp_path):
    """The README's LiteRT 2.x CompiledAudioModel, step for step in Python's CompiledModel, on a fixed [1, 32000]
    copy of the embedding model: the Interpreter's vectors on the same zero-padded windows."""
    from ai_edge_litert.compiled_model import CompiledModel

    from trillsson_tf.runtime import TFLiteModel
    from trillsson_tf.runtime.compiled import fixed_shapes

    with open(os.path.join(ASSETS, android.README_FILE)) as handle:
        assert "class CompiledAudioModel" in handle.read()
    source = os.path.join(ASSETS, android.EMBEDDING_FILE)
    interpreter = TFLiteModel(source, num_threads=1)
    with open(source, "rb") as handle:
        content = handle.read()
    (width,) = interpreter.pool.outputs[interpreter.output_key]["shape_signature"][1:]
    fixed = tmp_path / "embedding_fixed.tflite"
    fixed.write_bytes(
        fixed_shapes(
            content, 0, {int(interpreter.pool.input["index"]): (1, 32000), _output_index(interpreter): (1, width)}
        )
    )
    model = CompiledModel.from_file(str(fixed))
    inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
    pcm16 = soundfile.read(os.path.join(ASSETS, android.SAMPLE_FILE), dtype="int16")[0]
    windows = android.mediapipe_windows(pcm16.astype(np.float32) / 32768, 32000)
    vectors = []
    for window in windows:  # writeFloat, run, readFloat per window
        inputs[0].write(window[np.newaxis])
        model.run_by_index(0, inputs, outputs)
        vectors.append(outputs[0].read(int(width), np.float32))
    expected = np.concatenate([interpreter.pool.run(window[np.newaxis]) for window in windows])
    assert len(windows) > 1 and np.abs(expected).max() > 0.1
    np.testing.assert_allclose(np.mean(vectors, axis=0), expected.mean(axis=0), rtol=1e-5, atol=1e-5)


def _output_index(model):
    return int(model.pool.outputs[model.output_key]["index"])


def test_rebuilding_from_the_committed_models_gives_the_same_folder(tmp_path):
    models = {"embedding_model": os.path.join(ASSETS, android.EMBEDDING_FILE)}
    wav2small = os.path.join(ASSETS, android.WAV2SMALL_FILE)
    if os.path.isfile(wav2small):
        models["wav2small_model"] = wav2small
    else:
        models["with_wav2small"] = False
    summary = android.build_android_assets(tmp_path / "assets", **models)
    for name in (android.GOLDEN_FILE, android.README_FILE, *(os.path.basename(p) for p, _ in _metadata())):
        with open(os.path.join(ASSETS, name)) as committed, open(tmp_path / "assets" / name) as rebuilt:
            assert rebuilt.read() == committed.read(), name
    assert summary["folder_bytes"] < android.MAX_FOLDER_BYTES


def test_refuses_to_overwrite_without_force(tmp_path):
    (tmp_path / "keep.txt").write_text("user file")
    with pytest.raises(ParameterError, match="exists and is not empty; pass overwrite=True"):
        android.build_android_assets(tmp_path, embedding_model=os.path.join(ASSETS, android.EMBEDDING_FILE))
    with pytest.raises(ParameterError, match="TFLite model file not found"):
        android.build_android_assets(tmp_path / "new", embedding_model=str(tmp_path / "missing.tflite"))
    with pytest.raises(ParameterError, match="steps must be a positive integer"):
        android.build_android_assets(tmp_path / "new", steps=0)
    assert (tmp_path / "keep.txt").read_text() == "user file"


def test_cli_android_assets_options_do_not_import_tensorflow():
    code = (
        "import sys; from trillsson_tf.apps.cli import build_parser; "
        "args = build_parser('android-assets').parse_args(['android-assets', '--out', 'x', '--steps', '5', '--no-wav2small']); "
        "assert (args.out, args.steps, args.no_wav2small) == ('x', 5, True); "
        "assert 'tensorflow' not in sys.modules; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "ok", result.stderr


@pytest.mark.slow
def test_build_from_a_short_distillation(tmp_path):
    summary = android.build_android_assets(
        tmp_path / "assets", with_wav2small=False, steps=android.FAST_STEPS, work_dir=tmp_path / "work"
    )
    meta = json.loads((tmp_path / "assets" / "embedding_int8.metadata.json").read_text())
    assert meta["source"]["training_steps"] == android.FAST_STEPS
    assert summary["models"][android.EMBEDDING_FILE]["parity"] > 0.98
    assert summary["skipped"] == {android.WAV2SMALL_FILE: "with_wav2small=False (CLI --no-wav2small)"}


def test_mediapipe_windows_are_non_overlapping_with_a_zero_padded_tail():
    audio = np.arange(1, 40001, dtype=np.float32)
    windows = android.mediapipe_windows(audio, 32000)
    assert windows.shape == (2, 32000)
    np.testing.assert_array_equal(windows[0], audio[:32000])
    np.testing.assert_array_equal(windows[1, :8000], audio[32000:])
    assert not windows[1, 8000:].any()
    assert android.mediapipe_windows(audio[:100], 32000).shape == (1, 32000)


def test_readme_links_the_mediapipe_form():
    with open(os.path.join(ASSETS, android.README_FILE)) as handle:
        readme = handle.read()
    assert "## MediaPipe Tasks: `AudioClassifier` (current release), `AudioEmbedder` (0.10.21 only)" in readme
    assert "tasks-audio:0.10.21" not in readme and "Embeddings on the current release go through LiteRT" in readme
    assert "non-overlapping N-sample" in readme and "zero-pads the last one" in readme
    assert "--mediapipe" in readme


@pytest.mark.slow
def test_an_export_gets_its_mediapipe_form(tiny_model, tmp_path):
    from trillsson_tf.converters.metadata import read_metadata
    from trillsson_tf.models.export import export_savedmodel

    export = export_savedmodel(tiny_model, str(tmp_path / "export"))
    summary = android.build_android_assets(
        tmp_path / "assets", embedding_model=export, with_wav2small=False, fixed_samples=16000
    )
    form = android.EMBEDDING_FILE.replace(".tflite", android.MEDIAPIPE_SUFFIX)
    assert form in summary["files"] and form.replace(".tflite", ".json") in summary["files"]
    with open(tmp_path / "assets" / form, "rb") as handle:
        assert read_metadata(handle.read())["inputs"][0]["sample_rate_hz"] == 16000
    golden = json.loads((tmp_path / "assets" / android.GOLDEN_FILE).read_text())["mediapipe"][form]
    assert (golden["window_samples"], golden["windows"]) == (16000, 3)  # 2.5 s in 1 s windows, the last padded
    assert f"`{form}`: fixed input `[1, 16000]`" in (tmp_path / "assets" / android.README_FILE).read_text()
