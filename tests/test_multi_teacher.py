"""Several teachers, one student: joined targets, a head per teacher, exports whose heads are exact, bad input."""

import argparse
import glob
import json
import os

import numpy as np
import pytest

from trillsson_tf._keras import keras, tf
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.configs import DistillConfig, add_arguments, from_args
from trillsson_tf.train.distill import distill, teacher_output_names
from trillsson_tf.errors import ParameterError
from trillsson_tf.teachers.function import CallableTeacher

SMALL = {"stem_filters": 8, "filters": (16, 24), "strides": (2, 2)}
LOUD_OFFSET = 500.0  # far from zero, in other units than the spectrum: each target is standardised


def _loudness(audio):
    return np.stack([np.log(np.mean(audio**2, 1) + 1e-6) + LOUD_OFFSET, np.abs(audio).max(1) * 100.0], 1)


def _spectrum(audio):
    bands = np.abs(np.fft.rfft(audio[:, :4096], n=4096, axis=1))[:, :1024].reshape(len(audio), 8, 128).mean(2)
    return np.log(bands + 1e-3)


@pytest.fixture(scope="module")
def files():
    return sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*.wav")))[:32]


@pytest.fixture(scope="module")
def run(tmp_path_factory, files):
    out = tmp_path_factory.mktemp("multi")
    teachers = (CallableTeacher(_loudness, name="loud"), CallableTeacher(_spectrum, name="spectrum"))
    record = distill(
        files,
        out_dir=out / "run",
        cache_dir=out / "cache",
        teacher=teachers,
        teacher_weights=(1.0, 3.0),
        student="tiny_cnn",
        student_options=SMALL,
        steps=30,
        batch_size=8,
        lr=3e-3,
        checkpoint_every=15,
        validation_fraction=0.25,
    )
    return out, teachers, record


def test_each_teacher_gets_a_block_weight_and_fidelity(run):
    _, _, record = run
    blocks = record["teacher"]["teachers"]
    assert [b["output"] for b in blocks] == ["loud", "spectrum"] and [b["width"] for b in blocks] == [2, 8]
    assert [b["weight"] for b in blocks] == [0.25, 0.75] and record["teacher"]["spec"] == "loud + spectrum"
    assert record["student"]["config"]["embedding_dim"] == 10
    assert set(record["fidelity"]) == {"loud", "spectrum"}
    assert all(fid["files"] == record["data"]["validation_clips"] > 0 for fid in record["fidelity"].values())
    losses = [loss for _, loss in record["loss_history"]]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_the_export_has_the_backbone_embedding_and_one_head_per_teacher_in_its_units(run, files):
    _, _, record = run
    with open(os.path.join(record["export"], "trillsson_tf.json")) as handle:
        metadata = json.load(handle)
    # tiny_cnn's pooled features (24 wide) are the embedding; the 10-wide row is the projection's output.
    assert metadata["outputs"] == {"embedding": 24, "loud": 2, "spectrum": 8}
    assert metadata["teacher_outputs"] == ["loud", "spectrum"]
    loaded = tf.saved_model.load(record["export"])
    audio = np.stack([load_audio(path)[:4000] for path in files[:3]])
    outputs = {k: v.numpy() for k, v in loaded.signatures["serving_default"](audio_samples=tf.constant(audio)).items()}
    assert abs(float(np.mean(outputs["loud"][:, 0])) - LOUD_OFFSET) < 30  # raw units, not standardised
    assert abs(float(metadata["target_mean"][0]) - LOUD_OFFSET) < 30


def test_the_heads_are_the_projection_folded_exactly(files):
    from trillsson_tf import models
    from trillsson_tf.models.teacher_heads import TeacherBlock, with_output_heads

    keras.utils.set_random_seed(3)
    student = models.build("tiny_cnn", embedding_dim=5, **SMALL)
    scale, offset = np.array([2.0, 3.0, 0.5, 1.0, 4.0]), np.array([100.0, -1.0, 0.0, 7.0, 2.0])
    blocks = [TeacherBlock("a", 0, 2, scale[:2], offset[:2]), TeacherBlock("b", 2, 5, scale[2:], offset[2:])]
    several = with_output_heads(student, blocks, key="embedding")
    audio = np.concatenate([load_audio(path) for path in files[:16]])[: 3 * 40000].reshape(3, 40000)  # 2 chunks each
    z, outputs = student(audio)["embedding"].numpy(), {k: v.numpy() for k, v in several(audio).items()}
    projection = student.chunk_network.get_layer("projection")
    kernel, bias = (w.numpy() for w in (projection.kernel, projection.bias))
    assert outputs["embedding"].shape == (3, 24)  # the projection's input, averaged over the chunks
    np.testing.assert_allclose(outputs["embedding"] @ kernel + bias, z, rtol=1e-4, atol=1e-5)
    for block in blocks:
        expected = z[:, block.start : block.stop] * block.scale + block.offset
        np.testing.assert_allclose(outputs[block.name], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ParameterError, match="unique"):
        with_output_heads(student, [TeacherBlock("a", 0, 2, 1, 0), TeacherBlock("a", 2, 5, 1, 0)], key="embedding")


def test_chunk_vectors_carry_every_head_and_average_to_the_clip(run, files):
    _, _, record = run
    loaded = tf.saved_model.load(record["export"])
    audio = np.concatenate([load_audio(path) for path in files[:12]])[np.newaxis, : 2 * 31200]
    per_chunk = loaded.signatures["frames"](audio_samples=tf.constant(audio))  # the stored signature name
    assert {"embedding", "loud", "spectrum", "start_s"} <= set(per_chunk) and per_chunk["loud"].shape[1] >= 2
    model = keras.models.load_model(os.path.join(record["export"], "model.keras"))
    # hop = chunk step: the chunks the clip averages
    clip, chunks = model(audio), model.chunk_vectors(audio, hop_s=1.95)
    for key in ("embedding", "loud", "spectrum"):
        np.testing.assert_allclose(chunks[key].mean(axis=1), clip[key].numpy(), rtol=1e-4, atol=1e-4)


def test_a_teacher_that_fails_on_some_files_loses_them_counted(tmp_path, files):
    lengths = sorted(len(load_audio(path)) for path in files[:16])
    cut = lengths[4]

    def picky(audio):
        if audio.shape[1] < cut:
            raise ValueError("clip too short for this teacher")
        return _spectrum(audio)

    record = distill(
        files[:16],
        out_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        teacher=(CallableTeacher(_loudness, name="loud"), CallableTeacher(picky, name="picky")),
        student="tiny_cnn",
        student_options=SMALL,
        steps=2,
        batch_size=4,
        checkpoint_every=2,
        validation_fraction=0.0,
    )
    loud, picky_block = record["teacher"]["teachers"]
    assert loud["skipped_files"] == 0 and loud["files_without_target"] == 0
    assert picky_block["skipped_files"] == 4 and picky_block["files_without_target"] == 4
    assert record["data"]["train_records"] == 12


def test_a_resume_with_other_teacher_weights_is_refused_naming_them(tmp_path, files):
    teachers = (CallableTeacher(_loudness, name="loud"), CallableTeacher(_spectrum, name="spectrum"))
    common = dict(
        out_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        teacher=teachers,
        student="tiny_cnn",
        student_options=SMALL,
        batch_size=4,
        checkpoint_every=2,
    )
    distill(files[:8], steps=2, **common)
    with pytest.raises(ParameterError, match="teacher_weights"):
        distill(files[:8], steps=4, resume=True, teacher_weights=(1.0, 2.0), **common)
    with pytest.raises(ParameterError, match="teacher"):
        distill(files[:8], steps=4, resume=True, **{**common, "teacher": teachers[:1]})


def test_options_that_cannot_hold_with_several_teachers_are_refused():
    with pytest.raises(ParameterError, match="2 weight.*3 teacher"):
        DistillConfig(teacher=("prosody", "mfcc", "speech_embedding"), teacher_weights=(1.0, 2.0))
    with pytest.raises(ParameterError, match="teacher_weights"):
        DistillConfig(teacher=("prosody", "mfcc"), teacher_weights=(1.0, 0.0))
    with pytest.raises(ParameterError, match="output_key"):
        DistillConfig(teacher=("prosody", "mfcc"), output_key="embedding")
    with pytest.raises(ParameterError, match="global"):
        DistillConfig(teacher=("prosody", "mfcc"), target_mode="local")
    with pytest.raises(ParameterError, match="need data"):
        distill(None, out_dir="/nonexistent/never", targets="/nonexistent/targets", teacher=("prosody", "mfcc"))
    assert DistillConfig(teacher=("prosody", "mfcc"), teacher_weights=(1, 3)).weights == (0.25, 0.75)


def test_the_command_line_repeats_teacher_and_weight():
    parser = argparse.ArgumentParser()
    add_arguments(parser, DistillConfig)
    several = from_args(
        DistillConfig, parser.parse_args("--teacher a --teacher b --teacher-weight 1 --teacher-weight 2".split())
    )
    assert several.teachers == ("a", "b") and several.weights == pytest.approx((1 / 3, 2 / 3))
    assert from_args(DistillConfig, parser.parse_args(["--teacher", "campplus"])).teacher == "campplus"
    assert from_args(DistillConfig, parser.parse_args([])).teacher == DistillConfig().teacher


def test_teacher_output_names_are_short_and_unique():
    names = teacher_output_names(
        ["campplus", "crepe:form=scores", "/models/speaker.onnx", "https://tfhub.dev/google/trillsson3/1", "crepe"]
    )
    assert names == ["campplus", "crepe", "speaker", "trillsson3", "crepe_2"]
    assert teacher_output_names(["/x/embedding.tflite", "/y/3d.onnx"]) == ["t_embedding", "t_3d"]


def test_tflite_and_the_runtime_carry_every_output_in_clips_frames_and_streams(run, files, tmp_path):
    from trillsson_tf.converters.tflite import convert
    from trillsson_tf.runtime import TFLiteModel

    _, _, record = run
    card = convert(record["export"], tmp_path / "several.tflite", frontend=False)
    assert card["output_keys"] == ["embedding", "loud", "spectrum"]
    assert set(card["parity"]["outputs"]) == {"embedding", "loud", "spectrum"} and card["parity"]["passed"]
    audio = np.concatenate([load_audio(path) for path in files[:12]])[np.newaxis, : 2 * 31200]
    loaded = tf.saved_model.load(record["export"])
    clip = {k: v.numpy() for k, v in loaded.signatures["serving_default"](audio_samples=tf.constant(audio)).items()}
    model = TFLiteModel(tmp_path / "several.tflite")
    outputs, per_chunk = model(audio), model.chunk_vectors(audio, hop_s=0.5)
    for key in ("embedding", "loud", "spectrum"):
        np.testing.assert_allclose(outputs[key], clip[key], rtol=1e-4, atol=1e-4)
        assert per_chunk[key].shape[:2] == (1, len(per_chunk["start_s"]))
    starts, vectors = model.open_stream(hop_s=0.5).feed(audio[0])
    split = model.split(vectors)
    assert len(starts) == len(per_chunk["start_s"])
    np.testing.assert_allclose(split["loud"], per_chunk["loud"][0], rtol=1e-4, atol=1e-4)
    # Files embed to the deployable vector (another output: TFLiteModel(..., output_key="loud")).
    assert model.embed_files(files[:2]).shape == (2, 24)
    assert TFLiteModel(tmp_path / "several.tflite", output_key="loud").embed_files(files[:2]).shape == (2, 2)
