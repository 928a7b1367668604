"""LiteRT's quantizer (``convert(quantizer='litert')``, ai-edge-quantizer 0.10.0): recipes, error report, card, metadata.

A tiny student's chunk network is converted to float32 once; the recipes run on its bytes and on
real LibriSpeech patches, and one full conversion checks the card, the metadata and the runtime.
"""

import importlib.util
import sys

import numpy as np
import pytest

from trillsson_tf.converters import litert_quantizer
from trillsson_tf.converters.metadata import read_metadata
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import numpy_ops
from trillsson_tf.metrics import parity
from trillsson_tf.runtime import TFLiteModel

needs_quantizer = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_quantizer") is None, reason="the [litert-quantizer] extra is not installed"
)


@pytest.fixture(scope="module")
def float_patch(tmp_path_factory, tiny_model):
    """The tiny student's chunk network as a float32 patch-in ``.tflite``: (path, bytes)."""
    from trillsson_tf.converters.tflite import convert

    path = tmp_path_factory.mktemp("litert_quantizer") / "float32.tflite"
    convert(tiny_model, path, frontend=False)
    return path, path.read_bytes()


@pytest.fixture(scope="module")
def patches(librispeech_clips):
    """Real speech as log-mel patches float32 [n, 195, 80, 1]: (calibration, held-out)."""
    rows = [numpy_ops.log_mel_patches(clip[np.newaxis])[0][..., np.newaxis] for clip in librispeech_clips]
    return np.concatenate(rows[:2]).astype(np.float32), np.concatenate(rows[2:]).astype(np.float32)


def _vectors(content, patches):
    model = TFLiteModel(content, num_threads=1)
    return model.pool.run_chunks(patches)


@needs_quantizer
def test_recipes_size_fidelity_and_report(float_patch, patches):
    path, content = float_patch
    calibration, held_out = patches
    expected = _vectors(content, held_out)
    results = {}
    for recipe in litert_quantizer.RECIPES:
        quantized, entry = litert_quantizer.quantize(
            content, recipe, input_name="log_mel_patch", report_inputs=calibration, calibration=calibration
        )
        results[recipe] = (len(quantized), parity(expected, _vectors(quantized, held_out)), entry)
        layers = entry["layers"]
        assert entry["recipe"] == recipe and entry["version"] == "0.10.0" and entry["report_rows"] == len(calibration)
        assert [layer["layer"] for layer in layers] == [row["layer"] for row in litert_quantizer.weight_layers(content)]
        assert all(0 < layer["output_cosine"] <= 1 and layer["added_error"] >= 0 for layer in layers)
    bits = {
        recipe: {layer["op"]: layer["weight_bits"] for layer in entry["layers"]}
        for recipe, (*_, entry) in results.items()
    }
    assert set(bits["int8-weights"].values()) == {8} and {"CONV_2D", "FULLY_CONNECTED"} <= set(bits["int8-weights"])
    assert bits["int4-weights"] == {op: 4 if op in ("CONV_2D", "FULLY_CONNECTED") else 8 for op in bits["int4-weights"]}
    sizes = {recipe: size for recipe, (size, *_) in results.items()}
    assert sizes["int4-weights"] < sizes["int8-weights"] < len(content) / 3
    assert results["int8-weights"][1]["mean_cosine"] > 0.999 and results["int8"][1]["mean_cosine"] > 0.99
    assert results["int4-weights"][1]["mean_cosine"] > 0.9
    assert results["int4-weights"][2]["int8_within"] == {"size_ratio": 0.15, "layers": []}  # 0.24 of float32 already
    # The mixed recipe keeps float exactly the layers the int4 report flagged, and is closer to float than int4.
    mixed = results["int4-mixed"][2]
    flagged = [layer["layer"] for layer in mixed["int4_report"] if layer["flagged"]]
    assert flagged and mixed["float_layers"] == sorted(flagged)
    assert {layer["layer"] for layer in mixed["layers"] if layer["weight_bits"] == 32} == set(flagged)
    assert results["int4-mixed"][1]["mean_cosine"] > results["int4-weights"][1]["mean_cosine"]


@needs_quantizer
def test_kernels_already_on_the_int4_grid_are_stored_exactly(tmp_path, patches):
    """What ``optimize --int4`` exports: min-max keeps its grids (OCTAV's clipping would round them again),
    int4 for most kernels, int8 for the layers it trained at int8."""
    from conftest import TINY_STUDENTS
    from trillsson_tf import models
    from trillsson_tf._keras import keras
    from trillsson_tf.converters.tflite import convert
    from trillsson_tf.formats.weight_grid import snap_to_grid

    keras.utils.set_random_seed(5)
    model = models.build("trillsson1", **TINY_STUDENTS["trillsson1"])
    snapped = {}
    for layer in model.chunk_network.layers:
        if type(layer).__name__ in ("Conv2D", "Dense"):
            weights, snapped[layer.name] = layer.get_weights(), 8 if not snapped else 4  # the first one at int8
            layer.set_weights([snap_to_grid(weights[0], bits=snapped[layer.name]), *weights[1:]])
    path = tmp_path / "on_grid.tflite"
    convert(model, path, frontend=False)
    content = path.read_bytes()
    calibration, held_out = patches
    rows = litert_quantizer.weight_layers(content)
    assert {row["op"] for row in rows if row["grid_bits"]} == {"CONV_2D", "FULLY_CONNECTED"}
    assert not any(row["grid_bits"] for row in rows if row["op"] not in ("CONV_2D", "FULLY_CONNECTED"))
    quantized, entry = litert_quantizer.quantize(
        content, "int4-weights", input_name="log_mel_patch", report_inputs=calibration
    )
    for bits in (4, 8):
        layers = {row["layer"] for row in rows if row["grid_bits"] == bits}
        assert set(entry[f"int{bits}_grid_layers"]) == layers
        assert len(layers) == list(snapped.values()).count(bits) and layers
        assert {layer["weight_bits"] for layer in entry["layers"] if layer["layer"] in layers} == {bits}
    result = parity(_vectors(content, held_out), _vectors(quantized, held_out))
    assert result["mean_cosine"] > 0.99999 and result["max_abs_diff"] < 1e-3 * result["reference_rms"] * 100


def test_int8_within_takes_the_most_error_per_weight_that_fits_the_size():
    rows = [
        {"layer": "net/a", "weight_bits": 4, "weight_count": 1000, "added_error": 0.01},  # 1e-5 per weight
        {"layer": "net/b", "weight_bits": 4, "weight_count": 100, "added_error": 0.005},  # 5e-5: first
        {"layer": "net/c", "weight_bits": 8, "weight_count": 10, "added_error": 1.0},  # int8 already
        {"layer": "net/d", "weight_bits": 4, "weight_count": 400, "added_error": 0.001},  # 2.5e-6
    ]
    # Room: 0.15 * 10,000 - 1,000 = 500 bytes. b costs 50; a (500) no longer fits; d (200) does.
    assert litert_quantizer.int8_within(rows, 1000, 10000) == ["b", "d"]
    assert litert_quantizer.int8_within(rows, 1000, 10000, size_ratio=0.2) == ["b", "a", "d"]
    assert litert_quantizer.int8_within(rows, 1600, 10000) == []  # over the size already


@needs_quantizer
def test_named_float_layers_and_bad_recipes(float_patch, patches):
    _, content = float_patch
    calibration, _ = patches
    layer = litert_quantizer.weight_layers(content)[-1]["layer"]
    _, entry = litert_quantizer.quantize(
        content, "int4-weights", input_name="log_mel_patch", report_inputs=calibration, float_layers=[layer]
    )
    assert entry["float_layers"] == [layer] and entry["layers"][-1]["weight_bits"] == 32
    with pytest.raises(ParameterError, match=r"layers this model does not have: \['block9_pw'\]. Its layers"):
        litert_quantizer.quantize(
            content, "int4-mixed", input_name="log_mel_patch", report_inputs=calibration, float_layers=["block9_pw"]
        )
    with pytest.raises(ParameterError, match="static int8 recipe needs representative audio"):
        litert_quantizer.quantize(content, "int8", input_name="log_mel_patch", report_inputs=calibration)
    with pytest.raises(ParameterError, match=r"Unknown LiteRT quantizer recipe 'int3'.*'int4-mixed'"):
        litert_quantizer.check_recipe("int3")


def test_without_the_extra_the_message_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)  # import fails as if not installed
    with pytest.raises(ParameterError, match=r"pip install 'trillsson-tf\[litert-quantizer\]'"):
        litert_quantizer.check_recipe("int4-weights")


@needs_quantizer
def test_convert_writes_the_report_into_the_card_and_checked_metadata(tiny_model, tmp_path, librispeech_clips):
    from trillsson_tf.converters.tflite import convert

    path = tmp_path / "int4.tflite"
    card = convert(
        tiny_model,
        path,
        frontend=False,
        quantizer="litert",
        quantize="int4-mixed",
        representative_audio=np.stack([clip[:32000] for clip in librispeech_clips[:2]]),
    )
    assert card["quantize"] == "int4-mixed" and card["quantizer"]["recipe"] == "int4-mixed"
    assert card["quantizer"]["layers"] and card["quantizer"]["report_rows"] == 2  # one patch per 2 s clip
    assert card["parity"]["mean_cosine"] > 0.95 and card["size_bytes"] == path.stat().st_size
    metadata = read_metadata(path.read_bytes())
    assert metadata["name"] == card["tflite_metadata"]["name"] and metadata["inputs"][0]["content"] == "feature"
    runtime = TFLiteModel(path, num_threads=1)
    assert runtime.card["quantizer"]["layers"] == card["quantizer"]["layers"]
    assert runtime(librispeech_clips[3])["embedding"].shape == (1, runtime.embedding_dim) == (1, 32)


def test_convert_refuses_mixed_up_quantizers(tiny_model, tmp_path):
    from trillsson_tf.converters.tflite import convert

    with pytest.raises(ParameterError, match="is a recipe of LiteRT's quantizer: add quantizer='litert'"):
        convert(tiny_model, tmp_path / "a.tflite", quantize="int4-weights")
    with pytest.raises(ParameterError, match="Unknown LiteRT quantizer recipe 'float16'"):
        convert(tiny_model, tmp_path / "b.tflite", quantize="float16", quantizer="litert")
    with pytest.raises(ParameterError, match=r"quantizer must be one of \['tensorflow', 'litert'\]"):
        convert(tiny_model, tmp_path / "c.tflite", quantizer="onnx")


@needs_quantizer
def test_the_frontend_inside_stays_float(tiny_model, tmp_path):
    """Audio in: LiteRT's quantizer leaves every op of the log-mel frontend float (the mel matrix too)."""
    from trillsson_tf.converters.tflite import convert

    card = convert(tiny_model, tmp_path / "w8.tflite", quantizer="litert", quantize="int8-weights")
    layers = card["quantizer"]["layers"]
    frontend = [layer for layer in layers if "/log_mel_patches/" in layer["layer"] + "/"]
    network = [layer for layer in layers if "/chunk_network/" in layer["layer"] + "/"]
    assert frontend and {layer["weight_bits"] for layer in frontend} == {32}
    assert network and {layer["weight_bits"] for layer in network} == {8}
    assert card["quantizer"]["frontend_layers"] == ["log_mel_patches"] and card["parity"]["mean_cosine"] > 0.999
