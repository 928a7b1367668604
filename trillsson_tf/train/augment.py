"""Teacher-consistent audio augmentation for distillation: extra views of each training clip.

A view (:func:`augment_clip`, :func:`augmented_views`) is a clip resampled by a speed factor, trimmed
at either end, scaled by a random gain and given white noise at a random SNR (clipped to [-1, 1]),
with its own teacher target ("function matching"): correct data, not a noisy label. Views are drawn
from the seed and the file's cache key, so a resumed or repeated run reuses their cached targets.
Why: docs/DESIGN.md, "Targets".
"""

import dataclasses
import hashlib
import json

import numpy as np

from trillsson_tf.audio import resample
from trillsson_tf.train.data import LoadedAudio
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND

__all__ = [
    "AugmentConfig",
    "DEFAULT_AUGMENT",
    "augment_clip",
    "augmented_views",
    "check_views",
    "clip_view",
    "view_key",
]

_RATE = DEFAULT_FRONTEND.sample_rate_hz
_MIN_TRIMMED_SAMPLES = DEFAULT_FRONTEND.window_samples * 10  # trimming never leaves less than 0.25 s


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges the views are drawn from (uniformly).

    Attributes:
        speed: Playback-speed factor range; 1.1 is 10% faster and higher.
        gain_db: Gain range in dB.
        trim_ms: At most this much is cut from each end, in a ``trim_probability`` share of views.
        trim_probability: Share of views that are trimmed.
        snr_db: Signal-to-noise ratio range of the added white noise, in dB.
        noise_probability: Share of views with noise.
    """

    speed: tuple = (0.9, 1.1)
    gain_db: tuple = (-12.0, 6.0)
    trim_ms: float = 50.0
    trim_probability: float = 0.5
    snr_db: tuple = (20.0, 45.0)
    noise_probability: float = 0.5

    def identity(self) -> str:
        """A stable string naming these numbers (part of each view's cache key)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


DEFAULT_AUGMENT = AugmentConfig()


def check_views(views) -> None:
    """Raise :class:`ParameterError` unless ``views`` (augmented views per file) is an int >= 0."""
    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views < 0:
        raise ParameterError(f"augment must be a number of views >= 0, got {views!r}.")


def augment_clip(clip: np.ndarray, rng: np.random.Generator, config: AugmentConfig = DEFAULT_AUGMENT) -> np.ndarray:
    """One augmented view of a clip.

    Args:
        clip: float32 ``[samples]`` at 16 kHz.
        rng: numpy random generator (the view is a function of its state).
        config: Ranges of the changes.

    Returns:
        float32 ``[samples']`` at 16 kHz, in [-1, 1] (its length follows the speed and trim).
    """
    speed = rng.uniform(*config.speed)
    view = resample(clip, _RATE, int(round(_RATE / speed)))
    if rng.random() < config.trim_probability:
        most = int(config.trim_ms * _RATE / 1000)
        start, end = (int(value) for value in rng.integers(0, most + 1, 2))
        if len(view) - start - end >= _MIN_TRIMMED_SAMPLES:
            view = view[start : len(view) - end]
    view = view * np.float32(10.0 ** (rng.uniform(*config.gain_db) / 20.0))
    if rng.random() < config.noise_probability:
        power = float(np.mean(np.square(view, dtype=np.float64)))
        if power > 0:
            sigma = np.sqrt(power / 10.0 ** (rng.uniform(*config.snr_db) / 10.0))
            view = view + rng.normal(0.0, sigma, len(view)).astype(np.float32)
    return np.clip(view, -1.0, 1.0).astype(np.float32)


def view_key(key: str, view: int, *, seed: int = 0, config: AugmentConfig = DEFAULT_AUGMENT) -> str:
    """The cache key of view number ``view`` of the clip whose cache key is ``key`` (it also seeds the view)."""
    return hashlib.sha1(f"{key}|view {view}|seed {seed}|{config.identity()}".encode()).hexdigest()


def clip_view(clip: np.ndarray, key: str, *, config: AugmentConfig = DEFAULT_AUGMENT) -> np.ndarray:
    """The view whose cache key is ``key`` (:func:`view_key`) of ``clip``: float32 ``[samples']`` at 16 kHz."""
    return augment_clip(clip, np.random.default_rng(int.from_bytes(bytes.fromhex(key)[:8], "big")), config)


def augmented_views(loaded: LoadedAudio, keys, views: int, *, seed: int = 0, config: AugmentConfig = DEFAULT_AUGMENT):
    """``views`` augmented views of every clip, with their cache keys.

    Args:
        loaded: The clips to augment (their items label the views).
        keys: The cache key of each clip (:func:`trillsson_tf.train.targets.file_key`).
        views: Views per clip (a positive integer).
        seed: Seeds every view together with its clip's key.
        config: Ranges of the changes.

    Returns:
        ``(LoadedAudio, keys)``: the views (clip-major: the views of clip 0 first) and a
        cache key per view that names its clip, its number, the seed and ``config``.
    """
    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or views < 1:
        raise ParameterError(f"views must be a positive integer, got {views!r}.")
    out, out_keys = LoadedAudio([], [], []), []
    for item, clip, key in zip(loaded.items, loaded.clips, keys):
        for view in range(views):
            out_keys.append(view_key(key, view, seed=seed, config=config))
            out.items.append(item)
            out.clips.append(clip_view(clip, out_keys[-1], config=config))
    return out, out_keys
