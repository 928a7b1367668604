"""LiteRT (TFLite) helpers shared by the runtime, the teachers, the converters and the apps.

One home for what every ``.tflite`` user here needs: the interpreter (``ai_edge_litert``
first, ``tflite_runtime`` as the fallback), a runner for files with or without signatures,
integer (int8 and uint8) quantization of inputs and dequantization of outputs with a tensor's
own scale and zero point, the JSON description of a tensor written into model cards, the
weight count of a file and its op table.

Imports numpy; the interpreter module is imported when first asked for. Never TensorFlow.
"""

import importlib

import numpy as np

from trillsson_tf.contract import SIGNATURE_KEY
from trillsson_tf.errors import TrillssonError

__all__ = [
    "INTERPRETER_MODULES",
    "MainSubgraph",
    "dequantize",
    "interpreter_class",
    "make_interpreter",
    "op_table",
    "ops",
    "parameter_count",
    "quantize",
    "runner",
    "tensor_card",
]

INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
"""Modules tried, in order, for the TFLite ``Interpreter`` class."""

_FLOAT_DTYPES = ("float32", "float16", "float64")
_QUANT_PLUMBING = ("QUANTIZE", "DEQUANTIZE")


def _interpreter_module():
    failures = []
    for module_name in INTERPRETER_MODULES:
        try:
            return importlib.import_module(module_name)
        except ImportError as error:
            failures.append(f"{module_name}: {error}")
    raise TrillssonError(
        "No TFLite interpreter is installed: `pip install ai-edge-litert` (preferred) or "
        f"`pip install tflite-runtime` (older platforms, numpy < 2). Tried: {'; '.join(failures)}."
    )


def interpreter_class():
    """The ``Interpreter`` class of the first importable module in :data:`INTERPRETER_MODULES`.

    Raises:
        TrillssonError: neither ``ai_edge_litert`` nor ``tflite_runtime`` is installed.
    """
    return _interpreter_module().Interpreter


def make_interpreter(*, model_path=None, model_content=None, num_threads=None, delegates: bool = True):
    """A LiteRT ``Interpreter`` over a ``.tflite`` file or its bytes (tensors not yet allocated).

    Args:
        model_path: Path of the ``.tflite`` file.
        model_content: The flatbuffer bytes (instead of ``model_path``).
        num_threads: Interpreter threads; ``None`` leaves the interpreter's default.
        delegates: ``False`` runs the builtin kernels without the default delegate (XNNPACK),
            so that op and tensor details are those of the file, not of fused delegate nodes.

    Raises:
        TrillssonError: no interpreter package is installed.
    """
    module = _interpreter_module()
    options = (
        {} if delegates else {"experimental_op_resolver_type": module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    )
    return module.Interpreter(model_path=model_path, model_content=model_content, num_threads=num_threads, **options)


class MainSubgraph:
    """A model file's main subgraph, called like a signature runner (for files without signatures).

    Inputs and outputs are keyed by tensor name; inputs are resized only when their shape changes.
    """

    def __init__(self, interpreter):
        self._interpreter = interpreter
        self._inputs = {details["name"]: details for details in interpreter.get_input_details()}
        self._outputs = {details["name"]: details for details in interpreter.get_output_details()}
        self._shapes = {}

    def get_input_details(self) -> dict:
        """``{tensor name: details}`` of the inputs."""
        return self._inputs

    def get_output_details(self) -> dict:
        """``{tensor name: details}`` of the outputs."""
        return self._outputs

    def __call__(self, **inputs) -> dict:
        """``{input name: array}`` -> ``{output name: array}`` (one invoke)."""
        if any(self._shapes.get(name) != value.shape for name, value in inputs.items()):
            for name, value in inputs.items():
                self._interpreter.resize_tensor_input(self._inputs[name]["index"], value.shape)
            self._interpreter.allocate_tensors()
            self._shapes = {name: value.shape for name, value in inputs.items()}
        for name, value in inputs.items():
            self._interpreter.set_tensor(self._inputs[name]["index"], value)
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(details["index"]) for name, details in self._outputs.items()}


def runner(interpreter):
    """The interpreter's ``serving_default`` signature runner (else its first one), else its :class:`MainSubgraph`.

    Every runner returned is called with ``{input name: array}`` keywords, returns
    ``{output name: array}`` and has ``get_input_details()`` / ``get_output_details()`` dicts.
    """
    signatures = interpreter.get_signature_list()
    if signatures:
        return interpreter.get_signature_runner(
            SIGNATURE_KEY if SIGNATURE_KEY in signatures else next(iter(signatures))
        )
    return MainSubgraph(interpreter)


def quantize(values: np.ndarray, details: dict) -> np.ndarray:
    """Float values -> a tensor's dtype: ``round(x / scale) + zero_point``, clipped, for int8/uint8 tensors.

    Args:
        values: float32 array for the tensor.
        details: The tensor's interpreter details (``dtype``, ``quantization = (scale, zero_point)``).

    Returns:
        ``values`` in the tensor's dtype (a plain cast for float tensors and unquantized integers).
    """
    dtype = np.dtype(details["dtype"])
    scale, zero_point = details["quantization"]
    if dtype.kind not in "iu" or not scale:
        return values.astype(dtype, copy=False)
    limits = np.iinfo(dtype)
    return np.clip(np.round(values / scale) + zero_point, limits.min, limits.max).astype(dtype)


def dequantize(values: np.ndarray, details: dict) -> np.ndarray:
    """A tensor's values -> float32: ``(q - zero_point) * scale`` for quantized int8/uint8 tensors.

    Args:
        values: Array read from the tensor.
        details: The tensor's interpreter details (``dtype``, ``quantization``).

    Returns:
        float32 array of the same shape.
    """
    scale, zero_point = details["quantization"]
    if np.dtype(details["dtype"]).kind not in "iu" or not scale:
        return values.astype(np.float32, copy=False)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def tensor_card(name: str, details: dict) -> dict:
    """The JSON description of a tensor in a model card.

    Returns:
        ``{'name', 'shape': shape signature (-1 = any size), 'dtype', 'quantization': {'scale',
        'zero_point'} or None}``.
    """
    scale, zero_point = details["quantization"]
    return {
        "name": name,
        "shape": [int(size) for size in details["shape_signature"]],
        "dtype": np.dtype(details["dtype"]).name,
        "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None,
    }


def parameter_count(model_path: str) -> int:
    """Elements of the float and 8/16-bit integer constant (weight) tensors of a ``.tflite`` model.

    Scalars and int32 tensors (shapes, indices) are left out.
    """
    probe = make_interpreter(model_path=model_path)
    total = 0
    for detail in probe.get_tensor_details():
        try:
            value = probe.get_tensor(detail["index"])
        except ValueError:  # not a constant: no data before allocate_tensors()
            continue
        if value.size > 1 and (value.dtype.kind == "f" or value.dtype.itemsize <= 2):
            total += int(value.size)
    return total


def ops(interpreter) -> list:
    """The operators of an interpreter's main subgraph: ``{'index', 'op_name', 'inputs', 'outputs'}`` each.

    The interpreter offers them only through a private method; this is the one place that calls it.
    """
    return interpreter._get_ops_details()


def op_table(model_content: bytes) -> list:
    """The operators of a ``.tflite`` model with the dtypes of their tensors (no delegate fusing).

    Args:
        model_content: The flatbuffer bytes.

    Returns:
        list of ``{'index', 'op', 'inputs': [dtype names], 'outputs': [dtype names], 'float': bool}``;
        ``float`` marks a compute op (not QUANTIZE/DEQUANTIZE) with a floating-point tensor.
    """
    probe = make_interpreter(model_content=model_content, num_threads=1, delegates=False)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in probe.get_tensor_details()}
    rows = []
    for op in ops(probe):
        inputs = [dtypes.get(int(i), "none") for i in op["inputs"] if int(i) >= 0]
        outputs = [dtypes.get(int(i), "none") for i in op["outputs"] if int(i) >= 0]
        is_float = op["op_name"] not in _QUANT_PLUMBING and any(d in _FLOAT_DTYPES for d in inputs + outputs)
        rows.append(
            {"index": int(op["index"]), "op": op["op_name"], "inputs": inputs, "outputs": outputs, "float": is_float}
        )
    return rows
