"""The teacher-target cache: teacher outputs computed once per (file, teacher, mode), kept on disk.

Spec section 5: targets are precomputed once and the teacher never runs in the training loop.
Two modes (:data:`TARGET_MODES`):

- ``global``: the teacher runs once on the whole clip; the target is that clip vector
  ``[1, D]`` and every training crop of the clip regresses to it.
- ``local``: the teacher runs on each 2 s segment alone (:func:`trillsson_tf.data.segments`,
  one 195-frame patch each); targets ``[segments, D]``, a crop is one of those segments.

Layout: ``<cache_dir>/<hash of teacher identity and mode>/`` holds ``teacher.json`` and
shards ``targets-00000.npz`` ... (file key -> float32 array). A shard is written (atomically)
every ``shard_size`` new files, so an interrupted run keeps what it finished and the next run
computes only the rest. A file's key hashes its absolute path, size and modification time:
an edited file is recomputed.
"""
import dataclasses
import glob
import hashlib
import json
import logging
import os

import numpy as np

from trillsson_tf.data import segments
from trillsson_tf.errors import ParameterError

__all__ = ["TARGET_MODES", "DEFAULT_CACHE_DIR", "TargetSet", "check_mode", "file_key", "teacher_targets", "cached_targets"]

_log = logging.getLogger(__name__)

TARGET_MODES = ("global", "local")
DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "trillsson_tf", "targets")
"""Where targets go when no ``cache_dir`` is given (``$TRILLSSON_CACHE_DIR`` overrides it)."""


@dataclasses.dataclass
class TargetSet:
    """Targets aligned with a :class:`trillsson_tf.data.LoadedAudio`.

    Attributes:
        targets: float32 arrays ``[1, D]`` (global) or ``[segments, D]`` (local), one per clip.
        mode: ``global`` or ``local``.
        computed: Files whose targets this call computed.
        reused: Files whose targets came from the cache.
        directory: The cache folder used.
    """

    targets: list
    mode: str
    computed: int
    reused: int
    directory: str


def check_mode(mode: str) -> str:
    """Return ``mode`` or raise a :class:`ParameterError` listing :data:`TARGET_MODES`."""
    if mode not in TARGET_MODES:
        raise ParameterError(f"Unknown target mode {mode!r}. Expected one of: {list(TARGET_MODES)}.")
    return mode


def file_key(path) -> str:
    """Cache key of an audio file: hash of its absolute path, size and modification time."""
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


def _cache_folder(cache_dir: str, teacher, mode: str) -> str:
    name = hashlib.sha1(f"{teacher.identity}|{mode}".encode()).hexdigest()[:16]
    return os.path.join(cache_dir, name)


def _read_shards(folder: str) -> dict:
    stored = {}
    for shard in sorted(glob.glob(os.path.join(folder, "targets-*.npz"))):
        with np.load(shard) as arrays:
            stored.update({key: arrays[key] for key in arrays.files})
    return stored


def _write_shard(folder: str, entries: dict) -> None:
    index = len(glob.glob(os.path.join(folder, "targets-*.npz")))
    final = os.path.join(folder, f"targets-{index:05d}.npz")
    partial = final + ".partial.npz"
    np.savez(partial, **entries)
    os.replace(partial, final)


def cached_targets(
    teacher,
    audio,
    *,
    mode: str = "global",
    cache_dir=None,
    shard_size: int = 64,
    progress: bool = False,
) -> TargetSet:
    """Targets for every clip of ``audio``, computing only those not cached yet.

    Args:
        teacher: A :class:`trillsson_tf.teachers.Teacher`.
        audio: :class:`trillsson_tf.data.LoadedAudio` (items give the file keys).
        mode: ``global`` or ``local``.
        cache_dir: Cache root; default ``$TRILLSSON_CACHE_DIR`` or :data:`DEFAULT_CACHE_DIR`.
        shard_size: New files per shard written to disk (what an interrupt can lose).
        progress: Show a progress bar over the files still to compute.

    Returns:
        :class:`TargetSet` aligned with ``audio.clips``.
    """
    from tqdm.auto import tqdm

    check_mode(mode)
    if shard_size < 1:
        raise ParameterError(f"shard_size must be a positive number of files, got {shard_size!r}.")
    cache_dir = os.fspath(cache_dir or os.environ.get("TRILLSSON_CACHE_DIR") or DEFAULT_CACHE_DIR)
    folder = _cache_folder(cache_dir, teacher, mode)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "teacher.json"), "w") as handle:
        json.dump({"teacher": teacher.describe(), "mode": mode}, handle, indent=2)

    keys = [file_key(item.path) for item in audio.items]
    stored = _read_shards(folder)
    missing = [index for index, key in enumerate(keys) if key not in stored]
    padded_before = teacher.padded_clips
    pending = {}
    for index in tqdm(missing, desc=f"teacher targets ({mode})", unit="file", disable=not progress):
        pending[keys[index]] = teacher_targets(teacher, audio.clips[index], mode=mode)
        if len(pending) >= shard_size:
            _write_shard(folder, pending)
            stored.update(pending)
            pending = {}
    if pending:
        _write_shard(folder, pending)
        stored.update(pending)
    padded = teacher.padded_clips - padded_before
    if padded:
        _log.warning(
            "%d clip(s) were shorter than the teacher's window of %d samples and were zero-padded.",
            padded,
            teacher.min_samples,
        )
    _log.info("Targets in %s: %d computed, %d reused.", folder, len(missing), len(keys) - len(missing))
    return TargetSet([stored[key] for key in keys], mode, len(missing), len(keys) - len(missing), folder)
