"""The model card: the JSON file every converter writes beside a model (``<model>.json``).

The one home of the format: :class:`ModelCard` (the entries the runtime and the command line read,
the others kept as written), its one parity shape (:class:`Parity`: per output, the first output's
scores repeated at the top), the format versions, and :func:`read_card`, :func:`write_card`
(atomic), :func:`update_card`. Format 1 cards (parity of one output at the top, or per output
without the top) and hand-written cards without a ``format`` are read too. No TensorFlow.
"""

import dataclasses
import json
import numbers
import os

from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import write_json

__all__ = [
    "CARD_FORMATS",
    "READABLE_FORMATS",
    "ModelCard",
    "OutputParity",
    "Parity",
    "card_path",
    "read_card",
    "update_card",
    "write_card",
]

CARD_FORMATS = {"tflite": "trillsson_tf.tflite/2", "onnx": "trillsson_tf.onnx/2"}
"""Model file type -> the card format written beside it (2: parity per output, see :class:`Parity`)."""
READABLE_FORMATS = (*CARD_FORMATS.values(), "trillsson_tf.tflite/1", "trillsson_tf.onnx/1")
"""Formats read (a card without ``format`` is read as format 1)."""


def _refuse(where: str, what: str):
    raise ParameterError(f"Model card {where}: {what}.")


@dataclasses.dataclass(frozen=True)
class OutputParity:
    """How closely one output of the converted model follows the reference (:func:`trillsson_tf.metrics.parity`).

    Attributes:
        mean_cosine, min_cosine: Cosine similarity over the parity rows, mean and lowest.
        max_abs_diff: Largest absolute difference of one value.
        reference_rms: Root mean square of the reference values (the scale of ``max_abs_diff``).
        ccc: Concordance correlation per score (score outputs only), else ``None``.
    """

    mean_cosine: float
    min_cosine: float
    max_abs_diff: float
    reference_rms: float
    ccc: list = None

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        return {key: value for key, value in values.items() if value is not None}

    @classmethod
    def from_dict(cls, values, where: str) -> "OutputParity":
        if not isinstance(values, dict):
            _refuse(where, f"a parity entry must be a JSON object, got {values!r:.60}")
        known = {field.name for field in dataclasses.fields(cls)}
        try:
            return cls(**{key: value for key, value in values.items() if key in known})
        except TypeError as error:
            _refuse(where, f"a parity entry lacks a score ({error})")


@dataclasses.dataclass(frozen=True)
class Parity:
    """The parity check of a conversion on real speech, one shape for every card.

    Attributes:
        outputs: Output name -> :class:`OutputParity`, the card's main output first.
        clips: Parity clips (bundled LibriSpeech, or those given).
        min_mean_cosine: The threshold every output's mean cosine is held to.
        passed: Whether every output reached it.
        reference: What the model is compared with (``"Keras model"``, ``"Keras chunk network"``, ...).
        rows: Rows of the model input the clips made (chunks, patches), when counted.
        (Read from a card, any of the last five may be ``None``: absent.)

    On disk the first output's scores are also at the top of ``parity`` (as format 1 had them),
    so that ``card["parity"]["mean_cosine"]`` stays a reader's one number.
    """

    outputs: dict
    clips: int = None
    min_mean_cosine: float = None
    passed: bool = None
    reference: str = None
    rows: int = None

    @classmethod
    def of(cls, scores: dict, *, clips: int, min_mean_cosine: float, reference: str, rows=None) -> "Parity":
        """A parity from ``{output name: metrics.parity(...) dict (plus ``ccc``)}``; ``passed`` is computed."""
        outputs = {name: OutputParity(**values) for name, values in scores.items()}
        passed = all(value.mean_cosine >= min_mean_cosine for value in outputs.values())
        return cls(outputs, int(clips), float(min_mean_cosine), bool(passed), reference, rows)

    @property
    def first(self) -> OutputParity:
        """The scores of the first (main) output."""
        return next(iter(self.outputs.values()))

    def to_dict(self) -> dict:
        values = {
            "outputs": {name: value.to_dict() for name, value in self.outputs.items()},
            "clips": self.clips,
            "rows": self.rows,
            "min_mean_cosine": self.min_mean_cosine,
            "passed": self.passed,
            "reference": self.reference,
            **self.first.to_dict(),
        }
        return {key: value for key, value in values.items() if value is not None}

    @classmethod
    def from_dict(cls, values, output, where: str) -> "Parity":
        """Either format: ``outputs`` per output, or (format 1, one output) the scores at the top,
        taken as those of ``output`` (the card's main output)."""
        if not isinstance(values, dict):
            _refuse(where, f"'parity' must be a JSON object, got {values!r:.60}")
        outputs = values.get("outputs")
        if outputs is None:
            outputs = {output or "output": values}
        elif not isinstance(outputs, dict) or not outputs:
            _refuse(where, f"'parity.outputs' must be a non-empty JSON object, got {outputs!r:.60}")
        return cls(
            outputs={str(name): OutputParity.from_dict(value, where) for name, value in outputs.items()},
            **{key: values.get(key) for key in ("clips", "min_mean_cosine", "passed", "reference", "rows")},
        )


_TYPES = {
    "format": (str,),
    "model_file": (str,),
    "name": (str,),
    "quantize": (str,),
    "frontend_inside": (bool,),
    "inputs": (list,),
    "outputs": (list,),
    "output": (str,),
    "output_keys": (list,),
    "signature": (str,),
    "sample_rate_hz": (numbers.Real,),
    "frontend": (dict,),
    "clip_model": (dict,),
    "size_bytes": (int,),
    "ops": (list, dict),
    "float_ops": (list,),
    "source": (dict,),
    "converter": (dict,),
    "licence": (str,),
}
"""JSON type of each entry :class:`ModelCard` names (``parity`` is checked by :class:`Parity`)."""
_JSON_NAMES = {str: "string", bool: "boolean", list: "array", dict: "object", int: "integer", numbers.Real: "number"}


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """The card beside one model file. Every entry is optional (``None``: absent); ``extra`` keeps the others.

    Attributes:
        format: One of :data:`READABLE_FORMATS`; ``None`` for a hand-written card.
        model_file: The model's file name.
        name: The Keras model's name.
        quantize: ``float32``, ``float16``, ``dynamic`` or ``int8`` (``.tflite``).
        frontend_inside: Whether the model takes audio (else patches or mel bands).
        inputs, outputs: Tensor entries (name, shape, dtype, quantization).
        output: The output returned as ``embedding``.
        output_keys: Every output a call returns (multi-output models).
        signature: The signature the model is called through.
        sample_rate_hz: The rate of the model's audio, in Hz.
        frontend: The log-mel numbers of a chunk model (``FrontendConfig.to_dict()``).
        clip_model: A whole-clip model's ``frontend`` (``DFTFrontendConfig.to_dict()``), ``input`` and ``compression``.
        size_bytes: The model file's size.
        ops: The op table (``.tflite``: a row per op; ONNX: op -> count).
        float_ops: Ops left in float.
        parity: :class:`Parity` on real speech.
        source: What the model was converted from (export, parameters, teacher, run).
        converter: Versions and options of the conversion.
        licence: The licence note.
        extra: Every other entry, kept as written (``tflite_metadata``, ``fixed_samples``, ``opset``, ...).
    """

    format: str = None
    model_file: str = None
    name: str = None
    quantize: str = None
    frontend_inside: bool = None
    inputs: list = None
    outputs: list = None
    output: str = None
    output_keys: list = None
    signature: str = None
    sample_rate_hz: int = None
    frontend: dict = None
    clip_model: dict = None
    size_bytes: int = None
    ops: object = None
    float_ops: list = None
    parity: Parity = None
    source: dict = None
    converter: dict = None
    licence: str = None
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        named = set(_TYPES) | {"parity", "extra"}
        shadowed = sorted(named & set(self.extra))
        if shadowed:
            raise ParameterError(f"ModelCard extra entries {shadowed} have fields of their own; set those instead.")

    def to_dict(self) -> dict:
        """The card as JSON-able values: named entries (``None`` left out), ``extra``, parity, provenance."""

        def named(names) -> dict:
            return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

        values = {**named(name for name in _TYPES if name not in _LAST), **self.extra}
        if self.parity is not None:
            values["parity"] = self.parity.to_dict()
        return {**values, **named(_LAST)}

    @classmethod
    def from_dict(cls, values, *, where: str = "") -> "ModelCard":
        """Parse a card of any readable format (``where``: its file, named in errors); a format 1
        card comes back as today's (format 2, parity per output).

        Raises:
            ParameterError: not a JSON object, an unknown format, an entry of the wrong JSON type,
                or a malformed parity (one line, naming ``where``).
        """
        where = repr(where) if where else "(no file)"
        if not isinstance(values, dict):
            _refuse(where, f"must hold a JSON object, got {type(values).__name__}")
        fields = {}
        for name, types in _TYPES.items():
            value = values.get(name)
            if value is not None and (not isinstance(value, types) or (bool not in types and isinstance(value, bool))):
                kinds = " or ".join(_JSON_NAMES[t] for t in types)
                _refuse(where, f"entry {name!r} must be a JSON {kinds}, got {value!r:.60}")
            fields[name] = value
        if fields["format"] is not None:
            if fields["format"] not in READABLE_FORMATS:
                _refuse(
                    where,
                    f"format {fields['format']!r} is not one this trillsson_tf reads "
                    f"({', '.join(READABLE_FORMATS)}); a newer trillsson_tf wrote it",
                )
            fields["format"] = CARD_FORMATS[fields["format"].split(".")[1].split("/")[0]]  # read as today's
        parity = values.get("parity")
        fields["parity"] = None if parity is None else Parity.from_dict(parity, fields["output"], where)
        extra = {key: value for key, value in values.items() if key not in _TYPES and key != "parity"}
        return cls(**fields, extra=extra)


_LAST = ("source", "converter", "licence")
"""Entries written after ``parity``, at the end of the file (provenance)."""


def card_path(model_path) -> str:
    """``<model path without extension>.json``: where a converter writes a model's card."""
    return os.path.splitext(os.fspath(model_path))[0] + ".json"


def read_card(path) -> ModelCard:
    """The card in the JSON file ``path``.

    Raises:
        ParameterError: the file cannot be read as JSON, or :meth:`ModelCard.from_dict` refuses it
            (one line naming the file).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except (OSError, ValueError) as error:
        raise ParameterError(f"Model card {path!r} cannot be read as JSON: {error}") from None
    return ModelCard.from_dict(values, where=path)


def write_card(path, card: ModelCard) -> dict:
    """Write ``card`` to ``path`` atomically (whole or not at all); returns its :meth:`~ModelCard.to_dict`."""
    values = card.to_dict()
    write_json(path, values)
    return values


def update_card(path, **entries) -> dict:
    """Set entries of the card at ``path`` (named fields or ``extra`` ones) and write it back atomically.

    Returns:
        The card as written (:meth:`ModelCard.to_dict`).
    """
    card = read_card(path)
    named = {key: value for key, value in entries.items() if key in _TYPES or key == "parity"}
    extra = {key: value for key, value in entries.items() if key not in named}
    return write_card(path, dataclasses.replace(card, **named, extra={**card.extra, **extra}))
