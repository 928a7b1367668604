"""Distillation: train a registry student to regress a teacher's cached targets (spec section 5).

``distill(data, out_dir=..., teacher=..., student=...)``: load the teacher, fill the target
cache one file at a time (:func:`trillsson_tf.targets.build_cache`; or take a targets folder
made by Beam), scan its shards once (:func:`trillsson_tf.input_pipeline.scan_shards`), build
the student with the teacher's output width as its projection head, train on random 2 s
crops streamed from the shards by ``tf.data`` (MSE by default, Adam lr 1e-3), checkpoint the
weights, optimizer and data iterator every ``checkpoint_every`` steps, log to TensorBoard, and
export the student in hub format to ``<out_dir>/export`` with a ``run.json`` recording what
was done. Memory does not grow with the corpus: no clip is held beyond the shuffle buffer and
at most 256 held-out 2 s clips.

Any vector output is a target, not only embeddings: score students (``wav2small``,
``mobilenetv3small_adv``, ``mobilenetv4convsmall``; output ``scores``) regress a teacher's
scores (for example the ``prosody`` teacher's three), ``outputs`` checks the teacher's width,
and ``ccc_weight`` adds ``ccc_weight * (1 - CCC)`` over each batch to the loss (spec section 6).

Output folder: ``run.json`` (kept up to date; ``--resume`` reads it), ``checkpoints/``,
``logs/`` (TensorBoard), ``export/`` (SavedModel + ``model.keras`` + ``run.json``).
"""
import logging
import os
import time

import numpy as np

from trillsson_tf import models
from trillsson_tf._keras import keras, tf
from trillsson_tf.augment import check_views
from trillsson_tf.data import check_validation_fraction, find_audio, source_paths, split_items
from trillsson_tf.distribute import (
    STRATEGIES,
    distribute_batch,
    input_pipelines,
    is_chief,
    make_strategy,
    synchronize_batch_norm,
    wait_for_workers,
    worker_checkpoint_dir,
)
from trillsson_tf.errors import ParameterError
from trillsson_tf.export import export_savedmodel
from trillsson_tf.input_pipeline import SHUFFLE_BUFFER, reader_shards, scan_shards, training_dataset
from trillsson_tf.kinds import WAVEFORM
from trillsson_tf.metrics import fidelity
from trillsson_tf.targets import build_cache, check_mode
from trillsson_tf.teachers import SPEECH_EMBEDDING, load_teacher
from trillsson_tf.training import (LR_SCHEDULES, RunFolder, check_float16, check_positive, learning_rate_schedule,
                                   log_scalar, mixed_precision_policy, records_identity, run_steps, use_mixed_precision,
                                   versions)

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


def _has_log_mel(model) -> bool:
    return any(layer.name == "log_mel_patches" for layer in model.layers)


def _final_dense(model):
    """The student's last layer when it is a Dense with a bias (the projection head), else ``None``."""
    last = models.inner_network(model).layers[-1]
    return last if isinstance(last, keras.layers.Dense) and last.use_bias else None


def _target_standardisation(model, scan):
    """Per-dimension std and mean of the training targets (from the shard scan), float32 ``[D]`` each.

    The student trains to predict standardised targets (its output times ``scale`` plus
    ``offset`` is compared with the raw target, so the loss keeps its meaning), and the two
    are folded into its final Dense at the end (:func:`_fold_standardisation`). Teacher
    vectors can sit far from zero with a large spread (``speech_embedding`` values reach
    +-20); Adam's fixed step size then learns a standardised head much faster. Students
    without a final Dense get ``scale=1, offset=0``.
    """
    dim = len(scan.target_mean)
    if _final_dense(model) is None:
        return np.ones(dim, np.float32), np.zeros(dim, np.float32)
    return np.maximum(scan.target_std, 1e-6).astype(np.float32), scan.target_mean.astype(np.float32)


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
    shuffle_buffer=None,
    mixed_precision=None,
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
        shuffle_buffer: Training crops shuffled together (:func:`trillsson_tf.input_pipeline.training_dataset`;
            64 KB each, and saved in every checkpoint); ``None``:
            :data:`trillsson_tf.input_pipeline.SHUFFLE_BUFFER`, or the training records when fewer.
        mixed_precision: Train in mixed_float16 (float16 compute, float32 variables, loss
            scaling; the frontend stays float32; the export is float32); ``None``: when a GPU
            is visible. A network that float16 breaks (probed on real crops) is refused before
            training when asked for, and trained in float32 with a warning under ``None``.

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
    for name, value in (("batch_size", batch_size), ("steps", steps), ("checkpoint_every", checkpoint_every),
                        *((("shuffle_buffer", shuffle_buffer),) if shuffle_buffer is not None else ())):
        check_positive(name, value)
    check_validation_fraction(validation_fraction)
    mixed = use_mixed_precision(mixed_precision)
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
    run = RunFolder(out_dir, resume=resume, overwrite=overwrite, chief=chief,
                    inputs=[("--data", source_paths(data)), ("--targets", targets), ("--teacher", teacher.spec)])
    # Everything that shapes the stream of batches or the updates is compared on resume; steps may grow.
    stream = {"batch_size": batch_size, "seed": seed, "shuffle_buffer": shuffle_buffer,
              "validation_fraction": validation_fraction, "target_mode": target_mode, "augment": augment,
              "loss": loss, "ccc_weight": ccc_weight, "lr": lr, "lr_schedule": lr_schedule, "strategy": strategy_name,
              "replicas": strategy.num_replicas_in_sync}
    record = run.open(
        {"teacher": teacher.spec, "teacher_identity": teacher.identity, "student": student, "config": config,
         "mixed_precision": mixed, "stream": stream},
        lambda i: f"was distilled from teacher {i['teacher']!r} ({i['teacher_identity']}) into student "
                  f"{i['student']!r} with {i['config']}, mixed_precision={i.get('mixed_precision', False)}",
        compared=("teacher_identity", "student", "config", "mixed_precision", "stream"),
    )

    if targets is not None:
        folder, keys, skipped_files, cache, set_aside = targets, None, [], None, []
    else:
        # Streams: one file in memory at a time; views only for the files the split trains on.
        items = find_audio(data)
        train_items, _ = split_items(items, validation_fraction=validation_fraction, seed=seed)
        cache = build_cache(teacher, items, mode=target_mode or "global", cache_dir=cache_dir, views=augment,
                            augmented=train_items, seed=seed, progress=progress)
        folder, keys, skipped_files = cache.directory, cache.keys + cache.view_keys, cache.skipped
        set_aside = cache.bad_shards  # recomputed, but the run says which shards were unusable
        target_mode = target_mode or "global"
    scan_began = time.perf_counter()
    scan = scan_shards(folder, teacher=teacher, mode=target_mode, keys=keys, validation_fraction=validation_fraction,
                       seed=seed, progress=progress)
    scan_s = time.perf_counter() - scan_began
    del keys, cache  # a string per record: the scan's fingerprints replace them for the whole run
    target_mode = scan.mode
    run.confirm(training_records=records_identity(scan))
    keras.utils.set_random_seed(seed)  # the same weights and data order for the same seed, whatever the strategy
    pipelines = input_pipelines(strategy)
    dataset = training_dataset(scan, batch_size=batch_size // pipelines[0], seed=seed, shuffle_buffer=shuffle_buffer,
                               pipelines=pipelines)
    batches = iter(dataset)
    float16_error = None
    if mixed:  # probed on a first batch of real crops before any step
        try:
            float16_error = check_float16(lambda: models.build(student, **config), next(iter(dataset))[0])
        except ParameterError as error:
            if mixed_precision:
                raise
            _log.warning("%s Training in float32.", error)
            mixed = False
        keras.utils.set_random_seed(seed)  # the probe drew random weights: the student's are those of the seed

    checkpoint_dir = os.path.join(run.path, "checkpoints")
    with strategy.scope():
        with mixed_precision_policy(mixed):
            model = models.build(student, **config)
        optimizer = keras.optimizers.Adam(learning_rate)
        if mixed:
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        # The data iterator is saved with the weights: a resumed run continues the same stream of crops.
        checkpoints = run.checkpoints({"model": model, "optimizer": optimizer, "data": batches},
                                      directory=worker_checkpoint_dir(strategy, checkpoint_dir))
    if strategy.num_replicas_in_sync > 1:
        synchronize_batch_norm(model)  # global-batch statistics, as on one device
    start = run.restore(checkpoints) if resume else 0
    scale, offset = _target_standardisation(model, scan)
    key = models.output_key(model)
    # Same variables, float32 log-mel: 10% more steps/s for tiny_cnn_k5, same fidelity (measured); the export keeps float64.
    trained = models.float32_frontend_model(model) if _has_log_mel(model) else model

    replicas = strategy.num_replicas_in_sync

    def replica_step(audio, target):
        with tf.GradientTape() as tape:
            # Each replica's mean over its equal share, divided by the replica count: the summed
            # gradients are those of the global batch's mean loss.
            prediction = tf.cast(trained(audio, training=True)[key], tf.float32)
            value = loss_fn(target, prediction * scale + offset) / replicas
            scaled = optimizer.get_scaled_loss(value) if mixed else value
        gradients = tape.gradient(scaled, model.trainable_variables)
        if mixed:
            gradients = optimizer.get_unscaled_gradients(gradients)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return value

    @tf.function
    def train_step(audio, target):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(audio, target)), axis=None)

    @tf.function(reduce_retracing=True)
    def predict(audio):
        return tf.cast(model(audio, training=False)[key], tf.float32)

    def held_out_outputs(audio):
        # batch_size clips at a time: one call on all held-out clips (up to 256) took 500 MB at each checkpoint.
        return np.concatenate([predict(audio[i : i + batch_size]).numpy() for i in range(0, len(audio), batch_size)])

    def eval_loss(audio, target):
        return loss_fn(target, held_out_outputs(audio) * scale + offset)

    validation = (scan.validation_audio, scan.validation_targets) if len(scan.validation_audio) else None
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
                "files": scan.train_files + scan.validation_files,
                "train_files": scan.train_files,
                "validation_files": scan.validation_files,
                "validation_clips": len(scan.validation_audio),
                "train_records": scan.train_records,
                "train_hours": scan.train_hours,
                "augmented_views_per_file": augment,
                "skipped": [path for path, _ in skipped_files],
                "target_mode": target_mode,
                "target_cache": scan.directory,
                "shards": len(scan.shards),
                "shards_read": len(reader_shards(scan, pipelines)),  # by this process
                "skipped_shards": [path for path, _ in set_aside + scan.skipped_shards],
                "scan_seconds": scan_s,  # one read of every shard before the first step
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
                "shuffle_buffer": min(shuffle_buffer or SHUFFLE_BUFFER, scan.train_records),
                "strategy": strategy_name,
                "replicas": replicas,
                "input_pipelines": pipelines[0],
                "mixed_precision": mixed,
                "float16_error": float16_error,
            },
            "versions": versions(),
        }
    )

    def validate(step: int) -> None:
        if validation is not None:
            validation_history.append([step, float(eval_loss(*validation))])
            log_scalar("validation_loss", validation_history[-1][1], step=step)

    # Each process feeds its share of the global batch to its own replicas (every worker its own shards).
    timing = run_steps(
        lambda index: train_step(*distribute_batch(strategy, *next(batches))),
        start=start, steps=steps, checkpoint_every=checkpoint_every, on_checkpoint=run.saver(checkpoints, validate),
        history=record.setdefault("loss_history", []), writer=run.writer(), progress=progress, description=f"distill {student}",
        scalars=lambda step: {"learning_rate": float(learning_rate(step) if callable(learning_rate) else lr)},
    )

    record.update(timing.as_record())
    record["resumed_from_step"] = start if resume else None
    if replicas > 1 or not chief or mixed:
        # Export a plain float32 copy: reading the distributed variables is a collective step every worker takes.
        weights = model.get_weights()
        model = models.build(student, **config)
        model.set_weights(weights)
    if not chief:
        record["export"] = None
        wait_for_workers(strategy)  # stay in the cluster until the chief has exported
        return record
    _fold_standardisation(model, scale, offset)
    if validation is not None:
        # On the held-out files, beside what the training mean and the best training target score.
        record["fidelity"] = {**fidelity(validation[1], held_out_outputs(validation[0]),
                                         center=scan.target_mean, training_targets=scan.sample_targets),
                              "files": len(validation[0]), "segment": "the first 2 s of each held-out file"}
    export_dir = export_savedmodel(
        model, os.path.join(run.path, "export"), overwrite=True,
        extra_metadata={"teacher": teacher.describe(), "target_mean": [float(v) for v in scan.target_mean]},
    )
    wait_for_workers(strategy)
    record["export"] = export_dir
    run.write(export_dir)
    _log.info("Distilled %s from %s in %d steps; exported to %s", student, teacher.spec, steps, export_dir)
    return record
