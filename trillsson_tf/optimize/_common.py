"""Weight helpers shared by the optimization techniques and the recovery (no tfmot)."""

from trillsson_tf._keras import keras

__all__ = ["KERNEL_NAMES", "clone", "weight_name", "kernels"]

KERNEL_NAMES = ("kernel", "depthwise_kernel")
"""Names of the kernel weights that pruning, clustering and the sparsity report look at."""


def clone(network):
    """A copy of ``network`` with its weights (the input is never modified)."""
    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    return copy


def weight_name(variable) -> str:
    """``'.../conv/kernel:0'`` -> ``'kernel'``."""
    return variable.name.split("/")[-1].split(":")[0]


def kernels(layer, names=KERNEL_NAMES) -> list:
    """The variables of ``layer`` (a layer or a tfmot wrapper) whose :func:`weight_name` is in ``names``."""
    return [w for w in layer.weights if weight_name(w) in names]
