"""trillsson_tf/train/engine.py, the one training engine, on its own: the step loop, the run folder and its
checkpoints, with tiny ``tf.Variable`` s and no model."""

import errno
import json
import logging
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from trillsson_tf._keras import keras, tf
from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import LOCK_FILE
from trillsson_tf.formats.run_record import RUN_FORMAT
from trillsson_tf.train.engine import (
    LR_SCHEDULES,
    RUN_FILE,
    Checkpoints,
    RunFolder,
    StepTiming,
    _changes,
    check_positive,
    learning_rate_schedule,
    run_steps,
)

IDENTITY = {"teacher": "t", "student": "s", "batch_size": 32, "config": {"width": 8, "depth": 2}}


def _describe(identity):
    return f"distills {identity['student']}"


# -- check_positive, learning_rate_schedule -------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_check_positive_accepts_positive_integers(value):
    check_positive("steps", value)


@pytest.mark.parametrize("value", [0, -2, True, 1.5, "3", None])
def test_check_positive_refuses_the_rest_naming_it(value):
    with pytest.raises(ParameterError, match=rf"^steps must be a positive integer, got {re.escape(repr(value))}\.$"):
        check_positive("steps", value)


def test_learning_rate_schedules():
    assert learning_rate_schedule(0.01, "constant", 100) == 0.01
    cosine = learning_rate_schedule(0.01, "cosine", 100)
    assert isinstance(cosine, keras.optimizers.schedules.CosineDecay)
    assert float(cosine(0)) == pytest.approx(0.01)
    assert float(cosine(50)) == pytest.approx(0.01 * (0.01 + 0.99 * 0.5), rel=1e-5)
    assert float(cosine(100)) == pytest.approx(0.0001)  # 1% of lr at the last step
    with pytest.raises(ParameterError, match=r"^lr must be a positive learning rate, got 0\.$"):
        learning_rate_schedule(0, "constant", 100)
    with pytest.raises(
        ParameterError,
        match=re.escape(f"Unknown learning-rate schedule 'linear'. Expected one of: {list(LR_SCHEDULES)}."),
    ):
        learning_rate_schedule(0.01, "linear", 100)


# -- run_steps ------------------------------------------------------------------------------------------


def _losses(indexes):
    def step_fn(index):
        indexes.append(index)
        return tf.constant(index * 0.5)

    return step_fn


def test_history_every_log_every_steps_and_at_the_last():
    indexes, history = [], []
    timing = run_steps(_losses(indexes), start=0, steps=25, history=history, log_every=10)
    assert indexes == list(range(25))  # 0-based indexes, each once, in order
    assert history == [[10, 4.5], [20, 9.5], [25, 12.0]]
    assert all(type(point[1]) is float for point in history)  # JSON-able, not tensors
    assert timing.steps == 25


def test_history_keeps_the_loss_parts():
    history = []
    run_steps(
        lambda index: (tf.constant(1.0), {"a": tf.constant(0.25), "b": 0.75}),
        start=0,
        steps=4,
        history=history,
        log_every=2,
    )
    assert history == [[2, 1.0, {"a": 0.25, "b": 0.75}], [4, 1.0, {"a": 0.25, "b": 0.75}]]


def test_checkpoints_every_n_steps_and_once_at_the_last():
    for steps, expected in ((25, [10, 20, 25]), (20, [10, 20])):
        saved = []
        run_steps(_losses([]), start=0, steps=steps, checkpoint_every=10, on_checkpoint=saved.append)
        assert saved == expected
    saved = []
    run_steps(_losses([]), start=0, steps=5, on_checkpoint=saved.append)  # no checkpoint_every: the last only
    assert saved == [5]


def test_a_resumed_loop_starts_after_start():
    indexes, history, saved = [], [], []
    timing = run_steps(
        _losses(indexes),
        start=12,
        steps=25,
        checkpoint_every=10,
        on_checkpoint=saved.append,
        history=history,
        log_every=10,
    )
    assert indexes == list(range(12, 25))
    assert history == [[20, 9.5], [25, 12.0]] and saved == [20, 25]
    assert timing.steps == 13


def test_a_finished_run_runs_no_step_but_still_checkpoints():
    indexes, saved = [], []
    timing = run_steps(_losses(indexes), start=30, steps=30, checkpoint_every=10, on_checkpoint=saved.append)
    assert indexes == [] and saved == [30]
    assert timing.steps == 0 and timing.first_step_seconds is None
    assert timing.steps_per_second is None and timing.steady_steps_per_second is None


def test_timing_separates_the_first_step_and_the_checkpoints():
    def step_fn(index):
        time.sleep(0.2 if index == 0 else 0.01)
        return 1.0

    def slow_checkpoint(step):
        time.sleep(0.15)

    timing = run_steps(step_fn, start=0, steps=6, checkpoint_every=2, on_checkpoint=slow_checkpoint)
    assert timing.steps == 6
    assert 0.2 <= timing.first_step_seconds < 0.2 + 0.15
    assert timing.checkpoint_seconds >= 2 * 0.15  # steps 2 and 4; the final one (6) is not counted
    assert timing.seconds >= timing.first_step_seconds + timing.checkpoint_seconds + 5 * 0.01
    assert timing.seconds < 0.2 + 3 * 0.15 + 1.0  # the final checkpoint is outside the loop's seconds
    assert timing.steady_steps_per_second > timing.steps_per_second
    record = timing.as_record()
    assert set(record) == {"train_seconds", "steps_per_second", "first_step_seconds", "steady_steps_per_second"}
    assert json.loads(json.dumps(record)) == record


def test_step_timing_rates():
    timing = StepTiming(steps=11, seconds=4.0, first_step_seconds=1.0, checkpoint_seconds=1.0)
    assert timing.steps_per_second == pytest.approx(11 / 4.0)
    assert timing.steady_steps_per_second == pytest.approx(10 / 2.0)
    assert StepTiming(steps=1, seconds=1.0, first_step_seconds=1.0).steady_steps_per_second is None


def test_scalars_and_losses_go_to_the_writer(tmp_path):
    asked = []

    def scalars(step):
        asked.append(step)
        return {"validation": 0.5}

    writer = tf.summary.create_file_writer(str(tmp_path))
    run_steps(lambda index: (1.0, {"a": 0.5}), start=0, steps=4, writer=writer, scalars=scalars, log_every=2)
    assert asked == [2, 4]
    tags = set()
    for path in tmp_path.iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert tags == {"loss", "loss_a", "validation"}


# -- RunFolder ------------------------------------------------------------------------------------------


def _finished_run(path, identity=IDENTITY, **record):
    run = RunFolder(path)
    run.open(identity, _describe)
    run.record.update(record)
    run.write()
    return run


def test_a_new_run_folder_is_made_locked_and_written(tmp_path):
    out = tmp_path / "run"
    run = RunFolder(out)
    assert run.open(IDENTITY, _describe) == {"identity": IDENTITY}
    assert os.path.isfile(out / LOCK_FILE) and (out / LOCK_FILE).read_text() == str(os.getpid())
    run.record["step"] = 3
    (tmp_path / "export").mkdir()
    run.write(str(tmp_path / "export"))  # also into an export folder
    for folder in (out, tmp_path / "export"):
        assert json.loads((folder / RUN_FILE).read_text()) == {"format": RUN_FORMAT, "identity": IDENTITY, "step": 3}


def test_a_non_empty_folder_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(ParameterError, match=r"exists and is not empty; pass resume=True .* overwrite=True"):
        RunFolder(out).open(IDENTITY, _describe)
    assert (out / "old.txt").exists()
    RunFolder(out, overwrite=True).open(IDENTITY, _describe)
    assert not (out / "old.txt").exists()


def test_a_non_chief_writes_nothing(tmp_path):
    out = tmp_path / "run"
    run = RunFolder(out, chief=False)
    run.open(IDENTITY, _describe)
    run.write()
    assert not out.exists()


def test_resume_returns_the_previous_record(tmp_path):
    _finished_run(tmp_path / "run", step=20, loss_history=[[10, 1.0], [20, 0.5]])
    run = RunFolder(tmp_path / "run", resume=True)
    assert run.open(dict(IDENTITY), _describe) == {
        "identity": IDENTITY,
        "step": 20,
        "loss_history": [[10, 1.0], [20, 0.5]],
    }


def test_resume_with_another_identity_names_what_changed(tmp_path):
    _finished_run(tmp_path / "run")
    changed = {**IDENTITY, "batch_size": 16, "config": {"width": 16, "depth": 2}}
    with pytest.raises(ParameterError) as caught:
        RunFolder(tmp_path / "run", resume=True).open(changed, _describe)
    assert str(caught.value) == (
        f"Cannot resume {str(tmp_path / 'run')!r}: batch_size was 32, now 16; "
        "config.width was 8, now 16 (it distills s)."
    )
    # Keys outside ``compared`` only describe the run.
    RunFolder(tmp_path / "run", resume=True).open(changed, _describe, compared=["teacher", "student"])


def test_changes_lists_every_difference_with_its_path():
    before = {"a": 1, "b": {"c": 2, "d": 3}, "e": "x"}
    assert _changes(before, dict(before), list(before)) == ""
    now = {"a": 1, "b": {"c": 2, "f": 4}, "e": "y"}
    assert _changes(before, now, list(before)) == "b.d was 3, now None; b.f was None, now 4; e was 'x', now 'y'"
    assert _changes(before, now, ["a"]) == ""


def test_resume_refusals(tmp_path):
    with pytest.raises(ParameterError, match=rf"^Nothing to resume in .*: it has no {RUN_FILE}\.$"):
        RunFolder(tmp_path / "empty", resume=True).open(IDENTITY, _describe)
    old = tmp_path / "old"
    old.mkdir()
    (old / RUN_FILE).write_text(json.dumps({"step": 10}))
    with pytest.raises(ParameterError, match=r"made by an older trillsson_tf, not distills s\.$"):
        RunFolder(old, resume=True).open(IDENTITY, _describe)
    (old / RUN_FILE).write_text('{"identity": ')
    with pytest.raises(ParameterError, match=rf"{RUN_FILE} is unreadable .*--force"):
        RunFolder(old, resume=True).open(IDENTITY, _describe)
    (old / RUN_FILE).write_text("[1, 2]")
    with pytest.raises(ParameterError, match=rf"{RUN_FILE} is not a run record"):
        RunFolder(old, resume=True).open(IDENTITY, _describe)
    (old / RUN_FILE).write_text(json.dumps({"identity": IDENTITY, "step": "ten"}))
    with pytest.raises(ParameterError, match=rf"{RUN_FILE} is not a run record: its step is 'ten'.*--force"):
        RunFolder(old, resume=True).open(IDENTITY, _describe)


def test_confirm_adds_identity_values_and_checks_them_on_resume(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.open(IDENTITY, _describe)
    run.confirm(training_records="20 records, sha256 ab")
    assert run.record["identity"]["training_records"] == "20 records, sha256 ab"
    run.write()
    resumed = RunFolder(tmp_path / "run", resume=True)
    resumed.open(IDENTITY, _describe)
    resumed.confirm(training_records="20 records, sha256 ab")
    with pytest.raises(
        ParameterError, match=r"training_records was '20 records, sha256 ab', now '21 records, sha256 cd'\.$"
    ):
        resumed.confirm(training_records="21 records, sha256 cd")
    resumed.confirm(validation_files=5)  # a value the older record lacks is taken as is
    assert resumed.record["identity"]["validation_files"] == 5


class _FakeCheckpoints:
    def __init__(self, restores_to):
        self.restores_to, self.asked, self.saved = restores_to, [], []

    def restore(self, step):
        self.asked.append(step)
        return self.restores_to

    def save(self, step):
        self.saved.append(step)


def test_restore_asks_for_the_record_step_and_cuts_the_histories(tmp_path):
    _finished_run(
        tmp_path / "run",
        step=30,
        loss_history=[[10, 3.0], [20, 2.0], [30, 1.0]],
        validation_history=[[20, 0.1], [30, 0.2]],
        note_history="not a list",
    )
    run = RunFolder(tmp_path / "run", resume=True)
    run.open(IDENTITY, _describe)
    checkpoints = _FakeCheckpoints(restores_to=20)  # the checkpoint of step 30 was damaged
    assert run.restore(checkpoints) == 20
    assert checkpoints.asked == [30]
    assert run.record["loss_history"] == [[10, 3.0], [20, 2.0]]
    assert run.record["validation_history"] == [[20, 0.1]]
    assert run.record["note_history"] == "not a list"


def test_saver_checkpoints_then_writes_the_record(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.open(IDENTITY, _describe)
    order, checkpoints = [], _FakeCheckpoints(0)
    checkpoints.save = lambda step: order.append(("save", step))
    save = run.saver(checkpoints, before=lambda step: order.append(("before", step)))
    save(40)
    assert order == [("before", 40), ("save", 40)]
    assert json.loads((tmp_path / "run" / RUN_FILE).read_text())["step"] == 40


def test_a_folder_in_use_by_another_process_is_refused(tmp_path):
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
            RunFolder(out).open(IDENTITY, _describe)
        (out / RUN_FILE).write_text(json.dumps({"identity": IDENTITY}))
        with pytest.raises(ParameterError, match=rf"in use by another trillsson-tf process \(pid {holder.pid}\)"):
            RunFolder(out, resume=True).open(IDENTITY, _describe)
    finally:
        holder.kill()
        holder.wait()
    RunFolder(out, resume=True).open(IDENTITY, _describe)  # the lock died with its process


# -- Checkpoints ----------------------------------------------------------------------------------------


def _saved(directory, steps=(10, 20, 30)):
    """Checkpoints of one variable holding ``step / 10`` at each of ``steps``."""
    variable = tf.Variable(0.0)
    checkpoints = Checkpoints({"v": variable}, str(directory), max_to_keep=5)
    for step in steps:
        variable.assign(step / 10)
        checkpoints.save(step)
    variable.assign(-1.0)
    return checkpoints, variable


def test_restore_a_given_step_or_the_latest(tmp_path):
    checkpoints, variable = _saved(tmp_path / "ckpt")
    assert checkpoints.restore(20) == 20 and float(variable) == 2.0 and int(checkpoints.step) == 20
    assert checkpoints.restore() == 30 and float(variable) == 3.0 and int(checkpoints.step) == 30
    assert Checkpoints({"v": tf.Variable(0.0)}, str(tmp_path / "none")).restore() == 0


def test_restore_falls_back_past_a_damaged_or_missing_checkpoint(tmp_path, caplog):
    checkpoints, variable = _saved(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "ckpt-30.index").write_bytes(b"not a checkpoint index")
    with caplog.at_level(logging.WARNING, logger="trillsson_tf.train.engine"):
        assert checkpoints.restore(30) == 20
    assert float(variable) == 2.0
    assert "ckpt-30 is damaged" in caplog.text and "resuming from step 20" in caplog.text
    for name in os.listdir(tmp_path / "ckpt"):
        if name.startswith("ckpt-20.data-"):
            os.remove(tmp_path / "ckpt" / name)  # the data file gone: not even a candidate
    assert checkpoints.restore(30) == 10 and float(variable) == 1.0
    with pytest.raises(ParameterError, match=r"no intact checkpoint at or before step 5; rerun with --force"):
        checkpoints.restore(5)


def test_a_failed_save_removes_its_partial_files_and_keeps_the_older_ones(tmp_path):
    checkpoints, variable = _saved(tmp_path / "ckpt", steps=(10,))
    directory = tmp_path / "ckpt"

    def disk_full(checkpoint_number):
        (directory / f"ckpt-{checkpoint_number}_temp").mkdir()
        (directory / f"ckpt-{checkpoint_number}_temp" / "part").write_bytes(b"x" * 100)
        (directory / f"ckpt-{checkpoint_number}.index").write_bytes(b"half")
        raise tf.errors.ResourceExhaustedError(None, None, "write failed\nNo space left on device")

    checkpoints.manager.save = disk_full
    with pytest.raises(OSError) as caught:
        checkpoints.save(20)
    assert caught.value.errno == errno.EIO
    assert caught.value.strerror == "checkpoint of step 20 not written: No space left on device"
    assert caught.value.filename == str(directory / "ckpt-20")
    assert not any(name.startswith("ckpt-20") for name in os.listdir(directory))
    assert checkpoints.restore() == 10 and float(variable) == 1.0
