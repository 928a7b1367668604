"""The frontend: mel matrix, TF vs numpy parity on real speech, padding and chunk counts."""

import numpy as np
import pytest

from trillsson_tf._keras import tf
from trillsson_tf.frontend import DEFAULT_FRONTEND, FrontendConfig, mel_matrix, numpy_ops, tf_ops


def test_mel_matrix_is_tensorflows():
    expected = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=80,
        num_spectrogram_bins=257,
        sample_rate=16000,
        lower_edge_hertz=125.0,
        upper_edge_hertz=7500.0,
        dtype=tf.float64,
    ).numpy()
    matrix = mel_matrix()
    assert matrix.shape == (257, 80) and matrix.dtype == np.float32
    assert np.max(np.abs(matrix - expected)) < 1e-6
    assert not matrix.flags.writeable


def test_numpy_twin_matches_tf_on_real_speech(librispeech_clips, fsdd_clips):
    for clip in librispeech_clips[:2] + fsdd_clips[:2]:
        audio = clip[np.newaxis]
        expected = tf_ops.log_mel_patches(tf.constant(audio)).numpy()
        actual = numpy_ops.log_mel_patches(audio)
        assert actual.shape == (1, expected.shape[0], 195, 80)
        assert np.max(np.abs(actual.reshape(expected.shape) - expected)) <= 1e-4


def test_float32_frontend_stays_close_to_reference(librispeech_clips):
    audio = librispeech_clips[0][np.newaxis]
    reference = numpy_ops.log_mel(audio)
    float32 = tf_ops.log_mel(tf.constant(audio), compute_dtype="float32").numpy()
    difference = np.abs(reference - float32)
    # float32 rounding shows only in near-silent bands (documented in tf_ops).
    assert difference.mean() < 2e-5
    assert difference.max() < 2e-3


def test_log_mel_values_are_log_of_floored_magnitude():
    silence = np.zeros((1, 32000), np.float32)
    features = numpy_ops.log_mel(silence)
    assert features.shape == (1, 198, 80)
    np.testing.assert_allclose(features, np.log(1e-12 + 1e-3), rtol=1e-6)
    tone = np.sin(2 * np.pi * 1000 * np.arange(32000) / 16000).astype(np.float32)[np.newaxis]
    loudest_band = numpy_ops.log_mel(tone)[0, 50].argmax()
    band_centres_hz = 700 * np.expm1(
        np.linspace(1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700), 82)[1:-1] / 1127
    )
    assert abs(band_centres_hz[loudest_band] - 1000) < 60


@pytest.mark.parametrize("length", [1, 5000, 31999, 40000])
def test_mirror_padding_repeats_the_clip_mirrored(length):
    rng = np.random.default_rng(length)
    audio = rng.uniform(-1, 1, (2, length)).astype(np.float32)
    padded = numpy_ops.mirror_pad(audio, 32000)
    assert padded.shape == (2, max(length, 32000))
    np.testing.assert_array_equal(padded[:, :length], audio)
    if length < 32000 and 2 * length <= 32000:
        np.testing.assert_array_equal(padded[:, length : 2 * length], audio[:, ::-1])
    np.testing.assert_array_equal(tf_ops.mirror_pad(tf.constant(audio), 32000).numpy(), padded)


def test_mirror_padding_matches_numpy_symmetric_when_short_enough():
    audio = np.arange(20000, dtype=np.float32)[np.newaxis]
    np.testing.assert_array_equal(
        numpy_ops.mirror_pad(audio, 32000), np.pad(audio, [(0, 0), (0, 12000)], mode="symmetric")
    )


@pytest.mark.parametrize(
    "shape, patches", [((1, 5000), 1), ((1, 32000), 1), ((1, 63000), 2), ((2, 64000), 4), ((1, 100000), 3)]
)
def test_chunk_counts_follow_the_spec(shape, patches):
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, shape).astype(np.float32)
    assert tf_ops.log_mel_patches(tf.constant(audio)).shape == (patches, 195, 80, 1)
    assert numpy_ops.log_mel_patches(audio).shape == (shape[0], patches // shape[0], 195, 80)
    assert DEFAULT_FRONTEND.num_chunks(shape[1]) * shape[0] == patches


def test_dynamic_length_graph_gives_same_patches():
    function = tf.function(tf_ops.log_mel_patches, input_signature=[tf.TensorSpec([None, None], tf.float32)])
    for length in (7000, 70000):
        audio = np.random.default_rng(length).uniform(-0.5, 0.5, (1, length)).astype(np.float32)
        np.testing.assert_allclose(
            function(audio).numpy(), tf_ops.log_mel_patches(tf.constant(audio)).numpy(), atol=1e-6
        )


def test_config_round_trips_and_is_frozen():
    config = FrontendConfig.from_dict(DEFAULT_FRONTEND.to_dict())
    assert config == DEFAULT_FRONTEND and config.patch_shape == (195, 80)
    with pytest.raises(Exception):
        config.hop_samples = 1


@pytest.mark.parametrize("length", [5_000, 31_440, 63_000, 100_000])
def test_each_chunk_alone_gives_its_patch(librispeech_clips, length):
    clip = np.resize(librispeech_clips[0], length)[np.newaxis]
    patches = numpy_ops.log_mel_patches(clip)[0]
    chunks = numpy_ops.chunk_audio(clip)[0]
    assert chunks.shape == (len(patches), DEFAULT_FRONTEND.chunk_span_samples)
    for chunk, patch in zip(chunks, patches):
        # float32 mel projection: BLAS may round a different batch shape differently in the last bit.
        np.testing.assert_allclose(numpy_ops.log_mel(chunk[np.newaxis])[0], patch, rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3, 100])
def test_log_mel_in_blocks_equals_one_piece(librispeech_clips, batch, monkeypatch):
    """The frame blocks (fewer frames per block for larger batches) change values by float32
    rounding of the mel projection only."""
    clip = librispeech_clips[0]
    audio = np.stack([np.roll(clip, 800 * i)[:20_000] for i in range(batch)])
    blocked = numpy_ops.log_mel(audio)
    monkeypatch.setattr(numpy_ops, "_BLOCK_FRAMES", 10**6)
    np.testing.assert_allclose(blocked, numpy_ops.log_mel(audio), rtol=0, atol=1e-5)
