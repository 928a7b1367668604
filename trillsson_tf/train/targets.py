"""Teacher targets stored with their audio: one shard format, one reader, two writers.

Targets are computed once, stored with the audio, and the teacher never runs in the training loop.
Two modes (:data:`TARGET_MODES`): ``global`` (one clip vector per file) and ``local`` (one target per
2 s segment, :func:`trillsson_tf.train.data.segments`). A targets folder holds ``teacher.json`` and
TFRecord shards of one record per file (:data:`TARGETS_FORMAT`; :func:`encode_record`,
:func:`decode_record`). Every reader checks shards through :func:`shard_records` (a bad one raises
:class:`ShardError`); :func:`read_targets` / :func:`load_targets` read both writers' folders: the
local cache (:func:`cached_targets`, :func:`build_cache`) and :func:`trillsson_tf.pipelines.build_targets`.
The record's features and the cache's rules: docs/DESIGN.md, "Targets".
"""

import collections
import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import os
import uuid

import numpy as np

from trillsson_tf.configs import TARGET_MODES
from trillsson_tf.formats.target_shard import (
    READABLE_FORMATS,
    TARGETS_FORMAT,
    TargetRecord,
    decode_record,
    encode_record,
    pcm16,
)
from trillsson_tf.train.augment import augmented_views
from trillsson_tf.train.data import AudioItem, segments
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
    "ShardError",
    "shard_records",
    "skip_shard",
]

_log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "trillsson_tf", "targets")
"""Where targets go when no ``cache_dir`` is given (``$TRILLSSON_CACHE_DIR`` overrides it)."""

TEACHER_FILE = "teacher.json"
SHARD_PATTERN = "targets-*.tfrecord"
"""Shard file names inside a targets folder (partial files being written do not match)."""


@dataclasses.dataclass
class TargetSet:
    """Targets aligned with a list of clips.

    Attributes:
        targets: float32 arrays ``[1, D]`` (global) or ``[segments, D]`` (local), one per clip.
        mode: ``global`` or ``local``.
        computed: Files whose targets this call computed.
        reused: Files whose targets came from the cache.
        directory: The targets folder used.
        items: The :class:`trillsson_tf.train.data.AudioItem` of each clip.
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
            [
                np.asarray(teacher(rows[start : start + batch_size])["embedding"], dtype=np.float32)
                for start in range(0, len(rows), batch_size)
            ]
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

    Raises:
        ShardError: an unusable shard (:func:`shard_records`); this reader takes a folder whole.
        ParameterError: a ``teacher.json`` that is not a JSON object.
    """
    directory = os.fspath(directory)
    info = _read_info(directory)
    records = {}
    for shard in shard_paths(directory):
        for feature in shard_records(shard):
            record = decode_record(feature)
            records[record.key] = record
    return info, records


def _read_info(directory) -> dict:
    """The ``teacher.json`` of a targets folder (local or remote) as a dict, ``{}`` when absent.

    Raises:
        ParameterError: the file is empty, not JSON or not a JSON object (one line, naming it).
    """
    from trillsson_tf._keras import tf

    path = f"{os.fspath(directory).rstrip('/')}/{TEACHER_FILE}"
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path, "rb") as handle:
        text = handle.read()
    try:
        info = json.loads(text)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        info = str(error).splitlines()[0] if text.strip() else "it is empty"
    if not isinstance(info, dict):
        why = info if isinstance(info, str) else f"it holds a {type(info).__name__}"
        raise ParameterError(f"{path} is not a JSON object ({why}).")
    return info


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
        ParameterError: no ``teacher.json`` (not a finished targets folder), one that is not a
            JSON object or names no teacher, a format this version cannot read (with the command
            that rebuilds it), another teacher, another mode.
    """
    directory = os.fspath(directory)
    info = _read_info(directory)
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
    made_by = info.get("teacher")
    named = isinstance(made_by, dict) and {"spec", "identity"} <= made_by.keys()
    if not named or info.get("mode") not in TARGET_MODES:
        raise ParameterError(
            f"{directory.rstrip('/')}/{TEACHER_FILE} names no teacher spec, identity and mode: "
            "rebuild the targets folder."
        )
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

    for records in tf.data.TFRecordDataset(list(paths)).batch(batch).as_numpy_iterator():
        yield from records


class ShardError(ParameterError):
    """A shard that cannot be used: unreadable, not target records, another teacher's or another width.

    Attributes:
        path: The shard file.
        reason: Why, in a few words.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"Target shard {path} is unusable: {reason}")
        self.path, self.reason = path, reason


def shard_records(path, *, teacher=None, mode=None, width=None):
    """Yield the records of one shard, each checked, as ``tf.train.Example`` feature maps.

    The one place where a shard is judged, for every reader: a caller keeps a shard's records
    only once the generator ended, so a bad shard is left out whole, never half of it.

    Args:
        path: A shard file (local or remote).
        teacher: The teacher the reader expects; records that name another identity are refused
            (records of older writers name none and pass).
        mode: The expected target mode, checked the same way.
        width: The expected width D of the target rows; ``None``: the shard's first record sets it.

    Yields:
        The feature map of each record (``key``, ``path``, ``targets`` ``[rows, D]`` ... present and consistent).

    Raises:
        ShardError: truncated or damaged bytes, a record that is not a target record, another
            teacher, mode or width, rows of two widths.
    """
    from google.protobuf.message import DecodeError

    from trillsson_tf._keras import tf

    try:
        for serialized in _file_records(path):
            try:
                feature = tf.train.Example.FromString(serialized).features.feature
            except DecodeError:
                raise ShardError(path, "a record is not a tf.train.Example (not a targets file)") from None
            record_width = _check_record(path, feature, teacher, mode)
            if width is not None and record_width != width:
                raise ShardError(path, f"its targets are {record_width} wide, not {width}")
            width = record_width
            yield feature
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.NotFoundError) as error:
        raise ShardError(path, f"truncated or corrupt ({_first_line(error)})") from None


def _file_records(path: str):
    """The serialized records of one TFRecord file, through TensorFlow's plain record reader.

    Not ``tf.data``: a dataset and its iterator cost about 30 ms to set up, so reading a cache
    of 150 shards one by one took 4 s that way and 0.3 s this way (all of them in one dataset:
    0.6 s, but then a bad shard cannot be told from the next). The reader raises the same errors
    (``DataLossError`` on truncated or damaged bytes) and reads what ``tf.io.gfile`` reads.
    ``__wrapped__``: the function without its v1 deprecation notice.
    """
    from trillsson_tf._keras import tf

    reader = tf.compat.v1.io.tf_record_iterator
    return getattr(reader, "__wrapped__", reader)(path)


def _check_record(path: str, feature, teacher, mode) -> int:
    """Raise :class:`ShardError` unless ``feature`` is a record of ``teacher`` and ``mode``; return its width D."""

    def text(name):
        values = feature[name].bytes_list.value if name in feature else []
        if len(values) != 1:
            raise ShardError(path, f"a record has no {name!r} bytes (not a targets file)")
        return values[0]

    try:
        text("key").decode(), text("path").decode(), json.loads(text("labels").decode())
    except ValueError as error:  # UnicodeDecodeError, JSONDecodeError
        raise ShardError(path, f"a record's key, path or labels are not UTF-8 or JSON ({_first_line(error)})") from None
    audio, sample_bytes = ("audio_pcm16", 2) if "audio_pcm16" in feature else ("audio", 4)  # format 1: float32
    if len(text(audio)) % sample_bytes:
        raise ShardError(path, f"a record's {audio!r} is not whole {sample_bytes}-byte samples")
    shape = tuple(feature["target_shape"].int64_list.value) if "target_shape" in feature else ()
    if len(shape) != 2 or min(shape) < 1 or 4 * shape[0] * shape[1] != len(text("targets")):
        raise ShardError(path, f"a record's targets do not fill their shape {list(shape)}")
    rates = feature["sample_rate_hz"].int64_list.value if "sample_rate_hz" in feature else []
    if list(rates) != [DEFAULT_FRONTEND.sample_rate_hz]:
        raise ShardError(path, f"a record holds audio at {list(rates)} Hz, not {DEFAULT_FRONTEND.sample_rate_hz}")
    for name, wanted, what in (
        ("teacher_identity", getattr(teacher, "identity", None), "made by teacher"),
        ("target_mode", mode, "targets in mode"),
    ):
        if wanted is not None and name in feature and text(name).decode(errors="replace") != wanted:
            raise ShardError(path, f"{what} {text(name).decode(errors='replace')!r}, not {wanted!r}")
    return shape[1]


def _first_line(error) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def skip_shard(error: ShardError, skipped: list, *, log=_log) -> None:
    """Warn that the shard of ``error`` is left out (naming it and why) and append ``(path, reason)`` to ``skipped``."""
    log.warning("Skipping target shard %s: %s", error.path, error.reason)
    skipped.append((error.path, error.reason))


def _targets(feature) -> np.ndarray:
    """float32 ``[rows, D]`` targets of a checked record."""
    shape = tuple(feature["target_shape"].int64_list.value)
    return np.frombuffer(feature["targets"].bytes_list.value[0], dtype="<f4").reshape(shape).astype(np.float32)


def _stored_targets(folder: str, *, teacher, mode: str, keys_only: bool = False) -> tuple:
    """The usable records of the cache ``folder``; its bad shards are set aside (renamed ``*.bad``).

    A shard is bad when :func:`shard_records` refuses it, or when its rows have another width
    than the folder's: the width of this teacher's own records (those naming its identity), or
    where none do (older shards), the width of most records.

    Returns:
        ``(stored, set_aside)``: ``{key: float32 [rows, D]}`` (``{key: None}`` with ``keys_only``)
        and ``[(shard, reason)]`` of the shards set aside.
    """
    shards, bad, by_width = shard_paths(folder), [], collections.Counter()
    found = []  # (shard, width, {key: targets}): held until the folder's width is known
    for shard in shards:
        width, keys, own = None, {}, False
        try:
            for feature in shard_records(shard, teacher=teacher, mode=mode):
                width, own = int(feature["target_shape"].int64_list.value[1]), own or "teacher_identity" in feature
                keys[feature["key"].bytes_list.value[0].decode()] = None if keys_only else _targets(feature)
        except ShardError as error:
            skip_shard(error, bad)
            continue
        found.append((shard, width, keys))
        if width is not None:  # an empty shard has none
            by_width[width] += (1 << 40 if own else 0) + len(keys)  # own records outweigh any count of others
    folder_width = by_width.most_common(1)[0][0] if by_width else None
    stored = {}
    for shard, width, keys in found:
        if width not in (None, folder_width):
            skip_shard(ShardError(shard, f"its targets are {width} wide, not {folder_width}"), bad)
        else:
            stored.update(keys)
    for shard, _ in bad:
        os.replace(shard, shard + ".bad")  # out of SHARD_PATTERN: neither this run's scan nor a later one reads it
    if bad:
        _log.warning(
            "Set aside %d unusable target shard(s) of %d in %s (renamed *.bad); the teacher computes "
            "their files again.",
            len(bad),
            len(shards),
            folder,
        )
    return stored, bad


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


_LOCK_FILE = ".lock"  # not a shard, not teacher.json: no reader looks at it


@contextlib.contextmanager
def _prepare_cache(teacher, mode: str, cache_dir, shard_size: int):
    """The cache folder of ``teacher`` in ``mode``, created, claimed and locked for this process while the block runs.

    The lock spans reading what is stored, computing the rest and writing it: a second process
    waits, then finds the first one's records and computes none of them again.
    """
    check_mode(mode)
    if shard_size < 1:
        raise ParameterError(f"shard_size must be a positive number of files, got {shard_size!r}.")
    cache_dir = os.fspath(cache_dir or os.environ.get("TRILLSSON_CACHE_DIR") or DEFAULT_CACHE_DIR)
    folder = _cache_folder(cache_dir, teacher, mode)
    os.makedirs(folder, exist_ok=True)
    with _locked(folder):
        _claim(folder, teacher, mode)
        yield folder


@contextlib.contextmanager
def _locked(folder: str):
    """Hold an exclusive ``flock`` on ``folder``'s lock file (released when the block ends or the process dies)."""
    import fcntl

    with open(os.path.join(folder, _LOCK_FILE), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log.warning("Another process is filling the target cache %s; waiting for it to finish.", folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _claim(folder: str, teacher, mode: str) -> None:
    """Write ``teacher.json`` in the cache ``folder``; rewrite a broken one, refuse one of another teacher.

    Raises:
        ParameterError: ``teacher.json`` describes another teacher, mode or format: the folder
            (named after this teacher's identity) was copied or edited, and whose targets its
            shards hold is unknown.
    """
    path = os.path.join(folder, TEACHER_FILE)
    try:
        info = _read_info(folder)
    except ParameterError as error:  # a disposable description the toolkit owns: the shards are checked one by one
        _log.warning("%s: rewritten.", str(error).rstrip("."))
        info = {}
    made_by = info.get("teacher") if isinstance(info.get("teacher"), dict) else {}
    found = (made_by.get("identity"), info.get("mode"), info.get("format"))
    if info and found[0] is None:
        _log.warning("%s names no teacher: rewritten.", path)
    elif info and found != (teacher.identity, mode, TARGETS_FORMAT):
        raise ParameterError(
            f"{path} describes teacher {made_by.get('spec')!r} ({found[0]}) in {found[1]!r} mode, format "
            f"{found[2]!r}, not {teacher.spec!r} ({teacher.identity}) in {mode!r} mode: the cache folder was copied "
            f"or edited; delete {folder} to rebuild it."
        )
    write_json(path, teacher_info(teacher, mode))


def _warn_padded(teacher, padded: int) -> None:
    if padded:
        _log.warning(
            "%d clip(s) were shorter than the teacher's window of %d samples and were zero-padded.",
            padded,
            teacher.min_samples,
        )


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
        audio: :class:`trillsson_tf.train.data.LoadedAudio` (items give the file keys).
        mode: ``global`` or ``local``.
        cache_dir: Cache root; default ``$TRILLSSON_CACHE_DIR`` or :data:`DEFAULT_CACHE_DIR`.
        shard_size: New files per shard written to disk (what an interrupt can lose).
        progress: Show a progress bar over the files still to compute.
        keys: Cache key of each clip, for clips that are not the files themselves (the
            augmented views of :func:`trillsson_tf.train.augment.augmented_views`); default the
            :func:`file_key` of each item.

    Returns:
        :class:`TargetSet` aligned with ``audio.clips``.

    Raises:
        ParameterError: bad mode or shard size, keys that do not match the clips, a
            ``teacher.json`` in the cache folder that describes another teacher.
    """
    from tqdm.auto import tqdm

    keys = [file_key(item.path) for item in audio.items] if keys is None else list(keys)
    if len(keys) != len(audio.clips):
        raise ParameterError(f"Got {len(keys)} cache keys for {len(audio.clips)} clips.")
    padded_before = teacher.padded_clips
    with _prepare_cache(teacher, mode, cache_dir, shard_size) as folder:
        stored, _ = _stored_targets(folder, teacher=teacher, mode=mode)
        missing = [index for index, key in enumerate(keys) if key not in stored]

        def computed():
            for index in tqdm(missing, desc=f"teacher targets ({mode})", unit="file", disable=not progress):
                item, clip = audio.items[index], audio.clips[index]
                yield TargetRecord(
                    keys[index],
                    item.path,
                    dict(item.labels),
                    clip,
                    teacher_targets(teacher, clip, mode=mode),
                    teacher.identity,
                    mode,
                )

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
        items: The files that could be read (:class:`trillsson_tf.train.data.AudioItem`).
        keys: The cache key of each of ``items``.
        view_keys: The cache keys of the augmented views made (of the items asked for).
        computed: Records the teacher computed in this call (files and views).
        reused: Records found in the cache.
        skipped: ``(path, error)`` of the files that could not be read.
        bad_shards: ``(shard, reason)`` of the unusable shards set aside (renamed ``*.bad``);
            the teacher computed their files again.
    """

    directory: str
    items: list
    keys: list
    view_keys: list
    computed: int
    reused: int
    skipped: list
    bad_shards: list = dataclasses.field(default_factory=list)


def build_cache(
    teacher,
    items,
    *,
    mode: str = "global",
    cache_dir=None,
    views: int = 0,
    augmented=None,
    seed: int = 0,
    shard_size: int = 64,
    progress: bool = False,
) -> CacheIndex:
    """Fill the local cache for ``items``, streaming: one file in memory at a time, whatever their number.

    Files are read, run through the teacher and written to shards of ``shard_size`` records as
    they come; an interrupted call keeps every finished shard and the next call computes only
    the rest (a file's key hashes its path, size and modification time). Unreadable files are
    logged, counted and skipped. Unusable shards already in the folder (truncated, damaged,
    another teacher's) are named, set aside and their files computed again; another process
    filling the same folder is waited for (a lock), so no record is computed twice.

    Args:
        teacher: A :class:`trillsson_tf.teachers.Teacher`.
        items: :class:`trillsson_tf.train.data.AudioItem` s (paths and labels only).
        mode: ``global`` or ``local``.
        cache_dir: Cache root; default ``$TRILLSSON_CACHE_DIR`` or :data:`DEFAULT_CACHE_DIR`.
        views: Augmented views per file (:mod:`trillsson_tf.train.augment`), each with its own target.
        augmented: The items that get views (training files only, say); default every item.
        seed: Seeds the views.
        shard_size: Records per shard written (what an interrupt can lose).
        progress: A progress bar over the files.

    Returns:
        :class:`CacheIndex`.

    Raises:
        ParameterError: bad mode, views or shard size; none of the files could be read; a
            ``teacher.json`` in the cache folder that describes another teacher.
    """
    from trillsson_tf.train.augment import check_views

    check_views(views)
    augmented = None if augmented is None else {item.path for item in augmented}
    padded_before = teacher.padded_clips
    with _prepare_cache(teacher, mode, cache_dir, shard_size) as folder:
        stored, bad = _stored_targets(folder, teacher=teacher, mode=mode, keys_only=True)
        index = CacheIndex(folder, [], [], [], 0, 0, [], bad)
        _fill(
            teacher,
            items,
            index,
            stored,
            mode=mode,
            views=views,
            augmented=augmented,
            seed=seed,
            shard_size=shard_size,
            progress=progress,
        )
    _warn_padded(teacher, teacher.padded_clips - padded_before)
    if index.skipped:
        _log.warning("Skipped %d unreadable file(s) of %d.", len(index.skipped), len(items))
    if not index.items:
        first = index.skipped[0][1] if index.skipped else "no files given"
        raise ParameterError(f"None of the {len(items)} audio file(s) could be read; first error: {first}")
    _log.info("Targets in %s: %d computed, %d reused.", folder, index.computed, index.reused)
    return index


def _fill(teacher, items, index: CacheIndex, stored: dict, *, mode, views, augmented, seed, shard_size, progress):
    """Compute the records of ``items`` (and their views) missing from ``stored``, write them, and fill ``index``."""
    from tqdm.auto import tqdm

    from trillsson_tf.audio import load_audio
    from trillsson_tf.train.augment import clip_view, view_key

    def computed():
        bar = tqdm(items, desc=f"teacher targets ({mode})", unit="file", disable=not progress)
        for item in bar:
            try:
                key = file_key(item.path)
            except OSError as error:
                index.skipped.append((item.path, str(error)))
                continue
            wanted = [key] + (
                [view_key(key, view, seed=seed) for view in range(views)]
                if views and (augmented is None or item.path in augmented)
                else []
            )
            missing = [name for name in wanted if name not in stored]
            if missing:
                try:
                    clip = load_audio(item.path)
                except ParameterError as error:
                    _log.warning("Skipping %s: %s", item.path, error)
                    index.skipped.append((item.path, str(error)))
                    continue
                try:  # a teacher that fails on one file (NaN out, a runtime's error) loses that file, named and counted
                    made = [
                        (name, audio, teacher_targets(teacher, audio, mode=mode))
                        for name, audio in ((name, clip if name == key else clip_view(clip, name)) for name in missing)
                    ]
                except (ParameterError, RuntimeError, ValueError) as error:
                    _log.warning(
                        "Skipping %s: teacher %s failed on it: %s", item.path, teacher.spec, _first_line(error)
                    )
                    index.skipped.append((item.path, f"teacher {teacher.spec} failed: {_first_line(error)}"))
                    continue
                for name, audio, targets in made:
                    yield TargetRecord(name, item.path, dict(item.labels), audio, targets, teacher.identity, mode)
            index.items.append(item)
            index.keys.append(key)
            index.view_keys.extend(wanted[1:])
            index.computed += len(missing)
            index.reused += len(wanted) - len(missing)
            bar.set_postfix(computed=index.computed, reused=index.reused, refresh=False)

    for record in _write_records(index.directory, computed(), shard_size=shard_size):
        stored[record.key] = None


def augmented_targets(
    teacher, training, views: int, *, mode: str = "global", seed: int = 0, cache_dir=None, progress: bool = False
) -> list:
    """``(clip, target)`` pairs of ``views`` augmented views of each clip (:mod:`trillsson_tf.train.augment`).

    Args:
        teacher: A loaded teacher (runs once per view; the cache keeps the result).
        training: :class:`trillsson_tf.train.data.LoadedAudio` of the training files only.
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
