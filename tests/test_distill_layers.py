"""Layer-wise distillation: the DistilHuBERT student, time alignment, loss falling, resume, .tflite with builtins."""

import glob
import json
import os

import numpy as np
import pytest

from trillsson_tf import models
from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.train.distill_layers import alignment_matrix, distill_layers, layer_loss
from trillsson_tf.errors import ParameterError
from trillsson_tf.teachers.layers import load_layered_teacher
from trillsson_tf.models import distil

TINY = {"width": 16, "depth": 1}


@pytest.fixture(scope="module")
def files():
    return sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_5.wav")))[:40]


@pytest.fixture(scope="module")
def teacher(tiny_layered_teacher):
    return load_layered_teacher(tiny_layered_teacher, layers="low,high", hop_samples=320, field_samples=400)


def test_distil_small_is_distilhubert_sized():
    config = models.get_preset("distil-small").config
    assert distil.encoder_parameters(**config) == 23_498_240  # DistilHuBERT: 23.5 M without the heads
    assert distil.sized_config(94_700_000 // 4)["width"] == 768  # 25% of HuBERT Base gives its layout back
    small = distil.sized_config(82_056)  # 25% of speech_embedding
    encoder = distil.build_encoder(**small)
    assert encoder.count_params() == distil.encoder_parameters(**small) <= 82_056
    assert (
        encoder(np.zeros((1, 16000), np.float32)).shape == (1, distil.num_frames(16000), small["width"]) == (1, 49, 48)
    )
    assert distil.frame_geometry() == (320, 400)
    with pytest.raises(ParameterError, match="width=40 must be a multiple of heads=3"):
        distil.build_encoder(width=40, heads=3)
    with pytest.raises(ParameterError, match="Unknown option.*'wdth'.*Expected some of"):
        models.build("distil-small", wdth=8)


@pytest.mark.slow
def test_student_converts_with_builtin_ops():
    from trillsson_tf._keras import tf
    from trillsson_tf.litert import op_table

    encoder = distil.build_encoder(**distil.scaled_config(32))
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, (1, 16000)).astype(np.float32)
    call = tf.function(lambda audio_samples: {"frames": encoder(audio_samples, training=False)})
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [call.get_concrete_function(tf.TensorSpec([1, 16000], tf.float32, name="audio_samples"))], encoder
    )
    content = converter.convert()
    ops = {row["op"] for row in op_table(content)}
    assert {"SPLIT", "CONV_2D", "CONCATENATION", "BATCH_MATMUL"} <= ops  # grouped conv as split + convs + concat
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)
    from ai_edge_litert.interpreter import Interpreter

    frames = Interpreter(model_content=content).get_signature_runner()(audio_samples=audio)["frames"]
    np.testing.assert_allclose(frames, encoder(audio).numpy(), atol=1e-4)


def test_alignment_and_loss():
    spans = np.array([[0, 12512], [1280, 13792]])
    matrix = alignment_matrix(spans, 49, hop_samples=320, field_samples=400)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    # Student frame j is centred on 320 j + 200: frames 0-38 fall in the first span, 4-42 in the second.
    assert matrix[0, 38] == pytest.approx(1 / 39) and matrix[0, 39] == 0 and matrix[1, 3] == 0 and matrix[1, 4] > 0
    identity = alignment_matrix(
        np.stack([np.arange(5) * 320, np.arange(5) * 320 + 400], 1), 5, hop_samples=320, field_samples=400
    )
    np.testing.assert_array_equal(identity, np.eye(5))
    target = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    assert float(layer_loss(target, target)) == pytest.approx(-np.log(1 / (1 + np.exp(-1.0))), abs=1e-5)


def test_tiny_teacher_distillation_loss_falls_and_resumes(tmp_path, teacher, files):
    options = dict(
        out_dir=tmp_path / "run",
        teacher=teacher,
        student_options=TINY,
        batch_size=8,
        lr=3e-3,
        checkpoint_every=10,
        cache_dir=tmp_path / "cache",
        validation_fraction=0.2,
    )
    record = distill_layers(files, steps=30, **options)
    assert len(record["loss_history"]) == 3
    # Batch losses of 8 segments are noisy; the loss on the held-out files (steps 10, 20, 30) is not.
    validation = [loss for _, loss in record["validation_history"]]
    assert len(validation) == 3 and validation[-1] < 0.95 * validation[0]
    assert set(record["loss_history"][-1][2]) == {"low", "high"}
    assert record["student"]["config"]["width"] == 16 and record["teacher"]["layers"] == ["low", "high"]
    with open(os.path.join(record["export"], "trillsson_tf.json")) as handle:
        metadata = json.load(handle)
    assert (
        metadata["export_type"] == "layer_student"
        and metadata["encoder"] == "encoder"
        and metadata["segment_samples"] == 16000
    )
    from trillsson_tf.teachers import load_teacher

    assert load_teacher(record["export"]).embedding_dim == 16  # the export is an ordinary embedding model too
    resumed = distill_layers(files, steps=40, resume=True, **options)
    assert resumed["resumed_from_step"] == 30 and resumed["step"] == 40
    assert [step for step, _, _ in resumed["loss_history"]] == [10, 20, 30, 40]
    with pytest.raises(ParameterError, match="exists and is not empty"):
        distill_layers(files, steps=40, **options)
    with pytest.raises(ParameterError, match="Cannot resume.*student"):
        distill_layers(files, steps=50, resume=True, **{**options, "student_options": {"width": 32}})


def test_bad_input_is_refused(tmp_path, teacher, files):
    with pytest.raises(ParameterError, match=r"no layer\(s\) \['mid'\]\. Its layers are: \['low', 'high'\]"):
        distill_layers(files, out_dir=tmp_path, teacher=teacher.spec, layers="mid")
    with pytest.raises(ParameterError, match="Unknown layer-distillation student 'big'"):
        distill_layers(files, out_dir=tmp_path, teacher=teacher, student="big")
    with pytest.raises(ParameterError, match="shorter than the teacher's window"):
        distill_layers(files, out_dir=tmp_path, teacher="speech_embedding", segment_samples=8000)


def test_augmented_views_add_segments_with_their_own_targets(tmp_path, teacher, files):
    options = dict(
        teacher=teacher,
        student_options=TINY,
        batch_size=4,
        steps=2,
        checkpoint_every=2,
        cache_dir=tmp_path / "cache",
        validation_fraction=0.0,
    )
    plain = distill_layers(files, out_dir=tmp_path / "plain", **options)
    views = distill_layers(files, out_dir=tmp_path / "views", augment=2, **options)
    assert views["data"]["train_segments"] > 2 * plain["data"]["train_segments"] - len(files)
    assert views["data"]["augmented_views_per_file"] == 2
    with pytest.raises(ParameterError, match="augment must be a number of views"):
        distill_layers(files, out_dir=tmp_path / "bad", augment=-1, **options)


def test_hidden_states_concatenate_every_layer():
    encoder = distil.build_encoder(**{**distil.scaled_config(16, depth=2), "conv_channels": 16})
    states = distil.with_hidden_states(encoder)
    assert states.output_shape[-1] == 3 * 16 and states.count_params() == encoder.count_params()
    assert distil.with_hidden_states(states) is states
    audio = np.random.default_rng(0).normal(0, 0.1, (1, 16000)).astype(np.float32)
    np.testing.assert_allclose(states(audio).numpy()[..., -16:], encoder(audio).numpy(), atol=1e-6)


def test_a_resumed_run_continues_the_uninterrupted_stream(tmp_path, teacher, files):
    """The data iterator is checkpointed: stopping at step 10 and resuming gives the same step-20 loss.

    A constant learning rate (a cosine schedule depends on the total steps) and no dropout (its
    masks come from the process's random state, which no checkpoint holds).
    """
    options = dict(
        teacher=teacher,
        student_options={**TINY, "dropout": 0.0},
        batch_size=4,
        lr=3e-3,
        lr_schedule="constant",
        checkpoint_every=10,
        cache_dir=tmp_path / "cache",
        validation_fraction=0.2,
    )
    whole = distill_layers(files, out_dir=tmp_path / "whole", steps=20, **options)
    distill_layers(files, out_dir=tmp_path / "split", steps=10, **options)
    resumed = distill_layers(files, out_dir=tmp_path / "split", steps=20, resume=True, **options)
    assert resumed["loss_history"][-1][0] == 20
    assert resumed["loss_history"][-1][1] == pytest.approx(whole["loss_history"][-1][1], rel=1e-5)
    data = whole["data"]
    assert data["train_records"] == data["train_files"] and data["train_files"] + data["validation_files"] == 40
    assert data["validation_segments"] == data["validation_files"] > 0 and data["shards_read"] >= 1


def test_frame_statistics_pool_every_frame_of_every_segment():
    from types import SimpleNamespace

    from trillsson_tf.train.distill_layers import _frame_moments

    rows = np.random.default_rng(0).normal(size=(50, 3 * 4)) * np.arange(1, 13) + np.arange(12)  # 3 frames x 4 dims
    scan = SimpleNamespace(target_mean=rows.mean(0), target_std=rows.std(0))
    mean, std = _frame_moments(scan, 4)
    frames = rows.reshape(-1, 4)
    np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, frames.std(0), rtol=1e-5)
