"""Distillation: train a registry student to regress a teacher's cached targets (spec section 5).

``distill(data, out_dir=..., teacher=..., student=...)``: load the teacher, read and split
the audio, fill the target cache, build the student with the teacher's output width as its
projection head, train on random 2 s crops (MSE by default, Adam lr 1e-3), checkpoint every
``checkpoint_every`` steps, log to TensorBoard, and export the student in hub format to
``<out_dir>/export`` with a ``run.json`` recording what was done.

Any vector output is a target, not only embeddings: score students (``wav2small``,
``mobilenetv3small_adv``, ``mobilenetv4convsmall``; output ``scores``) regress a teacher's
scores (for example the ``prosody`` teacher's three), ``outputs`` checks the teacher's width,
and ``ccc_weight`` adds ``ccc_weight * (1 - CCC)`` over each batch to the loss (spec section 6).

Output folder: ``run.json`` (kept up to date; ``--resume`` reads it), ``checkpoints/``,
``logs/`` (TensorBoard), ``export/`` (SavedModel + ``model.keras`` + ``run.json``).
"""
import json
import logging
import os
import shutil
import time

import numpy as np

from trillsson_tf import models
from trillsson_tf.augment import augmented_views
from trillsson_tf._keras import keras, tf
from trillsson_tf.data import LoadedAudio, find_audio, load_clips, random_crop, segments, split_items
from trillsson_tf.distribute import (
    STRATEGIES,
    distribute_batch,
    is_chief,
    make_strategy,
    synchronize_batch_norm,
    wait_for_workers,
    worker_checkpoint_dir,
)
from trillsson_tf.errors import ParameterError
from trillsson_tf.export import export_savedmodel
from trillsson_tf.targets import cached_targets, check_mode, file_key, load_targets
from trillsson_tf.teachers import SPEECH_EMBEDDING, load_teacher

__all__ = ["LOSSES", "LR_SCHEDULES", "RUN_FILE", "DEFAULT_STUDENT", "STRATEGIES", "ccc_loss", "distill", "make_loss"]

_log = logging.getLogger(__name__)

LOSSES = ("mse", "cosine", "l1")
LR_SCHEDULES = ("cosine", "constant")
RUN_FILE = "run.json"
DEFAULT_STUDENT = "tiny_cnn"
_LOG_EVERY_STEPS = 10


def make_loss(name: str):
    """The loss ``(target [batch, D], prediction [batch, D]) -> scalar`` named ``name``.

    ``mse``: mean squared error; ``cosine``: mean of ``1 - cosine similarity``; ``l1``:
    mean absolute error.
    """
    if name == "mse":
        return lambda target, prediction: tf.reduce_mean(tf.square(target - prediction))
    if name == "l1":
        return lambda target, prediction: tf.reduce_mean(tf.abs(target - prediction))
    if name == "cosine":
        def cosine(target, prediction):
            similarity = tf.reduce_sum(tf.nn.l2_normalize(target, -1) * tf.nn.l2_normalize(prediction, -1), -1)
            return tf.reduce_mean(1.0 - similarity)

        return cosine
    raise ParameterError(f"Unknown loss {name!r}. Expected one of: {list(LOSSES)}.")


def ccc_loss(target, prediction):
    """``1 - CCC`` over the batch, averaged over dimensions (``[batch, k]`` each; a batch of 2+).

    The training twin of :func:`trillsson_tf.metrics.ccc` (population moments); the small
    constant keeps a constant batch from dividing by zero.
    """
    mean_t, mean_p = tf.reduce_mean(target, axis=0), tf.reduce_mean(prediction, axis=0)
    covariance = tf.reduce_mean((target - mean_t) * (prediction - mean_p), axis=0)
    denominator = tf.math.reduce_variance(target, axis=0) + tf.math.reduce_variance(prediction, axis=0) + tf.square(mean_t - mean_p)
    return tf.reduce_mean(1.0 - 2.0 * covariance / (denominator + 1e-8))


def _learning_rate(lr: float, schedule: str, steps: int):
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=0.01)
    raise ParameterError(f"Unknown learning-rate schedule {schedule!r}. Expected one of: {list(LR_SCHEDULES)}.")


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}.")


def _prepare_out_dir(out_dir: str, *, resume: bool, overwrite: bool, teacher, student: str, config: dict):
    """Create or check ``out_dir``; on resume, return the previous ``run.json`` (refusing a mismatch)."""
    run_path = os.path.join(out_dir, RUN_FILE)
    if resume:
        if not os.path.isfile(run_path):
            raise ParameterError(f"Nothing to resume in {out_dir!r}: it has no {RUN_FILE}.")
        with open(run_path) as handle:
            previous = json.load(handle)
        if previous["teacher"]["identity"] != teacher.identity:
            raise ParameterError(
                f"Cannot resume {out_dir!r}: it was distilled from teacher {previous['teacher']['spec']!r} "
                f"({previous['teacher']['identity']}), not {teacher.spec!r} ({teacher.identity})."
            )
        if previous["student"]["name"] != student or previous["student"]["config"] != json.loads(json.dumps(config)):
            raise ParameterError(
                f"Cannot resume {out_dir!r}: it trains student {previous['student']['name']!r} with "
                f"{previous['student']['config']}, not {student!r} with {config}."
            )
        return previous
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise ParameterError(
                f"Output directory {out_dir!r} exists and is not empty; pass resume=True to continue it "
                "or overwrite=True to replace it."
            )
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    return None


class _Batches:
    """Training batches drawn from a seed and the step number only, so a resumed run sees the same data."""

    def __init__(self, clips, targets, *, mode: str, batch_size: int, seed: int):
        self.clips, self.targets, self.mode = clips, targets, mode
        self.batch_size, self.seed = batch_size, seed

    def __call__(self, step: int):
        """float32 audio ``[batch, 32000]`` and targets ``[batch, D]`` of training step ``step``."""
        rng = np.random.default_rng([self.seed, step])
        audio, targets = [], []
        for index in rng.integers(0, len(self.clips), self.batch_size):
            if self.mode == "global":
                audio.append(random_crop(self.clips[index], rng))
                targets.append(self.targets[index][0])
            else:
                pieces = segments(self.clips[index])
                choice = int(rng.integers(0, len(pieces)))
                audio.append(pieces[choice])
                targets.append(self.targets[index][choice])
        return np.stack(audio), np.stack(targets).astype(np.float32)


def _check_views(augment) -> None:
    if isinstance(augment, bool) or not isinstance(augment, (int, np.integer)) or augment < 0:
        raise ParameterError(f"augment must be a number of views >= 0, got {augment!r}.")


def _augmented_training_pairs(teacher, loaded, is_validation, views: int, *, mode: str, seed: int, cache_dir, progress):
    """``(clip, target)`` pairs of ``views`` augmented views of each training file, targets cached."""
    training = [index for index, item in enumerate(loaded.items) if id(item) not in is_validation]
    originals = LoadedAudio([loaded.items[i] for i in training], [loaded.clips[i] for i in training], [])
    views_audio, keys = augmented_views(originals, [file_key(item.path) for item in originals.items], views, seed=seed)
    view_targets = cached_targets(teacher, views_audio, mode=mode, cache_dir=cache_dir, progress=progress, keys=keys)
    return list(zip(views_audio.clips, view_targets.targets))


def _validation_batch(clips, targets):
    """The first 2 s segment of each validation clip and its target (deterministic)."""
    if not clips:
        return None
    return np.stack([segments(clip)[0] for clip in clips]), np.stack([target[0] for target in targets])


def _has_log_mel(model) -> bool:
    return any(layer.name == "log_mel_patches" for layer in model.layers)


def _final_dense(model):
    """The student's last layer when it is a Dense with a bias (the projection head), else ``None``."""
    last = models.inner_network(model).layers[-1]
    return last if isinstance(last, keras.layers.Dense) and last.use_bias else None


def _target_standardisation(model, targets):
    """Per-dimension mean and std of the training targets, float32 ``[D]`` each.

    The student trains to predict standardised targets (its output times ``scale`` plus
    ``offset`` is compared with the raw target, so the loss keeps its meaning), and the two
    are folded into its final Dense at the end (:func:`_fold_standardisation`). Teacher
    vectors can sit far from zero with a large spread (``speech_embedding`` values reach
    +-20); Adam's fixed step size then learns a standardised head much faster. Students
    without a final Dense get ``scale=1, offset=0``.
    """
    dim = targets[0].shape[-1]
    if _final_dense(model) is None:
        return np.ones(dim, np.float32), np.zeros(dim, np.float32)
    stacked = np.concatenate(targets, axis=0).astype(np.float64)
    return np.maximum(stacked.std(axis=0), 1e-6).astype(np.float32), stacked.mean(axis=0).astype(np.float32)


def _fold_standardisation(model, scale, offset) -> None:
    """Make the final Dense output ``scale * y + offset`` directly (exact: the layer is affine)."""
    dense = _final_dense(model)
    if dense is not None:
        kernel, bias = dense.get_weights()
        dense.set_weights([kernel * scale[np.newaxis], bias * scale + offset])


def _log_scalar(tag: str, value: float, step: int) -> None:
    """Write a TensorBoard scalar without needing the ``tensorboard`` package installed.

    ``tf.summary.scalar`` imports tensorboard; ``tf.summary.write`` with the scalars plugin
    metadata writes the same event record.
    """
    metadata = tf.compat.v1.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata)


def _versions() -> dict:
    import trillsson_tf

    return {
        "trillsson_tf": trillsson_tf.__version__,
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "numpy": np.__version__,
    }


def distill(
    data=None,
    *,
    out_dir,
    teacher=SPEECH_EMBEDDING,
    student: str = DEFAULT_STUDENT,
    output_key=None,
    student_options=None,
    target_mode=None,
    loss: str = "mse",
    lr: float = 1e-3,
    lr_schedule: str = "cosine",
    batch_size: int = 32,
    steps: int = 2000,
    checkpoint_every: int = 500,
    validation_fraction: float = 0.1,
    seed: int = 0,
    cache_dir=None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    targets=None,
    strategy="none",
    outputs=None,
    ccc_weight: float = 0.0,
    augment: int = 0,
) -> dict:
    """Distill ``teacher`` into the registry student ``student`` on the audio of ``data``.

    Args:
        data: A folder, a CSV manifest, or a list of paths / :class:`trillsson_tf.data.AudioItem`
            (targets computed through the local cache); or ``None`` with ``targets``.
        out_dir: Run folder (``run.json``, ``checkpoints/``, ``logs/``, ``export/``).
        teacher: A spec for :func:`trillsson_tf.teachers.load_teacher`, or a loaded teacher.
        student: A registry name (:func:`trillsson_tf.models.available`).
        output_key: Teacher output to regress, when it has several.
        student_options: Overrides of the student's preset config; ``embedding_dim`` is
            always the teacher's output width.
        target_mode: ``global`` (clip vector) or ``local`` (per 2 s segment); ``None``: ``global``
            for ``data``, the folder's mode for ``targets``.
        loss: One of :data:`LOSSES`.
        lr: Adam learning rate (peak of the schedule).
        lr_schedule: One of :data:`LR_SCHEDULES` (cosine decays to 1% of ``lr`` at ``steps``).
        batch_size: Crops per step.
        steps: Total optimizer steps (a resumed run continues up to this number).
        checkpoint_every: Steps between checkpoints (also written at the end).
        validation_fraction: Share of files held out (deterministic, by file name).
        seed: Seeds the split and the crops.
        cache_dir: Target cache root (see :func:`trillsson_tf.targets.cached_targets`).
        resume: Continue the run in ``out_dir`` from its last checkpoint; refused when the
            teacher or the student differ.
        overwrite: Replace a non-empty ``out_dir`` (ignored with ``resume``).
        progress: Progress bars for target computation and training.
        targets: A targets folder (from :func:`trillsson_tf.pipelines.build_targets` or a cache
            folder) to train on instead of ``data``: audio and targets are read from its
            shards; targets made by another teacher than ``teacher`` are refused.
        strategy: One of :data:`STRATEGIES` or a ``tf.distribute.Strategy``
            (:mod:`trillsson_tf.distribute`); ``batch_size`` is the global batch.
        outputs: Expected width of the teacher's output (for example 3 A/D/V scores); refused
            when the teacher gives another number. ``None``: whatever the teacher gives.
        ccc_weight: Adds ``ccc_weight * (1 - CCC)`` over each batch (:func:`ccc_loss`) to
            ``loss``, for score students judged by CCC; 0 (default) trains on ``loss`` alone.
        augment: Augmented views per training file (:mod:`trillsson_tf.augment`), each with its
            own teacher target, cached like the files' (needs ``data``); 0 (default): none.
            Validation files are never augmented.

    Returns:
        The run record (also in ``<out_dir>/run.json`` and ``<out_dir>/export/run.json``).

    Raises:
        ParameterError: bad choices or numbers, no audio, a non-empty ``out_dir`` without
            ``resume``/``overwrite``, a resume with another teacher or student, ``targets`` made
            by another teacher, a ``batch_size`` that does not divide over the replicas, a bad
            ``TF_CONFIG`` for ``multiworker``.
    """
    from tqdm.auto import tqdm

    # First: the multiworker strategy must exist before TensorFlow runs anything.
    strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
    strategy = make_strategy(strategy)
    if (data is None) == (targets is None):
        raise ParameterError("Give either data (audio to compute targets from) or targets (a targets folder), not both.")
    if target_mode is not None:
        check_mode(target_mode)
    base_loss = make_loss(loss)
    if isinstance(ccc_weight, bool) or not isinstance(ccc_weight, (int, float)) or ccc_weight < 0:
        raise ParameterError(f"ccc_weight must be a number >= 0, got {ccc_weight!r}.")
    loss_fn = base_loss if not ccc_weight else (lambda t, p: base_loss(t, p) + ccc_weight * ccc_loss(t, p))
    if outputs is not None:
        _check_positive("outputs", outputs)
    _check_views(augment)
    if augment and data is None:
        raise ParameterError("augment needs data (audio files): the teacher runs on each augmented view.")
    for name, value in (("batch_size", batch_size), ("steps", steps), ("checkpoint_every", checkpoint_every)):
        _check_positive(name, value)
    if not lr > 0:
        raise ParameterError(f"lr must be a positive learning rate, got {lr!r}.")
    if batch_size % strategy.num_replicas_in_sync:
        raise ParameterError(
            f"batch_size={batch_size} is the global batch and must divide evenly over the "
            f"{strategy.num_replicas_in_sync} replicas of the strategy."
        )
    learning_rate = _learning_rate(lr, lr_schedule, steps)
    preset = models.get_preset(student)
    out_dir = os.fspath(out_dir)

    teacher = load_teacher(teacher, output_key=output_key)
    if outputs is not None and outputs != teacher.embedding_dim:
        raise ParameterError(
            f"outputs={outputs}, but teacher {teacher.spec!r} gives {teacher.embedding_dim} values per clip; "
            "pick its matching output (output_key / --teacher-output) or drop outputs."
        )
    config = {**preset.config, **(student_options or {}), "embedding_dim": teacher.embedding_dim}
    chief = is_chief(strategy)
    previous = (
        _prepare_out_dir(out_dir, resume=resume, overwrite=overwrite, teacher=teacher, student=student, config=config)
        if chief or resume
        else None
    )

    if targets is not None:
        target_set = load_targets(targets, teacher=teacher, mode=target_mode)
        loaded = LoadedAudio(target_set.items, target_set.clips, [])
    else:
        loaded = load_clips(find_audio(data), progress=progress)
        target_set = cached_targets(teacher, loaded, mode=target_mode or "global", cache_dir=cache_dir, progress=progress)
    target_mode = target_set.mode
    train_items, validation_items = split_items(loaded.items, validation_fraction=validation_fraction, seed=seed)
    is_validation = {id(item) for item in validation_items}
    train = [(c, t) for i, c, t in zip(loaded.items, loaded.clips, target_set.targets) if id(i) not in is_validation]
    held = [(c, t) for i, c, t in zip(loaded.items, loaded.clips, target_set.targets) if id(i) in is_validation]
    if not train:
        raise ParameterError(f"No training files left after holding out validation_fraction={validation_fraction}.")
    train_files = len(train)
    if augment:
        train += _augmented_training_pairs(teacher, loaded, is_validation, augment, mode=target_mode, seed=seed,
                                           cache_dir=cache_dir, progress=progress)

    with strategy.scope():
        model = models.build(student, **config)
        optimizer = keras.optimizers.Adam(learning_rate)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    if strategy.num_replicas_in_sync > 1:
        synchronize_batch_norm(model)  # global-batch statistics, as on one device
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var)
    checkpoint_dir = os.path.join(out_dir, "checkpoints")
    manager = tf.train.CheckpointManager(checkpoint, worker_checkpoint_dir(strategy, checkpoint_dir), max_to_keep=3)
    latest = tf.train.latest_checkpoint(checkpoint_dir)  # the chief's, which every worker restores
    if resume and latest:
        checkpoint.restore(latest).expect_partial()
        _log.info("Resumed %s at step %d", out_dir, int(step_var.numpy()))
    scale, offset = _target_standardisation(model, [t for _, t in train])
    key = models.output_key(model)
    # Same variables, float32 log-mel: 10% more steps/s for tiny_cnn_k5, same fidelity (measured); the export keeps float64.
    trained = models.float32_frontend_model(model) if _has_log_mel(model) else model

    replicas = strategy.num_replicas_in_sync

    def replica_step(audio, target):
        with tf.GradientTape() as tape:
            # Each replica's mean over its equal share, divided by the replica count: the summed
            # gradients are those of the global batch's mean loss.
            value = loss_fn(target, trained(audio, training=True)[key] * scale + offset) / replicas
        optimizer.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables))
        return value

    @tf.function
    def train_step(audio, target):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(audio, target)), axis=None)

    @tf.function
    def eval_loss(audio, target):
        return loss_fn(target, model(audio, training=False)[key] * scale + offset)

    batches = _Batches([c for c, _ in train], [t for _, t in train], mode=target_mode, batch_size=batch_size, seed=seed)
    validation = _validation_batch([c for c, _ in held], [t for _, t in held])
    record = previous or {}
    history = list(record.get("loss_history", []))
    validation_history = list(record.get("validation_history", []))
    record.update(
        {
            "teacher": teacher.describe(),
            "student": {"name": student, "config": config, "parameters": int(model.count_params()), "output": key},
            "data": {
                "source": (
                    f"targets {os.fspath(targets)}" if data is None
                    else os.fspath(data) if not isinstance(data, (list, tuple)) else f"list of {len(data)} files"
                ),
                "files": len(loaded.items),
                "train_files": train_files,
                "validation_files": len(held),
                "augmented_views_per_file": augment,
                "skipped": [path for path, _ in loaded.skipped],
                "target_mode": target_mode,
                "target_cache": target_set.directory,
            },
            "training": {
                "loss": loss,
                "ccc_weight": ccc_weight,
                "lr": lr,
                "lr_schedule": lr_schedule,
                "batch_size": batch_size,
                "steps": steps,
                "checkpoint_every": checkpoint_every,
                "validation_fraction": validation_fraction,
                "seed": seed,
                "strategy": strategy_name,
                "replicas": replicas,
            },
            "versions": _versions(),
        }
    )

    def save(step: int) -> None:
        manager.save(checkpoint_number=step)
        if validation is not None:
            validation_history.append([step, float(eval_loss(*validation))])
        record.update({"step": step, "loss_history": history, "validation_history": validation_history})
        if chief:
            with open(os.path.join(out_dir, RUN_FILE), "w") as handle:
                json.dump(record, handle, indent=2)

    start = int(step_var.numpy())
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "logs")) if chief else tf.summary.create_noop_writer()
    bar = tqdm(total=steps, initial=start, desc=f"distill {student}", unit="step", disable=not progress)
    began, value = time.perf_counter(), None
    with writer.as_default():
        for step in range(start + 1, steps + 1):
            value = float(train_step(*distribute_batch(strategy, *batches(step - 1))))
            step_var.assign(step)
            bar.update(1)
            if step % _LOG_EVERY_STEPS == 0 or step == steps:
                history.append([step, value])
                _log_scalar("loss", value, step=step)
                _log_scalar("learning_rate", float(learning_rate(step) if callable(learning_rate) else lr), step=step)
                bar.set_postfix(loss=f"{value:.4g}")
            if step % checkpoint_every == 0 and step != steps:
                save(step)
                if validation_history:
                    _log_scalar("validation_loss", validation_history[-1][1], step=step)
    bar.close()
    elapsed_s = time.perf_counter() - began
    save(steps)
    if validation_history:
        with writer.as_default():
            _log_scalar("validation_loss", validation_history[-1][1], step=steps)
    writer.flush()

    record["steps_per_second"] = (steps - start) / elapsed_s if steps > start and elapsed_s > 0 else None
    record["resumed_from_step"] = start if resume else None
    if manager.directory != checkpoint_dir:
        shutil.rmtree(manager.directory, ignore_errors=True)
    if replicas > 1 or not chief:
        # Export a plain copy: reading the distributed variables is a collective step every worker takes.
        weights = model.get_weights()
        model = models.build(student, **config)
        model.set_weights(weights)
    if not chief:
        record["export"] = None
        wait_for_workers(strategy)  # stay in the cluster until the chief has exported
        return record
    _fold_standardisation(model, scale, offset)
    export_dir = export_savedmodel(
        model, os.path.join(out_dir, "export"), overwrite=True, extra_metadata={"teacher": teacher.describe()}
    )
    wait_for_workers(strategy)
    record["export"] = export_dir
    for path in (os.path.join(out_dir, RUN_FILE), os.path.join(export_dir, RUN_FILE)):
        with open(path, "w") as handle:
            json.dump(record, handle, indent=2)
    _log.info("Distilled %s from %s in %d steps; exported to %s", student, teacher.spec, steps, export_dir)
    return record
