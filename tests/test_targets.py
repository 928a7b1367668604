"""Teacher-target cache: computed once, reused, resumable; global and local modes."""
import os

import numpy as np
import pytest

from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.data import CROP_SAMPLES, find_audio, load_clips
from trillsson_tf.errors import ParameterError
from trillsson_tf.targets import cached_targets
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
