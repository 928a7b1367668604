"""A plain Python function as a teacher, so that a PyTorch (or any) model can teach without an export."""

import hashlib

import numpy as np

from trillsson_tf.errors import ParameterError
from trillsson_tf.teachers.base import Teacher

__all__ = ["CallableTeacher"]


class CallableTeacher(Teacher):
    """A function numpy float32 ``[batch, samples]`` at 16 kHz -> ``[batch, D]`` (anything ``np.asarray`` takes).

    Args:
        function: The model call; it may return a torch tensor on the CPU or a numpy array.
        name: How runs and messages name it (default: the function's qualified name).
        identity: A string that changes when the model's weights change (target caches and
            ``--resume`` key on it). Default: the name plus a digest of the function's output on a
            fixed probe signal, so changed weights are noticed.
        parameters: Parameter count, for reports.
        min_samples: Shorter clips are zero-padded to this length.
    """

    def __init__(self, function, *, name=None, identity=None, parameters=None, min_samples: int = 0):
        if not callable(function):
            raise ParameterError(f"A callable teacher must be callable; got {type(function).__name__}.")
        super().__init__(name or getattr(function, "__qualname__", type(function).__name__))
        self._function = function
        self.min_samples = int(min_samples)
        self.parameters = parameters
        self._finish_init()
        if identity is None:
            probe = np.random.default_rng(0).uniform(-0.5, 0.5, (1, max(16000, self.min_samples))).astype(np.float32)
            digest = hashlib.sha1(np.round(self._embed(probe), 4).tobytes()).hexdigest()[:16]
            identity = f"callable:{self.spec}:{digest}"
        self.identity = identity

    def _embed(self, audio):
        output = self._function(np.ascontiguousarray(audio, dtype=np.float32))
        if hasattr(output, "detach"):  # a torch tensor
            output = output.detach().cpu().numpy()
        output = np.asarray(output, dtype=np.float32)
        if output.ndim != 2 or output.shape[0] != audio.shape[0]:
            raise ParameterError(
                f"Callable teacher {self.spec!r} must return [batch, D] = [{audio.shape[0]}, D]; it returned shape {list(output.shape)}."
            )
        if not np.isfinite(output).all():
            raise ParameterError(
                f"Callable teacher {self.spec!r} returned NaN or Inf for a batch of {audio.shape[0]} clip(s)."
            )
        return output
