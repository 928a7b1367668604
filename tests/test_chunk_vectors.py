"""Chunk vectors: one vector per chunk (one 195-frame patch) every hop, with start times.

The same numbers from the Keras students (``model.chunk_vectors``), the export's ``frames`` signature,
every ``.tflite`` form through ``TFLiteModel.chunk_vectors`` and ``trillsson-tf embed --chunk-vectors``,
all on real LibriSpeech speech; at hop = chunk step their mean is the clip vector of today's call.
The old names (``frames`` and co.) work for one release, warning.
"""

import csv

import numpy as np
import pytest

from conftest import TINY_STUDENTS
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND, numpy_ops
from trillsson_tf.runtime import TFLiteModel, embed_to_file

NON_OVERLAPPING_S = DEFAULT_FRONTEND.chunk_step_samples / DEFAULT_FRONTEND.sample_rate_hz  # 1.95 s: the chunk step
BAD_HOPS = [0, 0.0, -0.5, 1.96, 2.0, 0.505, float("nan"), "0.5", True]


@pytest.fixture(scope="module")
def speech(librispeech_clips):
    """4.5 s of real speech, float32 [72000]: six chunks at a 0.5 s hop, two non-overlapping."""
    return librispeech_clips[0][:72000]


@pytest.fixture(scope="module")
def tiny_cnn():
    from trillsson_tf import models
    from trillsson_tf._keras import keras

    keras.utils.set_random_seed(3)
    return models.build("tiny_cnn", **TINY_STUDENTS["tiny_cnn"])


@pytest.fixture(scope="module")
def wav2small():
    from trillsson_tf import models
    from trillsson_tf._keras import keras

    keras.utils.set_random_seed(4)
    return models.build("wav2small", **TINY_STUDENTS["wav2small"])


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory, tiny_cnn, wav2small):
    """tiny_cnn as audio-in (any length), patch-in, chunk_vectors=True ([1, 31440]), fixed 32000; wav2small audio-in."""
    from trillsson_tf.converters.tflite import convert

    folder = tmp_path_factory.mktemp("chunk_vectors_tflite")
    forms = {
        "chunk": (tiny_cnn, {}),
        "patch": (tiny_cnn, {"frontend": False}),
        "one_chunk": (tiny_cnn, {"chunk_vectors": True}),
        "fixed": (tiny_cnn, {"fixed_samples": 32000}),
        "clip": (wav2small, {}),
    }
    paths = {}
    for name, (model, options) in forms.items():
        paths[name] = folder / f"{name}.tflite"
        convert(model, paths[name], **options)
    return paths


# -- the geometry ----------------------------------------------------------------------------


def test_chunks_are_one_patch_every_hop():
    chunks = DEFAULT_FRONTEND.chunks(0.5)
    assert (chunks.hop_frames, chunks.hop_samples, chunks.span_samples) == (50, 8000, 31440)
    assert chunks.chunk_s == pytest.approx(1.965)
    # Short clips are mirror-padded to 2 s: one chunk; then one more per whole hop of audio.
    assert [chunks.count(n) for n in (100, 32000, 39439, 39440, 72000)] == [1, 1, 1, 2, 6]
    np.testing.assert_allclose(chunks.starts_s(4), [0, 0.5, 1.0, 1.5])
    non_overlapping = DEFAULT_FRONTEND.chunks(NON_OVERLAPPING_S)
    assert (
        non_overlapping == DEFAULT_FRONTEND.chunks()
        and non_overlapping.hop_samples == DEFAULT_FRONTEND.chunk_step_samples
    )
    assert all(non_overlapping.count(n) == DEFAULT_FRONTEND.num_chunks(n) for n in (5000, 62639, 62640, 100000))


@pytest.mark.parametrize("hop", BAD_HOPS)
def test_bad_hops_are_refused(hop):
    with pytest.raises(ParameterError, match="hop_s must be"):
        DEFAULT_FRONTEND.chunks(hop)


def test_numpy_patches_every_hop_are_the_log_mel_of_each_chunk(speech):
    chunks = DEFAULT_FRONTEND.chunks(0.5)
    patches = numpy_ops.log_mel_patches(speech[np.newaxis], chunks=chunks)[0]
    audio = numpy_ops.chunk_audio(speech[np.newaxis], chunks=chunks)[0]
    assert patches.shape == (6, 195, 80) and audio.shape == (6, 31440)
    np.testing.assert_array_equal(audio[3], speech[24000:55440])
    np.testing.assert_allclose(patches[3], numpy_ops.log_mel(audio[3:4])[0], atol=1e-5)
    np.testing.assert_array_equal(
        numpy_ops.log_mel_patches(speech[np.newaxis], chunks=DEFAULT_FRONTEND.chunks()),
        numpy_ops.log_mel_patches(speech[np.newaxis]),
    )


def test_old_window_names_warn_and_are_the_chunk_names(speech):
    """FrameWindows, windows(), window_s, chunk_windows and windows= work for one release, warning."""
    from trillsson_tf import frontend

    def old(name):
        return pytest.warns(DeprecationWarning, match=rf"'trillsson_tf\.frontend\.{name}' is now 'trillsson_tf\.")

    chunks = DEFAULT_FRONTEND.chunks(0.5)
    with old("FrameWindows"):
        assert frontend.FrameWindows is frontend.ChunkGrid
    with old("FrameWindows"):
        from trillsson_tf.frontend import FrameWindows  # noqa: F401
    with old(r"FrontendConfig\.windows"):
        assert DEFAULT_FRONTEND.windows(0.5) == chunks
    with old(r"ChunkGrid\.window_s"):
        assert chunks.window_s == chunks.chunk_s
    with old(r"numpy_ops\.chunk_windows"):
        assert numpy_ops.chunk_windows is numpy_ops.chunk_audio
    clip = speech[np.newaxis, :40000]
    for function in (numpy_ops.log_mel_patches, numpy_ops.chunk_audio):
        with old(rf"numpy_ops\.{function.__name__}\(windows=\)"):
            np.testing.assert_array_equal(function(clip, windows=chunks), function(clip, chunks=chunks))
    with pytest.raises(TypeError, match="unexpected keyword argument 'hop'"):
        numpy_ops.chunk_audio(clip, hop=chunks)
    with pytest.raises(AttributeError, match="no attribute 'FrameGrid'"):
        frontend.FrameGrid


# -- Keras students and their export -----------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny_cnn", "trillsson1", "ast_tiny", "mobilenetv4convsmall"])
def test_chunk_students_chunk_vectors_average_to_the_clip_vector(name, speech):
    from trillsson_tf import models

    model = models.build(name, **TINY_STUDENTS[name])
    key = models.output_key(model)
    audio = np.stack([speech, speech[::-1]])
    vectors = model.chunk_vectors(audio, hop_s=0.5)
    assert vectors[key].shape == (2, 6, model.output[key].shape[-1]) and set(vectors) == {key, "start_s"}
    np.testing.assert_allclose(vectors["start_s"], [0, 0.5, 1, 1.5, 2, 2.5])
    # Chunk 2 alone (samples 16000-47440) gives the same vector: the call on that audio is its one chunk.
    np.testing.assert_allclose(vectors[key][:, 2], model(audio[:, 16000:47440])[key].numpy(), atol=2e-5)
    non_overlapping = model.chunk_vectors(audio, hop_s=NON_OVERLAPPING_S)[key]
    assert non_overlapping.shape[1] == 2
    np.testing.assert_allclose(non_overlapping.mean(axis=1), model(audio)[key].numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["wav2small", "distil-small"])
def test_whole_clip_students_run_whole_on_each_chunk(name, speech):
    from trillsson_tf import models

    model = models.build(name, **TINY_STUDENTS[name])
    key = models.output_key(model)
    vectors = model.chunk_vectors(speech[np.newaxis], hop_s=1.0)
    assert vectors[key].shape[:2] == (1, 3)
    for k in range(3):
        chunk = speech[np.newaxis, 16000 * k : 16000 * k + 31440]
        np.testing.assert_allclose(vectors[key][0, k], model(chunk)[key].numpy()[0], rtol=1e-4, atol=1e-5)
    short = model.chunk_vectors(speech[np.newaxis, :8000])[key]  # mirror-padded to 2 s: one chunk
    assert short.shape[1] == 1


@pytest.mark.parametrize("hop", [0, -1.0, 2.5])
def test_keras_chunk_vectors_refuse_bad_hops(tiny_cnn, speech, hop):
    with pytest.raises(ParameterError, match="hop_s must be"):
        tiny_cnn.chunk_vectors(speech[np.newaxis], hop_s=hop)


def test_export_has_a_chunk_vector_signature_beside_serving_default(tiny_cnn, speech, tmp_path):
    from trillsson_tf._keras import tf
    from trillsson_tf.models.export import export_savedmodel, read_metadata

    path = export_savedmodel(tiny_cnn, tmp_path / "export")
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "frames"}
    assert set(loaded.signatures["serving_default"].structured_outputs) == {"embedding"}
    audio = tf.constant(speech[np.newaxis])
    got = loaded.signatures["frames"](audio_samples=audio)
    expected = tiny_cnn.chunk_vectors(speech[np.newaxis], hop_s=0.5)
    np.testing.assert_allclose(got["embedding"].numpy(), expected["embedding"], atol=1e-6)
    np.testing.assert_allclose(got["start_s"].numpy(), expected["start_s"])
    np.testing.assert_allclose(
        loaded.signatures["serving_default"](audio_samples=audio)["embedding"].numpy(),
        tiny_cnn(speech[np.newaxis])["embedding"].numpy(),
        atol=1e-6,
    )
    assert read_metadata(path)["frames"] == {  # the stored keys exports have always had
        "signature": "frames",
        "hop_s": 0.5,
        "window_s": 1.965,
        "outputs": ["embedding", "start_s"],
    }
    assert (
        "frames"
        not in tf.saved_model.load(export_savedmodel(tiny_cnn, tmp_path / "plain", chunk_hop_s=None)).signatures
    )
    with pytest.raises(ParameterError, match="hop_s must be"):
        export_savedmodel(tiny_cnn, tmp_path / "bad", chunk_hop_s=0)
    assert not (tmp_path / "bad").exists()


# -- .tflite files through the runtime ------------------------------------------------------------


@pytest.mark.parametrize("form", ["chunk", "patch", "one_chunk"])
def test_tflite_chunk_vectors_match_keras_and_average_to_the_clip_call(tflite_files, form, tiny_cnn, speech):
    model = TFLiteModel(tflite_files[form], num_threads=1)
    assert model.chunk_vectors_refusal() is None
    vectors = model.chunk_vectors(speech, hop_s=0.5)
    expected = tiny_cnn.chunk_vectors(speech[np.newaxis], hop_s=0.5)
    assert vectors["embedding"].shape == (1, 6, 8)
    np.testing.assert_allclose(vectors["start_s"], expected["start_s"])
    np.testing.assert_allclose(vectors["embedding"], expected["embedding"], atol=1e-4)
    non_overlapping = model.chunk_vectors(speech, hop_s=NON_OVERLAPPING_S)["embedding"]
    np.testing.assert_allclose(non_overlapping.mean(axis=1), model(speech)["embedding"], rtol=1e-6, atol=1e-7)


def test_chunk_vectors_conversion_takes_one_chunk(tflite_files):
    import json

    card = json.loads(tflite_files["one_chunk"].with_suffix(".json").read_text())
    # "frames": the card's stored key for chunk_vectors=True
    assert card["inputs"][0]["shape"] == [1, 31440] and card["converter"]["frames"] is True


def test_whole_clip_tflite_gives_a_vector_per_chunk(tflite_files, wav2small, speech):
    model = TFLiteModel(tflite_files["clip"], num_threads=1)
    vectors = model.chunk_vectors(speech, hop_s=0.5)
    assert set(vectors) == {"embedding", "scores", "start_s"} and vectors["scores"].shape == (1, 6, 3)
    expected = wav2small.chunk_vectors(speech[np.newaxis], hop_s=0.5)["scores"]
    np.testing.assert_allclose(vectors["scores"], expected, atol=1e-4)


def test_fixed_length_file_without_chunk_vectors_is_refused_naming_the_option(tflite_files, speech):
    model = TFLiteModel(tflite_files["fixed"], num_threads=1)
    message = model.chunk_vectors_refusal()
    assert "fixed [1, 32000] input" in message and "--chunk-vectors" in message and "chunk_vectors=True" in message
    with pytest.raises(ParameterError, match=r"convert --chunk-vectors"):
        model.chunk_vectors(speech)
    with pytest.raises(ParameterError, match=r"convert --chunk-vectors"):
        list(model.stream([speech], hop_s=0.5))


def test_tflite_chunk_vectors_refuse_bad_hops(tflite_files, speech):
    model = TFLiteModel(tflite_files["chunk"])
    for hop in (0, -0.5, 1.96):
        with pytest.raises(ParameterError, match="hop_s must be"):
            model.chunk_vectors(speech, hop_s=hop)


def test_chunk_vectors_resample_other_rates(tflite_files, speech):
    from trillsson_tf.audio import resample
    from trillsson_tf.metrics import parity

    model = TFLiteModel(tflite_files["chunk"])
    at_16k = model.chunk_vectors(speech)["embedding"][0]
    at_44k = model.chunk_vectors(resample(speech, 16000, 44100), sample_rate=44100)["embedding"][0]
    assert at_44k.shape == at_16k.shape and parity(at_16k, at_44k)["min_cosine"] > 0.999


def test_converter_refuses_chunk_vectors_where_they_do_not_apply(tiny_cnn, tmp_path):
    from trillsson_tf.converters.tflite import convert

    with pytest.raises(ParameterError, match="gives chunk vectors already"):
        convert(tiny_cnn, tmp_path / "a.tflite", frontend=False, chunk_vectors=True)
    with pytest.raises(ParameterError, match="one chunk of 31440 samples"):
        convert(tiny_cnn, tmp_path / "b.tflite", chunk_vectors=True, fixed_samples=32000)


# -- trillsson-tf embed --chunk-vectors -----------------------------------------------------------


def test_embed_chunk_vectors_writes_npy_with_times_and_csv_rows(tflite_files, speech, tmp_path, capsys):
    import soundfile

    from trillsson_tf.apps.cli import main

    soundfile.write(tmp_path / "a.wav", speech, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "b.wav", speech[:40000], 16000, subtype="FLOAT")
    model = TFLiteModel(tflite_files["chunk"])
    main(
        [
            "embed",
            str(tflite_files["chunk"]),
            str(tmp_path / "a.wav"),
            str(tmp_path / "b.wav"),
            "--chunk-vectors",
            "--hop",
            "0.5",
            "--out",
            str(tmp_path / "f.npy"),
            "--no-progress",
        ]
    )
    assert "2 files, 8 chunk vectors (8-d)" in capsys.readouterr().out
    vectors = np.load(tmp_path / "f.npy")
    with open(tmp_path / "f.windows.csv") as handle:
        rows = list(csv.reader(handle))
    assert vectors.shape == (8, 8) and rows[0] == ["file", "start_s", "end_s"] and len(rows) == 9
    assert rows[2][1:] == ["0.500", "2.465"] and rows[6][0].endswith("a.wav") and rows[7][0].endswith("b.wav")
    np.testing.assert_allclose(vectors[:6], model.chunk_vectors(speech)["embedding"][0], atol=1e-6)

    summary = embed_to_file(model, [tmp_path / "b.wav"], tmp_path / "f.csv", chunk_vectors=True, hop_s=1.0)
    with open(tmp_path / "f.csv") as handle:
        rows = list(csv.reader(handle))
    assert summary["chunks"] == 1 and rows[0][:4] == ["file", "start_s", "end_s", "v0"] and len(rows[0]) == 11
    np.testing.assert_allclose(
        np.float32(rows[1][3:]), model.chunk_vectors(speech[:40000], hop_s=1.0)["embedding"][0, 0], atol=1e-6
    )


def test_embed_chunk_vectors_bad_input_is_a_clear_error(tflite_files, speech, tmp_path, capsys):
    import soundfile

    from trillsson_tf.apps.cli import main

    soundfile.write(tmp_path / "a.wav", speech, 16000, subtype="FLOAT")
    status = main(
        [
            "embed",
            str(tflite_files["fixed"]),
            str(tmp_path / "a.wav"),
            "--chunk-vectors",
            "--out",
            str(tmp_path / "x.csv"),
        ]
    )
    assert status == 2 and "trillsson-tf convert --chunk-vectors" in capsys.readouterr().err
    with pytest.raises(ParameterError, match="pass chunk_vectors=True"):
        embed_to_file(tflite_files["chunk"], [tmp_path / "a.wav"], tmp_path / "y.csv", hop_s=0.5)
    with pytest.raises(ParameterError, match="hop_s must be"):
        embed_to_file(tflite_files["chunk"], [tmp_path / "a.wav"], tmp_path / "z.csv", chunk_vectors=True, hop_s=0)
    assert not list(tmp_path.glob("[xyz].*"))


# -- the old names ("frames" and co.), for one release ---------------------------------------------


def test_old_frame_names_warn_and_give_the_same_chunk_vectors(tflite_files, tiny_cnn, speech, tmp_path):
    """FRAMES_SIGNATURE_KEY, frames(), frames_refusal(), window_s, FrameStream and its windows, frames_model,
    AudioWindows, and the keywords frames= and frames_hop_s= work for one release, warning."""
    from trillsson_tf import contract, models, runtime
    from trillsson_tf.converters.tflite import convert
    from trillsson_tf.models import _audio_model
    from trillsson_tf.models.export import export_savedmodel

    def old(name):
        return pytest.warns(DeprecationWarning, match=rf"'trillsson_tf\.{name}' is now 'trillsson_tf\.")

    with old(r"contract\.FRAMES_SIGNATURE_KEY"):
        assert contract.FRAMES_SIGNATURE_KEY == contract.CHUNKS_SIGNATURE_KEY == "frames"
    model = TFLiteModel(tflite_files["chunk"], num_threads=1)
    expected = model.chunk_vectors(speech, hop_s=0.5)
    with old(r"runtime\.TFLiteModel\.frames"):
        got = model.frames(speech, hop_s=0.5)
    np.testing.assert_array_equal(got["embedding"], expected["embedding"])
    np.testing.assert_array_equal(got["start_s"], expected["start_s"])
    with old(r"runtime\.TFLiteModel\.frames_refusal"):
        assert model.frames_refusal() is None
    with old(r"runtime\.TFLiteModel\.window_s"):
        assert model.window_s == model.chunk_s == pytest.approx(1.965)
    with old(r"runtime\.FrameStream"):
        assert runtime.FrameStream is runtime.ChunkStream
    stream = model.open_stream(0.5)
    with old(r"runtime\.FrameStream\.windows"):
        assert stream.windows is stream.chunks
    keras_expected = tiny_cnn.chunk_vectors(speech[np.newaxis], hop_s=0.5)["embedding"]
    with old(r"models\.AudioEmbeddingModel\.frames"):
        np.testing.assert_array_equal(tiny_cnn.frames(speech[np.newaxis], hop_s=0.5)["embedding"], keras_expected)
    with old(r"models\.frames_model"):
        assert models.frames_model is models.chunk_vectors_model
    with old(r"models\._audio_model\.AudioWindows"):
        assert _audio_model.AudioWindows is _audio_model.ChunkAudio
    with old(r"converters\.tflite\.convert\(frames=\)"):
        with pytest.raises(ParameterError, match="gives chunk vectors already"):  # passed on as chunk_vectors=True
            convert(tiny_cnn, tmp_path / "a.tflite", frontend=False, frames=True)
    with old(r"models\.export\.export_savedmodel\(frames_hop_s=\)"):
        with pytest.raises(ParameterError, match="hop_s must be"):  # passed on as chunk_hop_s=0
            export_savedmodel(tiny_cnn, tmp_path / "bad", frames_hop_s=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'frame'"):
        convert(tiny_cnn, tmp_path / "c.tflite", frame=True)


def test_old_frames_option_and_keyword_of_embed_warn_and_write_the_same(tflite_files, speech, tmp_path, capsys):
    import soundfile

    from trillsson_tf.apps.cli import build_parser, main

    soundfile.write(tmp_path / "a.wav", speech, 16000, subtype="FLOAT")
    model, wav = str(tflite_files["chunk"]), str(tmp_path / "a.wav")
    assert main(["embed", model, wav, "--chunk-vectors", "--out", str(tmp_path / "new.npy"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["embed", model, wav, "--frames", "--out", str(tmp_path / "old.npy"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("'--frames' is now '--chunk-vectors'") == 1 and "6 chunk vectors" in captured.out
    np.testing.assert_array_equal(np.load(tmp_path / "old.npy"), np.load(tmp_path / "new.npy"))
    assert (tmp_path / "old.windows.csv").read_text() == (tmp_path / "new.windows.csv").read_text()
    parser = build_parser("convert")
    assert parser.parse_args(["convert", "export", "--out", "m.tflite", "--frames"]).chunk_vectors is True
    assert parser.parse_args(["convert", "export", "--out", "m.tflite"]).chunk_vectors is False
    capsys.readouterr()
    for command in ("convert", "embed"):
        with pytest.raises(SystemExit):
            build_parser(command).parse_args([command, "--help"])
        help_text = capsys.readouterr().out
        assert "--chunk-vectors" in help_text and "--frames" not in help_text
    with pytest.warns(DeprecationWarning, match=r"'trillsson_tf\.runtime\.embed_to_file\(frames=\)' is now"):
        summary = embed_to_file(model, [wav], tmp_path / "old.csv", frames=True)
    assert summary["chunks"] == summary["windows"] == 6
