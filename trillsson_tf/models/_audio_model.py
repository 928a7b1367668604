"""Wraps a per-chunk network into a model with the TF Hub call contract.

audio ``[batch, samples]`` -> :class:`LogMelPatches` -> chunk network -> :class:`MeanOverChunks`
-> ``{'embedding': [batch, D]}``.
"""
from trillsson_tf._keras import keras, tf
from trillsson_tf.audio import validate_audio
from trillsson_tf.contract import AUDIO_INPUT_NAME, EMBEDDING_KEY, OUTPUT_KEYS, SCORES_KEY
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND, FrontendConfig, tf_ops
from trillsson_tf.kinds import CHUNK

__all__ = [
    "AUDIO_INPUT_NAME",
    "CHUNK_NETWORK_NAME",
    "EMBEDDING_KEY",
    "SCORES_KEY",
    "OUTPUT_KEYS",
    "LogMelPatches",
    "MeanOverChunks",
    "AudioEmbeddingModel",
    "wrap_chunk_network",
    "chunk_network",
]

CHUNK_NETWORK_NAME = "chunk_network"
_PACKAGE = "trillsson_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LogMelPatches(keras.layers.Layer):
    """Audio ``[batch, samples]`` -> log-mel patches ``[batch * chunks, frames, mels, 1]``.

    ``compute_dtype`` and ``float16_safe`` are those of :func:`trillsson_tf.frontend.tf_ops.log_mel`.
    """

    def __init__(self, frontend=None, compute_dtype="float64", float16_safe=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(frontend, dict):
            frontend = FrontendConfig.from_dict(frontend)
        self.frontend = frontend or DEFAULT_FRONTEND
        if compute_dtype not in tf_ops.COMPUTE_DTYPES:
            raise ParameterError(
                f"Unknown frontend compute_dtype {compute_dtype!r}. Expected one of: {list(tf_ops.COMPUTE_DTYPES)}."
            )
        self.frontend_compute_dtype = compute_dtype
        self.float16_safe = bool(float16_safe)

    def call(self, audio):
        return tf_ops.log_mel_patches(audio, self.frontend, compute_dtype=self.frontend_compute_dtype,
                                      float16_safe=self.float16_safe)

    def get_config(self):
        return {
            **super().get_config(),
            "frontend": self.frontend.to_dict(),
            "compute_dtype": self.frontend_compute_dtype,
            "float16_safe": self.float16_safe,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MeanOverChunks(keras.layers.Layer):
    """Chunk vectors ``[batch * chunks, D]`` -> clip vectors ``[batch, D]`` (mean over chunks).

    Takes the audio as a second input only to read the batch size from it.
    """

    def call(self, inputs):
        chunk_vectors, audio = inputs
        batch = tf.shape(audio)[0]
        per_clip = tf.reshape(chunk_vectors, [batch, -1, chunk_vectors.shape[-1]])
        return tf.reduce_mean(per_clip, axis=1)


def _is_concrete(inputs) -> bool:
    if tf.is_tensor(inputs) or hasattr(inputs, "_keras_history"):
        return hasattr(inputs, "numpy") and not tf.is_symbolic_tensor(inputs)
    return True


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AudioEmbeddingModel(keras.Model):
    """A functional model with the TF Hub call contract that checks concrete input first.

    Called on numpy arrays or eager tensors, it validates the audio (dtype, rank, emptiness,
    NaN/Inf, and ``sample_rate`` when given) and raises a clear error instead of failing
    deep inside TensorFlow. Symbolic calls (tracing, export) pass straight through.

    Subclasses are the other student families (:data:`trillsson_tf.models.FAMILIES`); ``family``
    says which one a model is.
    """

    family = CHUNK

    def __call__(self, inputs, *args, sample_rate=None, **kwargs):
        if _is_concrete(inputs):
            rate = self.sample_rate_hz if sample_rate is None else sample_rate
            inputs = validate_audio(
                inputs.numpy() if hasattr(inputs, "numpy") else inputs,
                sample_rate_hz=rate,
                expected_rate_hz=self.sample_rate_hz,
            )
        return super().__call__(inputs, *args, **kwargs)

    @property
    def sample_rate_hz(self) -> int:
        """The rate this model takes, in Hz (its frontend's)."""
        return self.frontend.sample_rate_hz

    @property
    def frontend(self) -> FrontendConfig:
        """The :class:`FrontendConfig` of this model's log-mel layer."""
        return self.get_layer("log_mel_patches").frontend

    @property
    def chunk_network(self):
        """The per-chunk network: log-mel patch ``[n, frames, mels, 1]`` -> ``[n, D]``."""
        return self.get_layer(CHUNK_NETWORK_NAME)

    @property
    def inner_network(self):
        """The trainable network after the fixed frontend: here :attr:`chunk_network`."""
        return self.chunk_network


def wrap_chunk_network(chunk_net, *, name: str, frontend: FrontendConfig = DEFAULT_FRONTEND, output_key: str = EMBEDDING_KEY):
    """Put the frontend before and the mean over chunks after a per-chunk network.

    Args:
        chunk_net: Keras model ``[n, chunk_frames, num_mel_bins, 1]`` -> ``[n, D]``.
        name: Model name (usually the registry name).
        frontend: Frontend numbers; its patch shape must match the chunk network input.
        output_key: Name of the output, one of :data:`OUTPUT_KEYS` (``scores`` for regressors).

    Returns:
        :class:`AudioEmbeddingModel` with input ``audio_samples`` float32 ``[batch, None]``
        and output ``{output_key: float32 [batch, D]}``.
    """
    if output_key not in OUTPUT_KEYS:
        raise ParameterError(f"Unknown output key {output_key!r}. Expected one of: {list(OUTPUT_KEYS)}.")
    expected = (*frontend.patch_shape, 1)
    if tuple(chunk_net.input_shape[1:]) != expected:
        raise ParameterError(
            f"Chunk network input shape {chunk_net.input_shape[1:]} does not match the frontend patch {expected}."
        )
    chunk_net._name = CHUNK_NETWORK_NAME
    audio = keras.Input(shape=(None,), dtype="float32", name=AUDIO_INPUT_NAME)
    patches = LogMelPatches(frontend, name="log_mel_patches")(audio)
    vectors = MeanOverChunks(name=output_key)([chunk_net(patches), audio])
    return AudioEmbeddingModel(inputs=audio, outputs={output_key: vectors}, name=name)


def chunk_network(model):
    """Return the per-chunk network of a model built by :func:`trillsson_tf.models.build`."""
    try:
        return model.get_layer(CHUNK_NETWORK_NAME)
    except ValueError:
        raise ParameterError(
            f"Model {model.name!r} has no layer named {CHUNK_NETWORK_NAME!r}; it was not built by trillsson_tf.models."
        ) from None
