"""LiteRT's quantizer (``ai-edge-quantizer``, the ``[litert-quantizer]`` extra) on a float ``.tflite``.

:func:`quantize` applies one of :data:`RECIPES` to float32 flatbuffer bytes and returns the
quantized bytes with the per-layer error report (:func:`error_report`) that goes into the model
card; ``int4-mixed`` keeps in float the layers the ``int4-weights`` report flags. Used by
:func:`trillsson_tf.converters.tflite.convert` with ``quantizer='litert'``. Imports numpy and
LiteRT's schema; the quantizer when first used. Never TensorFlow.
"""

import math
import re
import warnings

import numpy as np

from trillsson_tf.contract import SIGNATURE_KEY
from trillsson_tf.errors import ConversionError, ParameterError
from trillsson_tf.formats.weight_grid import on_grid

__all__ = [
    "DEFAULT_MIN_COSINE",
    "FLAG_ADDED_ERROR",
    "INT8_SIZE_RATIO",
    "QUANTIZERS",
    "RECIPES",
    "check_recipe",
    "error_report",
    "int8_within",
    "quantize",
    "quantizer_version",
    "weight_layers",
]

QUANTIZERS = ("tensorflow", "litert")
"""``convert(quantizer=...)``: TensorFlow's converter (the ``quantize`` modes of the converters), or LiteRT's."""

RECIPES = {
    "int8-weights": "int8 weights, float activations and compute (weight-only)",
    "int4-weights": "int4 weights for CONV_2D, FULLY_CONNECTED and BATCH_MATMUL (the ops LiteRT's quantizer takes "
    "to int4), int8 for the other weights (weight-only)",
    "int8": "static int8: int8 weights and activations, calibrated on real speech",
    "int4-mixed": "int4-weights, with the layers its error report flags (and any named) kept float",
}
"""``quantize`` values of ``quantizer='litert'``: what each recipe does."""

DEFAULT_MIN_COSINE = {"int8-weights": 0.999, "int4-weights": 0.95, "int8": 0.98, "int4-mixed": 0.99}
"""Mean parity cosine below which a LiteRT-quantized conversion warns (or fails under ``strict``)."""

INT8_SIZE_RATIO = 0.15
"""The size, as a share of float32, within which an ``int4-weights`` card names layers worth int8 (``int8_within``)."""

FLAG_ADDED_ERROR = 0.01
"""A layer is flagged when it adds more than this noise-to-signal power to its output (``added_error``)."""

_INSTALL = "pip install 'trillsson-tf[litert-quantizer]'"
_INT4_OPS = ("CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")
_GRID_OPS = ("CONV_2D", "FULLY_CONNECTED")  # output channels first in the file: the grid's axis 0


def _aeq():
    """The ``ai_edge_quantizer`` modules used here."""
    try:
        from ai_edge_quantizer import algorithm_manager, qtyping, quantizer
        from ai_edge_quantizer.utils import validation_utils
    except ImportError as error:
        raise ParameterError(f"--quantizer litert needs LiteRT's quantizer: {_INSTALL} ({error}).") from None
    return algorithm_manager, qtyping, quantizer, validation_utils


def check_recipe(recipe: str) -> None:
    """Raise :class:`ParameterError` for a ``quantize`` value that is no LiteRT recipe, or without the quantizer."""
    if recipe not in RECIPES:
        raise ParameterError(
            f"Unknown LiteRT quantizer recipe {recipe!r} (--quantizer litert --quantize ...). Expected one of: "
            f"{list(RECIPES)}."
        )
    _aeq()


def _grid_bits(op_name: str, weights, data):
    """4 or 8 when ``weights`` (float32, output channels first) lie on that grid per channel, else ``None``."""
    from ai_edge_litert import schema_py_generated as schema

    if op_name not in _GRID_OPS or weights.type != schema.TensorType.FLOAT32:
        return None
    values = np.frombuffer(bytes(data), np.float32).reshape(weights.shape)
    return next((bits for bits in (4, 8) if on_grid(values, axis=0, bits=bits)), None)


def int8_within(layers: list, int4_bytes: int, float_bytes: int, size_ratio: float = INT8_SIZE_RATIO) -> list:
    """The int4 layers of an error report worth int8 within a size: most added error per weight first.

    Args:
        layers: :func:`error_report` rows of an ``int4-weights`` file (the card's ``quantizer.layers``).
        int4_bytes: That file's size; ``float_bytes``: its float32 file's size.
        size_ratio: The largest size, as a share of ``float_bytes``, the file may reach with them int8.

    Returns:
        Their Keras layer names (the last part of ``layer``), for ``optimize --int4 --int8-layers``.
    """
    ranked = sorted(
        (row for row in layers if row["weight_bits"] == 4), key=lambda r: -r["added_error"] / r["weight_count"]
    )
    chosen, room = [], size_ratio * float_bytes - int4_bytes
    for row in ranked:
        if row["weight_count"] / 2 <= room:  # int4 -> int8: half a byte more per weight
            chosen.append(row["layer"].rpartition("/")[2])
            room -= row["weight_count"] / 2
    return chosen


def _op_names():
    from ai_edge_litert import schema_py_generated as schema

    return {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}


def weight_layers(content: bytes) -> list:
    """The ops of a ``.tflite`` file's main subgraph that have constant float weights, in graph order.

    Returns:
        ``[{'layer', 'op', 'weights', 'output', 'input', 'weight_count', 'grid_bits'}]``: ``layer`` is
        the weight tensor's name without its last part (``chunk_network/block5_pw`` for
        ``chunk_network/block5_pw/Conv2D``), ``weights``, ``output`` and ``input`` tensor names;
        ``grid_bits``: 4 or 8 when the float32 weights of a CONV_2D or FULLY_CONNECTED are already on
        that grid per output channel (int4-aware training, ``optimize --int4``), else ``None``.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    from ai_edge_litert import schema_py_generated as schema

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph, names = model.subgraphs[0], _op_names()
    float_types = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16)
    rows = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        inputs = [int(i) for i in op.inputs]
        if len(inputs) < 2 or inputs[1] < 0:
            continue
        weights = graph.tensors[inputs[1]]
        data = model.buffers[weights.buffer].data
        if data is None or len(data) == 0 or len(weights.shape) < 2 or weights.type not in float_types:
            continue
        name, op_name = weights.name.decode(), names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        rows.append(
            {
                "layer": name.split(";")[-1].rpartition("/")[0] or name,
                "op": op_name,
                "weights": name,
                "output": graph.tensors[op.outputs[0]].name.decode(),
                "input": graph.tensors[inputs[0]].name.decode(),
                "weight_count": int(np.prod(weights.shape)),
                "grid_bits": _grid_bits(op_name, weights, data),
            }
        )
    return rows


def _matches(layer: str, name: str) -> bool:
    """Whether ``name`` is ``layer`` or a run of its path parts (``block5_pw`` in ``chunk_network/block5_pw``)."""
    return f"/{name.strip('/')}/" in f"/{layer}/"


def _named_layers(rows: list, names) -> list:
    """The rows of the layers ``names`` (a name matches a layer or its trailing parts), refusing unknown names."""
    unknown = [name for name in names if not any(_matches(row["layer"], name) for row in rows)]
    if unknown:
        known = sorted({row["layer"] for row in rows})
        raise ParameterError(
            f"float_layers names layers this model does not have: {unknown}. Its layers with weights: {known}."
        )
    return [row for row in rows if any(_matches(row["layer"], name) for name in names)]


def _recipe(aeq, recipe: str, float_rows: list, frontend_layers=(), grid_rows=()):
    """The rules of ``recipe`` (later ones win), with ``float_rows`` and every op of ``frontend_layers`` left float.

    In the int4 recipes, ``grid_rows`` (weights already on an int4 or int8 grid) are quantized min-max
    at their bits, which stores them exactly; OCTAV's clipping would round them again.
    """
    algorithms, qtyping, _, _ = aeq
    ops, names = qtyping.TFLOperationName, algorithms.AlgorithmName
    rules = []  # (regex, op, kind, bits, algorithm); later rules win
    if recipe == "int8":
        rules.append((".*", ops.ALL_SUPPORTED, "static", 8, names.MIN_MAX_UNIFORM_QUANT))
    else:
        rules.append((".*", ops.ALL_SUPPORTED, "weights", 8, names.MIN_MAX_UNIFORM_QUANT))
        if recipe != "int8-weights":  # OCTAV's clipping: mean cosine 0.960 against min-max's 0.947 (benchmark)
            rules += [(".*", getattr(ops, op), "weights", 4, names.OCTAV) for op in _INT4_OPS]
            min_max = names.MIN_MAX_UNIFORM_QUANT
            rules += [
                (f"^{re.escape(row['output'])};", getattr(ops, row["op"]), "weights", row["grid_bits"], min_max)
                for row in grid_rows
            ]
    # An op's scope is its output tensors' names, each followed by ';'; a layer's ops have its name in theirs.
    rules += [(f"^{re.escape(row['output'])};", ops.ALL_SUPPORTED, "float", 0, names.NO_QUANTIZE) for row in float_rows]
    rules += [
        (f"(^|[/;]){re.escape(name)}/", ops.ALL_SUPPORTED, "float", 0, names.NO_QUANTIZE) for name in frontend_layers
    ]
    return rules


def _quantizer(aeq, content: bytes, rules: list):
    _, _, quantizer, _ = aeq
    engine = quantizer.Quantizer(bytearray(content))
    for regex, op, kind, bits, algorithm in rules:
        if kind == "static":
            engine.add_static_config(regex, op, activation_num_bits=bits, weight_num_bits=bits, algorithm_key=algorithm)
        elif kind == "weights":
            engine.add_weight_only_config(regex, op, bits, algorithm_key=algorithm)
        else:
            engine.update_quantization_recipe(regex, op, algorithm_key=algorithm)
    return engine


def _signature_data(input_name: str, rows: np.ndarray) -> dict:
    return {SIGNATURE_KEY: [{input_name: np.ascontiguousarray(row[np.newaxis], np.float32)} for row in rows]}


def error_report(engine, aeq, rows: list, data: dict, quantized: bytes, *, threshold: float) -> list:
    """The per-layer error report of a quantized model: each weight layer's error on real inputs.

    Args:
        engine: The quantizer that made ``quantized`` (its ``validate`` runs both models, keeping every tensor).
        aeq: :func:`_aeq`'s modules.
        rows: :func:`weight_layers` of the float model.
        data: Its signature's inputs (real speech).
        quantized: The quantized bytes (for each layer's weight type).
        threshold: ``added_error`` above which a layer is flagged.

    Returns:
        One dict per layer: ``layer``, ``op``, ``weight_bits`` (32: left float), ``weight_count``,
        ``output_cosine`` and ``output_snr_db`` (its output against the float model's, errors of the
        layers before it included), ``added_error`` (noise-to-signal power it adds:
        ``1/snr(out) - 1/snr(in)``) and ``flagged``.
    """
    _, _, _, validation = aeq
    metrics = [validation.ValidationErrorMetric.SNR, validation.ValidationErrorMetric.COSINE_SIMILARITY]
    with warnings.catch_warnings():  # LiteRT warns that the validator keeps every tensor; numpy, of complex ones
        warnings.simplefilter("ignore")
        result = engine.validate(data, error_metrics=metrics, use_xnnpack=True, num_threads=1)
    tensors = result.get_all_tensor_results()
    bits = {row["weights"]: _bits(tensor) for row, tensor in zip(rows, _tensors_named(quantized, rows))}
    report = []
    for row in rows:
        out, inp = tensors.get(row["output"], {}), tensors.get(row["input"], {})
        snr_out, snr_in = out.get("snr", math.inf), inp.get("snr", math.inf)
        added = 1.0 / max(snr_out, 1e-12) - (1.0 / snr_in if snr_in > 0 else 0.0)
        report.append(
            {
                "layer": row["layer"],
                "op": row["op"],
                "weight_bits": bits[row["weights"]],
                "weight_count": row["weight_count"],
                "output_cosine": round(float(out.get("cosine_similarity", 1.0)), 6),
                "output_snr_db": round(10 * math.log10(snr_out), 2) if 0 < snr_out < 1e12 else None,
                "added_error": round(max(added, 0.0), 6),
                "flagged": bool(added > threshold and bits[row["weights"]] < 32),
            }
        )
    return report


def _tensors_named(content: bytes, rows: list) -> list:
    """The tensors of ``content`` named as the rows' weights (``None`` where a name is gone)."""
    from ai_edge_litert.tools import flatbuffer_utils

    graph = flatbuffer_utils.read_model_from_bytearray(bytearray(content)).subgraphs[0]
    by_name = {tensor.name.decode(): tensor for tensor in graph.tensors}
    return [by_name.get(row["weights"]) for row in rows]


def _bits(tensor) -> int:
    from ai_edge_litert import schema_py_generated as schema

    sizes = {schema.TensorType.INT4: 4, schema.TensorType.INT8: 8, schema.TensorType.INT16: 16}
    return 32 if tensor is None else sizes.get(tensor.type, 32)


def quantize(
    content: bytes,
    recipe: str,
    *,
    input_name: str,
    report_inputs: np.ndarray,
    calibration=None,
    float_layers=(),
    frontend_layers=(),
    threshold: float = FLAG_ADDED_ERROR,
) -> tuple:
    """Quantize float32 ``.tflite`` bytes with LiteRT's quantizer.

    Args:
        content: The float32 flatbuffer (one ``serving_default`` signature, one input).
        recipe: One of :data:`RECIPES`.
        input_name: The signature's input name.
        report_inputs: float32 ``[n, ...]`` rows of that input (real speech) the error report runs on.
        calibration: float32 ``[n, ...]`` rows for the ``int8`` recipe (required there).
        float_layers: The caller's layer names kept float in every recipe (the report's ``layer``, or
            its trailing parts); a name that matches no layer with weights is refused.
        frontend_layers: Keras layer names whose every op stays float (the float frontend inside the model).
        threshold: The ``added_error`` that flags a layer (``int4-mixed`` keeps those float).

    Returns:
        ``(quantized bytes, entry)``: ``entry`` is the card's ``quantizer`` entry: ``name``,
        ``version``, ``recipe``, ``description``, ``float_layers``, ``flag_threshold``,
        ``report_rows`` and ``layers`` (:func:`error_report` of the file written; for ``int4-mixed``
        also ``int4_report``, the report that chose its float layers).

    Raises:
        ParameterError: an unknown recipe, layers that do not exist, ``int8`` without
            calibration, the quantizer not installed.
        ConversionError: the quantizer failed.
    """
    check_recipe(recipe)
    if recipe == "int8" and calibration is None:
        raise ParameterError(
            "The static int8 recipe needs representative audio to calibrate (representative_audio=...; CLI --data DIR)."
        )
    aeq = _aeq()
    rows = weight_layers(content)
    keep = _named_layers(rows, list(float_layers))
    grid = [row for row in rows if row["grid_bits"]]
    data = _signature_data(input_name, np.asarray(report_inputs))
    entry = {
        "name": "ai-edge-quantizer",
        "version": quantizer_version(),
        "recipe": recipe,
        "description": RECIPES[recipe],
    }
    try:
        if recipe == "int4-mixed":
            quantized, engine = _run(aeq, content, _recipe(aeq, "int4-weights", keep, frontend_layers, grid))
            first = error_report(engine, aeq, rows, data, quantized, threshold=threshold)
            flagged = [row for row, layer in zip(rows, first) if layer["flagged"] and row not in keep]
            keep = keep + flagged
            entry["int4_report"] = first
        calibrated = None if calibration is None or recipe != "int8" else _signature_data(input_name, calibration)
        quantized, engine = _run(aeq, content, _recipe(aeq, recipe, keep, frontend_layers, grid), calibrated)
        entry["layers"] = error_report(engine, aeq, rows, data, quantized, threshold=threshold)
    except (ValueError, RuntimeError, KeyError) as error:
        raise ConversionError(f"LiteRT's quantizer failed on the {recipe} recipe: {error}") from error
    entry.update(float_layers=sorted({row["layer"] for row in keep}), frontend_layers=list(frontend_layers))
    for bits in (4, 8):
        entry[f"int{bits}_grid_layers"] = sorted({row["layer"] for row in grid if row["grid_bits"] == bits})
    if recipe == "int4-weights":  # what int4 training could keep int8 (optimize --int4 --int8-layers)
        entry["int8_within"] = {
            "size_ratio": INT8_SIZE_RATIO,
            "layers": int8_within(entry["layers"], len(quantized), len(content)),
        }
    entry["flag_threshold"] = threshold
    entry["report_rows"] = int(len(report_inputs))
    return quantized, entry


def _run(aeq, content: bytes, rules: list, calibration=None) -> tuple:
    engine = _quantizer(aeq, content, rules)
    with warnings.catch_warnings():  # the calibrator keeps every tensor, and LiteRT warns that it does
        warnings.simplefilter("ignore", UserWarning)
        qsvs = engine.calibrate(calibration, num_threads=1) if calibration is not None else None
        result = engine.quantize(qsvs, enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model), engine


def quantizer_version() -> str:
    """The installed ai-edge-quantizer version, or ``unknown``."""
    from importlib import metadata

    try:
        return metadata.version("ai-edge-quantizer")
    except metadata.PackageNotFoundError:
        return "unknown"
