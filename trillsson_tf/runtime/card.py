"""The model card beside a ``.tflite`` file: read, and the entries the runtime takes from it.

Every function takes the card as a dict (``{}`` when there is none) and ``name``, the file's
name for the messages; a bad entry raises :class:`~trillsson_tf.errors.ParameterError`.
"""

import json
import logging
import os

import numpy as np

from trillsson_tf.audio import check_sample_rate
from trillsson_tf.contract import EMBEDDING_KEY, LOG_MEL_INPUT_NAME
from trillsson_tf.errors import ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND, FrontendConfig, dft

__all__ = ["clip_model", "describe", "frontend", "output_key", "output_keys", "read_model_card", "sample_rate_hz"]

_log = logging.getLogger(__package__)  # "trillsson_tf.runtime", the name the log lines have always had


def read_model_card(model_path) -> dict:
    """The JSON model card written beside a ``.tflite`` file, or ``{}`` when there is none.

    Looked for as ``<name>.json`` and then ``<name>.tflite.json`` next to the model.

    Args:
        model_path: Path of the ``.tflite`` file.

    Returns:
        The card as a dict (keys used here: ``sample_rate_hz``, ``output``, ``frontend``).

    Raises:
        ParameterError: a card exists but is not a JSON object (the message names the file).
    """
    model_path = os.fspath(model_path)
    for card_path in (os.path.splitext(model_path)[0] + ".json", model_path + ".json"):
        if not os.path.isfile(card_path):
            continue
        try:
            with open(card_path) as handle:
                card = json.load(handle)
        except (OSError, ValueError) as error:
            raise ParameterError(f"Model card {card_path!r} cannot be read as JSON: {error}") from None
        if not isinstance(card, dict):
            raise ParameterError(f"Model card {card_path!r} must hold a JSON object, got {type(card).__name__}.")
        _log.info("Read model card %s", card_path)
        return card
    return {}


def describe(details: dict) -> list:
    """``['name dtype[shape signature]', ...]`` of an interpreter's input or output details, for messages."""
    return [
        f"{name} {np.dtype(d['dtype']).name}{[int(size) for size in d['shape_signature']]}"
        for name, d in details.items()
    ]


def frontend(card: dict, name: str) -> FrontendConfig:
    """The card's ``frontend`` entry, else the default TRILLsson numbers."""
    values = card.get("frontend")
    if not isinstance(values, dict):
        return DEFAULT_FRONTEND
    try:
        return FrontendConfig.from_dict(values)
    except TypeError as error:
        raise ParameterError(f"Model card of {name!r} has an unknown frontend entry: {error}") from None


def sample_rate_hz(card: dict, config: FrontendConfig, name: str) -> int:
    """The card's ``sample_rate_hz``, which must be its frontend's (``config``); that rate when it has none."""
    rate = card.get("sample_rate_hz")
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
    values = card.get("clip_model")
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
    chosen = wanted or card.get("output")
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
    keys = tuple(card.get("output_keys") or (key,))
    missing = [key for key in keys if key not in outputs]
    if missing:
        raise ParameterError(
            f"Model card of {name!r} lists outputs {missing} the model lacks; it has {describe(outputs)}."
        )
    return keys
