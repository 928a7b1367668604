"""LiteRT's int4 (and int8) weights: a symmetric grid per output channel, ``k * max|w| / levels``.

int4: ``levels`` 7 (``k`` in [-8, 7], the extreme value at +-7); int8: 127 (narrow range, [-127, 127]).
:func:`snap_to_grid` rounds float weights onto that grid (what int4-aware training exports) and
:func:`on_grid` tells whether weights already lie on it (then min-max quantization stores them
exactly). numpy only.
"""

import numpy as np

__all__ = ["INT4_LEVELS", "grid_levels", "snap_to_grid", "on_grid"]

INT4_LEVELS = 7
"""Levels each side of zero: LiteRT's min-max int4 scale of a channel with ``max |w| = m`` is ``m / 7``."""


def grid_levels(bits: int) -> int:
    """Levels each side of zero of LiteRT's symmetric ``bits``-bit weights: 7 for 4 bits, 127 for 8."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits!r}.")
    return 2 ** (bits - 1) - 1


def _scale(weights: np.ndarray, levels: int) -> np.ndarray:
    """Per-slice scale of ``weights`` ``[..., channels]`` (1 where a slice is all zeros)."""
    bound = np.abs(weights).reshape(-1, weights.shape[-1]).max(axis=0)
    return np.where(bound > 0, bound / levels, 1.0)


def snap_to_grid(weights, axis: int = -1, *, bits: int = 4) -> np.ndarray:
    """float32 ``weights`` rounded onto the ``bits``-bit grid of each slice along ``axis`` (the output channels)."""
    moved = np.moveaxis(np.asarray(weights, dtype=np.float32), axis, -1)
    scale = _scale(moved, grid_levels(bits)).astype(np.float32)
    return np.moveaxis((np.round(moved / scale) * scale).astype(np.float32), -1, axis)


def on_grid(weights, axis: int = -1, *, bits: int = 4, tolerance: float = 1e-3) -> bool:
    """Whether ``weights`` lie on the ``bits``-bit grid of each slice along ``axis``, within ``tolerance`` steps."""
    moved = np.moveaxis(np.asarray(weights, dtype=np.float64), axis, -1)
    if moved.size == 0:
        return False
    steps = moved / _scale(moved, grid_levels(bits))
    return bool(np.all(np.abs(steps - np.round(steps)) <= tolerance))
