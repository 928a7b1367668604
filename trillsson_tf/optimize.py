"""Pruning and quantization-aware training of the per-chunk network, with label-free recovery.

Every verb works on the chunk network (log-mel patch ``[n, 195, 80, 1]`` -> ``[n, D]``); the
frontend stays float and outside. ``apply_*`` returns a new model and leaves its input untouched;
``strip_pruning`` removes the pruning wrappers. :func:`recover` trains the optimized network
to reproduce the unoptimized one on real audio patches (distillation, MSE), so no labels are
needed. tfmot is imported inside the functions (importing it sets a Keras environment variable).
"""
import logging

import numpy as np

from trillsson_tf._keras import keras, tf
from trillsson_tf.errors import ParameterError, UnsupportedLayerError

__all__ = [
    "SCHEDULES",
    "apply_pruning",
    "strip_pruning",
    "sparsity_report",
    "apply_qat",
    "recover",
    "rewrap",
]

_log = logging.getLogger(__name__)

SCHEDULES = ("polynomial", "constant")
"""Pruning schedules accepted by :func:`apply_pruning` (and ``trillsson-tf optimize --schedule``)."""

_PRUNABLE_KERNELS = ("kernel",)


def _clone(network):
    """A copy of ``network`` with its weights (the input is never modified)."""
    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    return copy


def apply_pruning(network, *, sparsity: float, schedule: str = "polynomial", begin_step: int = 0, end_step: int = 100,
                  frequency: int = 10, block_size=None):
    """Wrap the prunable layers of a chunk network for magnitude pruning.

    Args:
        network: Keras chunk network ``[n, 195, 80, 1]`` -> ``[n, D]``.
        sparsity: Target fraction of zero weights in each pruned kernel, in (0, 1).
        schedule: ``'polynomial'`` (0 -> ``sparsity`` between ``begin_step`` and ``end_step``) or
            ``'constant'`` (``sparsity`` from ``begin_step``).
        begin_step: Training step at which pruning starts.
        end_step: Training step at which the polynomial schedule reaches ``sparsity``.
        frequency: Steps between mask updates.
        block_size: Optional ``(rows, cols)`` block sparsity, e.g. ``(1, 4)``; ``None`` prunes single weights.

    Returns:
        A new model with ``PruneLowMagnitude`` wrappers; train it (with :func:`recover`) to prune.
        Layers tfmot cannot prune (DepthwiseConv2D, ...) are left unwrapped and logged.
    """
    import tensorflow_model_optimization as tfmot

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
    params = {"pruning_schedule": pruning_schedule}
    if block_size is not None:
        params["block_size"] = tuple(int(size) for size in block_size)
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry as registry
    skipped = []

    def wrap(layer):
        if registry.supports(layer) and any(w.name.split("/")[-1].startswith(_PRUNABLE_KERNELS) for w in layer.weights):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, **params)
        if layer.weights and not isinstance(layer, (keras.layers.BatchNormalization, keras.layers.InputLayer)):
            skipped.append(f"{layer.name} ({type(layer).__name__})")
        return layer

    pruned = keras.models.clone_model(_clone(network), clone_function=wrap)
    if skipped:
        _log.info("Not prunable with tfmot, left dense: %s", ", ".join(skipped))
    return pruned


def strip_pruning(network):
    """Remove the pruning wrappers (keeping the zeros); the inverse of :func:`apply_pruning`."""
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.strip_pruning(network)


def sparsity_report(network) -> dict:
    """Per-layer sparsity of the kernels of a (stripped) network.

    Returns:
        ``{'layers': {name: {'type', 'sparsity', 'weights'}}, 'overall': float, 'not_prunable': [names]}``;
        ``overall`` is the zero fraction over all listed kernels; ``not_prunable`` names layers with
        kernels that tfmot never prunes (DepthwiseConv2D, ...).
    """
    import tensorflow_model_optimization as tfmot

    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry as registry
    layers, zeros, total, not_prunable = {}, 0, 0, []
    for layer in network.layers:
        kernels = [w for w in layer.weights if w.name.split("/")[-1].startswith(("kernel", "depthwise_kernel"))]
        if not kernels:
            continue
        values = np.concatenate([w.numpy().ravel() for w in kernels])
        layers[layer.name] = {"type": type(layer).__name__, "sparsity": float(np.mean(values == 0)), "weights": int(values.size)}
        zeros, total = zeros + int(np.sum(values == 0)), total + int(values.size)
        if not registry.supports(layer) or isinstance(layer, keras.layers.DepthwiseConv2D):
            not_prunable.append(layer.name)
    return {"layers": layers, "overall": zeros / max(total, 1), "not_prunable": not_prunable}


def apply_qat(network):
    """Insert fake-quantization (int8) into a chunk network for quantization-aware training.

    Args:
        network: Keras chunk network (the frontend stays outside and float).

    Returns:
        A new model from ``tfmot.quantization.keras.quantize_model``.

    Raises:
        UnsupportedLayerError: a layer tfmot cannot quantize (names it and says how to proceed).
    """
    import tensorflow_model_optimization as tfmot

    for layer in network.layers:
        if isinstance(layer, keras.layers.Lambda) or type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda"):
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} ({type(layer).__name__}) cannot be quantization-aware trained by tfmot. "
                "Replace it with a Keras layer, or annotate it with tfmot.quantization.keras.quantize_annotate_layer "
                "and a QuantizeConfig; post-training int8 (converters.tflite.convert(quantize='int8')) works without QAT."
            )
    try:
        return tfmot.quantization.keras.quantize_model(_clone(network))
    except (RuntimeError, ValueError) as error:
        raise UnsupportedLayerError(f"tfmot cannot quantize {network.name!r}: {error}") from error


def recover(network, teacher, patches, *, steps: int = 100, batch_size: int = 16, learning_rate: float = 1e-4,
            seed: int = 0) -> list:
    """Train an optimized network to reproduce the unoptimized one (distillation, MSE; no labels).

    Args:
        network: The network being optimized (pruning-wrapped or QAT), trained in place.
        teacher: The unoptimized chunk network; its outputs are the targets.
        patches: float32 log-mel patches ``[n, 195, 80, 1]`` from real audio.
        steps: Optimizer steps.
        batch_size: Patches per step.
        learning_rate: Adam learning rate.
        seed: Batch sampling seed.

    Returns:
        Loss per step (list of floats).

    BatchNormalization layers are frozen (inference statistics), so that the small recovery
    batches do not move the statistics the unoptimized network was trained with.
    """
    import tensorflow_model_optimization as tfmot

    patches = np.asarray(patches, dtype=np.float32)
    targets = teacher.predict(patches, batch_size=batch_size, verbose=0)
    rng = np.random.default_rng(seed)
    for layer in network.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    optimizer = keras.optimizers.Adam(learning_rate)
    pruning_step = tfmot.sparsity.keras.UpdatePruningStep()
    pruning_step.set_model(network)
    pruning_step.on_train_begin()
    losses = []
    for _ in range(int(steps)):
        pruning_step.on_train_batch_begin(batch=None)
        index = rng.choice(len(patches), size=min(batch_size, len(patches)), replace=False)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(network(patches[index], training=True) - targets[index]))
        optimizer.apply_gradients(zip(tape.gradient(loss, network.trainable_variables), network.trainable_variables))
        losses.append(float(loss))
    pruning_step.on_epoch_end(batch=None)
    return losses


def rewrap(model, network):
    """Put an optimized chunk network back between the model's frontend and mean over chunks.

    Args:
        model: The original :class:`~trillsson_tf.models.AudioEmbeddingModel` (left untouched).
        network: Its optimized (stripped) chunk network.

    Returns:
        A new model with the hub call contract.
    """
    from trillsson_tf.models import wrap_chunk_network

    wrapped = wrap_chunk_network(network, name=model.name, frontend=model.frontend)
    wrapped.build_spec = getattr(model, "build_spec", None)
    return wrapped
