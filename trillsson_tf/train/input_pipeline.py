"""Training examples streamed from target shards with ``tf.data``: memory flat in the corpus size.

The distiller never holds its corpus. :func:`scan_shards` makes one pass over a targets folder
(local cache or Beam output) keeping only small things: the training records' key fingerprints,
running moments of their targets, a bounded subset of target rows and the first segment of a few
held-out files; unusable shards are named and left out. :func:`training_dataset` is the ``tf.data``
pipeline: shards interleaved, records parsed and filtered, one random crop each (or one stored
segment, for per-segment targets), shuffled, batched, prefetched; the iterator can be checkpointed
so a resumed run continues the same stream. Memory and determinism: docs/DESIGN.md, "Training".
"""

import dataclasses
import logging

import numpy as np

from trillsson_tf.checks import optional, positive_int
from trillsson_tf.contract import PCM16_SCALE
from trillsson_tf.formats.target_shard import parse_record, pcm16, record_audio, record_samples, record_targets
from trillsson_tf.train.data import CROP_SAMPLES, check_validation_fraction, is_validation, segments
from trillsson_tf.errors import ParameterError
from trillsson_tf.train.targets import ShardError, check_folder, shard_paths, shard_records, skip_shard

__all__ = [
    "SHUFFLE_BUFFER",
    "MAX_VALIDATION_FILES",
    "MAX_SUBSET_TARGETS",
    "ShardScan",
    "TargetTable",
    "read_target_table",
    "scan_shards",
    "key_fingerprints",
    "reader_shards",
    "training_dataset",
]

_log = logging.getLogger(__name__)

SHUFFLE_BUFFER = 1024
"""Crops in the shuffle buffer by default: 64 MB of 16-bit audio."""
MAX_VALIDATION_FILES = 256
"""Held-out files whose first 2 s are kept for the validation loss and the fidelity figures."""
MAX_SUBSET_TARGETS = 4096
"""Training target rows kept (a uniform subset) for the nearest-training-target baseline."""
_CYCLE_LENGTH = 8  # shards read at once
_FINGERPRINT_BUCKETS = 2**63 - 1
_FINGERPRINT_CHUNK = 65536


@dataclasses.dataclass
class ShardScan:
    """What one pass over a targets folder keeps (no training audio).

    Attributes:
        directory: The targets folder.
        info: Its ``teacher.json``.
        mode: ``global`` or ``local``.
        shards: The readable shards that hold training records (the pipeline reads these).
        skipped_shards: ``(path, reason)`` of unusable shards (corrupt, truncated, another
            teacher's, mode or width: :func:`trillsson_tf.train.targets.shard_records`), left out.
        train_fingerprints: int64 ``[records]``, :func:`key_fingerprints` of the training records'
            keys: 8 bytes a record, where key strings would cost a Python and a TensorFlow string each.
        train_files: Distinct training files (augmented views share their file's path).
        validation_files: Held-out files (records whose file the split holds out).
        other_records: Records of files not asked for (another corpus in a shared cache).
        target_mean: float64 ``[D]``, mean of the training target rows.
        target_std: float64 ``[D]``, their standard deviation.
        target_rows: Training target rows counted.
        target_subset: float64 ``[<= MAX_SUBSET_TARGETS, D]``, a uniform subset of them (a reservoir).
        validation_audio: int16 ``[V, segment_samples]`` (16-bit PCM, half of float32's memory:
            :func:`~trillsson_tf.formats.target_shard.pcm16_float` per batch), the first segment of up to
            ``max_validation`` held-out files.
        validation_targets: float32 ``[V, D]``, their target rows.
        train_hours: Hours of training audio (views included).
        per_segment: Whether a record's target rows are its consecutive segments' (``local``
            mode, layer frames) rather than one row for the whole clip.
        segment_samples: Length of those segments and of the training crops, in samples.
        joins: :class:`TargetTable` s of other teachers whose rows follow this folder's in each
            target row (several-teacher distillation); the pipeline joins them by record key.
        widths: The width of each teacher's block in a target row: ``(D,)`` without joins.
        missing: Per joined table, the records of this folder it lacks (that teacher failed on
            the file): left out of training and validation, counted here.
    """

    directory: str
    info: dict
    mode: str
    shards: list
    skipped_shards: list
    train_fingerprints: np.ndarray
    train_files: int
    validation_files: int
    other_records: int
    target_mean: np.ndarray
    target_std: np.ndarray
    target_rows: int
    target_subset: np.ndarray
    validation_audio: np.ndarray
    validation_targets: np.ndarray
    train_hours: float
    per_segment: bool = False
    segment_samples: int = CROP_SAMPLES
    joins: list = dataclasses.field(default_factory=list)
    widths: tuple = ()
    missing: tuple = ()

    @property
    def train_records(self) -> int:
        """Training records (files and their augmented views): crops per pass over the corpus."""
        return len(self.train_fingerprints)


class _Moments:
    """Running sum and sum of squares of target rows (float64), and a reservoir subset of rows."""

    def __init__(self, limit: int, seed: int):
        self.count, self.total, self.squares = 0, None, None
        self.subset, self.limit, self.rng = [], limit, np.random.default_rng(seed)

    def add(self, rows: np.ndarray) -> None:
        rows = rows.astype(np.float64)
        if self.total is None:
            self.total, self.squares = np.zeros(rows.shape[1]), np.zeros(rows.shape[1])
        self.total += rows.sum(0)
        self.squares += np.square(rows).sum(0)
        for row in rows:
            self.count += 1
            if len(self.subset) < self.limit:
                self.subset.append(row)
            else:
                slot = int(self.rng.integers(0, self.count))
                if slot < self.limit:
                    self.subset[slot] = row


def _decode(feature) -> tuple:
    """``(key, path, targets float32 [rows, D])`` of a parsed record (the audio stays undecoded)."""
    return (
        feature["key"].bytes_list.value[0].decode(),
        feature["path"].bytes_list.value[0].decode(),
        record_targets(feature),
    )


def _fingerprint(tf, keys):
    # FarmHash Fingerprint64, the same in the scan and in the graph; a collision among a corpus's
    # keys (odds about n^2 / 2^64: 1e-8 at 10 million records) would let one extra record in.
    return tf.strings.to_hash_bucket_fast(keys, _FINGERPRINT_BUCKETS)


def key_fingerprints(keys) -> np.ndarray:
    """int64 ``[len(keys)]`` 64-bit fingerprints of record keys (str), what the pipeline filters on."""
    from trillsson_tf._keras import tf

    keys = list(keys)
    chunks = [
        _fingerprint(tf, tf.constant(keys[start : start + _FINGERPRINT_CHUNK], tf.string)).numpy()
        for start in range(0, len(keys), _FINGERPRINT_CHUNK)
    ]  # bounds the string tensor
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int64)


@dataclasses.dataclass
class TargetTable:
    """Another teacher's clip targets, looked up by record key fingerprint (several-teacher distillation).

    Attributes:
        directory: Its targets folder.
        fingerprints: int64 ``[N]``, sorted, unique: :func:`key_fingerprints` of the records kept.
        targets: float32 ``[N, D]``, their clip targets (4 D bytes a file, held in memory and in
            the input graph: the one part of a several-teacher run that grows with the corpus).
        skipped_shards: ``(path, reason)`` of its unusable shards, left out.
    """

    directory: str
    fingerprints: np.ndarray
    targets: np.ndarray
    skipped_shards: list

    @property
    def width(self) -> int:
        return int(self.targets.shape[1])

    def lookup(self, fingerprints: np.ndarray) -> tuple:
        """``(found bool [n], rows float32 [n, D])``; a row not found is zeros and ``found`` False."""
        at = np.minimum(np.searchsorted(self.fingerprints, fingerprints), max(len(self.fingerprints) - 1, 0))
        found = self.fingerprints[at] == fingerprints if len(self.fingerprints) else np.zeros(len(fingerprints), bool)
        return found, np.where(found[:, None], self.targets[at], 0.0).astype(np.float32)


def read_target_table(directory, *, teacher, keys=None) -> TargetTable:
    """The clip targets (``global`` mode) of ``keys`` (``None``: every record) in a targets folder of ``teacher``.

    Raises:
        ParameterError: not a targets folder of ``teacher`` in ``global`` mode (:func:`check_folder`).
    """
    directory = str(directory)
    check_folder(directory, teacher=teacher, mode="global")
    wanted = None if keys is None else np.unique(key_fingerprints(keys))
    prints, rows, skipped, width = [], [], [], None
    for shard in shard_paths(directory):
        try:
            records = [
                (key, targets[0])
                for key, _, targets in map(_decode, shard_records(shard, teacher=teacher, mode="global", width=width))
            ]
        except ShardError as error:
            skip_shard(error, skipped, log=_log)
            continue
        if records:
            width = width or len(records[0][1])
            shard_prints = key_fingerprints([key for key, _ in records])
            use = np.ones(len(records), bool) if wanted is None else _member(shard_prints, wanted)
            prints.append(shard_prints[use])
            rows += [row for (_, row), keep in zip(records, use) if keep]
    fingerprints = np.concatenate(prints) if prints else np.zeros(0, np.int64)
    fingerprints, first = np.unique(fingerprints, return_index=True)
    targets = np.stack(rows)[first].astype(np.float32) if rows else np.zeros((0, width or 0), np.float32)
    return TargetTable(directory, fingerprints, targets, skipped)


def _member(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_unique)`` by binary search: np.isin sorts both arrays again on
    every call, which for each shard against 310,000 wanted keys cost more than reading it."""
    at = np.minimum(np.searchsorted(sorted_unique, values), len(sorted_unique) - 1)
    return sorted_unique[at] == values if len(sorted_unique) else np.zeros(len(values), bool)


def scan_shards(
    directory,
    *,
    teacher,
    mode=None,
    keys=None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    max_validation: int = MAX_VALIDATION_FILES,
    segment_samples: int = CROP_SAMPLES,
    per_segment=None,
    target_subset: int = MAX_SUBSET_TARGETS,
    joins=(),
    progress: bool = False,
) -> ShardScan:
    """One pass over a targets folder: the training keys' fingerprints, target moments, a few held-out clips.

    Args:
        directory: A targets folder (``teacher.json`` + ``targets-*.tfrecord``), local or remote.
        teacher: The teacher distilled from; a folder made by another one is refused.
        mode: Expected target mode; ``None`` takes the folder's.
        keys: Record keys to use (the files asked for and their views, when the folder is a
            shared cache); ``None``: every record.
        validation_fraction: Share of files held out (:func:`trillsson_tf.train.data.is_validation`, by file name).
        seed: Seeds the split and the target subset.
        max_validation: Most held-out files kept in memory.
        segment_samples: Segment (and training crop) length in samples: 2 s for embedding
            targets; a layer distillation's segment for its frame targets.
        per_segment: Target rows are the segments' (``None``: in ``local`` mode); each row then
            counts in the moments, and a held-out file gives its first segment and row.
        target_subset: Target rows kept for the nearest-target baseline (0: none, for wide rows).
        joins: :class:`TargetTable` s of other teachers (clip targets only): each record's row is
            its own followed by theirs; a record one of them lacks is left out and counted.
        progress: A progress bar over the shards.

    Returns:
        :class:`ShardScan`.

    Raises:
        ParameterError: not a targets folder, another teacher, format or mode (see
            :func:`trillsson_tf.train.targets.check_folder`); no shards; no readable training record.
    """
    from tqdm.auto import tqdm

    check_validation_fraction(validation_fraction)
    directory = str(directory)
    info = check_folder(directory, teacher=teacher, mode=mode)
    per_segment = info["mode"] == "local" if per_segment is None else bool(per_segment)
    joins = list(joins)
    if joins and per_segment:
        raise ParameterError("Several teachers' targets join on clip targets only, not per-segment ones.")
    missing = [0] * len(joins)
    shards = shard_paths(directory)
    if not shards:
        raise ParameterError(f"Targets folder {directory!r} holds no shards (targets-*.tfrecord).")
    wanted = None if keys is None else np.unique(key_fingerprints(keys))
    moments, totals = _Moments(target_subset, seed), _Totals()
    for shard in tqdm(shards, desc="scanning target shards", unit="shard", disable=not progress):
        try:
            # The first intact shard sets the width (a cache's odd shards were set aside by build_cache).
            part = _read_shard(
                shard,
                totals.width,
                totals.held_paths,
                max_validation - len(totals.held),
                teacher=teacher,
                mode=info["mode"],
                wanted=wanted,
                joins=joins,
                missing=missing,
                validation_fraction=validation_fraction,
                seed=seed,
                per_segment=per_segment,
                segment_samples=segment_samples,
            )
        except ShardError as error:  # cut short by a crash, damaged on disk, copied in: all of it out, never half
            skip_shard(error, totals.skipped, log=_log)
            continue
        totals.add(shard, part, moments)
    _check_pass(directory, shards, totals)
    return _scan(directory, info, totals, moments, joins, missing, per_segment, segment_samples)


def _check_pass(directory: str, shards: list, totals: "_Totals") -> None:
    """Warn about the shards left out; refuse a pass that found no readable training record."""
    skipped = totals.skipped
    if skipped:
        _log.warning("Left out %d unusable target shard(s) of %d in %s.", len(skipped), len(shards), directory)
    if not totals.fingerprints:
        raise ParameterError(
            f"Targets folder {directory!r} has no readable training record ({totals.intact} readable shard(s), "
            f"{len(skipped)} unusable, {len(totals.held_paths)} held-out file(s), {totals.other} record(s) of "
            "other files)."
        )


def _scan(directory, info, totals: "_Totals", moments: _Moments, joins, missing, per_segment, segment_samples):
    """The :class:`ShardScan` of a pass over a folder's shards."""
    mean = moments.total / moments.count
    std = np.sqrt(np.maximum(moments.squares / moments.count - np.square(mean), 0.0))
    dim = len(mean)
    held_audio, held_targets = [clip for clip, _ in totals.held], [target for _, target in totals.held]
    return ShardScan(
        directory=directory,
        info=info,
        mode=info["mode"],
        shards=totals.readable,
        skipped_shards=totals.skipped,
        train_fingerprints=np.concatenate(totals.fingerprints),
        train_files=len(totals.train_paths),
        validation_files=len(totals.held_paths),
        other_records=totals.other,
        target_mean=mean,
        target_std=std,
        target_rows=moments.count,
        target_subset=np.array(moments.subset),
        validation_audio=(np.stack(held_audio) if held_audio else np.zeros((0, segment_samples), np.int16)),
        validation_targets=(
            np.stack(held_targets).astype(np.float32) if held_targets else np.zeros((0, dim), np.float32)
        ),
        train_hours=totals.seconds / 3600.0,
        per_segment=per_segment,
        segment_samples=segment_samples,
        joins=joins,
        widths=(dim - sum(table.width for table in joins), *(table.width for table in joins)),
        missing=tuple(missing),
    )


@dataclasses.dataclass
class _Totals:
    """What :func:`scan_shards` has kept of the shards read so far."""

    readable: list = dataclasses.field(default_factory=list)  # shards that hold training records
    skipped: list = dataclasses.field(default_factory=list)  # (path, reason) of unusable shards
    fingerprints: list = dataclasses.field(default_factory=list)  # int64 arrays, one per readable shard
    train_paths: set = dataclasses.field(default_factory=set)
    held_paths: set = dataclasses.field(default_factory=set)
    held: list = dataclasses.field(default_factory=list)  # (int16 first segment, target row) of held-out files
    other: int = 0
    seconds: float = 0.0
    intact: int = 0
    width: int = None

    def add(self, shard, part: "_ShardPart", moments: _Moments) -> None:
        self.intact += 1
        self.width = self.width or part.width
        if part.prints:  # a shard of held-out files or of other files only is never read again
            self.readable.append(shard)
            self.fingerprints.append(np.array(part.prints, np.int64))
        for row in part.rows:
            moments.add(row)
        self.train_paths |= part.train_paths
        self.held_paths |= part.held_paths
        self.held += part.held
        self.other += part.other
        self.seconds += part.seconds


@dataclasses.dataclass
class _ShardPart:
    """What :func:`scan_shards` keeps of one shard."""

    rows: list = dataclasses.field(default_factory=list)  # training target rows
    prints: list = dataclasses.field(default_factory=list)  # training records' key fingerprints
    train_paths: set = dataclasses.field(default_factory=set)
    held: list = dataclasses.field(default_factory=list)  # (int16 first segment, target row) of held-out files
    held_paths: set = dataclasses.field(default_factory=set)
    seconds: float = 0.0  # of training audio
    other: int = 0  # records of files not asked for
    width: int = None  # this teacher's target width (before joins); None: no record


def _read_shard(shard, width, held_paths, room: int, *, teacher, mode, wanted, joins, missing, **split) -> _ShardPart:
    """One shard's records, split into training rows and held-out clips (``room``: held-out clips still kept).

    ``split``: ``validation_fraction``, ``seed``, ``per_segment``, ``segment_samples`` of :func:`scan_shards`.

    Raises:
        ShardError: an unusable shard (:func:`trillsson_tf.train.targets.shard_records`).
    """
    part = _ShardPart()
    records = [
        (feature, *_decode(feature)) for feature in shard_records(shard, teacher=teacher, mode=mode, width=width)
    ]
    prints = key_fingerprints([key for _, key, _, _ in records])
    asked = np.ones(len(records), bool) if wanted is None else _member(prints, wanted)
    part.width = records[0][3].shape[1] if records else None  # this teacher's, before the join
    records, asked = _join(records, prints, asked, joins, missing)
    for (feature, _, path, targets), fingerprint, use in zip(records, prints, asked):
        if not use:
            part.other += 1
        elif is_validation(path, split["validation_fraction"], seed=split["seed"]):
            if path not in held_paths and path not in part.held_paths:
                part.held_paths.add(path)
                if len(part.held) < room:
                    first = segments(record_audio(feature), segment_samples=split["segment_samples"])[0]
                    part.held.append((pcm16(first), targets[0]))
        else:
            part.prints.append(fingerprint)
            part.train_paths.add(path)
            part.rows.append(targets if split["per_segment"] else targets[:1])
            part.seconds += record_samples(feature) / 16000.0
    return part


def _join(records: list, prints: np.ndarray, asked: np.ndarray, joins: list, missing: list) -> tuple:
    """Each record's targets followed by the joined tables' rows; records a table lacks are no longer asked for."""
    if not joins:
        return records, asked
    asked, blocks = asked.copy(), [np.stack([targets[0] for *_, targets in records])] if records else []
    for index, table in enumerate(joins):
        found, rows = table.lookup(prints)
        missing[index] += int(np.sum(asked & ~found))
        asked &= found
        blocks.append(rows)
    if not records:
        return records, asked
    joined = np.concatenate(blocks, axis=1)
    return [(feature, key, path, joined[i : i + 1]) for i, (feature, key, path, _) in enumerate(records)], asked


def _crop(per_segment: bool, seed: int, crop_samples: int):
    """``(position, record) -> (int16 [crop_samples], float32 [D])``: one random crop and its target row."""
    from trillsson_tf._keras import tf
    from trillsson_tf.frontend.tf_ops import mirror_pad

    def crop(position, record):
        # The same crop of the same record for the same seed and stream position: a resumed run repeats nothing.
        draw = tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed, tf.int64), position]))
        audio = mirror_pad(record["audio"][tf.newaxis], crop_samples)[0]
        length = tf.shape(audio, out_type=tf.int64)[0]
        if per_segment:
            count = tf.minimum(length // crop_samples, tf.shape(record["targets"], out_type=tf.int64)[0])
            choice = tf.minimum(tf.cast(draw * tf.cast(count, tf.float32), tf.int64), count - 1)
            start, row = choice * crop_samples, choice
        else:
            span = length - crop_samples + 1
            start, row = tf.minimum(tf.cast(draw * tf.cast(span, tf.float32), tf.int64), span - 1), 0
        return audio[start : start + crop_samples], record["targets"][row]

    return crop


def _joiner(tf, tables: list):
    """``record -> record`` whose targets row is followed by each table's row for its key (the scan kept only keys all have)."""
    lookups = []
    for table in tables:
        keys = tf.constant(table.fingerprints, tf.int64)
        index = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(len(table.fingerprints), dtype=tf.int64)), 0
        )
        lookups.append((index, tf.constant(table.targets)))

    def join(record):
        fingerprint = _fingerprint(tf, record["key"])
        rows = [tf.gather(targets, index.lookup(fingerprint))[tf.newaxis] for index, targets in lookups]
        return {**record, "targets": tf.concat([record["targets"][:1], *rows], axis=1)}

    return join


def reader_shards(scan: ShardScan, pipelines: tuple = (1, 0)) -> list:
    """The shards input pipeline ``index`` of ``count`` reads: every ``count``-th one, or all when fewer than ``count``."""
    count, index = pipelines
    return scan.shards[index::count] if len(scan.shards) >= count else list(scan.shards)


def _shuffle_buffer(shuffle_buffer, train_records: int) -> int:
    """Crops in the shuffle buffer: ``shuffle_buffer`` (``None``: :data:`SHUFFLE_BUFFER`), at most the training records."""
    if shuffle_buffer is None:
        return min(SHUFFLE_BUFFER, train_records)
    if shuffle_buffer > train_records:
        _log.warning(
            "shuffle_buffer=%d is larger than the %d training records; using %d.",
            shuffle_buffer,
            train_records,
            train_records,
        )
        return train_records
    return shuffle_buffer


def _training_records(tf, scan: ShardScan, shards: list, seed: int):
    """The endless stream of parsed training records of ``shards``: interleaved, reshuffled each pass, joined."""
    keys = tf.constant(scan.train_fingerprints, tf.int64)
    training = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, tf.ones_like(keys, tf.int32)), 0)
    autotune = tf.data.AUTOTUNE
    files = tf.data.Dataset.from_tensor_slices(shards)
    files = files.shuffle(len(shards), seed=seed, reshuffle_each_iteration=True).repeat()
    records = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(_CYCLE_LENGTH, len(shards)),
        num_parallel_calls=autotune,
        deterministic=True,
    )
    records = records.map(parse_record, num_parallel_calls=autotune, deterministic=True)
    records = records.filter(lambda record: training.lookup(_fingerprint(tf, record["key"])) > 0)
    if scan.joins:
        records = records.map(_joiner(tf, scan.joins), num_parallel_calls=autotune, deterministic=True)
    return records


def training_dataset(
    scan: ShardScan,
    *,
    batch_size: int,
    seed: int = 0,
    shuffle_buffer=None,
    crop_samples=None,
    pipelines: tuple = (1, 0),
):
    """The endless stream of training batches of a scanned targets folder.

    Args:
        scan: :func:`scan_shards` of the folder.
        batch_size: Crops per batch (the global batch; a distribution strategy splits it).
        seed: Seeds the shard order, the crops and the shuffle.
        shuffle_buffer: Crops in the shuffle buffer (``None``: :data:`SHUFFLE_BUFFER`); more than
            the training records is clipped to them (with a warning when asked for).
        crop_samples: Crop length in samples; ``None``: the scan's ``segment_samples`` (2 s, one
            195-frame patch, unless the scan says otherwise). With per-segment targets a crop is
            one whole segment.
        pipelines: ``(count, index)`` of this process among the processes reading data
            (:func:`trillsson_tf.train.distribute.input_pipelines`): with at least ``count`` shards it
            reads its own (:func:`reader_shards`), otherwise it reads all and keeps every
            ``count``-th record. ``batch_size`` is then this process's share.

    Returns:
        ``tf.data.Dataset`` of ``(audio float32 [batch, crop_samples], targets float32 [batch, D])``.

    Raises:
        ParameterError: a batch size or shuffle buffer that is not a positive integer.
    """
    from trillsson_tf._keras import tf

    for name, value in (("batch_size", batch_size), ("shuffle_buffer", shuffle_buffer)):
        optional(positive_int)(name, value)
    shuffle_buffer = _shuffle_buffer(shuffle_buffer, scan.train_records)
    autotune = tf.data.AUTOTUNE
    count, index = pipelines
    shards = reader_shards(scan, pipelines)
    records = _training_records(tf, scan, shards, seed)
    if count > 1 and len(shards) == len(scan.shards):
        _log.warning(
            "%d shard(s) for %d readers: each reads all of them and keeps every %d-th record.",
            len(scan.shards),
            count,
            count,
        )
        records = records.shard(count, index)
    crop_samples = scan.segment_samples if crop_samples is None else crop_samples
    crops = records.enumerate().map(
        _crop(scan.per_segment, seed, crop_samples), num_parallel_calls=autotune, deterministic=True
    )
    batches = crops.shuffle(shuffle_buffer, seed=seed).batch(batch_size, drop_remainder=True)
    batches = batches.map(
        lambda audio, targets: (tf.cast(audio, tf.float32) / PCM16_SCALE, targets),
        num_parallel_calls=autotune,
        deterministic=True,
    ).prefetch(autotune)
    options = tf.data.Options()
    options.deterministic = True  # the same stream for the same seed, which a restored iterator continues
    return batches.with_options(options)
