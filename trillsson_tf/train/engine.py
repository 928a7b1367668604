"""The one training engine: a run folder and a step loop, shared by every training command.

``distill``, ``distill-layers``, ``finetune`` and the optimizer's recovery all train the same way:

>>> run = RunFolder(out_dir, resume=resume, overwrite=overwrite)
>>> run.open(identity={"teacher": ..., "student": ...}, describe=lambda i: f"distills {i['student']}")
>>> checkpoints = run.checkpoints({"model": model, "optimizer": optimizer})
>>> start = run.restore(checkpoints) if resume else 0
>>> run_steps(step_fn, start=start, steps=steps, checkpoint_every=500, on_checkpoint=run.saver(checkpoints))

Also :class:`Checkpoints`, :class:`StepTiming` and mixed precision (:func:`check_float16`). The run
folder, resume rules and float16 probe: docs/DESIGN.md, "Training".
"""

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import time

import numpy as np

from trillsson_tf.checks import positive_int as check_positive
from trillsson_tf.configs import LR_SCHEDULES
from trillsson_tf._keras import keras, tf
from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import lock_folder, prepare_output_dir
from trillsson_tf.formats.run_record import RUN_FILE, read_record, write_record

__all__ = [
    "LOG_EVERY_STEPS",
    "LR_SCHEDULES",
    "RUN_FILE",
    "Checkpoints",
    "RunFolder",
    "StepTiming",
    "FLOAT16_TOLERANCE",
    "check_float16",
    "check_positive",
    "files_identity",
    "records_identity",
    "mixed_precision_policy",
    "use_mixed_precision",
    "learning_rate_schedule",
    "log_scalar",
    "run_steps",
    "versions",
]

_log = logging.getLogger(__name__)

LOG_EVERY_STEPS = 10
"""Steps between loss records (``loss_history``, TensorBoard, the progress bar)."""
_IDENTITY = "identity"
FLOAT16_TOLERANCE = 0.05
"""Largest relative error (max abs difference over max abs value) of a float16 network against float32."""


def learning_rate_schedule(lr: float, schedule: str, steps: int):
    """Adam's learning rate: ``lr`` (``constant``) or a cosine decay to 1% of ``lr`` at ``steps`` (``cosine``)."""
    if not lr > 0:
        raise ParameterError(f"lr must be a positive learning rate, got {lr!r}.")
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=0.01)
    raise ParameterError(f"Unknown learning-rate schedule {schedule!r}. Expected one of: {list(LR_SCHEDULES)}.")


def log_scalar(tag: str, value: float, step: int) -> None:
    """Write a TensorBoard scalar to the default writer without needing ``tensorboard`` installed.

    ``tf.summary.scalar`` imports tensorboard; ``tf.summary.write`` with the scalars plugin
    metadata writes the same event record.
    """
    metadata = tf.compat.v1.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata)


def versions() -> dict:
    """Versions of the packages a run depends on, for its record."""
    import trillsson_tf

    return {
        "trillsson_tf": trillsson_tf.__version__,
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "numpy": np.__version__,
    }


def records_identity(scan) -> str:
    """``"N records, sha256 H"`` of a :class:`~trillsson_tf.train.input_pipeline.ShardScan`'s training records and shards.

    A resume must read the same records from the same shards: the data iterator in the checkpoint
    holds positions in them.
    """
    digest = hashlib.sha256(np.sort(np.asarray(scan.train_fingerprints, np.int64)).tobytes())
    digest.update("\n".join(sorted(os.path.basename(shard) for shard in scan.shards)).encode())
    return f"{len(scan.train_fingerprints)} records, sha256 {digest.hexdigest()[:16]}"


def files_identity(items) -> str:
    """``"N files, sha256 H"`` of the paths of :class:`~trillsson_tf.train.data.AudioItem` s (order-free)."""
    paths = sorted(os.path.abspath(getattr(item, "path", item)) for item in items)
    return f"{len(paths)} files, sha256 {hashlib.sha256(chr(10).join(paths).encode()).hexdigest()[:16]}"


def _as_json(value):
    return json.loads(json.dumps(value))


def _changes(before: dict, now: dict, keys, prefix: str = "") -> str:
    """``"batch_size was 32, now 16; config.width was 8, now 16"`` for the ``keys`` that differ ('' if none)."""
    parts = []
    for key in keys:
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            parts.append(_changes(old, new, sorted(set(old) | set(new)), prefix=f"{prefix}{key}."))
        elif old != new:
            parts.append(f"{prefix}{key} was {old!r}, now {new!r}")
    return "; ".join(part for part in parts if part)


class Checkpoints:
    """``tf.train.Checkpoint`` of a run's objects plus its step counter, kept by a CheckpointManager.

    Args:
        tracked: Name -> trackable (model, optimizer, variables) to save and restore.
        directory: Where the checkpoints go.
        max_to_keep: Checkpoints kept.
    """

    def __init__(self, tracked: dict, directory: str, *, max_to_keep: int = 3):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(**tracked, step=self.step)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)
        self.directory = directory

    def restore(self, step=None) -> int:
        """Restore checkpoint ``step`` (the one the run's record names), or the latest when ``None``.

        A missing or damaged checkpoint (no ``.index``, unreadable data) is passed over, with a
        warning, for the newest intact one before it; the caller cuts its record back to the
        step returned.

        Returns:
            The restored step; 0 when there is no checkpoint (and ``step`` is ``None`` or 0).

        Raises:
            ParameterError: ``step`` > 0 and no intact checkpoint at or before it.
        """
        self._remove_partial()
        numbers = [n for n in self._numbers() if step is None or n <= step]
        for number in numbers:
            prefix = self._prefix(number)
            try:
                self.checkpoint.restore(prefix).expect_partial()
            except (tf.errors.OpError, ValueError, AssertionError) as error:
                _log.warning("Checkpoint %s is damaged (%s); trying an older one.", prefix, _first_line(error))
                continue
            if step is not None and number != step:
                _log.warning("Checkpoint %s is missing or damaged; resuming from step %d.", self._prefix(step), number)
            self.step.assign(number)
            return number
        if step:
            raise ParameterError(
                f"Cannot resume: {self.directory!r} has no intact checkpoint at or before step "
                f"{step}; rerun with --force (overwrite=True) to start over."
            )
        return 0

    def save(self, step: int) -> None:
        """Save everything tracked, as checkpoint number ``step``.

        Raises:
            OSError: the checkpoint could not be written (a full disk); its partial files are removed,
                so the older checkpoints stay usable and the disk space is given back.
        """
        self.step.assign(step)
        try:
            self.manager.save(checkpoint_number=step)
        except tf.errors.OpError as error:
            self._remove_partial(step)
            raise OSError(
                errno.EIO, f"checkpoint of step {step} not written: {_first_line(error)}", self._prefix(step)
            ) from None

    def _prefix(self, number: int) -> str:
        return os.path.join(self.directory, f"ckpt-{number}")

    def _numbers(self) -> list:
        """Numbers of the checkpoints whose index and data files exist, newest first."""
        if not os.path.isdir(self.directory):
            return []
        names = os.listdir(self.directory)
        found = {int(m.group(1)) for m in map(re.compile(r"ckpt-(\d+)\.index$").match, names) if m}
        return sorted((n for n in found if any(name.startswith(f"ckpt-{n}.data-") for name in names)), reverse=True)

    def _remove_partial(self, number=None) -> None:
        """Delete what a failed save left: TensorFlow's ``ckpt-N_temp`` folder, and ``ckpt-N.*`` of ``number``."""
        if not os.path.isdir(self.directory):
            return
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if name.endswith("_temp") and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif number is not None and name.startswith(f"ckpt-{number}."):
                os.remove(path)


class RunFolder:
    """A training run's folder: ``run.json`` record, checkpoints and TensorBoard logs.

    Args:
        path: The folder.
        resume: Continue the run in ``path`` (its record must exist and match, see :meth:`open`).
        overwrite: Replace a non-empty ``path`` (ignored with ``resume``).
        record_file: Name of the record (``run.json``; the optimizer keeps ``optimize.json``).
        chief: Whether this process writes the folder (``False`` on non-chief workers).
        inputs: What the run reads, ``(CLI option, path or paths)`` pairs
            (:func:`~trillsson_tf.folders.refuse_inputs`): a new run's ``path`` may not be, hold or
            lie inside one, so that ``overwrite`` never deletes them.
    """

    def __init__(
        self,
        path,
        *,
        resume: bool = False,
        overwrite: bool = False,
        record_file: str = RUN_FILE,
        chief: bool = True,
        inputs=(),
    ):
        self.path, self.resume, self.overwrite = os.fspath(path), bool(resume), bool(overwrite)
        self.record_file, self.chief = record_file, chief
        self.inputs = list(inputs)
        self.record: dict = {}

    @property
    def record_path(self) -> str:
        return os.path.join(self.path, self.record_file)

    def open(self, identity: dict, describe, *, compared=None) -> dict:
        """Create the folder, or check it on resume; returns the record (the previous one on resume).

        The chief locks the folder for the life of this object (:func:`~trillsson_tf.folders.lock_folder`):
        a second process writing the same run is refused rather than mixing its files in.

        Args:
            identity: JSON-able values that must be equal for a resume (teacher, student, options).
            describe: ``identity -> str`` completing "it ..." in the refusal, e.g.
                ``"was distilled from teacher 'x' into student 'y' with {...}"``.
            compared: The keys of ``identity`` that must match (default: all); the others only
                describe the run (a teacher's spec, where its fingerprint is compared).

        Raises:
            ParameterError: nothing to resume, another identity (naming what changed), an unreadable
                record, a folder that overlaps an input or is in use by another process, or a
                non-empty folder without ``resume`` / ``overwrite``.
        """
        identity = _as_json(identity)
        if self.resume:
            if not os.path.isfile(self.record_path):
                raise ParameterError(f"Nothing to resume in {self.path!r}: it has no {self.record_file}.")
            self._lock()
            previous = self._read_record()
            before = previous.get(_IDENTITY)
            keys = list(identity if compared is None else compared)
            if not before:
                raise ParameterError(
                    f"Cannot resume {self.path!r}: it was made by an older trillsson_tf, not {describe(identity)}."
                )
            changed = _changes(before, identity, keys)
            if changed:
                raise ParameterError(f"Cannot resume {self.path!r}: {changed} (it {describe(before)}).")
            self.record = previous
        else:
            if self.chief:
                prepare_output_dir(
                    self.path, overwrite=self.overwrite, resumable=True, inputs=self.inputs, check_only=True
                )
                self._lock()
                prepare_output_dir(self.path, overwrite=self.overwrite, resumable=True, inputs=self.inputs)
            self.record = {_IDENTITY: identity}
        return self.record

    def confirm(self, **values) -> None:
        """Add identity values known only after the data is read (the training records' fingerprint).

        On resume they must equal the record's; a record without them (older) is taken as is.

        Raises:
            ParameterError: a value changed, named with both values.
        """
        values = _as_json(values)
        identity = self.record.setdefault(_IDENTITY, {})
        if self.resume:
            known = [key for key in values if key in identity]
            changed = _changes(identity, values, known)
            if changed:
                raise ParameterError(f"Cannot resume {self.path!r}: {changed}.")
        identity.update(values)

    def restore(self, checkpoints: "Checkpoints") -> int:
        """Restore the checkpoint of the record's step; returns that step, histories cut back to it.

        The record is written after its checkpoint, so a kill between the two leaves a newer
        checkpoint than the record: the record's step is restored, and no logged step is lost.
        """
        start = checkpoints.restore(self.record.get("step"))
        for key, value in self.record.items():
            if key.endswith("_history") and isinstance(value, list):
                value[:] = [point for point in value if point[0] <= start]
        if start:
            _log.info("Resumed %s at step %d", self.path, start)
        return start

    def _lock(self) -> None:
        if self.chief:
            self._held = lock_folder(self.path)

    def _read_record(self) -> dict:
        return read_record(self.record_path, resuming=self.path).fields()

    def checkpoints(
        self, tracked: dict, *, subdir: str = "checkpoints", max_to_keep: int = 3, directory=None
    ) -> Checkpoints:
        """A :class:`Checkpoints` under ``<path>/<subdir>`` (or in ``directory``, a worker's own, when given)."""
        return Checkpoints(tracked, directory or os.path.join(self.path, subdir), max_to_keep=max_to_keep)

    def writer(self):
        """A TensorBoard writer on ``<path>/logs`` (a no-op writer on non-chief workers)."""
        if not self.chief:
            return tf.summary.create_noop_writer()
        return tf.summary.create_file_writer(os.path.join(self.path, "logs"))

    def write(self, *also) -> None:
        """Write the record to ``run.json`` (and to each folder of ``also``), on the chief only."""
        if not self.chief:
            return
        for folder in (self.path, *also):
            write_record(os.path.join(folder, self.record_file), self.record)

    def saver(self, checkpoints: Checkpoints, before=None):
        """The ``on_checkpoint`` of :func:`run_steps`: ``before(step)``, then checkpoint, step and record."""

        def save(step: int) -> None:
            if before is not None:
                before(step)
            checkpoints.save(step)
            self.record["step"] = step
            self.write()

        return save


def run_steps(
    step_fn,
    *,
    start: int,
    steps: int,
    checkpoint_every=None,
    on_checkpoint=None,
    history=None,
    writer=None,
    scalars=None,
    log_every: int = LOG_EVERY_STEPS,
    progress: bool = False,
    description: str = "train",
) -> "StepTiming":
    """Run training steps ``start + 1 .. steps``: the one step loop of every training command.

    Args:
        step_fn: ``step_fn(index) -> loss`` or ``(loss, {part: loss})`` for the step with 0-based
            ``index`` (its batch should depend on the seed and ``index`` only).
        start: Steps already done (a resumed run's checkpoint step).
        steps: Total steps.
        checkpoint_every: Call ``on_checkpoint(step)`` every this many steps; it is also called
            after the last step (always, even when no step was left to run).
        on_checkpoint: ``callable(step)``, e.g. :meth:`RunFolder.saver`.
        history: A list that gets ``[step, loss]`` (or ``[step, loss, {part: loss}]``) every
            ``log_every`` steps and at the last one.
        writer: TensorBoard writer for ``loss``, ``loss_<part>`` and ``scalars``.
        scalars: ``callable(step) -> {tag: value}`` of extra scalars logged with the loss.
        log_every: Steps between records.
        progress: Show a tqdm progress bar.
        description: The bar's label.

    Returns:
        The loop's :class:`StepTiming`.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, desc=description, unit="step", disable=not progress)
    began = time.perf_counter()
    first_step_s = None
    checkpoint_s = 0.0

    def logging_to_writer():
        return writer.as_default() if writer is not None else contextlib.nullcontext()

    with logging_to_writer():
        for step in range(start + 1, steps + 1):
            result = step_fn(step - 1)
            loss, parts = result if isinstance(result, tuple) else (result, None)
            if first_step_s is None:
                first_step_s = time.perf_counter() - began
            bar.update(1)
            if step % log_every == 0 or step == steps:
                loss = float(loss)
                values = {name: float(value) for name, value in (parts or {}).items()}
                if history is not None:
                    history.append([step, loss, values] if parts is not None else [step, loss])
                if writer is not None:
                    log_scalar("loss", loss, step=step)
                    for name, value in {
                        **{f"loss_{k}": v for k, v in values.items()},
                        **(scalars(step) if scalars else {}),
                    }.items():
                        log_scalar(name, value, step=step)
                bar.set_postfix(loss=f"{loss:.4g}")
            if on_checkpoint is not None and checkpoint_every and step % checkpoint_every == 0 and step != steps:
                saving = time.perf_counter()
                on_checkpoint(step)
                checkpoint_s += time.perf_counter() - saving
    bar.close()
    elapsed = time.perf_counter() - began
    if on_checkpoint is not None:
        with logging_to_writer():  # a checkpoint may log its own scalars (validation loss)
            on_checkpoint(steps)
    if writer is not None:
        writer.flush()
    return StepTiming(
        steps=max(0, steps - start), seconds=elapsed, first_step_seconds=first_step_s, checkpoint_seconds=checkpoint_s
    )


@dataclasses.dataclass(frozen=True)
class StepTiming:
    """Where the time of one :func:`run_steps` loop went (seconds; the final checkpoint not included).

    The first step traces the step function and fills the input pipeline's shuffle buffer, so the
    steady rate (steps after the first, checkpoints left out) is the one to compare across corpora.
    """

    steps: int
    seconds: float
    first_step_seconds: float = None
    checkpoint_seconds: float = 0.0

    @property
    def steps_per_second(self):
        """Steps over the whole loop's seconds (``None`` when no step ran)."""
        return self.steps / self.seconds if self.steps and self.seconds > 0 else None

    @property
    def steady_steps_per_second(self):
        """Steps after the first over their seconds, mid-run checkpoints left out (``None`` under 2 steps)."""
        steady_s = self.seconds - (self.first_step_seconds or 0.0) - self.checkpoint_seconds
        return (self.steps - 1) / steady_s if self.steps > 1 and steady_s > 0 else None

    def as_record(self) -> dict:
        """The figures a run's ``run.json`` keeps."""
        return {
            "train_seconds": self.seconds,
            "steps_per_second": self.steps_per_second,
            "first_step_seconds": self.first_step_seconds,
            "steady_steps_per_second": self.steady_steps_per_second,
        }


def use_mixed_precision(requested) -> bool:
    """Whether to train in mixed_float16: ``requested`` (a bool), or with ``None`` whether a GPU is visible."""
    if requested is None:
        return bool(tf.config.list_physical_devices("GPU"))
    if not isinstance(requested, bool):
        raise ParameterError(f"mixed_precision must be True, False or None (automatic), got {requested!r}.")
    if requested and not tf.config.list_physical_devices("GPU"):
        _log.warning("Mixed precision without a GPU: float16 runs slower than float32 on a CPU.")
    return requested


@contextlib.contextmanager
def mixed_precision_policy(enabled: bool):
    """Build layers inside under Keras' ``mixed_float16`` policy when ``enabled`` (a no-op otherwise).

    Raises:
        ParameterError: a layer refuses to build in float16 (named).
    """
    if not enabled:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    except (TypeError, ValueError) as error:
        raise ParameterError(
            f"Mixed precision: {_failing_layer(error)} cannot run in float16 ({_first_line(error)}); "
            "train it with mixed_precision=False (CLI --no-mixed-precision)."
        ) from error
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _first_line(error) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(error).__name__


def _failing_layer(error) -> str:
    import re

    # Keras nests "Exception encountered when calling layer X": the last one is the innermost layer.
    names = re.findall(r'calling layer [\'"]([^\'"]+)[\'"]', str(error))
    return f"layer {names[-1]!r}" if names else "the network"


def _relative_error(reference, candidate) -> float:
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if not np.all(np.isfinite(candidate)):
        return float("inf")
    return float(np.abs(candidate - reference).max() / max(np.abs(reference).max(), 1e-12))


def check_float16(build, audio, *, tolerance: float = FLOAT16_TOLERANCE) -> float:
    """The relative error of a student built in mixed precision against its float32 twin on ``audio``.

    Args:
        build: ``build() -> student`` (a fresh model each call); called once under
            :func:`mixed_precision_policy` and once in float32, and the weights copied across.
        audio: float32 ``[batch, samples]`` at 16 kHz (real speech).
        tolerance: Largest relative error accepted.

    Returns:
        Max abs difference of the outputs over their max abs value.

    Raises:
        ParameterError: a layer that does not build in float16, or an error above
            ``tolerance`` (or not finite), naming the first layer of the trainable network
            whose output is off by more than ``tolerance``.
    """
    from trillsson_tf import models

    with mixed_precision_policy(True):
        model = build()
    reference = build()
    reference.set_weights(model.get_weights())
    key = models.output_key(model)
    error = _relative_error(reference(audio, training=False)[key], model(audio, training=False)[key])
    if error <= tolerance:
        return error
    inner, twin = models.inner_network(model), models.inner_network(reference)
    # The layer before the trainable network (the frontend) gives its input, in float32 in both.
    feeder = reference.layers[[layer.name for layer in reference.layers].index(twin.name) - 1]
    features = keras.Model(reference.input, feeder.output)(audio, training=False)
    # Layer by layer in build order (the two builds share the architecture, not the generated names).
    positions = [i for i, layer in enumerate(inner.layers) if not isinstance(layer, keras.layers.InputLayer)]
    probes = [keras.Model(network.input, [network.layers[i].output for i in positions]) for network in (inner, twin)]
    mixed_values, float_values = (probe(features, training=False) for probe in probes)
    culprit = next(
        (
            inner.layers[i].name
            for i, got, want in zip(positions, mixed_values, float_values)
            if _relative_error(want, got) > tolerance
        ),
        inner.layers[positions[-1]].name,
    )
    raise ParameterError(
        f"Mixed precision: {model.name} in float16 is off by {error:.3g} (relative; at most {tolerance:g} accepted) "
        f"from float32 on real audio, first at layer {culprit!r}; train it with mixed_precision=False "
        "(CLI --no-mixed-precision)."
    )
