"""trillsson_tf.converters.onnx: per-chunk networks and convolution-frontend models run in onnxruntime like Keras; STFT frontends are refused."""

import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")

from trillsson_tf.converters import onnx as onnx_converter  # noqa: E402
from trillsson_tf.converters.common import log_mel_patch_rows  # noqa: E402
from trillsson_tf import models  # noqa: E402
from trillsson_tf.apps import cli  # noqa: E402
from trillsson_tf.errors import ConversionError, ParameterError, TrillssonError  # noqa: E402


def test_chunk_network_matches_keras_in_onnxruntime(tmp_path, tiny_model, speech_batch):
    out = tmp_path / "tiny.onnx"
    card = onnx_converter.convert_onnx(tiny_model, out, frontend=False)
    assert card["inputs"] == [{"name": "log_mel_patch", "shape": [None, 195, 80, 1], "dtype": "tensor(float)"}]
    assert card["outputs"] == [{"name": "embedding", "shape": [None, 32], "dtype": "tensor(float)"}]
    scores = card["parity"]
    assert scores["rows"] == 12 and scores["passed"] and scores["mean_cosine"] > 0.99999
    assert scores["max_abs_diff"] < 1e-4 * max(1.0, scores["reference_rms"]) and scores["reference_rms"] > 1e-3
    # float32 weights plus a little graph; tf2onnx folds BatchNorm (its moving statistics) into the convolutions.
    parameters = tiny_model.chunk_network.count_params()
    assert 0.9 * 4 * parameters < card["size_bytes"] < 1.1 * 4 * parameters + 20_000
    with open(tmp_path / "tiny.json") as handle:
        assert json.load(handle)["ops"]["Conv"] >= 5
    # On other input (a batch it never saw) the file still follows the chunk network.
    patches = log_mel_patch_rows(speech_batch[:, ::-1].copy(), tiny_model.frontend)
    session = onnx_converter.onnx_session(out.read_bytes())
    expected = tiny_model.chunk_network(patches).numpy()
    np.testing.assert_allclose(onnx_converter.onnx_outputs(session, patches), expected, rtol=1e-4, atol=1e-5)


def test_stft_frontend_is_refused_with_what_to_export_instead(tmp_path, tiny_model):
    with pytest.raises(
        ConversionError, match=r"STFT.*\['ComplexAbs', 'RFFT'\].*tf2onnx cannot express.*frontend=False"
    ):
        onnx_converter.convert_onnx(tiny_model, tmp_path / "whole.onnx")
    assert not os.path.exists(tmp_path / "whole.onnx")


@pytest.mark.skipif("wav2small" not in models.available(), reason="the wav2small student is not registered")
def test_wav2small_whole_model_with_its_convolution_frontend(tmp_path, librispeech_clips):
    model = models.build("wav2small")
    card = onnx_converter.convert_onnx(model, tmp_path / "w2s.onnx")
    assert card["inputs"][0]["name"] == "audio_samples" and card["inputs"][0]["shape"] == [None, None]
    assert card["outputs"][0]["name"] == "scores" and card["outputs"][0]["shape"] == [None, 3]
    assert card["parity"]["passed"] and card["parity"]["max_abs_diff"] < 1e-4
    assert "Conv" in card["ops"] and not {"DFT", "STFT"} & set(card["ops"])
    assert 4 * model.count_params() < card["size_bytes"] < 8 * model.count_params()
    # Any length: a short clip (mirror-padded inside) and a long one.
    session = onnx_converter.onnx_session((tmp_path / "w2s.onnx").read_bytes())
    for clip in (librispeech_clips[0][:8000], librispeech_clips[1][:80000]):
        expected = model(clip[np.newaxis])["scores"].numpy()
        np.testing.assert_allclose(onnx_converter.onnx_outputs(session, clip[np.newaxis]), expected, atol=1e-4)
    with pytest.raises(ParameterError, match="no per-chunk network.*frontend=True"):
        onnx_converter.convert_onnx(model, tmp_path / "w2s_patch.onnx", frontend=False)


def test_cli_convert_format_onnx_and_bad_input(tmp_path, tiny_model, capsys, monkeypatch):
    keras_file = str(tmp_path / "tiny.keras")
    tiny_model.save(keras_file)
    out = str(tmp_path / "onnx")
    assert cli.main(["convert", keras_file, "--format", "onnx", "--no-frontend", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "model.onnx" in printed and "parity in onnxruntime" in printed
    assert os.path.isfile(os.path.join(out, "model.onnx")) and os.path.isfile(os.path.join(out, "model.json"))
    assert cli.main(["convert", keras_file, "--format", "onnx", "--no-frontend", "--out", out]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main(["convert", keras_file, "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "STFT" in capsys.readouterr().err
    with pytest.raises(ParameterError, match="opset must be an integer >= 13"):
        onnx_converter.convert_onnx(tiny_model, tmp_path / "o.onnx", opset=9)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if the [onnx] extra were not installed
    with pytest.raises(TrillssonError, match=r"pip install 'trillsson-tf\[onnx\]'"):
        onnx_converter.convert_onnx(tiny_model, tmp_path / "o.onnx")
