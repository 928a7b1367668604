"""Distillation: train a registry student to regress a teacher's cached targets.

``distill(data, out_dir=..., config=DistillConfig(...))`` (or the config's fields as keywords) runs
five phases: open the run folder, fill and scan the target shards, build the student and its data
stream, train, export. The run folder holds ``run.json``, ``checkpoints/``, ``logs/`` and ``export/``.
Score students (output ``scores``) regress a teacher's scores the same way; see docs/DESIGN.md.
"""

import dataclasses
import logging
import os
import re
import time

import numpy as np

from trillsson_tf import models
from trillsson_tf._keras import keras, tf
from trillsson_tf.train.data import find_audio, source_paths, split_items
from trillsson_tf.configs import (
    DEFAULT_STUDENT,
    LOSSES,
    LR_SCHEDULES,
    STRATEGIES,
    DistillConfig,
    as_record,
    make_config,
)
from trillsson_tf.train.distribute import (
    distribute_batch,
    input_pipelines,
    is_chief,
    make_strategy,
    synchronize_batch_norm,
    wait_for_workers,
    worker_checkpoint_dir,
)
from trillsson_tf.errors import ParameterError
from trillsson_tf.models.export import export_savedmodel
from trillsson_tf.formats.target_shard import pcm16_float
from trillsson_tf.train.input_pipeline import (
    SHUFFLE_BUFFER,
    read_target_table,
    reader_shards,
    scan_shards,
    training_dataset,
)
from trillsson_tf.kinds import WAVEFORM
from trillsson_tf.metrics import fidelity
from trillsson_tf.models.teacher_heads import TeacherBlock, with_output_heads
from trillsson_tf.train.targets import build_cache
from trillsson_tf.teachers import load_teacher
from trillsson_tf.train.engine import (
    RunFolder,
    check_float16,
    learning_rate_schedule,
    log_scalar,
    mixed_precision_policy,
    records_identity,
    run_steps,
    use_mixed_precision,
    versions,
)

__all__ = [
    "LOSSES",
    "LR_SCHEDULES",
    "DEFAULT_STUDENT",
    "STRATEGIES",
    "DistillConfig",
    "ccc_loss",
    "distill",
    "make_loss",
]

_log = logging.getLogger(__name__)


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
    denominator = (
        tf.math.reduce_variance(target, axis=0)
        + tf.math.reduce_variance(prediction, axis=0)
        + tf.square(mean_t - mean_p)
    )
    return tf.reduce_mean(1.0 - 2.0 * covariance / (denominator + 1e-8))


def _has_log_mel(model) -> bool:
    return any(layer.name == "log_mel_patches" for layer in model.layers)


def _final_dense(model):
    """The student's last layer when it is a Dense with a bias (the projection head), else ``None``."""
    last = models.inner_network(model).layers[-1]
    return last if isinstance(last, keras.layers.Dense) and last.use_bias else None


def teacher_output_names(specs) -> list:
    """Output names of several teachers: ``campplus``, ``crepe``, a file's stem; made unique with ``_2``..."""
    names = []
    for spec in specs:
        spec = getattr(spec, "spec", spec)
        parts = [part for part in re.split(r"[/\\]", spec.split("://")[-1].rstrip("/")) if part]
        if "://" in spec:
            parts = [part for part in parts if not part.isdigit()] or parts  # hub handles end in a version
            base = parts[-1]
        else:
            base = os.path.splitext(os.path.basename(spec.split(":")[0].rstrip("/\\")))[0] or "teacher"
        name = re.sub(r"\W", "_", base).lower().strip("_") or "teacher"
        name = f"t_{name}" if name[0].isdigit() or name in models.OUTPUT_KEYS else name
        unique, count = name, 1
        while unique in names:
            count += 1
            unique = f"{name}_{count}"
        names.append(unique)
    return names


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
    if _final_dense(model) is None and not scan.joins:  # several teachers: always standardised (heads unfold it)
        return np.ones(dim, np.float32), np.zeros(dim, np.float32)
    return np.maximum(scan.target_std, 1e-6).astype(np.float32), scan.target_mean.astype(np.float32)


def _fold_standardisation(model, scale, offset) -> None:
    """Make the final Dense output ``scale * y + offset`` directly (exact: the layer is affine)."""
    dense = _final_dense(model)
    if dense is not None:
        kernel, bias = dense.get_weights()
        dense.set_weights([kernel * scale[np.newaxis], bias * scale + offset])


@dataclasses.dataclass
class _Session:
    """What one :func:`distill` call carries from phase to phase."""

    config: DistillConfig
    strategy: object
    strategy_name: str
    data: object
    targets: object
    resume: bool
    progress: bool
    teacher: object = None  # the first teacher: its targets folder holds the audio
    teachers: list = None
    names: list = None  # several teachers: each one's output name
    teacher_skips: list = None  # several teachers: per teacher, files it could not be run on
    student_config: dict = None
    run: RunFolder = None
    record: dict = None
    mixed: bool = False
    scan: object = None
    model: object = None


def distill(
    data=None,
    *,
    out_dir,
    config=None,
    targets=None,
    cache_dir=None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **options,
) -> dict:
    """Distill a teacher into a registry student on the audio of ``data`` (or a ``targets`` folder).

    Args:
        data: A folder, a CSV manifest, or a list of paths / :class:`trillsson_tf.train.data.AudioItem`
            (targets computed through the local cache); or ``None`` with ``targets``.
        out_dir: Run folder (``run.json``, ``checkpoints/``, ``logs/``, ``export/``).
        config: A :class:`~trillsson_tf.configs.DistillConfig` (teacher, student, loss, optimizer,
            stream); ``options`` are its fields as keywords, applied over it (``steps=100``).
        targets: A targets folder (``trillsson-tf targets`` or a cache folder) to train on instead
            of ``data``; targets made by another teacher are refused.
        cache_dir: Target cache root (see :func:`trillsson_tf.train.targets.build_cache`).
        resume: Continue the run in ``out_dir`` from the checkpoint its record names; refused,
            naming the change, when the teacher, student, options or training records differ.
        overwrite: Replace a non-empty ``out_dir`` (ignored with ``resume``; never an input).
        progress: Progress bars for target computation and training.

    Returns:
        The run record (also in ``<out_dir>/run.json`` and ``<out_dir>/export/run.json``): the
        config as given, data, training figures, loss and validation histories, and ``fidelity``
        on the held-out files (:func:`trillsson_tf.metrics.fidelity`). The export's
        ``trillsson_tf.json`` keeps ``target_mean``, the training-set mean teacher vector.

    Raises:
        ParameterError: bad options (checked by the config), no audio, a non-empty ``out_dir``
            without ``resume``/``overwrite``, a resume that changes anything, a batch size that
            does not divide over the replicas, a bad ``TF_CONFIG`` for ``multiworker``.
    """
    config = make_config(DistillConfig, config, **options)
    strategy = config.strategy
    name = strategy if isinstance(strategy, str) else type(strategy).__name__
    # First: the multiworker strategy must exist before TensorFlow runs anything.
    session = _Session(config, make_strategy(strategy), name, data, targets, bool(resume), progress)
    _open(session, out_dir, overwrite)
    skipped_files, set_aside, scan_s = _read_targets(session, cache_dir)
    batches, optimizer, checkpoints, float16_error = _build(session)
    start = session.run.restore(checkpoints) if resume else 0
    scale, offset = _target_standardisation(session.model, session.scan)
    _describe(session, skipped_files, set_aside, scan_s, float16_error)
    timing = _train(session, batches, optimizer, checkpoints, start, scale, offset)
    session.record.update(timing.as_record())
    session.record["resumed_from_step"] = start if resume else None
    return _export(session, scale, offset)


def _check(config: DistillConfig, strategy, data, targets) -> None:
    """What the config cannot check alone: the sources, the student's family, the batch over the replicas."""
    if (data is None) == (targets is None):
        raise ParameterError(
            "Give either data (audio to compute targets from) or targets (a targets folder), not both."
        )
    if len(config.teachers) > 1 and targets is not None:
        raise ParameterError("Several teachers need data (audio files): each computes its targets in the cache.")
    if config.augment and data is None:
        raise ParameterError("augment needs data (audio files): the teacher runs on each augmented view.")
    make_loss(config.loss)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ParameterError(
            f"batch_size={config.batch_size} is the global batch and must divide evenly over the "
            f"{strategy.num_replicas_in_sync} replicas of the strategy."
        )
    if models.get_preset(config.student).family == WAVEFORM:
        raise ParameterError(
            f"Student {config.student!r} is a layer-distillation encoder: distill it with "
            "distill_layers (CLI `trillsson-tf distill-layers`), which regresses a teacher's hidden layers."
        )


def _open(session: _Session, out_dir, overwrite: bool) -> None:
    """Check the options, load the teacher, open (or check, on resume) the run folder."""
    config, strategy = session.config, session.strategy
    _check(config, strategy, session.data, session.targets)
    session.mixed = use_mixed_precision(config.mixed_precision)
    session.teachers = [load_teacher(spec, output_key=config.output_key) for spec in config.teachers]
    teacher = session.teacher = session.teachers[0]
    several = len(session.teachers) > 1
    session.names = teacher_output_names(session.teachers) if several else None
    if config.outputs is not None and config.outputs != teacher.embedding_dim:
        raise ParameterError(
            f"outputs={config.outputs}, but teacher {teacher.spec!r} gives {teacher.embedding_dim} values per clip; "
            "pick its matching output (output_key / --teacher-output) or drop outputs."
        )
    preset = models.get_preset(config.student)
    width = sum(one.embedding_dim for one in session.teachers)
    session.student_config = {**preset.config, **(config.student_options or {}), "embedding_dim": width}
    session.run = RunFolder(
        out_dir,
        resume=session.resume,
        overwrite=overwrite,
        chief=is_chief(strategy),
        inputs=[
            ("--data", source_paths(session.data)),
            ("--targets", session.targets),
            *(("--teacher", one.spec) for one in session.teachers),
        ],
    )
    # Everything that shapes the stream of batches or the updates is compared on resume; steps may grow.
    stream = {
        key: getattr(config, key)
        for key in (
            "batch_size",
            "seed",
            "shuffle_buffer",
            "validation_fraction",
            "target_mode",
            "augment",
            "loss",
            "ccc_weight",
            "lr",
            "lr_schedule",
        )
    }
    stream.update(strategy=session.strategy_name, replicas=strategy.num_replicas_in_sync)
    if several:
        stream["teacher_weights"] = list(config.weights)
    session.record = session.run.open(
        {
            "teacher": [one.spec for one in session.teachers] if several else teacher.spec,
            "teacher_identity": [one.identity for one in session.teachers] if several else teacher.identity,
            "student": config.student,
            "config": session.student_config,
            "mixed_precision": session.mixed,
            "stream": stream,
        },
        lambda i: f"was distilled from teacher {i['teacher']!r} ({i['teacher_identity']}) into student "
        f"{i['student']!r} with {i['config']}, mixed_precision={i.get('mixed_precision', False)}",
        compared=("teacher_identity", "student", "config", "mixed_precision", "stream"),
    )


def _read_targets(session: _Session, cache_dir):
    """Fill the target cache (``data``) or take the ``targets`` folder, then scan its shards once."""
    config = session.config
    mode = config.target_mode
    joins = []
    if session.targets is not None:
        folder, keys, skipped_files, set_aside = session.targets, None, [], []
    else:
        # Streams: one file in memory at a time; views only for the files the split trains on.
        items = find_audio(session.data)
        train_items, _ = split_items(items, validation_fraction=config.validation_fraction, seed=config.seed)
        mode = mode or "global"
        cache = _fill_cache(session, session.teacher, items, train_items, mode, cache_dir)
        folder, keys, skipped_files = cache.directory, cache.keys + cache.view_keys, cache.skipped
        set_aside = cache.bad_shards  # recomputed, but the run says which shards were unusable
        del cache  # a string per record: the scan's fingerprints replace them for the whole run
        session.teacher_skips = [skipped_files]
        joins = _other_teachers(session, items, train_items, mode, cache_dir, keys)
    began = time.perf_counter()
    session.scan = scan_shards(
        folder,
        teacher=session.teacher,
        mode=mode,
        keys=keys,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
        joins=joins,
        progress=session.progress,
    )
    for name, table, lacking in zip(session.names or [], joins, session.scan.missing):
        if lacking:
            _log.warning("Left out %d file(s) teacher %r has no target for.", lacking, name)
    session.run.confirm(training_records=records_identity(session.scan))
    return skipped_files, set_aside, time.perf_counter() - began


def _fill_cache(session: _Session, teacher, items, train_items, mode: str, cache_dir):
    """``teacher``'s cache of ``items`` (augmented views of ``train_items``), filled where it lacks targets."""
    config = session.config
    return build_cache(
        teacher,
        items,
        mode=mode,
        cache_dir=cache_dir,
        views=config.augment,
        augmented=train_items,
        seed=config.seed,
        progress=session.progress,
    )


def _other_teachers(session: _Session, items, train_items, mode: str, cache_dir, keys) -> list:
    """Several teachers: fill each other teacher's cache for the same files and read its targets of ``keys``."""
    tables = []
    for teacher in session.teachers[1:]:
        cache = _fill_cache(session, teacher, items, train_items, mode, cache_dir)
        session.teacher_skips.append(cache.skipped)
        tables.append(read_target_table(cache.directory, teacher=teacher, keys=keys))
    return tables


def _blocks(session: _Session, scale, offset) -> list:
    """Several teachers: each one's :class:`TeacherBlock` of the standardised row."""
    ends = np.cumsum(session.scan.widths)
    return [
        TeacherBlock(name, stop - width, stop, scale[stop - width : stop], offset[stop - width : stop])
        for name, width, stop in zip(session.names, session.scan.widths, ends)
    ]


def _build(session: _Session):
    """The data stream, the student (probed in float16 when mixed), its optimizer and checkpoints."""
    config, strategy, run = session.config, session.strategy, session.run
    keras.utils.set_random_seed(config.seed)  # the same weights and data order for the same seed, whatever the strategy
    pipelines = input_pipelines(strategy)
    dataset = training_dataset(
        session.scan,
        batch_size=config.batch_size // pipelines[0],
        seed=config.seed,
        shuffle_buffer=config.shuffle_buffer,
        pipelines=pipelines,
    )
    batches = iter(dataset)
    float16_error = None
    if session.mixed:  # probed on a first batch of real crops before any step
        try:
            float16_error = check_float16(
                lambda: models.build(config.student, **session.student_config), next(iter(dataset))[0]
            )
        except ParameterError as error:
            if config.mixed_precision:
                raise
            _log.warning("%s Training in float32.", error)
            session.mixed = False
        keras.utils.set_random_seed(config.seed)  # the probe drew random weights: the student's are those of the seed
    with strategy.scope():
        with mixed_precision_policy(session.mixed):
            session.model = models.build(config.student, **session.student_config)
        optimizer = keras.optimizers.Adam(learning_rate_schedule(config.lr, config.lr_schedule, config.steps))
        if session.mixed:
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        # The data iterator is saved with the weights: a resumed run continues the same stream of crops.
        checkpoints = run.checkpoints(
            {"model": session.model, "optimizer": optimizer, "data": batches},
            directory=worker_checkpoint_dir(strategy, os.path.join(run.path, "checkpoints")),
        )
    if strategy.num_replicas_in_sync > 1:
        synchronize_batch_norm(session.model)  # global-batch statistics, as on one device
    return batches, optimizer, checkpoints, float16_error


def _loss_fn(config: DistillConfig, blocks=None):
    """``(target, prediction) -> loss``, both raw ``[batch, D]``; with teacher ``blocks``, the weighted
    sum of each teacher's loss on its standardised block, so that no teacher's units outweigh another's."""
    base = make_loss(config.loss)
    weight = config.ccc_weight
    one = base if not weight else (lambda t, p: base(t, p) + weight * ccc_loss(t, p))
    if not blocks:
        return one

    def several(target, prediction):
        total = 0.0
        for block, share in zip(blocks, config.weights):
            columns = slice(block.start, block.stop)
            standard = [(values[:, columns] - block.offset) / block.scale for values in (target, prediction)]
            total += share * one(*standard)
        return total

    return several


def _predictor(model, batch: int):
    """``audio int16 [N, samples] -> float32 [N, D]``: the student's outputs, ``batch`` clips a call.

    Batched: one call on all held-out clips (up to 256) took 500 MB at every checkpoint.
    """
    key = models.output_key(model)
    predict = tf.function(lambda clips: tf.cast(model(clips, training=False)[key], tf.float32), reduce_retracing=True)
    return lambda audio: np.concatenate(
        [predict(pcm16_float(audio[i : i + batch])).numpy() for i in range(0, len(audio), batch)]
    )


def _describe(session: _Session, skipped_files, set_aside, scan_s, float16_error) -> None:
    """Put what the run is (config as given, student, data, training) into its record."""
    config, scan = session.config, session.scan
    session.record.update(
        {
            "config": as_record(config),
            "teacher": _teacher_record(session),
            "student": {
                "name": config.student,
                "config": session.student_config,
                "parameters": int(session.model.count_params()),
                "output": models.output_key(session.model),
            },
            "data": _data_record(session, skipped_files, set_aside, scan_s),
            "training": {
                **{
                    key: getattr(config, key)
                    for key in (
                        "loss",
                        "ccc_weight",
                        "lr",
                        "lr_schedule",
                        "batch_size",
                        "steps",
                        "checkpoint_every",
                        "validation_fraction",
                        "seed",
                    )
                },
                "shuffle_buffer": min(config.shuffle_buffer or SHUFFLE_BUFFER, scan.train_records),
                "strategy": session.strategy_name,
                "replicas": session.strategy.num_replicas_in_sync,
                "input_pipelines": input_pipelines(session.strategy)[0],
                "mixed_precision": session.mixed,
                "float16_error": float16_error,
            },
            "versions": versions(),
        }
    )


def _data_record(session: _Session, skipped_files, set_aside, scan_s) -> dict:
    """What the run read: the source, files and records, the target cache and its shards."""
    config, scan, data = session.config, session.scan, session.data
    source = (
        f"targets {os.fspath(session.targets)}"
        if data is None
        else os.fspath(data)
        if not isinstance(data, (list, tuple))
        else f"list of {len(data)} files"
    )
    return {
        "source": source,
        "files": scan.train_files + scan.validation_files,
        "train_files": scan.train_files,
        "validation_files": scan.validation_files,
        "validation_clips": len(scan.validation_audio),
        "train_records": scan.train_records,
        "train_hours": scan.train_hours,
        "augmented_views_per_file": config.augment,
        "skipped": [path for path, _ in skipped_files],
        "target_mode": scan.mode,
        "target_cache": scan.directory,
        "shards": len(scan.shards),
        "shards_read": len(reader_shards(scan, input_pipelines(session.strategy))),  # by this process
        "skipped_shards": [path for path, _ in set_aside + scan.skipped_shards],
        "scan_seconds": scan_s,  # one read of every shard before the first step
    }


def _teacher_record(session: _Session) -> dict:
    """The teacher's description; with several, ``spec`` joins theirs and ``teachers`` describes each."""
    if not session.names:
        return session.teacher.describe()
    scan, config = session.scan, session.config
    return {
        "spec": " + ".join(teacher.spec for teacher in session.teachers),
        "teachers": [
            {
                **teacher.describe(),
                "output": name,
                "width": width,
                "weight": weight,
                "skipped_files": len(skipped),
                "files_without_target": lacking,
            }
            for teacher, name, width, weight, skipped, lacking in zip(
                session.teachers,
                session.names,
                scan.widths,
                config.weights,
                session.teacher_skips,
                (0, *scan.missing),
            )
        ],
    }


def _train(session: _Session, batches, optimizer, checkpoints, start: int, scale, offset):
    """Run the steps (``start + 1`` on), validating at every checkpoint; returns the loop's timing."""
    config, strategy, model, run, mixed = session.config, session.strategy, session.model, session.run, session.mixed
    blocks = _blocks(session, scale, offset) if session.names else None
    loss_fn, key, replicas = _loss_fn(config, blocks), models.output_key(model), strategy.num_replicas_in_sync
    # Same variables, float32 log-mel: 10% more steps/s for tiny_cnn_k5, same fidelity (measured); the export keeps float64.
    trained = models.float32_frontend_model(model) if _has_log_mel(model) else model

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

    outputs, scan = _predictor(model, config.batch_size), session.scan
    history = session.record.setdefault("validation_history", [])

    def validate(step: int) -> None:
        if len(scan.validation_audio):
            history.append(
                [step, float(loss_fn(scan.validation_targets, outputs(scan.validation_audio) * scale + offset))]
            )
            log_scalar("validation_loss", history[-1][1], step=step)

    learning_rate = learning_rate_schedule(config.lr, config.lr_schedule, config.steps)  # the optimizer's, for the log
    # Each process feeds its share of the global batch to its own replicas (every worker its own shards).
    return run_steps(
        lambda index: train_step(*distribute_batch(strategy, *next(batches))),
        start=start,
        steps=config.steps,
        checkpoint_every=config.checkpoint_every,
        on_checkpoint=run.saver(checkpoints, validate),
        history=session.record.setdefault("loss_history", []),
        writer=run.writer(),
        progress=session.progress,
        description=f"distill {config.student}",
        scalars=lambda step: {"learning_rate": float(learning_rate(step) if callable(learning_rate) else config.lr)},
    )


def _export(session: _Session, scale, offset) -> dict:
    """Fold the standardisation into the head, score the held-out clips, export; returns the record."""
    config, strategy, record, scan, model = (
        session.config,
        session.strategy,
        session.record,
        session.scan,
        session.model,
    )
    chief = is_chief(strategy)
    if strategy.num_replicas_in_sync > 1 or not chief or session.mixed:
        # Export a plain float32 copy: reading the distributed variables is a collective step every worker takes.
        weights = model.get_weights()
        model = models.build(config.student, **session.student_config)
        model.set_weights(weights)
    if not chief:
        record["export"] = None
        wait_for_workers(strategy)  # stay in the cluster until the chief has exported
        return record
    if session.names:
        return _export_several(session, model, scale, offset)
    _fold_standardisation(model, scale, offset)
    if len(scan.validation_audio):
        # On the held-out files, beside what the training mean and the best training target score.
        record["fidelity"] = {
            **fidelity(
                scan.validation_targets,
                _predictor(model, config.batch_size)(scan.validation_audio),
                center=scan.target_mean,
                training_targets=scan.target_subset,
            ),
            "files": len(scan.validation_audio),
            "segment": "the first 2 s of each held-out file",
        }
    export_dir = export_savedmodel(
        model,
        os.path.join(session.run.path, "export"),
        overwrite=True,
        extra_metadata={"teacher": session.teacher.describe(), "target_mean": [float(v) for v in scan.target_mean]},
    )
    wait_for_workers(strategy)
    record["export"] = export_dir
    session.run.write(export_dir)
    _log.info(
        "Distilled %s from %s in %d steps; exported to %s",
        config.student,
        session.teacher.spec,
        config.steps,
        export_dir,
    )
    return record


def _export_several(session: _Session, model, scale, offset) -> dict:
    """Several teachers: the student with one output per teacher and the deployable vector; fidelity per teacher."""
    record, scan, key = session.record, session.scan, models.output_key(model)
    blocks = _blocks(session, scale, offset)
    model = with_output_heads(model, blocks, key=key)
    if len(scan.validation_audio):
        predict = models.float32_frontend_model(model) if _has_log_mel(model) else model
        outputs = {name: [] for name in session.names}
        for start in range(0, len(scan.validation_audio), session.config.batch_size):
            results = predict(pcm16_float(scan.validation_audio[start : start + session.config.batch_size]))
            for name in outputs:
                outputs[name].append(results[name].numpy())
        record["fidelity"] = {
            block.name: {
                **fidelity(
                    scan.validation_targets[:, block.start : block.stop],
                    np.concatenate(outputs[block.name]),
                    center=scan.target_mean[block.start : block.stop],
                    training_targets=scan.target_subset[:, block.start : block.stop],
                ),
                "files": len(scan.validation_audio),
            }
            for block in blocks
        }
    export_dir = export_savedmodel(
        model,
        os.path.join(session.run.path, "export"),
        overwrite=True,
        output_names=[key, *session.names],
        extra_metadata={
            "teacher": _teacher_record(session),
            "target_mean": [float(v) for v in scan.target_mean],
            "target_std": [float(v) for v in scale],
            "teacher_outputs": session.names,
        },
    )
    wait_for_workers(session.strategy)
    record["export"] = export_dir
    session.run.write(export_dir)
    _log.info(
        "Distilled %s from %s in %d steps; exported to %s", model.name, len(blocks), session.config.steps, export_dir
    )
    return record
