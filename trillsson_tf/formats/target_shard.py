"""The target shard record: one audio file with its teacher targets, as a ``tf.train.Example``.

The one home of the format: its versions, the features, the 16-bit PCM scale, encoding, decoding
(numpy, from bytes or a parsed feature map) and the ``tf.data`` parse. TensorFlow is imported only
inside the functions that need it. Features: ``key``, ``path``, ``labels`` (JSON), ``audio_pcm16``
(little-endian int16; format 1: ``audio`` float32), ``sample_rate_hz``, ``targets`` (float32) with
``target_shape`` ``[rows, D]``, and, from this version on, ``teacher_identity`` and ``target_mode``.
"""

import dataclasses
import json

import numpy as np

from trillsson_tf.contract import PCM16_SCALE, SAMPLE_RATE_HZ
from trillsson_tf.errors import ParameterError

__all__ = [
    "READABLE_FORMATS",
    "TARGETS_FORMAT",
    "TargetRecord",
    "decode_record",
    "encode_record",
    "parse_record",
    "pcm16",
    "pcm16_float",
    "record_audio",
    "record_samples",
    "record_targets",
]

TARGETS_FORMAT = "trillsson_tf.targets/2"
"""The format written: audio as 16-bit PCM (format 1 held it as float32)."""
READABLE_FORMATS = ("trillsson_tf.targets/1", TARGETS_FORMAT)
"""Formats read."""


@dataclasses.dataclass
class TargetRecord:
    """One audio file with its teacher targets (one record of a shard).

    Attributes:
        key: Cache key of the file.
        path: Where the audio was read from.
        labels: Labels of the file (column name -> string).
        audio: float32 ``[samples]`` at 16 kHz, mono.
        targets: float32 ``[1, D]`` (global) or ``[segments, D]`` (local).
        teacher: Identity of the teacher that made ``targets`` (``""``: not recorded).
        mode: Their target mode (``""``: not recorded).
    """

    key: str
    path: str
    labels: dict
    audio: np.ndarray
    targets: np.ndarray
    teacher: str = ""
    mode: str = ""


def pcm16(audio) -> np.ndarray:
    """float audio in [-1, 1] -> little-endian int16 samples (``round(x * 32768)``, clipped to int16)."""
    scaled = np.round(np.asarray(audio, np.float64) * PCM16_SCALE)
    return np.clip(scaled, -PCM16_SCALE, PCM16_SCALE - 1).astype("<i2")


def pcm16_float(samples) -> np.ndarray:
    """16-bit PCM samples (int16, any shape) -> float32 in [-1, 1)."""
    return np.asarray(samples, np.float32) / PCM16_SCALE


def encode_record(record: TargetRecord) -> bytes:
    """Serialize a :class:`TargetRecord` (the current format)."""
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
        "sample_rate_hz": ints([SAMPLE_RATE_HZ]),
        "targets": raw(targets.tobytes()),
        "target_shape": ints(targets.shape),
    }
    if record.teacher:
        feature["teacher_identity"] = raw(record.teacher.encode())
    if record.mode:
        feature["target_mode"] = raw(record.mode.encode())
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _raw(feature, name: str) -> bytes:
    return feature[name].bytes_list.value[0]


def record_audio(feature) -> np.ndarray:
    """float32 ``[samples]`` audio of a parsed record (either format)."""
    if "audio_pcm16" in feature:
        return pcm16_float(np.frombuffer(_raw(feature, "audio_pcm16"), dtype="<i2"))
    return np.frombuffer(_raw(feature, "audio"), dtype="<f4").astype(np.float32)  # format 1


def record_samples(feature) -> int:
    """Audio samples of a parsed record, without decoding them."""
    if "audio_pcm16" in feature:
        return len(_raw(feature, "audio_pcm16")) // 2
    return len(_raw(feature, "audio")) // 4


def record_targets(feature) -> np.ndarray:
    """float32 ``[rows, D]`` targets of a parsed record."""
    shape = tuple(feature["target_shape"].int64_list.value)
    return np.frombuffer(_raw(feature, "targets"), dtype="<f4").reshape(shape)


def decode_record(serialized) -> TargetRecord:
    """A :class:`TargetRecord` from record bytes or a parsed feature map (either format).

    Raises:
        ParameterError: the audio is not at 16 kHz.
    """
    from trillsson_tf._keras import tf

    feature = tf.train.Example.FromString(serialized).features.feature if isinstance(serialized, bytes) else serialized
    rate = feature["sample_rate_hz"].int64_list.value[0]
    if rate != SAMPLE_RATE_HZ:
        raise ParameterError(
            f"Target record {_raw(feature, 'path').decode()!r} holds audio at {rate} Hz, not {SAMPLE_RATE_HZ}."
        )
    return TargetRecord(
        key=_raw(feature, "key").decode(),
        path=_raw(feature, "path").decode(),
        labels=json.loads(_raw(feature, "labels").decode()),
        audio=record_audio(feature),
        targets=record_targets(feature).astype(np.float32),
        teacher=_raw(feature, "teacher_identity").decode() if "teacher_identity" in feature else "",
        mode=_raw(feature, "target_mode").decode() if "target_mode" in feature else "",
    )


def parse_record(serialized):
    """In a ``tf.data`` graph: record bytes -> ``{"key", "audio" (int16 [samples]), "targets" (float32 [rows, D])}``."""
    from trillsson_tf._keras import tf

    parsed = tf.io.parse_single_example(
        serialized,
        {
            "key": tf.io.FixedLenFeature([], tf.string),
            "audio_pcm16": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "audio": tf.io.FixedLenFeature([], tf.string, default_value=""),  # format 1: float32
            "targets": tf.io.FixedLenFeature([], tf.string),
            "target_shape": tf.io.FixedLenFeature([2], tf.int64),
        },
    )
    audio = tf.cond(
        tf.strings.length(parsed["audio_pcm16"]) > 0,
        lambda: tf.io.decode_raw(parsed["audio_pcm16"], tf.int16, little_endian=True),
        lambda: tf.cast(
            tf.clip_by_value(
                tf.round(tf.io.decode_raw(parsed["audio"], tf.float32, little_endian=True) * PCM16_SCALE),
                -PCM16_SCALE,
                PCM16_SCALE - 1,
            ),
            tf.int16,
        ),
    )
    targets = tf.reshape(tf.io.decode_raw(parsed["targets"], tf.float32, little_endian=True), parsed["target_shape"])
    return {"key": parsed["key"], "audio": audio, "targets": targets}
