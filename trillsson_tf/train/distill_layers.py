"""Layer-wise distillation (DistilHuBERT): a small waveform student predicts a teacher's hidden layers.

``distill_layers(data, out_dir=..., config=LayerDistillConfig(...))`` computes the teacher's layers
once per segment into target shards, trains the student encoder with one head per layer (L1 minus
log-sigmoid cosine), and exports it in hub format with the encoder kept for
:mod:`trillsson_tf.train.finetune`. Design notes: docs/DESIGN.md, "Layer distillation".
"""

import dataclasses
import logging
import os

import numpy as np

from trillsson_tf._keras import keras, tf
from trillsson_tf.configs import DEFAULT_SEGMENT_SAMPLES, LayerDistillConfig, as_record, make_config
from trillsson_tf.train.data import find_audio, segments, source_paths, split_items
from trillsson_tf.errors import ParameterError
from trillsson_tf.formats.target_shard import pcm16_float
from trillsson_tf.models.export import export_savedmodel
from trillsson_tf import models
from trillsson_tf.contract import SAMPLE_RATE_HZ
from trillsson_tf.kinds import EXPORT_TYPE_KEY, LAYER_STUDENT_EXPORT, WAVEFORM
from trillsson_tf.teachers.layers import load_layered_teacher
from trillsson_tf.models import distil
from trillsson_tf.train.input_pipeline import scan_shards, training_dataset
from trillsson_tf.train.targets import build_cache
from trillsson_tf.teachers import Teacher
from trillsson_tf.train.engine import RunFolder, records_identity, learning_rate_schedule, run_steps, versions

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
        data: A folder, a CSV manifest, or a list of paths / :class:`trillsson_tf.train.data.AudioItem`.
        out_dir: Run folder (``run.json``, ``checkpoints/``, ``logs/``, ``export/``).
        config: A :class:`~trillsson_tf.configs.LayerDistillConfig`; ``options`` are its fields as
            keywords, applied over it. Its fields:
        teacher: A spec for :func:`trillsson_tf.teachers.layers.load_layered_teacher` (``hf:...``,
            ``speech_embedding``, a SavedModel / Keras file, a ``.tflite``), or a loaded one.
        layers: Teacher layers to distill (``'4,8,12'``); default: the teacher's usual choice.
        student: A layer-distillation student: ``trillsson_tf.models.available(family='waveform')``.
        student_options: Overrides of the student config (``width``, ``depth``, ...).
        size_fraction: Without a ``width`` option, the student is the widest one with at most
            this share of the teacher's parameters.
        segment_samples: Training segment length in samples (>= the teacher's window).
        lr: Adam learning rate (peak of the schedule).
        lr_schedule: ``cosine`` or ``constant`` (see :data:`trillsson_tf.train.distill.LR_SCHEDULES`).
        batch_size: Segments per step.
        steps: Total optimizer steps (a resumed run continues up to this number).
        checkpoint_every: Steps between checkpoints (also written at the end).
        validation_fraction: Share of files held out for the validation loss (on the first
            segment of each of up to :data:`trillsson_tf.train.input_pipeline.MAX_VALIDATION_FILES`).
        seed: Seeds the split, the batches and the weights.
        cache_dir: Target cache root (see :func:`trillsson_tf.train.targets.build_cache`).
        augment: Augmented views per training file (:mod:`trillsson_tf.train.augment`), each with its
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
    session = _open(config, data, out_dir, resume, overwrite)
    cache = _read_targets(session, data, cache_dir, progress)
    batches, optimizer, checkpoints, step_fns = _build(session)
    start = session.run.restore(checkpoints) if resume else 0
    _describe(session, data, cache)
    timing = run_steps(
        lambda index: step_fns.train(*next(batches)),
        start=start,
        steps=config.steps,
        checkpoint_every=config.checkpoint_every,
        on_checkpoint=session.run.saver(checkpoints, step_fns.validate),
        history=session.record.setdefault("loss_history", []),
        writer=session.run.writer(),
        progress=progress,
        description=f"distill-layers {config.student}",
    )
    session.record.update(timing.as_record())
    session.record["resumed_from_step"] = start if resume else None
    return _export(session)


@dataclasses.dataclass
class _Session:
    """What one :func:`distill_layers` call carries from phase to phase."""

    config: LayerDistillConfig
    layered: object
    frames_teacher: object
    student_config: dict
    run: RunFolder
    record: dict
    scan: object = None
    model: object = None
    heads: dict = None
    hop: int = 0  # the student's frame hop in samples (the export records it)


@dataclasses.dataclass
class _StepFunctions:
    train: object
    validate: object


def _open(config: LayerDistillConfig, data, out_dir, resume: bool, overwrite: bool) -> _Session:
    """Load the layered teacher, size the student, open (or check, on resume) the run folder."""
    layered = load_layered_teacher(config.teacher, layers=config.layers)
    segment_samples = config.segment_samples
    if segment_samples < max(layered.min_samples, distil.frame_geometry()[1]):
        raise ParameterError(
            f"segment_samples={segment_samples} is shorter than the teacher's window ({layered.min_samples} samples)."
        )
    student = student_config(
        config.student,
        layered,
        student_options=config.student_options,
        size_fraction=config.size_fraction,
        segment_samples=segment_samples,
    )
    frames_teacher = _SegmentFrames(layered, segment_samples)
    run = RunFolder(
        out_dir,
        resume=resume,
        overwrite=overwrite,
        inputs=[("--data", source_paths(data)), ("--teacher", config.teacher)],
    )
    # Compared on resume, as distill's: what shapes the stream of segments or the updates; steps may grow.
    stream = {
        key: getattr(config, key)
        for key in ("batch_size", "seed", "validation_fraction", "augment", "lr", "lr_schedule")
    }
    record = run.open(
        {
            "teacher": frames_teacher.spec,
            "teacher_identity": frames_teacher.identity,
            "student": config.student,
            "config": student,
            "stream": stream,
        },
        lambda i: f"distills the layers of teacher {i['teacher']!r} ({i['teacher_identity']}) into student "
        f"{i['student']!r} with {i['config']}",
        compared=("teacher_identity", "student", "config", "stream"),
    )
    return _Session(config, layered, frames_teacher, student, run, record)


def _read_targets(session: _Session, data, cache_dir, progress: bool):
    """Stream the teacher's layers into target shards (one file in memory at a time), then scan them."""
    config = session.config
    items = find_audio(data)
    train_items, _ = split_items(items, validation_fraction=config.validation_fraction, seed=config.seed)
    cache = build_cache(
        session.frames_teacher,
        items,
        cache_dir=cache_dir,
        views=config.augment,
        augmented=train_items,
        seed=config.seed,
        progress=progress,
    )
    session.scan = scan_shards(
        cache.directory,
        teacher=session.frames_teacher,
        keys=cache.keys + cache.view_keys,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
        segment_samples=config.segment_samples,
        per_segment=True,
        target_subset=0,
        progress=progress,
    )
    session.run.confirm(training_records=records_identity(session.scan))
    return cache


def _build(session: _Session):
    """The segment stream, the student encoder with one head per layer, its optimizer, checkpoints and steps."""
    config, layered, scan = session.config, session.layered, session.scan
    dims = [layered.layer_dims[name] for name in layered.layers]
    width = sum(dims)
    teacher_frames = scan.target_mean.size // width
    mean, std = _frame_moments(scan, width)  # standardise each target dimension; the heads learn that scale
    keras.utils.set_random_seed(config.seed)  # the same weights and data order for the same seed
    batches = iter(training_dataset(scan, batch_size=config.batch_size, seed=config.seed))
    session.model = models.build(config.student, **session.student_config)
    encoder = session.model.encoder
    align, hop = _alignment(session, teacher_frames)
    heads = session.heads = {
        name: keras.layers.Dense(dim, name=f"head_{name}") for name, dim in zip(layered.layers, dims)
    }

    def losses(audio, target, training):
        frames = encoder(audio, training=training)
        parts = tf.split((target - mean) / std, dims, axis=-1)
        per_layer = {
            name: layer_loss(part, tf.einsum("ts,bsd->btd", align, heads[name](frames)))
            for name, part in zip(layered.layers, parts)
        }
        return tf.add_n(list(per_layer.values())), per_layer

    losses(tf.zeros((1, config.segment_samples)), tf.zeros((1, teacher_frames, width)), False)  # builds the heads
    trainable = encoder.trainable_variables + [v for head in heads.values() for v in head.trainable_variables]
    optimizer = keras.optimizers.Adam(learning_rate_schedule(config.lr, config.lr_schedule, config.steps))
    # The data iterator is saved with the weights: a resumed run continues the same stream of segments.
    checkpoints = session.run.checkpoints({"encoder": encoder, "heads": heads, "optimizer": optimizer, "data": batches})

    @tf.function
    def train_step(audio, target):
        target = tf.reshape(target, [-1, teacher_frames, width])  # the shards store each segment's frames as one row
        with tf.GradientTape() as tape:
            total, per_layer = losses(audio, target, True)
        optimizer.apply_gradients(zip(tape.gradient(total, trainable), trainable))
        return total, per_layer

    eval_loss = tf.function(lambda audio, target: losses(audio, target, False)[0])
    held_targets = scan.validation_targets.reshape(-1, teacher_frames, width)
    history = session.record.setdefault("validation_history", [])

    def validate(step: int) -> None:
        audio, size = scan.validation_audio, config.batch_size
        if len(audio):
            values = [
                float(eval_loss(pcm16_float(audio[i : i + size]), held_targets[i : i + size]))
                for i in range(0, len(audio), size)
            ]
            history.append([step, float(np.mean(values))])

    session.hop = hop
    return batches, optimizer, checkpoints, _StepFunctions(train_step, validate)


def _alignment(session: _Session, teacher_frames: int):
    """``(align float32 [teacher_frames, student_frames], student frame hop in samples)``: row t averages
    the student frames whose centres lie in teacher frame t's span (:func:`alignment_matrix`)."""
    config = session.config
    conv_layers = tuple(tuple(layer) for layer in session.student_config["conv_layers"])
    hop, field = distil.frame_geometry(conv_layers)
    spans = session.layered.frame_spans(config.segment_samples, teacher_frames)
    student_frames = distil.num_frames(config.segment_samples, conv_layers)
    return tf.constant(alignment_matrix(spans, student_frames, hop_samples=hop, field_samples=field)), hop


def _describe(session: _Session, data, cache) -> None:
    """Put what the run is (config as given, student, data, training) into its record."""
    config, scan, encoder = session.config, session.scan, session.model.encoder
    parameters = int(encoder.count_params())
    session.record.update(
        {
            "config": as_record(config),
            "teacher": session.frames_teacher.describe(),
            "student": {
                "name": config.student,
                "config": session.student_config,
                "parameters": parameters,
                "head_parameters": int(sum(head.count_params() for head in session.heads.values())),
                "share_of_teacher": parameters / session.layered.parameters if session.layered.parameters else None,
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
                "augmented_views_per_file": config.augment,
                "segment_samples": config.segment_samples,
                "skipped": [path for path, _ in cache.skipped],
                "target_cache": cache.directory,
                "shards_read": len(scan.shards),
                "skipped_shards": [path for path, _ in cache.bad_shards + scan.skipped_shards],
            },
            "training": {
                "loss": "l1 - log sigmoid(cosine), per layer",
                **{
                    key: getattr(config, key)
                    for key in (
                        "lr",
                        "lr_schedule",
                        "batch_size",
                        "steps",
                        "checkpoint_every",
                        "validation_fraction",
                        "seed",
                    )
                },
            },
            "versions": versions(),
        }
    )


def _export(session: _Session) -> dict:
    """Export the encoder in hub format (the heads are dropped, as in DistilHuBERT); returns the record."""
    config, record, layered = session.config, session.record, session.layered
    metadata = {
        EXPORT_TYPE_KEY: LAYER_STUDENT_EXPORT,
        "encoder": distil.ENCODER_NAME,
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "segment_samples": config.segment_samples,
        "frame_hop_samples": session.hop,
        "teacher": layered.describe(),
        "student": record["student"],
    }
    export_dir = export_savedmodel(
        session.model, os.path.join(session.run.path, "export"), overwrite=True, extra_metadata=metadata
    )
    record["export"] = export_dir
    session.run.write(export_dir)
    _log.info(
        "Distilled layers %s of %s into %s (%d parameters); exported to %s",
        ",".join(layered.layers),
        layered.spec,
        config.student,
        record["student"]["parameters"],
        export_dir,
    )
    return record
