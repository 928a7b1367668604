"""The call contract, TensorFlow-free: tensor names, output keys and the sample rate.

Every model this library builds, exports or converts follows it: float32
mono audio ``audio_samples [batch, samples]`` at :data:`SAMPLE_RATE_HZ` in, a dict with one
clip vector per clip out, under :data:`EMBEDDING_KEY` (or :data:`SCORES_KEY` for score
regressors), through the ``serving_default`` signature. The models, the exports, the
teachers, the converters and the TensorFlow-free runtime all take these names from here.

Imports nothing but :mod:`trillsson_tf.errors`; the frontend takes its sample rate from here.
"""

from trillsson_tf.errors import ParameterError, renamed_attribute

__all__ = [
    "AUDIO_INPUT_NAME",
    "CHUNKS_SIGNATURE_KEY",
    "EMBEDDING_KEY",
    "KWS_OUTPUT",
    "LOG_MEL_INPUT_NAME",
    "OUTPUT_KEYS",
    "PATCH_INPUT_NAME",
    "PCM16_SCALE",
    "SAMPLE_RATE_HZ",
    "SCORES_KEY",
    "SIGNATURE_KEY",
    "START_S_KEY",
    "SV_OUTPUT",
    "select_output_key",
]

SAMPLE_RATE_HZ = 16000
"""Rate of the audio every model takes, in Hz (the default of ``FrontendConfig.sample_rate_hz``)."""

PCM16_SCALE = 32768.0
"""16-bit PCM sample ``n`` is the float ``n / PCM16_SCALE`` (int16 audio in; shards' stored audio)."""

AUDIO_INPUT_NAME = "audio_samples"
"""Input of a model with its frontend inside: float32 audio ``[batch, samples]``."""

PATCH_INPUT_NAME = "log_mel_patch"
"""Input of a chunk network alone: float32 log-mel patches ``[n, 195, 80, 1]``."""

LOG_MEL_INPUT_NAME = "log_mel"
"""Input of a whole-clip (Wav2Small) network alone: dB mel bands ``[1, frames, mels]``."""

EMBEDDING_KEY = "embedding"
SCORES_KEY = "scores"
OUTPUT_KEYS = (EMBEDDING_KEY, SCORES_KEY)
"""A student's one output: a clip ``embedding``, or ``scores`` (regressors such as Wav2Small)."""

KWS_OUTPUT = "keyword_logits"
SV_OUTPUT = "speaker_embedding"
"""The two outputs of a fine-tuned multi-task model: keyword logits and a speaker embedding."""

SIGNATURE_KEY = "serving_default"
"""The signature exports and ``.tflite`` conversions are called through."""

CHUNKS_SIGNATURE_KEY = "frames"
"""The second signature of an export: audio -> one vector per chunk (chunk vectors). The stored name
stays ``"frames"``: exports on disk have it, and code that loads them calls it by that name."""

START_S_KEY = "start_s"
"""Chunk vectors: the start of each chunk in seconds, float32 ``[chunks]``."""


def select_output_key(keys, output_key=None, *, source="model") -> str:
    """Choose the embedding output among ``keys``.

    ``output_key`` when given (it must exist); else ``'embedding'`` when present; else the
    only key. Anything else is ambiguous.

    Args:
        keys: Output names of a model.
        output_key: The output asked for, or ``None``.
        source: What the model is, for error messages.

    Returns:
        The chosen output name.

    Raises:
        ParameterError: the key is missing or the choice ambiguous; the message lists ``keys``.
    """
    keys = tuple(keys)
    if output_key is not None:
        if output_key not in keys:
            raise ParameterError(f"Output key {output_key!r} not found in {source}; it has outputs {list(keys)}.")
        return output_key
    if EMBEDDING_KEY in keys:
        return EMBEDDING_KEY
    if len(keys) == 1:
        return keys[0]
    raise ParameterError(
        f"{source} has no {EMBEDDING_KEY!r} output and several outputs {list(keys)}; choose one with output_key=..."
    )


_RENAMED = {"FRAMES_SIGNATURE_KEY": "CHUNKS_SIGNATURE_KEY"}


def __getattr__(name):  # the old names of _RENAMED, deprecated for one release
    return renamed_attribute(__name__, globals(), _RENAMED, name)
