"""Teacher targets stored with their audio: one shard format, one reader, two writers.

Spec section 5: targets are precomputed once, stored with the audio, and the teacher never
runs in the training loop. Two modes (:data:`TARGET_MODES`):

- ``global``: the teacher runs once on the whole clip; the target is that clip vector
  ``[1, D]`` and every training crop of the clip regresses to it.
- ``local``: the teacher runs on each 2 s segment alone (:func:`trillsson_tf.data.segments`,
  one 195-frame patch each); targets ``[segments, D]``, a crop is one of those segments.

**The format** (:data:`TARGETS_FORMAT`). A targets folder holds ``teacher.json`` (format,
teacher description and identity, mode, sample rate) and shards ``targets-*.tfrecord``:
TFRecord files of ``tf.train.Example`` records, one per audio file, with the features

- ``key`` (bytes): the file's cache key (:func:`file_key`),
- ``path`` (bytes): where the audio came from; ``labels`` (bytes): JSON of its labels,
- ``audio_pcm16`` (bytes): 16-bit little-endian PCM samples (``round(x * 32768)``, clipped) at
  ``sample_rate_hz`` (int64), mono: half the bytes of float32, about 115 MB per hour, and exact
  for audio read from 16-bit files. Format 1 stored ``audio`` as float32; its folders are still
  read (:data:`READABLE_FORMATS`), and a local cache in it is simply rebuilt once (the cache
  folder's name includes the format),
- ``targets`` (bytes): float32 little-endian, shape ``target_shape`` (int64 ``[rows, D]``).

Two writers produce it: the local cache builder :func:`cached_targets` (one process,
resumable) and the Apache Beam pipeline :func:`trillsson_tf.pipelines.build_targets`
(any runner). One reader, :func:`read_targets`, serves both: the distiller trains from a
cache folder and from a Beam output folder the same way (:func:`load_targets`).

**The local cache**: ``<cache_dir>/<hash of teacher identity and mode>/`` in the format
above. A shard is written (atomically) every ``shard_size`` new files, so an interrupted
run keeps what it finished and the next run computes only the rest. A file's key hashes its
absolute path, size and modification time: an edited file is recomputed.
"""
import dataclasses
import glob
import hashlib
import json
import logging
import os
import uuid

import numpy as np

from trillsson_tf.augment import augmented_views
from trillsson_tf.data import AudioItem, segments
from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import write_json
from trillsson_tf.frontend import DEFAULT_FRONTEND

__all__ = [
    "augmented_targets",
    "TARGET_MODES",
    "DEFAULT_CACHE_DIR",
    "TARGETS_FORMAT",
    "READABLE_FORMATS",
    "TEACHER_FILE",
    "SHARD_PATTERN",
    "TargetRecord",
    "TargetSet",
    "check_mode",
    "file_key",
    "teacher_targets",
    "batch_targets",
    "encode_record",
    "pcm16",
    "decode_record",
    "teacher_info",
    "read_targets",
    "load_targets",
    "cached_targets",
    "CacheIndex",
    "build_cache",
    "check_folder",
    "shard_paths",
    "serialized_records",
]

_log = logging.getLogger(__name__)

TARGET_MODES = ("global", "local")
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "trillsson_tf", "targets")
"""Where targets go when no ``cache_dir`` is given (``$TRILLSSON_CACHE_DIR`` overrides it)."""

TARGETS_FORMAT = "trillsson_tf.targets/2"
"""The format written: audio as 16-bit PCM (format 1 held it as float32)."""
READABLE_FORMATS = ("trillsson_tf.targets/1", TARGETS_FORMAT)
"""Formats :func:`load_targets` reads."""
_PCM_SCALE = 32768.0
TEACHER_FILE = "teacher.json"
SHARD_PATTERN = "targets-*.tfrecord"
"""Shard file names inside a targets folder (partial files being written do not match)."""


@dataclasses.dataclass
class TargetRecord:
    """One audio file with its teacher targets (one record of a shard).

    Attributes:
        key: Cache key of the file (:func:`file_key`).
        path: Where the audio was read from.
        labels: Labels of the file (column name -> string).
        audio: float32 ``[samples]`` at 16 kHz, mono.
        targets: float32 ``[1, D]`` (global) or ``[segments, D]`` (local).
    """

    key: str
    path: str
    labels: dict
    audio: np.ndarray
    targets: np.ndarray


@dataclasses.dataclass
class TargetSet:
    """Targets aligned with a list of clips.

    Attributes:
        targets: float32 arrays ``[1, D]`` (global) or ``[segments, D]`` (local), one per clip.
        mode: ``global`` or ``local``.
        computed: Files whose targets this call computed.
        reused: Files whose targets came from the cache.
        directory: The targets folder used.
        items: The :class:`trillsson_tf.data.AudioItem` of each clip.
        clips: float32 ``[samples]`` audio at 16 kHz, one per item.
        teacher: The teacher description stored with the targets.
    """

    targets: list
    mode: str
    computed: int
    reused: int
    directory: str
    items: list = dataclasses.field(default_factory=list)
    clips: list = dataclasses.field(default_factory=list)
    teacher: dict = dataclasses.field(default_factory=dict)


def check_mode(mode: str) -> str:
    """Return ``mode`` or raise a :class:`ParameterError` listing :data:`TARGET_MODES`."""
    if mode not in TARGET_MODES:
        raise ParameterError(f"Unknown target mode {mode!r}. Expected one of: {list(TARGET_MODES)}.")
    return mode


def file_key(path) -> str:
    """Cache key of a local audio file: hash of its absolute path, size and modification time."""
    path = os.path.abspath(os.fspath(path))
    stat = os.stat(path)
    return hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()


def teacher_targets(teacher, clip: np.ndarray, *, mode: str = "global") -> np.ndarray:
    """The targets of one clip.

    Args:
        teacher: A :class:`trillsson_tf.teachers.Teacher`.
        clip: float32 ``[samples]`` at 16 kHz.
        mode: ``global`` or ``local``.

    Returns:
        float32 ``[1, D]`` (global) or ``[segments, D]`` (local).
    """
    batch = clip[np.newaxis] if check_mode(mode) == "global" else segments(clip)
    return np.asarray(teacher(batch)["embedding"], dtype=np.float32)


def batch_targets(teacher, clips, *, mode: str = "global", batch_size: int = 64) -> list:
    """The targets of several clips, with as few teacher calls as the batch size allows.

    ``local`` mode stacks the 2 s segments of all clips; ``global`` mode stacks clips of equal
    length (the call contract needs one length per batch), so the result equals calling
    :func:`teacher_targets` clip by clip.

    Args:
        teacher: A :class:`trillsson_tf.teachers.Teacher`.
        clips: float32 ``[samples]`` arrays at 16 kHz.
        mode: ``global`` or ``local``.
        batch_size: Most rows per teacher call.

    Returns:
        list of float32 ``[1, D]`` (global) or ``[segments, D]`` (local), one per clip.
    """
    def run(rows):
        return np.concatenate(
            [np.asarray(teacher(rows[start : start + batch_size])["embedding"], dtype=np.float32)
             for start in range(0, len(rows), batch_size)]
        )

    if check_mode(mode) == "local":
        pieces = [segments(clip) for clip in clips]
        vectors = run(np.concatenate(pieces))
        return np.split(vectors, np.cumsum([len(piece) for piece in pieces])[:-1])
    results = [None] * len(clips)
    by_length = {}
    for index, clip in enumerate(clips):
        by_length.setdefault(len(clip), []).append(index)
    for indices in by_length.values():
        for index, vector in zip(indices, run(np.stack([clips[index] for index in indices]))):
            results[index] = vector[np.newaxis]
    return results


def pcm16(audio) -> np.ndarray:
    """float audio in [-1, 1] -> little-endian int16 samples (``round(x * 32768)``, clipped to int16)."""
    scaled = np.round(np.asarray(audio, np.float64) * _PCM_SCALE)
    return np.clip(scaled, -_PCM_SCALE, _PCM_SCALE - 1).astype("<i2")


def encode_record(record: TargetRecord) -> bytes:
    """Serialize a :class:`TargetRecord` as a ``tf.train.Example`` (the shard record format)."""
    from trillsson_tf._keras import tf

    def raw(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    targets = np.asarray(record.targets, dtype="<f4")
    feature = {
        "key": raw(record.key.encode()),
        "path": raw(record.path.encode()),
        "labels": raw(json.dumps(record.labels, sort_keys=True).encode()),
        "audio_pcm16": raw(pcm16(record.audio).tobytes()),
        "sample_rate_hz": ints([DEFAULT_FRONTEND.sample_rate_hz]),
        "targets": raw(targets.tobytes()),
        "target_shape": ints(targets.shape),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def decode_record(serialized: bytes) -> TargetRecord:
    """Parse one shard record written by :func:`encode_record`."""
    from trillsson_tf._keras import tf

    feature = tf.train.Example.FromString(serialized).features.feature

    def raw(name):
        return feature[name].bytes_list.value[0]

    rate = feature["sample_rate_hz"].int64_list.value[0]
    if rate != DEFAULT_FRONTEND.sample_rate_hz:
        raise ParameterError(f"Target record {raw('path').decode()!r} holds audio at {rate} Hz, not {DEFAULT_FRONTEND.sample_rate_hz}.")
    shape = tuple(feature["target_shape"].int64_list.value)
    return TargetRecord(
        key=raw("key").decode(),
        path=raw("path").decode(),
        labels=json.loads(raw("labels").decode()),
        audio=(np.frombuffer(raw("audio_pcm16"), dtype="<i2").astype(np.float32) / _PCM_SCALE if "audio_pcm16" in feature
               else np.frombuffer(raw("audio"), dtype="<f4").astype(np.float32)),  # format 1
        targets=np.frombuffer(raw("targets"), dtype="<f4").reshape(shape).astype(np.float32),
    )


def teacher_info(teacher, mode: str, **extra) -> dict:
    """The ``teacher.json`` content of a targets folder made by ``teacher`` in ``mode``."""
    return {
        "format": TARGETS_FORMAT,
        "teacher": teacher.describe(),
        "mode": check_mode(mode),
        "sample_rate_hz": DEFAULT_FRONTEND.sample_rate_hz,
        **extra,
    }


def read_targets(directory) -> tuple:
    """Read a targets folder (a local cache folder or a Beam output, local or remote).

    The one reader of the shard format; remote paths (``gs://...``) go through ``tf.io.gfile``.

    Args:
        directory: Folder holding ``teacher.json`` and ``targets-*.tfrecord`` shards.

    Returns:
        ``(info, records)``: the ``teacher.json`` dict (``{}`` when absent) and
        ``{key: TargetRecord}`` over every shard (a key found twice keeps its last record).
    """
    from trillsson_tf._keras import tf

    directory = os.fspath(directory)
    info_path = f"{directory.rstrip('/')}/{TEACHER_FILE}"
    info = {}
    if tf.io.gfile.exists(info_path):
        with tf.io.gfile.GFile(info_path) as handle:
            info = json.load(handle)
    shards = shard_paths(directory)
    records = {}
    if shards:
        for serialized in serialized_records(shards):
            record = decode_record(serialized)
            records[record.key] = record
    return info, records


def load_targets(directory, *, teacher, mode=None) -> TargetSet:
    """The audio and targets of a finished targets folder, checked against ``teacher``.

    Args:
        directory: A folder written by :func:`trillsson_tf.pipelines.build_targets` (or a
            cache folder of :func:`cached_targets`).
        teacher: The :class:`trillsson_tf.teachers.Teacher` the caller distills from; targets
            made by another teacher (another identity) are refused.
        mode: Expected target mode; ``None`` takes the folder's.

    Returns:
        :class:`TargetSet` with ``items``, ``clips`` and ``targets`` sorted by path.

    Raises:
        ParameterError: no ``teacher.json`` or no records (not a finished targets folder), another
            format, another teacher, another mode.
    """
    directory = os.fspath(directory)
    info = check_folder(directory, teacher=teacher, mode=mode)
    _, records = read_targets(directory)
    if not records:
        raise ParameterError(f"Targets folder {directory!r} holds no records ({SHARD_PATTERN}).")
    ordered = sorted(records.values(), key=lambda record: (record.path, record.key))
    return TargetSet(
        targets=[record.targets for record in ordered],
        mode=info["mode"],
        computed=0,
        reused=len(ordered),
        directory=directory,
        items=[AudioItem(record.path, record.labels) for record in ordered],
        clips=[record.audio for record in ordered],
        teacher=info["teacher"],
    )


def check_folder(directory, *, teacher, mode=None) -> dict:
    """The ``teacher.json`` of a finished targets folder, checked against ``teacher`` and ``mode``.

    Raises:
        ParameterError: no ``teacher.json`` (not a finished targets folder), a format this
            version cannot read (with the command that rebuilds it), another teacher, another mode.
    """
    from trillsson_tf._keras import tf

    directory = os.fspath(directory)
    info_path = f"{directory.rstrip('/')}/{TEACHER_FILE}"
    info = {}
    if tf.io.gfile.exists(info_path):
        with tf.io.gfile.GFile(info_path) as handle:
            info = json.load(handle)
    if not info:
        raise ParameterError(
            f"{directory!r} is not a targets folder: it has no {TEACHER_FILE} (written when `trillsson-tf targets` "
            "finishes). Did the pipeline complete?"
        )
    if info.get("format") not in READABLE_FORMATS:
        spec = (info.get("teacher") or {}).get("spec", "TEACHER")
        raise ParameterError(
            f"Targets in {directory!r} have format {info.get('format')!r}, which this version cannot read "
            f"(it reads {list(READABLE_FORMATS)}). Rebuild them: "
            f"`trillsson-tf targets --teacher {spec} --data AUDIO --out {directory} --force`."
        )
    made_by = info["teacher"]
    if made_by["identity"] != teacher.identity:
        raise ParameterError(
            f"Targets in {directory!r} were made by teacher {made_by['spec']!r} ({made_by['identity']}), not by "
            f"{teacher.spec!r} ({teacher.identity}). Distill with --teacher {made_by['spec']} or recompute the targets."
        )
    if mode is not None and check_mode(mode) != info["mode"]:
        raise ParameterError(f"Targets in {directory!r} are in {info['mode']!r} mode, not {mode!r}.")
    return info


def shard_paths(directory) -> list:
    """The shard files of a targets folder (local or remote), sorted."""
    from trillsson_tf._keras import tf

    return sorted(tf.io.gfile.glob(f"{os.fspath(directory).rstrip('/')}/{SHARD_PATTERN}"))


def serialized_records(paths, *, batch: int = 64):
    """Yield the serialized records (bytes) of TFRecord files, in order.

    They are read ``batch`` at a time: one eager iterator step per record cost 0.2 ms, more than
    decoding the record (scanning 310,000 records took minutes for the iteration alone). A batch
    is one shard's worth (the builder's default shard size): records of long clips are 1 MB
    each, and 1,024 at a time raised the trainer's peak memory by 500 MB.

    Raises:
        tensorflow.errors.DataLossError: a truncated or corrupt file (when its bad part is read).
    """
    from trillsson_tf._keras import tf

    for chunk in tf.data.TFRecordDataset(list(paths)).batch(batch).as_numpy_iterator():
        yield from chunk


def _stored_targets(folder: str, *, keys_only: bool = False) -> dict:
    """``{key: targets}`` (``{key: None}`` with ``keys_only``) of the records in ``folder``; no audio is kept."""
    from trillsson_tf._keras import tf

    stored = {}
    shards = shard_paths(folder)
    if shards:
        for serialized in serialized_records(shards):
            feature = tf.train.Example.FromString(serialized).features.feature
            key = feature["key"].bytes_list.value[0].decode()
            if keys_only:
                stored[key] = None
                continue
            shape = tuple(feature["target_shape"].int64_list.value)
            stored[key] = np.frombuffer(feature["targets"].bytes_list.value[0], dtype="<f4").reshape(shape).astype(np.float32)
    return stored


def _cache_folder(cache_dir: str, teacher, mode: str) -> str:
    # The format is part of the name: a cache written in an older format is rebuilt beside it, never mixed in.
    name = hashlib.sha1(f"{teacher.identity}|{mode}|{TARGETS_FORMAT}".encode()).hexdigest()[:16]
    return os.path.join(cache_dir, name)


def _write_shard(folder: str, records: list) -> None:
    """Write records to a new shard, atomically; a random suffix keeps concurrent writers apart."""
    from trillsson_tf._keras import tf

    index = len(glob.glob(os.path.join(folder, SHARD_PATTERN)))
    final = os.path.join(folder, f"targets-{index:05d}-{uuid.uuid4().hex[:8]}.tfrecord")
    partial = final + ".partial"
    with tf.io.TFRecordWriter(partial) as writer:
        for record in records:
            writer.write(encode_record(record))
    os.replace(partial, final)


def _write_records(folder: str, records, *, shard_size: int):
    """Write ``records`` (an iterable of :class:`TargetRecord`) to new shards of ``shard_size``; yields each once written."""
    pending = []
    for record in records:
        pending.append(record)
        if len(pending) >= shard_size:
            _write_shard(folder, pending)
            yield from pending
            pending = []
    if pending:
        _write_shard(folder, pending)
        yield from pending


def _prepare_cache(teacher, mode: str, cache_dir, shard_size: int) -> str:
    """Create (or reuse) the cache folder of ``teacher`` in ``mode`` and return its path."""
    check_mode(mode)
    if shard_size < 1:
        raise ParameterError(f"shard_size must be a positive number of files, got {shard_size!r}.")
    cache_dir = os.fspath(cache_dir or os.environ.get("TRILLSSON_CACHE_DIR") or DEFAULT_CACHE_DIR)
    folder = _cache_folder(cache_dir, teacher, mode)
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, TEACHER_FILE), teacher_info(teacher, mode))
    return folder


def _warn_padded(teacher, padded: int) -> None:
    if padded:
        _log.warning("%d clip(s) were shorter than the teacher's window of %d samples and were zero-padded.",
                     padded, teacher.min_samples)


def cached_targets(
    teacher,
    audio,
    *,
    mode: str = "global",
    cache_dir=None,
    shard_size: int = 64,
    progress: bool = False,
    keys=None,
) -> TargetSet:
    """Targets for every clip of ``audio``, computing only those not cached yet.

    Args:
        teacher: A :class:`trillsson_tf.teachers.Teacher`.
        audio: :class:`trillsson_tf.data.LoadedAudio` (items give the file keys).
        mode: ``global`` or ``local``.
        cache_dir: Cache root; default ``$TRILLSSON_CACHE_DIR`` or :data:`DEFAULT_CACHE_DIR`.
        shard_size: New files per shard written to disk (what an interrupt can lose).
        progress: Show a progress bar over the files still to compute.
        keys: Cache key of each clip, for clips that are not the files themselves (the
            augmented views of :func:`trillsson_tf.augment.augmented_views`); default the
            :func:`file_key` of each item.

    Returns:
        :class:`TargetSet` aligned with ``audio.clips``.
    """
    from tqdm.auto import tqdm

    folder = _prepare_cache(teacher, mode, cache_dir, shard_size)
    keys = [file_key(item.path) for item in audio.items] if keys is None else list(keys)
    if len(keys) != len(audio.clips):
        raise ParameterError(f"Got {len(keys)} cache keys for {len(audio.clips)} clips.")
    stored = _stored_targets(folder)
    missing = [index for index, key in enumerate(keys) if key not in stored]
    padded_before = teacher.padded_clips

    def computed():
        for index in tqdm(missing, desc=f"teacher targets ({mode})", unit="file", disable=not progress):
            item, clip = audio.items[index], audio.clips[index]
            yield TargetRecord(keys[index], item.path, dict(item.labels), clip, teacher_targets(teacher, clip, mode=mode))

    for record in _write_records(folder, computed(), shard_size=shard_size):
        stored[record.key] = record.targets
    _warn_padded(teacher, teacher.padded_clips - padded_before)
    _log.info("Targets in %s: %d computed, %d reused.", folder, len(missing), len(keys) - len(missing))
    return TargetSet(
        [stored[key] for key in keys],
        mode,
        len(missing),
        len(keys) - len(missing),
        folder,
        items=list(audio.items),
        clips=list(audio.clips),
        teacher=teacher.describe(),
    )


@dataclasses.dataclass
class CacheIndex:
    """What :func:`build_cache` left in a cache folder for a list of files (no audio).

    Attributes:
        directory: The cache folder (a targets folder).
        items: The files that could be read (:class:`trillsson_tf.data.AudioItem`).
        keys: The cache key of each of ``items``.
        view_keys: The cache keys of the augmented views made (of the items asked for).
        computed: Records the teacher computed in this call (files and views).
        reused: Records found in the cache.
        skipped: ``(path, error)`` of the files that could not be read.
    """

    directory: str
    items: list
    keys: list
    view_keys: list
    computed: int
    reused: int
    skipped: list


def build_cache(teacher, items, *, mode: str = "global", cache_dir=None, views: int = 0, augmented=None,
                seed: int = 0, shard_size: int = 64, progress: bool = False) -> CacheIndex:
    """Fill the local cache for ``items``, streaming: one file in memory at a time, whatever their number.

    Files are read, run through the teacher and written to shards of ``shard_size`` records as
    they come; an interrupted call keeps every finished shard and the next call computes only
    the rest (a file's key hashes its path, size and modification time). Unreadable files are
    logged, counted and skipped.

    Args:
        teacher: A :class:`trillsson_tf.teachers.Teacher`.
        items: :class:`trillsson_tf.data.AudioItem` s (paths and labels only).
        mode: ``global`` or ``local``.
        cache_dir: Cache root; default ``$TRILLSSON_CACHE_DIR`` or :data:`DEFAULT_CACHE_DIR`.
        views: Augmented views per file (:mod:`trillsson_tf.augment`), each with its own target.
        augmented: The items that get views (training files only, say); default every item.
        seed: Seeds the views.
        shard_size: Records per shard written (what an interrupt can lose).
        progress: A progress bar over the files.

    Returns:
        :class:`CacheIndex`.

    Raises:
        ParameterError: bad mode, views or shard size; none of the files could be read.
    """
    from tqdm.auto import tqdm

    from trillsson_tf.audio import load_audio
    from trillsson_tf.augment import check_views, clip_view, view_key

    check_views(views)
    folder = _prepare_cache(teacher, mode, cache_dir, shard_size)
    stored = _stored_targets(folder, keys_only=True)
    augmented = None if augmented is None else {item.path for item in augmented}
    index = CacheIndex(folder, [], [], [], 0, 0, [])
    padded_before = teacher.padded_clips

    def computed():
        bar = tqdm(items, desc=f"teacher targets ({mode})", unit="file", disable=not progress)
        for item in bar:
            try:
                key = file_key(item.path)
            except OSError as error:
                index.skipped.append((item.path, str(error)))
                continue
            wanted = [key] + ([view_key(key, view, seed=seed) for view in range(views)]
                              if views and (augmented is None or item.path in augmented) else [])
            missing = [name for name in wanted if name not in stored]
            if missing:
                try:
                    clip = load_audio(item.path)
                except ParameterError as error:
                    _log.warning("Skipping %s: %s", item.path, error)
                    index.skipped.append((item.path, str(error)))
                    continue
                for name in missing:
                    audio = clip if name == key else clip_view(clip, name)
                    yield TargetRecord(name, item.path, dict(item.labels), audio, teacher_targets(teacher, audio, mode=mode))
            index.items.append(item)
            index.keys.append(key)
            index.view_keys.extend(wanted[1:])
            index.computed += len(missing)
            index.reused += len(wanted) - len(missing)
            bar.set_postfix(computed=index.computed, reused=index.reused, refresh=False)

    for record in _write_records(folder, computed(), shard_size=shard_size):
        stored[record.key] = None
    _warn_padded(teacher, teacher.padded_clips - padded_before)
    if index.skipped:
        _log.warning("Skipped %d unreadable file(s) of %d.", len(index.skipped), len(items))
    if not index.items:
        first = index.skipped[0][1] if index.skipped else "no files given"
        raise ParameterError(f"None of the {len(items)} audio file(s) could be read; first error: {first}")
    _log.info("Targets in %s: %d computed, %d reused.", folder, index.computed, index.reused)
    return index


def augmented_targets(teacher, training, views: int, *, mode: str = "global", seed: int = 0, cache_dir=None,
                      progress: bool = False) -> list:
    """``(clip, target)`` pairs of ``views`` augmented views of each clip (:mod:`trillsson_tf.augment`).

    Args:
        teacher: A loaded teacher (runs once per view; the cache keeps the result).
        training: :class:`trillsson_tf.data.LoadedAudio` of the training files only.
        views: Views per file.
        mode: Target mode (see :func:`check_mode`).
        seed: Seeds the views (with each file's cache key).
        cache_dir: Target cache root (see :func:`cached_targets`).
        progress: Progress bar.

    Returns:
        List of ``(float32 [samples], float32 [segments, D])`` (one segment in ``global`` mode).
    """
    clips, keys = augmented_views(training, [file_key(item.path) for item in training.items], views, seed=seed)
    view_targets = cached_targets(teacher, clips, mode=mode, cache_dir=cache_dir, progress=progress, keys=keys)
    return list(zip(clips.clips, view_targets.targets))
