"""The student zoo: registry, call contract, chunk semantics, save/load, parameter counts."""
import numpy as np
import pytest

from trillsson_tf import models
from trillsson_tf._keras import keras
from trillsson_tf.frontend import numpy_ops

from conftest import TINY_STUDENTS

REQUIRED = (
    "trillsson1", "trillsson2", "trillsson3", "trillsson4", "trillsson5",
    "efficientnetv2b0", "efficientnetv2b1", "efficientnetv2s", "mobilenetv3small", "mobilenetv3large",
)
BIG = {"trillsson3", "trillsson4", "trillsson5", "efficientnetv2s"}


def test_registry_names_and_presets():
    assert set(REQUIRED) <= set(models.available())
    for name in models.available():
        preset = models.get_preset(name)
        assert preset.name == name and preset.description
        assert "embedding_dim" in preset.config


def test_unknown_names_and_options_list_the_choices():
    with pytest.raises(ValueError, match=r"Unknown student 'trillsson9'. Expected one of: \['trillsson1'"):
        models.build("trillsson9")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['depth'\].*embedding_dim"):
        models.build("mobilenetv3small", depth=3)


def check_student(model, clips, embedding_dim):
    """The checks every student passes: contract, chunk mean, batch independence, save/load."""
    assert model.input.name == "audio_samples" and model.input.shape.as_list() == [None, None]
    batch = np.stack([clip[:64000] for clip in clips[:2]])
    output = model(batch)
    assert list(output) == ["embedding"]
    assert output["embedding"].shape == (2, embedding_dim) and output["embedding"].dtype == "float32"
    # Mean over the per-chunk network's outputs on the numpy frontend's patches.
    patches = numpy_ops.log_mel_patches(batch)
    per_chunk = model.chunk_network(patches.reshape(-1, 195, 80, 1)).numpy().reshape(2, 2, embedding_dim)
    np.testing.assert_allclose(output["embedding"].numpy(), per_chunk.mean(axis=1), rtol=1e-3, atol=1e-4)
    # Each clip gets the same vector alone as in a batch.
    alone = model(batch[1:])["embedding"].numpy()
    np.testing.assert_allclose(alone[0], output["embedding"].numpy()[1], rtol=1e-4, atol=1e-5)
    return output["embedding"].numpy()


@pytest.mark.parametrize("name", sorted(TINY_STUDENTS))
def test_tiny_students_pass_the_shared_checks_and_round_trip_keras_files(name, librispeech_clips, tmp_path):
    model = models.build(name, **TINY_STUDENTS[name])
    embedding = check_student(model, librispeech_clips, TINY_STUDENTS[name]["embedding_dim"])
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, models.AudioEmbeddingModel)
    batch = np.stack([clip[:64000] for clip in librispeech_clips[:2]])
    np.testing.assert_allclose(restored(batch)["embedding"].numpy(), embedding, atol=1e-5)
    assert restored.chunk_network.count_params() == model.chunk_network.count_params()


@pytest.mark.parametrize("name", [n for n in REQUIRED if n not in BIG] + ["ast_tiny"])
def test_every_small_registered_model_has_the_hub_contract(name, librispeech_clips):
    model = models.build(name, embedding_dim=48)
    output = model(np.stack([clip[:20000] for clip in librispeech_clips[:2]]))["embedding"]
    assert output.shape == (2, 48)
    assert np.all(np.isfinite(output.numpy()))
    assert models.chunk_network(model).output_shape == (None, 48)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BIG))
def test_every_big_registered_model_has_the_hub_contract(name, librispeech_clips):
    model = models.build(name)
    assert model(librispeech_clips[0][np.newaxis, :20000])["embedding"].shape == (1, 1024)


@pytest.mark.parametrize("name", ["trillsson1", "trillsson2", "trillsson3", "trillsson5"])
def test_parameter_counts_within_ten_percent_of_published(name):
    preset = models.get_preset(name)
    count = models.build(name).count_params()
    assert abs(count - preset.published_params) / preset.published_params < 0.10, count


@pytest.mark.slow
def test_trillsson4_deviation_is_the_documented_one():
    count = models.build("trillsson4").count_params()
    assert 54_000_000 < count < 55_000_000
    assert "14%" in models.get_preset("trillsson4").assumed


def test_embedding_dim_equal_to_pooled_width_adds_no_head():
    model = models.build("mobilenetv3small", embedding_dim=576)
    assert "projection" not in [layer.name for layer in model.chunk_network.layers]


def test_bad_input_to_a_model_raises_clear_errors(tiny_model):
    good = np.zeros((1, 16000), np.float32)
    with pytest.raises(TypeError, match="int16"):
        tiny_model(good.astype(np.int16))
    with pytest.raises(ValueError, match="mix down"):
        tiny_model(np.zeros((1, 16000, 2), np.float32))
    with pytest.raises(ValueError, match="empty"):
        tiny_model(np.zeros((1, 0), np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        tiny_model(np.full((1, 16000), np.nan, np.float32))
    with pytest.raises(ValueError, match="44100 Hz"):
        tiny_model(good, sample_rate=44100)
    assert tiny_model(good, sample_rate=16000)["embedding"].shape == (1, 32)


def test_chunk_gflops_counts_real_work(tiny_model):
    small = models.chunk_gflops(tiny_model.chunk_network)
    wider = models.chunk_gflops(models.build("trillsson1", alpha=0.2, blocks=(1, 1, 1, 1)).chunk_network)
    assert 0 < small < wider


def test_tiny_cnn_presets_fit_the_82k_budget_of_the_speech_embedding_student():
    # tiny_cnn_k5 differs from tiny_cnn only in its depthwise kernels (5x5 instead of 3x3).
    for name, parameters, kernel in (("tiny_cnn", 74_156, (3, 3)), ("tiny_cnn_k5", 80_044, (5, 5))):
        model = models.build(name)
        assert model.count_params() == parameters <= 82_000
        assert model.chunk_network.get_layer("block1_dw").kernel_size == kernel
        assert model.chunk_network.output_shape == (None, 96)
