"""Output folders that are never overwritten by accident, and never hold a command's inputs (TensorFlow-free)."""

import os
import shutil
import weakref

from trillsson_tf.errors import ParameterError

__all__ = [
    "LOCK_FILE",
    "lock_folder",
    "write_atomic",
    "write_json",
    "prepare_output_dir",
    "refuse_inputs",
    "refuse_existing_files",
]

LOCK_FILE = ".trillsson-tf.lock"
"""Held (``flock``) by the process writing a run folder; not counted as content, never deleted by ``--force``."""

_HELD = weakref.WeakValueDictionary()  # resolved folder -> its lock held by this process


def prepare_output_dir(
    path,
    *,
    overwrite: bool,
    what: str = "Output directory",
    resumable: bool = False,
    inputs=(),
    check_only: bool = False,
) -> str:
    """Create ``path``, or empty it when ``overwrite``; refuse a non-empty folder otherwise.

    Args:
        path: Folder to write into.
        overwrite: Delete a non-empty ``path`` first (CLI ``--force``).
        what: How the error message names the folder.
        resumable: Say in the error that ``resume=True`` continues the run in it.
        inputs: What the command reads, as for :func:`refuse_inputs`: ``path`` must not be one
            of them, hold one or lie inside one (checked before anything is deleted).
        check_only: Only refuse (no folder made, nothing deleted).

    Returns:
        ``path`` as a string.

    Raises:
        ParameterError: ``path`` overlaps an input, or exists, is not empty and ``overwrite`` is false.
    """
    path = os.fspath(path)
    refuse_inputs(path, inputs, what=what)
    content = [name for name in os.listdir(path) if name != LOCK_FILE] if os.path.isdir(path) else []
    if content and not overwrite:
        resume = "pass resume=True (CLI --resume) to continue it or " if resumable else "pass "
        raise ParameterError(
            f"{what} {path!r} exists and is not empty; {resume}overwrite=True (CLI --force) to replace it."
        )
    if check_only:
        return path
    for name in content:  # the folder itself stays: another process may be waiting on its lock
        entry = os.path.join(path, name)
        if os.path.isdir(entry) and not os.path.islink(entry):
            shutil.rmtree(entry)
        else:
            os.remove(entry)
    os.makedirs(path, exist_ok=True)
    return path


class _Lock:
    def __init__(self, handle):
        self.handle = handle


def lock_folder(path) -> object:
    """Take the folder's :data:`LOCK_FILE` lock (``flock``); it is held while the returned object lives.

    A second process is refused at once; the same process may take it again (a resume in a notebook
    after an error). The lock dies with the process, so a killed run leaves no stale lock.

    Raises:
        ParameterError: another process holds it (its pid in the message).
    """
    import fcntl

    path = os.fspath(path)
    real = os.path.realpath(path)
    held = _HELD.get(real)
    if held is not None:
        return held
    os.makedirs(path, exist_ok=True)
    handle = open(os.path.join(path, LOCK_FILE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise ParameterError(
            f"{path!r} is in use by another trillsson-tf process (pid {owner}); "
            "wait for it to finish or choose another output folder."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    lock = _HELD[real] = _Lock(handle)
    return lock


def refuse_inputs(path, inputs, *, what: str = "Output directory", folder: bool = True) -> None:
    """Refuse an output that would delete or overwrite what the command reads.

    Paths are compared resolved (:func:`os.path.realpath`, so through symbolic links). An
    output folder may not be an input, hold one (``--force`` deletes the folder) or lie inside
    an input folder (its files would join the input); an output file (``folder=False``) may
    not be an input. Inputs that do not exist, and values that are not paths (a teacher object,
    a preset name with no such file), cannot be lost and are passed over.

    Args:
        path: The output folder or file.
        inputs: ``(name, value)`` pairs, ``name`` naming the input in the message (the CLI option,
            e.g. ``"--data"``), ``value`` a path, a list of paths or ``None``; a bare path is named "input".
        what: How the message names the output.
        folder: Whether ``path`` is a folder (else a file).

    Raises:
        ParameterError: the first overlap, naming the output, the input's option and its path.
    """
    out = os.path.realpath(os.fspath(path))
    for name, source in _named_paths(inputs):
        real = os.path.realpath(source)
        if _same(real, out):
            relation = "is"
        elif folder and _inside(real, out):
            relation = "holds"
        elif folder and _inside(out, real):
            relation = "lies inside"
        else:
            continue
        raise ParameterError(
            f"{what} {os.fspath(path)!r} {relation} the input {name} {source!r}; choose an output outside the inputs."
        )


def refuse_existing_files(paths, *, overwrite: bool, keep=None) -> None:
    """Refuse output files that exist, unless ``overwrite``.

    Args:
        paths: The output files.
        overwrite: Replace existing files (CLI ``--force``).
        keep: An input file that may be one of the outputs (it is not refused); ``None`` for none.

    Raises:
        ParameterError: listing the existing files.
    """
    keep = os.fspath(keep) if keep is not None else None
    kept = keep is not None and os.path.isfile(keep)
    existing = [path for path in paths if os.path.exists(path) and not (kept and os.path.samefile(path, keep))]
    if existing and not overwrite:
        raise ParameterError(f"Output files exist: {existing}; pass overwrite=True (CLI --force).")


def _named_paths(inputs):
    """``(name, path)`` for every existing path among ``inputs`` (see :func:`refuse_inputs`)."""
    for entry in inputs:
        name, value = entry if isinstance(entry, tuple) else ("input", entry)
        values = value if isinstance(value, (list, tuple)) else [value]
        for source in values:
            if isinstance(source, (str, os.PathLike)) and os.path.lexists(source):
                yield name, os.fspath(source)


def _same(path: str, other: str) -> bool:
    """Whether two resolved paths are one file or folder (a hard link is the file it links)."""
    return path == other or (os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other))


def _inside(path: str, folder: str) -> bool:
    """Whether resolved ``path`` lies strictly inside resolved ``folder``."""
    return path != folder and os.path.commonpath([path, folder]) == folder


def write_atomic(path, content) -> str:
    """Write ``content`` (bytes or str) to ``path`` whole or not at all.

    A kill or a full disk leaves the old file (or none), never a 0-byte or truncated one: the
    bytes go to a temporary file beside ``path``, are flushed to disk, then renamed over it.
    """
    import tempfile

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    data = content.encode() if isinstance(content, str) else bytes(content)
    try:
        handle, partial = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".partial")
    except OSError as error:
        raise OSError(error.errno, error.strerror, path) from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(partial, 0o644)  # mkstemp makes it private; outputs are ordinary files
        os.replace(partial, path)
    except OSError as error:  # named by the file the user asked for, not the temporary one
        raise OSError(error.errno, error.strerror, path) from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def write_json(path, value) -> str:
    """:func:`write_atomic` of ``value`` as indented JSON."""
    import json

    return write_atomic(path, json.dumps(value, indent=2))
