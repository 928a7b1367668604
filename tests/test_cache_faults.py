"""Faults in the target cache, hit the way `distill --data` hits them (issue 39, item 6).

The `--data` path fills the cache (:func:`build_cache`) and then scans it (:func:`scan_shards`).
A truncated, bit-flipped or foreign file, a shard of another teacher or of another width, or a
shard of records that are not targets must be named, set aside and recomputed; a ``teacher.json``
that describes another teacher is refused in one line; two processes filling one cache compute
each record once.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import tampered_copy
from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.train.data import find_audio
from trillsson_tf.errors import ParameterError
from trillsson_tf.train.input_pipeline import scan_shards, training_dataset
from trillsson_tf.train.targets import TEACHER_FILE, build_cache, serialized_records, shard_paths
from trillsson_tf.teachers import Teacher


class StatsTeacher(Teacher):
    """A numpy teacher: ``[mean, mean |x|, max |x|]`` (times ``scale``), plus ``extra`` columns of zeros; counts clips."""

    def __init__(self, name="stats", *, scale=1.0, extra=0):
        super().__init__(name)
        self.scale, self.extra, self.clips = scale, extra, 0
        self._finish_init()
        self.clips = 0

    def _embed(self, audio):
        self.clips += len(audio)
        columns = [audio.mean(1), np.abs(audio).mean(1), np.abs(audio).max(1)] + [np.zeros(len(audio))] * self.extra
        return self.scale * np.stack(columns, axis=1)


@pytest.fixture(scope="module")
def items():
    """8 real LibriSpeech utterances (1-8 s)."""
    return sorted(find_audio(os.path.join(SAMPLE_AUDIO_DIR, "librispeech")), key=lambda item: item.path)[:8]


def data_path(teacher, items, cache_dir):
    """What `distill --data` does before training: fill the cache, scan it, draw one batch."""
    index = build_cache(teacher, items, cache_dir=cache_dir, shard_size=2)
    scan = scan_shards(index.directory, teacher=teacher, keys=index.keys, validation_fraction=0.25, seed=0)
    next(iter(training_dataset(scan, batch_size=2, seed=0)))
    return index, scan


def records_in(folder) -> int:
    """Records in the shards of ``folder``, duplicates counted."""
    return sum(1 for _ in serialized_records(shard_paths(folder)))


@pytest.fixture()
def cache(tmp_path, items):
    """A finished cache of 8 files in 4 shards, and its clean scan: ``(folder, scan)``."""
    _, scan = data_path(StatsTeacher(), items, tmp_path / "cache")
    return scan.directory, scan


def _truncate(shard, tmp_path):
    with open(shard, "r+b") as handle:
        handle.truncate(os.path.getsize(shard) - 7)


def _bit_flip(shard, tmp_path):
    os.replace(tampered_copy(shard, str(tmp_path), offset=os.path.getsize(shard) // 2), shard)


def _foreign_file(shard, tmp_path):
    shutil.copyfile(find_audio(os.path.join(SAMPLE_AUDIO_DIR, "fsdd"))[0].path, shard)


def _not_examples(shard, tmp_path):
    from trillsson_tf._keras import tf

    with tf.io.TFRecordWriter(shard) as writer:
        for payload in (b"\xff\xff\xff", b"plain text, not a tf.train.Example"):
            writer.write(payload)


@pytest.mark.parametrize("damage", [_truncate, _bit_flip, _foreign_file, _not_examples])
def test_a_damaged_shard_is_named_set_aside_and_recomputed(tmp_path, items, cache, damage, caplog):
    folder, clean = cache
    shard = shard_paths(folder)[1]
    damage(shard, tmp_path)
    teacher = StatsTeacher()
    with caplog.at_level(logging.WARNING):
        index, scan = data_path(teacher, items, tmp_path / "cache")
    assert os.path.basename(shard) in caplog.text and "Skipping target shard" in caplog.text
    assert "1 unusable target shard(s) of 4" in caplog.text
    # The two files of that shard ran through the teacher again; the rest came from the cache.
    assert (index.computed, index.reused, teacher.clips) == (2, 6, 2)
    assert scan.train_records == clean.train_records and records_in(folder) == 8
    np.testing.assert_allclose(scan.target_mean, clean.target_mean, rtol=1e-6)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again, _ = data_path(StatsTeacher(), items, tmp_path / "cache")
    assert again.computed == 0 and "Skipping" not in caplog.text  # set aside once, not warned about on every run
    assert os.path.exists(shard + ".bad")  # kept beside the cache, never read again


def _other_teacher_shard(folder, tmp_path, items):
    index = build_cache(StatsTeacher("other-teacher", scale=2.0), items[:2], cache_dir=tmp_path / "other", shard_size=2)
    (shard,) = shard_paths(index.directory)
    return shutil.copy(shard, os.path.join(folder, "targets-99999-other.tfrecord"))


def _other_width_shard(folder, tmp_path, items):
    index = build_cache(StatsTeacher(extra=2), items[:2], cache_dir=tmp_path / "other", shard_size=2)
    (shard,) = shard_paths(index.directory)
    return shutil.copy(shard, os.path.join(folder, "targets-99999-wide.tfrecord"))


def _not_examples_shard(folder, tmp_path, items):
    shard = os.path.join(folder, "targets-99999-text.tfrecord")
    _not_examples(shard, tmp_path)
    return shard


@pytest.mark.parametrize("bad_shard", [_other_teacher_shard, _other_width_shard, _not_examples_shard])
def test_the_targets_path_names_and_leaves_out_a_bad_shard(tmp_path, items, cache, bad_shard, caplog):
    folder, clean = cache
    shard = bad_shard(folder, tmp_path, items)
    with caplog.at_level(logging.WARNING):
        scan = scan_shards(folder, teacher=StatsTeacher(), validation_fraction=0.25, seed=0)  # as `distill --targets`
    assert [path for path, _ in scan.skipped_shards] == [shard] and os.path.basename(shard) in caplog.text
    assert scan.train_records == clean.train_records
    np.testing.assert_allclose(scan.target_mean, clean.target_mean, rtol=1e-6)


@pytest.mark.parametrize(
    "other", [{"name": "other-teacher", "scale": 2.0}, {"extra": 1}], ids=["same-width-other-teacher", "other-width"]
)
def test_a_shard_of_another_teacher_is_never_trained_on(tmp_path, items, other, caplog):
    teacher = StatsTeacher()
    index, clean = data_path(teacher, items[:6], tmp_path / "cache")
    # Another teacher's shard of the two files not cached yet, copied into this cache folder.
    other_index = build_cache(StatsTeacher(**other), items[6:], cache_dir=tmp_path / "other", shard_size=2)
    (foreign,) = shard_paths(other_index.directory)
    shutil.copy(foreign, index.directory)
    teacher = StatsTeacher()
    with caplog.at_level(logging.WARNING):
        index, scan = data_path(teacher, items, tmp_path / "cache")
    assert os.path.basename(foreign) in caplog.text and "Skipping target shard" in caplog.text
    assert (index.computed, teacher.clips) == (2, 2)
    reference, _ = data_path(StatsTeacher(), items, tmp_path / "reference")
    expected = scan_shards(reference.directory, teacher=teacher, keys=reference.keys, validation_fraction=0.25)
    np.testing.assert_allclose(scan.target_mean, expected.target_mean, rtol=1e-6)
    assert scan.train_records == expected.train_records


@pytest.mark.parametrize("content", ["", "{not json", "[]"])
def test_a_broken_teacher_json_in_the_cache_is_rewritten(tmp_path, items, cache, content, caplog):
    folder, clean = cache
    with open(os.path.join(folder, TEACHER_FILE), "w") as handle:
        handle.write(content)
    with caplog.at_level(logging.WARNING):
        index, scan = data_path(StatsTeacher(), items, tmp_path / "cache")
    assert index.computed == 0 and scan.train_records == clean.train_records
    assert TEACHER_FILE in caplog.text and "rewritten" in caplog.text
    with open(os.path.join(folder, TEACHER_FILE)) as handle:
        assert json.load(handle)["teacher"]["identity"] == StatsTeacher().identity


def test_a_broken_teacher_json_in_a_targets_folder_is_one_line(tmp_path, cache):
    folder, _ = cache
    with open(os.path.join(folder, TEACHER_FILE), "w") as handle:
        handle.write("")
    with pytest.raises(ParameterError, match=f"{TEACHER_FILE}.*not a JSON object") as error:
        scan_shards(folder, teacher=StatsTeacher())  # the --targets path reads the folder as it is
    assert "\n" not in str(error.value)


def test_a_cache_whose_teacher_json_describes_another_teacher_is_refused(tmp_path, items, cache):
    folder, _ = cache
    path = os.path.join(folder, TEACHER_FILE)
    with open(path) as handle:
        info = json.load(handle)
    info["teacher"]["identity"], info["teacher"]["spec"] = "someone-else:1234", "someone-else"
    with open(path, "w") as handle:
        json.dump(info, handle)
    with pytest.raises(ParameterError, match="describes teacher 'someone-else'") as error:
        data_path(StatsTeacher(), items, tmp_path / "cache")
    assert path in str(error.value) and "\n" not in str(error.value)
    assert len(shard_paths(folder)) == 4  # refused before anything in the folder changed


_WORKER = """
import os, sys, time
import numpy as np
from trillsson_tf.train.data import find_audio
from trillsson_tf.train.targets import build_cache
from trillsson_tf.teachers import Teacher

class Slow(Teacher):
    def __init__(self):
        super().__init__("slow-stats")
        self._finish_init()

    def _embed(self, audio):
        time.sleep(0.05)  # long enough for the other process to look at the cache meanwhile
        return np.stack([audio.mean(1), np.abs(audio).max(1)], axis=1)

cache_dir, ready, files = sys.argv[1], sys.argv[2], sys.argv[3:]
items = find_audio(files)
open(ready + "." + str(os.getpid()), "w").close()
while len([name for name in os.listdir(os.path.dirname(ready)) if name.startswith("ready.")]) < 2:
    time.sleep(0.01)  # both processes start filling at the same moment
index = build_cache(Slow(), items, cache_dir=cache_dir, shard_size=2)
print("computed", index.computed)
"""


def test_two_processes_filling_one_cache_compute_each_record_once(tmp_path, items):
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(_WORKER))
    (tmp_path / "sync").mkdir()
    files = [item.path for item in items]
    command = [sys.executable, str(worker), str(tmp_path / "cache"), str(tmp_path / "sync" / "ready")] + files
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err[-2000:] for _, err in outputs]
    computed = sorted(int(out.split()[-1]) for out, _ in outputs)
    assert computed == [0, len(items)]
    (folder,) = [os.path.join(tmp_path / "cache", name) for name in os.listdir(tmp_path / "cache")]
    assert records_in(folder) == len(items)


def test_distill_data_trains_past_a_bit_flipped_cache_shard(tmp_path, items, cache, caplog):
    from trillsson_tf.train.distill import distill

    folder, _ = cache
    shard = shard_paths(folder)[2]
    _bit_flip(shard, tmp_path)
    with caplog.at_level(logging.WARNING):
        record = distill(
            [item.path for item in items],
            out_dir=tmp_path / "run",
            teacher=StatsTeacher(),
            student="tiny_cnn",
            student_options={"stem_filters": 4, "filters": (8,), "strides": (2,)},
            steps=2,
            batch_size=2,
            checkpoint_every=2,
            cache_dir=tmp_path / "cache",
            validation_fraction=0.25,
            mixed_precision=False,
        )
    assert record["step"] == 2 and os.path.basename(shard) in caplog.text
