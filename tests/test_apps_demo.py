"""The demo job as a smoke run: real teacher, real distillation, export, evaluation, report."""
import json
import os

import numpy as np
import pytest
import soundfile

from trillsson_tf.apps.demo import DEMO_RECIPE, FAST_STEPS, run_demo, summary
from trillsson_tf.errors import ParameterError


def test_fast_demo_writes_the_report(tmp_path):
    report = run_demo(tmp_path / "demo", steps=FAST_STEPS)
    with open(tmp_path / "demo" / "report.json") as handle:
        assert json.load(handle) == report
    assert report["teacher"]["parameters"] > 4 * report["student"]["parameters"] * 0.99
    assert set(report["student"]["probe_accuracy"]["fsdd"]) == {"digit", "speaker"}
    assert set(report["teacher"]["probe_accuracy"]["librispeech"]) == {"speaker", "sex"}
    assert -1.0 <= report["mean_cosine_fsdd_test"] <= 1.0
    assert set(report["fidelity"]["fsdd_test"]) == {"mean_cosine", "centered_cosine", "r2", "training_mean_mean_cosine"}
    assert os.path.isfile(os.path.join(report["student"]["export"], "saved_model.pb"))
    deployed = report["tflite"]
    assert deployed["parity_mean_cosine"]["float32"] >= 0.9999
    assert deployed["size_ratio_to_float32"]["float16"] < 0.6 and deployed["size_ratio_to_float32"]["int8"] < 0.6
    assert all(os.path.isfile(path) for path in deployed["files"].values())
    assert os.path.isfile(deployed["micro"]["source"]) and 0 < deployed["micro"]["arena_bytes"] < 2**20
    assert report["training"]["steps"] == FAST_STEPS
    # 190 training files (FSDD takes 5-7, 5 LibriSpeech speakers), each with its augmented views
    assert report["training"]["records"] == report["training"]["files"] * (1 + DEMO_RECIPE["augment"])
    assert not set(report["training"]["librispeech_speakers_seen"]) & set(report["training"]["librispeech_speakers_unseen"])
    text = summary(report)
    assert "centered cosine" in text and "LibriSpeech speaker (unseen speakers)" in text
    assert deployed["runtime_clips"] == 120 and deployed["runtime_int8_vs_keras"]["mean_cosine"] >= 0.95
    with pytest.raises(ParameterError, match="exists and is not empty"):
        run_demo(tmp_path / "demo")
    with pytest.raises(ParameterError, match="steps must be a positive integer"):
        run_demo(tmp_path / "other", steps=0)
    with pytest.raises(ParameterError, match=r"Unknown recipe option\(s\) \['epochs'\]"):
        run_demo(tmp_path / "other", recipe={"epochs": 3})


def test_data_without_both_corpora_is_refused_before_any_work(tmp_path):
    (tmp_path / "audio").mkdir()
    soundfile.write(tmp_path / "audio" / "speech.wav", np.zeros(16000, np.float32), 16000)
    soundfile.write(tmp_path / "audio" / "1_george_9.wav", np.zeros(8000, np.float32), 8000)
    with pytest.raises(ParameterError, match="needs FSDD files .* found 1 FSDD and 0 LibriSpeech"):
        run_demo(tmp_path / "demo", data=tmp_path / "audio")
    assert not (tmp_path / "demo").exists()


def test_the_repository_demo_corpus_is_complete_and_attributed():
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
    from trillsson_tf.data import find_audio

    items = find_audio(root)
    fsdd = [item for item in items if "digit" in item.labels]
    librispeech = [item for item in items if "chapter" in item.labels]
    assert len(fsdd) == 3000 and len(librispeech) == 100
    assert len({item.labels["speaker"] for item in librispeech}) == 10
    with open(os.path.join(root, "README.md")) as handle:
        readme = handle.read()
    assert "CC BY-SA 4.0" in readme and "CC BY 4.0" in readme and "Jakobovski" in readme and "Panayotov" in readme
    assert os.path.isfile(os.path.join(root, "librispeech", "LICENSE.TXT"))
