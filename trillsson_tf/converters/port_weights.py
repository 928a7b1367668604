"""Copy the variables of a TRILLsson-style SavedModel into our Keras re-implementation.

Variables are matched by name (the longest common suffix of their ``/``-separated paths, so
a prefix such as a model scope does not matter) and shape. Every target variable that found
no source, every source variable left unused and every name that matched with another shape
is reported, then :func:`verify_port` checks that both models give the same embedding.
"""

import dataclasses
import logging

import numpy as np

from trillsson_tf.contract import SIGNATURE_KEY, select_output_key
from trillsson_tf.errors import ParameterError, WeightPortingError
from trillsson_tf.models.export import load_savedmodel, output_keys
from trillsson_tf.metrics import parity

__all__ = ["PortReport", "port_weights", "verify_port"]

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class PortReport:
    """What :func:`port_weights` placed and what it could not.

    Attributes:
        matched: ``(target_name, source_name)`` pairs that were copied.
        missing: Target variables no source variable matched (left as they were).
        unused: Source variables that matched no target variable.
        shape_mismatches: ``(target_name, target_shape, source_name, source_shape)`` for
            names that matched but whose shapes differ (not copied).
    """

    matched: list
    missing: list
    unused: list
    shape_mismatches: list

    @property
    def complete(self) -> bool:
        """True when every target and every source variable was placed."""
        return not (self.missing or self.unused or self.shape_mismatches)

    def summary(self) -> str:
        """A human-readable report naming every variable that could not be placed."""
        lines = [
            f"Ported {len(self.matched)} variables; {len(self.missing)} target variables missing, "
            f"{len(self.unused)} source variables unused, {len(self.shape_mismatches)} shape mismatches."
        ]
        lines += [f"  missing in source: {name}" for name in self.missing]
        lines += [f"  unused from source: {name}" for name in self.unused]
        lines += [
            f"  shape mismatch: {target} {list(tshape)} <- {source} {list(sshape)}"
            for target, tshape, source, sshape in self.shape_mismatches
        ]
        return "\n".join(lines)


def _path(variable_name: str) -> tuple:
    name = variable_name.split(":")[0]
    return tuple(part for part in name.split("/") if part)


def _common_suffix(a: tuple, b: tuple) -> int:
    count = 0
    while count < min(len(a), len(b)) and a[-1 - count] == b[-1 - count]:
        count += 1
    return count


def _best_source(target_path, source_paths, used):
    scores = {index: _common_suffix(target_path, path) for index, path in enumerate(source_paths) if index not in used}
    best = max(scores.values(), default=0)
    # A match must cover the layer and the weight name, and be unique.
    if best < min(2, len(target_path)):
        return None
    candidates = [index for index, score in scores.items() if score == best]
    if len(candidates) > 1:
        # 'Conv/kernel' also ends 'block/Conv/kernel': prefer the source that matched whole.
        candidates = [index for index in candidates if len(source_paths[index]) == best]
    return candidates[0] if len(candidates) == 1 else None


def port_weights(source, target_model, *, strict: bool = False) -> PortReport:
    """Copy variables from ``source`` into ``target_model`` by name and shape.

    Args:
        source: SavedModel directory, hub handle or shortcut (see
            :func:`trillsson_tf.models.export.load_savedmodel`), or an object with ``.variables``.
        target_model: The tf_keras model to fill (changed in place).
        strict: Raise instead of returning when anything could not be placed.

    Returns:
        :class:`PortReport`.

    Raises:
        WeightPortingError: ``strict`` and the port is incomplete (the message lists every
            variable that could not be placed).
        ParameterError: ``source`` exposes no variables.
    """
    loaded = load_savedmodel(source) if isinstance(source, str) else source
    source_variables = list(getattr(loaded, "variables", []) or [])
    if not source_variables:
        raise ParameterError(f"Source {source!r} exposes no variables to port.")
    source_paths = [_path(variable.name) for variable in source_variables]
    used, matched, missing, mismatches = set(), [], [], []
    for variable in target_model.variables:
        index = _best_source(_path(variable.name), source_paths, used)
        if index is None:
            missing.append(variable.name)
            continue
        source_variable = source_variables[index]
        used.add(index)
        if tuple(source_variable.shape) != tuple(variable.shape):
            mismatches.append(
                (variable.name, tuple(variable.shape), source_variable.name, tuple(source_variable.shape))
            )
            continue
        variable.assign(source_variable)
        matched.append((variable.name, source_variable.name))
    unused = [source_variables[index].name for index in range(len(source_variables)) if index not in used]
    report = PortReport(matched, missing, unused, mismatches)
    _log.info(report.summary())
    if strict and not report.complete:
        raise WeightPortingError(report.summary())
    return report


def verify_port(source, target_model, audio: np.ndarray, *, output_key=None) -> dict:
    """Compare the embeddings of the source SavedModel and the ported Keras model.

    Args:
        source: What :func:`port_weights` took (path, handle or restored object).
        target_model: The ported model.
        audio: float32 ``[batch, samples]`` at 16 kHz.
        output_key: Source output holding the embedding (discovered by default).

    Returns:
        :func:`trillsson_tf.metrics.parity` of the source (reference) and ported embeddings.
    """
    loaded = load_savedmodel(source) if isinstance(source, str) else source
    key = select_output_key(output_keys(loaded), output_key, source="source SavedModel")
    expected = np.asarray(loaded.signatures[SIGNATURE_KEY](audio_samples=audio)[key])
    return parity(expected, np.asarray(target_model(audio)["embedding"]))
