"""Multi-task fine-tuning: AAM-softmax, keyword + speaker heads on bundled FSDD, two-output export and .tflite."""

import glob
import os

import numpy as np
import pytest

from trillsson_tf._keras import tf
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.train.distill_layers import distill_layers
from trillsson_tf.errors import ParameterError
from trillsson_tf.train.finetune import (
    KWS_OUTPUT,
    SV_OUTPUT,
    aam_softmax_logits,
    aam_softmax_loss,
    evaluate_multitask,
    finetune,
)
from trillsson_tf.teachers.layers import load_layered_teacher


@pytest.fixture(scope="module")
def fsdd():
    return sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*.wav")))


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, tiny_layered_teacher, fsdd):
    teacher = load_layered_teacher(tiny_layered_teacher, layers="low,high", hop_samples=320, field_samples=400)
    out = tmp_path_factory.mktemp("distilled")
    record = distill_layers(
        fsdd[::10],
        out_dir=out / "run",
        teacher=teacher,
        student_options={"width": 32, "depth": 1},
        steps=10,
        batch_size=8,
        checkpoint_every=10,
        cache_dir=out / "cache",
        validation_fraction=0.0,
    )
    return record["export"]


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, distilled, fsdd):
    """Both heads trained jointly on the frozen encoder (fast: frames computed once); the fine-tuned mode is a slow test."""
    out = tmp_path_factory.mktemp("finetuned")
    return finetune(
        distilled,
        fsdd,
        out_dir=out / "run",
        sv_holdout=2,
        steps=600,
        batch_size=16,
        lr=1e-2,
        hidden=32,
        speaker_dim=32,
        freeze_encoder=True,
    )


def test_aam_softmax_gradients():
    rng = np.random.default_rng(0)
    embeddings = tf.constant(rng.normal(size=(4, 8)), tf.float64)
    centres = tf.constant(rng.normal(size=(8, 3)), tf.float64)
    labels = tf.constant([0, 1, 2, 1])
    # No margin: plain scaled cosine logits.
    cosine = tf.matmul(tf.nn.l2_normalize(embeddings, -1), tf.nn.l2_normalize(centres, 0))
    np.testing.assert_allclose(
        aam_softmax_logits(embeddings, centres, labels, margin=0.0, scale=10.0), 10.0 * cosine, atol=1e-9
    )
    # The margin lowers only the true-class logit.
    logits = aam_softmax_logits(embeddings, centres, labels, margin=0.3, scale=10.0).numpy()
    target = np.eye(3, dtype=bool)[labels.numpy()]
    assert np.all(logits[target] < 10.0 * cosine.numpy()[target])
    np.testing.assert_allclose(logits[~target], 10.0 * cosine.numpy()[~target], atol=1e-9)
    # Gradients are finite, match finite differences, and a step along them brings each row to its centre.
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        loss = aam_softmax_loss(embeddings, centres, labels, margin=0.3, scale=10.0)
    gradient = tape.gradient(loss, embeddings).numpy()
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 1e-3
    step = 1e-6
    bumped = embeddings.numpy().copy()
    bumped[1, 2] += step
    numeric = (
        float(aam_softmax_loss(tf.constant(bumped), centres, labels, margin=0.3, scale=10.0)) - float(loss)
    ) / step
    assert numeric == pytest.approx(gradient[1, 2], rel=1e-3, abs=1e-6)
    moved = embeddings - 0.5 * gradient
    before = np.sum(cosine.numpy() * target, axis=1)
    after = np.sum(tf.matmul(tf.nn.l2_normalize(moved, -1), tf.nn.l2_normalize(centres, 0)).numpy() * target, axis=1)
    assert np.all(after > before) and float(aam_softmax_loss(moved, centres, labels, margin=0.3, scale=10.0)) < float(
        loss
    )


def test_multitask_finetune_beats_chance(finetuned):
    scores = finetuned["scores"]
    # 10 digits: chance is 0.1; 21 of 120 right by chance has probability 0.7% (the encoder is a 10-step student).
    assert scores["kws"]["clips"] == 120 and scores["kws"]["accuracy"] >= 21 / 120
    low, high = scores["kws"]["ci95"]  # Wilson's interval around the accuracy
    assert low < scores["kws"]["accuracy"] < high and high - low < 0.2
    low, high = scores["sv"]["eer_ci95"]  # speaker bootstrap
    assert low <= scores["sv"]["eer"] <= high
    assert (
        scores["sv"]["speakers"] == 2 and scores["sv"]["trials"] == 100 * 99 // 2 and 0.0 <= scores["sv"]["eer"] <= 1.0
    )
    first, last = finetuned["loss_history"][0], finetuned["loss_history"][-1]
    assert set(last[2]) == {"kws", "sv"} and last[1] < first[1]
    assert len(finetuned["student"]["config"]["holdout_speakers"]) == 2
    assert not set(finetuned["student"]["config"]["holdout_speakers"]) & set(
        finetuned["student"]["config"]["train_speakers"]
    )


def test_two_output_export_tflite_and_runtime(finetuned, fsdd, tmp_path):
    from trillsson_tf.converters.tflite import convert
    from trillsson_tf.runtime import TFLiteModel

    export = finetuned["export"]
    signature = tf.saved_model.load(export).signatures["serving_default"]
    assert set(signature.structured_outputs) == {KWS_OUTPUT, SV_OUTPUT}
    card = convert(export, tmp_path / "kws_sv.tflite")
    assert {output["name"] for output in card["outputs"]} == {KWS_OUTPUT, SV_OUTPUT} and card["fixed_samples"] == 16000
    assert min(value["mean_cosine"] for value in card["parity"]["outputs"].values()) > 0.99999
    assert "SPLIT" in {row["op"] for row in card["ops"]}  # the grouped positional conv, as builtins
    runtime = TFLiteModel(tmp_path / "kws_sv.tflite", num_threads=1)
    assert runtime.output_keys == (KWS_OUTPUT, SV_OUTPUT) and runtime.kind.name == "waveform"
    from trillsson_tf._keras import keras

    model = keras.models.load_model(os.path.join(export, "model.keras"))
    clips = np.stack([np.resize(load_audio(path), 16000) for path in fsdd[:3]])
    outputs, reference = runtime(clips), model(clips)
    compiled = TFLiteModel(tmp_path / "kws_sv.tflite", num_threads=1, api="compiled")(clips)  # LiteRT 2.x
    for name in (KWS_OUTPUT, SV_OUTPUT):
        assert outputs[name].shape == tuple(reference[name].shape)
        np.testing.assert_allclose(compiled[name], outputs[name], rtol=1e-5, atol=1e-5 * np.abs(outputs[name]).max())
        np.testing.assert_allclose(outputs[name], reference[name].numpy(), atol=1e-4)
    subset = [path for path in fsdd if path.endswith("_0.wav")]
    report = evaluate_multitask(tmp_path / "kws_sv.tflite", subset, kws="digit", sv="speaker")
    keras_report = evaluate_multitask(export, subset, kws="digit", sv="speaker")
    assert report["kws"]["clips"] == keras_report["kws"]["clips"] == 60 and report["sv"]["speakers"] == 2
    assert abs(report["kws"]["accuracy"] - keras_report["kws"]["accuracy"]) <= 2 / 60


def test_balanced_batches_mix_keywords_and_speakers():
    from trillsson_tf.train.finetune import _BatchSampler

    # 90 keyword clips of speakers 0-2 and one long clip each of speakers 3-5 (no keyword label).
    keyword = np.array([i % 10 for i in range(90)] + [-1, -1, -1], np.int32)
    speaker = np.array([i % 3 for i in range(90)] + [3, 4, 5], np.int32)
    sampler = _BatchSampler(keyword, speaker, 16, balance=True)
    assert len(sampler(np.random.default_rng(0))) == 32  # 16 per task, as each task gets alone
    clips = np.concatenate([sampler(np.random.default_rng(seed)) for seed in range(200)])
    # Half of every batch is keyword clips; the other half sees each speaker equally often.
    assert np.mean(keyword[clips] >= 0) == pytest.approx(0.5 + 0.5 * 3 / 6, abs=0.03)
    assert np.bincount(speaker[clips], minlength=6)[3:] / len(clips) == pytest.approx([0.5 / 6] * 3, abs=0.015)
    uniform = np.concatenate(
        [_BatchSampler(keyword, speaker, 16, balance=False)(np.random.default_rng(s)) for s in range(200)]
    )
    assert np.mean(speaker[uniform] >= 3) < 0.06
    keyword_only = _BatchSampler(keyword, np.full_like(speaker, -1), 16, balance=True)(np.random.default_rng(0))
    assert np.all(keyword[keyword_only] >= 0) and len(keyword_only) == 16


def test_cli_convert_prints_parity_of_both_outputs(finetuned, tmp_path, capsys):
    from trillsson_tf.apps.cli import main

    assert main(["convert", finetuned["export"], "--quantize", "float32", "--out", str(tmp_path / "mt.tflite")]) == 0
    printed = capsys.readouterr().out
    assert f"{KWS_OUTPUT} mean cosine" in printed and f"{SV_OUTPUT} mean cosine" in printed


@pytest.mark.slow
def test_int8_keeps_the_waveform_frontend_float(finetuned, fsdd, tmp_path):
    from trillsson_tf.converters.waveform import convert_waveform

    card = convert_waveform(
        finetuned["export"], tmp_path / "int8.tflite", quantize="int8", representative_audio=fsdd[::12]
    )
    assert {"clip_norm", "conv0", "conv0_norm", "conv0_gelu"} <= set(card["float_layers"])
    # 0.988 on this 10-step test student (0.9986-0.9995 on the benchmark's fine-tuned distil-small).
    assert min(value["mean_cosine"] for value in card["parity"]["outputs"].values()) > 0.98


@pytest.mark.slow
def test_fine_tuned_mode_trains_the_encoder_and_resumes(distilled, fsdd, tmp_path):
    options = dict(out_dir=tmp_path / "run", sv_holdout=2, batch_size=8, hidden=16, speaker_dim=16, checkpoint_every=10)
    first = finetune(distilled, fsdd, steps=10, **options)
    resumed = finetune(distilled, fsdd, steps=20, resume=True, **options)
    assert (
        first["step"] == 10 and resumed["step"] == 20 and [step for step, _, _ in resumed["loss_history"]] == [10, 20]
    )
    from trillsson_tf._keras import keras

    before = keras.models.load_model(os.path.join(distilled, "model.keras")).get_layer("encoder").get_weights()
    after = keras.models.load_model(os.path.join(resumed["export"], "model.keras")).get_layer("encoder").get_weights()
    assert max(float(np.abs(a - b).max()) for a, b in zip(before, after)) > 0


def test_bad_inputs(distilled, fsdd, tmp_path):
    with pytest.raises(
        ParameterError,
        match=r"Label column 'word' \(keyword labels\) not found.*\['digit', 'speaker', 'split', 'take'\]",
    ):
        finetune(distilled, fsdd, out_dir=tmp_path / "a", kws_labels="word")
    missing_nine = [
        path
        for path in fsdd
        if not (os.path.basename(path).startswith("9_") and not path.endswith(("_0.wav", "_1.wav")))
    ]
    with pytest.raises(
        ParameterError, match=r"Keyword class\(es\) \['9'\] appear in the test files but never in training"
    ):
        finetune(distilled, missing_nine, out_dir=tmp_path / "b", sv_labels=None)
    one_speaker = [path for path in fsdd if "_george_" in path]
    with pytest.raises(ParameterError, match="at least 2 scoring speakers"):
        finetune(distilled, one_speaker, out_dir=tmp_path / "c")
    with pytest.raises(ParameterError, match="not a layer-distilled export"):
        finetune(tmp_path, fsdd, out_dir=tmp_path / "d")
    with pytest.raises(ParameterError, match="pass freeze_encoder=True"):
        finetune(load_layered_teacher("speech_embedding"), fsdd, out_dir=tmp_path / "e")
    with pytest.raises(ParameterError, match="Give at least one task"):
        finetune(distilled, fsdd, out_dir=tmp_path / "f", kws_labels=None, sv_labels=None)
    with pytest.raises(ParameterError, match="head_steps"):
        finetune(distilled, fsdd, out_dir=tmp_path / "g", steps=10, head_steps=11)


def test_cli_reports_errors_with_status_2(tmp_path, fsdd, capsys):
    from trillsson_tf.apps.cli import main

    status = main(
        [
            "finetune",
            str(tmp_path),
            "--data",
            os.path.dirname(fsdd[0]),
            "--out",
            str(tmp_path / "o"),
            "--kws-labels",
            "digit",
            "--sv-labels",
            "speaker",
        ]
    )
    assert status == 2 and "not a layer-distilled export" in capsys.readouterr().err
    status = main(
        ["distill-layers", "--data", os.path.dirname(fsdd[0]), "--out", str(tmp_path / "d"), "--layers", "7,99"]
    )
    assert status == 2 and "Its layers are: ['1'" in capsys.readouterr().err
