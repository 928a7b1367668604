"""Keras 3 interop: an exported model as a Keras 3 layer.

``hub.KerasLayer`` fails inside Keras 3 functional models (tensorflow#63849, tensorflow/hub#920), so
:func:`keras3_layer` loads a hub-format export through ``keras.layers.TFSMLayer`` (its
``serving_default`` signature):

>>> layer = trillsson_tf.keras3_layer("runs/t1/export")
>>> embedding = layer(keras.Input(shape=(None,), name="audio_samples"))["embedding"]  # [batch, D]

tf_keras and Keras 3 must not meet in one process: this module never imports
:mod:`trillsson_tf._keras`, and refuses to run where the toolkit's Keras 2 side is loaded or
``TF_USE_LEGACY_KERAS`` is set.
"""

import os
import sys

from trillsson_tf.errors import ParameterError, TrillssonError

__all__ = ["keras3_layer"]

_SIGNATURE = "serving_default"
_LEGACY_MODULES = ("trillsson_tf._keras", "tf_keras")


def _keras3():
    """The Keras 3 package with the TensorFlow backend, or a clear error."""
    legacy = os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true", "yes")
    loaded = [name for name in _LEGACY_MODULES if name in sys.modules]
    if legacy or loaded:
        reason = f"{', '.join(loaded)} already imported" if loaded else "TF_USE_LEGACY_KERAS is set"
        raise TrillssonError(
            f"keras3_layer needs a process where Keras 3 is active, but here {reason}: tf_keras (Keras 2, which "
            "the rest of trillsson_tf uses) and Keras 3 must not meet in one process. Call it from a separate "
            "process without TF_USE_LEGACY_KERAS and without importing trillsson_tf's training/export modules."
        )
    try:
        import keras
    except ImportError:
        raise TrillssonError("keras3_layer needs Keras 3: pip install 'keras>=3'.") from None
    if not keras.__version__.startswith("3."):
        raise TrillssonError(f"keras3_layer needs Keras 3; the installed keras is {keras.__version__}.")
    if keras.backend.backend() != "tensorflow":
        raise TrillssonError(
            f"keras.layers.TFSMLayer needs the TensorFlow backend; Keras runs on {keras.backend.backend()!r} "
            "(set KERAS_BACKEND=tensorflow before importing keras)."
        )
    return keras


def keras3_layer(export_dir, *, trainable: bool = False, name=None):
    """A Keras 3 layer over an exported model (``keras.layers.TFSMLayer``).

    Args:
        export_dir: A hub-format export (``trillsson-tf export``, ``distill``'s ``<out>/export``)
            or any SavedModel with a ``serving_default`` signature.
        trainable: Let Keras 3 train the SavedModel's variables (fine-tuning).
        name: Layer name.

    Returns:
        ``keras.layers.TFSMLayer``: float32 audio ``[batch, samples]`` at 16 kHz ->
        ``{'embedding': float32 [batch, D]}`` (``{'scores': ...}`` for score students).

    Raises:
        ParameterError: ``export_dir`` is not a SavedModel directory.
        TrillssonError: Keras 3 is not usable in this process (see the module docstring).
    """
    export_dir = os.fspath(export_dir)
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise ParameterError(
            f"{export_dir!r} is not a SavedModel directory (no saved_model.pb); give an export folder."
        )
    keras = _keras3()
    return keras.layers.TFSMLayer(export_dir, call_endpoint=_SIGNATURE, trainable=trainable, name=name)
