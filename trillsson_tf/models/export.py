"""Hub-format export of our models, and loading of any TRILLsson-style model as a Keras layer.

An export directory holds a SavedModel whose signature ``serving_default`` maps
``audio_samples`` float32 ``[batch, None]`` to ``{'embedding': [batch, D]}``, a second signature
``frames`` (:data:`~trillsson_tf.contract.CHUNKS_SIGNATURE_KEY`) that maps it to one vector per chunk
``{'embedding': [batch, chunks, D], 'start_s': [chunks]}`` (a chunk every ``chunk_hop_s``, fixed at
export), whose ``__call__`` does the same (with a ``training`` flag, so
``hub.KerasLayer(..., trainable=True)`` fine-tunes it), plus ``model.keras`` (the Keras model, for
later compression) and ``trillsson_tf.json`` (what it is: name, dimension, frontend numbers).
"""

import json
import logging
import os
import socket
import urllib.parse

import numpy as np

from trillsson_tf._keras import keras, tf
from trillsson_tf.contract import (
    AUDIO_INPUT_NAME,
    CHUNKS_SIGNATURE_KEY,
    EMBEDDING_KEY,
    SIGNATURE_KEY,
    START_S_KEY,
    select_output_key,
)
from trillsson_tf.errors import ParameterError, TrillssonError, renamed_keywords
from trillsson_tf.folders import prepare_output_dir, write_json
from trillsson_tf.kinds import EXPORT_TYPE_KEY, LAYER_STUDENT_EXPORT, WAVEFORM
from trillsson_tf.frontend import DEFAULT_FRONTEND, DEFAULT_HOP_S
from trillsson_tf.models import chunk_vectors_model, output_heads
from trillsson_tf.models import output_key as model_output_key

__all__ = [
    "HUB_HANDLES",
    "METADATA_FILE",
    "KERAS_FILE",
    "export_savedmodel",
    "load",
    "load_savedmodel",
    "read_metadata",
    "require_network",
    "resolve_handle",
    "output_keys",
    "savedmodel_parameters",
]

_log = logging.getLogger(__name__)

HUB_HANDLES = {f"trillsson{n}": f"https://tfhub.dev/google/trillsson{n}/1" for n in range(1, 6)}
"""Shortcuts for the published TRILLsson models (TF Hub handles, served from Kaggle)."""

METADATA_FILE = "trillsson_tf.json"
KERAS_FILE = "model.keras"
_FORMAT = "trillsson_tf.export/1"
_KAGGLE_PREFIX = "kaggle:"
_NETWORK_TIMEOUT_S = 5.0


def _output_names(model, output_names) -> tuple:
    """The outputs exported: ``output_names``, or the model's one ``embedding`` / ``scores`` output.

    Raises:
        ParameterError: the model has no such output, or not exactly one of ``embedding`` / ``scores``.
    """
    names = tuple(output_names) if output_names else (model_output_key(model),)
    outputs = model.output
    missing = [name for name in names if not isinstance(outputs, dict) or name not in outputs]
    if missing:
        raise ParameterError(f"Model {model.name!r} has no output(s) {missing}; it outputs {model.output!r}.")
    return names


def _traced_call(model, names: tuple, spec):
    """The export's ``__call__``: audio -> ``{name: [batch, D]}``, traced with ``training`` False and True."""

    @tf.function
    def call(audio_samples, training=False):
        results = model(audio_samples, training=training)
        return {name: results[name] for name in names}

    call.get_concrete_function(spec, training=False)
    call.get_concrete_function(spec, training=True)
    return call


def _chunk_vectors_signature(model, names: tuple, chunks, spec):
    """Audio -> ``{name: [batch, chunks, D], 'start_s': [chunks]}``, a chunk every ``chunks.hop_s`` seconds."""
    output = names[0]
    per_chunk = chunk_vectors_model(model, chunks.hop_s)

    @tf.function(input_signature=[spec])
    def chunk_vectors(audio_samples):
        results = per_chunk(audio_samples, training=False)
        starts = tf.cast(tf.range(tf.shape(results[output])[1]), tf.float32) * chunks.hop_s
        return {**{name: results[name] for name in names}, START_S_KEY: starts}

    return chunk_vectors


def _signatures(model, names: tuple, chunks) -> tuple:
    """``(__call__, signatures)``: ``serving_default``, and the chunk-vector one for ``chunks`` (not ``None``) when
    there is one output, or all are heads on the clip vector (a several-teacher student's)."""
    spec = tf.TensorSpec([None, None], tf.float32, name=AUDIO_INPUT_NAME)
    call = _traced_call(model, names, spec)
    serving = tf.function(lambda audio_samples: call(audio_samples, training=False), input_signature=[spec])
    signatures = {SIGNATURE_KEY: serving}
    if chunks is not None and (len(names) == 1 or set(names) <= set(output_heads(model))):
        signatures[CHUNKS_SIGNATURE_KEY] = _chunk_vectors_signature(model, names, chunks, spec)
    return call, signatures


def _save(model, path: str, call, signatures: dict) -> None:
    """Write the SavedModel (``call`` as its ``__call__``) and ``model.keras`` into ``path``."""
    # The attributes TF Hub's reusable-SavedModel convention asks for (hub.KerasLayer reads them).
    # The Keras model itself is not attached: its legacy per-layer serialization traced every
    # layer's call again and took over half of the export's time; model.keras keeps the model.
    exported = tf.train.Checkpoint()
    exported.variables = list(model.variables)
    exported.trainable_variables = list(model.trainable_variables)
    exported.regularization_losses = []
    exported.__call__ = call
    tf.saved_model.save(exported, path, signatures=signatures)
    model.save(os.path.join(path, KERAS_FILE))


def _metadata(model, names: tuple, chunks, signatures: dict, extra_metadata) -> dict:
    """The export's ``trillsson_tf.json``: what it is (name, outputs and widths, frontend numbers, chunk-vector
    signature, a layer student's entries), then ``extra_metadata``."""
    output = names[0]
    outputs = model.output
    frontend = getattr(model, "frontend", None)
    return {
        "format": _FORMAT,
        "name": model.name,
        "input": AUDIO_INPUT_NAME,
        "output": output,
        **({"outputs": {name: int(outputs[name].shape[-1]) for name in names}} if len(names) > 1 else {}),
        "embedding_dim": int(outputs[output].shape[-1]),
        "parameters": int(model.count_params()),
        "sample_rate_hz": frontend.sample_rate_hz if frontend else None,
        "frontend": frontend.to_dict() if frontend else None,
        "build": getattr(model, "build_spec", None),
        # The chunk-vector signature, under the stored keys exports have always had ("frames", "window_s").
        "frames": (
            {
                "signature": CHUNKS_SIGNATURE_KEY,
                "hop_s": chunks.hop_s,
                "window_s": chunks.chunk_s,
                "outputs": [*names, START_S_KEY],
            }
            if CHUNKS_SIGNATURE_KEY in signatures
            else None
        ),
        # A layer student straight from models.build: the metadata its export type needs.
        **(
            {
                EXPORT_TYPE_KEY: LAYER_STUDENT_EXPORT,
                "encoder": model.encoder.name,
                "segment_samples": model.min_samples,
                "sample_rate_hz": model.sample_rate_hz,
            }
            if getattr(model, "family", None) == WAVEFORM
            else {}
        ),
        **(extra_metadata or {}),
    }


def export_savedmodel(
    model,
    path,
    *,
    overwrite: bool = False,
    extra_metadata=None,
    output_names=None,
    chunk_hop_s=DEFAULT_HOP_S,
    **renamed,
) -> str:
    """Write ``model`` as a hub-format SavedModel directory.

    Args:
        model: A model from :func:`trillsson_tf.models.build` (or any tf_keras model with
            input ``[batch, None]`` float32 audio and output ``{'embedding': ...}``, or
            ``{'scores': ...}`` for score regressors such as Wav2Small).
        path: Output directory.
        overwrite: Replace an existing non-empty directory; refused otherwise.
        extra_metadata: JSON-friendly dict merged into ``trillsson_tf.json`` (teacher, run...).
        output_names: Several dict outputs of ``model`` to export together (for example
            ``('keyword_logits', 'speaker_embedding')`` of a multi-task model); default: its
            one ``embedding`` / ``scores`` output.
        chunk_hop_s: Hop of the chunk-vector signature ``frames`` in seconds (a multiple of 0.01 in
            (0, 1.95]: :meth:`trillsson_tf.frontend.FrontendConfig.chunks`); ``None``: no such
            signature. Exports of several outputs have one only when all are heads on the clip
            vector (a several-teacher student's). ``frames_hop_s`` is its old name.

    Returns:
        The export directory path.

    Raises:
        ParameterError: ``path`` exists and is not empty while ``overwrite`` is false, or
            the model does not output exactly one of the keys ``embedding`` / ``scores``, or a bad hop.
    """
    old = renamed_keywords("trillsson_tf.models.export.export_savedmodel", renamed, {"frames_hop_s": "chunk_hop_s"})
    chunk_hop_s = old.get("chunk_hop_s", chunk_hop_s)
    chunks = None if chunk_hop_s is None else DEFAULT_FRONTEND.chunks(chunk_hop_s)  # checked before the folder is made
    path = prepare_output_dir(path, overwrite=overwrite, what="Export directory")
    names = _output_names(model, output_names)
    call, signatures = _signatures(model, names, chunks)
    _save(model, path, call, signatures)
    metadata = _metadata(model, names, chunks, signatures, extra_metadata)
    write_json(os.path.join(path, METADATA_FILE), metadata)
    _log.info("Exported %s (%d parameters) to %s", model.name, metadata["parameters"], path)
    return path


def read_metadata(path) -> dict:
    """The ``trillsson_tf.json`` of an export directory, or ``{}`` when it has none."""
    file = os.path.join(os.fspath(path), METADATA_FILE)
    if not os.path.isfile(file):
        return {}
    with open(file) as handle:
        return json.load(handle)


def resolve_handle(spec: str) -> str:
    """Map a shortcut or ``kaggle:`` handle to what ``hub.load`` takes; other specs pass through.

    ``trillsson1`` ... ``trillsson5`` -> ``https://tfhub.dev/google/trillsson{N}/1``;
    ``kaggle:OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]`` -> the Kaggle model URL.
    """
    if spec in HUB_HANDLES:
        return HUB_HANDLES[spec]
    if spec.startswith(_KAGGLE_PREFIX):
        handle = spec[len(_KAGGLE_PREFIX) :].strip("/")
        if handle.count("/") == 3:
            handle += "/1"
        return f"https://www.kaggle.com/models/{handle}"
    return spec


def require_network(url: str) -> None:
    """Return when ``url``'s host answers on port 443 within 5 s.

    Raises:
        TrillssonError: the host cannot be reached (the message says to pass a local copy instead).
    """
    host = urllib.parse.urlparse(url).hostname
    try:
        socket.create_connection((host, 443), timeout=_NETWORK_TIMEOUT_S).close()
    except OSError as error:
        raise TrillssonError(
            f"Loading {url!r} needs the network, and {host} cannot be reached ({error}). "
            "Download the model where there is a network and pass its local directory instead."
        ) from None


def load_savedmodel(spec: str):
    """``hub.load`` a local SavedModel directory, a TF Hub / Kaggle handle or a shortcut.

    Args:
        spec: Directory, URL handle, ``kaggle:...`` handle or ``trillsson1`` ... ``trillsson5``.

    Returns:
        The restored object (callable, with ``signatures``).

    Raises:
        ParameterError: not a SavedModel, or a local one whose files are damaged or truncated.
    """
    import tensorflow_hub as hub

    handle = resolve_handle(os.fspath(spec))
    if os.path.isdir(handle):
        if not tf.saved_model.contains_saved_model(handle):
            raise ParameterError(f"Directory {handle!r} holds no SavedModel (no saved_model.pb).")
        return _load_local_savedmodel(hub, handle)
    if "://" not in handle:
        raise ParameterError(
            f"Cannot load {spec!r}: expected a SavedModel directory, a Keras file (.keras/.h5), "
            f"a TF Hub or Kaggle URL, 'kaggle:OWNER/MODEL/FRAMEWORK/VARIATION', or one of {list(HUB_HANDLES)}."
        )
    if not os.environ.get("TFHUB_CACHE_DIR"):
        require_network(handle)
    return hub.load(handle)


def _load_local_savedmodel(hub, folder: str):
    """``hub.load`` a SavedModel folder; damaged files raise a one-line :class:`ParameterError` naming it."""
    from google.protobuf.message import DecodeError

    try:
        return hub.load(folder)
    # What TensorFlow raises for a truncated or bit-flipped saved_model.pb or variables file:
    # DataLossError / OpError ("Checksum does not match"), IndexError ("Read less bytes than
    # requested"), a protobuf DecodeError. Caught only around this read, so nothing else is hidden.
    except (tf.errors.OpError, IndexError, DecodeError) as error:
        reason = (getattr(error, "message", None) or str(error) or type(error).__name__).strip().splitlines()[0]
        raise ParameterError(
            f"Cannot load the SavedModel in {folder!r}: its files are damaged or truncated ({reason}); export it again."
        ) from None


def output_keys(loaded) -> tuple:
    """Output names of a restored SavedModel: its ``serving_default`` signature, else ``__call__``."""
    if SIGNATURE_KEY in getattr(loaded, "signatures", {}):
        return tuple(loaded.signatures[SIGNATURE_KEY].structured_outputs)
    functions = getattr(getattr(loaded, "__call__", None), "concrete_functions", [])
    for function in functions:
        if isinstance(function.structured_outputs, dict):
            return tuple(function.structured_outputs)
    return ()


def savedmodel_parameters(loaded, handle: str):
    """Weights of a restored SavedModel: its hub ``variables``, else its checkpoint's values.

    Args:
        loaded: The restored object (:func:`load_savedmodel`).
        handle: Its directory or hub handle (:func:`resolve_handle`).

    Returns:
        The number of weight values, or ``None`` when unknown.
    """
    variables = getattr(loaded, "variables", None)
    if variables:
        return int(sum(int(np.prod(variable.shape)) for variable in variables))
    checkpoint = os.path.join(handle, "variables", "variables")
    if not os.path.isdir(handle) or not tf.io.gfile.glob(checkpoint + ".index"):
        return None
    return (
        int(
            sum(
                int(np.prod(shape))
                for name, shape in tf.train.list_variables(checkpoint)
                if name.endswith(".ATTRIBUTES/VARIABLE_VALUE")
                and "OPTIMIZER_SLOT" not in name
                and "save_counter" not in name
            )
        )
        or None
    )


@keras.saving.register_keras_serializable(package="trillsson_tf")
class HubEmbedding(keras.layers.Layer):
    """A ``hub.KerasLayer`` that always returns ``{'embedding': [batch, D]}``.

    Published models do not all name their output ``embedding``; this picks the chosen
    output and renames it, so every loaded model has the same call contract.
    """

    def __init__(self, hub_layer, output_key: str, **kwargs):
        super().__init__(trainable=hub_layer.trainable, **kwargs)
        self.hub_layer = hub_layer
        self.output_key = output_key

    def call(self, audio_samples, training=None):
        outputs = self.hub_layer(audio_samples, training=training)
        return {EMBEDDING_KEY: outputs[self.output_key]}


def load(spec, *, trainable: bool = False, output_key=None):
    """Load a TRILLsson-style model as a Keras layer with the hub call contract.

    Args:
        spec: A local SavedModel directory (ours or any hub-style one), one of our Keras
            model files (``.keras``/``.h5``), a TF Hub or Kaggle handle, or a shortcut
            ``trillsson1`` ... ``trillsson5`` (these need the network).
        trainable: Make the weights trainable (fine-tuning); needs a ``__call__`` with variables.
        output_key: Output to expose as ``embedding``; by default ``embedding`` or the only output.

    Returns:
        A tf_keras layer: float32 audio ``[batch, samples]`` at 16 kHz ->
        ``{'embedding': [batch, D]}``.

    Raises:
        ParameterError: unknown spec form, missing output key (the message lists the keys).
        TrillssonError: a handle that needs the network when there is none.
    """
    import tensorflow_hub as hub

    spec = os.fspath(spec)
    if spec.endswith((".keras", ".h5")):
        if not os.path.isfile(spec):
            raise ParameterError(f"Keras model file not found: {spec!r}.")
        model = keras.models.load_model(spec)
        model.trainable = trainable
        return model
    loaded = load_savedmodel(spec)
    key = select_output_key(output_keys(loaded), output_key, source=f"SavedModel {spec!r}")
    if callable(loaded) and hasattr(loaded, "trainable_variables"):
        hub_layer = hub.KerasLayer(loaded, trainable=trainable)
    else:
        if trainable:
            raise ParameterError(
                f"SavedModel {spec!r} has only signatures, which cannot be fine-tuned; use trainable=False."
            )
        # hub.KerasLayer only accepts a handle string for signature-only models.
        hub_layer = hub.KerasLayer(resolve_handle(spec), signature=SIGNATURE_KEY, signature_outputs_as_dict=True)
    return HubEmbedding(hub_layer, key, name=f"hub_{os.path.basename(spec.rstrip('/')) or 'model'}")
