"""The one door to tensorflow-model-optimization (tfmot): every private tfmot module we use, our monkeypatches.

Checked against tfmot **0.8.1** (pinned in ``setup.cfg``, extra ``[tf]``). Another installed version
gets a ``RuntimeWarning`` on first use (:func:`import_tfmot`): the private paths below, the wrapper
attributes that :func:`dedupe_wrapper_weights` rewrites and the ``quant_ops.MovingAvgQuantize``
signature that :func:`range_averaging` patches may have moved. Nothing else in trillsson_tf imports
``tensorflow_model_optimization.python...`` or patches tfmot; the technique modules take tfmot
from :func:`import_tfmot` and the private pieces from the functions here.

Everything is imported inside the functions: importing tfmot sets ``TF_USE_LEGACY_KERAS``.
"""

import contextlib
import functools
import warnings

__all__ = [
    "TFMOT_VERSION",
    "import_tfmot",
    "prune_registry",
    "clustering_registry",
    "output_quantize_config",
    "preserving_quantizers",
    "loadable_quantize_layer",
    "range_averaging",
    "dedupe_wrapper_weights",
]

TFMOT_VERSION = "0.8.1"
"""The tfmot version the workarounds of this module were checked against."""


@functools.lru_cache(maxsize=None)
def import_tfmot():
    """``tensorflow_model_optimization``, imported on first call; warns once if it is not :data:`TFMOT_VERSION`."""
    import tensorflow_model_optimization as tfmot

    version = getattr(tfmot, "__version__", "unknown")
    if version != TFMOT_VERSION:
        warnings.warn(
            f"trillsson_tf's tfmot workarounds were checked against tensorflow-model-optimization {TFMOT_VERSION}, "
            f"found {version}; pruning, clustering or QAT may fail or save files that do not load. "
            f"Install tensorflow-model-optimization=={TFMOT_VERSION} (pip install 'trillsson-tf[tf]').",
            RuntimeWarning,
            stacklevel=2,
        )
    return tfmot


def prune_registry():
    """tfmot's ``PruneRegistry`` (its table of prunable layers; ``supports(layer)``)."""
    import_tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    return PruneRegistry


def clustering_registry():
    """tfmot's ``ClusteringRegistry`` (its table of clusterable layers; ``supports(layer)``)."""
    import_tfmot()
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import ClusteringRegistry

    return ClusteringRegistry


def output_quantize_config():
    """A new tfmot ``Default8BitOutputQuantizeConfig``: fake-quantize a layer's output only, not its weights."""
    import_tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_configs import (
        Default8BitOutputQuantizeConfig,
    )

    return Default8BitOutputQuantizeConfig()


def preserving_quantizers() -> dict:
    """``{name: class}`` of the quantizers of tfmot's prune- and cluster-preserving QAT schemes.

    tfmot's ``quantize_scope`` does not know them, so a saved PQAT/CQAT/PCQAT model needs them to load.
    """
    import_tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as cluster_preserve,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        prune_preserve_quantize_registry as prune_preserve,
    )

    return {
        cls.__name__: cls
        for module in (prune_preserve, cluster_preserve)
        for cls in vars(module).values()
        if isinstance(cls, type) and cls.__name__.endswith("Quantizer")
    }


@functools.lru_cache(maxsize=None)
def loadable_quantize_layer():
    """tfmot's ``QuantizeLayer``, marked built after ``build``.

    tfmot's ``build`` never sets ``built``, so loading a ``.keras`` file builds the layer twice
    (``build_from_config``, then the first call) and finds 5 range variables where 3 were saved
    ("Layer 'quantize_layer' expected 5 variables, but received 3").
    """
    import_tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

    class QuantizeLayer(quantize_layer.QuantizeLayer):
        def build(self, input_shape):
            super().build(input_shape)
            self.built = True

    return QuantizeLayer


@contextlib.contextmanager
def range_averaging(decay: float):
    """Run tfmot's moving-average range quantizers with EMA ``decay`` instead of their fixed 0.999.

    Patches ``quant_ops.MovingAvgQuantize`` for the duration of the ``with`` block (tfmot offers no
    option for the decay); range calibration (:func:`trillsson_tf.optimize.quantize.calibrate_ranges`)
    uses it.
    """
    import_tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def averaged(*args, **kwargs):
        return original(*args, **{**kwargs, "ema_decay": decay})

    quant_ops.MovingAvgQuantize = averaged
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def dedupe_wrapper_weights(network) -> None:
    """Make each QAT wrapper of ``network`` track, as its own trainable weights, exactly the weights it quantizes.

    After ``quantize_apply`` the wrappers also list weights that their layer tracks itself (the
    kernel a second time, BatchNormalization's gamma and beta, Dense's bias); a freshly built
    wrapper does not, so a saved ``.keras`` file holds more variables per wrapper than loading
    expects ("expected 4 variables, but received 5"). The layers keep tracking theirs, so training
    sees the same variables. Rewrites the wrapper's private ``_weight_vars`` / ``_trainable_weights``.
    """
    for layer in network.layers:
        if hasattr(layer, "_weight_vars"):
            quantized = list({id(weight): weight for weight, _, _ in layer._weight_vars}.values())
            layer._trainable_weights.clear()
            layer._trainable_weights.extend(quantized)
