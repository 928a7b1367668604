"""Layer-wise distillation (DistilHuBERT): a small waveform student predicts a teacher's hidden layers.

``distill_layers(data, out_dir=..., config=LayerDistillConfig(...))`` computes the teacher's layers
once per segment into target shards, trains the student encoder with one head per layer (L1 minus
log-sigmoid cosine), and exports it in hub format with the encoder kept for
:mod:`trillsson_tf.finetune`. Design notes: docs/DESIGN.md, "Layer distillation".
"""

import dataclasses
import logging
import os

import numpy as np

from trillsson_tf._keras import keras, tf
from trillsson_tf.configs import DEFAULT_SEGMENT_SAMPLES, LayerDistillConfig, make_config
from trillsson_tf.data import find_audio, segments, source_paths, split_items
from trillsson_tf.errors import ParameterError
from trillsson_tf.formats.target_shard import pcm16_float
from trillsson_tf.export import export_savedmodel
from trillsson_tf import models
from trillsson_tf.contract import SAMPLE_RATE_HZ
from trillsson_tf.kinds import LAYER_STUDENT_KIND, WAVEFORM
from trillsson_tf.layer_teachers import load_layered_teacher
from trillsson_tf.models import distil
from trillsson_tf.input_pipeline import scan_shards, training_dataset
from trillsson_tf.targets import build_cache
from trillsson_tf.teachers import Teacher
from trillsson_tf.training import RunFolder, records_identity, learning_rate_schedule, run_steps, versions

__all__ = [
    "DEFAULT_SEGMENT_SAMPLES",
    "LayerDistillConfig",
    "alignment_matrix",
    "distill_layers",
    "layer_loss",
    "student_config",
]

_log = logging.getLogger(__name__)


class _SegmentFrames(Teacher):
    """A layered teacher seen by the target cache: one clip in, its segments' layer frames out.

    ``__call__`` on ``[1, samples]`` returns ``{'embedding': float32 [segments, frames * sum(D)]}``
    (the selected layers concatenated on the last axis, each segment's frames flattened into
    one row), so that the target shards store them like any per-segment target.
    """

    def __init__(self, layered, segment_samples: int):
        super().__init__(layered.spec)
        self.layered, self.segment_samples = layered, segment_samples
        self.parameters = layered.parameters
        self.identity = f"{layered.identity}|frame-rows|segment={segment_samples}"
        self.embedding_dim = layered.embedding_dim

    def _embed(self, audio):
        pieces = segments(audio[0], segment_samples=self.segment_samples)
        outputs = self.layered.layer_outputs(pieces)
        frames = np.concatenate([outputs[name] for name in self.layered.layers], axis=-1)
        return frames.reshape(len(pieces), -1)

    def describe(self) -> dict:
        return {**self.layered.describe(), "identity": self.identity, "segment_samples": self.segment_samples}


def alignment_matrix(teacher_spans, student_frames: int, *, hop_samples: int, field_samples: int) -> np.ndarray:
    """Average student frames into teacher frames by time.

    Args:
        teacher_spans: int ``[T_teacher, 2]`` sample ranges ``[start, end)`` of the teacher frames.
        student_frames: Number of student frames T_student.
        hop_samples: Student frame step, in samples.
        field_samples: Student receptive field, in samples.

    Returns:
        float32 ``[T_teacher, T_student]``: row t averages the student frames whose centres lie
        in span t (the nearest frame when none does); rows sum to 1.
    """
    centres = np.arange(student_frames) * hop_samples + field_samples / 2.0
    matrix = np.zeros((len(teacher_spans), student_frames), np.float32)
    for row, (start, end) in enumerate(teacher_spans):
        inside = (centres >= start) & (centres < end)
        if not inside.any():
            inside = np.abs(centres - (start + end) / 2.0) == np.abs(centres - (start + end) / 2.0).min()
        matrix[row, inside] = 1.0 / inside.sum()
    return matrix


def layer_loss(target, prediction):
    """DistilHuBERT's loss for one layer: mean over frames of L1 (mean over D) - log sigmoid(cosine).

    Args:
        target: float32 ``[batch, frames, D]``.
        prediction: float32 ``[batch, frames, D]``.

    Returns:
        Scalar float32 tensor.
    """
    l1 = tf.reduce_mean(tf.abs(target - prediction), axis=-1)
    cosine = tf.reduce_sum(tf.nn.l2_normalize(target, -1) * tf.nn.l2_normalize(prediction, -1), axis=-1)
    return tf.reduce_mean(l1 - tf.math.log_sigmoid(cosine))


def student_config(
    student: str,
    teacher,
    *,
    student_options=None,
    size_fraction: float = 0.25,
    segment_samples: int = DEFAULT_SEGMENT_SAMPLES,
) -> dict:
    """The student's config: the preset, sized to ``size_fraction`` of the teacher unless a width is given.

    Args:
        student: A layer-distillation student: ``trillsson_tf.models.available(family='waveform')``.
        teacher: The layered teacher (its ``parameters`` set the budget).
        student_options: Overrides of the preset (``width``, ``depth``, ...); a ``width`` turns
            the sizing off, a ``depth`` alone is kept while sizing.
        size_fraction: Encoder budget as a share of the teacher's parameters.
        segment_samples: Training segment length (the encoder mirror-pads shorter clips to it).
    """
    if student not in models.available(family=WAVEFORM):
        raise ParameterError(
            f"Unknown layer-distillation student {student!r}. "
            f"Expected one of: {list(models.available(family=WAVEFORM))}."
        )
    preset = models.get_preset(student)
    options = dict(student_options or {})
    unknown = sorted(set(options) - set(preset.config))
    if unknown:
        raise ParameterError(
            f"Unknown option(s) {unknown} for student {student!r}. Expected some of: {sorted(preset.config)}."
        )
    config = {**preset.config, "min_samples": segment_samples}
    if "width" not in options and teacher.parameters:
        if not 0.0 < size_fraction <= 1.0:
            raise ParameterError(f"size_fraction must be in (0, 1], got {size_fraction!r}.")
        config.update(
            distil.sized_config(int(size_fraction * teacher.parameters), depth=options.get("depth", config["depth"]))
        )
    elif "width" in options:
        config.update(
            {
                key: value
                for key, value in distil.scaled_config(
                    options["width"], depth=options.get("depth", config["depth"])
                ).items()
            }
        )
    config.update(options)
    config["conv_layers"] = [list(layer) for layer in config["conv_layers"]]
    return config


def _frame_moments(scan, width: int) -> tuple:
    """Per-dimension mean and std over every training frame, from the scan's moments of frame rows."""
    mean = scan.target_mean.reshape(-1, width)
    square = (np.square(scan.target_std) + np.square(scan.target_mean)).reshape(-1, width)
    pooled = mean.mean(axis=0)
    std = np.sqrt(np.maximum(square.mean(axis=0) - np.square(pooled), 0.0))
    return pooled.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def distill_layers(
    data,
    *,
    out_dir,
    config=None,
    cache_dir=None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **options,
) -> dict:
    """Distill the hidden layers ``layers`` of ``teacher`` into a DistilHuBERT-style student.

    Args:
        data: A folder, a CSV manifest, or a list of paths / :class:`trillsson_tf.data.AudioItem`.
        out_dir: Run folder (``run.json``, ``checkpoints/``, ``logs/``, ``export/``).
        config: A :class:`~trillsson_tf.configs.LayerDistillConfig`; ``options`` are its fields as
            keywords, applied over it. Its fields:
        teacher: A spec for :func:`trillsson_tf.layer_teachers.load_layered_teacher` (``hf:...``,
            ``speech_embedding``, a SavedModel / Keras file, a ``.tflite``), or a loaded one.
        layers: Teacher layers to distill (``'4,8,12'``); default: the teacher's usual choice.
        student: A layer-distillation student: ``trillsson_tf.models.available(family='waveform')``.
        student_options: Overrides of the student config (``width``, ``depth``, ...).
        size_fraction: Without a ``width`` option, the student is the widest one with at most
            this share of the teacher's parameters.
        segment_samples: Training segment length in samples (>= the teacher's window).
        lr: Adam learning rate (peak of the schedule).
        lr_schedule: ``cosine`` or ``constant`` (see :data:`trillsson_tf.distill.LR_SCHEDULES`).
        batch_size: Segments per step.
        steps: Total optimizer steps (a resumed run continues up to this number).
        checkpoint_every: Steps between checkpoints (also written at the end).
        validation_fraction: Share of files held out for the validation loss (on the first
            segment of each of up to :data:`trillsson_tf.input_pipeline.MAX_VALIDATION_FILES`).
        seed: Seeds the split, the batches and the weights.
        cache_dir: Target cache root (see :func:`trillsson_tf.targets.build_cache`).
        augment: Augmented views per training file (:mod:`trillsson_tf.augment`), each with its
            own cached teacher layers, trained on beside the originals. Validation files are
            never augmented.
        resume: Continue the run in ``out_dir``; refused when the teacher, its layers or the
            student differ.
        overwrite: Replace a non-empty ``out_dir`` (ignored with ``resume``).
        progress: Progress bars for targets and training.

    Returns:
        The run record (also ``<out_dir>/run.json`` and ``<out_dir>/export/run.json``), with
        ``loss_history`` ``[[step, total, {layer: loss}], ...]``.

    Raises:
        ParameterError: bad numbers or choices, layers the teacher lacks (listed), a segment
            shorter than the teacher's window, a non-empty ``out_dir`` without ``resume``/``overwrite``.
    """
    config = make_config(LayerDistillConfig, config, **options)
    (
        teacher,
        layers,
        student,
        student_options,
        size_fraction,
        segment_samples,
        lr,
        lr_schedule,
        batch_size,
        steps,
        checkpoint_every,
        validation_fraction,
        seed,
        augment,
    ) = (getattr(config, field.name) for field in dataclasses.fields(config))
    learning_rate = learning_rate_schedule(lr, lr_schedule, steps)

    layered = load_layered_teacher(teacher, layers=layers)
    if segment_samples < max(layered.min_samples, distil.frame_geometry()[1]):
        raise ParameterError(
            f"segment_samples={segment_samples} is shorter than the teacher's window ({layered.min_samples} samples)."
        )
    config = student_config(
        student, layered, student_options=student_options, size_fraction=size_fraction, segment_samples=segment_samples
    )
    frames_teacher = _SegmentFrames(layered, segment_samples)
    run = RunFolder(
        out_dir, resume=resume, overwrite=overwrite, inputs=[("--data", source_paths(data)), ("--teacher", teacher)]
    )
    stream = {
        "batch_size": batch_size,
        "seed": seed,
        "validation_fraction": validation_fraction,
        "augment": augment,
        "lr": lr,
        "lr_schedule": lr_schedule,
    }  # compared on resume, as distill's
    record = run.open(
        {
            "teacher": frames_teacher.spec,
            "teacher_identity": frames_teacher.identity,
            "student": student,
            "config": config,
            "stream": stream,
        },
        lambda i: f"distills the layers of teacher {i['teacher']!r} ({i['teacher_identity']}) into student "
        f"{i['student']!r} with {i['config']}",
        compared=("teacher_identity", "student", "config", "stream"),
    )

    # Streams like distill: one file in memory while the shards are written, then segments from them.
    items = find_audio(data)
    train_items, _ = split_items(items, validation_fraction=validation_fraction, seed=seed)
    cache = build_cache(
        frames_teacher, items, cache_dir=cache_dir, views=augment, augmented=train_items, seed=seed, progress=progress
    )
    scan = scan_shards(
        cache.directory,
        teacher=frames_teacher,
        keys=cache.keys + cache.view_keys,
        validation_fraction=validation_fraction,
        seed=seed,
        segment_samples=segment_samples,
        per_segment=True,
        sample_targets=0,
        progress=progress,
    )
    run.confirm(training_records=records_identity(scan))
    dims = [layered.layer_dims[name] for name in layered.layers]
    width = sum(dims)
    teacher_frames = scan.target_mean.size // width
    # Standardise each target dimension (over every training frame); the heads learn that scale.
    mean, std = _frame_moments(scan, width)
    held_audio = scan.validation_audio if len(scan.validation_audio) else None
    held_targets = scan.validation_targets.reshape(-1, teacher_frames, width)

    keras.utils.set_random_seed(seed)  # the same weights and data order for the same seed
    batches = iter(training_dataset(scan, batch_size=batch_size, seed=seed))
    model = models.build(student, **config)
    encoder = model.encoder
    hop, field = distil.frame_geometry(tuple(tuple(layer) for layer in config["conv_layers"]))
    student_frames = distil.num_frames(segment_samples, tuple(tuple(layer) for layer in config["conv_layers"]))
    spans = layered.frame_spans(segment_samples, teacher_frames)
    align = tf.constant(alignment_matrix(spans, student_frames, hop_samples=hop, field_samples=field))
    heads = {name: keras.layers.Dense(dim, name=f"head_{name}") for name, dim in zip(layered.layers, dims)}

    def predict(audio, training):
        frames = encoder(audio, training=training)
        return {name: tf.einsum("ts,bsd->btd", align, head(frames)) for name, head in heads.items()}

    def losses(audio, target, training):
        predictions = predict(audio, training)
        parts = tf.split((target - mean) / std, dims, axis=-1)
        per_layer = {name: layer_loss(part, predictions[name]) for name, part in zip(layered.layers, parts)}
        return tf.add_n(list(per_layer.values())), per_layer

    predict(tf.zeros((1, segment_samples)), False)  # builds the heads before the checkpoint is restored
    trainable = encoder.trainable_variables + [v for head in heads.values() for v in head.trainable_variables]
    optimizer = keras.optimizers.Adam(learning_rate)
    # The data iterator is saved with the weights: a resumed run continues the same stream of segments.
    checkpoints = run.checkpoints({"encoder": encoder, "heads": heads, "optimizer": optimizer, "data": batches})
    start = run.restore(checkpoints) if resume else 0

    @tf.function
    def train_step(audio, target):
        target = tf.reshape(target, [-1, teacher_frames, width])  # the shards store each segment's frames as one row
        with tf.GradientTape() as tape:
            total, per_layer = losses(audio, target, True)
        optimizer.apply_gradients(zip(tape.gradient(total, trainable), trainable))
        return total, per_layer

    @tf.function
    def eval_loss(audio, target):
        return losses(audio, target, False)[0]

    def step_fn(index):
        return train_step(*next(batches))

    validation_history = record.setdefault("validation_history", [])
    encoder_parameters = int(encoder.count_params())
    record.update(
        {
            "teacher": frames_teacher.describe(),
            "student": {
                "name": student,
                "config": config,
                "parameters": encoder_parameters,
                "head_parameters": int(sum(head.count_params() for head in heads.values())),
                "share_of_teacher": encoder_parameters / layered.parameters if layered.parameters else None,
            },
            "data": {
                "source": os.fspath(data) if not isinstance(data, (list, tuple)) else f"list of {len(data)} files",
                "files": scan.train_files + scan.validation_files,
                "train_files": scan.train_files,
                "validation_files": scan.validation_files,
                "validation_segments": int(len(scan.validation_audio)),
                "train_records": scan.train_records,
                "train_segments": int(scan.target_rows),
                "train_hours": scan.train_hours,
                "augmented_views_per_file": augment,
                "segment_samples": segment_samples,
                "skipped": [path for path, _ in cache.skipped],
                "target_cache": cache.directory,
                "shards_read": len(scan.shards),
                "skipped_shards": [path for path, _ in cache.bad_shards + scan.skipped_shards],
            },
            "training": {
                "loss": "l1 - log sigmoid(cosine), per layer",
                "lr": lr,
                "lr_schedule": lr_schedule,
                "batch_size": batch_size,
                "steps": steps,
                "checkpoint_every": checkpoint_every,
                "validation_fraction": validation_fraction,
                "seed": seed,
            },
            "versions": versions(),
        }
    )

    def validate(step: int) -> None:
        if held_audio is not None:
            values = [
                float(eval_loss(pcm16_float(held_audio[i : i + batch_size]), held_targets[i : i + batch_size]))
                for i in range(0, len(held_audio), batch_size)
            ]
            validation_history.append([step, float(np.mean(values))])

    timing = run_steps(
        step_fn,
        start=start,
        steps=steps,
        checkpoint_every=checkpoint_every,
        on_checkpoint=run.saver(checkpoints, validate),
        history=record.setdefault("loss_history", []),
        writer=run.writer(),
        progress=progress,
        description=f"distill-layers {student}",
    )

    record.update(timing.as_record())
    record["resumed_from_step"] = start if resume else None
    metadata = {
        "kind": LAYER_STUDENT_KIND,
        "encoder": distil.ENCODER_NAME,
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "segment_samples": segment_samples,
        "frame_hop_samples": hop,
        "teacher": layered.describe(),
        "student": record["student"],
    }
    export_dir = export_savedmodel(model, os.path.join(run.path, "export"), overwrite=True, extra_metadata=metadata)
    record["export"] = export_dir
    run.write(export_dir)
    _log.info(
        "Distilled layers %s of %s into %s (%d parameters); exported to %s",
        ",".join(layered.layers),
        layered.spec,
        student,
        encoder_parameters,
        export_dir,
    )
    return record
