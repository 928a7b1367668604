"""The demo job as a smoke run: real teacher, real distillation, export, evaluation, report."""

import json
import os

import numpy as np
import pytest
import soundfile

from trillsson_tf.apps.demo import DEMO_TEACHER, FAST_STEPS, run_demo, summary
from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.errors import ParameterError


def test_fast_demo_writes_the_report(tmp_path):
    """Bundled samples: CAM++ -> tiny_cnn_k5 on FSDD + 5 LibriSpeech speakers, scored on the 5 others."""
    report = run_demo(tmp_path / "demo", steps=FAST_STEPS)
    with open(tmp_path / "demo" / "report.json") as handle:
        assert json.load(handle) == report
    assert report["teacher"]["name"] == DEMO_TEACHER == "campplus" and report["teacher"]["parameters"] == 6_848_544
    assert report["student"]["parameter_ratio_to_teacher"] < 0.05  # the bound: at most 1/20 of the teacher
    assert "Apache-2.0" in report["teacher"]["licence"]
    ((name, result),) = report["evaluation"].items()
    assert name == "librispeech" and result["speakers"] == 5 and result["clips"] == 10 and result["target_trials"] == 5
    for role in ("teacher", "student", "mfcc"):
        sv = result["verification"][role]
        assert 0.0 <= sv["eer_ci95"][0] <= sv["eer"] <= sv["eer_ci95"][1] <= 1.0
    assert result["verification"]["teacher"]["eer"] < 0.2  # CAM++ separates five read-speech voices
    assert set(result["probes"]) == {"speaker", "sex"} and set(result["probes"]["speaker"]) == {
        "teacher",
        "student",
        "mfcc",
    }
    assert set(result["fidelity"]) == {"mean_cosine", "centered_cosine", "r2", "training_mean_mean_cosine"}
    assert os.path.isfile(os.path.join(report["student"]["export"], "saved_model.pb"))
    deployed = report["tflite"]
    assert deployed["parity_mean_cosine"]["float32"] >= 0.9999
    assert deployed["size_ratio_to_float32"]["float16"] < 0.6 and deployed["size_ratio_to_float32"]["int8"] < 0.6
    assert all(os.path.isfile(path) for path in deployed["files"].values())
    assert os.path.isfile(deployed["micro"]["source"]) and 0 < deployed["micro"]["arena_bytes"] < 2**20
    training = report["training"]
    assert (
        training["steps"] == FAST_STEPS and training["speakers"] == 6 + 5 and training["records"] == training["files"]
    )
    text = summary(report)
    assert "librispeech EER % (5 speakers, 10 clips)" in text and "MFCC" in text
    assert deployed["runtime_clips"] == 10 and deployed["runtime_int8_vs_keras"]["mean_cosine"] >= 0.95
    with pytest.raises(ParameterError, match="exists and is not empty"):
        run_demo(tmp_path / "demo")
    with pytest.raises(ParameterError, match="steps must be a positive integer"):
        run_demo(tmp_path / "other", steps=0)
    with pytest.raises(ParameterError, match=r"Unknown recipe option\(s\) \['epochs'\]"):
        run_demo(tmp_path / "other", recipe={"epochs": 3})


def test_data_without_unseen_speakers_is_refused_before_any_work(tmp_path):
    (tmp_path / "audio").mkdir()
    soundfile.write(tmp_path / "audio" / "speech.wav", np.zeros(16000, np.float32), 16000)
    soundfile.write(tmp_path / "audio" / "1_george_9.wav", np.zeros(8000, np.float32), 8000)
    with pytest.raises(ParameterError, match="needs training speech and unseen speakers: .* 0 librispeech files"):
        run_demo(tmp_path / "demo", data=tmp_path / "audio")
    assert not (tmp_path / "demo").exists()


def test_demo_never_writes_into_its_data(tmp_path):
    with pytest.raises(ParameterError, match="--data"):
        run_demo(os.path.join(SAMPLE_AUDIO_DIR, "demo_out"), overwrite=True)
    assert not os.path.exists(os.path.join(SAMPLE_AUDIO_DIR, "demo_out"))


def test_the_repository_demo_corpus_is_complete_and_attributed():
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
    from trillsson_tf.train.data import find_audio

    items = find_audio(root)
    fsdd = [item for item in items if "digit" in item.labels]
    librispeech = [item for item in items if "chapter" in item.labels]
    assert len(fsdd) == 3000 and len(librispeech) == 100
    assert len({item.labels["speaker"] for item in librispeech}) == 10
    speechocean = find_audio(os.path.join(root, "speechocean762", "metadata.csv"))
    roles = {
        role: {item.labels["speaker"] for item in speechocean if item.labels["role"] == role}
        for role in ("train", "unseen")
    }
    assert len(roles["train"]) == 150 and len(roles["unseen"]) == 100 and not roles["train"] & roles["unseen"]
    assert all(os.path.isfile(item.path) for item in speechocean) and len(speechocean) == 150 * 5 + 100 * 4
    with open(os.path.join(root, "README.md")) as handle:
        readme = handle.read()
    assert "CC BY-SA 4.0" in readme and "CC BY 4.0" in readme and "Jakobovski" in readme and "Panayotov" in readme
    assert "speechocean762" in readme and "Zhang" in readme
    assert os.path.isfile(os.path.join(root, "librispeech", "LICENSE.TXT"))
