"""The shared student harness: every registered student, in its tiny configuration, passes the same checks.

Parametrized over ``models.available()``, so a newly registered student is covered at once (and
fails here until ``conftest.TINY_STUDENTS`` has a tiny configuration for it):

- the call contract: float32 ``[batch, samples]`` at 16 kHz in, a dict with exactly its one
  output key (``embedding`` or ``scores``), ``[batch, D]`` float32, finite; each clip the same
  alone as in a batch; any length; bad audio refused with the toolkit's errors;
- config round trip: ``models.build(**build_spec)`` (through JSON, as the export stores it)
  gives the same architecture, and with the weights copied the same outputs;
- save/load: ``model.keras`` loads back as the same class with the same outputs;
- TFLite parity: the float32 ``.tflite`` run by :class:`trillsson_tf.runtime.TFLiteModel` on
  real speech follows the Keras model (cosine >= 0.9999 for every clip).

Students whose tiny configurations build the same network (the EfficientNetV2 presets all
shrink to B0, ``trillsson5`` and ``ast_tiny`` to one AST) are one case, named after all of them.
"""

import dataclasses
import json

import numpy as np
import pytest

from trillsson_tf.converters import tflite
from trillsson_tf import kinds, models
from trillsson_tf._keras import keras
from trillsson_tf.errors import AudioTypeError, ParameterError
from trillsson_tf.metrics import parity
from trillsson_tf.runtime import TFLiteModel

from conftest import TINY_STUDENTS

MIN_COSINE = 0.9999
_CLIP_SAMPLES = 24000  # 1.5 s: under one 2 s chunk, over Wav2Small's 1 s


@dataclasses.dataclass
class Case:
    """One tiny student, built once, with what the checks share: its audio, outputs and files."""

    model: object
    key: str
    dim: int
    audio: np.ndarray
    output: np.ndarray
    folder: object


def _assert_same(actual, expected):
    """Equal up to float32 round-off, relative to the outputs' size (untrained MobileNetV3s give about 1e-7)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _network(name: str):
    """What the tiny configuration of ``name`` builds: equal for presets that build the same network."""
    if name not in TINY_STUDENTS:
        return name  # a case of its own, which fails in the fixture
    preset = models.get_preset(name)
    return (
        preset.family,
        preset.build,
        preset.output_key,
        repr(sorted({**preset.config, **TINY_STUDENTS[name]}.items())),
    )


def _cases() -> list:
    """One parameter per tiny network: the tuple of the registered students that build it."""
    groups = {}
    for name in models.available():
        groups.setdefault(_network(name), []).append(name)
    return [pytest.param(tuple(names), id="+".join(names)) for names in groups.values()]


CASES = _cases()


@pytest.fixture(scope="module")
def cases(librispeech_clips, tmp_path_factory):
    """``names -> Case``, each built on first use."""
    built = {}

    def case(names: tuple) -> Case:
        if names not in built:
            name = names[0]
            if name not in TINY_STUDENTS:
                pytest.fail(
                    f"Student {name!r} has no tiny configuration: add one to TINY_STUDENTS in tests/conftest.py."
                )
            keras.utils.set_random_seed(0)
            model = models.build(name, **TINY_STUDENTS[name])
            key = models.get_preset(name).output_key
            audio = np.stack([clip[:_CLIP_SAMPLES] for clip in librispeech_clips[:2]])
            output = model(audio)[key].numpy()
            built[names] = Case(model, key, output.shape[-1], audio, output, tmp_path_factory.mktemp(name))
        return built[names]

    return case


def test_every_student_has_a_tiny_configuration():
    names = models.available()
    missing = [name for name in names if name not in TINY_STUDENTS]
    assert not missing, f"add tiny configurations to TINY_STUDENTS in tests/conftest.py for {missing}"
    assert set(TINY_STUDENTS) <= set(names), sorted(set(TINY_STUDENTS) - set(names))


@pytest.mark.parametrize("names", CASES)
def test_call_contract(names, cases, fsdd_clips, librispeech_clips):
    case = cases(names)
    model, key = case.model, case.key
    assert model.input.name == models.AUDIO_INPUT_NAME and model.input.shape.as_list() == [None, None]
    assert model.family == models.get_preset(names[0]).family
    outputs = model(case.audio)
    assert list(outputs) == [key] and key in models.OUTPUT_KEYS and models.output_key(model) == key
    assert outputs[key].dtype == "float32" and case.output.shape == (2, case.dim)
    assert np.all(np.isfinite(case.output)) and np.std(case.output) > 0
    # Two different clips, two different outputs; each clip the same alone as in the batch.
    assert np.abs(case.output[0] - case.output[1]).max() > 1e-3 * np.abs(case.output).max()
    _assert_same(model(case.audio[1:])[key].numpy()[0], case.output[1])
    # Any length: a clip under 1 s (padded inside the model) and one of 3.5 s.
    for clip in (fsdd_clips[0], librispeech_clips[2][:56000]):
        vector = model(clip[np.newaxis])[key].numpy()
        assert vector.shape == (1, case.dim) and np.all(np.isfinite(vector))
    with pytest.raises(AudioTypeError, match="int16"):
        model((case.audio * 32767).astype(np.int16))
    with pytest.raises(ParameterError, match="mix down"):
        model(np.stack([case.audio, case.audio], axis=-1))
    with pytest.raises(ParameterError, match="NaN or Inf"):
        model(np.full((1, 16000), np.nan, np.float32))


def _architecture(model) -> list:
    """Layer classes and weight shapes, in order: equal for the same architecture."""
    return [
        (layer.__class__.__name__, [tuple(w.shape) for w in layer.weights])
        for layer in model.submodules
        if isinstance(layer, keras.layers.Layer)
    ]


@pytest.mark.parametrize("names", CASES)
def test_config_round_trip(names, cases):
    case = cases(names)
    spec = json.loads(json.dumps(case.model.build_spec))  # as the export metadata stores it
    again = models.build(spec["name"], **spec["config"])
    assert type(again) is type(case.model) and again.count_params() == case.model.count_params()
    assert _architecture(again) == _architecture(case.model)
    again.set_weights(case.model.get_weights())
    _assert_same(again(case.audio)[case.key].numpy(), case.output)


@pytest.mark.parametrize("names", CASES)
def test_save_and_load(names, cases):
    case = cases(names)
    path = str(case.folder / "model.keras")
    case.model.save(path, overwrite=True)
    restored = keras.models.load_model(path)
    assert type(restored) is type(case.model) and restored.family == case.model.family
    assert models.inner_network(restored).count_params() == models.inner_network(case.model).count_params()
    _assert_same(restored(case.audio)[case.key].numpy(), case.output)


@pytest.mark.parametrize("names", CASES)
def test_tflite_parity(names, cases, librispeech_clips):
    case = cases(names)
    path = case.folder / "model.tflite"
    if case.model.family == kinds.WAVEFORM:
        # Layer students convert at the fixed length they were trained on, and are compared on clips of that length.
        audio = np.stack([clip[: case.model.min_samples] for clip in librispeech_clips[:2]])
        reference = case.model(audio)[case.key].numpy()
    else:
        audio, reference = case.audio, case.output
    tflite.convert(case.model, path, quantize="float32", parity_audio=audio, strict=True)
    candidate = TFLiteModel(str(path))(audio)[models.EMBEDDING_KEY]
    assert candidate.shape == reference.shape
    scores = parity(reference, candidate)
    assert scores["min_cosine"] >= MIN_COSINE, scores
