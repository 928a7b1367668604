"""The target shard record format round-trips, in numpy and in the tf.data graph, for both format versions."""

import numpy as np
import pytest

from trillsson_tf._keras import tf
from trillsson_tf.contract import PCM16_SCALE
from trillsson_tf.errors import ParameterError
from trillsson_tf.formats.target_shard import (
    TargetRecord,
    decode_record,
    encode_record,
    parse_record,
    pcm16,
    record_audio,
    record_samples,
    record_targets,
)


def _record(**change):
    rng = np.random.default_rng(0)
    values = dict(
        key="k1",
        path="/a/é.wav",
        labels={"speaker": "s1", "digit": "3"},
        audio=(rng.uniform(-1, 1, 1600) * 0.5).astype(np.float32),
        targets=rng.standard_normal((2, 5)).astype(np.float32),
        teacher="t:1",
        mode="local",
    )
    return TargetRecord(**{**values, **change})


def test_record_round_trips_through_bytes_and_features():
    record = _record()
    back = decode_record(encode_record(record))
    assert (back.key, back.path, back.labels, back.teacher, back.mode) == (
        record.key,
        record.path,
        record.labels,
        record.teacher,
        record.mode,
    )
    np.testing.assert_array_equal(back.targets, record.targets)
    np.testing.assert_allclose(back.audio, record.audio, atol=0.5 / PCM16_SCALE)  # 16-bit PCM: half a step
    feature = tf.train.Example.FromString(encode_record(record)).features.feature
    assert record_samples(feature) == 1600 and record_targets(feature).shape == (2, 5)
    np.testing.assert_array_equal(record_audio(feature), back.audio)
    old = decode_record(encode_record(_record(teacher="", mode="")))
    assert (old.teacher, old.mode) == ("", "")


def test_the_graph_parse_reads_what_numpy_reads():
    record = _record()
    parsed = parse_record(tf.constant(encode_record(record)))
    np.testing.assert_array_equal(parsed["audio"].numpy(), pcm16(record.audio))
    np.testing.assert_array_equal(parsed["targets"].numpy(), record.targets)
    assert parsed["key"].numpy() == b"k1"


def test_format_1_float_audio_is_still_read():
    record = _record()
    example = tf.train.Example.FromString(encode_record(record))
    features = example.features.feature
    del features["audio_pcm16"]
    features["audio"].bytes_list.value.append(record.audio.astype("<f4").tobytes())
    serialized = example.SerializeToString()
    np.testing.assert_array_equal(decode_record(serialized).audio, record.audio)  # float32 kept exactly
    assert record_samples(tf.train.Example.FromString(serialized).features.feature) == 1600
    np.testing.assert_array_equal(parse_record(tf.constant(serialized))["audio"].numpy(), pcm16(record.audio))


def test_pcm16_rounds_and_clips():
    assert pcm16(np.array([0.0, 1.0, -1.0, 2.0, 0.5 / PCM16_SCALE + 1e-9])).tolist() == [0, 32767, -32768, 32767, 1]


def test_another_sample_rate_is_refused_naming_the_file():
    example = tf.train.Example.FromString(encode_record(_record()))
    example.features.feature["sample_rate_hz"].int64_list.value[0] = 8000
    with pytest.raises(ParameterError, match="'/a/é.wav' holds audio at 8000 Hz, not 16000"):
        decode_record(example.SerializeToString())
