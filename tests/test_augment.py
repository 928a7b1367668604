"""Augmented views: bounded changes, deterministic from the key and seed, cached teacher targets in distill."""

import glob
import os

import numpy as np
import pytest

from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.train.augment import AugmentConfig, augment_clip, augmented_views
from trillsson_tf.train.data import LoadedAudio, find_audio
from trillsson_tf.train.distill import distill
from trillsson_tf.errors import ParameterError
from trillsson_tf.train.targets import file_key, read_targets
from trillsson_tf.teachers import load_teacher

SMALL = {"stem_filters": 8, "filters": (16, 24), "strides": (2, 2)}


@pytest.fixture(scope="module")
def fsdd_files():
    return sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_5.wav")))[:6]


def test_a_view_stays_within_its_ranges(fsdd_files):
    clip = load_audio(fsdd_files[0])
    config = AugmentConfig(speed=(1.2, 1.2), gain_db=(-6.0, -6.0), trim_probability=0.0, noise_probability=0.0)
    view = augment_clip(clip, np.random.default_rng(0), config)
    assert view.dtype == np.float32
    assert abs(len(view) - len(clip) / 1.2) <= 2  # resampled by the speed factor, nothing trimmed
    assert np.max(np.abs(view)) == pytest.approx(np.max(np.abs(clip)) * 10 ** (-6 / 20), rel=0.05)

    loud = AugmentConfig(gain_db=(40.0, 40.0), snr_db=(10.0, 10.0), noise_probability=1.0, trim_probability=1.0)
    view = augment_clip(clip, np.random.default_rng(1), loud)
    assert np.max(np.abs(view)) <= 1.0  # clipped
    assert len(clip) / 1.1 - 2 * 800 - 2 <= len(view) <= len(clip) / 0.9 + 2


def test_views_are_deterministic_and_distinct(fsdd_files):
    clips = [load_audio(path) for path in fsdd_files[:2]]
    loaded = LoadedAudio(find_audio(fsdd_files[:2]), clips, [])
    keys = [file_key(path) for path in fsdd_files[:2]]
    first, first_keys = augmented_views(loaded, keys, 3, seed=0)
    again, again_keys = augmented_views(loaded, keys, 3, seed=0)
    other, other_keys = augmented_views(loaded, keys, 3, seed=1)
    assert len(first.clips) == 6 and len(set(first_keys)) == 6 and first_keys == again_keys
    assert all(np.array_equal(a, b) for a, b in zip(first.clips, again.clips))
    assert not set(first_keys) & set(other_keys)
    assert [item.path for item in first.items] == [fsdd_files[0]] * 3 + [fsdd_files[1]] * 3
    with pytest.raises(ParameterError, match="views must be a positive integer"):
        augmented_views(loaded, keys, 0)


def test_distill_caches_a_target_per_view_and_reuses_them(tmp_path, fsdd_files):
    teacher = load_teacher("speech_embedding")
    options = dict(
        teacher=teacher,
        student_options=SMALL,
        steps=4,
        batch_size=4,
        checkpoint_every=4,
        validation_fraction=0.0,
        cache_dir=tmp_path / "cache",
        augment=2,
    )
    record = distill(fsdd_files, out_dir=tmp_path / "run", **options)
    assert record["data"]["train_files"] == 6 and record["data"]["augmented_views_per_file"] == 2
    _, stored = read_targets(record["data"]["target_cache"])
    assert len(stored) == 6 * 3  # the files and two views of each
    views = [record for record in stored.values() if record.key != file_key(record.path)]
    assert len(views) == 12 and len({len(view.audio) for view in views}) > 1
    computed_before = teacher.padded_clips
    distill(fsdd_files, out_dir=tmp_path / "again", **options)
    assert teacher.padded_clips == computed_before  # every target came from the cache
    with pytest.raises(ParameterError, match="augment must be a number of views"):
        distill(fsdd_files, out_dir=tmp_path / "bad", **{**options, "augment": -1})
