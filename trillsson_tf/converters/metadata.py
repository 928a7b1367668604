"""TFLite Model Metadata inside a ``.tflite`` file: what MediaPipe Tasks and Android tools read.

:func:`with_metadata` writes it (the audio input's sample rate and channels, tensor descriptions,
a labels file for ``scores`` outputs); :func:`read_metadata` reads it back; :func:`converter_metadata`
is what :func:`trillsson_tf.converters.tflite.convert` and :func:`trillsson_tf.converters.waveform.convert_waveform_model`
call on every file they write. The tables are built with :mod:`trillsson_tf.converters._metadata_schema` (the
generated module of ``metadata_schema.fbs``, copied) and ``flatbuffers``. How it is stored and why
a copy: docs/DESIGN.md, "Conversion".
"""

import io
import zipfile

import flatbuffers
from ai_edge_litert import schema_py_generated as tflite_schema
from ai_edge_litert.tools import flatbuffer_utils

import trillsson_tf.converters._metadata_schema as schema
from trillsson_tf.contract import AUDIO_INPUT_NAME, EMBEDDING_KEY, LOG_MEL_INPUT_NAME, PATCH_INPUT_NAME, SCORES_KEY
from trillsson_tf.errors import ConversionError, ParameterError

__all__ = [
    "METADATA_NAME",
    "REQUEST_FIELDS",
    "check_metadata",
    "check_request",
    "converter_metadata",
    "labels_file_name",
    "read_metadata",
    "score_labels",
    "with_metadata",
]

METADATA_NAME = "TFLITE_METADATA"
"""Name of the model ``metadata`` entry whose buffer holds the ``ModelMetadata`` flatbuffer."""

REQUEST_FIELDS = ("name", "description", "version", "author", "licence", "sample_rate_hz")
"""Fields a caller may set in :func:`converter_metadata` (``metadata=`` of the converters)."""

_FILE_IDENTIFIER = b"M001"
# min_parser_version is the newest schema version among the fields used (metadata_schema.fbs):
# AudioProperties came in 1.3.0; everything else written here is 1.0.0.
_AUDIO_PARSER_VERSION = "1.3.0"
_BASE_PARSER_VERSION = "1.0.0"
_DEFAULT_AUTHOR = "trillsson_tf"

_INPUT_DESCRIPTIONS = {
    AUDIO_INPUT_NAME: "float32 mono audio, values in [-1, 1] (PCM16 / 32768)",
    PATCH_INPUT_NAME: "float32 log-mel patches [n, 195 frames, 80 mel bins, 1] of the TRILLsson frontend",
    LOG_MEL_INPUT_NAME: "float32 dB mel bands [1, frames, mels] of the Wav2Small frontend",
}
_OUTPUT_DESCRIPTIONS = {
    EMBEDDING_KEY: "clip embedding: the mean over non-overlapping 1.95 s chunks of the input; compare by cosine",
    SCORES_KEY: "per-clip scores, one column per label of the attached labels file",
}


def labels_file_name(output_name: str) -> str:
    """Name of the ``TENSOR_AXIS_LABELS`` file attached to output ``output_name`` (``scores_labels.txt``)."""
    return f"{output_name}_labels.txt"


def _signature_tensors(model) -> tuple:
    """Signature names of subgraph 0's inputs and outputs, in the subgraph's tensor order."""
    subgraph = model.subgraphs[0]
    tensor_names = {
        index: subgraph.tensors[index].name.decode() for index in list(subgraph.inputs) + list(subgraph.outputs)
    }
    if model.signatureDefs:
        signature = model.signatureDefs[0]
        for entry in list(signature.inputs or []) + list(signature.outputs or []):
            tensor_names[entry.tensorIndex] = entry.name.decode()
    return [tensor_names[i] for i in subgraph.inputs], [tensor_names[i] for i in subgraph.outputs]


def _tensor_metadata(name: str, description: str, *, audio=None, labels_file=None):
    tensor = schema.TensorMetadataT()
    tensor.name, tensor.description = name, description
    tensor.content = schema.ContentT()
    if audio is not None:
        tensor.content.contentPropertiesType = schema.ContentProperties.AudioProperties
        tensor.content.contentProperties = schema.AudioPropertiesT()
        tensor.content.contentProperties.sampleRate, tensor.content.contentProperties.channels = audio
    else:
        tensor.content.contentPropertiesType = schema.ContentProperties.FeatureProperties
        tensor.content.contentProperties = schema.FeaturePropertiesT()
    if labels_file is not None:
        attached = schema.AssociatedFileT()
        attached.name, attached.type = labels_file, schema.AssociatedFileType.TENSOR_AXIS_LABELS
        attached.description = "one label per column of this output, in column order"
        tensor.associatedFiles = [attached]
    return tensor


def _check_descriptions(inputs: dict, outputs: dict, labels: dict, input_names, output_names, *, audio: bool) -> None:
    """Refuse descriptions that do not name the model's tensors, labels of an unknown output, audio on several inputs."""
    if sorted(inputs) != sorted(input_names) or sorted(outputs) != sorted(output_names):
        raise ParameterError(
            f"Metadata describes inputs {sorted(inputs)} and outputs {sorted(outputs)}; "
            f"the model has inputs {input_names} and outputs {output_names}."
        )
    if set(labels) - set(output_names):
        raise ParameterError(
            f"Labels given for {sorted(set(labels) - set(output_names))}; the model's outputs are {output_names}."
        )
    if audio and len(input_names) != 1:
        raise ParameterError(f"Audio properties need a model with one input; it has {input_names}.")


def _set_metadata_buffer(model, data: bytes) -> None:
    """Put ``data`` (a ``ModelMetadata`` flatbuffer) in the model's ``TFLITE_METADATA`` buffer, replacing an old one."""
    buffer = tflite_schema.BufferT()
    buffer.data = data
    entries = [entry for entry in model.metadata or [] if entry.name.decode() == METADATA_NAME]
    if entries:
        model.buffers[entries[0].buffer] = buffer
    else:
        model.buffers.append(buffer)
        entry = tflite_schema.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
        model.metadata = [*(model.metadata or []), entry]


def with_metadata(
    content: bytes,
    *,
    name: str,
    description: str,
    version: str,
    author: str,
    licence: str,
    inputs: dict,
    outputs: dict,
    sample_rate_hz=None,
    channels: int = 1,
    labels=None,
) -> bytes:
    """``.tflite`` bytes with TFLite Model Metadata (and labels files) written into them.

    Args:
        content: The flatbuffer bytes of a model with one subgraph (an old ``TFLITE_METADATA``
            entry and an appended archive are replaced).
        name, description, version, author, licence: The model's fields (``licence`` is the
            schema's ``license``).
        inputs: Signature input name -> description; must name every input.
        outputs: Signature output name -> description; must name every output.
        sample_rate_hz: Sample rate of the audio input in Hz, written as its ``AudioProperties``
            with ``channels``; ``None`` marks the inputs as features (not audio). Needs exactly one input.
        channels: Audio channels (1: mono).
        labels: Output name -> list of column names, attached as ``TENSOR_AXIS_LABELS`` files
            (:func:`labels_file_name`); ``None`` for none.

    Returns:
        The new ``.tflite`` bytes: flatbuffer, then a zip archive of the labels files when there are any.

    Raises:
        ParameterError: descriptions that do not match the model's tensors, labels for an
            unknown output, or audio properties on a model with several inputs.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    input_names, output_names = _signature_tensors(model)
    labels = dict(labels or {})
    _check_descriptions(inputs, outputs, labels, input_names, output_names, audio=sample_rate_hz is not None)
    audio = None if sample_rate_hz is None else (int(sample_rate_hz), int(channels))

    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [_tensor_metadata(n, inputs[n], audio=audio) for n in input_names]
    subgraph.outputTensorMetadata = [
        _tensor_metadata(n, outputs[n], labels_file=labels_file_name(n) if n in labels else None) for n in output_names
    ]
    metadata = schema.ModelMetadataT()
    metadata.name, metadata.description, metadata.version = name, description, version
    metadata.author, metadata.license = author, licence
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = _BASE_PARSER_VERSION if audio is None else _AUDIO_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(metadata.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    _set_metadata_buffer(model, bytes(builder.Output()))
    packed = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    if labels:
        # TFLite Support's populator appends the associated files as a stored (uncompressed) zip,
        # which MediaPipe's metadata extractor finds behind the flatbuffer.
        with zipfile.ZipFile(packed, "a", compression=zipfile.ZIP_STORED) as archive:
            for output_name in output_names:
                if output_name in labels:
                    archive.writestr(labels_file_name(output_name), "\n".join(map(str, labels[output_name])) + "\n")
    return packed.getvalue()


def _tensor_fields(tensor) -> dict:
    fields = {"name": tensor.Name().decode(), "description": (tensor.Description() or b"").decode()}
    content = tensor.Content()
    kind = content.ContentPropertiesType() if content is not None else schema.ContentProperties.NONE
    if kind == schema.ContentProperties.AudioProperties:
        audio = schema.AudioProperties()
        audio.Init(content.ContentProperties().Bytes, content.ContentProperties().Pos)
        fields.update(content="audio", sample_rate_hz=audio.SampleRate(), channels=audio.Channels())
    else:
        fields["content"] = "feature" if kind == schema.ContentProperties.FeatureProperties else None
    fields["associated_files"] = [
        {"name": tensor.AssociatedFiles(i).Name().decode(), "type": tensor.AssociatedFiles(i).Type()}
        for i in range(tensor.AssociatedFilesLength())
    ]
    return fields


def read_metadata(content: bytes):
    """The TFLite Model Metadata of a ``.tflite`` file, read through the same schema module.

    Args:
        content: The file's bytes.

    Returns:
        ``None`` when the file has none; else ``{'name', 'description', 'version', 'author',
        'licence', 'min_parser_version', 'inputs', 'outputs', 'files'}``: ``inputs`` and
        ``outputs`` are lists (subgraph order) of ``{'name', 'description', 'content'
        ('audio' | 'feature'), 'associated_files'}`` (audio ones add ``sample_rate_hz``,
        ``channels``); ``files`` maps each appended file's name to its text.
    """
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    entries = [entry for entry in model.metadata or [] if entry.name.decode() == METADATA_NAME]
    if not entries:
        return None
    data = bytes(model.buffers[entries[0].buffer].data)
    if not schema.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0):
        raise ParameterError(
            f"The {METADATA_NAME} buffer is not a ModelMetadata flatbuffer (identifier {_FILE_IDENTIFIER!r})."
        )
    metadata = schema.ModelMetadata.GetRootAs(data, 0)
    subgraph = metadata.SubgraphMetadata(0)
    files = {}
    if zipfile.is_zipfile(io.BytesIO(content)):
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            files = {member: archive.read(member).decode() for member in archive.namelist()}
    text = lambda value: None if value is None else value.decode()  # noqa: E731
    return {
        "name": text(metadata.Name()),
        "description": text(metadata.Description()),
        "version": text(metadata.Version()),
        "author": text(metadata.Author()),
        "licence": text(metadata.License()),
        "min_parser_version": text(metadata.MinParserVersion()),
        "inputs": [
            _tensor_fields(subgraph.InputTensorMetadata(i)) for i in range(subgraph.InputTensorMetadataLength())
        ],
        "outputs": [
            _tensor_fields(subgraph.OutputTensorMetadata(i)) for i in range(subgraph.OutputTensorMetadataLength())
        ],
        "files": files,
    }


def check_metadata(content: bytes, written: dict) -> None:
    """Read the metadata back from ``content`` and raise :class:`ConversionError` unless it holds ``written``.

    Args:
        content: The final ``.tflite`` bytes.
        written: The summary :func:`converter_metadata` returned for them.
    """
    found = read_metadata(content)
    fields = ("name", "description", "version", "author", "licence", "min_parser_version")
    wrong = ["the metadata"] if found is None else [key for key in fields if found[key] != written[key]]
    audio = [entry for entry in (found or {}).get("inputs", []) if entry.get("content") == "audio"]
    if found is not None and [entry.get("sample_rate_hz") for entry in audio] != (
        [written["sample_rate_hz"]] if written["sample_rate_hz"] else []
    ):
        wrong.append("sample_rate_hz")
    if wrong:
        raise ConversionError(f"The TFLite Model Metadata read back differs from what was written: {wrong}.")


def score_labels(teacher, width: int) -> list:
    """Column names of a ``scores`` output ``[batch, width]``: the teacher's ``score_names`` when they fit, else ``score_<i>``."""
    names = list((teacher or {}).get("score_names") or [])
    return names if len(names) == width else [f"score_{i}" for i in range(width)]


def _shape_text(tensor) -> str:
    shape = tensor.shapeSignature if tensor.shapeSignature is not None and len(tensor.shapeSignature) else tensor.shape
    return "[" + ", ".join("any" if int(size) < 0 else str(int(size)) for size in shape) + "]"


def check_request(request, *, model_sample_rate_hz: int) -> dict:
    """Validate the caller's metadata fields (keys of :data:`REQUEST_FIELDS`) before a conversion starts.

    Args:
        request: Field -> value, or ``None``.
        model_sample_rate_hz: The rate the model was built for, in Hz.

    Returns:
        The fields as a new dict, without ``sample_rate_hz`` (the model's rate is what is written).

    Raises:
        ParameterError: an unknown field, or a ``sample_rate_hz`` other than the model's
            (MediaPipe would feed audio at that rate to a model built for another).
    """
    request = dict(request or {})
    unknown = sorted(set(request) - set(REQUEST_FIELDS))
    if unknown:
        raise ParameterError(f"Unknown metadata field(s) {unknown}. Expected some of: {list(REQUEST_FIELDS)}.")
    rate = request.pop("sample_rate_hz", None)
    if rate is not None and rate != model_sample_rate_hz:
        raise ParameterError(
            f"Metadata sample rate {rate!r} Hz differs from the model's {model_sample_rate_hz} Hz; "
            "MediaPipe resamples audio to the metadata's rate, so it must be the model's (MediaPipe "
            "resamples audio of any other rate itself)."
        )
    return request


def converter_metadata(
    content: bytes,
    *,
    name: str,
    version: str,
    model_sample_rate_hz: int,
    audio_input: bool,
    score_names=None,
    request=None,
) -> tuple:
    """Write the converters' metadata into a freshly converted model.

    Args:
        content: The ``.tflite`` bytes from the converter.
        name: The model's name (``request['name']`` overrides it).
        version: The version written (``request['version']`` overrides it).
        model_sample_rate_hz: The rate the model was built for, in Hz.
        audio_input: Whether the input is audio (``AudioProperties``) or features.
        score_names: Column names of a ``scores`` output (see :func:`score_labels`), or ``None``.
        request: Caller's fields, keys from :data:`REQUEST_FIELDS` (author, licence, description, ...).

    Returns:
        ``(content, summary)``: the bytes with metadata, and the fields written (for the model card).

    Raises:
        ParameterError: as for :func:`check_request`.
    """
    from trillsson_tf.converters.common import (
        LICENCE_NOTE,
    )  # converters.common loads TensorFlow; the rest of this module does not

    request = check_request(request, model_sample_rate_hz=model_sample_rate_hz)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    input_names, output_names = _signature_tensors(model)
    subgraph = model.subgraphs[0]
    shapes = {
        n: _shape_text(subgraph.tensors[i])
        for n, i in zip(input_names + output_names, list(subgraph.inputs) + list(subgraph.outputs))
    }
    inputs = {n: f"{_INPUT_DESCRIPTIONS.get(n, 'model input')}; shape {shapes[n]}" for n in input_names}
    outputs = {n: f"{_OUTPUT_DESCRIPTIONS.get(n, n.replace('_', ' '))}; shape {shapes[n]}" for n in output_names}
    labels = {SCORES_KEY: list(score_names)} if SCORES_KEY in output_names and score_names else None
    fields = {
        "name": request.get("name", name),
        "description": request.get("description", f"{name}: a trillsson_tf student ({', '.join(output_names)})"),
        "version": request.get("version", version),
        "author": request.get("author", _DEFAULT_AUTHOR),
        "licence": request.get("licence", LICENCE_NOTE),
    }
    rate = model_sample_rate_hz if audio_input else None
    content = with_metadata(content, **fields, inputs=inputs, outputs=outputs, sample_rate_hz=rate, labels=labels)
    summary = {
        **fields,
        "sample_rate_hz": rate,
        "channels": 1 if audio_input else None,
        "labels": labels,
        "min_parser_version": _AUDIO_PARSER_VERSION if audio_input else _BASE_PARSER_VERSION,
    }
    return content, summary
