"""Wav2Small: a ~72 K-parameter A/D/V regressor on raw audio that converts to int8 for TFLite Micro.

After arXiv 2408.13920; the published 72 K layer table is not public, so this one is designed here
around the public 17 K "Wav2Small 2.0": per-clip normalisation, the fixed DFT frontend
(:mod:`trillsson_tf.frontend.dft`), 3x3 conv + BatchNorm + ReLU blocks with max-pools, attention
pooling over time, the pooled features joined with their Gram matrix, a linear head: 73,464
parameters, all builtin TFLite ops. ``model.dft_frontend`` and ``model.clip_network`` are the two
parts (the board computes the first for TFLite Micro). Output ``{'scores': [batch, embedding_dim]}``,
no ``embedding``. Layer table and measurements: docs/DESIGN.md, "Student".
"""

from trillsson_tf._keras import keras, tf
from trillsson_tf.contract import LOG_MEL_INPUT_NAME
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import dft
from trillsson_tf.frontend.tf_ops import mirror_pad
from trillsson_tf.kinds import CLIP
from trillsson_tf.models._audio_model import AUDIO_INPUT_NAME, SCORES_KEY, AudioEmbeddingModel
from trillsson_tf.models._common import StudentPreset

__all__ = [
    "CLIP_NETWORK_NAME",
    "DFT_FRONTEND_NAME",
    "NORMALIZED_INPUT_NAME",
    "ClipNormalization",
    "DFTMagnitude",
    "DecibelCompression",
    "AttentionPooling",
    "GramFeatures",
    "Wav2SmallModel",
    "build_clip_network",
    "build_dft_frontend",
    "build_wav2small",
    "PRESETS",
]

CLIP_NETWORK_NAME = "clip_network"
DFT_FRONTEND_NAME = "dft_frontend"
NORMALIZED_INPUT_NAME = "normalized_audio"
_PACKAGE = "trillsson_tf"
layers = keras.layers


def _config_from(value) -> dft.DFTFrontendConfig:
    return dft.DFTFrontendConfig.from_dict(value) if isinstance(value, dict) else (value or dft.DEFAULT_DFT_FRONTEND)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClipNormalization(keras.layers.Layer):
    """Audio ``[batch, samples]`` -> mirror-padded to ``min_samples``, zero mean and unit variance per clip."""

    def __init__(self, frontend=None, **kwargs):
        super().__init__(**kwargs)
        self.frontend = _config_from(frontend)

    def call(self, audio):
        length = audio.shape[1]
        if length is None or length < self.frontend.min_samples:
            audio = mirror_pad(audio, self.frontend.min_samples)
        centred = audio - tf.reduce_mean(audio, axis=1, keepdims=True)
        variance = tf.reduce_mean(tf.square(centred), axis=1, keepdims=True)
        return centred * tf.math.rsqrt(variance + self.frontend.normalization_epsilon)

    def get_config(self):
        return {**super().get_config(), "frontend": self.frontend.to_dict()}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DFTMagnitude(keras.layers.Layer):
    """``[real, imag]`` -> ``0.960 max(|re|, |im|) + 0.398 min(|re|, |im|)`` after clipping each to [-1, 1].

    The DFT kernels are divided by ``dft_clip`` and the mel matrix multiplied by it, so the
    clip at 1 is the frontend's ``dft_clip``; TFLite fuses it into the convolution
    (RELU_N1_TO_1), which fixes the int8 output range at [-1, 1].
    """

    def call(self, inputs):
        real, imag = (tf.abs(tf.clip_by_value(part, -1.0, 1.0)) for part in inputs)
        return dft.MAGNITUDE_ALPHA * tf.maximum(real, imag) + dft.MAGNITUDE_BETA * tf.minimum(real, imag)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DecibelCompression(keras.layers.Layer):
    """Mel magnitudes -> dB: ``20 log10(max(x, floor))`` (``log``) or its piecewise-linear copy (``pwl``)."""

    def __init__(self, compression: str = "log", frontend=None, **kwargs):
        super().__init__(**kwargs)
        if compression not in dft.COMPRESSIONS:
            raise ParameterError(f"Unknown compression {compression!r}. Expected one of: {list(dft.COMPRESSIONS)}.")
        self.compression = compression
        self.frontend = _config_from(frontend)

    def call(self, mel):
        if self.compression == "log":
            return (20.0 / tf.math.log(10.0)) * tf.math.log(tf.maximum(mel, self.frontend.floor))
        breakpoints, weights, offset = dft.pwl_coefficients(self.frontend)
        # One MINIMUM, MUL and ADD per breakpoint: separate tensors keep separate int8 scales.
        total = None
        for breakpoint, weight in zip(breakpoints, weights):
            term = float(weight) * tf.minimum(mel, float(breakpoint))
            total = term if total is None else total + term
        return total + offset

    def get_config(self):
        return {**super().get_config(), "compression": self.compression, "frontend": self.frontend.to_dict()}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AttentionPooling(keras.layers.Layer):
    """``[features [b, t, f, c], logits [b, t, f, 1]]`` -> softmax over time, weighted sum: ``[b, f, c]``."""

    def call(self, inputs):
        features, logits = inputs
        weights = tf.nn.softmax(logits, axis=1)
        return tf.reduce_sum(features * weights, axis=1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GramFeatures(keras.layers.Layer):
    """Pooled ``[b, f, c]`` -> flattened Gram matrix ``mean_f p_f p_f^T``: ``[b, c * c]``.

    Written as a broadcast multiply and a mean (MUL, MEAN), which TFLite Micro runs in int8.
    """

    def call(self, pooled):
        outer = pooled[:, :, :, tf.newaxis] * pooled[:, :, tf.newaxis, :]
        gram = tf.reduce_mean(outer, axis=1)
        channels = pooled.shape[-1]
        return tf.reshape(gram, [-1, channels * channels])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Wav2SmallModel(AudioEmbeddingModel):
    """Wav2Small: audio ``[batch, samples]`` -> ``{'scores': [batch, k]}``, input checked like every student."""

    family = CLIP

    @property
    def frontend(self) -> dft.DFTFrontendConfig:
        """The :class:`~trillsson_tf.frontend.dft.DFTFrontendConfig` of this model."""
        return self.get_layer("clip_normalization").frontend

    @property
    def chunk_network(self):
        """Wav2Small has no per-chunk network; see :attr:`clip_network`."""
        raise ParameterError(f"Model {self.name!r} works on whole clips and has no chunk network; use .clip_network.")

    @property
    def dft_frontend(self):
        """The fixed spectrogram: normalised audio ``[batch, samples]`` -> dB mel ``[batch, frames, mels]``."""
        return self.get_layer(DFT_FRONTEND_NAME)

    @property
    def clip_network(self):
        """The trainable network: dB mel ``[batch, frames, mels]`` of whole clips -> scores ``[batch, k]``."""
        return self.get_layer(CLIP_NETWORK_NAME)

    @property
    def inner_network(self):
        """The trainable network after the fixed frontend: here :attr:`clip_network`."""
        return self.clip_network


def _block(x, filters: int, index: int, pool):
    name = f"block{index}"
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    if pool is not None:
        x = layers.MaxPool2D(tuple(pool), padding="same", name=f"{name}_pool")(x)
    return x


def _fixed_dense_weights(network, frontend) -> None:
    """Set the DFT kernels (divided by ``dft_clip``) and the mel matrix (times ``dft_clip``)."""
    real, imag = dft.dft_kernels(frontend)
    network.get_layer("dft_real").set_weights([real[:, None, :] / frontend.dft_clip])
    network.get_layer("dft_imag").set_weights([imag[:, None, :] / frontend.dft_clip])
    network.get_layer("mel").set_weights([dft.dft_mel_matrix(frontend) * frontend.dft_clip])


def _check_pools(filters, pools) -> tuple:
    if len(pools) != len(filters):
        raise ParameterError(
            f"pools {tuple(pools)} must give one entry (None or (time, mel)) per block of filters {tuple(filters)}."
        )
    checked = []
    for pool in pools:
        if pool is not None and (
            len(pool) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pool)
        ):
            raise ParameterError(f"Each pool must be None or two positive integers (time, mel), got {pool!r}.")
        checked.append(None if pool is None else tuple(pool))
    return tuple(checked)


def build_dft_frontend(*, compression: str = "log", frontend=None):
    """The fixed spectrogram of Wav2Small: normalised audio -> dB mel bands.

    Args:
        compression: ``log`` or ``pwl`` (see :data:`trillsson_tf.frontend.dft.COMPRESSIONS`).
        frontend: :class:`~trillsson_tf.frontend.dft.DFTFrontendConfig` (or its dict).

    Returns:
        keras.Model ``normalized_audio`` float32 ``[batch, samples]`` -> ``[batch, frames, mels]``
        in dB (no trainable weights); :func:`trillsson_tf.frontend.dft.features` is its numpy twin.
    """
    frontend = _config_from(frontend)
    audio = keras.Input(shape=(None,), name=NORMALIZED_INPUT_NAME)
    # Every layer float32, also under a mixed_float16 policy: the spectrogram and its dB need the range.
    frames = layers.Reshape((-1, 1), name="to_signal", dtype="float32")(audio)
    dft_layer = dict(
        filters=frontend.num_dft_bins,
        kernel_size=frontend.window_samples,
        strides=frontend.hop_samples,
        use_bias=False,
        trainable=False,
        dtype="float32",
    )
    real = layers.Conv1D(name="dft_real", **dft_layer)(frames)
    imag = layers.Conv1D(name="dft_imag", **dft_layer)(frames)
    magnitude = DFTMagnitude(name="magnitude", dtype="float32")([real, imag])
    mel = layers.Dense(frontend.num_mel_bins, use_bias=False, trainable=False, name="mel", dtype="float32")(magnitude)
    decibels = DecibelCompression(compression, frontend, name="compression", dtype="float32")(mel)
    network = keras.Model(audio, decibels, name=DFT_FRONTEND_NAME)
    _fixed_dense_weights(network, frontend)
    return network


def build_clip_network(
    *,
    filters=(16, 32, 48, 48, 48),
    pools=((1, 2), (1, 2), (2, 1), (2, 1), None),
    embedding_dim: int = 3,
    num_mel_bins: int = dft.DEFAULT_DFT_FRONTEND.num_mel_bins,
):
    """The trainable Wav2Small network: dB mel bands of a whole clip -> k scores.

    Args:
        filters: Output channels of each 3x3 conv block.
        pools: Per block, ``None`` or the ``(time, mel)`` size of the max-pool after it. The
            default keeps the 2 ms frame rate for three blocks, where the glottal pulses of
            voiced speech show as a periodic beat (the 250 Hz DFT bins do not resolve pitch
            harmonics); pooling time early cost 0.07 in pitch CCC (measured, 1,200 steps).
        embedding_dim: Number of scores k (3 for arousal, dominance, valence).
        num_mel_bins: Mel bands of the input.

    Returns:
        keras.Model ``log_mel`` float32 ``[batch, frames, num_mel_bins]`` -> ``[batch, k]``.
    """
    if not filters:
        raise ParameterError("filters must list at least one conv block width.")
    pools = _check_pools(filters, pools)
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise ParameterError(f"embedding_dim (the number of scores) must be a positive integer, got {embedding_dim!r}.")
    decibels = keras.Input(shape=(None, num_mel_bins), name=LOG_MEL_INPUT_NAME)
    x = layers.Reshape((-1, num_mel_bins, 1), name="to_image")(decibels)
    x = layers.BatchNormalization(axis=2, name="input_norm")(x)
    for index, (width, pool) in enumerate(zip(filters, pools), start=1):
        x = _block(x, int(width), index, pool)
    logits = layers.Conv2D(1, 1, name="attention_logits")(x)
    pooled = AttentionPooling(name="attention_pool")([x, logits])
    gram = GramFeatures(name="gram")(pooled)
    features = layers.Concatenate(name="features")([layers.Flatten(name="pooled_flat")(pooled), gram])
    scores = layers.Dense(embedding_dim, name="scores_head")(features)
    return keras.Model(decibels, scores, name=CLIP_NETWORK_NAME)


def build_wav2small(
    *,
    name: str = "wav2small",
    filters=(16, 32, 48, 48, 48),
    pools=((1, 2), (1, 2), (2, 1), (2, 1), None),
    compression: str = "log",
    embedding_dim: int = 3,
    frontend=None,
):
    """The whole Wav2Small model with the hub-style call.

    Args:
        name: Model name.
        filters, pools, embedding_dim: See :func:`build_clip_network`.
        compression, frontend: See :func:`build_dft_frontend`.

    Returns:
        :class:`Wav2SmallModel`: ``audio_samples`` float32 ``[batch, None]`` at 16 kHz ->
        ``{'scores': float32 [batch, embedding_dim]}``.
    """
    frontend = _config_from(frontend)
    network = build_clip_network(
        filters=filters, pools=pools, embedding_dim=embedding_dim, num_mel_bins=frontend.num_mel_bins
    )
    audio = keras.Input(shape=(None,), dtype="float32", name=AUDIO_INPUT_NAME)
    normalized = ClipNormalization(frontend, name="clip_normalization", dtype="float32")(audio)
    decibels = build_dft_frontend(compression=compression, frontend=frontend)(normalized)
    return Wav2SmallModel(inputs=audio, outputs={SCORES_KEY: network(decibels)}, name=name)


PRESETS = {
    "wav2small": StudentPreset(
        name="wav2small",
        family=CLIP,
        build=build_wav2small,
        output_key=SCORES_KEY,
        config={
            "filters": (16, 32, 48, 48, 48),
            "pools": ((1, 2), (1, 2), (2, 1), (2, 1), None),
            "compression": "log",
            "embedding_dim": 3,
        },
        description="Wav2Small: raw audio, conv DFT + mel + dB, 3x3 conv blocks, attention pool + Gram, k scores",
        published_params=72_000,
        verified="raw audio normalised per clip, conv DFT, mel, log, 3x3 conv blocks, attention pooling, Gram, linear A/D/V head",
        assumed="the whole layer table (64-pt DFT, 20 mel bands, 16-32-48-48-48 channels); the 72 K table is not public",
    ),
}
