"""Pruning, weight clustering and quantization-aware training of the per-chunk network, with
label-free recovery; :func:`optimize_export` runs them on an export (``trillsson-tf optimize``).

Every verb works on the chunk network (log-mel patch ``[n, 195, 80, 1]`` -> ``[n, D]``); the
frontend stays float and outside. ``apply_*`` returns a new model and leaves its input untouched;
``strip_*`` removes the training wrappers. :func:`recover` trains the optimized network to
reproduce the unoptimized one on real audio patches (distillation, MSE), so no labels are
needed. tfmot is imported inside the functions (importing it sets a Keras environment variable).

QAT and the layers tfmot refuses: its 8-bit registry has no entry for ``Multiply`` (the
squeeze-excite gate of EfficientNetV2 and MobileNetV3) nor for ``Rescaling`` (the
keras.applications input scaling); :func:`apply_qat` annotates those with an output-only
QuantizeConfig (:data:`OUTPUT_ONLY_QUANTIZE`), which matches what the TFLite int8 kernels of
MUL and of the folded scaling do. A Python ``lambda`` (``TFOpLambda``, e.g. the hard-swish of
MobileNetV3) cannot be annotated and is refused by name.
"""
import collections
import contextlib
import functools
import json
import logging
import os
import re
import shutil
import time

import numpy as np

from trillsson_tf._keras import keras, tf
from trillsson_tf.errors import ParameterError, UnsupportedLayerError

__all__ = [
    "SCHEDULES",
    "STAGES",
    "OUTPUT_ONLY_QUANTIZE",
    "RECOVERY_LEARNING_RATE",
    "QAT_LEARNING_RATE",
    "REPORT_FILE",
    "apply_pruning",
    "strip_pruning",
    "sparsity_report",
    "apply_clustering",
    "strip_clustering",
    "apply_qat",
    "fold_depthwise_batch_norms",
    "quantize_scope",
    "recover",
    "rewrap",
    "optimize_export",
]

_log = logging.getLogger(__name__)

SCHEDULES = ("polynomial", "constant")
"""Pruning schedules accepted by :func:`apply_pruning` (and ``trillsson-tf optimize --schedule``)."""

STAGES = ("prune", "cluster", "qat")
"""The stages of :func:`optimize_export`, in the order they run (each one optional)."""

OUTPUT_ONLY_QUANTIZE = ("Multiply", "Rescaling")
"""Layer types outside tfmot's 8-bit registry that :func:`apply_qat` quantizes at their output only
(as it does a BatchNormalization that follows no convolution)."""

RECOVERY_LEARNING_RATE = 1e-3
"""Default recovery learning rate of :func:`optimize_export` when it prunes or clusters.

The network has far to go back: the distilled ``tiny_cnn`` of ``benchmarks/convert_benchmark.py``
pruned to 50% + QAT, 300 steps per stage, reached held-out cosine 0.970 to the unpruned model at
1e-3 against 0.947 at 1e-4 (80%: 0.915 against 0.908)."""

QAT_LEARNING_RATE = 1e-4
"""Default recovery learning rate of :func:`optimize_export` for QAT alone (same model: held-out
cosine 0.99961 at 1e-4 against 0.99907 at 1e-3): it starts next to the float network."""

REPORT_FILE = "optimize.json"
"""The report (and resume state) that :func:`optimize_export` keeps in its output folder."""

_KERNEL_NAMES = ("kernel", "depthwise_kernel")
_MAX_CLUSTERS = 256  # int8 weights hold at most 256 distinct values: more clusters change nothing
_CALIBRATION_BATCHES = 8
_PRUNE_RAMP = 0.5  # the polynomial schedule reaches its sparsity halfway; the rest recovers at that sparsity
_MASK_UPDATES = 20  # mask updates while the polynomial schedule ramps up
_LOG_EVERY_STEPS = 10
_FIDELITY_CLIPS = 64
_FRONTEND_SLICE = 128
_RUN_FILE = "run.json"  # the distiller's record next to its export (read by the model card)
_FORMAT = "trillsson_tf.optimize/1"


def _clone(network):
    """A copy of ``network`` with its weights (the input is never modified)."""
    copy = keras.models.clone_model(network)
    copy.set_weights(network.get_weights())
    return copy


def _weight_name(variable) -> str:
    """``'.../conv/kernel:0'`` -> ``'kernel'``."""
    return variable.name.split("/")[-1].split(":")[0]


def _kernels(layer, names=_KERNEL_NAMES) -> list:
    return [w for w in layer.weights if _weight_name(w) in names]


class _PrunableDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """A DepthwiseConv2D that tfmot's pruning wrapper accepts.

    tfmot's prune registry lists no prunable weight for DepthwiseConv2D; its wrapper prunes any
    layer with ``get_prunable_weights``. Used only while pruning: :func:`strip_pruning` puts plain
    DepthwiseConv2D layers back, so exports load without custom objects.
    """

    def get_prunable_weights(self):
        return [self.depthwise_kernel]


def _prunable_depthwise(layer):
    prunable = _PrunableDepthwiseConv2D.from_config(layer.get_config())
    prunable.build(layer.input_shape)
    prunable.set_weights(layer.get_weights())
    return prunable


class _PointwiseDense(keras.layers.Dense):
    """A 1x1 Conv2D (stride 1, one group) as the Dense layer it computes on the channel axis.

    tfmot prunes blocks of 2-D kernels only; as a Dense, a pointwise convolution's kernel
    ``[in, out]`` can be pruned in blocks like a Dense kernel. Used only while pruning:
    :func:`strip_pruning` puts the Conv2D back with the same (reshaped) weights.
    """

    def __init__(self, conv_config: dict, **kwargs):
        keys = ("activation", "use_bias", "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "bias_constraint", "name", "trainable", "dtype")
        super().__init__(conv_config["filters"], **{key: conv_config[key] for key in keys if key in conv_config}, **kwargs)
        self.conv_config = conv_config

    def get_config(self):
        return {"conv_config": self.conv_config}

    def get_prunable_weights(self):
        return [self.kernel]


def _is_pointwise(layer) -> bool:
    return (type(layer) is keras.layers.Conv2D and tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1)
            and layer.groups == 1 and layer.data_format == "channels_last")


def _pointwise_dense(layer):
    dense = _PointwiseDense(layer.get_config())
    dense.build(layer.input_shape)
    kernel, *bias = layer.get_weights()
    dense.set_weights([kernel.reshape(kernel.shape[2:]), *bias])
    return dense


def apply_pruning(network, *, sparsity: float, schedule: str = "polynomial", begin_step: int = 0, end_step: int = 100,
                  frequency: int = 10, block_size=None, depthwise: bool = True):
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
        A new model with ``PruneLowMagnitude`` wrappers; train it (with :func:`recover`) to prune.
        Layers that are not pruned although they have kernels are logged.
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
    block = None if block_size is None else _block_size(block_size)
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry as registry
    skipped = []

    def wrap(layer):
        if depthwise and type(layer) is keras.layers.DepthwiseConv2D:
            return tfmot.sparsity.keras.prune_low_magnitude(_prunable_depthwise(layer), pruning_schedule=pruning_schedule)
        if block and _is_pointwise(layer):
            return tfmot.sparsity.keras.prune_low_magnitude(_pointwise_dense(layer), pruning_schedule=pruning_schedule,
                                                            block_size=block)
        kernels = _kernels(layer, ("kernel",))
        if registry.supports(layer) and kernels:
            blocks = block if block and kernels[0].shape.rank == 2 else (1, 1)
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=pruning_schedule, block_size=blocks)
        if layer.weights and not isinstance(layer, (keras.layers.BatchNormalization, keras.layers.InputLayer)):
            skipped.append(f"{layer.name} ({type(layer).__name__})")
        return layer

    pruned = keras.models.clone_model(_clone(network), clone_function=wrap)
    if skipped:
        _log.info("Not pruned, left dense: %s", ", ".join(skipped))
    return pruned


def strip_pruning(network):
    """Remove the pruning wrappers (keeping the zeros); the inverse of :func:`apply_pruning`."""
    import tensorflow_model_optimization as tfmot

    stripped = tfmot.sparsity.keras.strip_pruning(network)
    if not any(isinstance(layer, (_PrunableDepthwiseConv2D, _PointwiseDense)) for layer in stripped.layers):
        return stripped

    def plain(layer):
        if isinstance(layer, _PointwiseDense):
            return keras.layers.Conv2D.from_config(layer.conv_config)
        cls = keras.layers.DepthwiseConv2D if isinstance(layer, _PrunableDepthwiseConv2D) else type(layer)
        return cls.from_config(layer.get_config())

    copy = keras.models.clone_model(stripped, clone_function=plain)
    copy.set_weights([value.reshape(variable.shape) for value, variable in zip(stripped.get_weights(), copy.weights)])
    return copy


def sparsity_report(network) -> dict:
    """Per-layer sparsity and distinct values of the kernels of a network (stripped or QAT-wrapped).

    Returns:
        ``{'layers': {name: {'type', 'sparsity', 'weights', 'unique_values'}}, 'overall': float,
        'not_prunable': [names]}``; ``overall`` is the zero fraction over all listed kernels;
        ``not_prunable`` names layers with kernels that :func:`apply_pruning` cannot prune (layers
        tfmot's registry does not know, other than DepthwiseConv2D).
        ``unique_values`` shows weight clustering (at most the cluster count per kernel).
    """
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry as registry

    layers, zeros, total, not_prunable = {}, 0, 0, []
    for wrapper in network.layers:
        # A QAT wrapper replaces its layer's kernel attribute by the quantized tensor: the kernel
        # variable is then tracked by the wrapper only.
        layer = getattr(wrapper, "layer", wrapper)
        kernels = _kernels(wrapper)
        if not kernels:
            continue
        values = np.concatenate([w.numpy().ravel() for w in kernels])
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


def apply_clustering(network, *, clusters: int, preserve_sparsity: bool = False):
    """Wrap the kernels of a chunk network for weight clustering (k-means++ centroids).

    Args:
        network: Keras chunk network.
        clusters: Distinct values per kernel after training, 2-256.
        preserve_sparsity: Keep the zeros of a pruned network (sparsity-preserving clustering).

    Returns:
        A new model with clustering wrappers on Conv2D and Dense kernels (tfmot does not
        cluster depthwise kernels); train it with :func:`recover`, then :func:`strip_clustering`.
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import ClusteringRegistry

    _check_clusters(clusters)
    init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS

    def wrap(layer):
        # A kernel with fewer weights than clusters is already "clustered"; k-means cannot split it further.
        if ClusteringRegistry.supports(layer) and any(w.shape.num_elements() > clusters for w in _kernels(layer, ("kernel",))):
            return tfmot.clustering.keras.cluster_weights(
                layer, number_of_clusters=int(clusters), cluster_centroids_init=init, preserve_sparsity=preserve_sparsity
            )
        return layer

    return keras.models.clone_model(_clone(network), clone_function=wrap)


def strip_clustering(network):
    """Remove the clustering wrappers (keeping the clustered values); the inverse of :func:`apply_clustering`."""
    import tensorflow_model_optimization as tfmot

    return tfmot.clustering.keras.strip_clustering(network)


@functools.lru_cache(maxsize=None)
def _loadable_quantize_layer():
    """tfmot's ``QuantizeLayer``, marked built after ``build``.

    tfmot's ``build`` never sets ``built``, so loading a ``.keras`` file builds the layer twice
    (``build_from_config``, then the first call) and finds 5 range variables where 3 were saved
    ("Layer 'quantize_layer' expected 5 variables, but received 3").
    """
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

    class QuantizeLayer(quantize_layer.QuantizeLayer):
        def build(self, input_shape):
            super().build(input_shape)
            self.built = True

    return QuantizeLayer


@contextlib.contextmanager
def quantize_scope():
    """A Keras custom-object scope that saves and loads QAT models, sparsity- and cluster-preserving ones included.

    >>> with quantize_scope():
    ...     model = keras.models.load_model("runs/t1-opt/export/model.keras")
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as cluster_preserve,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        prune_preserve_quantize_registry as prune_preserve,
    )

    preserving = {
        cls.__name__: cls
        for module in (prune_preserve, cluster_preserve)
        for cls in vars(module).values()
        if isinstance(cls, type) and cls.__name__.endswith("Quantizer")
    }
    # tfmot's scope puts its own objects last (they win), so the fixed QuantizeLayer goes in an inner scope.
    with tfmot.quantization.keras.quantize_scope(preserving):
        with keras.utils.custom_object_scope({"QuantizeLayer": _loadable_quantize_layer()}):
            yield


@contextlib.contextmanager
def _range_averaging(decay: float):
    """Run tfmot's moving-average range quantizers with EMA ``decay`` instead of their fixed 0.999."""
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def averaged(*args, **kwargs):
        return original(*args, **{**kwargs, "ema_decay": decay})

    quant_ops.MovingAvgQuantize = averaged
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def _freeze_batch_norm(network) -> None:
    """Keep BatchNormalization on its inference statistics during recovery (small batches would move them)."""
    for layer in network.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _calibrate_ranges(network, patches: np.ndarray, *, batch_size: int = 16) -> None:
    """Set the activation ranges of a QAT network to the running mean of per-batch ranges.

    tfmot starts every activation range at [-6, 6] and moves it 0.1% per training step (an EMA
    with a fixed 0.999 decay), so a recovery of a few hundred steps leaves the ranges mostly at
    their initial values: a tiny trillsson1 then agrees with its float form at cosine 0.977 after
    int8 conversion, against 0.99986 with the ranges calibrated first (measured). Batch ``k``
    (from 0) is averaged in with decay ``k / (k + 1)``. Weight ranges are set on the same passes.
    """
    _freeze_batch_norm(network)
    batch_size = min(batch_size, len(patches))
    order = np.random.default_rng(0).permutation(len(patches))
    for k in range(min(_CALIBRATION_BATCHES, len(patches) // batch_size)):
        with _range_averaging(k / (k + 1)):
            network(patches[order[k * batch_size : (k + 1) * batch_size]], training=True)


def _is_standalone_batch_norm(layer) -> bool:
    """A BatchNormalization that does not follow a convolution or Dense (e.g. tiny_cnn's input norm).

    tfmot quantizes BatchNormalization only as part of a conv/Dense + BN pattern; alone it becomes
    an int8 MUL and ADD in TFLite, so quantizing its output is what the converter does too.
    """
    if not isinstance(layer, keras.layers.BatchNormalization):
        return False
    producers = [node.inbound_layers for node in layer.inbound_nodes]
    producers = [p for group in producers for p in (group if isinstance(group, list) else [group])]
    return not any(isinstance(p, (keras.layers.Conv2D, keras.layers.Dense)) for p in producers)


def fold_depthwise_batch_norms(network):
    """A copy of ``network`` with each BatchNormalization that follows a DepthwiseConv2D folded into it.

    Why: tfmot fake-quantizes a depthwise convolution's output before its BatchNormalization, so
    the converter cannot fold the two and every such block keeps an int8 MUL and ADD in the
    ``.tflite`` file. Folded first, in float, the block converts to one DEPTHWISE_CONV_2D with a
    bias (a distilled ``tiny_cnn``, int8: 17 ops instead of 27, 0.102 instead of 0.119 ms per
    patch, cosine to the float network 0.99973 instead of 0.99942, measured). The fold is
    exact on the BatchNormalization's inference statistics, which recovery keeps frozen
    (:func:`_freeze_batch_norm`). A BatchNormalization is folded only when it is the depthwise
    convolution's sole consumer, normalises the channel axis, and the convolution has no activation.

    Args:
        network: Keras functional chunk network (not modified).

    Returns:
        The folded copy (``network``'s copy unchanged when there is nothing to fold).
    """
    config = network.get_config()
    by_name = {layer["name"]: layer for layer in config["layers"]}
    uses = collections.Counter(ref[0] for layer in config["layers"] for node in layer["inbound_nodes"] for ref in node)
    uses.update(ref[0] for ref in config["output_layers"])
    folds = {}  # BatchNormalization name -> DepthwiseConv2D name
    for layer in config["layers"]:
        nodes = layer["inbound_nodes"]
        if layer["class_name"] != "BatchNormalization" or len(nodes) != 1 or len(nodes[0]) != 1:
            continue
        source = by_name[nodes[0][0][0]]
        norm = network.get_layer(layer["name"])
        if (source["class_name"] == "DepthwiseConv2D" and uses[source["name"]] == 1
                and source["config"].get("activation") == "linear" and list(norm.axis) in ([3], [-1])):
            folds[layer["name"]] = source["name"]
    if not folds:
        return _clone(network)

    def rewire(ref):
        return [folds[ref[0]], *ref[1:]] if ref[0] in folds else ref

    config["layers"] = [layer for layer in config["layers"] if layer["name"] not in folds]
    for layer in config["layers"]:
        layer["inbound_nodes"] = [[rewire(ref) for ref in node] for node in layer["inbound_nodes"]]
        if layer["name"] in folds.values():
            layer["config"]["use_bias"] = True
    config["output_layers"] = [rewire(ref) for ref in config["output_layers"]]
    folded = keras.Model.from_config(config)
    conv_to_norm = {conv: norm for norm, conv in folds.items()}
    for layer in folded.layers:
        source = network.get_layer(layer.name)
        if layer.name not in conv_to_norm:
            layer.set_weights(source.get_weights())
            continue
        norm = network.get_layer(conv_to_norm[layer.name])
        kernel = source.depthwise_kernel.numpy()
        bias = source.bias.numpy() if source.use_bias else np.zeros(kernel.shape[2] * kernel.shape[3], np.float32)
        scale = 1.0 / np.sqrt(norm.moving_variance.numpy() + norm.epsilon)
        if norm.scale:
            scale = scale * norm.gamma.numpy()
        shift = norm.beta.numpy() if norm.center else 0.0
        # Depthwise output channel c * multiplier + m comes from kernel[..., c, m].
        layer.set_weights([kernel * scale.reshape(kernel.shape[2], kernel.shape[3]),
                           (bias - norm.moving_mean.numpy()) * scale + shift])
    return folded


def _refuse_lambdas(network) -> None:
    for layer in network.layers:
        if isinstance(layer, keras.layers.Lambda) or type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda"):
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} ({type(layer).__name__}) cannot be quantization-aware trained by tfmot. "
                "Replace it with a Keras layer, or annotate it with tfmot.quantization.keras.quantize_annotate_layer "
                "and a QuantizeConfig; post-training int8 (converters.tflite.convert(quantize='int8')) works without QAT."
            )


def apply_qat(network, *, preserve_sparsity: bool = False, preserve_clusters: bool = False, calibration_patches=None):
    """Insert fake-quantization (int8) into a chunk network for quantization-aware training.

    Args:
        network: Keras chunk network (the frontend stays outside and float).
        preserve_sparsity: Keep the zeros of a pruned network (tfmot's
            ``Default8BitPrunePreserveQuantizeScheme``; with ``preserve_clusters``, PCQAT).
        preserve_clusters: Keep the clustered values of a clustered network (tfmot's
            ``Default8BitClusterPreserveQuantizeScheme``).
        calibration_patches: float32 log-mel patches ``[n, 195, 80, 1]`` of real audio; when given,
            activation ranges start from the data instead of tfmot's [-6, 6] (recommended: see
            :func:`_calibrate_ranges`).

    Returns:
        A new model of ``QuantizeWrapperV2`` layers, the BatchNormalizations after depthwise
        convolutions folded into them first (:func:`fold_depthwise_batch_norms`; not with
        ``preserve_clusters``); layers of :data:`OUTPUT_ONLY_QUANTIZE` types are quantized at
        their output. Load a saved one inside :func:`quantize_scope`.

    Raises:
        UnsupportedLayerError: a layer tfmot cannot quantize (names it and says how to proceed).
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_configs import (
        Default8BitOutputQuantizeConfig,
    )

    _refuse_lambdas(network)
    if not preserve_clusters:  # scaling the channels would give each its own copy of the shared values
        network = fold_depthwise_batch_norms(network)
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def annotated(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if type(layer).__name__ in OUTPUT_ONLY_QUANTIZE or _is_standalone_batch_norm(layer):
            return annotate(layer, quantize_config=Default8BitOutputQuantizeConfig())
        return annotate(layer)

    if preserve_clusters:
        scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=preserve_sparsity)
    elif preserve_sparsity:
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    try:
        with quantize_scope():
            quantized = tfmot.quantization.keras.quantize_apply(
                keras.models.clone_model(_clone(network), clone_function=annotated), scheme
            )
    except (RuntimeError, ValueError) as error:
        match = re.search(r"Layer (\S+?):<class '([\w.]+)'>", str(error))
        what = f"layer {match[1]!r} ({match[2].rsplit('.', 1)[-1]})" if match else repr(network.name)
        raise UnsupportedLayerError(
            f"tfmot cannot quantize {what}: {error} Give it a QuantizeConfig with "
            "tfmot.quantization.keras.quantize_annotate_layer, or use post-training int8 (convert(quantize='int8'))."
        ) from error
    _dedupe_wrapper_weights(quantized)
    if calibration_patches is not None:
        _calibrate_ranges(quantized, np.asarray(calibration_patches, dtype=np.float32))
    return quantized


def _dedupe_wrapper_weights(network) -> None:
    """Make each QAT wrapper track, as its own trainable weights, exactly the weights it quantizes.

    After ``quantize_apply`` the wrappers also list weights that their layer tracks itself (the
    kernel a second time, BatchNormalization's gamma and beta, Dense's bias); a freshly built
    wrapper does not, so a saved ``.keras`` file holds more variables per wrapper than loading
    expects ("expected 4 variables, but received 5"). The layers keep tracking theirs, so training
    sees the same variables.
    """
    for layer in network.layers:
        if hasattr(layer, "_weight_vars"):
            quantized = list({id(weight): weight for weight, _, _ in layer._weight_vars}.values())
            layer._trainable_weights.clear()
            layer._trainable_weights.extend(quantized)


def recover(network, teacher, patches, *, steps: int = 100, batch_size: int = 16, learning_rate: float = 1e-4,
            seed: int = 0, start_step: int = 0, optimizer=None, checkpoint_every=None, on_checkpoint=None,
            keep_zeros: bool = False, progress: bool = False, description: str = "recover") -> list:
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
        on_checkpoint: ``callable(step, losses)`` with the steps done and the losses so far.
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
    import tensorflow_model_optimization as tfmot
    from tqdm.auto import tqdm

    patches = np.asarray(patches, dtype=np.float32)
    targets = teacher if isinstance(teacher, np.ndarray) else teacher.predict(patches, batch_size=batch_size, verbose=0)
    targets = np.asarray(targets, dtype=np.float32)
    batch_size = min(batch_size, len(patches))
    _freeze_batch_norm(network)
    optimizer = optimizer or keras.optimizers.Adam(learning_rate)
    optimizer.build(network.trainable_variables)  # variables made inside train_step would trace it twice
    pruning_step = tfmot.sparsity.keras.UpdatePruningStep()
    pruning_step.set_model(network)
    pruning_step.on_train_begin()
    masks = [(variable, tf.constant(variable.numpy() != 0, variable.dtype)) for variable in network.trainable_variables
             if keep_zeros and _weight_name(variable) in _KERNEL_NAMES and not np.all(variable.numpy())]

    @tf.function
    def train_step(inputs, wanted):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(network(inputs, training=True) - wanted))
        optimizer.apply_gradients(zip(tape.gradient(loss, network.trainable_variables), network.trainable_variables))
        for variable, mask in masks:
            variable.assign(variable * mask)
        return loss

    losses = []
    bar = tqdm(total=steps, initial=start_step, desc=description, unit="step", disable=not progress)
    for step in range(int(start_step), int(steps)):
        index = np.random.default_rng([seed, step]).choice(len(patches), size=batch_size, replace=False)
        losses.append(float(train_step(patches[index], targets[index])))
        bar.update(1)
        if (step + 1) % _LOG_EVERY_STEPS == 0:
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
        done = step + 1
        if on_checkpoint is not None and (done == steps or (checkpoint_every and done % checkpoint_every == 0)):
            pruning_step.on_epoch_end(batch=None)
            on_checkpoint(done, losses)
    bar.close()
    pruning_step.on_epoch_end(batch=None)  # apply the last masks to the weights
    return losses


def rewrap(model, network):
    """Put an optimized chunk network back between the model's frontend and mean over chunks.

    Args:
        model: The original :class:`~trillsson_tf.models.AudioEmbeddingModel` (left untouched).
        network: Its optimized (stripped or QAT) chunk network.

    Returns:
        A new model with the hub call contract (same output key as ``model``).
    """
    from trillsson_tf.models import output_key, wrap_chunk_network

    wrapped = wrap_chunk_network(network, name=model.name, frontend=model.frontend, output_key=output_key(model))
    wrapped.build_spec = getattr(model, "build_spec", None)
    return wrapped


def _block_size(block_size) -> tuple:
    """``(rows, cols)``, ``[rows, cols]`` or ``'RxC'`` -> ``(rows, cols)`` of positive ints."""
    text = block_size if isinstance(block_size, str) else "x".join(str(v) for v in np.atleast_1d(block_size))
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ParameterError(f"block_size must be two positive integers such as (4, 1) or '4x1', got {block_size!r}.")
    return int(match[1]), int(match[2])


def _check_clusters(clusters) -> None:
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or not 2 <= clusters <= _MAX_CLUSTERS:
        raise ParameterError(f"cluster must be an integer number of clusters in [2, {_MAX_CLUSTERS}], got {clusters!r}.")


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}.")


def _options(prune, schedule, block_size, qat, cluster, steps, batch_size, learning_rate, num_patches,
             validation_fraction, checkpoint_every, seed) -> dict:
    """Validate the pipeline options; returns them as JSON-friendly data (compared on resume)."""
    if prune is None and not qat and cluster is None:
        raise ParameterError("Nothing to do: ask for prune=<sparsity>, qat=True and/or cluster=<clusters> "
                             "(CLI --prune, --qat, --cluster).")
    if prune is not None and (isinstance(prune, bool) or not isinstance(prune, (int, float)) or not 0 < prune < 1):
        raise ParameterError(f"prune must be a target sparsity in (0, 1), got {prune!r}.")
    if schedule not in SCHEDULES:
        raise ParameterError(f"Unknown pruning schedule {schedule!r}. Expected one of: {list(SCHEDULES)}.")
    if block_size is not None and prune is None:
        raise ParameterError("block_size applies to pruning; pass prune=<sparsity> with it.")
    if cluster is not None:
        _check_clusters(cluster)
    for name, value in (("steps", steps), ("batch_size", batch_size), ("num_patches", num_patches),
                        ("checkpoint_every", checkpoint_every)):
        _check_positive(name, value)
    if learning_rate is None:
        learning_rate = QAT_LEARNING_RATE if prune is None and cluster is None else RECOVERY_LEARNING_RATE
    if not learning_rate > 0:
        raise ParameterError(f"learning_rate must be positive, got {learning_rate!r}.")
    if not 0 < validation_fraction < 1:
        raise ParameterError(f"validation_fraction must be in (0, 1): fidelity is measured on held-out files, got "
                             f"{validation_fraction!r}.")
    return {
        "prune": None if prune is None else float(prune),
        "schedule": schedule,
        "block_size": None if block_size is None else list(_block_size(block_size)),
        "cluster": None if cluster is None else int(cluster),
        "qat": bool(qat),
        "steps": int(steps),
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "num_patches": int(num_patches),
        "validation_fraction": float(validation_fraction),
        "checkpoint_every": int(checkpoint_every),
        "seed": int(seed),
    }


def _load_source(export_dir):
    """The float Keras model of an export folder and its metadata."""
    from trillsson_tf.export import KERAS_FILE, METADATA_FILE, read_metadata
    from trillsson_tf.models import chunk_network

    path = os.fspath(export_dir)
    if not os.path.isfile(os.path.join(path, KERAS_FILE)):
        raise ParameterError(
            f"{path!r} is not a trillsson_tf export directory: expected {KERAS_FILE!r} and {METADATA_FILE!r} in it "
            "(written by `trillsson-tf export`, `trillsson-tf distill` or trillsson_tf.export.export_savedmodel)."
        )
    metadata = read_metadata(path)
    if (metadata.get("optimization") or {}).get("qat"):
        raise ParameterError(f"{path!r} is already quantization-aware trained; optimize the float export it came from "
                             f"({metadata['optimization'].get('source')!r}).")
    model = keras.models.load_model(os.path.join(path, KERAS_FILE))
    chunk_network(model)  # only chunk-network students (log-mel patch in) are optimized here
    return model, metadata


def _prepare_out_dir(out_dir: str, *, resume: bool, overwrite: bool, source: str, options: dict):
    """Create or check ``out_dir``; on resume return the previous report (refusing other options)."""
    report_path = os.path.join(out_dir, REPORT_FILE)
    if resume:
        if not os.path.isfile(report_path):
            raise ParameterError(f"Nothing to resume in {out_dir!r}: it has no {REPORT_FILE}.")
        with open(report_path) as handle:
            previous = json.load(handle)
        if previous["options"] != options or previous["source"] != source:
            raise ParameterError(
                f"Cannot resume {out_dir!r}: it optimizes {previous['source']!r} with {previous['options']}, "
                f"not {source!r} with {options}."
            )
        return previous
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise ParameterError(f"Output directory {out_dir!r} exists and is not empty; pass resume=True to continue it "
                                 "or overwrite=True (CLI --force) to replace it.")
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    return None


def _training_data(data, *, frontend, num_patches: int, validation_fraction: float, seed: int, progress: bool):
    """Random 2 s crops of the training files as patches ``[num_patches, 195, 80, 1]``, held-out clips, a summary."""
    from trillsson_tf.data import find_audio, load_clips, random_crop, split_items
    from trillsson_tf.frontend import numpy_ops

    items = find_audio(data)
    if len(items) < 2:
        raise ParameterError(f"optimize needs at least 2 audio files in {data!r} (training and held-out), found {len(items)}.")
    train, held = split_items(items, validation_fraction=validation_fraction, seed=seed)
    if not held:  # a tiny data set: keep one file out so that fidelity is still measured on unseen audio
        train, held = train[:-1], train[-1:]
    loaded = load_clips(train, progress=progress)
    rng = np.random.default_rng(seed)
    crops = np.stack([random_crop(loaded.clips[index], rng, crop_samples=frontend.min_samples)
                      for index in rng.integers(0, len(loaded.clips), num_patches)])
    # In slices: the float64 spectra of 1,024 crops at once would take about 0.8 GB.
    patches = np.concatenate([numpy_ops.log_mel_patches(crops[start : start + _FRONTEND_SLICE], frontend)
                              for start in range(0, len(crops), _FRONTEND_SLICE)])
    patches = patches.reshape(-1, *frontend.patch_shape, 1).astype(np.float32)
    held_loaded = load_clips(held[:_FIDELITY_CLIPS])
    summary = {
        "source": os.fspath(data) if not isinstance(data, (list, tuple)) else f"list of {len(data)} files",
        "files": len(items),
        "train_files": len(loaded.items),
        "held_out_files": len(held_loaded.items),
        "held_out": [os.path.basename(item.path) for item in held_loaded.items],
        "patches": int(len(patches)),
        "skipped": [path for path, _ in loaded.skipped + held_loaded.skipped],
    }
    return patches, held_loaded.clips, summary


def _fidelity(reference_model, model, clips) -> dict:
    """Parity of ``model`` against ``reference_model`` on whole clips (one call per clip, any length)."""
    from trillsson_tf.metrics import parity
    from trillsson_tf.models import output_key

    key = output_key(reference_model)
    want = np.concatenate([reference_model(clip[np.newaxis])[key].numpy() for clip in clips])
    got = np.concatenate([model(clip[np.newaxis])[key].numpy() for clip in clips])
    return {**parity(want, got), "clips": len(clips)}


def _stage_network(stage: str, network, options: dict, patches):
    """The wrapped network of ``stage``, built from the previous stage's (stripped) network."""
    steps = options["steps"]
    if stage == "prune":
        frequency = max(1, steps // (2 * _MASK_UPDATES))
        end_step = frequency * max(1, int(steps * _PRUNE_RAMP) // frequency)
        return apply_pruning(network, sparsity=options["prune"], schedule=options["schedule"], end_step=end_step,
                             frequency=frequency, block_size=options["block_size"])
    if stage == "cluster":
        return apply_clustering(network, clusters=options["cluster"], preserve_sparsity=options["prune"] is not None)
    return apply_qat(network, preserve_sparsity=options["prune"] is not None,
                     preserve_clusters=options["cluster"] is not None, calibration_patches=patches)


def _strip(stage: str, network, options: dict):
    if stage == "prune":
        return strip_pruning(network)
    if stage == "cluster":
        return strip_clustering(network)
    if options["cluster"] is not None:
        import tensorflow_model_optimization as tfmot

        return tfmot.experimental.combine.strip_clustering_cqat(network)
    return network  # the fake-quantization stays: the converter reads its ranges


def optimize_export(
    export_dir,
    out_dir,
    *,
    data,
    prune=None,
    schedule: str = "polynomial",
    block_size=None,
    qat: bool = False,
    cluster=None,
    steps: int = 300,
    batch_size: int = 16,
    learning_rate=None,
    num_patches: int = 1024,
    validation_fraction: float = 0.1,
    checkpoint_every: int = 100,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Prune, cluster and/or quantization-aware train an export's chunk network, recovering each by distillation.

    Stages run in the order prune -> cluster -> qat (each optional, ``steps`` recovery steps each),
    the frontend staying float. Recovery regresses the unoptimized network's outputs on log-mel
    patches of ``data`` (no labels). With pruning, clustering preserves the zeros and QAT uses
    tfmot's sparsity-preserving scheme; with clustering, QAT preserves the clusters. Pruning
    includes the depthwise kernels (:func:`apply_pruning`), and the stages after it keep every
    pruned zero (:func:`recover`'s ``keep_zeros``).

    Args:
        export_dir: An export folder (``trillsson-tf export`` / ``distill``: ``runs/x/export``).
        out_dir: Output folder: ``optimize.json`` (report and resume state), ``checkpoints/``,
            ``export/`` (hub-format, loadable by :func:`converters.tflite.convert`).
        data: Audio folder, CSV manifest or list of files; split by file name into training
            patches and held-out clips (fidelity).
        prune: Target sparsity in (0, 1), or ``None``.
        schedule: Pruning schedule, one of :data:`SCHEDULES`.
        block_size: Block sparsity ``(rows, cols)`` or ``'4x1'`` (rows along the input axis);
            ``None`` prunes single weights.
        qat: Quantization-aware training (int8) as the last stage.
        cluster: Number of weight clusters per kernel (2-256), or ``None``.
        steps: Recovery steps per stage.
        batch_size: Patches per step.
        learning_rate: Adam learning rate; ``None``: :data:`RECOVERY_LEARNING_RATE` when pruning
            or clustering, else :data:`QAT_LEARNING_RATE`.
        num_patches: Training patches: random 2 s crops of the training files (drawn with ``seed``).
        validation_fraction: Share of files held out for the fidelity measure.
        checkpoint_every: Steps between checkpoints.
        seed: Seeds the split, the patch choice and the batches.
        resume: Continue the run in ``out_dir`` (refused when the source or options differ).
        overwrite: Replace a non-empty ``out_dir`` (CLI ``--force``).
        progress: Progress bars.

    Returns:
        The report (also ``<out_dir>/optimize.json``): options, data, per stage the recovery loss
        curve, per-layer sparsity and distinct values, layers that cannot be pruned, fidelity
        (mean cosine, max abs diff) to the unoptimized model on held-out clips, export path.

    Raises:
        ParameterError: bad options, nothing to do, too little audio, a path that is not our
            export, a non-empty ``out_dir`` without ``resume``/``overwrite``, a mismatched resume.
        UnsupportedLayerError: QAT of a layer tfmot cannot quantize (named).
    """
    from trillsson_tf.export import export_savedmodel

    options = _options(prune, schedule, block_size, qat, cluster, steps, batch_size, learning_rate, num_patches,
                       validation_fraction, checkpoint_every, seed)
    source = os.path.abspath(os.fspath(export_dir))
    out_dir = os.fspath(out_dir)
    model, metadata = _load_source(source)
    previous = _prepare_out_dir(out_dir, resume=resume, overwrite=overwrite, source=source, options=options)
    began = time.perf_counter()
    patches, held_clips, data_summary = _training_data(
        data, frontend=model.frontend, num_patches=options["num_patches"], validation_fraction=validation_fraction,
        seed=seed, progress=progress)
    teacher = model.chunk_network
    targets = teacher.predict(patches, batch_size=batch_size, verbose=0)
    planned = [stage for stage in STAGES if options[stage] not in (None, False)]
    report = previous or {"format": _FORMAT, "source": source, "options": options, "stages": {}}
    report["data"] = data_summary

    def write_report():
        with open(os.path.join(out_dir, REPORT_FILE), "w") as handle:
            json.dump(report, handle, indent=2)

    network = teacher
    for stage in planned:
        wrapped = _stage_network(stage, network, options, patches)
        optimizer = keras.optimizers.Adam(options["learning_rate"])
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        checkpoint = tf.train.Checkpoint(network=wrapped, optimizer=optimizer, step=step_var)
        manager = tf.train.CheckpointManager(checkpoint, os.path.join(out_dir, "checkpoints", stage), max_to_keep=1)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).expect_partial()
        start = int(step_var.numpy())
        record = report["stages"].setdefault(stage, {"steps": steps, "loss_curve": []})
        record["loss_curve"] = [point for point in record["loss_curve"] if point[0] <= start]
        if start:
            _log.info("Resuming stage %s of %s at step %d", stage, out_dir, start)

        def save(done, losses, *, start=start, record=record, manager=manager, step_var=step_var):
            step_var.assign(done)
            manager.save(checkpoint_number=done)
            last = record["loss_curve"][-1][0] if record["loss_curve"] else 0
            record["loss_curve"] += [[step, loss] for step, loss in enumerate(losses, start + 1)
                                     if step > last and (step % _LOG_EVERY_STEPS == 0 or step == steps)]
            record["step"] = done
            write_report()

        if start < steps:
            recover(wrapped, targets, patches, steps=steps, batch_size=batch_size, seed=seed, start_step=start,
                    optimizer=optimizer, checkpoint_every=checkpoint_every, on_checkpoint=save,
                    keep_zeros=stage != "prune" and options["prune"] is not None, progress=progress,
                    description=f"optimize: {stage}")
        network = _strip(stage, wrapped, options)

    optimized = rewrap(model, network)
    report.update({
        "sparsity": sparsity_report(network),
        "fidelity": _fidelity(model, optimized, held_clips),
    })
    report["not_prunable"] = report["sparsity"]["not_prunable"]
    summary = {
        "source": source,
        **{key: options[key] for key in ("prune", "schedule", "block_size", "cluster", "qat", "steps")},
        "overall_sparsity": report["sparsity"]["overall"],
        "fidelity_mean_cosine": report["fidelity"]["mean_cosine"],
    }
    export = export_savedmodel(optimized, os.path.join(out_dir, "export"), overwrite=True,
                               extra_metadata={"teacher": metadata.get("teacher"), "optimization": summary})
    if os.path.isfile(os.path.join(source, _RUN_FILE)):  # the training run the card reports stays the distillation
        shutil.copy(os.path.join(source, _RUN_FILE), os.path.join(export, _RUN_FILE))
    report["export"] = export
    report["seconds"] = round(time.perf_counter() - began, 1)
    write_report()
    _log.info("Optimized %s (%s): sparsity %.3f, held-out mean cosine %.5f; exported to %s", source, ", ".join(planned),
              report["sparsity"]["overall"], report["fidelity"]["mean_cosine"], export)
    return report
