"""trillsson_tf.litert: (de)quantization of int8 and uint8 tensors, tensor cards, runners, weight counts, op table.

Real files: Google's speech embedding (two ``.tflite`` files in the pyopen-wakeword wheel) and
the committed Android demo models; no TensorFlow is needed.
"""

import os

import numpy as np
import pytest

from trillsson_tf import litert
from trillsson_tf.teachers import SpeechEmbeddingTeacher

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDING_INT8 = os.path.join(REPO, "android_demo_assets", "embedding_int8.tflite")


def _details(dtype, scale, zero_point, shape=(1, 4)):
    return {"dtype": dtype, "quantization": (scale, zero_point), "shape_signature": np.array(shape)}


@pytest.mark.parametrize("dtype, zero_point", [(np.int8, -3), (np.uint8, 128), (np.uint8, 0)])
def test_quantize_then_dequantize_round_trips_within_half_a_step(dtype, zero_point):
    scale = 0.02
    limits = np.iinfo(dtype)
    low, high = (limits.min - zero_point) * scale, (limits.max - zero_point) * scale
    values = np.linspace(low, high, 101, dtype=np.float32)
    details = _details(dtype, scale, zero_point)
    quantized = litert.quantize(values, details)
    assert quantized.dtype == dtype
    assert quantized.min() == limits.min and quantized.max() == limits.max
    restored = litert.dequantize(quantized, details)
    assert restored.dtype == np.float32
    np.testing.assert_allclose(restored, values, atol=scale / 2 + 1e-6)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_quantize_clips_out_of_range_values(dtype):
    details = _details(dtype, 0.1, 0)
    limits = np.iinfo(dtype)
    quantized = litert.quantize(np.array([-1e6, 1e6], np.float32), details)
    assert quantized.tolist() == [limits.min, limits.max]


def test_float_and_unquantized_tensors_are_cast():
    values = np.array([0.25, -1.5], np.float32)
    assert litert.quantize(values, _details(np.float32, 0.0, 0)) is values  # no copy for float32
    np.testing.assert_array_equal(litert.quantize(np.array([1.0, 2.0]), _details(np.int32, 0.0, 0)), [1, 2])
    assert litert.dequantize(np.array([3, 4], np.int8), _details(np.int8, 0.0, 0)).tolist() == [3.0, 4.0]


def test_tensor_card():
    assert litert.tensor_card("x", _details(np.int8, 0.5, -2, (-1, 195, 80, 1))) == {
        "name": "x",
        "shape": [-1, 195, 80, 1],
        "dtype": "int8",
        "quantization": {"scale": 0.5, "zero_point": -2},
    }
    assert litert.tensor_card("y", _details(np.float32, 0.0, 0))["quantization"] is None


def test_main_subgraph_runs_like_the_signature_runner():
    path = os.path.join(SpeechEmbeddingTeacher.models_dir(), SpeechEmbeddingTeacher.MEL_MODEL)
    signature = litert.runner(litert.make_interpreter(model_path=path))
    subgraph = litert.MainSubgraph(litert.make_interpreter(model_path=path))
    audio = np.random.default_rng(0).uniform(-3000, 3000, (1, 16000)).astype(np.float32)
    (want,) = signature(input=audio).values()
    (input_name,) = subgraph.get_input_details()
    for length in (16000, 8000, 16000):  # resized when the length changes, and back
        (got,) = subgraph(**{input_name: audio[:, :length]}).values()
    np.testing.assert_array_equal(got, want)


def test_parameter_count_and_op_table_of_a_real_int8_model():
    assert 10_000 < litert.parameter_count(EMBEDDING_INT8) < 200_000
    table = litert.op_table(open(EMBEDDING_INT8, "rb").read())
    ops = {row["op"] for row in table}
    assert {"RFFT2D", "CONV_2D"} <= ops and {"index", "op", "inputs", "outputs", "float"} <= set(table[0])
    float_ops = {row["op"] for row in table if row["float"]}
    assert "RFFT2D" in float_ops and "QUANTIZE" not in float_ops  # the float frontend, not the quantize plumbing
    assert any("int8" in row["inputs"] for row in table if row["op"] == "CONV_2D")


def test_no_interpreter_package_is_a_clear_error(monkeypatch):
    import sys

    from trillsson_tf.errors import TrillssonError

    for module_name in litert.INTERPRETER_MODULES:
        monkeypatch.setitem(sys.modules, module_name, None)
    with pytest.raises(TrillssonError, match="ai-edge-litert.*tflite-runtime"):
        litert.interpreter_class()
