"""Run folders under faults (issue 39 items 4, 5, 7): a kill between checkpoint and record, a damaged
checkpoint, a failed save, an unreadable record, a resume that changes the data stream, two writers."""

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.train.distill import distill
from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import LOCK_FILE
from trillsson_tf.teachers import load_teacher
from trillsson_tf.train.engine import RunFolder

SMALL = {"stem_filters": 8, "filters": (16, 24), "strides": (2, 2)}


@pytest.fixture(scope="module")
def files():
    return sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_5.wav")))[:20]


@pytest.fixture(scope="module")
def options(tmp_path_factory):
    return dict(
        teacher=load_teacher("speech_embedding"),
        student_options=SMALL,
        batch_size=8,
        checkpoint_every=10,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
        validation_fraction=0.0,
    )


@pytest.fixture(scope="module")
def finished(files, options, tmp_path_factory):
    """A 30-step run, uninterrupted, and the folder of the same run stopped after step 20."""
    full = distill(files, out_dir=tmp_path_factory.mktemp("full") / "run", steps=30, **options)
    at_20 = tmp_path_factory.mktemp("at20") / "run"
    distill(files, out_dir=at_20, steps=20, **options)
    return full, str(at_20)


def _copy(folder, tmp_path):
    return str(shutil.copytree(folder, tmp_path / "run"))


def _steps(record):
    return [point[0] for point in record["loss_history"]]


def test_kill_between_checkpoint_and_record_loses_no_logged_step(files, options, finished, tmp_path, monkeypatch):
    full, _ = finished
    out = tmp_path / "killed"
    write = RunFolder.write

    def killed_after_checkpoint_20(self, *also):
        if self.record.get("step") == 20:  # checkpoint 20 is on disk, its record not yet
            raise KeyboardInterrupt
        write(self, *also)

    monkeypatch.setattr(RunFolder, "write", killed_after_checkpoint_20)
    with pytest.raises(KeyboardInterrupt):
        distill(files, out_dir=out, steps=30, **options)
    monkeypatch.undo()
    resumed = distill(files, out_dir=out, steps=30, resume=True, **options)
    assert resumed["resumed_from_step"] == 10 and _steps(resumed) == [10, 20, 30]
    np.testing.assert_allclose([p[1] for p in resumed["loss_history"]], [p[1] for p in full["loss_history"]], rtol=1e-4)


def test_missing_or_damaged_checkpoint_resumes_from_the_one_before(files, options, finished, tmp_path):
    _, at_20 = finished
    out = _copy(at_20, tmp_path)
    os.remove(os.path.join(out, "checkpoints", "ckpt-20.index"))
    resumed = distill(files, out_dir=out, steps=30, resume=True, **options)
    assert resumed["resumed_from_step"] == 10 and _steps(resumed) == [10, 20, 30]
    for index in glob.glob(os.path.join(out, "checkpoints", "*.index")):
        os.remove(index)
    with pytest.raises(ParameterError, match="no intact checkpoint at or before step 30.*--force"):
        distill(files, out_dir=out, steps=40, resume=True, **options)


def test_failed_checkpoint_leaves_no_temp_folder_and_the_run_resumes(files, options, finished, tmp_path, monkeypatch):
    from trillsson_tf._keras import tf

    _, at_20 = finished
    out = _copy(at_20, tmp_path)
    save = tf.train.CheckpointManager.save

    def disk_full_at_30(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 30:
            partial = os.path.join(self.directory, "ckpt-30_temp")
            os.makedirs(partial)
            with open(os.path.join(partial, "part-00000-of-00001.data-00000-of-00001"), "wb") as handle:
                handle.write(b"\0" * 4096)
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        return save(self, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", disk_full_at_30)
    with pytest.raises(OSError, match="checkpoint of step 30 not written: No space left on device"):
        distill(files, out_dir=out, steps=40, resume=True, **options)
    monkeypatch.undo()
    assert not [name for name in os.listdir(os.path.join(out, "checkpoints")) if "_temp" in name or "ckpt-30" in name]
    resumed = distill(files, out_dir=out, steps=40, resume=True, **options)
    assert resumed["resumed_from_step"] == 20 and _steps(resumed) == [10, 20, 30, 40]


def test_unreadable_record_is_named_not_a_traceback(files, options, finished, tmp_path):
    _, at_20 = finished
    out = _copy(at_20, tmp_path)
    with open(os.path.join(out, "run.json"), "w"):
        pass  # 0 bytes, as a full disk left it before writes were atomic
    with pytest.raises(ParameterError, match=r"Cannot resume .*run.json is unreadable.*--force"):
        distill(files, out_dir=out, steps=30, resume=True, **options)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"batch_size": 4}, "stream.batch_size was 8, now 4"),
        ({"seed": 1}, "stream.seed was 0, now 1"),
        ({"shuffle_buffer": 7}, "stream.shuffle_buffer was None, now 7"),
        ({"validation_fraction": 0.5}, "stream.validation_fraction was 0.0, now 0.5"),
        ({"lr": 0.01}, "stream.lr was 0.001, now 0.01"),
    ],
)
def test_resume_that_changes_the_stream_names_the_change(files, options, finished, tmp_path, change, message):
    _, at_20 = finished
    out = _copy(at_20, tmp_path)
    with pytest.raises(ParameterError, match=f"Cannot resume .*{message}"):
        distill(files, out_dir=out, steps=30, resume=True, **{**options, **change})


def test_resume_with_files_added_or_removed_is_refused(files, options, finished, tmp_path):
    _, at_20 = finished
    out = _copy(at_20, tmp_path)
    more = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_5.wav")))[:21]
    for data in (more, files[:19]):
        with pytest.raises(
            ParameterError, match=r"training_records was '20 records, sha256 \w+', now '(21|19) records"
        ):
            distill(data, out_dir=out, steps=30, resume=True, **options)


def test_a_second_process_is_refused_from_a_run_folder_in_use(files, options, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from trillsson_tf.folders import lock_folder; "
            "lock = lock_folder(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ParameterError, match=rf"in use by another trillsson-tf process \(pid {holder.pid}\)"):
            distill(files, out_dir=out, steps=10, **options)
    finally:
        holder.kill()
        holder.wait()
    record = distill(files, out_dir=out, steps=10, **options)  # the lock died with its process
    assert record["step"] == 10 and os.path.exists(out / LOCK_FILE)
    with pytest.raises(ParameterError, match="exists and is not empty"):  # the lock file alone is not content
        distill(files, out_dir=out, steps=10, **options)
    (out / "stale.txt").write_text("replaced with --force")
    assert distill(files, out_dir=out, steps=10, overwrite=True, **options)["step"] == 10
    assert sorted(os.listdir(out)) == sorted([LOCK_FILE, "checkpoints", "export", "logs", "run.json"])
