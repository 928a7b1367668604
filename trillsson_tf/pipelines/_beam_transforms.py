"""The Beam DoFns of :mod:`trillsson_tf.pipelines.beam_targets` (imports apache_beam).

Kept apart so that the driver module imports without Beam and names the extra to install.
"""

import logging
import os
import tempfile

import apache_beam as beam
import numpy as np

from trillsson_tf.audio import load_audio
from trillsson_tf.errors import ParameterError
from trillsson_tf.train.targets import TargetRecord, batch_targets, encode_record, file_key

__all__ = ["METRICS_NAMESPACE", "ReadAudio", "TeacherTargets"]

_log = logging.getLogger(__name__)

METRICS_NAMESPACE = "trillsson_tf"


def _remote_key(path: str) -> str:
    """Cache key of a file on a Beam filesystem, from its size and last update (like :func:`file_key`)."""
    import hashlib

    from apache_beam.io.filesystems import FileSystems

    (result,) = FileSystems.match([path])
    meta = result.metadata_list[0]
    return hashlib.sha1(f"{path}|{meta.size_in_bytes}|{meta.last_updated_in_seconds}".encode()).hexdigest()


def _read(path: str) -> np.ndarray:
    """float32 ``[samples]`` at 16 kHz; remote files are copied to a local temporary file for the decoders."""
    if "://" not in path:
        return load_audio(path)
    from apache_beam.io.filesystems import FileSystems

    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, "audio" + os.path.splitext(path)[1])
        with FileSystems.open(path) as source, open(local, "wb") as target:
            target.write(source.read())
        return load_audio(local)


class ReadAudio(beam.DoFn):
    """``(path, labels)`` -> :class:`TargetRecord` with audio and no targets yet; unreadable files are counted and skipped."""

    def __init__(self):
        self._unreadable = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "unreadable")

    def process(self, element):
        path, labels = element
        try:
            audio = _read(path)
            key = _remote_key(path) if "://" in path else file_key(path)
        except (ParameterError, OSError) as error:
            _log.warning("Skipping %s: %s", path, error)
            self._unreadable.inc()
            return
        yield TargetRecord(key, path, labels, audio, None)


class TeacherTargets(beam.DoFn):
    """Batches of :class:`TargetRecord` -> serialized records with targets.

    The teacher is loaded once per worker (in ``setup``) from its spec; each batch goes through
    :func:`trillsson_tf.train.targets.batch_targets`.
    """

    def __init__(self, teacher_spec: str, *, output_key, mode: str, batch_size: int):
        self.teacher_spec, self.output_key, self.mode, self.batch_size = teacher_spec, output_key, mode, batch_size
        self._records = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "records")
        self._padded = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "padded_clips")
        self.teacher = None

    def setup(self):
        from trillsson_tf.teachers import load_teacher

        self.teacher = load_teacher(self.teacher_spec, output_key=self.output_key)

    def process(self, batch):
        padded_before = self.teacher.padded_clips
        targets = batch_targets(
            self.teacher, [record.audio for record in batch], mode=self.mode, batch_size=self.batch_size
        )
        self._padded.inc(self.teacher.padded_clips - padded_before)
        for record, target in zip(batch, targets):
            # Stamped on each record: a shard copied into another teacher's folder is then refused.
            record.targets, record.teacher, record.mode = target, self.teacher.identity, self.mode
            self._records.inc()
            yield encode_record(record)
