"""formats.weight_grid: LiteRT's int4 / int8 grid per output channel (snap, and the test that weights are on it)."""

import numpy as np

from trillsson_tf.formats.weight_grid import INT4_LEVELS, on_grid, snap_to_grid


def test_snapped_weights_take_at_most_15_values_per_channel_and_keep_each_channels_largest():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 6)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)
    kernel[..., 5] = 0.0  # an all-zero channel stays zero
    snapped = snap_to_grid(kernel)
    for channel in range(5):
        values, column = np.unique(snapped[..., channel]), kernel[..., channel]
        step = np.abs(column).max() / INT4_LEVELS
        assert len(values) <= 2 * INT4_LEVELS + 1
        np.testing.assert_allclose(values / step, np.round(values / step), atol=1e-4)
        assert np.abs(snapped[..., channel]).max() == np.abs(column).max()
        assert np.abs(snapped[..., channel] - column).max() <= step / 2 + 1e-6  # rounding, never clipping
    assert not snapped[..., 5].any()
    assert on_grid(snapped) and not on_grid(kernel)


def test_the_grid_axis_is_the_output_channels_wherever_they_are():
    rng = np.random.default_rng(1)
    dense = snap_to_grid(rng.normal(size=(16, 8)).astype(np.float32))  # Keras Dense [in, out]
    assert on_grid(dense, axis=-1) and on_grid(dense.T, axis=0)  # the .tflite layout [out, in]
    assert not on_grid(dense, axis=0)  # per input row it is no grid
    # A per-channel rescale (a BatchNormalization folded in by the converter) keeps the grid.
    scale = rng.uniform(0.1, 3.0, size=8).astype(np.float32) * np.sign(rng.normal(size=8)).astype(np.float32)
    assert on_grid(dense * scale, axis=-1)
    assert not on_grid(np.zeros((0, 4)))
