"""Magnitude pruning of a chunk network: :func:`apply_pruning`, :func:`strip_pruning`, :func:`pruning_scope`,
and :func:`sparsity_report` to see what it did.

tfmot prunes the layers its registry lists; this module adds the DepthwiseConv2D kernels (made
prunable by :class:`PrunableDepthwiseConv2D`) and block sparsity of 1x1 convolutions (pruned as the
Dense layers they compute, :class:`PointwiseDense`). :func:`strip_pruning` puts the plain Keras
layers back, so exports load without custom objects.
"""

import contextlib
import logging
import re

import numpy as np

from trillsson_tf._keras import keras
from trillsson_tf.errors import ParameterError
from trillsson_tf.optimize._common import clone, kernels
from trillsson_tf.optimize._tfmot import import_tfmot, prune_registry

__all__ = [
    "SCHEDULES",
    "PrunableDepthwiseConv2D",
    "PointwiseDense",
    "apply_pruning",
    "strip_pruning",
    "pruning_scope",
    "sparsity_report",
    "parse_block_size",
]

_log = logging.getLogger(__name__)

SCHEDULES = ("polynomial", "constant")
"""Pruning schedules accepted by :func:`apply_pruning` (and ``trillsson-tf optimize --schedule``)."""


class PrunableDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """A DepthwiseConv2D that tfmot's pruning wrapper accepts.

    tfmot's prune registry lists no prunable weight for DepthwiseConv2D; its wrapper prunes any
    layer with ``get_prunable_weights``. Used only while pruning: :func:`strip_pruning` puts plain
    DepthwiseConv2D layers back, so exports load without custom objects.
    """

    def get_prunable_weights(self):
        return [self.depthwise_kernel]


def _prunable_depthwise(layer):
    prunable = PrunableDepthwiseConv2D.from_config(layer.get_config())
    prunable.build(layer.input_shape)
    prunable.set_weights(layer.get_weights())
    return prunable


class PointwiseDense(keras.layers.Dense):
    """A 1x1 Conv2D (stride 1, one group) as the Dense layer it computes on the channel axis.

    tfmot prunes blocks of 2-D kernels only; as a Dense, a pointwise convolution's kernel
    ``[in, out]`` can be pruned in blocks like a Dense kernel. Used only while pruning:
    :func:`strip_pruning` puts the Conv2D back with the same (reshaped) weights.
    """

    def __init__(self, conv_config: dict, **kwargs):
        keys = (
            "activation",
            "use_bias",
            "kernel_regularizer",
            "bias_regularizer",
            "activity_regularizer",
            "kernel_constraint",
            "bias_constraint",
            "name",
            "trainable",
            "dtype",
        )
        super().__init__(
            conv_config["filters"], **{key: conv_config[key] for key in keys if key in conv_config}, **kwargs
        )
        self.conv_config = conv_config

    def get_config(self):
        return {"conv_config": self.conv_config}

    def get_prunable_weights(self):
        return [self.kernel]


def _is_pointwise(layer) -> bool:
    return (
        type(layer) is keras.layers.Conv2D
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
    )


def _pointwise_dense(layer):
    dense = PointwiseDense(layer.get_config())
    dense.build(layer.input_shape)
    kernel, *bias = layer.get_weights()
    dense.set_weights([kernel.reshape(kernel.shape[2:]), *bias])
    return dense


def parse_block_size(block_size) -> tuple:
    """``(rows, cols)``, ``[rows, cols]`` or ``'RxC'`` -> ``(rows, cols)`` of positive ints.

    Raises:
        ParameterError: anything else (the message repeats what was received).
    """
    text = block_size if isinstance(block_size, str) else "x".join(str(v) for v in np.atleast_1d(block_size))
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ParameterError(f"block_size must be two positive integers such as (4, 1) or '4x1', got {block_size!r}.")
    return int(match[1]), int(match[2])


def apply_pruning(
    network,
    *,
    sparsity: float,
    schedule: str = "polynomial",
    begin_step: int = 0,
    end_step: int = 100,
    frequency: int = 10,
    block_size=None,
    depthwise: bool = True,
):
    """Wrap the prunable layers of a chunk network for magnitude pruning.

    Args:
        network: Keras chunk network ``[n, 195, 80, 1]`` -> ``[n, D]``.
        sparsity: Target fraction of zero weights in each pruned kernel, in (0, 1).
        schedule: ``'polynomial'`` (0 -> ``sparsity`` between ``begin_step`` and ``end_step``) or
            ``'constant'`` (``sparsity`` from ``begin_step``).
        begin_step: Training step at which pruning starts.
        end_step: Training step at which the polynomial schedule reaches ``sparsity``.
        frequency: Steps between mask updates.
        block_size: Optional ``(rows, cols)`` block sparsity, e.g. ``(4, 1)`` or ``'4x1'``, of the
            Dense kernels ``[in, out]`` and of the 1x1 convolutions (pruned as the Dense layers they
            are); other convolution kernels are pruned weight by weight (tfmot prunes blocks of 2-D
            kernels only). Rows run along the input axis, which ``.tflite`` files store contiguously:
            ``4x1`` blocks put the zeros in runs, which compress (the pruned 50% ``tiny_cnn`` of
            ``benchmarks/convert_benchmark.py``: see its README figures). ``None`` prunes single weights.
        depthwise: Prune DepthwiseConv2D kernels too (tfmot's registry leaves them dense; they are
            made prunable here). ``False`` leaves them dense.

    Returns:
        A new model with ``PruneLowMagnitude`` wrappers; train it (with
        :func:`~trillsson_tf.optimize.recovery.recover`) to prune. Layers that are not pruned
        although they have kernels are logged. Load a saved one inside :func:`pruning_scope`.
    """
    tfmot = import_tfmot()

    if not 0 < sparsity < 1:
        raise ParameterError(f"sparsity must be in (0, 1), got {sparsity!r}.")
    if schedule not in SCHEDULES:
        raise ParameterError(f"Unknown pruning schedule {schedule!r}. Expected one of: {list(SCHEDULES)}.")
    if schedule == "polynomial":
        pruning_schedule = tfmot.sparsity.keras.PolynomialDecay(
            0.0, sparsity, begin_step, max(end_step, begin_step + 1), frequency=frequency
        )
    else:
        pruning_schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step, frequency=frequency)
    block = None if block_size is None else parse_block_size(block_size)
    registry = prune_registry()
    skipped = []

    def wrap(layer):
        if depthwise and type(layer) is keras.layers.DepthwiseConv2D:
            return tfmot.sparsity.keras.prune_low_magnitude(
                _prunable_depthwise(layer), pruning_schedule=pruning_schedule
            )
        if block and _is_pointwise(layer):
            return tfmot.sparsity.keras.prune_low_magnitude(
                _pointwise_dense(layer), pruning_schedule=pruning_schedule, block_size=block
            )
        prunable = kernels(layer, ("kernel",))
        if registry.supports(layer) and prunable:
            blocks = block if block and prunable[0].shape.rank == 2 else (1, 1)
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=pruning_schedule, block_size=blocks)
        if layer.weights and not isinstance(layer, (keras.layers.BatchNormalization, keras.layers.InputLayer)):
            skipped.append(f"{layer.name} ({type(layer).__name__})")
        return layer

    pruned = keras.models.clone_model(clone(network), clone_function=wrap)
    if skipped:
        _log.info("Not pruned, left dense: %s", ", ".join(skipped))
    return pruned


def strip_pruning(network):
    """Remove the pruning wrappers (keeping the zeros); the inverse of :func:`apply_pruning`.

    Returns:
        A new plain Keras model: the depthwise and 1x1 convolutions made prunable are plain
        DepthwiseConv2D and Conv2D layers again (same weights, reshaped back).
    """
    tfmot = import_tfmot()

    stripped = tfmot.sparsity.keras.strip_pruning(network)
    if not any(isinstance(layer, (PrunableDepthwiseConv2D, PointwiseDense)) for layer in stripped.layers):
        return stripped

    def plain(layer):
        if isinstance(layer, PointwiseDense):
            return keras.layers.Conv2D.from_config(layer.conv_config)
        cls = keras.layers.DepthwiseConv2D if isinstance(layer, PrunableDepthwiseConv2D) else type(layer)
        return cls.from_config(layer.get_config())

    copy = keras.models.clone_model(stripped, clone_function=plain)
    copy.set_weights([value.reshape(variable.shape) for value, variable in zip(stripped.get_weights(), copy.weights)])
    return copy


@contextlib.contextmanager
def pruning_scope():
    """A Keras custom-object scope that loads pruning-wrapped models (tfmot's ``prune_scope`` and our prunable layers).

    >>> with pruning_scope():
    ...     model = keras.models.load_model("pruned.keras")
    """
    tfmot = import_tfmot()

    with tfmot.sparsity.keras.prune_scope():
        with keras.utils.custom_object_scope({cls.__name__: cls for cls in (PrunableDepthwiseConv2D, PointwiseDense)}):
            yield


def sparsity_report(network) -> dict:
    """Per-layer sparsity and distinct values of the kernels of a network (stripped or QAT-wrapped).

    Returns:
        ``{'layers': {name: {'type', 'sparsity', 'weights', 'unique_values'}}, 'overall': float,
        'not_prunable': [names]}``; ``overall`` is the zero fraction over all listed kernels;
        ``not_prunable`` names layers with kernels that :func:`apply_pruning` cannot prune (layers
        tfmot's registry does not know, other than DepthwiseConv2D).
        ``unique_values`` shows weight clustering (at most the cluster count per kernel).
    """
    registry = prune_registry()

    layers, zeros, total, not_prunable = {}, 0, 0, []
    for wrapper in network.layers:
        # A QAT wrapper replaces its layer's kernel attribute by the quantized tensor: the kernel
        # variable is then tracked by the wrapper only.
        layer = getattr(wrapper, "layer", wrapper)
        found = kernels(wrapper)
        if not found:
            continue
        values = np.concatenate([w.numpy().ravel() for w in found])
        layers[layer.name] = {
            "type": type(layer).__name__,
            "sparsity": float(np.mean(values == 0)),
            "weights": int(values.size),
            "unique_values": int(np.unique(values).size),
        }
        zeros, total = zeros + int(np.sum(values == 0)), total + int(values.size)
        if not (registry.supports(layer) or isinstance(layer, keras.layers.DepthwiseConv2D)):
            not_prunable.append(layer.name)
    return {"layers": layers, "overall": zeros / max(total, 1), "not_prunable": not_prunable}
