"""int8 ``.tflite`` -> TFLite Micro deployables: C++ array + header, op resolver header, arena size.

TFLite Micro has no RFFT2D, COMPLEX_ABS, int8 LOG, hybrid kernels or dynamic shapes, so the model
given here is normally an ``int8`` conversion with ``frontend=False``; :func:`to_micro` refuses ops
outside :data:`MICRO_OP_RESOLVER` (and ops left in float), listing them. The arena is measured, not
guessed: the model runs once in the ``tflite-micro`` interpreter with a recording allocator, and the
size read back is checked by a second run in an arena of exactly that size.
"""

import json
import logging
import os
import re
import tempfile

import numpy as np

from trillsson_tf import litert
from trillsson_tf.errors import ConversionError, ParameterError
from trillsson_tf.folders import refuse_existing_files

__all__ = ["MICRO_OP_RESOLVER", "micro_arena_bytes", "micro_run", "to_micro"]

_log = logging.getLogger(__name__)

MICRO_OP_RESOLVER = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "EXPAND_DIMS": "AddExpandDims",
    "FULLY_CONNECTED": "AddFullyConnected",
    "HARD_SWISH": "AddHardSwish",
    "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MAXIMUM": "AddMaximum",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MUL": "AddMul",
    "PAD": "AddPad",
    "QUANTIZE": "AddQuantize",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "SOFTMAX": "AddSoftmax",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
}
"""Builtin ops this converter accepts for TFLite Micro -> their ``MicroMutableOpResolver`` method."""

_ARENA_MARGIN_BYTES = 1024  # slack for the board's allocator alignment, added to the measured size
_MAX_PROBE_ARENA_BYTES = 1 << 26
_ARENA_PATTERN = re.compile(r"Arena allocation total (\d+) bytes")
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BYTES_PER_LINE = 12


def _check_micro_ops(ops: list) -> None:
    missing = sorted({row["op"] for row in ops} - set(MICRO_OP_RESOLVER))
    if missing:
        raise ConversionError(
            f"TFLite Micro lacks these ops of the model: {missing}. Convert with quantize='int8' and frontend=False "
            "(CLI: --quantize int8 --no-frontend) so that the frontend runs outside the model."
        )
    quantized = any(dtype == "int8" for row in ops for dtype in row["inputs"] + row["outputs"])
    float_ops = sorted({row["op"] for row in ops if row["float"]})
    if quantized and float_ops:
        raise ConversionError(
            f"The model mixes int8 and float: these ops run in float {float_ops} (a hybrid/dynamic-range or "
            "partly quantized model), which TFLite Micro cannot run. Convert with quantize='int8' and frontend=False."
        )


def micro_run(model_content: bytes, inputs: np.ndarray, *, arena_bytes=None) -> np.ndarray:
    """Run a model in the ``tflite-micro`` Python interpreter, one row at a time.

    Args:
        model_content: ``.tflite`` bytes (static batch 1 is used for a dynamic batch axis).
        inputs: ``[n, ...]`` rows in the input's own dtype (int8 for an int8 model).
        arena_bytes: Tensor arena size in bytes; ``None`` lets the interpreter pick (10x the model).

    Returns:
        ``[n, D]`` raw outputs in the output's dtype.
    """
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model_content, arena_size=arena_bytes)
    rows = []
    for row in inputs:
        interpreter.set_input(row[np.newaxis], 0)
        interpreter.invoke()
        rows.append(np.array(interpreter.get_output(0)))
    return np.concatenate(rows)


def micro_arena_bytes(model_content: bytes, example_input: np.ndarray) -> int:
    """The tensor arena a model used in one ``invoke()`` of the ``tflite-micro`` interpreter.

    Args:
        model_content: ``.tflite`` bytes.
        example_input: One input row ``[1, ...]`` in the input's dtype.

    Returns:
        Arena bytes used (head + tail) as reported by the recording allocator.
    """
    from tflite_micro.python.tflite_micro import runtime

    # The interpreter's default arena (10x the model) is too small for a small model with large
    # activations (Wav2Small: 15 KB of weights, 1 s of frames): grow it until allocation succeeds.
    arena = max(10 * len(model_content), 1 << 16)
    while True:
        try:
            interpreter = runtime.Interpreter.from_bytes(model_content, arena_size=arena)
            break
        except RuntimeError:
            if arena >= _MAX_PROBE_ARENA_BYTES:
                raise ConversionError(
                    f"tflite-micro could not allocate the model's tensors in {arena} bytes."
                ) from None
            arena *= 2
    interpreter.set_input(example_input, 0)
    interpreter.invoke()
    # print_allocations writes to the C stderr; capture file descriptor 2 around it.
    with tempfile.TemporaryFile(mode="w+") as capture:
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        report = capture.read()
    match = _ARENA_PATTERN.search(report)
    if not match:
        raise ConversionError(f"tflite-micro did not report the arena size; its report was: {report[:500]!r}")
    return int(match.group(1))


def c_array(data: bytes) -> str:
    """The bytes as the lines of a C array initializer, 12 per line (``    0x1c, 0x00, ...,``)."""
    lines = []
    for start in range(0, len(data), _BYTES_PER_LINE):
        lines.append("    " + ", ".join(f"0x{byte:02x}" for byte in data[start : start + _BYTES_PER_LINE]) + ",")
    return "\n".join(lines)


def _read_model(model_path, name: str) -> tuple:
    """``(bytes, sorted op names)`` of a model TFLite Micro can run; refuses a bad name or model."""
    if not _NAME_PATTERN.match(name):
        raise ParameterError(f"name must be a C identifier (letters, digits, underscores), got {name!r}.")
    model_path = os.fspath(model_path)
    if not os.path.isfile(model_path):
        raise ParameterError(f"TFLite model not found: {model_path!r}.")
    with open(model_path, "rb") as handle:
        content = handle.read()
    ops = litert.op_table(content)
    _check_micro_ops(ops)
    return content, sorted({row["op"] for row in ops})


def _measure_arena(content: bytes) -> tuple:
    """``(input details, output details, arena bytes used, arena bytes with slack)``, checked by a run in that arena."""
    interpreter = litert.make_interpreter(model_content=content)
    input_details = interpreter.get_input_details()[0]
    output_details = interpreter.get_output_details()[0]
    if -1 in list(input_details["shape_signature"])[1:]:
        raise ConversionError(
            f"TFLite Micro needs static shapes; the input is {list(input_details['shape_signature'])}. "
            "Convert with frontend=False (patch input)."
        )
    example = np.zeros([1, *input_details["shape"][1:]], dtype=input_details["dtype"])
    used = micro_arena_bytes(content, example)
    arena = used + _ARENA_MARGIN_BYTES
    micro_run(content, example, arena_bytes=arena)  # the reported size is enough
    return input_details, output_details, used, arena


def _tensor(details: dict) -> dict:
    """``{'shape', 'dtype', 'scale', 'zero_point'}`` of a tensor's interpreter details (real = (q - zero_point) * scale)."""
    scale, zero_point = details["quantization"]
    return {
        "shape": [int(s) for s in details["shape"]],
        "dtype": np.dtype(details["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


def _header(name: str, model_file: str, used: int, arena: int, model_input: dict, model_output: dict) -> str:
    """``<name>.h``: the array's declarations, the arena size and the input and output quantization."""
    guard = name.upper()
    return (
        f"// Generated by trillsson_tf converters.micro from {model_file}.\n"
        f"#ifndef {guard}_H_\n#define {guard}_H_\n\n"
        f"// Tensor arena measured with the tflite-micro interpreter: {used} bytes used, plus {_ARENA_MARGIN_BYTES} slack.\n"
        f"constexpr int k{camel(name)}ArenaBytes = {arena};\n"
        f"// Input {model_input['shape']} {model_input['dtype']}: "
        f"real = (q - {model_input['zero_point']}) * {model_input['scale']!r}\n"
        f"// Output {model_output['shape']} {model_output['dtype']}: "
        f"real = (q - {model_output['zero_point']}) * {model_output['scale']!r}\n\n"
        f'extern "C" alignas(16) const unsigned char {name}[];\n'
        f'extern "C" const unsigned int {name}_len;\n\n#endif  // {guard}_H_\n'
    )


def _source(name: str, model_file: str, content: bytes) -> str:
    """``<name>.cc``: the model bytes as an aligned C array and their length."""
    return (
        f'// Generated by trillsson_tf converters.micro from {model_file}.\n#include "{name}.h"\n\n'
        f'extern "C" alignas(16) const unsigned char {name}[] = {{\n{c_array(content)}\n}};\n'
        f'extern "C" const unsigned int {name}_len = {len(content)};\n'
    )


def _resolver(name: str, op_names: list) -> str:
    """``<name>_op_resolver.h``: a function that adds exactly ``op_names`` to a ``MicroMutableOpResolver``."""
    guard = name.upper()
    registrations = "\n".join(
        f"  if (resolver->{MICRO_OP_RESOLVER[op]}() != kTfLiteOk) return kTfLiteError;" for op in op_names
    )
    return (
        f"// Generated by trillsson_tf converters.micro: the ops {name} needs.\n"
        f"#ifndef {guard}_OP_RESOLVER_H_\n#define {guard}_OP_RESOLVER_H_\n\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        f"constexpr int k{camel(name)}OpCount = {len(op_names)};\n\n"
        f"inline TfLiteStatus Register{camel(name)}Ops(tflite::MicroMutableOpResolver<k{camel(name)}OpCount>* resolver) {{\n"
        f"{registrations}\n  return kTfLiteOk;\n}}\n\n#endif  // {guard}_OP_RESOLVER_H_\n"
    )


def to_micro(model_path, out_dir, *, name: str = "g_model", overwrite: bool = False) -> dict:
    """Write the TFLite Micro deployables of an int8 ``.tflite`` model.

    Files in ``out_dir``: ``<name>.cc`` (``extern "C" alignas(16) const unsigned char <name>[]``
    and ``<name>_len``), ``<name>.h`` (their declarations, the arena size and the input/output
    quantization), ``<name>_op_resolver.h`` (a function that adds exactly the needed ops to a
    ``tflite::MicroMutableOpResolver``) and ``<name>_micro.json`` (the report returned here).

    Args:
        model_path: ``.tflite`` file, normally from ``convert(..., quantize='int8', frontend=False)``.
        out_dir: Output folder (created).
        name: C identifier of the array (also the file stem).
        overwrite: Replace existing files.

    Returns:
        ``{'files', 'ops', 'resolver', 'arena_bytes', 'arena_used_bytes', 'model_bytes', ...}``.

    Raises:
        ParameterError: a bad name, a missing model, or existing files without ``overwrite``.
        ConversionError: ops TFLite Micro lacks (listed), or int8 mixed with float ops.
    """
    content, op_names = _read_model(model_path, name)
    model_path = os.fspath(model_path)
    input_details, output_details, used, arena = _measure_arena(content)
    model_input, model_output = _tensor(input_details), _tensor(output_details)

    out_dir = os.fspath(out_dir)
    files = {
        "source": os.path.join(out_dir, f"{name}.cc"),
        "header": os.path.join(out_dir, f"{name}.h"),
        "resolver": os.path.join(out_dir, f"{name}_op_resolver.h"),
        "report": os.path.join(out_dir, f"{name}_micro.json"),
    }
    refuse_existing_files(files.values(), overwrite=overwrite)
    os.makedirs(out_dir, exist_ok=True)
    model_file = os.path.basename(model_path)
    texts = {
        "header": _header(name, model_file, used, arena, model_input, model_output),
        "source": _source(name, model_file, content),
        "resolver": _resolver(name, op_names),
    }
    for key, text in texts.items():
        with open(files[key], "w") as handle:
            handle.write(text)
    report = {
        "model": os.path.abspath(model_path),
        "name": name,
        "files": files,
        "model_bytes": len(content),
        "ops": op_names,
        "resolver": [MICRO_OP_RESOLVER[op] for op in op_names],
        "arena_used_bytes": used,
        "arena_bytes": arena,
        "input": model_input,
        "output": model_output,
    }
    with open(files["report"], "w") as handle:
        json.dump(report, handle, indent=2)
    _log.info("Wrote TFLite Micro files for %s to %s (arena %d bytes, ops %s)", model_path, out_dir, arena, op_names)
    return report


def camel(name: str) -> str:
    """A C identifier in CamelCase (``g_model`` -> ``GModel``), for the constants and functions named after it."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
