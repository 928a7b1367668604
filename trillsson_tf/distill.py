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
import logging
import os
import shutil

import numpy as np

from trillsson_tf import models
from trillsson_tf._keras import keras, tf
from trillsson_tf.augment import check_views
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
from trillsson_tf.kinds import WAVEFORM
from trillsson_tf.metrics import fidelity
from trillsson_tf.targets import augmented_targets, cached_targets, check_mode, load_targets
from trillsson_tf.teachers import SPEECH_EMBEDDING, load_teacher
from trillsson_tf.training import (LR_SCHEDULES, RunFolder, check_positive, learning_rate_schedule, log_scalar,
                                   run_steps, versions)

__all__ = ["LOSSES", "LR_SCHEDULES", "DEFAULT_STUDENT", "STRATEGIES", "ccc_loss", "distill", "make_loss"]

_log = logging.getLogger(__name__)

LOSSES = ("mse", "cosine", "l1")
DEFAULT_STUDENT = "tiny_cnn"


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
        The run record (also in ``<out_dir>/run.json`` and ``<out_dir>/export/run.json``), with
        ``fidelity`` on the held-out files (:func:`trillsson_tf.metrics.fidelity`: raw and centered
        cosine, R², and the training-mean and nearest-training-target baselines). The export's
        ``trillsson_tf.json`` keeps ``target_mean``, the training-set mean teacher vector that
        ``evaluate`` centers on.

    Raises:
        ParameterError: bad choices or numbers, no audio, a non-empty ``out_dir`` without
            ``resume``/``overwrite``, a resume with another teacher or student, ``targets`` made
            by another teacher, a ``batch_size`` that does not divide over the replicas, a bad
            ``TF_CONFIG`` for ``multiworker``.
    """
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
        check_positive("outputs", outputs)
    check_views(augment)
    if augment and data is None:
        raise ParameterError("augment needs data (audio files): the teacher runs on each augmented view.")
    for name, value in (("batch_size", batch_size), ("steps", steps), ("checkpoint_every", checkpoint_every)):
        check_positive(name, value)
    if batch_size % strategy.num_replicas_in_sync:
        raise ParameterError(
            f"batch_size={batch_size} is the global batch and must divide evenly over the "
            f"{strategy.num_replicas_in_sync} replicas of the strategy."
        )
    learning_rate = learning_rate_schedule(lr, lr_schedule, steps)
    preset = models.get_preset(student)
    if preset.family == WAVEFORM:
        raise ParameterError(f"Student {student!r} is a layer-distillation encoder: distill it with distill_layers "
                             "(CLI `trillsson-tf distill-layers`), which regresses a teacher's hidden layers.")

    teacher = load_teacher(teacher, output_key=output_key)
    if outputs is not None and outputs != teacher.embedding_dim:
        raise ParameterError(
            f"outputs={outputs}, but teacher {teacher.spec!r} gives {teacher.embedding_dim} values per clip; "
            "pick its matching output (output_key / --teacher-output) or drop outputs."
        )
    config = {**preset.config, **(student_options or {}), "embedding_dim": teacher.embedding_dim}
    chief = is_chief(strategy)
    run = RunFolder(out_dir, resume=resume, overwrite=overwrite, chief=chief)
    record = run.open(
        {"teacher": teacher.spec, "teacher_identity": teacher.identity, "student": student, "config": config},
        lambda i: f"was distilled from teacher {i['teacher']!r} ({i['teacher_identity']}) into student "
                  f"{i['student']!r} with {i['config']}",
        compared=("teacher_identity", "student", "config"),
    )

    if targets is not None:
        target_set = load_targets(targets, teacher=teacher, mode=target_mode)
        loaded = LoadedAudio(target_set.items, target_set.clips, [])
    else:
        loaded = load_clips(find_audio(data), progress=progress)
        target_set = cached_targets(teacher, loaded, mode=target_mode or "global", cache_dir=cache_dir, progress=progress)
    target_mode = target_set.mode
    _, validation_items = split_items(loaded.items, validation_fraction=validation_fraction, seed=seed)
    is_validation = {id(item) for item in validation_items}
    train = [(c, t) for i, c, t in zip(loaded.items, loaded.clips, target_set.targets) if id(i) not in is_validation]
    held = [(c, t) for i, c, t in zip(loaded.items, loaded.clips, target_set.targets) if id(i) in is_validation]
    if not train:
        raise ParameterError(f"No training files left after holding out validation_fraction={validation_fraction}.")
    train_files = len(train)
    if augment:
        training = LoadedAudio([i for i in loaded.items if id(i) not in is_validation], [c for c, _ in train], [])
        train += augmented_targets(teacher, training, augment, mode=target_mode, seed=seed, cache_dir=cache_dir,
                                   progress=progress)

    checkpoint_dir = os.path.join(run.path, "checkpoints")
    with strategy.scope():
        model = models.build(student, **config)
        optimizer = keras.optimizers.Adam(learning_rate)
        checkpoints = run.checkpoints({"model": model, "optimizer": optimizer},
                                      directory=worker_checkpoint_dir(strategy, checkpoint_dir))
    if strategy.num_replicas_in_sync > 1:
        synchronize_batch_norm(model)  # global-batch statistics, as on one device
    start = checkpoints.restore() if resume else 0
    if start:
        _log.info("Resumed %s at step %d", run.path, start)
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
    validation_history = record.setdefault("validation_history", [])
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
            "versions": versions(),
        }
    )

    def validate(step: int) -> None:
        if validation is not None:
            validation_history.append([step, float(eval_loss(*validation))])
            log_scalar("validation_loss", validation_history[-1][1], step=step)

    elapsed_s = run_steps(
        lambda index: train_step(*distribute_batch(strategy, *batches(index))),
        start=start, steps=steps, checkpoint_every=checkpoint_every, on_checkpoint=run.saver(checkpoints, validate),
        history=record.setdefault("loss_history", []), writer=run.writer(), progress=progress, description=f"distill {student}",
        scalars=lambda step: {"learning_rate": float(learning_rate(step) if callable(learning_rate) else lr)},
    )

    record["steps_per_second"] = (steps - start) / elapsed_s if steps > start and elapsed_s > 0 else None
    record["resumed_from_step"] = start if resume else None
    if checkpoints.manager.directory != checkpoint_dir:
        shutil.rmtree(checkpoints.manager.directory, ignore_errors=True)
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
    training_targets = np.concatenate([t for _, t in train]).astype(np.float64)
    target_mean = training_targets.mean(axis=0)
    if validation is not None:
        # On the held-out files, beside what the training mean and the best training target score.
        record["fidelity"] = {**fidelity(validation[1], model(validation[0], training=False)[key].numpy(),
                                         center=target_mean, training_targets=training_targets),
                              "files": len(held), "segment": "the first 2 s of each held-out file"}
    export_dir = export_savedmodel(
        model, os.path.join(run.path, "export"), overwrite=True,
        extra_metadata={"teacher": teacher.describe(), "target_mean": [float(v) for v in target_mean]},
    )
    wait_for_workers(strategy)
    record["export"] = export_dir
    run.write(export_dir)
    _log.info("Distilled %s from %s in %d steps; exported to %s", student, teacher.spec, steps, export_dir)
    return record
