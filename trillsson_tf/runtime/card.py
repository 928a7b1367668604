"""The model card beside a ``.tflite`` file: read, and the entries the runtime takes from it.

Every function takes the card (a dict, ``{}`` when there is none, parsed through
:class:`~trillsson_tf.formats.model_card.ModelCard`; or a ModelCard) and ``name``, the file's name
for the messages; a bad entry raises :class:`~trillsson_tf.errors.ParameterError`.
"""

import logging
import os

import numpy as np

from trillsson_tf.audio import check_sample_rate
from trillsson_tf.contract import EMBEDDING_KEY, LOG_MEL_INPUT_NAME
from trillsson_tf.errors import ParameterError
from trillsson_tf.formats.model_card import ModelCard, card_path, read_card
from trillsson_tf.frontend import DEFAULT_FRONTEND, FrontendConfig, dft

__all__ = ["clip_model", "describe", "frontend", "output_key", "output_keys", "read_model_card", "sample_rate_hz"]

_log = logging.getLogger(__package__)  # "trillsson_tf.runtime", the name the log lines have always had


def read_model_card(model_path) -> dict:
    """The JSON model card written beside a ``.tflite`` file, or ``{}`` when there is none.

    Looked for as ``<name>.json`` and then ``<name>.tflite.json`` next to the model, and read through
    :class:`~trillsson_tf.formats.model_card.ModelCard` (older cards come back in today's shape).

    Args:
        model_path: Path of the ``.tflite`` file.

    Returns:
        The card as a dict (:meth:`ModelCard.to_dict`; keys used here: ``sample_rate_hz``,
        ``output``, ``output_keys``, ``frontend``, ``clip_model``).

    Raises:
        ParameterError: a card exists but is not a model card (the message names the file).
    """
    model_path = os.fspath(model_path)
    for path in (card_path(model_path), model_path + ".json"):
        if os.path.isfile(path):
            card = read_card(path).to_dict()
            _log.info("Read model card %s", path)
            return card
    return {}


def _parsed(card, name: str) -> ModelCard:
    """``card`` (a dict, or a :class:`ModelCard` already) as a :class:`ModelCard`."""
    return card if isinstance(card, ModelCard) else ModelCard.from_dict(card, where=name)


def describe(details: dict) -> list:
    """``['name dtype[shape signature]', ...]`` of an interpreter's input or output details, for messages."""
    return [
        f"{name} {np.dtype(d['dtype']).name}{[int(size) for size in d['shape_signature']]}"
        for name, d in details.items()
    ]


def frontend(card: dict, name: str) -> FrontendConfig:
    """The card's ``frontend`` entry, else the default TRILLsson numbers."""
    values = _parsed(card, name).frontend
    if values is None:
        return DEFAULT_FRONTEND
    try:
        return FrontendConfig.from_dict(values)
    except TypeError as error:
        raise ParameterError(f"Model card of {name!r} has an unknown frontend entry: {error}") from None


def sample_rate_hz(card: dict, config: FrontendConfig, name: str) -> int:
    """The card's ``sample_rate_hz``, which must be its frontend's (``config``); that rate when it has none."""
    rate = _parsed(card, name).sample_rate_hz
    if rate is None:
        return config.sample_rate_hz
    rate = check_sample_rate(rate)
    if rate != config.sample_rate_hz:
        raise ParameterError(
            f"Model card of {name!r} says sample_rate_hz={rate} but its frontend runs at {config.sample_rate_hz} Hz."
        )
    return rate


def clip_model(card: dict, name: str):
    """The card's ``clip_model`` entry (``frontend`` as a DFTFrontendConfig, ``input``, ``compression``) or ``None``."""
    values = _parsed(card, name).clip_model
    if not values:
        return None
    try:
        entry = {
            "frontend": dft.DFTFrontendConfig.from_dict(values["frontend"]),
            "input": values["input"],
            "compression": values["compression"],
        }
    except (KeyError, TypeError) as error:
        raise ParameterError(f"Model card of {name!r} has a malformed clip_model entry: {error}") from None
    if entry["input"] not in ("audio", LOG_MEL_INPUT_NAME) or entry["compression"] not in dft.COMPRESSIONS:
        raise ParameterError(f"Model card of {name!r} has an unknown clip_model input or compression: {values}.")
    return entry


def output_key(card: dict, outputs: dict, wanted, name: str) -> str:
    """The output returned as ``embedding``: ``wanted``, else the card's ``output``, else
    ``embedding``, else the model's only ``[batch, D]`` output (``outputs``: the output details)."""
    choices = describe(outputs)
    chosen = wanted or _parsed(card, name).output
    if chosen is not None:
        if chosen not in outputs:
            source = "output_key" if wanted else f"the model card of {name!r}"
            raise ParameterError(f"Output {chosen!r} (from {source}) not found; the model has outputs {choices}.")
        return chosen
    if EMBEDDING_KEY in outputs:
        return EMBEDDING_KEY
    vectors = [key for key, details in outputs.items() if len(details["shape_signature"]) == 2]
    if len(vectors) == 1:
        return vectors[0]
    raise ParameterError(
        f"TFLite model {name!r} has no embedding-like output (named {EMBEDDING_KEY!r}, or the only "
        f"[batch, D] one); its outputs are {choices}. Choose one with output_key=..."
    )


def output_keys(card: dict, outputs: dict, key: str, name: str) -> tuple:
    """The outputs a call returns: the card's ``output_keys`` (multi-task models), else ``(key,)``."""
    keys = tuple(_parsed(card, name).output_keys or (key,))
    missing = [key for key in keys if key not in outputs]
    if missing:
        raise ParameterError(
            f"Model card of {name!r} lists outputs {missing} the model lacks; it has {describe(outputs)}."
        )
    return keys
