"""Audio data for distillation and evaluation: finding files, labels, loading, splits and crops.

A data source is a folder (searched recursively), a CSV manifest, or a list of paths.
Manifest rows are ``path[,label][,speaker]`` without a header, or any columns under a header
row whose first column is ``path``; relative paths are relative to the manifest's folder.
Labels of the bundled corpora come from the file names (:func:`labels_from_name`), so
FSDD, LibriSpeech and Arabic Speech Commands need no manifest.

Imports numpy and the audio helpers only (no TensorFlow).
"""

import csv
import dataclasses
import hashlib
import logging
import os
import re

import numpy as np

from trillsson_tf.audio import AUDIO_EXTENSIONS, load_audio
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND
from trillsson_tf.frontend.numpy_ops import mirror_pad

__all__ = [
    "ARABIC_COMMANDS_SPLIT",
    "CROP_SAMPLES",
    "LIBRISPEECH_SEX",
    "AudioIndex",
    "AudioItem",
    "LoadedAudio",
    "check_validation_fraction",
    "find_audio",
    "index_clips",
    "is_validation",
    "labels_from_name",
    "load_clips",
    "random_crop",
    "read_crop",
    "read_manifest",
    "segments",
    "source_paths",
    "split_items",
]

_log = logging.getLogger(__name__)

CROP_SAMPLES = DEFAULT_FRONTEND.min_samples
"""Length of a training crop and of a local-mode segment: 2 s at 16 kHz, one 195-frame patch."""

LIBRISPEECH_SEX = {
    **{speaker: "F" for speaker in ("1998", "3080", "3331", "367", "533")},
    **{speaker: "M" for speaker in ("1688", "2033", "2414", "2609", "3005")},
}
"""Speaker sex of the LibriSpeech test-other speakers in ``../shared/data`` and the bundled samples."""

ARABIC_COMMANDS_SPLIT = {
    **{f"{speaker:08d}": "train" for speaker in (1, 5, 6, 9, 11, 13, 15, 16, 17, 18, 19, 20, 22, 23, 24, 27, 29, 30)},
    **{f"{speaker:08d}": "val" for speaker in (2, 7, 8, 12, 21, 25)},
    **{f"{speaker:08d}": "test" for speaker in (3, 4, 10, 14, 26, 28)},
}
"""Arabic Speech Commands (Ghandoura et al. 2021): its own speaker-disjoint split of the 30 speakers."""

_FSDD_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[a-z]+)_(?P<take>\d+)\.(?:wav|flac)$")
_LIBRISPEECH_NAME = re.compile(r"^(?P<speaker>\d+)-(?P<chapter>\d+)-(?P<utterance>\d+)\.flac$")
_ARABIC_COMMANDS_NAME = re.compile(r"^(?P<speaker>\d{8})_NO_(?P<round>\d+)\.(?:wav|flac)$")
_FSDD_TEST_TAKES = 5  # the official FSDD split: takes 0-4 are the test set


@dataclasses.dataclass(frozen=True)
class AudioItem:
    """One audio file and its labels (column name -> string value)."""

    path: str
    labels: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LoadedAudio:
    """Audio read into memory.

    Attributes:
        items: The files that loaded, in order.
        clips: float32 ``[samples]`` arrays at 16 kHz, mono, one per item.
        skipped: ``(path, reason)`` of each file that could not be read.
    """

    items: list
    clips: list
    skipped: list


@dataclasses.dataclass
class AudioIndex:
    """Audio files known by their length, none held in memory (:func:`read_crop` reads a window).

    Attributes:
        items: The files that can be read, in order.
        lengths: int64 ``[n]``: each file's length in samples at 16 kHz.
        direct: bool ``[n]``: the file is at 16 kHz in a format soundfile reads by window (the
            others are decoded whole, one at a time, when a crop is asked of them).
        skipped: ``(path, reason)`` of each file that could not be read.
    """

    items: list
    lengths: np.ndarray
    direct: np.ndarray
    skipped: list


def labels_from_name(path) -> dict:
    """Labels encoded in the file names of the bundled corpora.

    FSDD ``{digit}_{speaker}_{take}.wav`` (or ``.flac``) -> ``digit``, ``speaker``, ``take`` and ``split``
    (``test`` for takes 0-4, else ``train``). LibriSpeech ``{speaker}-{chapter}-{utt}.flac``
    -> ``speaker``, ``chapter`` and ``sex`` (when the speaker is one of :data:`LIBRISPEECH_SEX`).
    Arabic Speech Commands ``{keyword}/{speaker}_NO_{round}.flac`` -> ``keyword`` (the folder's
    name), ``speaker``, ``round`` and ``split`` (:data:`ARABIC_COMMANDS_SPLIT`, when the speaker is
    one of its 30). Other names give ``{}``.
    """
    name = os.path.basename(os.fspath(path))
    match = _FSDD_NAME.match(name)
    if match:
        take = int(match["take"])
        return {
            "digit": match["digit"],
            "speaker": match["speaker"],
            "take": str(take),
            "split": "test" if take < _FSDD_TEST_TAKES else "train",
        }
    match = _LIBRISPEECH_NAME.match(name)
    if match:
        labels = {"speaker": match["speaker"], "chapter": match["chapter"]}
        if match["speaker"] in LIBRISPEECH_SEX:
            labels["sex"] = LIBRISPEECH_SEX[match["speaker"]]
        return labels
    match = _ARABIC_COMMANDS_NAME.match(name)
    if match:
        keyword = os.path.basename(os.path.dirname(os.fspath(path)))
        labels = {"keyword": keyword, "speaker": match["speaker"], "round": match["round"]} if keyword else {}
        if labels and match["speaker"] in ARABIC_COMMANDS_SPLIT:
            labels["split"] = ARABIC_COMMANDS_SPLIT[match["speaker"]]
        return labels
    return {}


def read_manifest(path) -> list:
    """Read a CSV manifest into :class:`AudioItem` s (labels from the name are merged in).

    Args:
        path: CSV file: ``path[,label][,speaker]`` rows, or a header row starting with ``path``.

    Returns:
        list of :class:`AudioItem`, in file order.

    Raises:
        ParameterError: missing file, a file that is not UTF-8 text, or a manifest with no rows.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ParameterError(f"Manifest not found: {path!r}.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except UnicodeDecodeError as error:
        raise ParameterError(
            f"Manifest {path!r} is not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8 CSV."
        ) from None
    if rows and rows[0][0].strip().lower() == "path":
        columns, rows = [cell.strip() for cell in rows[0]], rows[1:]
    else:
        columns = ["path", "label", "speaker"]
    if not rows:
        raise ParameterError(f"Manifest {path!r} lists no audio files.")
    folder = os.path.dirname(os.path.abspath(path))
    items = []
    for row in rows:
        values = dict(zip(columns, (cell.strip() for cell in row)))
        file = os.path.join(folder, values.pop("path"))
        items.append(AudioItem(file, {**labels_from_name(file), **{k: v for k, v in values.items() if v}}))
    return items


def find_audio(source, *, labels=None) -> list:
    """List the audio of a data source with its labels.

    Args:
        source: A folder (searched recursively for :data:`AUDIO_EXTENSIONS`), a CSV manifest,
            or a list of file paths / :class:`AudioItem` s.
        labels: Optional CSV manifest whose columns are merged into the items' labels,
            matched by absolute path, else by file name.

    Returns:
        list of :class:`AudioItem`, sorted by path for folders.

    Raises:
        ParameterError: a source that does not exist or holds no audio.
    """
    if isinstance(source, (list, tuple)):
        items = [
            item if isinstance(item, AudioItem) else AudioItem(os.fspath(item), labels_from_name(item))
            for item in source
        ]
    else:
        source = os.fspath(source)
        if os.path.isdir(source):
            items = [
                AudioItem(path, labels_from_name(path))
                for path in sorted(
                    os.path.join(root, name)
                    for root, _, names in os.walk(source)
                    for name in names
                    if name.lower().endswith(AUDIO_EXTENSIONS)
                )
            ]
        elif source.lower().endswith(".csv"):
            items = read_manifest(source)
        else:
            raise ParameterError(f"Data source {source!r} is neither a folder nor a .csv manifest.")
    if not items:
        raise ParameterError(f"No audio found in {source!r} (looked for {', '.join(AUDIO_EXTENSIONS)}).")
    if labels is not None:
        extra = read_manifest(labels)
        by_path = {os.path.abspath(item.path): item.labels for item in extra}
        by_name = {os.path.basename(item.path): item.labels for item in extra}
        items = [
            AudioItem(
                item.path,
                {
                    **item.labels,
                    **by_path.get(os.path.abspath(item.path), by_name.get(os.path.basename(item.path), {})),
                },
            )
            for item in items
        ]
    return items


def source_paths(source) -> list:
    """The paths a data source (as for :func:`find_audio`) names, for :func:`trillsson_tf.folders.refuse_inputs`.

    A folder is itself; a CSV manifest is the manifest and the files it lists (they may lie
    anywhere); a list is its files. ``None`` and arrays name nothing (nor do arrays in a list).
    """
    if isinstance(source, (list, tuple)):
        return [item.path if isinstance(item, AudioItem) else item for item in source]
    if not isinstance(source, (str, os.PathLike)):
        return []
    source = os.fspath(source)
    if source.lower().endswith(".csv") and os.path.isfile(source):
        return [source, *(item.path for item in read_manifest(source))]
    return [source]


def split_items(items, *, validation_fraction: float = 0.1, seed: int = 0):
    """Deterministic train/validation split by a hash of each file name.

    The same file always lands on the same side for a given ``seed``, whatever else is in
    the list, so adding files never moves old ones.

    Args:
        items: :class:`AudioItem` s.
        validation_fraction: Share of files for validation, in [0, 1).
        seed: Changes the split.

    Returns:
        ``(train_items, validation_items)``.
    """
    check_validation_fraction(validation_fraction)
    train, validation = [], []
    for item in items:
        (validation if is_validation(item.path, validation_fraction, seed=seed) else train).append(item)
    return train, validation


def check_validation_fraction(validation_fraction) -> float:
    """Return ``validation_fraction`` or raise a :class:`ParameterError` unless it is in [0, 1)."""
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, (int, float))
        or not 0.0 <= validation_fraction < 1.0
    ):
        raise ParameterError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}.")
    return float(validation_fraction)


def is_validation(path, validation_fraction: float, *, seed: int = 0) -> bool:
    """Whether the file ``path`` is held out: a hash of its name and ``seed`` below ``validation_fraction``.

    The split of :func:`split_items`, for one file: it depends on nothing else, so a streamed
    corpus is split the same way without listing it.
    """
    digest = hashlib.md5(f"{seed}:{os.path.basename(os.fspath(path))}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < validation_fraction


def load_clips(items, *, progress: bool = False) -> LoadedAudio:
    """Read files as mono float32 at 16 kHz; unreadable ones are logged by name and skipped.

    Args:
        items: :class:`AudioItem` s.
        progress: Show a progress bar.

    Returns:
        :class:`LoadedAudio`.

    Raises:
        ParameterError: no file could be read.
    """
    from tqdm.auto import tqdm

    loaded = LoadedAudio([], [], [])
    for item in tqdm(items, desc="loading audio", unit="file", disable=not progress):
        try:
            clip = load_audio(item.path)
        except ParameterError as error:
            _log.warning("Skipping %s: %s", item.path, error)
            loaded.skipped.append((item.path, str(error)))
            continue
        loaded.items.append(item)
        loaded.clips.append(clip)
    if loaded.skipped:
        _log.warning("Skipped %d unreadable file(s) of %d.", len(loaded.skipped), len(items))
    if not loaded.clips:
        raise ParameterError(
            f"None of the {len(items)} audio file(s) could be read; first error: {loaded.skipped[0][1]}"
        )
    return loaded


def index_clips(items, *, progress: bool = False) -> AudioIndex:
    """Lengths of the files from their headers (files at other rates or formats: decoded once, dropped).

    Args:
        items: :class:`AudioItem` s.
        progress: Show a progress bar.

    Returns:
        :class:`AudioIndex`; unreadable files are logged by name and skipped, as by :func:`load_clips`.

    Raises:
        ParameterError: no file could be read.
    """
    import soundfile
    from tqdm.auto import tqdm

    kept, lengths, direct, skipped = [], [], [], []
    rate = DEFAULT_FRONTEND.sample_rate_hz
    for item in tqdm(items, desc="indexing audio", unit="file", disable=not progress):
        try:
            info = soundfile.info(item.path)
            header = info.frames if info.samplerate == rate and info.frames > 0 else None
        except (soundfile.LibsndfileError, RuntimeError):
            header = None
        try:
            length = header if header is not None else len(load_audio(item.path))
        except ParameterError as error:
            _log.warning("Skipping %s: %s", item.path, error)
            skipped.append((item.path, str(error)))
            continue
        kept.append(item)
        lengths.append(length)
        direct.append(header is not None)
    if skipped:
        _log.warning("Skipped %d unreadable file(s) of %d.", len(skipped), len(items))
    if not kept:
        raise ParameterError(f"None of the {len(items)} audio file(s) could be read; first error: {skipped[0][1]}")
    return AudioIndex(kept, np.asarray(lengths, np.int64), np.asarray(direct, bool), skipped)


def read_crop(
    index: AudioIndex, position: int, rng: np.random.Generator, *, crop_samples: int = CROP_SAMPLES
) -> np.ndarray:
    """The window :func:`random_crop` cuts from file ``position`` with the same draw of ``rng``, read alone.

    Args:
        index: :class:`AudioIndex` of the files.
        position: Index of the file in ``index.items``.
        rng: numpy random generator (one draw: the window's start).
        crop_samples: Crop length in samples (2 s by default).

    Returns:
        float32 ``[crop_samples]``, equal to ``random_crop(load_audio(path), rng, crop_samples=...)``.

    Raises:
        ParameterError: the file no longer holds the samples its header promised, or holds NaN/Inf.
    """
    import soundfile

    path, length = index.items[position].path, int(index.lengths[position])
    start = int(rng.integers(0, max(length, crop_samples) - crop_samples + 1))
    if length < crop_samples or not index.direct[position]:  # mirror padding needs the whole clip
        clip = mirror_pad(load_audio(path)[np.newaxis], crop_samples)[0]
        return clip[start : start + crop_samples]
    try:
        samples, _ = soundfile.read(path, start=start, frames=crop_samples, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise ParameterError(f"Cannot read {path!r} as audio: {error}") from None
    if len(samples) != crop_samples:
        raise ParameterError(
            f"{path!r} holds {start + len(samples)} samples, fewer than its header's {length}; "
            "was it changed during the run?"
        )
    if not np.all(np.isfinite(samples)):  # as load_audio refuses them
        raise ParameterError(f"Audio file {path!r} holds NaN or Inf samples.")
    return samples.mean(axis=1)


def segments(clip: np.ndarray, *, segment_samples: int = CROP_SAMPLES) -> np.ndarray:
    """Cut a clip into the consecutive segments whose targets local mode stores.

    A clip shorter than one segment is mirror-padded to it (as the student frontend pads);
    the tail shorter than a segment is dropped otherwise.

    Args:
        clip: float32 ``[samples]`` at 16 kHz.
        segment_samples: Segment length in samples (2 s: one 195-frame patch).

    Returns:
        float32 ``[segments, segment_samples]``, at least one segment.
    """
    clip = mirror_pad(clip[np.newaxis], segment_samples)[0]
    count = len(clip) // segment_samples
    return clip[: count * segment_samples].reshape(count, segment_samples).astype(np.float32, copy=False)


def random_crop(clip: np.ndarray, rng: np.random.Generator, *, crop_samples: int = CROP_SAMPLES) -> np.ndarray:
    """A random crop of ``crop_samples`` samples of a clip (mirror-padded first when shorter).

    Args:
        clip: float32 ``[samples]`` at 16 kHz.
        rng: numpy random generator.
        crop_samples: Crop length in samples (2 s by default).

    Returns:
        float32 ``[crop_samples]``.
    """
    clip = mirror_pad(clip[np.newaxis], crop_samples)[0]
    start = int(rng.integers(0, len(clip) - crop_samples + 1))
    return clip[start : start + crop_samples]
