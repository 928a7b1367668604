"""The demo job as a smoke run: real teacher, real distillation, export, evaluation, report."""
import json
import os

import pytest

from trillsson_tf.apps.demo import FAST_STEPS, run_demo
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
    assert deployed["runtime_clips"] == 120 and deployed["runtime_int8_vs_keras"]["mean_cosine"] >= 0.95
    with pytest.raises(ParameterError, match="exists and is not empty"):
        run_demo(tmp_path / "demo")
    with pytest.raises(ParameterError, match="steps must be a positive integer"):
        run_demo(tmp_path / "other", steps=0)
