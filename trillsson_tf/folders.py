"""Output folders that are never overwritten by accident (TensorFlow-free)."""
import os
import shutil

from trillsson_tf.errors import ParameterError

__all__ = ["prepare_output_dir"]


def prepare_output_dir(path, *, overwrite: bool, what: str = "Output directory", resumable: bool = False) -> str:
    """Create ``path``, or empty it when ``overwrite``; refuse a non-empty folder otherwise.

    Args:
        path: Folder to write into.
        overwrite: Delete a non-empty ``path`` first (CLI ``--force``).
        what: How the error message names the folder.
        resumable: Say in the error that ``resume=True`` continues the run in it.

    Returns:
        ``path`` as a string.

    Raises:
        ParameterError: ``path`` exists, is not empty and ``overwrite`` is false.
    """
    path = os.fspath(path)
    if os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            resume = "pass resume=True to continue it or " if resumable else "pass "
            raise ParameterError(
                f"{what} {path!r} exists and is not empty; {resume}overwrite=True (CLI --force) to replace it."
            )
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    return path
