"""trillsson_tf.kinds: every kind is known once, found for real models and files, and served by the converter and the runtime."""

import os

import pytest

from trillsson_tf import kinds
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND
from trillsson_tf.runtime import TFLiteModel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(REPO, "android_demo_assets")
PATCH = DEFAULT_FRONTEND.patch_shape


def test_the_table():
    names = [kind.name for kind in kinds.KINDS]
    assert names == ["chunk", "patch", "clip", "clip_log_mel", "waveform"]
    for kind in kinds.KINDS:
        assert kinds.get(kind.name) is kind and kinds.form(kind.family, kind.frontend_inside) is kind
    assert not kinds.get("clip_log_mel").frontend_inside and kinds.get("clip").whole_clips
    with pytest.raises(ParameterError, match=r"Unknown model kind 'x'. Expected one of: \['chunk'"):
        kinds.get("x")
    with pytest.raises(ParameterError, match=r"waveform model comes only as \['waveform \(frontend=True\)'\]"):
        kinds.form(kinds.WAVEFORM, False)


def test_every_kind_has_a_converter_and_every_input_a_runtime_feed():
    """A new kind is one entry in kinds.KINDS: these fail until the converter and the runtime can serve it."""
    from trillsson_tf.converters import tflite
    from trillsson_tf import runtime

    assert set(tflite._PLANS) | {"waveform"} == {kind.name for kind in kinds.KINDS}
    assert {kind.input_name for kind in kinds.KINDS} <= set(runtime._EMBEDDERS)
    assert {kind.family for kind in kinds.KINDS} - {kinds.WAVEFORM} <= set(tflite._FRONTENDS)


def test_real_models(tiny_model):
    from trillsson_tf import models

    assert kinds.of_model(tiny_model).name == "chunk"
    assert kinds.of_model(tiny_model, frontend=False).name == "patch"
    wav2small = models.build("wav2small", filters=(8, 8), pools=((1, 2), (2, 2)))
    assert kinds.of_model(wav2small).name == "clip" and kinds.of_model(wav2small, frontend=False).name == "clip_log_mel"
    for export_type in (kinds.LAYER_STUDENT_EXPORT, kinds.MULTITASK_EXPORT):
        # "kind" is the key of exports written before it was renamed "export_type": both are read.
        for key in ("export_type", "kind"):
            assert kinds.of_model(tiny_model, {key: export_type}).name == "waveform"
            with pytest.raises(ParameterError, match="frontend=False does not apply"):
                kinds.of_model(tiny_model, {key: export_type}, frontend=False)


def test_old_export_kind_names_warn_and_are_the_export_type_names():
    for old, new in (("LAYER_STUDENT_KIND", "LAYER_STUDENT_EXPORT"), ("MULTITASK_KIND", "MULTITASK_EXPORT")):
        with pytest.warns(
            DeprecationWarning, match=rf"'trillsson_tf\.kinds\.{old}' is now 'trillsson_tf\.kinds\.{new}'"
        ):
            assert getattr(kinds, old) == getattr(kinds, new)
    assert kinds.export_type({"export_type": "multitask", "kind": "layer_student"}) == "multitask"
    assert kinds.export_type(None) is None and kinds.export_type({}) is None


def test_real_tflite_files():
    """The committed Android models: a distilled chunk model and a whole-clip Wav2Small, both audio in."""
    assert TFLiteModel(os.path.join(ASSETS, "embedding_int8.tflite")).kind is kinds.get("chunk")
    clip = TFLiteModel(os.path.join(ASSETS, "wav2small_int8.tflite"))
    assert clip.kind is kinds.get("clip") and clip.frontend_inside


@pytest.mark.parametrize(
    "card, shape, name",
    [
        ({}, (-1, -1), "chunk"),
        ({}, (1, 32000), "chunk"),
        ({}, (-1, *PATCH, 1), "patch"),
        ({}, (1, *PATCH), "patch"),
        ({"clip_model": {"input": "audio"}}, (-1, -1), "clip"),
        ({"clip_model": {"input": "log_mel"}}, (1, 499, 20), "clip_log_mel"),
        ({"output_keys": ["keyword_logits", "speaker_embedding"]}, (1, 16000), "waveform"),
        ({}, (1, 2, 3), None),
    ],
)
def test_of_tflite(card, shape, name):
    kind = kinds.of_tflite(card, shape, PATCH)
    assert (kind and kind.name) == name
