"""ONNX teachers: any waveform-input ``.onnx`` model run with onnxruntime (the ``[onnx]`` extra)."""

import os

import numpy as np

from trillsson_tf.contract import select_output_key
from trillsson_tf.errors import ParameterError, TrillssonError
from trillsson_tf.teachers.base import WindowedTeacher, file_fingerprint

__all__ = ["OnnxTeacher"]

_FLOAT = "tensor(float)"


def _session(path: str, num_threads: int):
    try:
        import onnxruntime
    except ImportError:
        raise TrillssonError(
            f"ONNX teacher {path!r} needs onnxruntime: pip install 'trillsson-tf[onnx]' (or onnxruntime==1.32.0)."
        ) from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ParameterError(f"ONNX teacher {path!r} could not be loaded: {reason}") from None


def _fixed(dim) -> int | None:
    """An ONNX dimension: an int when fixed, ``None`` when symbolic or unknown."""
    return int(dim) if isinstance(dim, int) and dim > 0 else None


class OnnxTeacher(WindowedTeacher):
    """A ``.onnx`` model of float32 audio ``[batch, samples]`` or ``[samples]`` at 16 kHz.

    A symbolic sample axis is called on whole clips; a fixed one is run over consecutive
    windows of that length and the window outputs averaged (as for ``.tflite``). A symbolic
    batch axis takes the whole batch at once; a fixed batch of 1 takes clips one by one.
    Outputs ``[batch, D]`` or ``[batch, frames, D]`` (averaged over frames).
    """

    def __init__(self, path: str, *, output_key=None, num_threads: int = 1):
        super().__init__(path)
        if not os.path.isfile(path):
            raise ParameterError(f"ONNX file not found: {path!r}.")
        self._session = _session(path, num_threads)
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = [item.name for item in inputs]
            raise ParameterError(f"ONNX teacher {path!r} must take one audio input; it takes {len(inputs)}: {names}.")
        (audio_input,) = inputs
        shape = list(audio_input.shape)
        if audio_input.type != _FLOAT or len(shape) not in (1, 2):
            raise ParameterError(
                f"ONNX teacher {path!r} must take float32 audio [batch, samples] or [samples]; its input "
                f"{audio_input.name!r} is {audio_input.type} with shape {shape}."
            )
        self._rank = len(shape)
        if self._rank == 2 and _fixed(shape[0]) not in (None, 1):
            raise ParameterError(
                f"ONNX teacher {path!r} has a fixed batch of {shape[0]}; export it with batch 1 or a symbolic batch."
            )
        self._batched = self._rank == 2 and _fixed(shape[0]) is None
        self.window_samples = _fixed(shape[-1])
        self.min_samples = self.window_samples or 0
        self._input_name = audio_input.name
        self.output_key = select_output_key(
            [item.name for item in self._session.get_outputs()], output_key, source=f"ONNX model {path!r}"
        )
        self.parameters = _parameter_count(path)
        self.identity = f"onnx:{file_fingerprint(path)}:{self.output_key}"
        self._finish_init()

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch if self._rank == 2 else batch[0], dtype=np.float32)
        (output,) = self._session.run([self.output_key], {self._input_name: batch})
        output = np.asarray(output, np.float32)
        return output[np.newaxis] if self._rank == 1 else output


def _parameter_count(path: str):
    """Elements of the model's float initializers, or ``None`` without the ``onnx`` package."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(path, load_external_data=False)
    return int(
        sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer if tensor.data_type in (1, 10, 11, 16))
    )
