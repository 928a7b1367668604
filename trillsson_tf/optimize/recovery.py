"""Label-free recovery of an optimized chunk network (:func:`recover`) and its way back into a model (:func:`rewrap`).

Recovery trains the pruning-, clustering- or QAT-wrapped network to reproduce the unoptimized one
on real audio patches (distillation, MSE), so no labels are needed.
"""

import numpy as np

from trillsson_tf._keras import keras, tf
from trillsson_tf.optimize._common import KERNEL_NAMES, weight_name
from trillsson_tf.optimize._tfmot import import_tfmot
from trillsson_tf.train.engine import run_steps

__all__ = ["recover", "rewrap", "freeze_batch_norm"]


def freeze_batch_norm(network) -> None:
    """Keep every BatchNormalization of ``network`` on its inference statistics (small batches would move them)."""
    for layer in network.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _zero_masks(network) -> list:
    """``(kernel, mask)`` for every kernel of ``network`` with zeros: the mask is 1 where the kernel is not zero."""
    return [
        (variable, tf.constant(variable.numpy() != 0, variable.dtype))
        for variable in network.trainable_variables
        if weight_name(variable) in KERNEL_NAMES and not np.all(variable.numpy())
    ]


def _train_step(network, optimizer, masks: list):
    """One MSE step of ``network`` on ``(patches [b, 195, 80, 1], targets [b, D])``; ``masks`` re-zero their kernels."""

    @tf.function
    def train_step(inputs, wanted):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(network(inputs, training=True) - wanted))
        optimizer.apply_gradients(zip(tape.gradient(loss, network.trainable_variables), network.trainable_variables))
        for variable, mask in masks:
            variable.assign(variable * mask)
        return loss

    return train_step


def recover(
    network,
    teacher,
    patches,
    *,
    steps: int = 100,
    batch_size: int = 16,
    learning_rate: float = 1e-4,
    seed: int = 0,
    start_step: int = 0,
    optimizer=None,
    checkpoint_every=None,
    on_checkpoint=None,
    history=None,
    keep_zeros: bool = False,
    progress: bool = False,
    description: str = "recover",
) -> list:
    """Train an optimized network to reproduce the unoptimized one (distillation, MSE; no labels).

    Args:
        network: The network being optimized (pruning- or clustering-wrapped, or QAT), trained in place.
        teacher: The unoptimized chunk network (its outputs are the targets), or its outputs for
            ``patches`` as float32 ``[n, D]``.
        patches: float32 log-mel patches ``[n, 195, 80, 1]`` from real audio.
        steps: Total optimizer steps (a resumed run continues from ``start_step`` up to this number).
        batch_size: Patches per step.
        learning_rate: Adam learning rate (when no ``optimizer`` is given).
        seed: Batch sampling seed; the batch of step ``s`` depends on ``(seed, s)`` only, so a
            resumed run sees the same batches.
        start_step: Steps already done (resume).
        optimizer: A Keras optimizer to use (and checkpoint); default a new Adam.
        checkpoint_every: Call ``on_checkpoint`` every this many steps (and after the last one).
        on_checkpoint: ``callable(step)`` with the steps done, the pruning masks applied.
        history: A list that gets ``[step, loss]`` every :data:`trillsson_tf.train.engine.LOG_EVERY_STEPS`
            steps and at the last one (the loop is :func:`trillsson_tf.train.engine.run_steps`).
        keep_zeros: Keep every kernel weight that is zero at the start at zero (the recovery of a
            pruned network's later stages): tfmot's sparsity-preserving schemes mask only the
            kernels they quantize or cluster, and it does neither to depthwise kernels, whose
            zeros would otherwise train away.
        progress: Show a progress bar.
        description: Label of the progress bar.

    Returns:
        Loss per step done in this call (list of floats).

    BatchNormalization layers are frozen (inference statistics), so that the small recovery
    batches do not move the statistics the unoptimized network was trained with.
    """
    tfmot = import_tfmot()
    patches = np.asarray(patches, dtype=np.float32)
    targets = teacher if isinstance(teacher, np.ndarray) else teacher.predict(patches, batch_size=batch_size, verbose=0)
    targets = np.asarray(targets, dtype=np.float32)
    batch_size = min(batch_size, len(patches))
    freeze_batch_norm(network)
    optimizer = optimizer or keras.optimizers.Adam(learning_rate)
    optimizer.build(network.trainable_variables)  # variables made inside train_step would trace it twice
    pruning_step = tfmot.sparsity.keras.UpdatePruningStep()
    pruning_step.set_model(network)
    pruning_step.on_train_begin()
    train_step = _train_step(network, optimizer, _zero_masks(network) if keep_zeros else [])
    losses = []

    def step_fn(index):
        rows = np.random.default_rng([seed, index]).choice(len(patches), size=batch_size, replace=False)
        losses.append(float(train_step(patches[rows], targets[rows])))
        return losses[-1]

    def checkpoint(step):
        pruning_step.on_epoch_end(batch=None)  # apply the masks to the weights before they are saved
        if on_checkpoint is not None:
            on_checkpoint(step)

    run_steps(
        step_fn,
        start=int(start_step),
        steps=int(steps),
        checkpoint_every=checkpoint_every,
        on_checkpoint=checkpoint,
        history=history,
        progress=progress,
        description=description,
    )
    return losses


def rewrap(model, network):
    """Put an optimized chunk network back between the model's frontend and mean over chunks.

    Args:
        model: The original :class:`~trillsson_tf.models.AudioEmbeddingModel` (left untouched).
        network: Its optimized (stripped or QAT) chunk network ``[n, 195, 80, 1]`` -> ``[n, D]``.

    Returns:
        A new model with the hub call contract (same output key as ``model``).
    """
    from trillsson_tf.models import output_key, wrap_chunk_network

    wrapped = wrap_chunk_network(network, name=model.name, frontend=model.frontend, output_key=output_key(model))
    wrapped.build_spec = getattr(model, "build_spec", None)
    return wrapped
