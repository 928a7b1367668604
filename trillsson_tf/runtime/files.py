"""Audio files and folders in, embedding files out: :func:`embed_to_file` and the helpers of ``trillsson-tf embed``."""

import csv
import io
import logging
import os

import numpy as np

from trillsson_tf.audio import AUDIO_EXTENSIONS, load_audio
from trillsson_tf.contract import EMBEDDING_KEY, START_S_KEY
from trillsson_tf.errors import ParameterError, renamed_keywords
from trillsson_tf.folders import refuse_inputs, write_atomic
from trillsson_tf.frontend import DEFAULT_HOP_S
from trillsson_tf.runtime.inputs import progress_bar
from trillsson_tf.runtime.model import TFLiteModel

__all__ = ["OUTPUT_FORMATS", "audio_files", "embed_to_file"]

_log = logging.getLogger(__package__)  # "trillsson_tf.runtime", the name the log lines have always had

OUTPUT_FORMATS = (".npy", ".csv")
"""File endings :func:`embed_to_file` writes."""


def audio_files(inputs) -> list:
    """Expand files and folders into a list of audio files.

    Args:
        inputs: Paths; a folder contributes every file under it (recursively, sorted) whose
            name ends with one of :data:`AUDIO_EXTENSIONS`; files are kept as given.

    Returns:
        List of file paths, in input order.

    Raises:
        ParameterError: a path does not exist, a folder holds no audio, or nothing was given.
    """
    files = []
    for path in map(os.fspath, inputs):
        if os.path.isdir(path):
            found = sorted(
                os.path.join(root, name)
                for root, _, names in os.walk(path)
                for name in names
                if name.lower().endswith(AUDIO_EXTENSIONS)
            )
            if not found:
                raise ParameterError(f"Folder {path!r} holds no audio files (looked for {list(AUDIO_EXTENSIONS)}).")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ParameterError(f"Input {path!r} is neither an audio file nor a folder.")
    if not files:
        raise ParameterError("No input files given.")
    return files


def embed_to_file(
    model,
    inputs,
    out_path,
    *,
    num_threads=None,
    progress: bool = False,
    overwrite: bool = False,
    chunk_vectors: bool = False,
    hop_s=None,
    **renamed,
) -> dict:
    """Embed audio files and folders with a ``.tflite`` model and write the vectors.

    One vector per file: ``.npy`` holds float32 ``[n, D]`` and a ``<out>.files.txt`` beside it
    names the file of each row; ``.csv`` has a header ``path,e0,...`` and one row per file.
    With ``chunk_vectors``, one vector per chunk (:meth:`TFLiteModel.chunk_vectors`): ``.npy`` holds
    float32 ``[chunks of all files, D]`` and a ``<out>.windows.csv`` beside it (the name files have
    always had) the ``file,start_s,end_s`` of each row; ``.csv`` has rows ``file,start_s,end_s,v0,...``.

    Args:
        model: ``.tflite`` path (or a :class:`TFLiteModel`).
        inputs: Audio files and folders (see :func:`audio_files`).
        out_path: Output file ending with one of :data:`OUTPUT_FORMATS`.
        num_threads: Interpreter threads (``None``: the interpreter's default).
        progress: Show a progress bar (tqdm, when installed).
        overwrite: Replace an existing output file or sidecar (``<out>.files.txt``,
            ``<out>.windows.csv``); refused otherwise, before any audio is read.
        chunk_vectors: Write one vector per chunk instead of one per file (``frames``: its old name).
        hop_s: Seconds between chunk starts with ``chunk_vectors`` (default 0.5).

    Returns:
        ``{'out': str, 'files': int, 'embedding_dim': int, 'skipped': [(path, error)]}`` (and
        ``'chunks': int`` with ``chunk_vectors``; ``'windows'``, its old name, too); files that cannot
        be read (not audio, NaN/Inf samples) are logged by name, left out of the output and listed in
        ``skipped``.

    Raises:
        ParameterError: unknown output format, existing output or sidecar, an output that is an
            input (even with ``overwrite``), an output folder that cannot be written (checked
            before any audio is read), no readable file, bad inputs or model, a hop
            without ``chunk_vectors``, a bad hop, a model that gives no chunk vectors (the message names
            the fix).
    """
    old = renamed_keywords("trillsson_tf.runtime.embed_to_file", renamed, {"frames": "chunk_vectors"})
    chunk_vectors = old.get("chunk_vectors", chunk_vectors)
    out_path = os.fspath(out_path)
    extension = os.path.splitext(out_path)[1].lower()
    if extension not in OUTPUT_FORMATS:
        raise ParameterError(
            f"Unknown output format {extension!r} for {out_path!r}. Expected one of: {list(OUTPUT_FORMATS)}."
        )
    if hop_s is not None and not chunk_vectors:
        raise ParameterError(
            "A hop applies to chunk vectors only: pass chunk_vectors=True (CLI --chunk-vectors) with it."
        )
    files = audio_files(inputs)
    _check_outputs(
        _output_files(out_path, chunk_vectors),
        overwrite=overwrite,
        inputs=[("model", getattr(model, "path", model)), ("audio file", files)],
    )
    _check_writable(out_path)
    if not isinstance(model, TFLiteModel):
        model = TFLiteModel(model, num_threads=num_threads)
    if chunk_vectors:
        return _chunk_vectors_to_file(model, files, out_path, extension, DEFAULT_HOP_S if hop_s is None else hop_s)
    files, vectors, skipped = _embed_readable(model, files, progress=progress)
    if extension == ".npy":
        write_atomic(out_path, _npy_bytes(vectors))
        write_atomic(_output_files(out_path, chunk_vectors=False)[-1], "".join(f"{path}\n" for path in files))
    else:
        header = ["path", *(f"e{i}" for i in range(vectors.shape[1]))]
        write_atomic(
            out_path,
            _csv_text(
                [header, *([path, *(f"{value:.8g}" for value in vector)] for path, vector in zip(files, vectors))]
            ),
        )
    _log.info("Wrote %d embeddings (%d-d) to %s", len(files), vectors.shape[1], out_path)
    return {"out": out_path, "files": len(files), "embedding_dim": int(vectors.shape[1]), "skipped": skipped}


def _npy_bytes(vectors: np.ndarray) -> bytes:
    """``vectors`` as the bytes of a ``.npy`` file (written whole by ``write_atomic``: a full disk leaves no 0-byte file)."""
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    return buffer.getvalue()


def _csv_text(rows) -> str:
    """``rows`` as CSV text."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def _embed_readable(model: TFLiteModel, files: list, *, progress: bool = False):
    """``(files, vectors [n, D], skipped)``: the files that read, their vectors, and ``(path, error)`` of the others."""
    kept, vectors, skipped = [], [], []
    for path in progress_bar(files, progress):
        try:
            vectors.append(model.file_vector(path))
        except ParameterError as error:  # one bad file must not stop a batch job: named, counted, left out
            _log.warning("Skipping %s: %s", path, error)
            skipped.append((path, str(error)))
            continue
        kept.append(path)
    _refuse_none_read(files, skipped)
    return kept, np.stack(vectors), skipped


def _refuse_none_read(files: list, skipped: list) -> None:
    """Log how many files were left out; raise when that is all of them."""
    if skipped:
        _log.warning("Skipped %d unreadable file(s) of %d.", len(skipped), len(files))
    if len(skipped) == len(files):
        raise ParameterError(f"None of the {len(files)} audio file(s) could be read; first error: {skipped[0][1]}")


def _check_writable(out_path: str) -> None:
    """Make the output's folder and try a file in it, so an unwritable place fails before the work, not after.

    Raises:
        ParameterError: the folder cannot be made or written (read-only, a file in the way, no permission).
    """
    import tempfile

    folder = os.path.dirname(os.path.abspath(out_path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ParameterError(f"Cannot write the output {out_path!r}: {existing!r} is a file, not a folder.")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ParameterError(
            f"Cannot write the output {out_path!r}: {error.strerror or error} ({error.filename or folder!r})."
        ) from None


def _output_files(out_path: str, chunk_vectors: bool) -> list:
    """The files :func:`embed_to_file` writes: the output, and beside a ``.npy`` its rows' names (a sidecar)."""
    if not out_path.lower().endswith(".npy"):
        return [out_path]
    return [out_path, os.path.splitext(out_path)[0] + (".windows.csv" if chunk_vectors else ".files.txt")]


def _check_outputs(paths: list, *, overwrite: bool, inputs: list) -> None:
    """Refuse, before any work, an output that is an input, or one that exists without ``overwrite``."""
    for path in paths:
        refuse_inputs(path, inputs, what="Output", folder=False)
        if os.path.exists(path) and not overwrite:
            raise ParameterError(f"Output {path!r} exists; pass overwrite=True (--force) to replace it.")


def _chunk_vectors_to_file(model: TFLiteModel, files: list, out_path: str, extension: str, hop_s) -> dict:
    """The ``chunk_vectors`` branch of :func:`embed_to_file`: every file's chunks, one row each."""
    model.chunk_grid(hop_s)  # a bad hop or a file without chunk vectors fails before any audio is read
    rows, vectors, skipped = [], [], []
    for path in files:
        try:
            result = model.chunk_vectors(load_audio(path, sample_rate_hz=model.sample_rate_hz), hop_s=hop_s)
        except ParameterError as error:  # as in one-vector mode: named, counted, left out
            _log.warning("Skipping %s: %s", path, error)
            skipped.append((path, str(error)))
            continue
        rows += [(path, float(start), float(start) + model.chunk_s) for start in result[START_S_KEY]]
        vectors.append(result[EMBEDDING_KEY][0])
    _refuse_none_read(files, skipped)
    vectors = np.concatenate(vectors)
    header = ["file", "start_s", "end_s"]
    times = [[path, f"{start:.3f}", f"{end:.3f}"] for path, start, end in rows]
    if extension == ".npy":
        write_atomic(out_path, _npy_bytes(vectors))
        write_atomic(_output_files(out_path, chunk_vectors=True)[-1], _csv_text([header, *times]))
    else:
        columns = [*header, *(f"v{i}" for i in range(vectors.shape[1]))]
        write_atomic(
            out_path,
            _csv_text(
                [columns, *([*row, *(f"{value:.8g}" for value in vector)] for row, vector in zip(times, vectors))]
            ),
        )
    read = len(files) - len(skipped)
    _log.info(
        "Wrote %d chunk vectors of %d files (%d-d, hop %g s) to %s", len(rows), read, vectors.shape[1], hop_s, out_path
    )
    return {
        "out": out_path,
        "files": read,
        "chunks": len(rows),
        "windows": len(rows),  # the old name of "chunks", for one release
        "embedding_dim": int(vectors.shape[1]),
        "skipped": skipped,
    }
