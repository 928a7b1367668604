"""Teacher targets on Apache Beam: the same shards as the local cache, from any runner.

``build_targets(data, out_dir, teacher=..., runner=...)`` matches files (on the launching machine),
reads, mixes down and resamples them to 16 kHz, batches them through the teacher (loaded once per
worker) and writes TFRecord shards + ``teacher.json`` in the format of :mod:`trillsson_tf.train.targets`,
so ``distill(targets=out_dir)`` reads them as it reads the local cache. Runner and pipeline options
pass through unchanged; ``workers`` sets ``num_workers``, or for the DirectRunner threads
(``direct_num_workers``, multi_threading). Why threads: docs/DESIGN.md, "Targets".
"""

import importlib.util
import json
import logging
import os

from trillsson_tf.audio import AUDIO_EXTENSIONS
from trillsson_tf.checks import positive_int
from trillsson_tf.train.data import AudioItem, find_audio, labels_from_name, source_paths
from trillsson_tf.errors import ParameterError, TrillssonError
from trillsson_tf.folders import refuse_inputs
from trillsson_tf.train.targets import SHARD_PATTERN, TEACHER_FILE, check_mode, teacher_info

__all__ = ["BEAM_PACKAGE", "DIRECT_RUNNER", "build_targets", "match_audio"]

_log = logging.getLogger(__name__)

BEAM_PACKAGE = "trillsson-tf[beam]"
DIRECT_RUNNER = "DirectRunner"
_SHARD_PREFIX = "targets"
_SHARD_SUFFIX = ".tfrecord"
_GLOB_CHARACTERS = "*?["
# Runners whose client libraries are an extra of apache-beam, and what to install for them.
_RUNNER_MODULES = {"DataflowRunner": (("apitools", "google.cloud.storage"), "apache-beam[gcp]")}
_SCHEME_EXTRAS = {
    "gs": "apache-beam[gcp]",
    "s3": "apache-beam[aws]",
    "azfs": "apache-beam[azure]",
    "hdfs": "apache-beam (hdfs)",
}


def _beam():
    """``apache_beam``, or a clear error naming the extra to install."""
    try:
        import apache_beam
    except ImportError:
        raise TrillssonError(
            f"Teacher targets on Apache Beam need apache-beam: pip install '{BEAM_PACKAGE}'."
        ) from None
    return apache_beam


def _check_runner_installed(runner: str) -> None:
    modules, package = _RUNNER_MODULES.get(runner, ((), None))
    missing = [name for name in modules if not _module_available(name)]
    if missing:
        raise TrillssonError(
            f"The {runner} needs {package}, which is not installed (missing {', '.join(missing)}): "
            f"pip install '{package}'."
        )


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


def _is_remote(path: str) -> bool:
    return "://" in path


def _filesystems(path: str):
    """Beam's ``FileSystems``, after checking that ``path``'s scheme has a filesystem installed."""
    from apache_beam.io.filesystems import FileSystems

    try:
        FileSystems.get_filesystem(path)
    except ValueError:
        scheme = path.split("://", 1)[0]
        package = _SCHEME_EXTRAS.get(scheme, "the Beam extra for this filesystem")
        raise TrillssonError(f"Apache Beam has no filesystem for {scheme}:// here: pip install '{package}'.") from None
    return FileSystems


def match_audio(source) -> list:
    """The audio files of a data source, on the machine that launches the pipeline.

    Args:
        source: A local folder (recursive) or CSV manifest, a list of paths, or a glob / folder
            on any filesystem Beam knows (``'gs://bucket/audio/**/*.flac'``, ``'s3://b/dir'``).

    Returns:
        list of :class:`trillsson_tf.train.data.AudioItem`, sorted by path, labels from the names.

    Raises:
        ParameterError: nothing matches (the message repeats the pattern and the extensions).
    """
    if isinstance(source, (list, tuple)) or (
        not _is_remote(os.fspath(source))
        and (os.path.isdir(os.fspath(source)) or os.fspath(source).lower().endswith(".csv"))
    ):
        return find_audio(source)
    source = os.fspath(source)
    _beam()
    from apache_beam.io.filesystem import BeamIOError

    # Without wildcards the source is one file or a folder: match both readings.
    patterns = [source] if any(c in source for c in _GLOB_CHARACTERS) else [source, source.rstrip("/") + "/**"]
    filesystems = _filesystems(source)
    paths = set()
    for pattern in patterns:
        try:
            (result,) = filesystems.match([pattern])
        except BeamIOError:  # a path that does not exist
            continue
        paths.update(meta.path for meta in result.metadata_list if meta.path.lower().endswith(AUDIO_EXTENSIONS))
    paths = sorted(paths)
    if not paths:
        raise ParameterError(f"No audio matches {source!r} (looked for {', '.join(AUDIO_EXTENSIONS)}).")
    return [AudioItem(path, labels_from_name(path)) for path in paths]


def _pipeline_options(runner: str, workers, pipeline_args):
    from apache_beam.options.pipeline_options import PipelineOptions

    args = [f"--runner={runner}"]
    if workers is not None:
        positive_int("workers", workers)
        if runner == DIRECT_RUNNER:
            mode = "multi_threading" if workers > 1 else "in_memory"
            args += [f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"]
        else:
            args.append(f"--num_workers={workers}")
    # Passed-through options come last, so they win (e.g. --direct_running_mode=multi_threading).
    return PipelineOptions(args + list(pipeline_args or []))


def _prepare_out_dir(out_dir: str, overwrite: bool) -> None:
    filesystems = _filesystems(out_dir)
    if filesystems.exists(out_dir):
        (listing,) = filesystems.match([out_dir.rstrip("/") + "/*"])
        if listing.metadata_list:
            if not overwrite:
                raise ParameterError(f"Output {out_dir!r} exists and is not empty; pass overwrite=True (CLI --force).")
            filesystems.delete([out_dir])
    if not _is_remote(out_dir):
        os.makedirs(out_dir, exist_ok=True)


def _counters(result) -> dict:
    from apache_beam.metrics.metric import MetricsFilter

    from trillsson_tf.pipelines._beam_transforms import METRICS_NAMESPACE

    counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    totals = {}
    for counter in counters:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + int(value or 0)
    return totals


def _start_pipeline(beam, teacher, runner: str, workers, pipeline_args, batch_size, num_shards):
    """A ``beam.Pipeline`` on ``runner``, after checking the teacher spec, sizes and the runner's extra."""
    from trillsson_tf.teachers import Teacher

    if isinstance(teacher, Teacher):
        raise ParameterError(
            "build_targets needs a teacher spec (a string every worker can load), not a loaded Teacher."
        )
    positive_int("batch_size", batch_size)
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 0:
        raise ParameterError(f"num_shards must be 0 (runner's choice) or a positive integer, got {num_shards!r}.")
    _check_runner_installed(runner)
    try:
        return beam.Pipeline(options=_pipeline_options(runner, workers, pipeline_args))
    except ValueError as error:  # unknown runner, missing required runner options
        raise ParameterError(f"Cannot start the {runner}: {error}") from None


def _add_steps(beam, pipeline, items, spec: str, output_key, mode: str, batch_size: int, out_dir: str, num_shards):
    """Files -> read -> batches -> teacher targets -> TFRecord shards ``<out_dir>/targets-*.tfrecord``."""
    from trillsson_tf.pipelines._beam_transforms import ReadAudio, TeacherTargets

    elements = [(item.path, dict(item.labels)) for item in items]
    (
        pipeline
        | "Files" >> beam.Create(elements)  # Create reshuffles: the files spread over the workers
        | "Read" >> beam.ParDo(ReadAudio())
        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch_size)
        | "Teacher" >> beam.ParDo(TeacherTargets(spec, output_key=output_key, mode=mode, batch_size=batch_size))
        | "Write"
        >> beam.io.WriteToTFRecord(f"{out_dir}/{_SHARD_PREFIX}", file_name_suffix=_SHARD_SUFFIX, num_shards=num_shards)
    )


def _outcome(result, out_dir: str) -> dict:
    """What a finished run wrote: ``records``, ``unreadable`` and ``padded_clips`` counts, ``shards`` (file names)."""
    counters = _counters(result)
    (shards,) = _filesystems(out_dir).match([f"{out_dir}/{SHARD_PATTERN}"])
    return {
        "records": counters.get("records", 0),
        "unreadable": counters.get("unreadable", 0),
        "padded_clips": counters.get("padded_clips", 0),
        "shards": sorted(os.path.basename(meta.path) for meta in shards.metadata_list),
    }


def build_targets(
    data,
    out_dir,
    *,
    teacher="speech_embedding",
    output_key=None,
    mode: str = "global",
    runner: str = DIRECT_RUNNER,
    workers=None,
    pipeline_args=None,
    num_shards: int = 0,
    batch_size: int = 64,
    overwrite: bool = False,
) -> dict:
    """Compute teacher targets with Apache Beam into a targets folder.

    Args:
        data: Audio source (see :func:`match_audio`): local folder or CSV, list of paths, or
            a glob / folder on any Beam filesystem.
        out_dir: Output folder (local or on a Beam filesystem): shards + ``teacher.json``.
        teacher: A teacher spec for :func:`trillsson_tf.teachers.load_teacher`; every worker
            loads it once, so it must be reachable from the workers (a hub handle, a
            ``gs://`` SavedModel, ``speech_embedding``...).
        output_key: Teacher output to use, when it has several.
        mode: ``global`` (one clip vector) or ``local`` (one vector per 2 s segment).
        runner: A Beam runner name (``DirectRunner``, ``DataflowRunner``, ``FlinkRunner``...).
        workers: DirectRunner: worker threads (``--direct_running_mode=multi_processing`` in
            ``pipeline_args`` makes them processes); other runners: ``--num_workers``. ``None``
            keeps the runner's default.
        pipeline_args: Further Beam pipeline options, passed through as they are
            (``['--project=P', '--region=R', '--temp_location=gs://...']``).
        num_shards: Output shards; 0 lets the runner choose.
        batch_size: Most clips (global) or 2 s segments (local) per teacher call.
        overwrite: Replace a non-empty ``out_dir``.

    Returns:
        Summary dict: ``out_dir``, ``files`` (matched), ``records`` (written), ``unreadable``,
        ``padded_clips``, ``shards`` (file names), ``runner``, ``teacher``, ``mode``.

    Raises:
        ParameterError: a bad choice, a glob matching nothing, an unknown runner, missing
            runner options, a non-empty ``out_dir`` without ``overwrite``.
        TrillssonError: apache-beam (or the runner's or filesystem's extra) is not installed.
    """
    from trillsson_tf.teachers import load_teacher

    beam = _beam()
    check_mode(mode)
    pipeline = _start_pipeline(beam, teacher, runner, workers, pipeline_args, batch_size, num_shards)
    out_dir = os.fspath(out_dir).rstrip("/")
    items = match_audio(data)
    # Before the teacher loads and --force deletes anything: an output overlapping an input is refused.
    refuse_inputs(
        out_dir,
        [("--data", [*source_paths(data), *(item.path for item in items)]), ("--teacher", teacher)],
        what="Output",
    )
    # Load once here: a bad spec fails before any worker starts, and teacher.json gets its identity.
    loaded = load_teacher(teacher, output_key=output_key)
    _prepare_out_dir(out_dir, overwrite)
    _add_steps(beam, pipeline, items, loaded.spec, output_key, mode, batch_size, out_dir, num_shards)
    _log.info("Running %s on %d files with %s (%s mode) into %s", runner, len(items), loaded.spec, mode, out_dir)
    result = pipeline.run()
    result.wait_until_finish()
    summary = {"out_dir": out_dir, "files": len(items), **_outcome(result, out_dir)}
    summary.update({"runner": runner, "workers": workers, "teacher": loaded.spec, "mode": mode})
    info = teacher_info(
        loaded, mode, pipeline={key: summary[key] for key in ("runner", "workers", "files", "records", "unreadable")}
    )
    # teacher.json is written last: a folder that has it holds a finished run.
    with _filesystems(out_dir).create(f"{out_dir}/{TEACHER_FILE}") as handle:
        handle.write(json.dumps(info, indent=2).encode())
    if summary["unreadable"]:
        _log.warning(
            "%d of %d files could not be read and were skipped (see the worker logs).",
            summary["unreadable"],
            len(items),
        )
    return summary
