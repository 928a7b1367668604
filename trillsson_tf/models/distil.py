"""DistilHuBERT-style students: a waveform convolutional encoder and a few transformer layers.

The layout of DistilHuBERT (Chang et al., 2022) in tf_keras: per-clip normalisation, seven 1-D
convolutions (one frame per 320 samples), a projection, a grouped positional convolution
(:class:`GroupedConv1D`) and ``depth`` post-LN transformer layers. ``distil-small`` has
DistilHuBERT's numbers (23.5 M parameters); :func:`sized_config` picks the widest configuration
under a parameter budget. :func:`build_encoder` maps audio to frames ``[batch, frames, width]``;
:func:`build_layer_student` (``models.build("distil-small")``) averages them into ``embedding``.
Layer table and deviations for phones: docs/DESIGN.md, "Student".
"""

import re

from trillsson_tf._keras import keras, tf
from trillsson_tf.contract import AUDIO_INPUT_NAME, EMBEDDING_KEY, SAMPLE_RATE_HZ
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import tf_ops
from trillsson_tf.kinds import WAVEFORM
from trillsson_tf.models._audio_model import AudioEmbeddingModel
from trillsson_tf.models._common import StudentPreset

__all__ = [
    "CONV_LAYERS",
    "ENCODER_NAME",
    "PRESETS",
    "LayerStudentModel",
    "WaveformStandardization",
    "GroupedConv1D",
    "HIDDEN_STATES_NAME",
    "MirrorPadTo",
    "with_hidden_states",
    "build_encoder",
    "build_layer_student",
    "encoder_parameters",
    "frame_geometry",
    "num_frames",
    "scaled_config",
    "sized_config",
]

_PACKAGE = "trillsson_tf"
ENCODER_NAME = "encoder"
HIDDEN_STATES_NAME = "hidden_states"
CONV_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))
"""(kernel, stride) of the convolutional feature encoder, as in wav2vec 2.0 / HuBERT."""
_WIDTH_STEP = 16  # widths are multiples of the positional convolution's 16 groups
_MAX_WIDTH = 1024


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WaveformStandardization(keras.layers.Layer):
    """Audio ``[batch, samples]`` -> each clip at zero mean and unit variance."""

    def __init__(self, epsilon: float = 1e-7, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, audio):
        mean = tf.reduce_mean(audio, axis=1, keepdims=True)
        variance = tf.reduce_mean(tf.square(audio - mean), axis=1, keepdims=True)
        return (audio - mean) * tf.math.rsqrt(variance + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MirrorPadTo(keras.layers.Layer):
    """Audio ``[batch, samples]`` -> at least ``min_samples`` samples, by mirroring (as training saw it)."""

    def __init__(self, min_samples: int, **kwargs):
        super().__init__(**kwargs)
        self.min_samples = int(min_samples)

    def call(self, audio):
        if audio.shape[1] is not None and audio.shape[1] >= self.min_samples:
            return audio  # a fixed length that needs no padding: no ops in the converted model
        return tf_ops.mirror_pad(audio, self.min_samples)

    def get_config(self):
        return {**super().get_config(), "min_samples": self.min_samples}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupedConv1D(keras.layers.Layer):
    """A grouped 1-D convolution (stride 1, 'same' length) made of builtin ops only.

    ``[batch, frames, channels]`` -> ``[batch, frames, filters]``. Each of ``groups`` channel
    slices goes through its own convolution and the results are concatenated, which TFLite
    converts to SPLIT + CONV_2D + CONCATENATION. The padding is ``kernel_size // 2`` before
    and ``kernel_size - 1 - kernel_size // 2`` after, which for even kernels equals HuBERT's
    symmetric padding followed by dropping the last frame.
    """

    def __init__(self, filters: int, kernel_size: int, groups: int, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.groups = int(filters), int(kernel_size), int(groups)
        if self.filters % self.groups:
            raise ParameterError(f"GroupedConv1D: filters={filters} must be a multiple of groups={groups}.")

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % self.groups:
            raise ParameterError(
                f"GroupedConv1D: {channels} input channels are not a multiple of groups={self.groups}."
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, channels // self.groups, self.filters), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        left = self.kernel_size // 2
        padded = tf.pad(inputs, [[0, 0], [left, self.kernel_size - 1 - left], [0, 0]])
        slices = tf.split(padded, self.groups, axis=-1)
        kernels = tf.split(self.kernel, self.groups, axis=-1)
        outputs = [tf.nn.conv1d(part, kernel, stride=1, padding="VALID") for part, kernel in zip(slices, kernels)]
        return tf.concat(outputs, axis=-1) + self.bias

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size, "groups": self.groups}


def frame_geometry(conv_layers=CONV_LAYERS) -> tuple:
    """``(hop_samples, field_samples)`` of the convolutional encoder: frame step and receptive field."""
    hop, field = 1, 1
    for kernel, stride in conv_layers:
        field += (kernel - 1) * hop
        hop *= stride
    return hop, field


def num_frames(num_samples: int, conv_layers=CONV_LAYERS) -> int:
    """Frames the encoder gives for ``num_samples`` samples (valid convolutions)."""
    frames = int(num_samples)
    for kernel, stride in conv_layers:
        frames = (frames - kernel) // stride + 1
    return max(frames, 0)


def _check_config(width, depth, heads, ffn_dim, conv_channels, conv_layers, pos_conv_kernel, pos_conv_groups, dropout):
    for name, value in (
        ("width", width),
        ("depth", depth),
        ("heads", heads),
        ("ffn_dim", ffn_dim),
        ("conv_channels", conv_channels),
        ("pos_conv_kernel", pos_conv_kernel),
        ("pos_conv_groups", pos_conv_groups),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(f"{name} must be a positive integer, got {value!r}.")
    if width % heads or width % pos_conv_groups:
        raise ParameterError(
            f"width={width} must be a multiple of heads={heads} and of pos_conv_groups={pos_conv_groups}."
        )
    if not conv_layers or any(len(layer) != 2 or min(layer) < 1 for layer in conv_layers):
        raise ParameterError(f"conv_layers must be (kernel, stride) pairs of positive integers, got {conv_layers!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ParameterError(f"dropout must be in [0, 1), got {dropout!r}.")


def build_encoder(
    *,
    width: int = 768,
    depth: int = 2,
    heads: int = 12,
    ffn_dim: int = 3072,
    conv_channels: int = 512,
    conv_layers=CONV_LAYERS,
    pos_conv_kernel: int = 128,
    pos_conv_groups: int = 16,
    dropout: float = 0.1,
    min_samples: int = 16000,
):
    """The student encoder.

    Args:
        width: Transformer width (frame feature size).
        depth: Transformer layers.
        heads: Attention heads (``width`` must be a multiple).
        ffn_dim: Feed-forward inner width.
        conv_channels: Channels of every convolution of the feature encoder.
        conv_layers: (kernel, stride) of each convolution.
        pos_conv_kernel: Kernel of the positional convolution, in frames.
        pos_conv_groups: Groups of the positional convolution.
        dropout: Dropout after attention and feed-forward (training only).
        min_samples: Shorter clips are mirror-padded to this length (the training segment).

    Returns:
        tf_keras Model named ``encoder``: float32 audio ``[batch, None]`` at 16 kHz ->
        float32 frames ``[batch, frames, width]`` (one per 320 samples with the default convs).
    """
    conv_layers = tuple(tuple(int(v) for v in layer) for layer in conv_layers)
    _check_config(width, depth, heads, ffn_dim, conv_channels, conv_layers, pos_conv_kernel, pos_conv_groups, dropout)
    layers = keras.layers
    audio = keras.Input(shape=(None,), dtype="float32", name=AUDIO_INPUT_NAME)
    x = MirrorPadTo(min_samples, name="mirror_pad")(audio)
    x = WaveformStandardization(name="clip_norm")(x)
    x = layers.Reshape((-1, 1), name="add_channel")(x)
    for index, (kernel, stride) in enumerate(conv_layers):
        x = layers.Conv1D(conv_channels, kernel, strides=stride, use_bias=False, name=f"conv{index}")(x)
        x = layers.LayerNormalization(epsilon=1e-5, name=f"conv{index}_norm")(x)
        x = layers.Activation("gelu", name=f"conv{index}_gelu")(x)
    x = layers.LayerNormalization(epsilon=1e-5, name="projection_norm")(x)
    x = layers.Dense(width, name="projection")(x)
    position = GroupedConv1D(width, pos_conv_kernel, pos_conv_groups, name="pos_conv")(x)
    x = layers.Add(name="pos_add")([x, layers.Activation("gelu", name="pos_gelu")(position)])
    x = layers.LayerNormalization(epsilon=1e-5, name="encoder_norm")(x)
    x = layers.Dropout(dropout, name="encoder_dropout")(x)
    for index in range(depth):
        name = f"layer{index + 1}"
        attended = layers.MultiHeadAttention(heads, width // heads, dropout=dropout, name=f"{name}_attention")(x, x)
        x = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_attention_norm")(
            layers.Add(name=f"{name}_attention_add")(
                [x, layers.Dropout(dropout, name=f"{name}_attention_dropout")(attended)]
            )
        )
        inner = layers.Dense(ffn_dim, activation="gelu", name=f"{name}_ffn_in")(x)
        inner = layers.Dense(width, name=f"{name}_ffn_out")(inner)
        x = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_ffn_norm")(
            layers.Add(name=f"{name}_ffn_add")([x, layers.Dropout(dropout, name=f"{name}_ffn_dropout")(inner)])
        )
    return keras.Model(audio, x, name=ENCODER_NAME)


def with_hidden_states(encoder):
    """The encoder with every hidden state as its output: ``[batch, frames, (depth + 1) * width]``.

    The states are the input of the first transformer layer (``encoder_norm``) and the output
    of each layer, concatenated on the feature axis; the layers (and weights) are the
    encoder's own. An encoder that already ends so is returned as it is.
    """
    if encoder.layers[-1].name == HIDDEN_STATES_NAME:
        return encoder
    depth = sum(1 for layer in encoder.layers if re.fullmatch(r"layer\d+_ffn_norm", layer.name))
    states = [encoder.get_layer("encoder_norm").output] + [
        encoder.get_layer(f"layer{i}_ffn_norm").output for i in range(1, depth + 1)
    ]
    output = keras.layers.Concatenate(name=HIDDEN_STATES_NAME)(states) if depth else states[0]
    return keras.Model(encoder.input, output, name=encoder.name)


def encoder_parameters(
    *,
    width,
    depth,
    heads,
    ffn_dim,
    conv_channels,
    conv_layers=CONV_LAYERS,
    pos_conv_kernel,
    pos_conv_groups,
    head_dims=(),
    **_ignored,
) -> int:
    """Parameters of :func:`build_encoder` with this config, plus prediction heads of ``head_dims``, without building it."""
    total, channels_in = 0, 1
    for kernel, _ in conv_layers:
        total += kernel * channels_in * conv_channels + 2 * conv_channels
        channels_in = conv_channels
    total += 2 * conv_channels + conv_channels * width + width  # projection norm + dense
    total += pos_conv_kernel * (width // pos_conv_groups) * width + width + 2 * width  # pos conv + encoder norm
    per_layer = (
        4 * (width * width + width) + 2 * width + (width * ffn_dim + ffn_dim + ffn_dim * width + width) + 2 * width
    )
    return total + depth * per_layer + sum(width * dim + dim for dim in head_dims)


def scaled_config(width: int, *, depth: int = 2) -> dict:
    """DistilHuBERT's proportions at another width: the rest of the config follows ``width``.

    Conv channels ``2/3 * width`` (512 at 768), feed-forward ``4 * width``, one head per 64
    (at least 2), positional kernel ``width / 6`` frames clamped to [16, 128], 16 groups.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < _WIDTH_STEP or width % _WIDTH_STEP:
        raise ParameterError(f"width must be a positive multiple of {_WIDTH_STEP}, got {width!r}.")
    heads = max(2, width // 64)
    while width % heads:
        heads -= 1
    return {
        "width": width,
        "depth": depth,
        "heads": heads,
        "ffn_dim": 4 * width,
        "conv_channels": max(16, int(round(width * 2 / 3 / 8)) * 8),
        "pos_conv_kernel": int(min(128, max(16, 2 * round(width / 12)))),
        "pos_conv_groups": 16,
    }


def sized_config(max_parameters: int, *, depth: int = 2) -> dict:
    """The widest :func:`scaled_config` whose encoder fits ``max_parameters``.

    The prediction heads are not counted: they only exist during distillation (DistilHuBERT
    drops them too), so the budget is what gets deployed.

    Args:
        max_parameters: Budget, e.g. 25% of the teacher's parameters.
        depth: Transformer layers.

    Raises:
        ParameterError: even the narrowest width (16) does not fit.
    """
    fitting = [
        width
        for width in range(_WIDTH_STEP, _MAX_WIDTH + 1, _WIDTH_STEP)
        if encoder_parameters(**scaled_config(width, depth=depth)) <= max_parameters
    ]
    if not fitting:
        smallest = encoder_parameters(**scaled_config(_WIDTH_STEP, depth=depth))
        raise ParameterError(
            f"No student fits {max_parameters:,} parameters (the smallest, width 16, has {smallest:,})."
        )
    return scaled_config(fitting[-1], depth=depth)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LayerStudentModel(AudioEmbeddingModel):
    """A layer-distillation student with the hub call: audio ``[batch, samples]`` -> ``{'embedding': [batch, width]}``.

    The embedding is the time mean of the encoder's last layer (:attr:`encoder`); the input is
    checked like every student's. It has no fixed frontend: the convolutions are learned.
    """

    family = WAVEFORM

    @property
    def sample_rate_hz(self) -> int:
        """The rate this model takes, in Hz."""
        return SAMPLE_RATE_HZ

    @property
    def frontend(self):
        """``None``: the waveform convolutions are trained, there are no fixed frontend numbers."""
        return None

    @property
    def encoder(self):
        """The encoder (:func:`build_encoder`): audio ``[batch, None]`` -> frames ``[batch, frames, width]``."""
        return self.get_layer(ENCODER_NAME)

    @property
    def min_samples(self) -> int:
        """The training segment in samples: shorter clips are mirror-padded to it."""
        return self.encoder.get_layer("mirror_pad").min_samples

    @property
    def chunk_network(self):
        """Layer-distillation students take raw audio and have no chunk network; see :attr:`encoder`."""
        raise ParameterError(f"Model {self.name!r} is a waveform encoder and has no chunk network; use .encoder.")

    @property
    def inner_network(self):
        """The trainable network: here the whole :attr:`encoder`."""
        return self.encoder


def build_layer_student(*, name: str = "distil-small", **config):
    """A layer-distillation student as a deployable model: the encoder, then the mean over frames.

    Args:
        name: Registry name; the model is called ``<name>_student`` (as ``distill-layers`` exports it).
        **config: Keyword arguments of :func:`build_encoder`.

    Returns:
        :class:`LayerStudentModel`: ``audio_samples`` float32 ``[batch, None]`` at 16 kHz ->
        ``{'embedding': float32 [batch, width]}``, the time mean of the encoder's frames;
        the encoder is the layer named :data:`ENCODER_NAME`.
    """
    encoder = build_encoder(**config)
    audio = keras.Input(shape=(None,), dtype="float32", name=AUDIO_INPUT_NAME)
    embedding = keras.layers.GlobalAveragePooling1D(name=EMBEDDING_KEY)(encoder(audio))
    return LayerStudentModel(inputs=audio, outputs={EMBEDDING_KEY: embedding}, name=f"{name}_student")


PRESETS = {
    "distil-small": StudentPreset(
        name="distil-small",
        family=WAVEFORM,
        build=build_layer_student,
        config={**scaled_config(768), "conv_layers": CONV_LAYERS, "dropout": 0.1, "min_samples": 16000},
        description="DistilHuBERT layout: 7 waveform convs + 2 transformer layers, 768 wide (23.5 M without the heads)",
        published_params=23_490_000,
        verified="layer counts, widths, kernels/strides and head layout from the DistilHuBERT paper (arXiv 2110.01900)",
        assumed="LayerNorm after every conv (not GroupNorm over time), no weight norm on the positional conv",
    ),
}
