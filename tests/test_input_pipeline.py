"""Streaming targets: build_cache one file at a time, scan_shards, the tf.data training stream."""

import glob
import logging
import os

import numpy as np
import pytest

from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.train.data import CROP_SAMPLES, AudioItem, find_audio, split_items
from trillsson_tf.errors import ParameterError
from trillsson_tf.train.input_pipeline import key_fingerprints, reader_shards, scan_shards, training_dataset
from trillsson_tf.train.targets import build_cache, file_key, read_targets
from trillsson_tf.teachers import Teacher


class StatsTeacher(Teacher):
    """A numpy teacher: [mean, mean |x|, max |x|] per clip or segment; counts the clips it sees."""

    def __init__(self, fail_after=None):
        super().__init__("stats")
        self.calls, self.fail_after = 0, fail_after
        self._finish_init()
        self.calls = 0

    def _embed(self, audio):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("interrupted on purpose")
        self.calls += 1
        return np.stack([audio.mean(1), np.abs(audio).mean(1), np.abs(audio).max(1)], axis=1)


@pytest.fixture(scope="module")
def items():
    """12 real LibriSpeech utterances (1-8 s)."""
    return sorted(find_audio(os.path.join(SAMPLE_AUDIO_DIR, "librispeech")), key=lambda item: item.path)[:12]


def test_build_cache_streams_resumes_and_skips_unreadable_files(tmp_path, items):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    asked = items[:6]
    with pytest.raises(KeyboardInterrupt):
        build_cache(StatsTeacher(fail_after=3), asked, cache_dir=tmp_path / "cache", shard_size=2)
    teacher = StatsTeacher()
    index = build_cache(teacher, asked, cache_dir=tmp_path / "cache", shard_size=2)
    # The interrupted call finished one shard of two files: only the other four are computed again.
    assert (index.computed, index.reused, teacher.calls) == (4, 2, 4)
    assert index.keys == [file_key(item.path) for item in asked] and not index.skipped
    train, _ = split_items(asked, validation_fraction=0.5, seed=0)
    with_views = build_cache(teacher, asked, cache_dir=tmp_path / "cache", views=2, augmented=train, shard_size=2)
    assert with_views.computed == 2 * len(train) and len(with_views.view_keys) == 2 * len(train)
    _, stored = read_targets(index.directory)
    assert len(stored) == 6 + 2 * len(train)

    index = build_cache(teacher, asked + [AudioItem(str(broken), {})], cache_dir=tmp_path / "cache")
    assert [path for path, _ in index.skipped] == [str(broken)] and len(index.items) == 6
    with pytest.raises(ParameterError, match="None of the 1 audio file"):
        build_cache(teacher, [AudioItem(str(broken), {})], cache_dir=tmp_path / "cache")


def test_scan_keeps_moments_and_held_out_clips_and_leaves_out_corrupt_shards(tmp_path, items, caplog):
    teacher = StatsTeacher()
    index = build_cache(teacher, items, mode="local", cache_dir=tmp_path / "cache", shard_size=3)
    _, stored = read_targets(index.directory)
    train, held = split_items(items, validation_fraction=0.3, seed=1)
    assert train and held
    scan = scan_shards(index.directory, teacher=teacher, mode="local", validation_fraction=0.3, seed=1)
    rows = np.concatenate([stored[file_key(item.path)].targets for item in train]).astype(np.float64)
    np.testing.assert_allclose(scan.target_mean, rows.mean(0), rtol=1e-6)
    np.testing.assert_allclose(scan.target_std, rows.std(0), rtol=1e-5)
    assert (scan.train_files, scan.validation_files, scan.target_rows) == (len(train), len(held), len(rows))
    assert scan.validation_audio.shape == (len(held), CROP_SAMPLES) and len(scan.shards) == 4
    first_held = stored[file_key(held[0].path)]
    assert any(np.allclose(row, first_held.targets[0]) for row in scan.validation_targets)
    # Keys narrow the scan to the files asked for (a shared cache holds others).
    asked = [file_key(item.path) for item in train[:2]]
    narrowed = scan_shards(index.directory, teacher=teacher, keys=asked, validation_fraction=0.3, seed=1)
    assert narrowed.train_records == 2 and narrowed.other_records == len(items) - 2
    assert sorted(narrowed.train_fingerprints) == sorted(key_fingerprints(asked))
    # The pipeline filters on those fingerprints: every target row it serves is one of the two files'.
    allowed = np.concatenate([stored[key].targets for key in asked])
    for _, targets in training_dataset(narrowed, batch_size=2, seed=0).take(4):
        assert all(np.isclose(allowed, row, atol=1e-6).all(axis=1).any() for row in targets.numpy())

    shard = scan.shards[1]
    with open(shard, "r+b") as handle:
        handle.truncate(os.path.getsize(shard) // 2)
    with caplog.at_level(logging.WARNING, logger="trillsson_tf.train.input_pipeline"):
        damaged = scan_shards(index.directory, teacher=teacher, validation_fraction=0.3, seed=1)
    assert [path for path, _ in damaged.skipped_shards] == [shard] and len(damaged.shards) == 3
    assert damaged.train_records + damaged.validation_files < scan.train_records + scan.validation_files
    assert "Skipping target shard" in caplog.text and os.path.basename(shard) in caplog.text

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "teacher.json").write_text(open(os.path.join(index.directory, "teacher.json")).read())
    with pytest.raises(ParameterError, match="holds no shards"):
        scan_shards(empty, teacher=teacher)
    with pytest.raises(ParameterError, match="is not a targets folder"):
        scan_shards(tmp_path, teacher=teacher)
    with pytest.raises(ParameterError, match="validation_fraction must be in"):
        scan_shards(index.directory, teacher=teacher, validation_fraction=1.0)


@pytest.mark.parametrize("mode", ["global", "local"])
def test_training_stream_crops_real_audio_with_its_target_and_is_deterministic(tmp_path, items, mode, caplog):
    teacher = StatsTeacher()
    index = build_cache(teacher, items, mode=mode, cache_dir=tmp_path / "cache", shard_size=4)
    _, stored = read_targets(index.directory)
    scan = scan_shards(index.directory, teacher=teacher, validation_fraction=0.0)
    audio, targets = next(iter(training_dataset(scan, batch_size=5, seed=3, shuffle_buffer=8)))
    assert audio.shape == (5, CROP_SAMPLES) and audio.dtype.name == "float32" and targets.shape == (5, 3)
    pcm = {key: np.round(record.audio * 32768).astype(np.int16) for key, record in stored.items()}
    for crop, target in zip(audio.numpy(), targets.numpy()):
        crop = np.round(crop * 32768).astype(np.int16)
        # Each crop is a stretch of one stored clip, and its target is that clip's (segment's) row.
        owner = [
            key
            for key, clip in pcm.items()
            if len(clip) >= CROP_SAMPLES
            and any(
                np.array_equal(crop, clip[s : s + CROP_SAMPLES])
                for s in range(0, len(clip) - CROP_SAMPLES + 1, CROP_SAMPLES if mode == "local" else 1)
            )
        ]
        assert len(owner) == 1
        assert any(np.allclose(target, row) for row in stored[owner[0]].targets[: 1 if mode == "global" else None])
    again, _ = next(iter(training_dataset(scan, batch_size=5, seed=3, shuffle_buffer=8)))
    other, _ = next(iter(training_dataset(scan, batch_size=5, seed=4, shuffle_buffer=8)))
    np.testing.assert_array_equal(audio.numpy(), again.numpy())
    assert not np.array_equal(audio.numpy(), other.numpy())
    with caplog.at_level(logging.WARNING, logger="trillsson_tf.train.input_pipeline"):
        training_dataset(scan, batch_size=5, shuffle_buffer=10_000)
    assert f"shuffle_buffer=10000 is larger than the {scan.train_records} training records" in caplog.text
    with pytest.raises(ParameterError, match="batch_size must be a positive integer"):
        training_dataset(scan, batch_size=0)


def test_a_distillation_resumed_mid_run_repeats_the_uninterrupted_one(tmp_path):
    from trillsson_tf.train.distill import distill

    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_5.wav")))[:16]
    options = dict(
        teacher=StatsTeacher(),
        student_options={"stem_filters": 8, "filters": (16, 24), "strides": (2, 2)},
        batch_size=4,
        checkpoint_every=10,
        lr_schedule="constant",
        cache_dir=tmp_path / "cache",
        validation_fraction=0.2,
        shuffle_buffer=6,
    )
    whole = distill(files, out_dir=tmp_path / "whole", steps=30, **options)
    distill(files, out_dir=tmp_path / "parts", steps=20, **options)
    resumed = distill(files, out_dir=tmp_path / "parts", steps=30, resume=True, **options)
    # Weights, optimizer and the data iterator (shuffle buffer included) come back: the same loss.
    assert resumed["resumed_from_step"] == 20
    np.testing.assert_allclose(resumed["loss_history"][-1][1], whole["loss_history"][-1][1], rtol=1e-5)
    assert whole["data"]["shards"] == 1 and whole["training"]["shuffle_buffer"] == 6
    assert whole["data"]["train_records"] == whole["data"]["train_files"] > 0


def test_readers_split_the_shards_between_them(tmp_path, items, caplog):
    teacher = StatsTeacher()
    index = build_cache(teacher, items, cache_dir=tmp_path / "cache", shard_size=3)
    scan = scan_shards(index.directory, teacher=teacher, validation_fraction=0.0)
    first, second = reader_shards(scan, (2, 0)), reader_shards(scan, (2, 1))
    assert len(first) == len(second) == 2 and sorted(first + second) == scan.shards
    assert reader_shards(scan, (5, 3)) == scan.shards  # fewer shards than readers: each reads all
    with caplog.at_level(logging.WARNING, logger="trillsson_tf.train.input_pipeline"):
        halves = [
            next(iter(training_dataset(scan, batch_size=2, shuffle_buffer=1, pipelines=(5, i))))[0].numpy()
            for i in range(2)
        ]
    assert "4 shard(s) for 5 readers" in caplog.text and not np.array_equal(*halves)
