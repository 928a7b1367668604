"""What the runtime takes in: clips and stream blocks checked and scaled, files behind a progress bar."""

import logging

import numpy as np

from trillsson_tf.audio import check_sample_rate, resample, validate_audio
from trillsson_tf.contract import PCM16_SCALE

__all__ = ["PCM16_SCALE", "check_block", "prepare_audio", "progress_bar"]

_log = logging.getLogger(__package__)  # "trillsson_tf.runtime", the name the log lines have always had


def prepare_audio(audio, sample_rate, model_rate: int, *, what="Audio") -> np.ndarray:
    """Scale int16, validate, resample: -> float32 ``[batch, samples]`` at ``model_rate``.

    ``sample_rate`` is the rate of ``audio`` (``None``: ``model_rate``). Silent clips and peaks
    outside [-1, 1] are logged as warnings.
    """
    rate = model_rate if sample_rate is None else check_sample_rate(sample_rate)
    array = np.asarray(audio)
    if array.dtype == np.int16:
        array = array.astype(np.float32) / PCM16_SCALE
    array = validate_audio(array, sample_rate_hz=rate, expected_rate_hz=rate, allow_1d=True)
    peak = np.max(np.abs(array), axis=1)
    if np.any(peak == 0):
        _log.warning("%s clip(s) %s are silent (all zeros).", what, np.flatnonzero(peak == 0).tolist())
    if np.any(peak > 1.0):
        _log.warning(
            "%s peaks at %.3g, outside [-1, 1]; unscaled 16-bit PCM as float? Divide by 32768.", what, peak.max()
        )
    return resample(array, rate, model_rate)


def check_block(block: np.ndarray, rate: int) -> np.ndarray:
    """One non-empty mono stream block at ``rate`` -> float32 ``[samples]`` (int16 scaled, NaN/Inf refused)."""
    if block.dtype == np.int16:
        block = block.astype(np.float32) / PCM16_SCALE
    return validate_audio(block, sample_rate_hz=rate, expected_rate_hz=rate, allow_1d=True)[0]


def progress_bar(files: list, progress: bool):
    """``files``, behind a tqdm bar when ``progress`` and tqdm is installed."""
    if not progress:
        return files
    try:
        from tqdm import tqdm
    except ImportError:
        _log.info("Install tqdm to see a progress bar.")
        return files
    return tqdm(files, desc="embed", unit="file")
