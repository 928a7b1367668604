"""Teacher-target cache: computed once, reused, resumable; global and local modes."""

import os

import numpy as np
import pytest

from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.train.data import CROP_SAMPLES, find_audio, load_clips
from trillsson_tf.errors import ParameterError
from trillsson_tf.train.targets import cached_targets
from trillsson_tf.teachers import Teacher, load_teacher


class CountingTeacher(Teacher):
    """A numpy teacher ([mean, mean |x|] per clip) that counts calls and can fail on purpose."""

    def __init__(self, fail_after=None):
        super().__init__("counting")
        self.calls, self.fail_after = 0, fail_after
        self._finish_init()
        self.calls = 0

    def _embed(self, audio):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("interrupted on purpose")
        self.calls += 1
        return np.stack([audio.mean(1), np.abs(audio).mean(1)], axis=1)


@pytest.fixture(scope="module")
def loaded():
    files = sorted(find_audio(os.path.join(SAMPLE_AUDIO_DIR, "librispeech")), key=lambda item: item.path)[:6]
    return load_clips(files)


def test_second_run_computes_nothing(tmp_path, loaded):
    teacher = CountingTeacher()
    first = cached_targets(teacher, loaded, cache_dir=tmp_path)
    assert (first.computed, first.reused, teacher.calls) == (6, 0, 6)
    second = cached_targets(teacher, loaded, cache_dir=tmp_path)
    assert (second.computed, second.reused, teacher.calls) == (0, 6, 6)
    for a, b in zip(first.targets, second.targets):
        np.testing.assert_array_equal(a, b)


def test_interrupted_run_resumes_with_the_rest(tmp_path, loaded):
    with pytest.raises(KeyboardInterrupt):
        cached_targets(CountingTeacher(fail_after=5), loaded, cache_dir=tmp_path, shard_size=2)
    teacher = CountingTeacher()
    resumed = cached_targets(teacher, loaded, cache_dir=tmp_path, shard_size=2)
    assert (resumed.computed, resumed.reused, teacher.calls) == (2, 4, 2)


def test_global_and_local_shapes_and_separate_caches(tmp_path, loaded):
    teacher = load_teacher("speech_embedding")
    global_set = cached_targets(teacher, loaded, mode="global", cache_dir=tmp_path)
    local_set = cached_targets(teacher, loaded, mode="local", cache_dir=tmp_path)
    assert local_set.computed == 6 and global_set.directory != local_set.directory
    for clip, global_target, local_target in zip(loaded.clips, global_set.targets, local_set.targets):
        assert global_target.shape == (1, 96)
        assert local_target.shape == (max(1, len(clip) // CROP_SAMPLES), 96)
    np.testing.assert_allclose(global_set.targets[0][0], teacher(loaded.clips[0])["embedding"][0], rtol=1e-5)


def test_unknown_mode_lists_the_modes(tmp_path, loaded):
    with pytest.raises(ParameterError, match="Unknown target mode 'chunk'.*global.*local"):
        cached_targets(CountingTeacher(), loaded, mode="chunk", cache_dir=tmp_path)


def test_shards_hold_audio_as_16_bit_pcm_and_format_1_is_still_read(tmp_path, loaded):
    """Audio read from 16-bit files survives the shard exactly, in half the bytes of float32."""
    import json

    from trillsson_tf._keras import tf
    from trillsson_tf.train.targets import READABLE_FORMATS, TARGETS_FORMAT, TEACHER_FILE, decode_record, load_targets

    teacher = CountingTeacher()
    cached = cached_targets(teacher, loaded, cache_dir=tmp_path)
    shard_bytes = sum(
        os.path.getsize(os.path.join(cached.directory, name))
        for name in os.listdir(cached.directory)
        if name.endswith(".tfrecord")
    )
    samples = sum(len(clip) for clip in loaded.clips)
    assert 2 * samples <= shard_bytes < 2.1 * samples + 4096  # int16 audio plus a little for keys and targets
    targets = load_targets(cached.directory, teacher=teacher)
    by_path = {item.path: clip for item, clip in zip(targets.items, targets.clips)}
    for item, clip in zip(loaded.items, loaded.clips):
        np.testing.assert_array_equal(by_path[item.path], clip)

    # A format-1 record (float32 audio) decodes to the same samples.
    old = tf.train.Example(
        features=tf.train.Features(
            feature={
                "key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"k"])),
                "path": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a.wav"])),
                "labels": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"{}"])),
                "audio": tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.float32([0.25, -0.5]).tobytes()])),
                "sample_rate_hz": tf.train.Feature(int64_list=tf.train.Int64List(value=[16000])),
                "targets": tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.float32([[1, 2]]).tobytes()])),
                "target_shape": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2])),
            }
        )
    ).SerializeToString()
    np.testing.assert_array_equal(decode_record(old).audio, [0.25, -0.5])
    assert READABLE_FORMATS[0] == "trillsson_tf.targets/1" and TARGETS_FORMAT in READABLE_FORMATS

    # A format this version cannot read is refused with the command that rebuilds it.
    info_path = os.path.join(cached.directory, TEACHER_FILE)
    with open(info_path) as handle:
        info = json.load(handle)
    with open(info_path, "w") as handle:
        json.dump({**info, "format": "trillsson_tf.targets/99"}, handle)
    with pytest.raises(ParameterError, match="cannot read.*Rebuild them: `trillsson-tf targets --teacher counting"):
        load_targets(cached.directory, teacher=teacher)
