"""trillsson_tf.runtime: the TensorFlow-free TFLite wrapper against the Keras model it came from.

The .tflite files are converted here with ``tf.lite.TFLiteConverter`` (builtin ops only) from a
tiny real student, and every parity check runs on real LibriSpeech speech.
"""

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile

from trillsson_tf import litert, runtime
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio, resample
from trillsson_tf.errors import AudioTypeError, ParameterError, TrillssonError
from trillsson_tf.frontend import DEFAULT_FRONTEND
from trillsson_tf.frontend.numpy_ops import chunk_audio
from trillsson_tf.metrics import parity
from trillsson_tf.runtime import TFLiteModel

CHUNKING_LENGTHS = (5_000, 32_000, 63_000, 100_000)


# -- conversions (TensorFlow is used here, in the test process only) -----------------------


def _frontend_inside_function(model):
    """A tf.function ``audio_samples [None, None] -> {'embedding'}`` with a float32 frontend."""
    from trillsson_tf._keras import keras, tf
    from trillsson_tf.models import AUDIO_INPUT_NAME, EMBEDDING_KEY
    from trillsson_tf.models._audio_model import LogMelPatches, MeanOverChunks

    audio = keras.Input(shape=(None,), dtype="float32", name=AUDIO_INPUT_NAME)
    patches = LogMelPatches(model.frontend, compute_dtype="float32")(audio)  # TFLite has no float64 FFT
    embedding = MeanOverChunks(name=EMBEDDING_KEY)([model.chunk_network(patches), audio])
    float32_model = keras.Model(audio, {EMBEDDING_KEY: embedding})
    spec = tf.TensorSpec([None, None], tf.float32, name=AUDIO_INPUT_NAME)
    function = tf.function(lambda audio_samples: float32_model(audio_samples), input_signature=[spec])
    return function.get_concrete_function(), float32_model


def _calibration_clips():
    """Real speech the tests do not embed (LibriSpeech files 9-12, FSDD take 5), float32 [samples]."""
    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))[8:12]
    files += sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_5.wav")))[:4]
    return [load_audio(path) for path in files]


def _int8_settings(converter, representative):
    from trillsson_tf._keras import tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative


def _convert(tmp_dir, name, *, frontend_inside, int8, model):
    from trillsson_tf._keras import tf
    from trillsson_tf.frontend import numpy_ops

    if frontend_inside:
        function, float32_model = _frontend_inside_function(model)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], float32_model)
        if int8:
            clips = _calibration_clips()
            _int8_settings(converter, lambda: ([clip[np.newaxis, :40000]] for clip in clips))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model.chunk_network)
        if int8:
            patches = np.concatenate([numpy_ops.log_mel_patches(c[np.newaxis])[0] for c in _calibration_clips()])
            _int8_settings(converter, lambda: ([patch[np.newaxis, ..., np.newaxis]] for patch in patches))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    path = os.path.join(tmp_dir, f"{name}.tflite")
    with open(path, "wb") as handle:
        handle.write(converter.convert())
    return path


@pytest.fixture(scope="module")
def tflite_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tflite"))


@pytest.fixture(scope="module")
def frontend_float32(tflite_dir, tiny_model):
    """Tiny trillsson1 with the frontend inside, float32: input ``audio_samples [None, None]``."""
    return _convert(tflite_dir, "fe_float32", frontend_inside=True, int8=False, model=tiny_model)


@pytest.fixture(scope="module")
def patch_float32(tflite_dir, tiny_model):
    """Tiny trillsson1 chunk network, float32: input log-mel patches ``[None, 195, 80, 1]``."""
    return _convert(tflite_dir, "patch_float32", frontend_inside=False, int8=False, model=tiny_model)


@pytest.fixture(scope="module")
def patch_int8(tflite_dir, tiny_model):
    """Tiny trillsson1 chunk network, full int8 with int8 input and output."""
    return _convert(tflite_dir, "patch_int8", frontend_inside=False, int8=True, model=tiny_model)


@pytest.fixture(scope="module")
def long_clip(librispeech_clips):
    """Two real utterances joined: float32 [>= 100,000 samples]."""
    clip = np.concatenate(librispeech_clips[:3])
    assert len(clip) >= max(CHUNKING_LENGTHS)
    return clip


def _keras_embeddings(model, clips):
    return np.concatenate([model(clip[np.newaxis])["embedding"].numpy() for clip in clips])


def _assert_parity(reference, candidate, *, min_cosine, max_abs_diff):
    scores = parity(reference, candidate)
    assert scores["reference_rms"] > 1e-2, scores  # the embeddings are not vanishingly small
    assert scores["min_cosine"] >= min_cosine, scores
    assert scores["max_abs_diff"] <= max_abs_diff, scores
    return scores


# -- TensorFlow stays out -------------------------------------------------------------------


def _run_without_tensorflow(script):
    """Run ``script`` in a fresh interpreter, then fail if TensorFlow or Keras got imported."""
    check = """
leaked = sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "tf_keras", "keras"))
assert not leaked, f"TensorFlow was imported: {leaked[:5]}"
"""
    result = subprocess.run(
        [sys.executable, "-c", "import sys\n" + script + check], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_runtime_never_imports_tensorflow(frontend_float32, patch_int8):
    wav = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*.wav")))[0]
    _run_without_tensorflow(f"""
import numpy as np
from trillsson_tf.runtime import TFLiteModel
audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 40000)).astype(np.float32)
for path in ({frontend_float32!r}, {patch_int8!r}):
    model = TFLiteModel(path, num_threads=1)
    model(audio)
    model.embed_file({wav!r})
    list(model.stream(np.array_split(audio[0], 7)))
""")


def test_cli_embed_never_imports_tensorflow(patch_int8, tmp_path):
    wav = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*.wav")))[0]
    _run_without_tensorflow(f"""
from trillsson_tf.apps.cli import main
assert main(["embed", {patch_int8!r}, {wav!r}, "--out", {str(tmp_path / "e.npy")!r}]) == 0
""")


# -- parity with the Keras model on real speech ----------------------------------------------


@pytest.mark.parametrize("fixture", ["frontend_float32", "patch_float32"])
def test_float32_matches_keras(request, fixture, tiny_model, librispeech_clips, fsdd_clips):
    model = TFLiteModel(request.getfixturevalue(fixture), num_threads=1)
    clips = librispeech_clips + fsdd_clips
    # float32 frontend (inside) vs the Keras float64 frontend: ~1e-6 apart; numpy frontend: exact.
    _assert_parity(
        _keras_embeddings(tiny_model, clips), model(clips)["embedding"], min_cosine=0.9999, max_abs_diff=1e-3
    )


def test_int8_matches_keras(patch_int8, tiny_model, librispeech_clips, fsdd_clips):
    model = TFLiteModel(patch_int8, num_threads=1)
    assert np.dtype(model.pool.input["dtype"]) == np.int8
    clips = librispeech_clips + fsdd_clips
    _assert_parity(_keras_embeddings(tiny_model, clips), model(clips)["embedding"], min_cosine=0.99, max_abs_diff=0.05)


def test_int8_frontend_inside_matches_the_interpreter_and_keras(tflite_dir, tiny_model, librispeech_clips):
    """Frontend-inside int8 (plain post-training quantization): the wrapper adds no error.

    The wrapper runs each chunk's window alone and averages in float, where the model averages
    its chunks in int8 (the two differ by about one quantization step). Calibrating the whole graph quantizes the audio and the frontend too, which costs
    fidelity (docs/DESIGN.md, "Conversion"): the Keras bound here is the converter's, not the runtime's.
    """
    from ai_edge_litert.interpreter import Interpreter

    path = _convert(tflite_dir, "fe_int8", frontend_inside=True, int8=True, model=tiny_model)
    clip = librispeech_clips[0][np.newaxis]
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    chunks = chunk_audio(clip)[0]
    assert len(chunks) == 2
    per_chunk = np.mean([runner(audio_samples=chunk[np.newaxis])["embedding"][0] for chunk in chunks], axis=0)
    wrapped = TFLiteModel(path)(clip)["embedding"]
    np.testing.assert_allclose(wrapped[0], per_chunk, rtol=0, atol=1e-6)
    np.testing.assert_allclose(wrapped, runner(audio_samples=clip)["embedding"], rtol=0, atol=0.01)
    _assert_parity(
        _keras_embeddings(tiny_model, librispeech_clips),
        TFLiteModel(path)(librispeech_clips)["embedding"],
        min_cosine=0.9,
        max_abs_diff=0.5,
    )


@pytest.mark.parametrize("fixture", ["frontend_float32", "patch_float32", "patch_int8"])
def test_chunking_semantics_equal_keras(request, fixture, tiny_model, long_clip):
    model = TFLiteModel(request.getfixturevalue(fixture), num_threads=1)
    clips = [long_clip[:length] for length in CHUNKING_LENGTHS]
    reference = _keras_embeddings(tiny_model, clips)
    candidate = model(clips)["embedding"]
    bounds = (
        {"min_cosine": 0.99, "max_abs_diff": 0.25}
        if fixture == "patch_int8"
        else {"min_cosine": 0.9999, "max_abs_diff": 1e-3}
    )
    _assert_parity(reference, candidate, **bounds)
    # 1, 1, 2 and 3 chunks: clips differing only after the last whole chunk embed the same.
    assert [DEFAULT_FRONTEND.num_chunks(n) for n in CHUNKING_LENGTHS] == [1, 1, 2, 3]
    cut = 2 * 31200 + 240  # the samples two whole chunks need
    np.testing.assert_allclose(model(long_clip[:cut])["embedding"], model(long_clip[:63_000])["embedding"], atol=1e-6)


@pytest.mark.parametrize("api", ["interpreter", "compiled"])
def test_batches_and_lists(frontend_float32, patch_float32, librispeech_clips, api):
    for path in (frontend_float32, patch_float32):
        model = TFLiteModel(path, api=api)
        singles = np.concatenate([model(clip)["embedding"] for clip in librispeech_clips])
        np.testing.assert_allclose(model(librispeech_clips)["embedding"], singles, atol=1e-6)
        same_length = [clip[:40000] for clip in librispeech_clips]
        np.testing.assert_allclose(
            model(same_length)["embedding"], model(np.stack(same_length))["embedding"], atol=1e-6
        )


def test_bytes_and_path_give_the_same_model(patch_float32, speech_batch):
    with open(patch_float32, "rb") as handle:
        from_bytes = TFLiteModel(handle.read())
    np.testing.assert_array_equal(
        from_bytes(speech_batch)["embedding"], TFLiteModel(patch_float32)(speech_batch)["embedding"]
    )


@pytest.mark.parametrize("api", ["interpreter", "compiled"])
def test_fixed_batch_model_is_filled(tflite_dir, tiny_model, patch_float32, long_clip, api):
    """A patch model converted with batch 2: three chunks run as 2 + (1 + one zero patch)."""
    from trillsson_tf._keras import tf

    network = tiny_model.chunk_network
    function = tf.function(
        lambda patch: {"embedding": network(patch)}, input_signature=[tf.TensorSpec([2, 195, 80, 1])]
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], network)
    path = os.path.join(tflite_dir, f"fixed_batch_{api}.tflite")
    with open(path, "wb") as handle:
        handle.write(converter.convert())
    clip = long_clip[:100_000]  # three chunks
    np.testing.assert_allclose(
        TFLiteModel(path, api=api)(clip)["embedding"], TFLiteModel(patch_float32)(clip)["embedding"], atol=1e-6
    )


@pytest.mark.parametrize("fixture", ["frontend_float32", "patch_int8"])
def test_chunks_run_in_calls_of_several_sizes(request, fixture, long_clip):
    """Seven chunks go in calls of 4 + 2 + 1, each size on its own interpreter, and give the
    vectors of seven one-chunk calls; no interpreter's input shape changes afterwards."""
    model = TFLiteModel(request.getfixturevalue(fixture))
    clips = np.stack([long_clip[i * 10_000 : i * 10_000 + 32_000] for i in range(7)])  # one chunk each
    batched = model(clips)["embedding"]
    assert sorted(model.pool.runners) == [2, 4]
    shapes = {
        size: tuple(runner.get_input_details()[model.pool.input_name]["shape"])
        for size, runner in model.pool.runners.items()
    }
    assert {size: shape[0] for size, shape in shapes.items()} == {2: 2, 4: 4}
    one_call_each = TFLiteModel(request.getfixturevalue(fixture))
    one_call_each.pool.call_sizes = (1,)
    np.testing.assert_allclose(batched, one_call_each(clips)["embedding"], atol=1e-6)
    assert not one_call_each.pool.runners
    model(clips)
    assert {
        size: tuple(runner.get_input_details()[model.pool.input_name]["shape"])
        for size, runner in model.pool.runners.items()
    } == shapes


# -- threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "api"), [("patch_int8", "interpreter"), ("frontend_float32", "interpreter"), ("patch_int8", "compiled")]
)
def test_one_model_is_safe_from_many_threads(request, fixture, api):
    """One instance called from 8 threads x 25 calls (embed_file, frames, stream; 8 real clips)
    gives every call exactly its single-threaded result (issue 39: 25-64 % of such calls were
    wrong, some raised interpreter errors, one crashed the process)."""
    # threadpoolctl comes with scikit-learn (the tf extra, which the conversions above need).
    from threadpoolctl import threadpool_limits

    model = TFLiteModel(request.getfixturevalue(fixture), num_threads=1, api=api)
    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))[:6]
    files += sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_1.wav")))[:2]
    clips = {path: load_audio(path)[:96_000] for path in files}  # up to 6 s each
    calls = (
        model.embed_file,
        lambda path: model.chunk_vectors(clips[path], hop_s=0.25)["embedding"],  # many interpreter calls a clip
        lambda path: np.stack(list(model.stream(np.array_split(clips[path], 5)))),
    )
    jobs = [(path, kind) for path in files for kind in range(len(calls))]
    start = threading.Barrier(8)

    def worker(thread):
        start.wait()  # all threads call at once
        return [(job, calls[job[1]](job[0])) for job in (jobs[(7 * thread + i) % len(jobs)] for i in range(25))]

    # One BLAS thread: 8 numpy log-mels at once on OpenBLAS's own threads took 27x as long on 2 cores
    # (14 s against 0.5 s) and left the interpreters idle, so that the old race showed only now and then.
    with threadpool_limits(1):
        expected = {job: calls[job[1]](job[0]) for job in jobs}
        with ThreadPoolExecutor(8) as pool:
            results = [pair for batch in pool.map(worker, range(8)) for pair in batch]
    wrong = [job for job, vectors in results if not np.array_equal(vectors, expected[job])]
    assert len(results) == 200 and not wrong, f"{len(wrong)} of 200 calls differ from the single-threaded result"


# -- streaming -------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["frontend_float32", "patch_int8"])
@pytest.mark.parametrize("length", [5_000, 31_500, 100_000])
def test_stream_matches_offline(request, fixture, length, long_clip):
    model = TFLiteModel(request.getfixturevalue(fixture))
    audio = long_clip[:length]
    cuts = np.sort(np.random.default_rng(length).integers(1, length, 11))
    blocks = np.split(audio, cuts)  # 12 blocks of random sizes, some possibly empty
    vectors = np.stack(list(model.stream(blocks)))
    assert len(vectors) == max(1, DEFAULT_FRONTEND.num_chunks(length))
    np.testing.assert_allclose(vectors.mean(axis=0), model(audio)["embedding"][0], atol=1e-5)


def test_feed_returns_chunks_as_they_complete(patch_float32, long_clip):
    model = TFLiteModel(patch_float32)
    assert model.feed(np.zeros(0, np.float32)).shape == (0, model.embedding_dim)
    assert model.feed(long_clip[: model.chunk_span_samples - 1]).shape[0] == 0
    assert model.feed(long_clip[model.chunk_span_samples - 1 : model.chunk_span_samples]).shape[0] == 1
    with pytest.raises(ParameterError, match="started at 16000 Hz"):
        model.feed(long_clip[:100], sample_rate=8000)
    model.reset()
    assert model.feed(long_clip[:100], sample_rate=8000).shape[0] == 0


def test_stream_resamples(frontend_float32, long_clip):
    model = TFLiteModel(frontend_float32)
    audio_44k = resample(long_clip, 16000, 44100)
    vectors = np.stack(list(model.stream(np.array_split(audio_44k, 50), sample_rate=44100)))
    offline = model(long_clip)["embedding"]
    assert len(vectors) == DEFAULT_FRONTEND.num_chunks(len(long_clip))
    assert parity(offline, vectors.mean(axis=0, keepdims=True))["min_cosine"] > 0.999


# -- audio forms ---------------------------------------------------------------------------


def test_sample_rate_is_resampled(frontend_float32, librispeech_clips):
    model = TFLiteModel(frontend_float32)
    clip = librispeech_clips[0]
    resampled = model(resample(clip, 16000, 44100), sample_rate=44100)["embedding"]
    assert parity(model(clip)["embedding"], resampled)["min_cosine"] > 0.999


def test_int16_is_scaled(patch_float32, librispeech_clips):
    model = TFLiteModel(patch_float32)
    pcm = np.round(librispeech_clips[0] * 32767).astype(np.int16)
    np.testing.assert_allclose(model(pcm)["embedding"], model(pcm / 32768.0)["embedding"], atol=1e-6)


def test_embed_file_formats_and_stereo_mixdown(patch_float32, librispeech_clips, tmp_path):
    model = TFLiteModel(patch_float32)
    clip = librispeech_clips[0]
    reference = model(clip)["embedding"][0]
    for extension in ("wav", "flac", "ogg"):
        path = tmp_path / f"clip.{extension}"
        soundfile.write(path, clip, 16000)
        min_cosine = 0.99 if extension == "ogg" else 0.9999  # ogg vorbis is lossy
        assert parity(reference[None], model.embed_file(path)[None])["min_cosine"] >= min_cosine
    stereo = tmp_path / "stereo_8k.wav"
    soundfile.write(stereo, np.stack([clip, clip], axis=1)[::2], 8000)
    assert parity(reference[None], model.embed_file(stereo)[None])["min_cosine"] > 0.95
    assert model.embed_files([tmp_path / "clip.wav", stereo]).shape == (2, model.embedding_dim)


def test_silent_audio_is_embedded_with_a_warning(patch_float32, tiny_model, caplog):
    model = TFLiteModel(patch_float32)
    silence = np.zeros((1, 20000), np.float32)
    with caplog.at_level(logging.WARNING, logger="trillsson_tf.runtime"):
        vector = model(silence)["embedding"]
    assert "silent" in caplog.text
    np.testing.assert_allclose(vector, tiny_model(silence)["embedding"].numpy(), atol=1e-4)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "audio, error, match",
    [
        (np.zeros((16000, 2), np.float32), ParameterError, "mix down"),
        (np.zeros((1, 16000, 2), np.float32), ParameterError, "mix down"),
        (np.zeros((1, 0), np.float32), ParameterError, "empty"),
        (np.array([[0.1, np.nan, 0.2]], np.float32), ParameterError, "NaN or Inf"),
        (np.array([0.1, np.inf, 0.2], np.float32), ParameterError, "NaN or Inf"),
        (np.zeros(16000, np.int32), AudioTypeError, "integer dtype int32"),
        (np.array(["a", "b"]), AudioTypeError, "dtype"),
    ],
)
def test_bad_audio_is_refused(patch_float32, audio, error, match):
    with pytest.raises(error, match=match):
        TFLiteModel(patch_float32)(audio)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16k", True])
def test_bad_sample_rate_is_refused(patch_float32, rate):
    with pytest.raises(ParameterError, match="sample_rate must be a positive integer"):
        TFLiteModel(patch_float32)(np.zeros(16000, np.float32), sample_rate=rate)


def test_unscaled_pcm_as_float_warns(patch_float32, caplog):
    with caplog.at_level(logging.WARNING, logger="trillsson_tf.runtime"):
        TFLiteModel(patch_float32)(np.full(20000, 1000.0, np.float32))
    assert "Divide by 32768" in caplog.text


def test_non_audio_file_is_named(patch_float32, tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("not audio at all")
    with pytest.raises(ParameterError, match="notes.wav"):
        TFLiteModel(patch_float32).embed_file(path)


def test_bad_model_files(tmp_path):
    with pytest.raises(ParameterError, match="not found"):
        TFLiteModel(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ParameterError, match="junk.tflite"):
        TFLiteModel(junk)
    with pytest.raises(ParameterError, match="path or its bytes"):
        TFLiteModel(42)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_bad_num_threads(patch_float32, threads):
    with pytest.raises(ParameterError, match="num_threads"):
        TFLiteModel(patch_float32, num_threads=threads)


@pytest.fixture(scope="module")
def two_output_model(tflite_dir):
    """An audio model with outputs ``scores`` and ``logits`` ([batch, 3] each), no ``embedding``.

    Converted without a trackable object, the file has no signature: the main subgraph is called.
    """
    from trillsson_tf._keras import tf

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="audio_samples")])
    def two_outputs(audio_samples):
        level = tf.reduce_mean(tf.abs(audio_samples), axis=1, keepdims=True)
        return {"scores": level * tf.constant([[1.0, 2.0, 3.0]]), "logits": level - tf.constant([[1.0, 2.0, 3.0]])}

    path = os.path.join(tflite_dir, "two_outputs.tflite")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([two_outputs.get_concrete_function()])
    with open(path, "wb") as handle:
        handle.write(converter.convert())
    return path


def test_no_embedding_like_output_lists_the_outputs(two_output_model):
    from ai_edge_litert.interpreter import Interpreter

    assert not Interpreter(model_path=two_output_model).get_signature_list()
    with pytest.raises(ParameterError, match=r"no embedding-like output.*'Identity float32\[-1, 3\]', 'Identity_1"):
        TFLiteModel(two_output_model)
    vector = TFLiteModel(two_output_model, output_key="Identity")(np.full((1, 100), 0.5, np.float32))["embedding"]
    assert np.allclose(vector, [[0.5, 1.0, 1.5]]) or np.allclose(vector, [[-0.5, -1.5, -2.5]])
    with pytest.raises(ParameterError, match=r"'nope' \(from output_key\) not found.*Identity_1"):
        TFLiteModel(two_output_model, output_key="nope")


def test_compiled_api_runs_a_file_without_signatures(two_output_model):
    """A file without signatures: LiteRT 2.x names its placeholder signature's tensors as the main subgraph does."""
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 20_000)).astype(np.float32)
    expected = TFLiteModel(two_output_model, output_key="Identity")(audio)["embedding"]
    compiled = TFLiteModel(two_output_model, output_key="Identity", api="compiled")
    np.testing.assert_array_equal(compiled(audio)["embedding"], expected)
    assert np.abs(expected).max() > 0.1


def test_gpu_accelerator_runs_or_says_why(patch_float32, speech_batch):
    """The GPU runs the file with the CPU's numbers (float tolerance), or a one-line error names why and the fallback."""
    expected = TFLiteModel(patch_float32, num_threads=1)(speech_batch)["embedding"]
    try:
        model = TFLiteModel(patch_float32, api="compiled", accelerator="gpu")
    except ParameterError as error:  # this machine: no GPU, or no Vulkan for LiteRT's WebGPU accelerator
        assert "GPU accelerator cannot run" in str(error) and "patch_float32.tflite" in str(error)
        assert str(error).endswith("Use accelerator='cpu'.") and "\n" not in str(error)
        return
    assert parity(expected, model(speech_batch)["embedding"])["min_cosine"] > 0.999


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"api": "tflm"}, r"api must be one of \['interpreter', 'compiled'\], got 'tflm'"),
        ({"api": "compiled", "accelerator": "npu"}, r"accelerator must be one of \['cpu', 'gpu'\]"),
        ({"accelerator": "gpu"}, r"accelerator='gpu' needs api='compiled'"),
    ],
)
def test_bad_api_or_accelerator(patch_float32, options, match):
    with pytest.raises(ParameterError, match=match):
        TFLiteModel(patch_float32, **options)


@pytest.mark.parametrize("api", ["interpreter", "compiled"])
def test_ops_litert_lacks_are_named_at_load(patch_int8, tmp_path, api):
    """A file with an op that is no LiteRT builtin is refused when loaded (before: a multi-line error at the first call)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(patch_int8)
    code = model.operatorCodes[0]
    code.builtinCode = code.deprecatedBuiltinCode = 32  # BuiltinOperator.CUSTOM
    code.customCode = b"MagicSpectrogram"
    path = str(tmp_path / "custom.tflite")
    flatbuffer_utils.write_model(model, path)
    with pytest.raises(ParameterError, match=r"custom.tflite' uses op\(s\) MagicSpectrogram, which are not LiteRT"):
        TFLiteModel(path, api=api)


def test_kind_of_each_file(frontend_float32, patch_int8):
    assert (TFLiteModel(frontend_float32).kind.name, TFLiteModel(patch_int8).kind.name) == ("chunk", "patch")


def test_wrong_input_kind_is_refused(tflite_dir):
    from trillsson_tf._keras import tf

    @tf.function(input_signature=[tf.TensorSpec([None, 64, 3], tf.float32, name="images")])
    def image_model(images):
        return {"embedding": tf.reduce_mean(images, axis=1)}

    path = os.path.join(tflite_dir, "images.tflite")
    with open(path, "wb") as handle:
        handle.write(tf.lite.TFLiteConverter.from_concrete_functions([image_model.get_concrete_function()]).convert())
    with pytest.raises(ParameterError, match=r"takes images float32\[-1, 64, 3\]; expected audio"):
        TFLiteModel(path)


# -- model card ----------------------------------------------------------------------------


def _with_card(model_path, tmp_path, card, card_name="{stem}.json"):
    copy = tmp_path / "model.tflite"
    shutil.copy(model_path, copy)
    (tmp_path / card_name.format(stem="model")).write_text(json.dumps(card))
    return copy


def test_model_card_is_read(patch_float32, tmp_path):
    card = {"sample_rate_hz": 16000, "output": "projection", "frontend": DEFAULT_FRONTEND.to_dict()}
    model = TFLiteModel(_with_card(patch_float32, tmp_path, card, "{stem}.tflite.json"))
    assert model.card == card and model.output_key == "projection"


@pytest.mark.parametrize(
    "card, match",
    [
        ({"sample_rate_hz": 8000}, "says sample_rate_hz=8000"),
        ({"output": "nope"}, r"'nope' \(from the model card.*projection"),
        ({"frontend": {"hop_ms": 10}}, "unknown frontend entry"),
    ],
)
def test_model_card_disagreements_are_refused(patch_float32, tmp_path, card, match):
    with pytest.raises(ParameterError, match=match):
        TFLiteModel(_with_card(patch_float32, tmp_path, card))


def test_model_card_that_is_not_json(patch_float32, tmp_path):
    copy = tmp_path / "model.tflite"
    shutil.copy(patch_float32, copy)
    (tmp_path / "model.json").write_text("{broken")
    with pytest.raises(ParameterError, match="model.json"):
        TFLiteModel(copy)


# -- interpreter choice --------------------------------------------------------------------


def test_falls_back_to_tflite_runtime(patch_float32, speech_batch, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    expected = TFLiteModel(patch_float32)(speech_batch)["embedding"]
    stand_in = types.ModuleType("tflite_runtime.interpreter")
    stand_in.Interpreter = Interpreter  # the same API; checks the fallback path, not the package
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", stand_in)
    np.testing.assert_array_equal(TFLiteModel(patch_float32)(speech_batch)["embedding"], expected)


def test_no_interpreter_names_both_packages(patch_float32, monkeypatch):
    for module_name in litert.INTERPRETER_MODULES:
        monkeypatch.setitem(sys.modules, module_name, None)
    with pytest.raises(TrillssonError, match="ai-edge-litert.*tflite-runtime"):
        TFLiteModel(patch_float32)


def test_real_tflite_runtime(patch_float32, speech_batch):
    if int(np.__version__.split(".")[0]) >= 2:
        pytest.skip("tflite-runtime 2.14 (its last release) cannot create an Interpreter under numpy 2")
    pytest.importorskip("tflite_runtime.interpreter", reason="tflite-runtime is not installed")
    model = TFLiteModel(patch_float32)
    assert type(model.pool.first).__module__.startswith("tflite_runtime")
    assert model(speech_batch)["embedding"].shape == (2, model.embedding_dim)


# -- files and the CLI ---------------------------------------------------------------------


def test_audio_files_expands_folders(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.wav", "sub/a.flac", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert runtime.audio_files([tmp_path]) == [str(tmp_path / "b.wav"), str(tmp_path / "sub" / "a.flac")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="'.*empty' holds no audio"):
        runtime.audio_files([tmp_path / "b.wav", tmp_path / "empty"])
    with pytest.raises(ParameterError, match="neither an audio file nor a folder"):
        runtime.audio_files([tmp_path / "missing.wav"])


def test_cli_embed_writes_npy_and_csv(patch_float32, tmp_path, capsys):
    from trillsson_tf.apps.cli import main

    folder = os.path.join(SAMPLE_AUDIO_DIR, "librispeech")
    files = runtime.audio_files([folder])
    out = tmp_path / "emb.npy"
    assert main(["embed", patch_float32, folder, "--out", str(out), "--num-threads", "1"]) == 0
    vectors = np.load(out)
    assert vectors.shape == (len(files), 32) and vectors.dtype == np.float32
    assert (tmp_path / "emb.files.txt").read_text().split() == files
    np.testing.assert_allclose(vectors[3], TFLiteModel(patch_float32).embed_file(files[3]), atol=1e-6)

    csv_out = tmp_path / "emb.csv"
    assert main(["embed", patch_float32, files[0], files[1], "--out", str(csv_out)]) == 0
    rows = csv_out.read_text().splitlines()
    assert rows[0].startswith("path,e0,e1") and len(rows) == 3
    np.testing.assert_allclose([float(v) for v in rows[1].split(",")[1:]], vectors[0], rtol=1e-6, atol=1e-7)

    assert main(["embed", patch_float32, files[0], "--out", str(csv_out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["embed", patch_float32, files[0], "--out", str(tmp_path / "e.txt")]) == 2
    assert "Expected one of: ['.npy', '.csv']" in capsys.readouterr().err


@pytest.mark.parametrize("chunk_vectors, sidecar", [(False, "emb.files.txt"), (True, "emb.windows.csv")])
def test_cli_embed_never_overwrites_a_sidecar_without_force(patch_float32, tmp_path, capsys, chunk_vectors, sidecar):
    """The rows' names beside an .npy are an output too: an existing one is refused before any work, like the .npy."""
    from trillsson_tf.apps.cli import main

    wav = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*.wav")))[0]
    (tmp_path / sidecar).write_text("user notes\n")
    argv = [
        "embed",
        patch_float32,
        wav,
        "--out",
        str(tmp_path / "emb.npy"),
        *(["--chunk-vectors"] if chunk_vectors else []),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"Output {str(tmp_path / sidecar)!r} exists; pass --force to replace it" in err and err.count("\n") == 1
    assert (tmp_path / sidecar).read_text() == "user notes\n" and not (tmp_path / "emb.npy").exists()
    assert main([*argv, "--force"]) == 0
    assert wav in (tmp_path / sidecar).read_text()


def test_cli_embed_never_writes_over_an_input(patch_float32, tmp_path, capsys):
    from trillsson_tf.apps.cli import main

    clip = tmp_path / "clip.csv"  # a file given by name is an input whatever its ending
    clip.write_text("not audio\n")
    assert main(["embed", patch_float32, str(clip), "--out", str(clip), "--force"]) == 2
    assert f"Output {str(clip)!r} is the input audio file {str(clip)!r}" in capsys.readouterr().err
    assert clip.read_text() == "not audio\n"
