"""ONNX and Python-callable teachers, on ONNX models the tests build with onnx.helper."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from trillsson_tf.errors import ParameterError
from trillsson_tf.teachers import load_teacher
from trillsson_tf.teachers.function import CallableTeacher
from trillsson_tf.teachers.onnx import OnnxTeacher


def _features(audio):
    """numpy twin of the test graph: [mean, mean |x|] over samples -> [batch, 2]."""
    return np.stack([audio.mean(-1), np.abs(audio).mean(-1)], axis=-1)


def _save(path, shape, *, outputs=("embedding",), dtype=TensorProto.FLOAT, rank_in=2):
    """A graph of audio ``shape`` -> ``[.., 2]`` features under each output name; ``'frames'`` adds a time axis."""
    axis = rank_in - 1
    nodes = [
        helper.make_node("ReduceMean", ["audio"], ["mean"], axes=[axis], keepdims=1),
        helper.make_node("Abs", ["audio"], ["abs"]),
        helper.make_node("ReduceMean", ["abs"], ["absmean"], axes=[axis], keepdims=1),
        helper.make_node("Concat", ["mean", "absmean"], ["features"], axis=axis),
    ]
    graph_input = "audio"
    if dtype != TensorProto.FLOAT:  # a model of int16 samples: cast inside, so only its input is wrong
        graph_input = "samples"
        nodes.insert(0, helper.make_node("Cast", ["samples"], ["audio"], to=TensorProto.FLOAT))
    graph_outputs = []
    for name in outputs:
        if name == "frames":  # [batch, 3 frames, 2]: the same vector three times
            nodes.append(helper.make_node("Unsqueeze", ["features", "one"], ["frame"]))
            nodes.append(helper.make_node("Concat", ["frame", "frame", "frame"], [name], axis=1))
            graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        else:
            nodes.append(helper.make_node("Identity", ["features"], [name]))
            graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes,
        "teacher",
        [helper.make_tensor_value_info(graph_input, dtype, shape)],
        graph_outputs,
        initializer=[helper.make_tensor("one", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def audio():
    return np.random.default_rng(0).uniform(-0.5, 0.5, (3, 16000)).astype(np.float32)


def test_dynamic_batch_and_length(tmp_path, audio):
    teacher = load_teacher(_save(tmp_path / "t.onnx", ["batch", "samples"]))
    assert isinstance(teacher, OnnxTeacher) and teacher.window_samples is None and teacher.embedding_dim == 2
    np.testing.assert_allclose(teacher(audio)["embedding"], _features(audio), atol=1e-6)
    assert teacher.identity.startswith("onnx:")


def test_fixed_window_is_averaged(tmp_path, audio):
    teacher = load_teacher(_save(tmp_path / "w.onnx", [1, 4000]))
    assert teacher.window_samples == 4000 and teacher.min_samples == 4000
    windows = audio.reshape(3, 4, 4000)
    np.testing.assert_allclose(teacher(audio)["embedding"], _features(windows).mean(axis=1), atol=1e-6)
    short = teacher(audio[:, :1000])["embedding"]  # padded to one window, counted
    assert short.shape == (3, 2) and teacher.padded_clips == 3


def test_unbatched_rank_one_input(tmp_path, audio):
    teacher = load_teacher(_save(tmp_path / "r1.onnx", ["samples"], rank_in=1))
    np.testing.assert_allclose(teacher(audio)["embedding"], _features(audio), atol=1e-6)


def test_output_choice_and_frames(tmp_path, audio):
    path = _save(tmp_path / "two.onnx", ["batch", "samples"], outputs=("pooled", "frames"))
    with pytest.raises(ParameterError, match=r"several outputs \['pooled', 'frames'\]"):
        load_teacher(path)
    frames = load_teacher(path, output_key="frames")  # [batch, 3, 2] averaged over its frames
    np.testing.assert_allclose(frames(audio)["embedding"], _features(audio), atol=1e-6)
    with pytest.raises(ParameterError, match="'nope' not found"):
        load_teacher(path, output_key="nope")


def test_refuses_non_waveform_inputs(tmp_path):
    with pytest.raises(ParameterError, match=r"must take float32 audio .*tensor\(int16\)"):
        load_teacher(_save(tmp_path / "int.onnx", ["batch", "samples"], dtype=TensorProto.INT16))
    with pytest.raises(ParameterError, match=r"shape \['batch', 'frames', 80\]"):
        load_teacher(_save(tmp_path / "mel.onnx", ["batch", "frames", 80], rank_in=3))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ParameterError, match="broken.onnx' could not be loaded"):
        load_teacher(str(broken))
    with pytest.raises(ParameterError, match="ONNX file not found"):
        load_teacher(str(tmp_path / "missing.onnx"))


def test_python_callable_teacher(audio):
    teacher = load_teacher(_features)
    assert isinstance(teacher, CallableTeacher) and teacher.spec == "_features"
    np.testing.assert_allclose(teacher(audio)["embedding"], _features(audio))
    other = CallableTeacher(lambda batch: _features(batch) * 2, name="_features")
    assert other.identity != teacher.identity  # same name, other outputs: caches must not mix them
    with pytest.raises(ParameterError, match=r"must return \[batch, D\] = \[1, D\]; it returned shape \[1\]"):
        load_teacher(lambda batch: batch.mean(-1))
    with pytest.raises(ParameterError, match="'nan' returned NaN or Inf"):
        CallableTeacher(lambda batch: np.full_like(_features(batch), np.nan), name="nan")
