"""Joint keyword spotting + speaker verification on a distilled encoder.

``finetune(export, data, out_dir=..., config=FinetuneConfig(...))`` puts a keyword head (cross-entropy)
and a speaker head (AAM-softmax, scored by cosine) on the shared encoder of a
:func:`trillsson_tf.train.distill_layers.distill_layers` export, frozen or fine-tuned, and scores keyword
accuracy on the test files and speaker EER / minDCF on held-out speakers. Design notes:
docs/DESIGN.md, "Keyword + speaker fine-tuning".
"""

import dataclasses
import logging
import math
import os
import tempfile

import numpy as np

from trillsson_tf._keras import keras, tf
from trillsson_tf.train.data import (
    AudioItem,
    find_audio,
    index_clips,
    load_audio,
    read_crop,
    segments,
    source_paths,
)
from trillsson_tf.errors import ParameterError
from trillsson_tf.models.export import KERAS_FILE, export_savedmodel, read_metadata
from trillsson_tf.folders import write_json
from trillsson_tf.frontend.numpy_ops import mirror_pad
from trillsson_tf.kinds import EXPORT_TYPE_KEY, LAYER_STUDENT_EXPORT, MULTITASK_EXPORT, export_type
from trillsson_tf.teachers.layers import LayeredTeacher
from trillsson_tf.metrics import accuracy, binomial_ci95, speaker_verification, split_speakers
from trillsson_tf.models import distil
from trillsson_tf.models.heads import KWS_OUTPUT, SV_OUTPUT, build_heads
from trillsson_tf.teachers import file_fingerprint
from trillsson_tf.configs import FinetuneConfig, as_record, make_config
from trillsson_tf.train.engine import RunFolder, files_identity, run_steps, versions

__all__ = [
    "KWS_OUTPUT",
    "SV_OUTPUT",
    "aam_softmax_logits",
    "aam_softmax_loss",
    "evaluate_multitask",
    "FinetuneConfig",
    "finetune",
    "load_encoder",
]

_log = logging.getLogger(__name__)

_SPLIT, _TEST = "split", "test"
_FRAME_BATCH = 64  # segments per encoder call when the frames of a frozen encoder are computed
_BOOTSTRAP = 200  # speaker resamples for the 95% interval of each EER


def aam_softmax_logits(embeddings, class_weights, labels, *, margin: float = 0.2, scale: float = 30.0):
    """Additive-angular-margin logits: ``s * cos(theta_j)``, and ``s * cos(theta_y + m)`` for the true class.

    Args:
        embeddings: float32 ``[batch, E]`` (normalised here).
        class_weights: float32 ``[E, classes]`` speaker centres (normalised here).
        labels: int ``[batch]`` true class of each row.
        margin: Angular margin m, in radians.
        scale: Scale s of the cosines.

    Returns:
        float32 ``[batch, classes]`` logits for softmax cross-entropy.
    """
    cosine = tf.matmul(tf.nn.l2_normalize(embeddings, -1), tf.nn.l2_normalize(class_weights, 0))
    cosine = tf.clip_by_value(cosine, -1.0 + 1e-7, 1.0 - 1e-7)
    sine = tf.sqrt(1.0 - tf.square(cosine))
    with_margin = cosine * math.cos(margin) - sine * math.sin(margin)
    # Past theta = pi - m, cos(theta + m) rises again; ArcFace's fallback keeps the target logit falling.
    with_margin = tf.where(
        cosine > math.cos(math.pi - margin), with_margin, cosine - math.sin(math.pi - margin) * margin
    )
    is_target = tf.one_hot(labels, tf.shape(class_weights)[1]) > 0
    return scale * tf.where(is_target, with_margin, cosine)


def aam_softmax_loss(embeddings, class_weights, labels, *, margin: float = 0.2, scale: float = 30.0):
    """Mean cross-entropy of :func:`aam_softmax_logits` (a scalar float32 tensor)."""
    logits = aam_softmax_logits(embeddings, class_weights, labels, margin=margin, scale=scale)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def load_encoder(export):
    """The shared encoder of a layer-distilled (or already fine-tuned) export.

    Args:
        export: An export folder of :func:`trillsson_tf.train.distill_layers.distill_layers` (or of
            :func:`finetune`).

    Returns:
        ``(encoder, metadata)``: the tf_keras encoder (audio ``[batch, None]`` -> frames
        ``[batch, frames, W]``) and the export's ``trillsson_tf.json``.

    Raises:
        ParameterError: a path that is not such an export (the message says what is expected).
    """
    path = os.fspath(export)
    metadata = read_metadata(path) if os.path.isdir(path) else {}
    if export_type(metadata) not in (LAYER_STUDENT_EXPORT, MULTITASK_EXPORT) or not os.path.isfile(
        os.path.join(path, KERAS_FILE)
    ):
        raise ParameterError(
            f"{path!r} is not a layer-distilled export: expected a folder written by `trillsson-tf distill-layers` "
            f"(<out>/export, with {KERAS_FILE} and trillsson_tf.json of export_type {LAYER_STUDENT_EXPORT!r})."
        )
    model = keras.models.load_model(os.path.join(path, KERAS_FILE))
    return model.get_layer(metadata["encoder"]), metadata


class _TeacherEncoder:
    """A frozen layered teacher used as the encoder: clip -> its selected layers' frames, concatenated."""

    def __init__(self, teacher: LayeredTeacher):
        self.teacher = teacher
        self.width = int(sum(teacher.layer_dims.values()))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        outputs = self.teacher.layer_outputs(audio)
        return np.concatenate([outputs[name] for name in self.teacher.layers], axis=-1)


def _label_column(items, column, role):
    present = sorted({key for item in items for key in item.labels})
    if column not in present:
        raise ParameterError(
            f"Label column {column!r} ({role}) not found in the data; its files have the columns {present}. "
            "Pass a CSV manifest with that column (labels=... / --labels)."
        )


def _plan(items, *, kws_labels, sv_labels, holdout_speakers, sv_holdout, seed):
    """Training items, keyword classes, training speakers and scoring speakers (deterministic)."""
    if kws_labels is None and sv_labels is None:
        raise ParameterError("Give at least one task: kws_labels and/or sv_labels.")
    if kws_labels is not None:
        _label_column(items, kws_labels, "keyword labels")
    if sv_labels is not None:
        _label_column(items, sv_labels, "speaker labels")
    speakers_column = sv_labels or "speaker"
    if holdout_speakers is None and sv_labels is not None:
        _, holdout_speakers = split_speakers(
            [i.labels[sv_labels] for i in items if sv_labels in i.labels], holdout=sv_holdout, seed=seed
        )
    held = set(map(str, holdout_speakers or ()))
    train = [i for i in items if i.labels.get(_SPLIT) != _TEST and i.labels.get(speakers_column) not in held]
    if not train:
        raise ParameterError("No training files: every file is in the test split or from a held-out speaker.")
    keywords = sorted({i.labels[kws_labels] for i in train if kws_labels in i.labels}) if kws_labels else []
    if kws_labels:
        scored = {i.labels[kws_labels] for i in items if i.labels.get(_SPLIT) == _TEST and kws_labels in i.labels}
        absent = sorted(scored - set(keywords))
        if absent:
            raise ParameterError(
                f"Keyword class(es) {absent} appear in the test files but never in training (training classes: {keywords})."
            )
        if len(keywords) < 2:
            raise ParameterError(f"Keyword spotting needs at least 2 classes in training; got {keywords}.")
    speakers = sorted({i.labels[sv_labels] for i in train if sv_labels in i.labels}) if sv_labels else []
    if sv_labels and len(speakers) < 2:
        raise ParameterError(f"The speaker head needs at least 2 training speakers; got {speakers}.")
    return train, keywords, speakers, sorted(held)


class _BatchSampler:
    """Clip indices of one batch (see ``balance_batches`` of :func:`finetune`)."""

    def __init__(self, keyword_index: np.ndarray, speaker_index: np.ndarray, batch_size: int, *, balance: bool):
        self.batch_size, self.balance = batch_size, balance
        self.keyword_clips = np.flatnonzero(keyword_index >= 0)
        self.speaker_clips = [np.flatnonzero(speaker_index == s) for s in range(int(speaker_index.max()) + 1)]
        self.usable = np.flatnonzero((keyword_index >= 0) | (speaker_index >= 0))

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        if not self.balance:
            return rng.choice(self.usable, self.batch_size)
        by_keyword = self.batch_size if len(self.keyword_clips) else 0
        speakers = rng.integers(0, len(self.speaker_clips), self.batch_size) if self.speaker_clips else []
        by_speaker = [rng.choice(self.speaker_clips[s]) for s in speakers]
        return np.concatenate([rng.choice(self.keyword_clips, by_keyword), np.array(by_speaker, np.int64)]).astype(
            np.int64
        )


def _label_indices(items, column, classes):
    lookup = {name: index for index, name in enumerate(classes)}
    return np.array([lookup.get(item.labels.get(column), -1) if column else -1 for item in items], np.int32)


def _encoder_source(export) -> dict:
    """``{'spec', 'identity'}`` of the encoder's source: a layered teacher or an export's ``model.keras``."""
    if isinstance(export, LayeredTeacher):
        return {"spec": export.spec, "identity": f"teacher:{export.identity}"}
    path = os.fspath(export)
    return {"spec": path, "identity": f"export:{file_fingerprint(os.path.join(path, KERAS_FILE))}"}


def finetune(
    export,
    data,
    *,
    out_dir,
    config=None,
    labels=None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **options,
) -> dict:
    """Fine-tune (or freeze) an encoder with a keyword head and/or a speaker head.

    Args:
        export: A :func:`trillsson_tf.train.distill_layers.distill_layers` export folder, or a
            :class:`trillsson_tf.teachers.layers.LayeredTeacher` (frozen only; no export is written).
        data: A folder, a CSV manifest, or a list of paths / :class:`trillsson_tf.train.data.AudioItem`.
        out_dir: Run folder (``run.json``, ``checkpoints/``, ``logs/``, ``export/``).
        config: A :class:`~trillsson_tf.configs.FinetuneConfig`; ``options`` are its fields as
            keywords, applied over it. Its fields:
        kws_labels: Label column of the keywords (``None``: no keyword task).
        sv_labels: Label column of the speakers (``None``: no speaker task).
        labels: Optional CSV manifest of extra label columns.
        freeze_encoder: Train the heads only, on frames computed once.
        encoder_layers: ``all``: the heads read every hidden state of the encoder, concatenated
            (:func:`trillsson_tf.models.distil.with_hidden_states`), as the teacher baseline reads
            its selected layers; ``last``: the last layer only.
        kws_weight: Weight of the keyword loss.
        sv_weight: Weight of the speaker (AAM-softmax) loss.
        speaker_dim: Size of ``speaker_embedding``.
        hidden: Width of each head's hidden layer.
        margin: AAM angular margin, in radians.
        scale: AAM scale.
        holdout_speakers: Speakers to hold out for verification (default: drawn with ``sv_holdout``).
        sv_holdout: Share (or count) of speakers held out when ``holdout_speakers`` is ``None``.
        sv_groups: Label column (for example a corpus) within whose values verification is also
            scored alone (``scores['sv_by_group']``).
        steps: Optimizer steps, heads-only steps included.
        head_steps: Fine-tuned mode: the first ``head_steps`` train the heads only, on stored frames
            of the frozen encoder, before the encoder is unfrozen (default ``steps // 3``). Frozen
            mode: every step is a heads-only step.
        encoder_lr_scale: The encoder's peak learning rate is ``lr * encoder_lr_scale``, reached
            after a linear warm-up over the first tenth of the fine-tuning steps. With the heads
            warmed up first, the full rate was best for the 78 k-parameter ``distil-small`` of the
            multi-task benchmark distilled for 600 steps (multi-task keyword accuracy 59% / 65% /
            68% at 0.1 / 0.5 / 1.0, FSDD EER 29% / 28% / 26%); on the one distilled for 6,000 steps
            with 2 views, 0.1 and 0.3 gave 87.7% keywords against 86.3% at 1.0 (the README lists
            the variants), none reaching the frozen encoder's 89.3%.
        balance_batches: Compose each batch per task: ``batch_size`` clips drawn evenly over the
            keyword clips and ``batch_size`` speaker-balanced ones (a speaker uniformly, then one of
            their clips; a multi-task batch is twice ``batch_size``), so that a
            corpus with few, long files per speaker is seen as often as one with many short ones.
            ``False``: clips drawn uniformly.
        batch_size: Clips per step and task.
        lr: Adam learning rate of the heads (cosine decay to 1% over ``steps``).
        checkpoint_every: Steps between checkpoints.
        seed: Seeds the speaker split, the batches and the heads.
        resume: Continue the run in ``out_dir`` (refused with another encoder or config).
        overwrite: Replace a non-empty ``out_dir``.
        progress: Progress bars.

    Returns:
        The run record (also in ``<out_dir>/run.json``) with ``scores``: keyword ``accuracy`` on
        the test files and speaker ``eer`` / ``min_dcf`` on the held-out speakers.

    Raises:
        ParameterError: a missing label column (the message lists the columns), a keyword class
            absent from training, fewer than 2 scoring or training speakers, bad numbers.
    """
    config = make_config(FinetuneConfig, config, **options)
    session = _open(config, export, data, labels, out_dir, resume, overwrite)
    training = _build(session, progress)
    start = session.run.restore(training.checkpoints) if resume else 0
    frames_file, frames, first_row = _stored_frames(session, training, start, progress)
    _describe(session, training)
    timing = run_steps(
        _step_function(session, training, frames, first_row),
        start=start,
        steps=config.steps,
        checkpoint_every=config.checkpoint_every,
        on_checkpoint=session.run.saver(training.checkpoints),
        history=session.record.setdefault("loss_history", []),
        writer=session.run.writer(),
        progress=progress,
        description=f"finetune ({'frozen' if config.freeze_encoder else 'fine-tuned'})",
    )
    session.record.update(timing.as_record())
    if frames_file is not None:
        frames_file.close()  # removes the stored frames
    return _finish(session, training, progress)


@dataclasses.dataclass
class _Session:
    """What one :func:`finetune` call knows before training: the encoder, the plan, the run folder."""

    config: FinetuneConfig
    export: object
    teacher_mode: bool
    encoder: object
    metadata: dict
    width: int
    segment_samples: int
    items: list
    train_items: list
    keywords: list
    speakers: list
    held: list
    plan: dict
    source: dict
    run: RunFolder = None
    record: dict = None


@dataclasses.dataclass
class _Training:
    """The trained parts: the indexed clips and their labels, the heads, the optimizers, the checkpoints."""

    index: object
    keyword_index: np.ndarray
    speaker_index: np.ndarray
    heads: object
    centres: object
    head_variables: list
    encoder_variables: list
    head_optimizer: object
    encoder_optimizer: object
    checkpoints: object


def _open(config: FinetuneConfig, export, data, labels, out_dir, resume: bool, overwrite: bool) -> _Session:
    """Load the encoder, plan the split and the tasks, open (or check, on resume) the run folder."""
    teacher_mode = isinstance(export, LayeredTeacher)
    encoder, metadata, width = _load(config, export, teacher_mode)
    segment_samples = int(metadata.get("segment_samples", 16000))
    items = find_audio(data, labels=labels)
    train_items, keywords, speakers, held = _plan(
        items,
        kws_labels=config.kws_labels,
        sv_labels=config.sv_labels,
        holdout_speakers=config.holdout_speakers,
        sv_holdout=config.sv_holdout,
        seed=config.seed,
    )
    plan = _plan_record(config, keywords, speakers, held, segment_samples)
    session = _Session(
        config,
        export,
        teacher_mode,
        encoder,
        metadata,
        width,
        segment_samples,
        items,
        train_items,
        keywords,
        speakers,
        held,
        plan,
        _encoder_source(export),
    )
    _open_run(session, data, labels, out_dir, resume, overwrite)
    return session


def _load(config: FinetuneConfig, export, teacher_mode: bool) -> tuple:
    """``(encoder, metadata, width)``: a layer-distilled export's encoder, or a teacher's (frozen only)."""
    if teacher_mode and not config.freeze_encoder:
        raise ParameterError(
            "A teacher cannot be fine-tuned here: pass freeze_encoder=True to train heads on its features."
        )
    if teacher_mode:
        encoder = _TeacherEncoder(export)
        return encoder, {"segment_samples": max(16000, export.min_samples)}, encoder.width
    encoder, metadata = load_encoder(export)
    if config.encoder_layers == "all":
        encoder = distil.with_hidden_states(encoder)
    return encoder, metadata, int(encoder.output_shape[-1])


def _open_run(session: _Session, data, labels, out_dir, resume: bool, overwrite: bool) -> None:
    """Open the run folder (or check it, on resume) and set ``session.run`` and ``session.record``."""
    config, export = session.config, session.export
    session.run = RunFolder(
        out_dir,
        resume=resume,
        overwrite=overwrite,
        inputs=[("export", export), ("--data", source_paths(data)), ("--labels", labels)],
    )
    # Batches are a function of the seed, the step and the training files: all compared on resume.
    stream = {
        "batch_size": config.batch_size,
        "seed": config.seed,
        "lr": config.lr,
        "head_steps": config.head_steps,  # as given: its default follows steps, which a resume may raise
        "encoder_lr_scale": config.encoder_lr_scale,
        "balance_batches": bool(config.balance_batches),
        "training_files": files_identity(session.train_items),
    }
    session.record = session.run.open(
        {
            "encoder": session.source["spec"],
            "encoder_identity": session.source["identity"],
            "config": session.plan,
            "stream": stream,
        },
        lambda i: f"fine-tunes the encoder of {i['encoder']!r} ({i['encoder_identity']}) with {i['config']}",
        compared=("encoder_identity", "config", "stream"),
    )


def _plan_record(config: FinetuneConfig, keywords, speakers, held, segment_samples: int) -> dict:
    """The run's plan as its identity records it (compared on resume): tasks, heads, classes, speakers."""
    kws_labels, sv_labels = config.kws_labels, config.sv_labels
    return {
        "tasks": [task for task, column in (("kws", kws_labels), ("sv", sv_labels)) if column],
        "kws_labels": kws_labels,
        "sv_labels": sv_labels,
        "freeze_encoder": bool(config.freeze_encoder),
        "kws_weight": config.kws_weight,
        "sv_weight": config.sv_weight,
        "speaker_dim": config.speaker_dim if sv_labels else 0,
        "encoder_layers": config.encoder_layers,
        "hidden": config.hidden,
        "margin": config.margin,
        "scale": config.scale,
        "keywords": keywords,
        "train_speakers": speakers,
        "holdout_speakers": held,
        "segment_samples": segment_samples,
    }


def _build(session: _Session, progress: bool) -> _Training:
    """Index the training files, build the heads and the two optimizers, and the checkpoints."""
    config = session.config
    # The training files are indexed, not loaded: each step reads its crops (see ``_step_function``).
    index = index_clips(session.train_items, progress=progress)
    keyword_index = _label_indices(index.items, config.kws_labels, session.keywords)
    speaker_index = _label_indices(index.items, config.sv_labels, session.speakers)
    keras.utils.set_random_seed(config.seed)
    speaker_dim = session.plan["speaker_dim"]
    heads = build_heads(session.width, kws_classes=len(session.keywords), speaker_dim=speaker_dim, hidden=config.hidden)
    centres = tf.Variable(
        tf.random.normal([max(speaker_dim, 1), max(len(session.speakers), 1)], seed=config.seed), name="speaker_centres"
    )
    head_variables = heads.trainable_variables + ([centres] if session.speakers else [])
    encoder_variables = [] if config.freeze_encoder else session.encoder.trainable_variables
    # One optimizer per part: Adam is invariant to gradient scale, so a lower encoder learning rate
    # needs its own optimizer. The heads decay over every step; the encoder warms up linearly from
    # zero once it is unfrozen (fresh heads would otherwise push large gradients into it) and decays
    # over the rest.
    steps, lr = config.steps, config.lr
    head_optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=0.01))
    encoder_steps = steps - config.resolved_head_steps
    encoder_warmup = max(1, encoder_steps // 10)
    encoder_optimizer = keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=max(1, encoder_steps - encoder_warmup),
            alpha=0.01,
            warmup_target=lr * config.encoder_lr_scale,
            warmup_steps=encoder_warmup,
        )
    )
    tracked = {"heads": heads, "centres": centres, "optimizer": head_optimizer}
    if not session.teacher_mode:
        tracked.update(encoder=session.encoder, encoder_optimizer=encoder_optimizer)
    checkpoints = session.run.checkpoints(tracked, max_to_keep=2)
    return _Training(
        index,
        keyword_index,
        speaker_index,
        heads,
        centres,
        head_variables,
        encoder_variables,
        head_optimizer,
        encoder_optimizer,
        checkpoints,
    )


def _stored_frames(session: _Session, training: _Training, start: int, progress: bool):
    """``(file, frames memmap, first row of each file)`` for the heads-only steps still to run, else ``None`` s.

    Each segment goes through the encoder once, file by file, into a file beside the run (frames can
    outweigh the audio; only a batch is in memory).
    """
    if start >= session.config.resolved_head_steps:
        return None, None, None
    index, segment_samples = training.index, session.segment_samples
    first_row = np.cumsum([0] + [max(length, segment_samples) // segment_samples for length in index.lengths])
    frames_file = tempfile.NamedTemporaryFile(dir=session.run.path, prefix="frames-", suffix=".npy")
    frames = None
    for offset, batch_frames in _stream_frames(session.encoder, index, segment_samples, progress=progress):
        if frames is None:
            frames = np.lib.format.open_memmap(
                frames_file.name, mode="w+", dtype=np.float32, shape=(int(first_row[-1]), *batch_frames.shape[1:])
            )
        frames[offset : offset + len(batch_frames)] = batch_frames
    return frames_file, frames, first_row


def _task_losses(session: _Session, training: _Training):
    """``(outputs, keyword [b], speaker [b]) -> (total, {task: loss})``; a clip without a label (-1) adds nothing."""
    config, keywords, speakers = session.config, session.keywords, session.speakers

    def masked_mean(losses, mask):
        return tf.reduce_sum(tf.where(mask, losses, 0.0)) / tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32)), 1.0)

    def task_losses(outputs, keyword, speaker):
        parts = {}
        if keywords:
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.maximum(keyword, 0), logits=outputs[KWS_OUTPUT]
            )
            parts["kws"] = masked_mean(losses, keyword >= 0)
        if speakers:
            logits = aam_softmax_logits(
                outputs[SV_OUTPUT], training.centres, tf.maximum(speaker, 0), margin=config.margin, scale=config.scale
            )
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(speaker, 0), logits=logits)
            parts["sv"] = masked_mean(losses, speaker >= 0)
        total = config.kws_weight * parts.get("kws", 0.0) + config.sv_weight * parts.get("sv", 0.0)
        return total, parts

    return task_losses


def _step_function(session: _Session, training: _Training, frames, first_row):
    """``step -> (loss, parts)``: heads-only steps on stored frames, then full steps on crops."""
    config, t, encoder = session.config, training, session.encoder
    task_losses, head_steps, seed = _task_losses(session, training), config.resolved_head_steps, config.seed

    @tf.function
    def head_step(features, keyword, speaker):
        with tf.GradientTape() as tape:
            total, parts = task_losses(t.heads(features, training=True), keyword, speaker)
        t.head_optimizer.apply_gradients(zip(tape.gradient(total, t.head_variables), t.head_variables))
        return total, parts

    @tf.function
    def full_step(audio, keyword, speaker):
        with tf.GradientTape() as tape:
            total, parts = task_losses(t.heads(encoder(audio, training=True), training=True), keyword, speaker)
        gradients = tape.gradient(total, t.head_variables + t.encoder_variables)
        t.head_optimizer.apply_gradients(zip(gradients[: len(t.head_variables)], t.head_variables))
        t.encoder_optimizer.apply_gradients(zip(gradients[len(t.head_variables) :], t.encoder_variables))
        return total, parts

    sampler = _BatchSampler(t.keyword_index, t.speaker_index, config.batch_size, balance=config.balance_batches)

    def audio_batch(step):
        # A pure function of (seed, step), so a resumed run reads the batches of the uninterrupted one.
        rng = np.random.default_rng([seed, int(step)])
        clips = sampler(rng)
        audio = np.stack([read_crop(t.index, i, rng, crop_samples=session.segment_samples) for i in clips])
        return audio, t.keyword_index[clips], t.speaker_index[clips]

    batches = {}

    def step_fn(step):
        if step < head_steps:
            rng = np.random.default_rng([seed, step])
            clips = sampler(rng)
            rows = first_row[clips] + rng.integers(0, first_row[clips + 1] - first_row[clips])
            return head_step(np.asarray(frames[rows]), t.keyword_index[clips], t.speaker_index[clips])
        if "iterator" not in batches:  # fine-tuning batches from here on: crops read in parallel, prefetched
            dataset = tf.data.Dataset.range(step, config.steps).map(
                lambda index: tf.numpy_function(audio_batch, [index], (tf.float32, tf.int32, tf.int32), stateful=False),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            batches["iterator"] = iter(dataset.prefetch(2))
        return full_step(*next(batches["iterator"]))

    return step_fn


def _describe(session: _Session, training: _Training) -> None:
    """Put what the run is (config as given, data, training) into its record."""
    config = session.config
    session.record.update(
        {
            "config": as_record(config),
            "teacher": session.source,  # the encoder's source (checked on resume)
            "student": {"name": "multitask", "config": session.plan},
            "data": {
                "files": len(session.items),
                "train_files": len(training.index.items),
                "skipped": [p for p, _ in training.index.skipped],
            },
            "training": {
                "steps": config.steps,
                "head_steps": config.resolved_head_steps,
                "batch_size": config.batch_size,
                "lr": config.lr,
                "encoder_lr_scale": config.encoder_lr_scale,
                "balance_batches": config.balance_batches,
                "seed": config.seed,
            },
            "versions": versions(),
        }
    )


def _finish(session: _Session, training: _Training, progress: bool) -> dict:
    """Export the multi-task model (not for a teacher's features), score it on the test files and held-out speakers."""
    config, record, encoder, heads = session.config, session.record, session.encoder, training.heads
    names = tuple(heads.output)
    if session.teacher_mode:
        predict = _feature_predictor(encoder, heads, session.segment_samples)
        record["export"] = None
        record["parameters"] = {"encoder": session.export.parameters, "heads": int(heads.count_params())}
    else:
        audio = keras.Input(shape=(None,), dtype="float32", name="audio_samples")
        outputs = heads(encoder(audio))
        model = keras.Model(audio, {name: outputs[name] for name in names}, name="multitask")
        info = {
            EXPORT_TYPE_KEY: MULTITASK_EXPORT,
            "encoder": encoder.name,
            "sample_rate_hz": 16000,
            "segment_samples": session.segment_samples,
            "keywords": session.keywords,
            "kws_labels": config.kws_labels,
            "sv_labels": config.sv_labels,
            "train_speakers": session.speakers,
            "holdout_speakers": session.held,
            "teacher": session.metadata.get("teacher"),
            "distilled_from": session.source["spec"],
        }
        record["export"] = export_savedmodel(
            model, os.path.join(session.run.path, "export"), overwrite=True, extra_metadata=info, output_names=names
        )
        predict = _model_predictor(model, session.segment_samples)
        record["parameters"] = {
            "encoder": int(encoder.count_params()),
            "heads": int(heads.count_params()),
            "total": int(model.count_params()),
        }
    held, sv_labels = set(session.held), config.sv_labels
    scoring = [
        i for i in session.items if i.labels.get(_SPLIT) == _TEST or (sv_labels and i.labels.get(sv_labels) in held)
    ]
    record["scores"] = _score(
        predict,
        scoring,
        kws_labels=config.kws_labels if session.keywords else None,
        keywords=session.keywords,
        sv_labels=sv_labels if session.speakers else None,
        speakers=held,
        sv_groups=config.sv_groups,
        progress=progress,
    )
    session.run.write(*([record["export"]] if record["export"] else []))
    return record


def _stream_frames(encoder, index, segment_samples: int, *, progress: bool = False):
    """Yield ``(first segment row, frames [n, frames, W])`` of every file's segments, file by file, in batches."""
    from tqdm.auto import tqdm

    pending, row = [], 0
    for item in tqdm(index.items, desc="encoder frames", unit="file", disable=not progress):
        pending.extend(segments(load_audio(item.path), segment_samples=segment_samples))
        while len(pending) >= _FRAME_BATCH:
            yield row, _frames(encoder, np.stack(pending[:_FRAME_BATCH]))
            pending, row = pending[_FRAME_BATCH:], row + _FRAME_BATCH
    if pending:
        yield row, _frames(encoder, np.stack(pending))


def _frames(encoder, audio: np.ndarray) -> np.ndarray:
    """Encoder frames of float32 audio ``[batch, samples]`` as numpy ``[batch, frames, W]``."""
    if isinstance(encoder, _TeacherEncoder):
        return encoder(audio)
    return encoder(audio, training=False).numpy()


def _feature_predictor(encoder, heads, segment_samples):
    def predict(clip):
        frames = _frames(encoder, mirror_pad(clip[np.newaxis], segment_samples))
        return {name: value.numpy() for name, value in heads(frames, training=False).items()}

    return predict


def _predictor(path: str) -> tuple:
    """``(clip -> outputs, metadata)`` of a fine-tuned export or its ``.tflite`` file."""
    from trillsson_tf.runtime import TFLiteModel, read_model_card

    if path.endswith(".tflite"):
        info = read_model_card(path).get("source", {}).get("metadata") or {}
        runtime = TFLiteModel(path)
        segment = int(info.get("segment_samples", 16000))

        def predict(clip):
            return {name: value for name, value in runtime(mirror_pad(clip[np.newaxis], segment)).items()}

        return predict, info
    info = read_metadata(path)
    if export_type(info) != MULTITASK_EXPORT:
        raise ParameterError(
            f"{path!r} is not a fine-tuned export (export_type {MULTITASK_EXPORT!r} in trillsson_tf.json)."
        )
    keras_model = keras.models.load_model(os.path.join(path, KERAS_FILE))
    return _model_predictor(keras_model, int(info.get("segment_samples", 16000))), info


def _keyword_items(items: list, kws: str, keywords: list, path: str) -> list:
    """The items, all in the test split unless some are; refuses keyword labels the model does not know."""
    if not keywords:
        raise ParameterError(f"Model {path!r} has no keyword head ({KWS_OUTPUT}).")
    unknown = sorted({i.labels[kws] for i in items if kws in i.labels} - set(keywords))
    if unknown:
        raise ParameterError(f"Keyword label(s) {unknown} are not among the model's classes {keywords}.")
    has_split = any(i.labels.get(_SPLIT) == _TEST for i in items)
    return [i if has_split else AudioItem(i.path, {**i.labels, _SPLIT: _TEST}) for i in items]


def _model_predictor(model, segment_samples):
    call = tf.function(
        lambda audio: model(audio, training=False), input_signature=[tf.TensorSpec([1, None], tf.float32)]
    )

    def predict(clip):
        return {name: value.numpy() for name, value in call(mirror_pad(clip[np.newaxis], segment_samples)).items()}

    return predict


def _score(
    predict, items, *, kws_labels, keywords, sv_labels, speakers, sv_groups=None, p_target=0.01, progress=False
) -> dict:
    """Keyword accuracy on ``split=test`` items and verification scores on ``speakers``' items.

    Each score has its 95% interval: Wilson's for the accuracy (``ci95``; clips taken as
    independent), a speaker bootstrap for the EER (``eer_ci95``). With ``sv_groups`` (a label
    column), trials are also scored within each group alone (``sv_by_group``): pairs across
    corpora are trivially different speakers and flatter a pooled EER.
    """
    from tqdm.auto import tqdm

    kept, outputs = [], []  # one clip in memory at a time
    for item in tqdm(items, desc="scoring", unit="clip", disable=not progress):
        try:
            clip = load_audio(item.path)
        except ParameterError as error:
            _log.warning("Skipping %s: %s", item.path, error)
            continue
        kept.append(item)
        outputs.append(predict(clip))
    if not kept:
        raise ParameterError(f"None of the {len(items)} scoring file(s) could be read.")
    scores = {}
    if kws_labels:
        rows = [i for i, item in enumerate(kept) if item.labels.get(_SPLIT) == _TEST and kws_labels in item.labels]
        if rows:
            predicted = [keywords[int(np.argmax(outputs[i][KWS_OUTPUT]))] for i in rows]
            truth = [kept[i].labels[kws_labels] for i in rows]
            correct = int(np.sum(np.array(predicted) == np.array(truth)))
            scores["kws"] = {
                "accuracy": accuracy(np.array(predicted), np.array(truth)),
                "clips": len(rows),
                "ci95": binomial_ci95(correct, len(rows)),
            }
    if sv_labels:
        rows = [i for i, item in enumerate(kept) if item.labels.get(sv_labels) in speakers]
        embeddings = np.stack([outputs[i][SV_OUTPUT][0] for i in rows]) if rows else np.zeros((0, 1))
        speaker_labels = [kept[i].labels[sv_labels] for i in rows]
        scores["sv"] = speaker_verification(embeddings, speaker_labels, p_target=p_target, bootstrap=_BOOTSTRAP)
        if sv_groups:
            groups = np.array([kept[i].labels.get(sv_groups, "") for i in rows])
            scores["sv_by_group"] = {
                str(group): speaker_verification(
                    embeddings[groups == group],
                    np.array(speaker_labels)[groups == group],
                    p_target=p_target,
                    bootstrap=_BOOTSTRAP,
                )
                for group in sorted(set(groups.tolist()))
            }
    return scores


def evaluate_multitask(
    model,
    data,
    *,
    kws=None,
    sv=None,
    labels=None,
    speakers=None,
    sv_groups=None,
    p_target: float = 0.01,
    out_json=None,
    progress: bool = False,
) -> dict:
    """Score a fine-tuned model: keyword accuracy and speaker-verification EER / minDCF.

    Args:
        model: A :func:`finetune` export folder, or a ``.tflite`` converted from one (run with
            :class:`trillsson_tf.runtime.TFLiteModel`).
        data: A folder, a CSV manifest, or a list of paths / :class:`trillsson_tf.train.data.AudioItem`.
        kws: Keyword label column; scored on the ``split=test`` files when there is a split, else
            on every file with the label.
        sv: Speaker label column; trials are all pairs of files whose speakers the model never
            trained on (the export records its training speakers; they are left out).
        labels: Optional CSV manifest of extra label columns.
        speakers: Restrict verification to these speakers.
        sv_groups: Label column within whose values verification is also scored alone.
        p_target: Target prior of minDCF.
        out_json: Also write the report there.
        progress: Progress bar.

    Returns:
        ``{'model', 'files', 'kws': {'accuracy', 'clips'}, 'sv': {'eer', 'min_dcf', 'trials', ...}}``.

    Raises:
        ParameterError: missing label columns, a model without the needed output, keyword labels
            the model does not know, fewer than 2 unseen speakers.
    """
    if kws is None and sv is None:
        raise ParameterError("Give kws=<label column> and/or sv=<label column> to evaluate.")
    path = os.fspath(model)
    items = find_audio(data, labels=labels)
    for column, role in ((kws, "keyword labels"), (sv, "speaker labels")):
        if column is not None:
            _label_column(items, column, role)
    predict, info = _predictor(path)
    keywords = info.get("keywords") or []
    if kws is not None:
        items = _keyword_items(items, kws, keywords, path)
    unseen = set()
    if sv is not None:
        unseen = {i.labels[sv] for i in items if sv in i.labels} - set(info.get("train_speakers") or [])
        if speakers is not None:
            unseen &= set(map(str, speakers))
    scoring = [
        i
        for i in items
        if (kws is not None and i.labels.get(_SPLIT) == _TEST) or (sv is not None and i.labels.get(sv) in unseen)
    ]
    report = {
        "model": path,
        "files": len(scoring),
        **_score(
            predict,
            scoring,
            kws_labels=kws,
            keywords=keywords,
            sv_labels=sv,
            speakers=unseen,
            sv_groups=sv_groups,
            p_target=p_target,
            progress=progress,
        ),
    }
    if out_json is not None:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        write_json(out_json, report)
    return report
