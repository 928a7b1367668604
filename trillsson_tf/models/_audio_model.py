"""Wraps a per-chunk network into a model with the TF Hub call contract, and gives any student chunk vectors.

audio ``[batch, samples]`` -> :class:`LogMelPatches` -> chunk network -> :class:`MeanOverChunks`
-> ``{'embedding': [batch, D]}``.

Chunk vectors (:func:`chunk_vectors_model`, :meth:`AudioEmbeddingModel.chunk_vectors`) take the same
path with patches every hop instead of every 195 frames, and stop before the mean
(:class:`ChunksPerClip`): at hop = chunk step their mean is the clip vector. Students without a
chunk network (Wav2Small, layer students) run whole on each chunk's audio (:class:`ChunkAudio`).
"""

from trillsson_tf._keras import keras, tf
from trillsson_tf.audio import validate_audio
from trillsson_tf.contract import AUDIO_INPUT_NAME, EMBEDDING_KEY, OUTPUT_KEYS, SCORES_KEY, START_S_KEY
from trillsson_tf.errors import ParameterError, deprecated, renamed_attribute
from trillsson_tf.frontend import DEFAULT_FRONTEND, DEFAULT_HOP_S, ChunkGrid, FrontendConfig, tf_ops
from trillsson_tf.kinds import CHUNK

__all__ = [
    "AUDIO_INPUT_NAME",
    "CHUNK_NETWORK_NAME",
    "EMBEDDING_KEY",
    "SCORES_KEY",
    "OUTPUT_KEYS",
    "ChunkAudio",
    "ChunksPerClip",
    "LogMelPatches",
    "MeanOverChunks",
    "AudioEmbeddingModel",
    "wrap_chunk_network",
    "chunk_network",
    "chunk_vectors_model",
]

CHUNK_NETWORK_NAME = "chunk_network"
_PACKAGE = "trillsson_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LogMelPatches(keras.layers.Layer):
    """Audio ``[batch, samples]`` -> log-mel patches ``[batch * chunks, frames, mels, 1]``.

    ``compute_dtype`` and ``float16_safe`` are those of :func:`trillsson_tf.frontend.tf_ops.log_mel`;
    ``hop_frames`` (chunks every hop) that of :func:`trillsson_tf.frontend.tf_ops.log_mel_patches`.
    """

    def __init__(self, frontend=None, compute_dtype="float64", float16_safe=False, hop_frames=None, **kwargs):
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
        self.hop_frames = None if hop_frames is None else int(hop_frames)

    def call(self, audio):
        return tf_ops.log_mel_patches(
            audio,
            self.frontend,
            compute_dtype=self.frontend_compute_dtype,
            float16_safe=self.float16_safe,
            hop_frames=self.hop_frames,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "frontend": self.frontend.to_dict(),
            "compute_dtype": self.frontend_compute_dtype,
            "float16_safe": self.float16_safe,
            "hop_frames": self.hop_frames,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ChunkAudio(keras.layers.Layer):
    """Audio ``[batch, samples]`` -> the audio of each chunk ``[batch * chunks, 31440]``.

    The clip is mirror-padded to 2 s first, as the log-mel frontend pads it; chunk ``k`` is
    samples ``[k * hop, k * hop + span)`` (:class:`trillsson_tf.frontend.ChunkGrid`).
    """

    def __init__(self, frontend=None, hop_frames=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(frontend, dict):
            frontend = FrontendConfig.from_dict(frontend)
        self.frontend = frontend or DEFAULT_FRONTEND
        self.hop_frames = None if hop_frames is None else int(hop_frames)

    def call(self, audio):
        chunks = ChunkGrid(self.frontend, self.hop_frames or self.frontend.chunk_frames)
        padded = tf_ops.mirror_pad(audio, self.frontend.min_samples)
        framed = tf.signal.frame(padded, chunks.span_samples, chunks.hop_samples, axis=1)
        return tf.reshape(framed, [-1, chunks.span_samples])

    def get_config(self):
        return {**super().get_config(), "frontend": self.frontend.to_dict(), "hop_frames": self.hop_frames}


keras.saving.get_custom_objects()[f"{_PACKAGE}>AudioWindows"] = ChunkAudio  # its old name, in saved .keras files


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MeanOverChunks(keras.layers.Layer):
    """Chunk vectors ``[batch * chunks, D]`` -> clip vectors ``[batch, D]`` (mean over chunks).

    Takes the audio as a second input only to read the batch size from it.
    """

    def call(self, inputs):
        return tf.reduce_mean(_per_clip(*inputs), axis=1)


def _per_clip(chunk_vectors, audio):
    """``[batch * chunks, D]`` -> ``[batch, chunks, D]``, the batch size read from the audio."""
    return tf.reshape(chunk_vectors, [tf.shape(audio)[0], -1, chunk_vectors.shape[-1]])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ChunksPerClip(keras.layers.Layer):
    """Chunk vectors ``[batch * chunks, D]`` -> ``[batch, chunks, D]``: :class:`MeanOverChunks` before the mean."""

    def call(self, inputs):
        return _per_clip(*inputs)


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

    def chunk_vectors(self, audio, *, hop_s=DEFAULT_HOP_S, sample_rate=None) -> dict:
        """One vector per chunk (one 195-frame patch), a chunk every ``hop_s`` seconds.

        Args:
            audio: float32 ``[batch, samples]`` at 16 kHz (checked like a call).
            hop_s: Seconds between chunk starts, a multiple of 0.01 s in (0, 1.95]; at 1.95
                (hop = chunk step) they are the non-overlapping chunks and their mean is the
                clip vector of ``model(audio)``.
            sample_rate: As for a call: must be the model's rate.

        Returns:
            ``{key: float32 [batch, chunks, D], 'start_s': float32 [chunks]}`` with the model's
            output key(s); each chunk reads 1.965 s (31,440 samples) from its start.

        Raises:
            ParameterError: a bad hop (zero, negative, longer than the chunk step) or bad audio.
        """
        chunks = DEFAULT_FRONTEND.chunks(hop_s)  # checked before any model is built
        audio = validate_audio(
            audio.numpy() if hasattr(audio, "numpy") else audio,
            sample_rate_hz=self.sample_rate_hz if sample_rate is None else sample_rate,
            expected_rate_hz=self.sample_rate_hz,
        )
        cache = self.__dict__.setdefault("_chunk_vectors_models", {})
        if chunks.hop_frames not in cache:
            cache[chunks.hop_frames] = chunk_vectors_model(self, chunks.hop_s)
        outputs = {key: value.numpy() for key, value in cache[chunks.hop_frames](audio).items()}
        count = next(iter(outputs.values())).shape[1]
        return {**outputs, START_S_KEY: chunks.starts_s(count)}

    def frames(self, audio, *, hop_s=DEFAULT_HOP_S, sample_rate=None) -> dict:
        """Deprecated name of :meth:`chunk_vectors` (for one release)."""
        deprecated(
            "trillsson_tf.models.AudioEmbeddingModel.frames", "trillsson_tf.models.AudioEmbeddingModel.chunk_vectors"
        )
        return self.chunk_vectors(audio, hop_s=hop_s, sample_rate=sample_rate)

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


def wrap_chunk_network(
    chunk_net, *, name: str, frontend: FrontendConfig = DEFAULT_FRONTEND, output_key: str = EMBEDDING_KEY
):
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
    # The frontend and the mean stay float32 under a mixed_float16 policy: log-mel in float16 is 16% off.
    patches = LogMelPatches(frontend, name="log_mel_patches", dtype="float32")(audio)
    vectors = MeanOverChunks(name=output_key, dtype="float32")([chunk_net(patches), audio])
    return AudioEmbeddingModel(inputs=audio, outputs={output_key: vectors}, name=name)


def chunk_vectors_model(model, hop_s=DEFAULT_HOP_S, *, compute_dtype=None, float16_safe=None):
    """The chunk-vector form of a student: audio -> one vector per chunk, a chunk every ``hop_s`` seconds.

    A model with a log-mel frontend and a chunk network runs its patches every hop through the
    same chunk network (each frame computed once); any other audio-in model (Wav2Small, a layer
    student) runs whole on the audio of each chunk (:class:`ChunkAudio`).

    Args:
        model: A student of :func:`trillsson_tf.models.build` (or a model with layers
            ``log_mel_patches`` and ``chunk_network``, or any audio-in model with dict outputs).
        hop_s: Seconds between chunk starts (:meth:`trillsson_tf.frontend.FrontendConfig.chunks`).
        compute_dtype, float16_safe: The log-mel settings (default: those of ``model``'s frontend
            layer; converters ask for ``'float32'``).

    Returns:
        tf_keras model sharing ``model``'s weights: float32 audio ``[batch, None]`` ->
        ``{key: float32 [batch, chunks, D]}`` for each of ``model``'s outputs.

    Raises:
        ParameterError: a bad hop.
    """
    audio = keras.Input(shape=(None,), dtype="float32", name=AUDIO_INPUT_NAME)
    keys = list(model.output) if isinstance(model.output, dict) else []
    names = {layer.name for layer in model.layers}
    if "log_mel_patches" in names and CHUNK_NETWORK_NAME in names:
        layer = model.get_layer("log_mel_patches")
        chunks = layer.frontend.chunks(hop_s)
        patches = LogMelPatches(
            layer.frontend,
            compute_dtype=compute_dtype or layer.frontend_compute_dtype,
            float16_safe=layer.float16_safe if float16_safe is None else float16_safe,
            hop_frames=chunks.hop_frames,
            name="log_mel_patches",
        )(audio)
        vectors = model.get_layer(CHUNK_NETWORK_NAME)(patches)
        heads = output_heads(model)
        if heads:  # a several-teacher student: its heads act on each chunk's row as on the clip's
            rows = ChunksPerClip(name="chunk_rows")([vectors, audio])
            outputs = {key: layer(rows) for key, layer in heads.items()}
        else:
            outputs = {key: ChunksPerClip(name=key)([vectors, audio]) for key in keys[:1]}
    else:
        chunks = DEFAULT_FRONTEND.chunks(hop_s)
        results = model(ChunkAudio(DEFAULT_FRONTEND, chunks.hop_frames, name="chunk_audio")(audio))
        outputs = {key: ChunksPerClip(name=key)([results[key], audio]) for key in keys}
    return keras.Model(audio, outputs, name=f"{model.name}_chunk_vectors")


def output_heads(model) -> dict:
    """``{key: layer}`` of the outputs made by heads on the clip vector (a several-teacher student's); ``{}`` when none."""
    outputs = model.output if isinstance(model.output, dict) else {}
    layers = {key: getattr(getattr(value, "_keras_history", None), "layer", None) for key, value in outputs.items()}
    return {key: layer for key, layer in layers.items() if getattr(layer, "applies_per_vector", False)}


def chunk_network(model):
    """Return the per-chunk network of a model built by :func:`trillsson_tf.models.build`."""
    try:
        return model.get_layer(CHUNK_NETWORK_NAME)
    except ValueError:
        raise ParameterError(
            f"Model {model.name!r} has no layer named {CHUNK_NETWORK_NAME!r}; it was not built by trillsson_tf.models."
        ) from None


_RENAMED = {"AudioWindows": "ChunkAudio", "frames_model": "chunk_vectors_model"}


def __getattr__(name):  # the old names of _RENAMED, deprecated for one release
    return renamed_attribute(__name__, globals(), _RENAMED, name)
