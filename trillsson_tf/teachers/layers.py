"""Layered teachers: models that give several hidden layers frame by frame.

:func:`load_layered_teacher` takes a spec (:data:`LAYERED_TEACHER_FORMS`: ``speech_embedding``,
``hf:<name or folder>`` for wav2vec 2.0 / HuBERT, a SavedModel or Keras file with named outputs, a
``.tflite`` file and names of its intermediate tensors) and the layers to distill, and returns a
:class:`LayeredTeacher`: audio ``[batch, samples]`` at 16 kHz in, ``{layer: [batch, frames, D]}`` out
(:meth:`LayeredTeacher.layer_outputs`), with the sample span of each frame
(:meth:`LayeredTeacher.frame_spans`) for aligning a student. Called like a :class:`Teacher`, it
returns the time-mean of its layers as ``embedding``. Each form's layers and frames:
docs/DESIGN.md, "Teacher".
"""

import hashlib
import json
import logging
import os

import numpy as np

from trillsson_tf import litert
from trillsson_tf.audio import validate_audio
from trillsson_tf.contract import EMBEDDING_KEY, SIGNATURE_KEY
from trillsson_tf.errors import ParameterError, TrillssonError
from trillsson_tf.teachers import (
    SPEECH_EMBEDDING,
    SpeechEmbeddingTeacher,
    Teacher,
    file_fingerprint,
    load_preset,
    parse_preset,
)

__all__ = [
    "HF_PREFIX",
    "LAYERED_TEACHER_FORMS",
    "LayeredTeacher",
    "HFTeacher",
    "OutputsTeacher",
    "TFLiteLayersTeacher",
    "SpeechEmbeddingLayersTeacher",
    "default_layers",
    "load_layered_teacher",
    "parse_layers",
]

_log = logging.getLogger(__name__)

HF_PREFIX = "hf:"
LAYERED_TEACHER_FORMS = (
    "'whisper-tiny' (Whisper tiny.en encoder: layers 0-4 and final, 384-d every 320 samples)",
    "'campplus' (CAM++: layer frames, 512-d every 320 samples; embedding, 192-d per clip)",
    f"'{SPEECH_EMBEDDING}' (offline; layers 1-19 are conv blocks, 20 the embedding)",
    "'hf:<name or folder>' (Hugging Face TF wav2vec 2.0 / HuBERT; layers are hidden_states indices)",
    "a SavedModel directory or Keras file (.keras/.h5) with several named outputs",
    "a .tflite file (layers are names of intermediate tensors)",
)
_HF_HOST_URL = "https://huggingface.co"


def parse_layers(layers) -> tuple:
    """``'4,8,12'``, ``[4, 8, 12]`` or ``None`` -> ``('4', '8', '12')`` (or ``None``)."""
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [part for part in (piece.strip() for piece in layers.split(",")) if part]
    names = tuple(str(layer) for layer in layers)
    if not names:
        raise ParameterError("Give at least one teacher layer, e.g. layers='4,8,12'.")
    if len(set(names)) != len(names):
        raise ParameterError(f"Teacher layers must be distinct, got {list(names)}.")
    return names


def default_layers(count: int) -> tuple:
    """DistilHuBERT's choice generalised: the layers at 1/3, 2/3 and the top of ``count`` (4, 8, 12 of 12)."""
    return tuple(dict.fromkeys(str(max(1, round(count * share))) for share in (1 / 3, 2 / 3, 1.0)))


def _as_frames(array: np.ndarray) -> np.ndarray:
    """A layer output ``[batch, D]``, ``[batch, T, D]`` or ``[batch, T, ..., D]`` -> float32 ``[batch, T, D]``."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        return array[:, np.newaxis]
    if array.ndim > 3:
        return array.mean(axis=tuple(range(2, array.ndim - 1)))
    return array


class LayeredTeacher(Teacher):
    """A teacher whose hidden layers can be read frame by frame.

    Attributes:
        layers: The selected layer names, in order.
        available_layers: Every layer name the teacher has.
        layer_dims: ``{layer: D}`` of the selected layers.
        hop_samples: Frame step in samples, or ``None`` (frames then share the clip evenly).
        field_samples: Samples one frame sees, or ``None``.
    """

    hop_samples = None
    field_samples = None

    def __init__(self, spec: str, *, available_layers, layers=None):
        super().__init__(spec)
        self.available_layers = tuple(str(name) for name in available_layers)
        wanted = parse_layers(layers) or self._default_layers()
        missing = [name for name in wanted if name not in self.available_layers]
        if missing:
            raise ParameterError(
                f"Teacher {spec!r} has no layer(s) {missing}. Its layers are: {list(self.available_layers)}."
            )
        self.layers = wanted
        self.layer_dims = {}

    def _default_layers(self) -> tuple:
        return self.available_layers[-1:]

    def _finish_init(self) -> None:
        probe = np.zeros((1, max(32000, self.min_samples)), np.float32)
        outputs = self._layer_outputs(probe)
        self.layer_dims = {name: int(outputs[name].shape[-1]) for name in self.layers}
        frames = {name: outputs[name].shape[1] for name in self.layers}
        if len(set(frames.values())) > 1:
            raise ParameterError(
                f"Teacher {self.spec!r}: layers {frames} have different frame counts; choose layers of one frame rate."
            )
        self.embedding_dim = int(sum(self.layer_dims.values()))
        self.identity = f"{self.identity}|layers={','.join(self.layers)}"

    def layer_outputs(self, audio, *, sample_rate: int = 16000) -> dict:
        """Frames of the selected layers.

        Args:
            audio: float32 ``[batch, samples]`` (or ``[samples]``) at 16 kHz, in [-1, 1].
            sample_rate: Rate of ``audio`` in Hz (must be 16000).

        Returns:
            ``{layer: float32 numpy [batch, frames, D_layer]}``, one entry per selected layer,
            all with the same number of frames.
        """
        audio = self._pad(validate_audio(audio, sample_rate_hz=sample_rate, allow_1d=True))
        return self._layer_outputs(audio)

    def _layer_outputs(self, audio: np.ndarray) -> dict:
        raise NotImplementedError

    def _embed(self, audio):
        outputs = self._layer_outputs(audio)
        return np.concatenate([outputs[name].mean(axis=1) for name in self.layers], axis=-1)

    def frame_spans(self, num_samples: int, num_frames: int) -> np.ndarray:
        """Sample range ``[start, end)`` of each frame of a clip of ``num_samples`` samples.

        Returns:
            int64 ``[num_frames, 2]``: ``[i * hop, i * hop + field)`` when the teacher knows its
            geometry, else the clip shared evenly between the frames.
        """
        index = np.arange(num_frames)
        if self.hop_samples is not None:
            start = index * self.hop_samples
            return np.stack([start, start + self.field_samples], axis=1).astype(np.int64)
        edges = np.round(np.linspace(0, num_samples, num_frames + 1)).astype(np.int64)
        return np.stack([edges[:-1], edges[1:]], axis=1)

    def describe(self) -> dict:
        """JSON-friendly summary: the :class:`Teacher` fields plus layers, their widths and frame geometry."""
        return {
            **super().describe(),
            "layers": list(self.layers),
            "layer_dims": self.layer_dims,
            "hop_samples": self.hop_samples,
            "field_samples": self.field_samples,
        }


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise TrillssonError(
            "Hugging Face teachers need the transformers package with TensorFlow support: pip install 'trillsson-tf[hf]'"
        ) from None
    return transformers


def _weights_fingerprint(model) -> str:
    digest = hashlib.sha1(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()[:16]


class HFTeacher(LayeredTeacher):
    """A Hugging Face TensorFlow wav2vec 2.0 / HuBERT model read through its ``hidden_states``.

    Args:
        spec: ``hf:<hub name>`` or ``hf:<local folder>`` (``config.json`` + TF weights).
        layers: Hidden-state indices to distill (default: N/3, 2N/3, N; 4, 8, 12 for a base model).
        model: A ``transformers`` TF model object to use instead of loading ``spec`` (for
            example ``TFHubertModel(HubertConfig(...))``: no download).
        do_normalize: Standardise each clip before the model, as its feature extractor does;
            default: the hub feature extractor's setting, ``False`` for a model object.
    """

    def __init__(self, spec: str, *, layers=None, model=None, do_normalize=None):
        _require_transformers()
        from trillsson_tf._keras import tf

        self._tf = tf
        if model is None:
            model, do_normalize = self._load(spec, do_normalize)
        self._model = model
        self._normalize = bool(do_normalize)
        config = model.config
        count = int(config.num_hidden_layers)
        super().__init__(spec, available_layers=[str(index) for index in range(count + 1)], layers=layers)
        hop, field = 1, 1
        for kernel, stride in zip(config.conv_kernel, config.conv_stride):
            field += (kernel - 1) * hop
            hop *= stride
        self.hop_samples, self.field_samples = hop, field
        self.min_samples = field
        model(tf.zeros((1, 2 * field), tf.float32), training=False)  # builds a model made from a config
        self.parameters = int(model.count_params())
        name = spec if spec.startswith(HF_PREFIX) else HF_PREFIX + spec
        self.identity = f"{name}:{_weights_fingerprint(model)}:normalize={self._normalize}"
        self._finish_init()

    def _default_layers(self) -> tuple:
        return default_layers(len(self.available_layers) - 1)

    @staticmethod
    def _load(spec: str, do_normalize):
        from transformers import AutoFeatureExtractor, TFAutoModel

        from trillsson_tf.models.export import require_network

        name = spec[len(HF_PREFIX) :] if spec.startswith(HF_PREFIX) else spec
        try:
            model = TFAutoModel.from_pretrained(name, local_files_only=True)
            extractor = AutoFeatureExtractor.from_pretrained(name, local_files_only=True)
        except OSError:
            if os.path.isdir(name):
                raise ParameterError(
                    f"Folder {name!r} holds no Hugging Face TF model (config.json and tf_model.h5)."
                ) from None
            require_network(_HF_HOST_URL)
            try:
                model = TFAutoModel.from_pretrained(name)
                extractor = AutoFeatureExtractor.from_pretrained(name)
            except OSError as error:
                raise TrillssonError(
                    f"Cannot load Hugging Face model {name!r} with TensorFlow weights: {error}. Models published with "
                    "PyTorch weights only need `from_pt=True` (and torch): save them once with save_pretrained and pass the folder."
                ) from None
        if not hasattr(model.config, "conv_stride"):
            raise ParameterError(
                f"Hugging Face model {name!r} ({type(model).__name__}) is not a wav2vec 2.0 / HuBERT-style audio model."
            )
        if do_normalize is None:
            do_normalize = bool(getattr(extractor, "do_normalize", False))
        return model, do_normalize

    def _layer_outputs(self, audio):
        if self._normalize:
            audio = (audio - audio.mean(axis=1, keepdims=True)) / np.sqrt(audio.var(axis=1, keepdims=True) + 1e-7)
        outputs = self._model(self._tf.constant(audio, self._tf.float32), output_hidden_states=True, training=False)
        return {name: _as_frames(outputs.hidden_states[int(name)].numpy()) for name in self.layers}


class OutputsTeacher(LayeredTeacher):
    """A SavedModel directory or Keras file whose named outputs are the layers.

    The model takes float32 audio ``[batch, samples]``; its outputs are ``[batch, D]``,
    ``[batch, frames, D]`` or ``[batch, frames, ..., D]``. Frames share the clip evenly
    unless ``hop_samples`` / ``field_samples`` are given.
    """

    def __init__(self, spec: str, *, layers=None, hop_samples=None, field_samples=None):
        from trillsson_tf._keras import keras, tf

        self._tf = tf
        if spec.endswith((".keras", ".h5")):
            if not os.path.isfile(spec):
                raise ParameterError(f"Keras model file not found: {spec!r}.")
            model = keras.models.load_model(spec)
            if not isinstance(model.output, dict):
                raise ParameterError(
                    f"Keras model {spec!r} must output a dict of named layers; it outputs {model.output!r}."
                )
            names = tuple(model.output)
            self._call = lambda audio: {key: value.numpy() for key, value in model(audio, training=False).items()}
            parameters, location = int(model.count_params()), file_fingerprint(spec)
        else:
            from trillsson_tf.models.export import load_savedmodel, output_keys, resolve_handle, savedmodel_parameters

            loaded = load_savedmodel(spec)
            names = output_keys(loaded)
            if SIGNATURE_KEY not in getattr(loaded, "signatures", {}):
                raise ParameterError(f"SavedModel {spec!r} has no {SIGNATURE_KEY!r} signature to read layers from.")
            function = loaded.signatures[SIGNATURE_KEY]
            (input_name,) = function.structured_input_signature[1]
            self._call = lambda audio: {
                key: value.numpy() for key, value in function(**{input_name: tf.constant(audio)}).items()
            }
            handle = resolve_handle(spec)
            parameters = savedmodel_parameters(loaded, handle)
            location = file_fingerprint(handle) if os.path.isdir(handle) else handle
        super().__init__(spec, available_layers=names, layers=layers)
        self.parameters = parameters
        self.hop_samples = hop_samples
        self.field_samples = field_samples if field_samples is not None else hop_samples
        self.identity = f"outputs:{location}"
        self._finish_init()

    def _layer_outputs(self, audio):
        outputs = self._call(audio)
        return {name: _as_frames(outputs[name]) for name in self.layers}


def _tflite_with_outputs(model_path: str, tensor_names) -> bytes:
    """The ``.tflite`` model with the named tensors added to its main subgraph's outputs.

    Reading intermediate tensors with ``experimental_preserve_all_tensors`` needs the
    interpreter without XNNPACK (3.4x slower on speech_embedding, measured here); making them
    outputs keeps the delegate. Signatures are dropped: they would name the old outputs only.
    """
    from trillsson_tf._keras import tf  # noqa: F401  (TensorFlow is imported through its one import point first)
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(model_path)
    subgraph = model.subgraphs[0]
    names = [tensor.name.decode() for tensor in subgraph.tensors]
    subgraph.outputs = list(subgraph.outputs) + [names.index(name) for name in tensor_names]
    model.signatureDefs = []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _activation_tensors(interpreter) -> list:
    """Names of the tensors that ops compute (not weights or constants), in op order."""
    names = {detail["index"]: detail["name"] for detail in interpreter.get_tensor_details()}
    seen = []
    for op in litert.ops(interpreter):
        for index in op["outputs"]:
            if int(index) >= 0 and names.get(int(index)) not in seen:
                seen.append(names[int(index)])
    return seen


class _OutputRunner:
    """A rewritten ``.tflite`` model called on one float32 input: returns ``{tensor name: array}`` of every output."""

    def __init__(self, content: bytes, *, num_threads: int = 1):
        self._subgraph = litert.MainSubgraph(litert.make_interpreter(model_content=content, num_threads=num_threads))
        (self._input_name,) = self._subgraph.get_input_details()

    def __call__(self, values: np.ndarray) -> dict:
        return self._subgraph(**{self._input_name: np.ascontiguousarray(values, dtype=np.float32)})


class TFLiteLayersTeacher(LayeredTeacher):
    """A ``.tflite`` model on float32 audio whose named intermediate tensors are the layers.

    A fixed input length N is run over consecutive N-sample windows; each window is one frame
    (its tensors averaged over every axis but channels). A dynamic length is called on the
    whole clip; axis 1 of each tensor is then time.
    """

    def __init__(self, path: str, *, layers=None, num_threads: int = 1):
        if not os.path.isfile(path):
            raise ParameterError(f".tflite file not found: {path!r}.")
        probe = litert.make_interpreter(model_path=path)
        inputs = probe.get_input_details()
        signature = inputs[0]["shape_signature"] if len(inputs) == 1 else []
        if len(signature) not in (1, 2):
            raise ParameterError(
                f".tflite layered teacher {path!r} must take one audio input [batch, samples] or [samples]."
            )
        available = _activation_tensors(probe)
        super().__init__(path, available_layers=available, layers=layers if layers is not None else available[-1:])
        self._rank = len(signature)
        self.window_samples = None if signature[-1] == -1 else int(signature[-1])
        self.min_samples = self.window_samples or 0
        if self.window_samples:
            self.hop_samples = self.field_samples = self.window_samples
        self._runner = _OutputRunner(_tflite_with_outputs(path, self.layers), num_threads=num_threads)
        self.parameters = litert.parameter_count(path)
        self.identity = f"tflite-layers:{file_fingerprint(path)}"
        self._finish_init()

    def _invoke(self, batch: np.ndarray) -> dict:
        outputs = self._runner(batch if self._rank == 2 else batch[0])
        return {name: np.asarray(outputs[name], np.float32) for name in self.layers}

    def _layer_outputs(self, audio):
        if self.window_samples is None:
            return {name: _as_frames(value) for name, value in self._invoke(audio).items()}
        windows = audio.shape[1] // self.window_samples
        framed = audio[:, : windows * self.window_samples].reshape(-1, self.window_samples)
        rows = [self._invoke(row[np.newaxis]) for row in framed]
        return {
            name: np.stack([row[name].reshape(-1, row[name].shape[-1]).mean(axis=0) for row in rows]).reshape(
                audio.shape[0], windows, -1
            )
            for name in self.layers
        }


class _LayerCapture:
    """Stands in for the embedding model's signature runner: returns the embedding, keeps the block outputs."""

    def __init__(self, runner: _OutputRunner, embedding_name: str, block_names):
        self._runner, self._embedding_name, self._block_names = runner, embedding_name, tuple(block_names)
        self.blocks = {}

    def __call__(self, input_1):
        outputs = self._runner(input_1)
        # Each block's [windows, time, frequency, channels] map -> one vector per window.
        self.blocks = {name: outputs[name].mean(axis=(1, 2)) for name in self._block_names}
        return {EMBEDDING_KEY: outputs[self._embedding_name]}


class SpeechEmbeddingLayersTeacher(LayeredTeacher):
    """Google's speech embedding with its 19 convolution blocks and its embedding as layers ``1`` ... ``20``.

    The mel model, the windowing and the padding are those of
    :class:`trillsson_tf.teachers.SpeechEmbeddingTeacher`: this class hands that teacher a
    runner of the embedding model rewritten so that every block output is also an output.
    One frame per window (776 ms of audio, 12,512 samples) every 1,280 samples (80 ms).
    """

    _BLOCK_OP = "MAXIMUM"  # each block ends with max(leaky_relu(x), floor): its output is the block's

    def __init__(self, *, layers=None, num_threads: int = 1):
        base = SpeechEmbeddingTeacher(num_threads=num_threads)
        path = os.path.join(base.models_dir(), base.EMBEDDING_MODEL)
        probe = litert.make_interpreter(model_path=path)
        names = {detail["index"]: detail["name"] for detail in probe.get_tensor_details()}
        blocks = [names[int(op["outputs"][0])] for op in litert.ops(probe) if op["op_name"] == self._BLOCK_OP]
        (embedding_name,) = [detail["name"] for detail in probe.get_output_details()]
        super().__init__(SPEECH_EMBEDDING, available_layers=[str(i + 1) for i in range(len(blocks) + 1)], layers=layers)
        self._tensor_of = {str(i + 1): name for i, name in enumerate(blocks)}
        self._embedding_layer = str(len(blocks) + 1)
        wanted = [self._tensor_of[name] for name in self.layers if name != self._embedding_layer]
        self._capture = _LayerCapture(
            _OutputRunner(_tflite_with_outputs(path, wanted), num_threads=num_threads), embedding_name, wanted
        )
        base._embedding = self._capture
        self._base = base
        self.min_samples = base.min_samples
        self.hop_samples = base.WINDOW_STEP_FRAMES * base.MEL_HOP_SAMPLES
        self.field_samples = base.min_samples
        self.parameters = base.parameters
        self.identity = f"{base.identity}:blocks"
        self._finish_init()

    def _default_layers(self) -> tuple:
        return default_layers(len(self.available_layers))

    def _layer_outputs(self, audio):
        embedding = self._base.window_embeddings(audio)
        batch, windows = embedding.shape[:2]
        outputs = {}
        for name in self.layers:
            values = embedding if name == self._embedding_layer else self._capture.blocks[self._tensor_of[name]]
            outputs[name] = np.asarray(values, np.float32).reshape(batch, windows, -1)
        return outputs


def load_layered_teacher(spec, *, layers=None, model=None, hop_samples=None, field_samples=None) -> LayeredTeacher:
    """Load a layered teacher from any accepted spec (see :data:`LAYERED_TEACHER_FORMS`).

    Args:
        spec: ``speech_embedding``, ``hf:<name or folder>``, a SavedModel directory, a Keras file,
            a ``.tflite`` file, or a :class:`LayeredTeacher` (returned as it is).
        layers: Layer names or indices (``'4,8,12'``, ``[4, 8, 12]``); default: the teacher's
            usual choice (1/3, 2/3 and the top of its depth; the last output otherwise).
        model: For ``hf:`` specs, a ``transformers`` TF model object to use (no download).
        hop_samples: Frame step of a SavedModel / Keras teacher's outputs (default: even share).
        field_samples: Samples one of its frames sees (default: ``hop_samples``).

    Returns:
        A :class:`LayeredTeacher`.

    Raises:
        ParameterError: unknown spec form (the message lists the forms), missing file, layers the
            teacher does not have (the message lists its layers).
        TrillssonError: transformers missing, or a hub name that needs the network when there is none.
    """
    if isinstance(spec, LayeredTeacher):
        return spec
    spec = os.fspath(spec)
    preset = parse_preset(spec)
    if preset is not None:
        name, options = preset
        teacher = load_preset(name, {**options, **({"layers": layers} if layers is not None else {})})
        if not isinstance(teacher, LayeredTeacher):
            raise ParameterError(
                f"Teacher {name!r} has no hidden layers to distill; layered presets: whisper-tiny, campplus."
            )
        return teacher
    if spec == SPEECH_EMBEDDING:
        return SpeechEmbeddingLayersTeacher(layers=layers)
    if spec.startswith(HF_PREFIX) or model is not None:
        return HFTeacher(spec, layers=layers, model=model)
    if spec.endswith(".tflite"):
        return TFLiteLayersTeacher(spec, layers=layers)
    if spec.endswith((".keras", ".h5")) or os.path.isdir(spec):
        return OutputsTeacher(spec, layers=layers, hop_samples=hop_samples, field_samples=field_samples)
    raise ParameterError(f"Unknown layered teacher {spec!r}. Expected one of: {', '.join(LAYERED_TEACHER_FORMS)}.")
