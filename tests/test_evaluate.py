"""Evaluation: fidelity and probes on toy cases with known answers, and end to end on real audio."""

import glob
import json
import os

import numpy as np
import pytest

from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.apps.cli import main
from trillsson_tf.errors import ParameterError
from trillsson_tf.apps.evaluate import evaluate, format_table, probe_accuracy
from trillsson_tf.metrics import fidelity


def test_fidelity_known_answers():
    same = fidelity([[1.0, 2.0], [3.0, -1.0]], [[1.0, 2.0], [3.0, -1.0]])
    assert same["mse"] == 0.0 and same["mean_cosine"] == pytest.approx(1.0) and same["min_cosine"] == pytest.approx(1.0)
    assert same["centered_cosine"] == pytest.approx(1.0) and same["r2"] == pytest.approx(1.0)
    orthogonal = fidelity([[1.0, 0.0]], [[0.0, 1.0]])
    assert orthogonal["mse"] == pytest.approx(1.0) and orthogonal["mean_cosine"] == pytest.approx(0.0)


def test_a_constant_answer_scores_high_raw_cosine_but_zero_centered_cosine():
    """The trap of raw cosine: teacher vectors far from zero, a student that outputs their mean."""
    rng = np.random.default_rng(0)
    teacher = 10.0 + rng.normal(size=(200, 8))
    train = 10.0 + rng.normal(size=(500, 8))
    constant = np.broadcast_to(train.mean(axis=0), teacher.shape)
    report = fidelity(teacher, constant, center=train.mean(axis=0), training_targets=train)
    assert report["mean_cosine"] > 0.98 and report["centered_on"] == "training targets"
    assert report["centered_cosine"] == pytest.approx(0.0, abs=1e-9) and report["r2"] < 0.05
    assert report["baselines"]["training_mean"]["mean_cosine"] == pytest.approx(report["mean_cosine"])
    # A student that follows the deviations scores high centered cosine and R² where the constant cannot.
    close = fidelity(teacher, teacher + 0.1 * rng.normal(size=teacher.shape), center=train.mean(axis=0))
    assert close["centered_cosine"] > 0.99 and close["r2"] > 0.98
    nearest = report["baselines"]["nearest_training_target"]
    assert 0.0 < nearest["centered_cosine"] < 1.0 and nearest["mean_cosine"] > report["mean_cosine"]
    with pytest.raises(ParameterError, match="center must be one"):
        fidelity(teacher, constant, center=np.zeros(3))


def test_probe_on_separable_and_on_uninformative_vectors():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 20)
    centres = {"a": [5, 0], "b": [0, 5], "c": [-5, -5]}
    separable = np.array([centres[label] for label in labels]) + rng.normal(0, 0.3, (60, 2))
    result = probe_accuracy(separable, labels)
    assert result == {
        "accuracy": 1.0,
        "protocol": "5-fold",
        "classes": 3,
        "n": 60,
        "ci95": pytest.approx([0.9398, 1.0], abs=1e-4),
    }
    noise = rng.normal(size=(60, 2))
    assert probe_accuracy(noise, labels)["accuracy"] < 0.6
    split = np.where(np.arange(60) % 4 == 0, "test", "train")
    # 15 test files: the Wilson interval of 15/15 is wider than that of 60/60
    assert probe_accuracy(separable, labels, split=split) == {
        "accuracy": 1.0,
        "protocol": "split",
        "classes": 3,
        "n": 60,
        "ci95": pytest.approx([0.7961, 1.0], abs=1e-4),
    }
    assert probe_accuracy(separable, labels, normalization="l2")["accuracy"] == 1.0


def test_speaker_normalisation_removes_a_speaker_offset():
    rng = np.random.default_rng(1)
    labels = np.tile(["yes", "no"], 40)
    speakers = np.repeat(["s1", "s2", "s3", "s4"], 20)
    offsets = {"s1": 0.0, "s2": 40.0, "s3": -40.0, "s4": 80.0}
    vectors = np.stack(
        [
            [(1.0 if label == "yes" else -1.0) + offsets[s] + rng.normal(0, 0.3), offsets[s] * 2 + rng.normal(0, 0.3)]
            for label, s in zip(labels, speakers)
        ]
    )
    assert probe_accuracy(vectors, labels, normalization="speaker", speakers=speakers)["accuracy"] == 1.0


def test_bad_probe_input():
    with pytest.raises(ParameterError, match="Unknown normalization 'zscore'.*l2"):
        probe_accuracy(np.zeros((4, 2)), ["a", "b", "a", "b"], normalization="zscore")
    with pytest.raises(ParameterError, match="at least 2 classes"):
        probe_accuracy(np.zeros((4, 2)), ["a"] * 4)
    with pytest.raises(ParameterError, match="needs 2 files per class"):
        probe_accuracy(np.zeros((3, 2)), ["a", "a", "b"])


def test_arabic_speech_commands_folder_probes_keyword_and_speaker_not_round(tmp_path):
    import shutil

    sources = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_0.wav")))
    for index, (keyword, speaker, take) in enumerate(
        (k, s, r) for k in ("yes", "no") for s in ("00000001", "00000002") for r in ("01", "02")
    ):
        (tmp_path / keyword).mkdir(exist_ok=True)
        shutil.copy(sources[index], tmp_path / keyword / f"{speaker}_NO_{take}.wav")
    report = evaluate("mfcc", tmp_path)  # rounds are takes, not a task; the split has 'val' too: k-fold
    assert set(report["probes"]) == {"keyword", "speaker"} and report["files"] == 8
    assert report["probes"]["speaker"]["student"]["protocol"] == "4-fold"  # 4 clips a speaker


def test_teacher_against_itself_on_real_audio(tmp_path):
    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_[0-7].wav")))[::2]
    report = evaluate("speech_embedding", files, teacher="speech_embedding", out_json=tmp_path / "r.json")
    assert report["fidelity"]["mean_cosine"] == pytest.approx(1.0, abs=1e-6) and report["fidelity"]["mse"] < 1e-9
    takes = [int(os.path.basename(path)[:-4].split("_")[2]) for path in files]
    assert report["fidelity"]["files"] == sum(take < 5 for take in takes)  # fidelity on the test takes only
    assert set(report["probes"]) == {"digit", "speaker"}
    for results in report["probes"].values():
        assert results["student"] == results["teacher"] and results["student"]["protocol"] == "split"
    assert report["probes"]["speaker"]["teacher"]["accuracy"] > 0.5  # real speaker information, 6 classes
    with open(tmp_path / "r.json") as handle:
        assert json.load(handle)["probes"] == report["probes"]
    assert "speaker" in format_table(report) and "mean cosine 1.0000" in format_table(report)
    with pytest.raises(ParameterError, match="Unknown label column.*digit"):
        evaluate("speech_embedding", files, tasks=["emotion"])


def test_cli_evaluate_prints_a_table_and_reports_errors(tmp_path, capsys):
    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,loud\n" + "".join(f"{os.path.basename(f)},{i % 2}\n" for i, f in enumerate(files)))
    status = main(
        [
            "evaluate",
            "--model",
            "speech_embedding",
            "--data",
            os.path.join(SAMPLE_AUDIO_DIR, "librispeech"),
            "--labels",
            str(labels),
            "--tasks",
            "sex",
            "loud",
        ]
    )
    assert status == 0 and "sex" in capsys.readouterr().out
    assert main(["evaluate", "--model", "nothing-like-a-model", "--data", str(tmp_path)]) == 2
    assert "No audio found" in capsys.readouterr().err
    assert main(["distill", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--teacher", "bert"]) == 2
    assert "Unknown teacher 'bert'" in capsys.readouterr().err


def test_ccc_metric_needs_a_teacher_with_as_many_scores(tmp_path):
    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))[:4]
    with pytest.raises(ParameterError, match="metric='ccc' compares"):
        evaluate("prosody", files, metric="ccc")
    with pytest.raises(ParameterError, match="Unknown metric 'mae'"):
        evaluate("prosody", files, teacher="prosody", metric="mae")
    report = evaluate("prosody", files, teacher="prosody", metric="ccc")  # a teacher against itself
    assert report["ccc"]["per_score"] == {"loudness_range": 1.0, "pitch": 1.0, "tilt": 1.0} and report["probes"] == {}
    assert "CCC against the teacher on 4 files" in format_table(report)
    with pytest.raises(ParameterError, match="one model output per teacher score: the model gives 96"):
        evaluate("speech_embedding", files, teacher="prosody", metric="ccc")


def test_speaker_verification_beside_the_mfcc_baseline(tmp_path):
    """Bundled LibriSpeech (10 speakers x 2): EER with its interval for model and baseline; probe intervals."""
    from trillsson_tf.audio import SAMPLE_AUDIO_DIR
    from trillsson_tf.apps.evaluate import format_table

    folder = os.path.join(SAMPLE_AUDIO_DIR, "librispeech")
    report = evaluate("mfcc", folder, baseline="mfcc", tasks=["speaker"])
    model, baseline = report["verification"]["student"], report["verification"]["baseline"]
    assert model == baseline and model["speakers"] == 10 and model["target_trials"] == 10 and model["trials"] == 190
    assert model["eer_ci95"][0] <= model["eer"] <= model["eer_ci95"][1] and model["eer"] < 0.5
    probe = report["probes"]["speaker"]["baseline"]
    assert probe["ci95"][0] <= probe["accuracy"] <= probe["ci95"][1]
    table = format_table(report)
    assert "speaker verification (baseline), 10 speakers, 190 trials: EER" in table
    assert "verification" not in evaluate("mfcc", folder, tasks=["speaker"], verification=False)
