"""The optimizer pipeline: :func:`optimize_export` prunes, clusters and/or quantization-aware trains an export's
chunk network, recovering each stage by distillation (``trillsson-tf optimize``).

Every stage works on the chunk network (log-mel patch ``[n, 195, 80, 1]`` -> ``[n, D]``); the
frontend stays float and outside. The techniques are :mod:`~trillsson_tf.optimize.prune`,
:mod:`~trillsson_tf.optimize.cluster` and :mod:`~trillsson_tf.optimize.quantize`; the training is
:func:`~trillsson_tf.optimize.recovery.recover`. This module holds the options, the data (training
patches and held-out clips), the stage order, checkpoints and resume, the report and the export.
"""

import logging
import os
import shutil
import time

import numpy as np

from trillsson_tf._keras import keras
from trillsson_tf.errors import ParameterError
from trillsson_tf.formats.run_record import OPTIMIZE_FORMAT
from trillsson_tf.optimize.cluster import apply_clustering, check_clusters, strip_clustering
from trillsson_tf.optimize.int4 import apply_int4_qat, check_int8_layers, strip_int4_qat
from trillsson_tf.optimize.prune import SCHEDULES, apply_pruning, parse_block_size, sparsity_report, strip_pruning
from trillsson_tf.optimize.quantize import apply_qat, strip_clustering_cqat
from trillsson_tf.optimize.recovery import recover, rewrap
from trillsson_tf.train.engine import RUN_FILE, RunFolder, check_positive

__all__ = ["STAGES", "RECOVERY_LEARNING_RATE", "QAT_LEARNING_RATE", "REPORT_FILE", "optimize_export"]

_log = logging.getLogger(__name__)

STAGES = ("prune", "cluster", "qat", "int4")
"""The stages of :func:`optimize_export`, in the order they run (each one optional)."""

RECOVERY_LEARNING_RATE = 1e-3
"""Default recovery learning rate of :func:`optimize_export` when it prunes or clusters.

The network has far to go back: the distilled ``tiny_cnn`` of ``benchmarks/convert_benchmark.py``
pruned to 50% + QAT, 300 steps per stage, reached held-out cosine 0.970 to the unpruned model at
1e-3 against 0.947 at 1e-4 (80%: 0.915 against 0.908)."""

QAT_LEARNING_RATE = 1e-4
"""Default recovery learning rate of :func:`optimize_export` for QAT alone (same model: held-out
cosine 0.99961 at 1e-4 against 0.99907 at 1e-3): it starts next to the float network."""

REPORT_FILE = "optimize.json"
"""The report (and resume state) that :func:`optimize_export` keeps in its output folder."""

_PRUNE_RAMP = 0.5  # the polynomial schedule reaches its sparsity halfway; the rest recovers at that sparsity
_MASK_UPDATES = 20  # mask updates while the polynomial schedule ramps up
_FIDELITY_CLIPS = 64
_FRONTEND_SLICE = 128


def _check_stages(prune, schedule, block_size, qat, cluster, int4) -> None:
    """Refuse a pipeline with no stage, stages that do not combine, or a bad stage option."""
    if prune is None and not qat and cluster is None and not int4:
        raise ParameterError(
            "Nothing to do: ask for prune=<sparsity>, qat=True, int4=True and/or cluster=<clusters> "
            "(CLI --prune, --qat, --int4, --cluster)."
        )
    if int4 and (qat or cluster is not None):
        raise ParameterError(
            "int4 (int4-weight training for LiteRT's quantizer) does not combine with qat (int8) or cluster: "
            "pass one of them (CLI --int4, --qat, --cluster)."
        )
    if prune is not None and (isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0 < prune < 1):
        raise ParameterError(f"prune must be a target sparsity in (0, 1), got {prune!r}.")
    if schedule not in SCHEDULES:
        raise ParameterError(f"Unknown pruning schedule {schedule!r}. Expected one of: {list(SCHEDULES)}.")
    if block_size is not None and prune is None:
        raise ParameterError("block_size applies to pruning; pass prune=<sparsity> with it.")
    if cluster is not None:
        check_clusters(cluster)


def _options(
    prune,
    schedule,
    block_size,
    qat,
    cluster,
    steps,
    batch_size,
    learning_rate,
    num_patches,
    validation_fraction,
    checkpoint_every,
    seed,
    int4=False,
    int8_layers=(),
) -> dict:
    """Validate the pipeline options; returns them as JSON-friendly data (compared on resume)."""
    _check_stages(prune, schedule, block_size, qat, cluster, int4)
    if int8_layers and not int4:
        raise ParameterError("int8_layers applies to int4 training; pass int4=True with it (CLI --int4).")
    for name, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("num_patches", num_patches),
        ("checkpoint_every", checkpoint_every),
    ):
        check_positive(name, value)
    if learning_rate is None:
        learning_rate = QAT_LEARNING_RATE if prune is None and cluster is None else RECOVERY_LEARNING_RATE
    if not learning_rate > 0:
        raise ParameterError(f"learning_rate must be positive, got {learning_rate!r}.")
    if not 0 < validation_fraction < 1:
        raise ParameterError(
            f"validation_fraction must be in (0, 1): fidelity is measured on held-out files, got "
            f"{validation_fraction!r}."
        )
    return {
        "prune": None if prune is None else float(prune),
        "schedule": schedule,
        "block_size": None if block_size is None else list(parse_block_size(block_size)),
        "cluster": None if cluster is None else int(cluster),
        "qat": bool(qat),
        "int4": bool(int4),
        "int8_layers": sorted(int8_layers),
        "steps": int(steps),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "num_patches": int(num_patches),
        "validation_fraction": float(validation_fraction),
        "checkpoint_every": int(checkpoint_every),
        "seed": int(seed),
    }


def _load_source(export_dir):
    """The float Keras model of an export folder and its metadata."""
    from trillsson_tf.models.export import KERAS_FILE, METADATA_FILE, read_metadata
    from trillsson_tf.models import chunk_network

    path = os.fspath(export_dir)
    if not os.path.isfile(os.path.join(path, KERAS_FILE)):
        raise ParameterError(
            f"{path!r} is not a trillsson_tf export directory: expected {KERAS_FILE!r} and {METADATA_FILE!r} in it "
            "(written by `trillsson-tf export`, `trillsson-tf distill` or trillsson_tf.models.export.export_savedmodel)."
        )
    metadata = read_metadata(path)
    if (metadata.get("optimization") or {}).get("qat"):
        raise ParameterError(
            f"{path!r} is already quantization-aware trained; optimize the float export it came from "
            f"({metadata['optimization'].get('source')!r})."
        )
    model = keras.models.load_model(os.path.join(path, KERAS_FILE))
    chunk_network(model)  # only chunk-network students (log-mel patch in) are optimized here
    return model, metadata


def _training_data(data, frontend, options: dict, *, progress: bool):
    """Random 2 s crops of the training files as patches ``[num_patches, 195, 80, 1]``, held-out clips, a summary.

    ``options`` gives ``num_patches``, ``validation_fraction`` and ``seed``.
    """
    from trillsson_tf.train.data import find_audio, index_clips, load_clips, read_crop, split_items
    from trillsson_tf.frontend import numpy_ops

    num_patches, validation_fraction, seed = (options[key] for key in ("num_patches", "validation_fraction", "seed"))
    items = find_audio(data)
    if len(items) < 2:
        raise ParameterError(
            f"optimize needs at least 2 audio files in {data!r} (training and held-out), found {len(items)}."
        )
    train, held = split_items(items, validation_fraction=validation_fraction, seed=seed)
    if not held:  # a tiny data set: keep one file out so that fidelity is still measured on unseen audio
        train, held = train[:-1], train[-1:]
    # Only the crops are read (the corpus is never loaded): the same windows as cropping loaded clips.
    index = index_clips(train, progress=progress)
    rng = np.random.default_rng(seed)
    crops = np.stack(
        [
            read_crop(index, position, rng, crop_samples=frontend.min_samples)
            for position in rng.integers(0, len(index.items), num_patches)
        ]
    )
    # In slices: the float64 spectra of 1,024 crops at once would take about 0.8 GB.
    patches = np.concatenate(
        [
            numpy_ops.log_mel_patches(crops[start : start + _FRONTEND_SLICE], frontend)
            for start in range(0, len(crops), _FRONTEND_SLICE)
        ]
    )
    patches = patches.reshape(-1, *frontend.patch_shape, 1).astype(np.float32)
    held_loaded = load_clips(held[:_FIDELITY_CLIPS])
    summary = {
        "source": os.fspath(data) if not isinstance(data, (list, tuple)) else f"list of {len(data)} files",
        "files": len(items),
        "train_files": len(index.items),
        "held_out_files": len(held_loaded.items),
        "held_out": [os.path.basename(item.path) for item in held_loaded.items],
        "patches": int(len(patches)),
        "skipped": [path for path, _ in index.skipped + held_loaded.skipped],
    }
    return patches, held_loaded.clips, summary


def _fidelity(reference_model, model, clips) -> dict:
    """Parity of ``model`` against ``reference_model`` on whole clips (one call per clip, any length)."""
    from trillsson_tf.metrics import parity
    from trillsson_tf.models import output_key

    key = output_key(reference_model)
    want = np.concatenate([reference_model(clip[np.newaxis])[key].numpy() for clip in clips])
    got = np.concatenate([model(clip[np.newaxis])[key].numpy() for clip in clips])
    return {**parity(want, got), "clips": len(clips)}


def _stage_network(stage: str, network, options: dict, patches):
    """The wrapped network of ``stage``, built from the previous stage's (stripped) network."""
    steps = options["steps"]
    if stage == "prune":
        frequency = max(1, steps // (2 * _MASK_UPDATES))
        end_step = frequency * max(1, int(steps * _PRUNE_RAMP) // frequency)
        return apply_pruning(
            network,
            sparsity=options["prune"],
            schedule=options["schedule"],
            end_step=end_step,
            frequency=frequency,
            block_size=options["block_size"],
        )
    if stage == "cluster":
        return apply_clustering(network, clusters=options["cluster"], preserve_sparsity=options["prune"] is not None)
    if stage == "int4":
        return apply_int4_qat(network, int8_layers=options["int8_layers"])
    return apply_qat(
        network,
        preserve_sparsity=options["prune"] is not None,
        preserve_clusters=options["cluster"] is not None,
        calibration_patches=patches,
    )


def _strip(stage: str, network, options: dict):
    if stage == "prune":
        return strip_pruning(network)
    if stage == "cluster":
        return strip_clustering(network)
    if stage == "int4":
        return strip_int4_qat(network)
    if options["cluster"] is not None:
        return strip_clustering_cqat(network)
    return network  # the fake-quantization stays: the converter reads its ranges


def _run_stage(stage: str, wrapped, targets, patches, options: dict, run: RunFolder, *, progress: bool):
    """Recover the wrapped network of ``stage`` for ``options['steps']`` steps, checkpointed in the run folder.

    Resumes from the stage's latest checkpoint; every checkpoint also writes the report, its loss
    curve cut back to the restored step (a point every :data:`trillsson_tf.train.engine.LOG_EVERY_STEPS` steps).
    """
    steps = options["steps"]
    optimizer = keras.optimizers.Adam(options["learning_rate"])
    checkpoints = run.checkpoints(
        {"network": wrapped, "optimizer": optimizer}, subdir=os.path.join("checkpoints", stage), max_to_keep=1
    )
    record = run.record["stages"].setdefault(stage, {"steps": steps, "loss_curve": []})
    # The step the report records, not the newest checkpoint: a kill between the two loses no curve point.
    start = checkpoints.restore(record.get("step", 0))
    record["loss_curve"] = [point for point in record["loss_curve"] if point[0] <= start]
    if start:
        _log.info("Resuming stage %s of %s at step %d", stage, run.path, start)
    if start >= steps:
        return

    def save(step):
        checkpoints.save(step)
        record["step"] = step
        run.write()

    recover(
        wrapped,
        targets,
        patches,
        steps=steps,
        batch_size=options["batch_size"],
        seed=options["seed"],
        start_step=start,
        optimizer=optimizer,
        checkpoint_every=options["checkpoint_every"],
        on_checkpoint=save,
        history=record["loss_curve"],
        keep_zeros=stage != "prune" and options["prune"] is not None,
        progress=progress,
        description=f"optimize: {stage}",
    )


def _open_run(out_dir, source: str, data, options: dict, *, resume: bool, overwrite: bool) -> tuple:
    """``(run folder, report)``: a new run, or the one in ``out_dir`` resumed (refused when source or options differ)."""
    from trillsson_tf.train.data import source_paths

    run = RunFolder(
        out_dir,
        resume=resume,
        overwrite=overwrite,
        record_file=REPORT_FILE,
        inputs=[("export", source), ("--data", source_paths(data))],
    )
    report = run.open(
        {"source": source, "options": options}, lambda i: f"optimizes {i['source']!r} with {i['options']}"
    )
    return run, report


def _run_stages(planned: list, network, targets, patches, options: dict, run: RunFolder, *, progress: bool):
    """Wrap, recover and strip ``network`` stage after stage; returns the last stage's stripped network."""
    for stage in planned:
        wrapped = _stage_network(stage, network, options, patches)
        _run_stage(stage, wrapped, targets, patches, options, run, progress=progress)
        network = _strip(stage, wrapped, options)
    return network


def _export(optimized, run_path: str, source: str, metadata: dict, options: dict, report: dict) -> str:
    """Export the optimized model to ``<run>/export`` (the source's training run copied in); returns its path."""
    from trillsson_tf.models.export import export_savedmodel

    summary = {
        "source": source,
        **{key: options[key] for key in ("prune", "schedule", "block_size", "cluster", "qat", "int4", "steps")},
        "overall_sparsity": report["sparsity"]["overall"],
        "fidelity_mean_cosine": report["fidelity"]["mean_cosine"],
    }
    export = export_savedmodel(
        optimized,
        os.path.join(run_path, "export"),
        overwrite=True,
        extra_metadata={"teacher": metadata.get("teacher"), "optimization": summary},
    )
    if os.path.isfile(os.path.join(source, RUN_FILE)):  # the training run the card reports stays the distillation
        shutil.copy(os.path.join(source, RUN_FILE), os.path.join(export, RUN_FILE))
    return export


def _finish(run: RunFolder, report: dict, began: float, planned: list) -> None:
    """Record the seconds since ``began``, write the report and log what was done."""
    report["seconds"] = round(time.perf_counter() - began, 1)
    run.write()
    _log.info(
        "Optimized %s (%s): sparsity %.3f, held-out mean cosine %.5f; exported to %s",
        report["source"],
        ", ".join(planned),
        report["sparsity"]["overall"],
        report["fidelity"]["mean_cosine"],
        report["export"],
    )


def optimize_export(
    export_dir,
    out_dir,
    *,
    data,
    prune=None,
    schedule: str = "polynomial",
    block_size=None,
    qat: bool = False,
    cluster=None,
    int4: bool = False,
    int8_layers=(),
    steps: int = 300,
    batch_size: int = 16,
    learning_rate=None,
    num_patches: int = 1024,
    validation_fraction: float = 0.1,
    checkpoint_every: int = 100,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Prune, cluster and/or quantization-aware train an export's chunk network, recovering each by distillation.

    Stages run in the order prune -> cluster -> qat (each optional, ``steps`` recovery steps each),
    the frontend staying float. Recovery regresses the unoptimized network's outputs on log-mel
    patches of ``data`` (no labels). With pruning, clustering preserves the zeros and QAT uses
    tfmot's sparsity-preserving scheme; with clustering, QAT preserves the clusters. Pruning
    includes the depthwise kernels (:func:`apply_pruning`), and the stages after it keep every
    pruned zero (:func:`recover`'s ``keep_zeros``).

    Args:
        export_dir: An export folder (``trillsson-tf export`` / ``distill``: ``runs/x/export``).
        out_dir: Output folder: ``optimize.json`` (report and resume state), ``checkpoints/``,
            ``export/`` (hub-format, loadable by :func:`trillsson_tf.converters.tflite.convert`).
        data: Audio folder, CSV manifest or list of files; split by file name into training
            patches and held-out clips (fidelity).
        prune: Target sparsity in (0, 1), or ``None``.
        schedule: Pruning schedule, one of :data:`SCHEDULES`.
        block_size: Block sparsity ``(rows, cols)`` or ``'4x1'`` (rows along the input axis);
            ``None`` prunes single weights.
        qat: Quantization-aware training (int8) as the last stage.
        int4: int4-weight training as the last stage (Conv2D and Dense kernels; activations float):
            the export's kernels lie on the int4 grid that ``convert --quantizer litert --quantize
            int4-weights`` stores exactly. Not with ``qat`` or ``cluster``.
        int8_layers: Conv2D / Dense layer names that int4 training trains at int8 instead (the
            quantizer keeps them int8): the layers most sensitive to int4 rounding.
        cluster: Number of weight clusters per kernel (2-256), or ``None``.
        steps: Recovery steps per stage.
        batch_size: Patches per step.
        learning_rate: Adam learning rate; ``None``: :data:`RECOVERY_LEARNING_RATE` when pruning
            or clustering, else :data:`QAT_LEARNING_RATE`.
        num_patches: Training patches: random 2 s crops of the training files (drawn with ``seed``).
        validation_fraction: Share of files held out for the fidelity measure.
        checkpoint_every: Steps between checkpoints.
        seed: Seeds the split, the patch choice and the batches.
        resume: Continue the run in ``out_dir`` (refused when the source or options differ).
        overwrite: Replace a non-empty ``out_dir`` (CLI ``--force``).
        progress: Progress bars.

    Returns:
        The report (also ``<out_dir>/optimize.json``): options, data, per stage the recovery loss
        curve, per-layer sparsity and distinct values, layers that cannot be pruned, fidelity
        (mean cosine, max abs diff) to the unoptimized model on held-out clips, export path.

    Raises:
        ParameterError: bad options, nothing to do, too little audio, a path that is not our
            export, a non-empty ``out_dir`` without ``resume``/``overwrite``, a mismatched resume.
        UnsupportedLayerError: QAT of a layer tfmot cannot quantize (named).
    """
    options = _options(
        prune,
        schedule,
        block_size,
        qat,
        cluster,
        steps,
        batch_size,
        learning_rate,
        num_patches,
        validation_fraction,
        checkpoint_every,
        seed,
        int4,
        tuple(int8_layers),
    )
    source = os.path.abspath(os.fspath(export_dir))
    model, metadata = _load_source(source)
    check_int8_layers(model.chunk_network, options["int8_layers"])  # before the data, which takes a while
    run, report = _open_run(out_dir, source, data, options, resume=resume, overwrite=overwrite)
    began = time.perf_counter()
    patches, held_clips, data_summary = _training_data(data, model.frontend, options, progress=progress)
    teacher = model.chunk_network
    targets = teacher.predict(patches, batch_size=batch_size, verbose=0)
    planned = [stage for stage in STAGES if options[stage] not in (None, False)]
    report.setdefault("stages", {})
    report.update({"format": OPTIMIZE_FORMAT, "source": source, "options": options, "data": data_summary})
    network = _run_stages(planned, teacher, targets, patches, options, run, progress=progress)
    optimized = rewrap(model, network)
    report.update({"sparsity": sparsity_report(network), "fidelity": _fidelity(model, optimized, held_clips)})
    report["not_prunable"] = report["sparsity"]["not_prunable"]
    report["export"] = _export(optimized, run.path, source, metadata, options, report)
    _finish(run, report, began, planned)
    return report
