"""LiteRT 2.x ``CompiledModel`` runners: one compiled model of a ``.tflite`` file, called like a signature runner.

:class:`CompiledRunner` is what :class:`~trillsson_tf.runtime.pool.InterpreterPool` makes for
``api='compiled'``; :func:`check_api` checks the ``api`` and ``accelerator`` arguments. Imports
numpy; ``ai_edge_litert`` is imported when a runner is first made. Never TensorFlow.
"""

import ctypes.util
import glob
import logging
import mmap
import os
import threading

import numpy as np

from trillsson_tf.contract import SIGNATURE_KEY
from trillsson_tf.errors import ParameterError, TrillssonError
from trillsson_tf.runtime.card import describe

__all__ = [
    "ACCELERATORS",
    "APIS",
    "DEFAULT_API",
    "CompiledRunner",
    "check_api",
    "custom_ops",
    "fixed_shapes",
    "refuse_custom_ops",
]

APIS = ("interpreter", "compiled")
"""The LiteRT APIs a :class:`~trillsson_tf.runtime.TFLiteModel` runs on: ``Interpreter`` (1.x) or ``CompiledModel`` (2.x)."""
DEFAULT_API = "interpreter"
ACCELERATORS = ("cpu", "gpu")
"""``cpu``: XNNPACK and the builtin kernels; ``gpu``: LiteRT's GPU accelerator, the CPU running the ops it lacks."""

_log = logging.getLogger(__package__)
_environment = None
_environment_lock = threading.Lock()


def check_api(api: str, accelerator: str) -> None:
    """Raise :class:`ParameterError` for an unknown ``api`` or ``accelerator``, or a GPU asked of the interpreter."""
    if api not in APIS:
        raise ParameterError(f"api must be one of {list(APIS)}, got {api!r}.")
    if accelerator not in ACCELERATORS:
        raise ParameterError(f"accelerator must be one of {list(ACCELERATORS)}, got {accelerator!r}.")
    if accelerator != "cpu" and api != "compiled":
        raise ParameterError(f"accelerator={accelerator!r} needs api='compiled' (the Interpreter runs on the CPU).")


def _litert():
    """The ``ai_edge_litert`` modules of the CompiledModel API (2.x)."""
    try:
        from ai_edge_litert import compiled_model, environment, hardware_accelerator, options
    except ImportError as error:
        raise TrillssonError(
            f"api='compiled' needs LiteRT 2.x: `pip install ai-edge-litert==2.3.0` ({error}); api='interpreter' "
            "runs on tflite_runtime too."
        ) from None
    return compiled_model, environment, hardware_accelerator, options


def _shared_environment():
    """One LiteRT environment for the process, made on first use, with no NPU plugin folders.

    The plugin and dispatch folders are this package's (which hold none), so that LiteRT does not
    try, and log its failure to load, every vendor's NPU compiler plugin in the wheel.
    """
    global _environment
    with _environment_lock:
        if _environment is None:
            _, environment, _, _ = _litert()
            here = os.path.dirname(os.path.abspath(__file__))
            runtime = os.path.dirname(os.path.abspath(environment.__file__))
            _environment = environment.Environment.create(
                runtime_path=runtime, compiler_plugin_path=here, dispatch_library_path=here
            )
        return _environment


def _gpu_refusal(name: str, runtime_dir: str) -> str:
    """Why the GPU accelerator did not start for ``name`` (one line, naming the fallback)."""
    libraries = glob.glob(os.path.join(runtime_dir, "*Gpu*Accelerator*"))
    if not libraries:
        why = "this ai-edge-litert wheel ships no GPU accelerator for this platform"
    elif ctypes.util.find_library("vulkan") is None:
        why = "its WebGPU accelerator needs Vulkan, and libvulkan.so.1 is not installed (Debian: libvulkan1)"
    else:
        why = "its WebGPU accelerator found no GPU adapter (no GPU, or no Vulkan driver for it)"
    return f"LiteRT's GPU accelerator cannot run {name!r} on this machine: {why}. Use accelerator='cpu'."


def custom_ops(content) -> list:
    """Names of the operators of a ``.tflite`` flatbuffer (bytes or mmap) that are not LiteRT builtins (custom, Flex)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == schema.BuiltinOperator.CUSTOM:
            names.append((code.CustomCode() or b"?").decode())
    return sorted(set(names))


def refuse_custom_ops(source: dict, name: str) -> None:
    """Raise :class:`ParameterError` naming the file's ops that are not LiteRT builtins: neither API runs them.

    The runtime registers no custom op, so such a file could only fail at its first call, with LiteRT's
    multi-line message.
    """
    content = source.get("model_content")
    if content is not None:
        ops = custom_ops(content)
    else:
        with open(source["model_path"], "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            ops = custom_ops(data)
    if ops:
        raise ParameterError(
            f"{name!r} uses op(s) {', '.join(ops)}, which are not LiteRT builtins: neither api='interpreter' nor "
            "api='compiled' runs them (no fallback); convert with builtin ops only, as `trillsson-tf convert` does."
        )


def fixed_shapes(content: bytes, subgraph: int, shapes: dict) -> bytes:
    """A copy of a ``.tflite`` flatbuffer whose tensors ``{index: shape}`` of ``subgraph`` have those shapes, fixed.

    The shape and shape signature vectors are written in place (same rank), so the copy is the
    file's bytes with a few integers changed; the other tensors' sizes follow when LiteRT prepares it.
    """
    from ai_edge_litert import schema_py_generated as schema

    def vectors(buffer):
        graph = schema.Model.GetRootAs(buffer, 0).Subgraphs(subgraph)
        for index, shape in shapes.items():
            tensor = graph.Tensors(index)
            for vector in (tensor.ShapeAsNumpy(), tensor.ShapeSignatureAsNumpy()):
                if isinstance(vector, np.ndarray):  # 0 when the file has no such vector
                    yield vector, shape

    if all(np.array_equal(vector, shape) for vector, shape in vectors(content)):
        return content  # the file's own shapes: no copy
    patched = bytearray(content)
    for vector, shape in vectors(patched):
        vector[:] = shape
    return bytes(patched)


class CompiledRunner:
    """One LiteRT ``CompiledModel`` of a file, called like :func:`trillsson_tf.litert.runner`'s runners.

    A compiled model runs at the shapes it was compiled for (LiteRT 2.3.0 does not carry an input
    resize through to its output buffers), so each new input shape compiles a copy of the file with
    that input shape, and the batch size of its outputs, fixed (:func:`fixed_shapes`).

    Args:
        content: The ``.tflite`` bytes.
        details: The signature runner (or main subgraph) of an interpreter on the same file,
            whose ``get_input_details()`` / ``get_output_details()`` (shape signatures,
            quantization) this runner reports.
        num_threads: CPU threads; ``None`` leaves LiteRT's default.
        accelerator: One of :data:`ACCELERATORS`.
        name: The file's name, for messages.

    Attributes:
        fully_accelerated: Whether the accelerator runs every op (``False`` for ``gpu`` when the CPU runs some).

    Raises:
        ParameterError: an output with a free size beyond its batch axis, a GPU that does not start,
            a file LiteRT cannot prepare (naming its non-builtin ops).
    """

    def __init__(self, content: bytes, details, *, num_threads=None, accelerator="cpu", name="<bytes>"):
        self._content, self._name, self._accelerator = content, name, accelerator
        self._inputs, self._outputs = details.get_input_details(), details.get_output_details()
        if len(self._inputs) != 1:
            raise ParameterError(f"TFLite model {name!r} must have one input; it has {describe(self._inputs)}.")
        for key, output in self._outputs.items():
            if any(int(size) < 0 for size in output["shape_signature"][1:]):
                raise ParameterError(
                    f"{name!r}: output {key!r} has a free size beyond its batch axis "
                    f"({[int(s) for s in output['shape_signature']]}), which api='compiled' cannot run (LiteRT 2.3.0 "
                    "fixes output shapes when it compiles); use api='interpreter'."
                )
        compiled_model, _, accelerators, options = _litert()
        cpu = options.CpuOptions(num_threads=num_threads or 0)
        flags = accelerators.HardwareAccelerator.CPU
        if accelerator == "gpu":
            flags = accelerators.HardwareAccelerator.GPU | accelerators.HardwareAccelerator.CPU
        self._options = options.Options(hardware_accelerators=flags, cpu_options=cpu)
        self._runtime_dir = os.path.dirname(os.path.abspath(compiled_model.__file__))
        self._compile_model = compiled_model.CompiledModel.from_buffer
        self._shape = None
        self._compile(tuple(int(size) for size in next(iter(self._inputs.values()))["shape"]))

    def get_input_details(self) -> dict:
        """``{input name: details}`` (the interpreter's: shape signature, dtype, quantization)."""
        return self._inputs

    def get_output_details(self) -> dict:
        """``{output name: details}``."""
        return self._outputs

    def _compile(self, shape: tuple) -> None:
        """Compile the file with its input fixed at ``shape`` and its outputs' batch size following it."""
        (input_details,) = self._inputs.values()
        shapes = {int(input_details["index"]): shape}
        for output in self._outputs.values():
            fixed = [int(size) for size in output["shape_signature"]]
            shapes[int(output["index"])] = [shape[0] if fixed[0] < 0 else fixed[0], *fixed[1:]]
        content = fixed_shapes(self._content, self._subgraph(), shapes)
        try:
            model = self._compile_model(content, environment=_shared_environment(), options=self._options)
            signatures = model.get_signature_list()
            key = SIGNATURE_KEY if SIGNATURE_KEY in signatures else next(iter(signatures))
            index = model.get_signature_index(key)
            buffers = model.create_input_buffers(index), model.create_output_buffers(index)
            compiled = model.get_output_tensor_details(key)
        except RuntimeError as error:
            raise ParameterError(self._refusal(error)) from None
        names = signatures[key]["outputs"]
        sizes = {name: shapes[int(self._outputs[name]["index"])] for name in names}
        if any(
            list(compiled[name]["shape"]) != list(sizes[name]) for name in names
        ):  # never let it write past a buffer
            raise ParameterError(
                f"LiteRT compiled {self._name!r} at input {list(shape)} with outputs "
                f"{ {name: compiled[name]['shape'] for name in names} }, not {sizes}; use api='interpreter'."
            )
        self._model, self._content_compiled, self._shape = model, content, shape
        self._signature, (self._input_buffers, self._output_buffers) = index, buffers
        self._reads = [(name, int(np.prod(sizes[name])), tuple(sizes[name])) for name in names]
        self.fully_accelerated = model.is_fully_accelerated()
        if self._accelerator == "gpu" and not self.fully_accelerated:
            _log.info("%s: the GPU runs part of the graph; the CPU runs the ops it lacks.", self._name)

    def _subgraph(self) -> int:
        from ai_edge_litert import schema_py_generated as schema

        model = schema.Model.GetRootAs(self._content, 0)
        if not model.SignatureDefsLength():
            return 0
        keys = [model.SignatureDefs(i).SignatureKey().decode() for i in range(model.SignatureDefsLength())]
        return model.SignatureDefs(keys.index(SIGNATURE_KEY) if SIGNATURE_KEY in keys else 0).SubgraphIndex()

    def _refusal(self, error: RuntimeError) -> str:
        """The one-line message of a compiled model that could not be made."""
        if self._accelerator == "gpu":
            return _gpu_refusal(self._name, self._runtime_dir)
        detail = " ".join(str(error).split())
        return f"LiteRT's CompiledModel cannot prepare {self._name!r} ({detail}); api='interpreter' may run it."

    def __call__(self, **inputs) -> dict:
        """``{input name: array}`` -> ``{output name: array}`` (one run; a new input shape compiles first)."""
        (value,) = inputs.values()
        if value.shape != self._shape:
            self._compile(tuple(value.shape))
        self._input_buffers[0].write(value)
        self._model.run_by_index(self._signature, self._input_buffers, self._output_buffers)
        return {
            name: buffer.read(size, self._outputs[name]["dtype"]).reshape(shape)
            for (name, size, shape), buffer in zip(self._reads, self._output_buffers)
        }
