"""The interpreters of one ``.tflite`` file, one per call size, each behind a lock of its own.

The lock makes :class:`~trillsson_tf.runtime.TFLiteModel` thread-safe: an interpreter holds its
input and output in its own tensors, so one call at a time runs in it.
"""

import threading

import numpy as np

from trillsson_tf import litert
from trillsson_tf.errors import ParameterError
from trillsson_tf.runtime.card import describe
from trillsson_tf.runtime.compiled import DEFAULT_API, CompiledRunner, check_api, refuse_custom_ops

__all__ = ["CALL_SIZES", "InterpreterPool"]

# Chunks (patches or audio windows) per interpreter call for models whose batch size is free,
# largest first: n chunks go in calls of these sizes (7 = 4 + 2 + 1). Each size has its own
# interpreter, made on first use, so no input shape ever changes: a resize makes the interpreter
# re-plan its memory and XNNPACK re-prepare the graph, about 8 ms against 1.4 ms for one int8
# EfficientNetV2-B0 patch. Batched calls are what lets the threads share the work: per patch
# 1.37 / 1.06 / 0.87 / 0.79 ms at 1 / 2 / 4 / 8 patches a call with 2 threads (1.81 / 1.61 /
# 1.51 / 1.47 ms with one; measured on a 2-core machine). No call of 8: its float32 arena added
# 72 MB to the process's peak memory (126 -> 198 MB) for 9% less time per int8 patch.
CALL_SIZES = (4, 2, 1)


class InterpreterPool:
    """The interpreters of one model file, and the one call that runs them.

    Args:
        source: ``{'model_path': path}`` or ``{'model_content': bytes}``.
        num_threads: Interpreter threads; ``None`` leaves the interpreter's default.
        name: The file's name, for messages.
        api: ``'interpreter'`` (LiteRT's ``Interpreter``) or ``'compiled'`` (its ``CompiledModel``, one per
            call size too: :class:`~trillsson_tf.runtime.compiled.CompiledRunner`).
        accelerator: ``'cpu'``, or ``'gpu'`` with ``api='compiled'``.

    Attributes:
        input_name: The name of the model's one input; ``input``: its details.
        outputs: ``{name: details}`` of every output of the model.
        output_keys: The outputs a call returns, concatenated (set by :meth:`use_outputs`).
        call_sizes: Chunks per call: :data:`CALL_SIZES`, or the model's own fixed batch size.
        first: The runner made first, which takes the smallest call size.
        runners: ``{size: runner}`` of the other call sizes, each made on first use.
        api, accelerator: As given.

    Raises:
        ParameterError: the file is no TFLite model, or it has more than one input; a bad
            ``num_threads``, ``api`` or ``accelerator``; a file or GPU the compiled API cannot run.
        TrillssonError: neither ``ai_edge_litert`` nor ``tflite_runtime`` is installed.
    """

    def __init__(self, source: dict, *, num_threads=None, name="<bytes>", api=DEFAULT_API, accelerator="cpu"):
        if num_threads is not None and (
            isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1
        ):
            raise ParameterError(f"num_threads must be a positive integer or None, got {num_threads!r}.")
        check_api(api, accelerator)
        self.api, self.accelerator = api, accelerator
        interpreter_class = litert.interpreter_class()
        self._make_runner = lambda: litert.runner(interpreter_class(**source, num_threads=num_threads))
        if api == "compiled":
            self._make_runner = self._compiled(source, num_threads, accelerator, name)
        self._locks = {}  # id(runner) -> the lock its set-input/invoke/get-output sequence holds
        self._runners_lock = threading.Lock()  # making a sized runner
        try:
            self.first = self._new_runner()
        except ParameterError:
            raise
        except ValueError as error:
            raise ParameterError(f"Cannot load {name!r} as a TFLite model: {error}") from None
        refuse_custom_ops(source, name)
        self.runners = {}
        inputs = self.first.get_input_details()
        if len(inputs) != 1:
            raise ParameterError(f"TFLite model {name!r} must have one input; it has {describe(inputs)}.")
        ((self.input_name, self.input),) = inputs.items()
        fixed_batch = int(self.input["shape_signature"][0])
        self.call_sizes = (fixed_batch,) if fixed_batch > 0 else CALL_SIZES
        self.outputs = self.first.get_output_details()
        self.use_outputs(())

    def use_outputs(self, keys) -> None:
        """Return the outputs ``keys`` (names in :attr:`outputs`) from every call, concatenated in that order."""
        self.output_keys = tuple(keys)
        self._output_details = {key: self.outputs[key] for key in self.output_keys}

    @staticmethod
    def _compiled(source: dict, num_threads, accelerator: str, name: str):
        """A maker of :class:`CompiledRunner` for the file, which reports the details of an interpreter's runner."""
        try:
            details = litert.runner(litert.make_interpreter(**source, delegates=False))
        except ValueError as error:
            raise ParameterError(f"Cannot load {name!r} as a TFLite model: {error}") from None
        content = source.get("model_content")
        if content is None:
            with open(source["model_path"], "rb") as handle:
                content = handle.read()
        refuse_custom_ops({"model_content": content}, name)  # before LiteRT fails on them
        return lambda: CompiledRunner(content, details, num_threads=num_threads, accelerator=accelerator, name=name)

    def _new_runner(self):
        """A fresh runner: an interpreter's ``serving_default`` (or first) signature runner, else its main
        subgraph; or a :class:`CompiledRunner`."""
        runner = self._make_runner()
        self._locks[id(runner)] = threading.Lock()
        return runner

    def run(self, values: np.ndarray, runner=None) -> np.ndarray:
        """One interpreter call (``runner``, default :attr:`first`): float32 model input -> float32 ``[n, D]``.

        The call holds the interpreter's lock (two threads in one interpreter read each other's
        outputs or crash it); the outputs are copies, read out before the lock is let go.
        """
        runner = runner or self.first
        inputs = {self.input_name: litert.quantize(values, self.input)}
        with self._locks[id(runner)]:
            outputs = runner(**inputs)
        # Several outputs travel concatenated through the chunk averaging and are split by the model.
        details = self._output_details
        return np.concatenate([litert.dequantize(outputs[key], details[key]) for key in self.output_keys], axis=-1)

    def run_chunks(self, inputs: np.ndarray) -> np.ndarray:
        """``[n, ...]`` chunk inputs -> float32 ``[n, D]``, in calls of :attr:`call_sizes` chunks.

        Every call size has its own interpreter, whose input shape therefore never changes (see
        :data:`CALL_SIZES`); a model with a fixed batch size gets its last call filled with zeros.
        """
        vectors, start = [], 0
        while start < len(inputs):
            size = next((size for size in self.call_sizes if size <= len(inputs) - start), self.call_sizes[-1])
            group = inputs[start : start + size]
            start += len(group)
            missing = size - len(group)
            if missing:
                group = np.concatenate([group, np.zeros((missing, *group.shape[1:]), group.dtype)])
            vectors.append(self.run(group, self.sized_runner(size))[: len(group) - missing])
        return np.concatenate(vectors)

    def sized_runner(self, size: int):
        """The runner that takes ``size`` chunks a call (:attr:`first` for the smallest size)."""
        if size == self.call_sizes[-1]:
            return self.first
        if size not in self.runners:
            with self._runners_lock:  # two threads must not both make (and lose) one
                if size not in self.runners:
                    self.runners[size] = self._new_runner()
        return self.runners[size]
