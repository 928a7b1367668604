"""The student zoo: registry, families, chunk and frame semantics, parameter counts (the shared checks: test_students.py)."""

import numpy as np
import pytest

from trillsson_tf import models
from trillsson_tf.frontend import numpy_ops
from trillsson_tf.models import distil

from conftest import TINY_STUDENTS

REQUIRED = (
    "trillsson1",
    "trillsson2",
    "trillsson3",
    "trillsson4",
    "trillsson5",
    "efficientnetv2b0",
    "efficientnetv2b1",
    "efficientnetv2s",
    "mobilenetv3small",
    "mobilenetv3large",
)
BIG = {"trillsson3", "trillsson4", "trillsson5", "efficientnetv2s"}


def test_registry_names_and_presets():
    assert set(REQUIRED) <= set(models.available())
    for name in models.available():
        preset = models.get_preset(name)
        assert preset.name == name and preset.description
        # The output width D: embedding_dim, or a layer student's transformer width.
        assert ("width" if preset.family == "waveform" else "embedding_dim") in preset.config


def test_unknown_names_and_options_list_the_choices():
    with pytest.raises(ValueError, match=r"Unknown student 'trillsson9'. Expected one of: \['trillsson1'"):
        models.build("trillsson9")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['depth'\].*embedding_dim"):
        models.build("mobilenetv3small", depth=3)


def test_every_preset_says_its_family_and_families_partition_the_registry():
    families = {name: models.get_preset(name).family for name in models.available()}
    assert set(families.values()) == set(models.FAMILIES)
    assert sum((models.available(family=family) for family in models.FAMILIES), ()) == tuple(
        name for family in models.FAMILIES for name in models.available() if families[name] == family
    )
    assert models.available(family="clip") == ("wav2small",)
    assert models.available(family="waveform") == ("distil-small",)
    with pytest.raises(
        ValueError, match=r"Unknown student family 'layer'. Expected one of: \['chunk', 'clip', 'waveform'\]"
    ):
        models.available(family="layer")
    with pytest.raises(ValueError, match="Unknown student family 'cnn'"):
        models.StudentPreset(name="x", family="cnn", build=None, config={}, description="")


def test_layer_student_is_the_encoder_then_its_mean_over_frames():
    # The deployable form distill-layers exports: encoder, then GlobalAveragePooling1D as 'embedding'.
    model = models.build("distil-small", width=16, depth=1, conv_channels=16, pos_conv_kernel=16, heads=2, ffn_dim=64)
    assert model.name == "distil-small_student" and model.family == "waveform"
    assert model.encoder.name == distil.ENCODER_NAME and models.inner_network(model) is model.encoder
    assert model.frontend is None and model.sample_rate_hz == 16000 and model.min_samples == 16000
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 20000)).astype(np.float32)
    frames = model.encoder(audio).numpy()
    assert frames.shape == (2, distil.num_frames(20000), 16)
    np.testing.assert_allclose(model(audio)["embedding"].numpy(), frames.mean(axis=1), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no chunk network; use .encoder"):
        model.chunk_network  # noqa: B018
    assert models.get_preset("distil-small").config["width"] == 768  # DistilHuBERT's layout by default


@pytest.mark.parametrize("name", ["trillsson1", "ast_tiny"])
def test_chunk_students_average_their_chunk_network_over_2s_chunks(name, speech_batch):
    model = models.build(name, **TINY_STUDENTS[name])
    output = model(speech_batch)["embedding"].numpy()
    # Mean over the per-chunk network's outputs on the numpy frontend's patches (4 s: two chunks).
    patches = numpy_ops.log_mel_patches(speech_batch)
    dim = TINY_STUDENTS[name]["embedding_dim"]
    per_chunk = model.chunk_network(patches.reshape(-1, 195, 80, 1)).numpy().reshape(2, 2, dim)
    np.testing.assert_allclose(output, per_chunk.mean(axis=1), rtol=1e-3, atol=1e-4)


# trillsson2 is efficientnetv2b1 with another name: built once.
@pytest.mark.parametrize("name", [n for n in REQUIRED if n not in BIG and n != "trillsson2"] + ["ast_tiny"])
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
    # int16, stereo and NaN audio are refused for every student in tests/test_students.py.
    good = np.zeros((1, 16000), np.float32)
    with pytest.raises(ValueError, match="empty"):
        tiny_model(np.zeros((1, 0), np.float32))
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
