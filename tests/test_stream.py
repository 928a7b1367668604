"""Live streams with bounded latency: ``TFLiteModel.stream(blocks, hop_s=...)`` and ``open_stream``.

Every chunk vector is given as soon as its chunk's last sample has arrived, with the numbers of the
offline ``TFLiteModel.chunk_vectors`` on the concatenated blocks; real LibriSpeech speech in blocks of random
sizes, embedding and score (emotion) students.
"""

import numpy as np
import pytest

from conftest import TINY_STUDENTS
from trillsson_tf import kinds
from trillsson_tf.audio import resample
from trillsson_tf.errors import ParameterError
from trillsson_tf.metrics import parity
from trillsson_tf.runtime import TFLiteModel

LENGTHS = (5_000, 31_500, 39_440, 100_000)  # under one chunk, one chunk (< 2 s), two chunks exactly, many


@pytest.fixture(scope="module")
def speech(librispeech_clips):
    """Real speech, float32 [100000] (6.25 s): the longest bundled clips joined."""
    return np.concatenate(librispeech_clips[:2])[:100_000]


@pytest.fixture(scope="module")
def stream_files(tmp_path_factory, librispeech_clips):
    """tiny_cnn as float32 audio-in, int8 patch-in and chunk_vectors=True; wav2small and mobilenetv4convsmall
    (scores) audio-in."""
    from trillsson_tf.converters.tflite import convert
    from trillsson_tf import models
    from trillsson_tf._keras import keras

    keras.utils.set_random_seed(5)
    tiny = models.build("tiny_cnn", **TINY_STUDENTS["tiny_cnn"])
    calibration = np.stack([np.resize(clip, 32000) for clip in librispeech_clips[2:]]).astype(np.float32)
    folder = tmp_path_factory.mktemp("stream_tflite")
    forms = {
        "chunk": (tiny, {}),
        "patch_int8": (tiny, {"frontend": False, "quantize": "int8", "representative_audio": calibration}),
        "one_chunk": (tiny, {"chunk_vectors": True}),
        "wav2small": (models.build("wav2small", **TINY_STUDENTS["wav2small"]), {}),
        "emotion": (models.build("mobilenetv4convsmall", **TINY_STUDENTS["mobilenetv4convsmall"]), {}),
    }
    paths = {}
    for name, (model, options) in forms.items():
        paths[name] = folder / f"{name}.tflite"
        convert(model, paths[name], **options)
    return paths


def _random_blocks(audio, seed, count=12):
    cuts = np.sort(np.random.default_rng(seed).integers(0, len(audio), count - 1))
    return np.split(audio, cuts)  # `count` blocks of random sizes, some possibly empty


@pytest.mark.parametrize("form", ["chunk", "patch_int8", "one_chunk", "wav2small", "emotion"])
@pytest.mark.parametrize("length", LENGTHS)
def test_stream_gives_the_offline_chunk_vectors(stream_files, form, length, speech):
    model = TFLiteModel(stream_files[form], num_threads=1)
    audio = speech[:length]
    pairs = list(model.stream(_random_blocks(audio, length), hop_s=0.5))
    offline = model.chunk_vectors(audio, hop_s=0.5)
    assert [start for start, _ in pairs] == pytest.approx(offline["start_s"].tolist())
    np.testing.assert_allclose(np.stack([vector for _, vector in pairs]), offline["embedding"][0], atol=1e-5)


@pytest.mark.parametrize("form", ["chunk", "patch_int8", "one_chunk", "wav2small", "emotion"])
def test_compiled_api_gives_the_interpreters_numbers(stream_files, form, speech, fsdd_clips):
    """LiteRT 2.x's CompiledModel and the Interpreter on every input the runtime feeds: clips, chunk vectors,
    streams."""
    interpreter = TFLiteModel(stream_files[form], num_threads=1)
    compiled = TFLiteModel(stream_files[form], num_threads=1, api="compiled")
    assert compiled.pool.api == "compiled" and compiled.kind is interpreter.kind

    def assert_same(got, expected):  # float tolerance relative to the outputs' scale (emotion's are ~1e-6)
        assert np.abs(expected).max() > 0 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())

    clips = [speech, speech[:40_000], fsdd_clips[0]]  # several chunks, under two, under one (mirror-padded)
    assert_same(compiled(clips)["embedding"], interpreter(clips)["embedding"])
    assert_same(
        compiled.chunk_vectors(speech, hop_s=0.5)["embedding"],
        interpreter.chunk_vectors(speech, hop_s=0.5)["embedding"],
    )
    if not interpreter.kind.whole_clips:
        blocks = _random_blocks(speech, 11)
        assert_same(np.stack(list(compiled.stream(blocks))), np.stack(list(interpreter.stream(blocks))))


@pytest.mark.parametrize("hop_s", [0.01, 0.25, 1.95])
def test_stream_any_hop(stream_files, hop_s, speech):
    model = TFLiteModel(stream_files["chunk"], num_threads=1)
    audio = speech[:48_000]
    pairs = list(model.stream(_random_blocks(audio, 7), hop_s=hop_s))
    offline = model.chunk_vectors(audio, hop_s=hop_s)["embedding"][0]
    assert len(pairs) == len(offline) == 1 + (48_000 - 31_440) // round(hop_s * 16000)
    np.testing.assert_allclose(np.stack([vector for _, vector in pairs]), offline, atol=1e-5)


def test_each_chunk_comes_with_the_block_that_completes_it(stream_files, speech):
    """Bounded latency: a chunk's vector is given in the feed of its last sample, never later."""
    model = TFLiteModel(stream_files["patch_int8"], num_threads=1)
    stream = model.open_stream(0.5)
    received, given = 0, []
    for block in np.split(speech[:60_000], range(1_000, 60_000, 1_000)):
        received += len(block)
        starts, vectors = stream.feed(block)
        given += [(start, received) for start in starts.tolist()]
    # Chunk k ends at sample 8000 k + 31440: given by the first feed that reaches it.
    assert [(start, at) for start, at in given] == [(0.5 * k, -(-(8000 * k + 31440) // 1000) * 1000) for k in range(4)]
    assert stream.close()[1].shape == (0, model.embedding_dim) and stream.emitted == 4


def test_stream_without_hop_keeps_one_vector_per_chunk(stream_files, speech):
    model = TFLiteModel(stream_files["chunk"], num_threads=1)
    vectors = np.stack(list(model.stream(_random_blocks(speech, 3))))
    assert vectors.shape == (3, model.embedding_dim)
    np.testing.assert_allclose(vectors.mean(axis=0), model(speech)["embedding"][0], atol=1e-6)
    with pytest.raises(ParameterError, match="does not stream the clip call's chunks; stream chunk vectors with hop_s"):
        list(TFLiteModel(stream_files["wav2small"]).stream([speech]))


def test_stream_resamples_other_rates(stream_files, speech):
    model = TFLiteModel(stream_files["chunk"], num_threads=1)
    audio_44k = resample(speech, 16000, 44100)
    pairs = list(model.stream(_random_blocks(audio_44k, 44), hop_s=0.5, sample_rate=44100))
    offline = model.chunk_vectors(speech, hop_s=0.5)["embedding"][0]
    assert len(pairs) == len(offline)
    assert parity(offline, np.stack([vector for _, vector in pairs]))["min_cosine"] > 0.999


@pytest.mark.parametrize("hop_s", [0, -0.5, 1.96, 3.0])
def test_bad_hops_are_refused(stream_files, hop_s, speech):
    model = TFLiteModel(stream_files["chunk"])
    with pytest.raises(ParameterError, match="hop_s must be"):
        list(model.stream([speech], hop_s=hop_s))
    with pytest.raises(ParameterError, match="hop_s must be"):
        model.open_stream(hop_s)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_block_with_nan_is_refused_and_the_stream_goes_on(stream_files, speech, bad):
    model = TFLiteModel(stream_files["chunk"], num_threads=1)
    blocks = _random_blocks(speech, 11)
    stream = model.open_stream(0.5, sample_rate=44100)
    clean = model.open_stream(0.5, sample_rate=44100)
    blocks = [resample(block, 16000, 44100) if len(block) else block for block in blocks]
    got, expected = [], []
    for i, block in enumerate(blocks):
        if i == 4:
            state = (stream.emitted, stream._received, len(stream._buffer), stream.sample_rate_hz)
            poisoned = block.copy()
            poisoned[len(poisoned) // 2] = bad
            with pytest.raises(ParameterError, match="NaN|Inf|finite"):
                stream.feed(poisoned)
            assert (stream.emitted, stream._received, len(stream._buffer), stream.sample_rate_hz) == state
        got.append(stream.feed(block)[1])
        expected.append(clean.feed(block)[1])
    got.append(stream.close()[1])
    expected.append(clean.close()[1])
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate(expected))
    with pytest.raises(ParameterError, match="NaN|Inf|finite"):
        list(model.stream([speech[:1000], np.full(100, bad, np.float32)], hop_s=0.5))


def test_a_block_at_another_rate_is_refused_without_touching_the_stream(stream_files, speech):
    model = TFLiteModel(stream_files["chunk"], num_threads=1)
    stream = model.open_stream(0.5)
    stream.feed(speech[:20_000])
    with pytest.raises(ParameterError, match="started at 16000 Hz"):
        stream.feed(speech[20_000:40_000], sample_rate=8000)
    with pytest.raises(ParameterError, match="mono"):
        stream.feed(np.stack([speech[:100]] * 2))
    starts, _ = stream.feed(speech[20_000:40_000])
    assert starts.tolist() == [0.0, 0.5] and stream._received == 40_000


def test_multi_task_files_do_not_stream(stream_files):
    model = TFLiteModel(stream_files["chunk"])
    model.output_keys = ("embedding", "other")  # what a multi-task (waveform) file's card gives
    model.kind = kinds.form(kinds.WAVEFORM, True)
    with pytest.raises(ParameterError, match="no chunk vectors"):
        model.open_stream(0.5)
    with pytest.raises(ParameterError, match="does not stream"):
        model.feed(np.zeros(100, np.float32))
