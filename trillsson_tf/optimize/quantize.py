"""Quantization-aware training (int8) of a chunk network: :func:`apply_qat`, :func:`strip_qat`, :func:`quantize_scope`,
with the depthwise BatchNormalization fold and the range calibration that make its ``.tflite`` file small and exact.

The layers tfmot refuses: its 8-bit registry has no entry for ``Multiply`` (the squeeze-excite
gate of EfficientNetV2 and MobileNetV3) nor for ``Rescaling`` (the keras.applications input
scaling); :func:`apply_qat` annotates those with an output-only QuantizeConfig
(:data:`OUTPUT_ONLY_QUANTIZE`), which matches what the TFLite int8 kernels of MUL and of the
folded scaling do. A Python ``lambda`` (``TFOpLambda``, e.g. the hard-swish of MobileNetV3)
cannot be annotated and is refused by name.
"""

import collections
import contextlib
import re

import numpy as np

from trillsson_tf._keras import keras
from trillsson_tf.errors import UnsupportedLayerError
from trillsson_tf.optimize._common import clone, weight_name
from trillsson_tf.optimize._tfmot import (
    dedupe_wrapper_weights,
    import_tfmot,
    loadable_quantize_layer,
    output_quantize_config,
    preserving_quantizers,
    range_averaging,
)
from trillsson_tf.optimize.recovery import freeze_batch_norm

__all__ = [
    "OUTPUT_ONLY_QUANTIZE",
    "apply_qat",
    "strip_qat",
    "strip_clustering_cqat",
    "quantize_scope",
    "fold_depthwise_batch_norms",
    "calibrate_ranges",
]

OUTPUT_ONLY_QUANTIZE = ("Multiply", "Rescaling")
"""Layer types outside tfmot's 8-bit registry that :func:`apply_qat` quantizes at their output only
(as it does a BatchNormalization that follows no convolution)."""

_CALIBRATION_BATCHES = 8
_WRAPPERS = ("QuantizeWrapperV2", "QuantizeWrapper")


@contextlib.contextmanager
def quantize_scope():
    """A Keras custom-object scope that saves and loads QAT models, sparsity- and cluster-preserving ones included.

    >>> with quantize_scope():
    ...     model = keras.models.load_model("runs/t1-opt/export/model.keras")
    """
    tfmot = import_tfmot()

    # tfmot's scope puts its own objects last (they win), so the fixed QuantizeLayer goes in an inner scope.
    with tfmot.quantization.keras.quantize_scope(preserving_quantizers()):
        with keras.utils.custom_object_scope({"QuantizeLayer": loadable_quantize_layer()}):
            yield


def calibrate_ranges(network, patches: np.ndarray, *, batch_size: int = 16) -> None:
    """Set the activation ranges of a QAT network to the running mean of per-batch ranges, in place.

    tfmot starts every activation range at [-6, 6] and moves it 0.1% per training step (an EMA
    with a fixed 0.999 decay), so a recovery of a few hundred steps leaves the ranges mostly at
    their initial values: a tiny trillsson1 then agrees with its float form at cosine 0.977 after
    int8 conversion, against 0.99986 with the ranges calibrated first (measured). Batch ``k``
    (from 0) is averaged in with decay ``k / (k + 1)``. Weight ranges are set on the same passes.

    Args:
        network: A network from :func:`apply_qat` (its BatchNormalizations are frozen here).
        patches: float32 log-mel patches ``[n, 195, 80, 1]`` of real audio; up to 8 batches are used.
        batch_size: Patches per calibration batch.
    """
    freeze_batch_norm(network)
    batch_size = min(batch_size, len(patches))
    order = np.random.default_rng(0).permutation(len(patches))
    for k in range(min(_CALIBRATION_BATCHES, len(patches) // batch_size)):
        with range_averaging(k / (k + 1)):
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
    (:func:`~trillsson_tf.optimize.recovery.freeze_batch_norm`). A BatchNormalization is folded
    only when it is the depthwise convolution's sole consumer, normalises the channel axis, and
    the convolution has no activation.

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
        if (
            source["class_name"] == "DepthwiseConv2D"
            and uses[source["name"]] == 1
            and source["config"].get("activation") == "linear"
            and list(norm.axis) in ([3], [-1])
        ):
            folds[layer["name"]] = source["name"]
    if not folds:
        return clone(network)

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
        layer.set_weights(
            [
                kernel * scale.reshape(kernel.shape[2], kernel.shape[3]),
                (bias - norm.moving_mean.numpy()) * scale + shift,
            ]
        )
    return folded


def _refuse_lambdas(network) -> None:
    for layer in network.layers:
        if isinstance(layer, keras.layers.Lambda) or type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda"):
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} ({type(layer).__name__}) cannot be quantization-aware trained by tfmot. "
                "Replace it with a Keras layer, or annotate it with tfmot.quantization.keras.quantize_annotate_layer "
                "and a QuantizeConfig; post-training int8 (trillsson_tf.converters.tflite.convert(quantize='int8')) works without QAT."
            )


def apply_qat(network, *, preserve_sparsity: bool = False, preserve_clusters: bool = False, calibration_patches=None):
    """Insert fake-quantization (int8) into a chunk network for quantization-aware training.

    Args:
        network: Keras chunk network ``[n, 195, 80, 1]`` -> ``[n, D]`` (the frontend stays outside and float).
        preserve_sparsity: Keep the zeros of a pruned network (tfmot's
            ``Default8BitPrunePreserveQuantizeScheme``; with ``preserve_clusters``, PCQAT).
        preserve_clusters: Keep the clustered values of a clustered network (tfmot's
            ``Default8BitClusterPreserveQuantizeScheme``).
        calibration_patches: float32 log-mel patches ``[n, 195, 80, 1]`` of real audio; when given,
            activation ranges start from the data instead of tfmot's [-6, 6] (recommended: see
            :func:`calibrate_ranges`).

    Returns:
        A new model of ``QuantizeWrapperV2`` layers, the BatchNormalizations after depthwise
        convolutions folded into them first (:func:`fold_depthwise_batch_norms`; not with
        ``preserve_clusters``); layers of :data:`OUTPUT_ONLY_QUANTIZE` types are quantized at
        their output. Load a saved one inside :func:`quantize_scope`; :func:`strip_qat` gives
        back the float network.

    Raises:
        UnsupportedLayerError: a layer tfmot cannot quantize (names it and says how to proceed).
    """
    tfmot = import_tfmot()

    _refuse_lambdas(network)
    if not preserve_clusters:  # scaling the channels would give each its own copy of the shared values
        network = fold_depthwise_batch_norms(network)
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def annotated(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if type(layer).__name__ in OUTPUT_ONLY_QUANTIZE or _is_standalone_batch_norm(layer):
            return annotate(layer, quantize_config=output_quantize_config())
        return annotate(layer)

    if preserve_clusters:
        scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=preserve_sparsity
        )
    elif preserve_sparsity:
        scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    try:
        with quantize_scope():
            quantized = tfmot.quantization.keras.quantize_apply(
                keras.models.clone_model(clone(network), clone_function=annotated), scheme
            )
    except (RuntimeError, ValueError) as error:
        match = re.search(r"Layer (\S+?):<class '([\w.]+)'>", str(error))
        what = f"layer {match[1]!r} ({match[2].rsplit('.', 1)[-1]})" if match else repr(network.name)
        raise UnsupportedLayerError(
            f"tfmot cannot quantize {what}: {error} Give it a QuantizeConfig with "
            "tfmot.quantization.keras.quantize_annotate_layer, or use post-training int8 (convert(quantize='int8'))."
        ) from error
    dedupe_wrapper_weights(quantized)
    if calibration_patches is not None:
        calibrate_ranges(quantized, np.asarray(calibration_patches, dtype=np.float32))
    return quantized


def strip_clustering_cqat(network):
    """A cluster-preserving QAT network without its clustering variables, the fake quantization kept.

    What the optimizer exports after clustering + QAT: the converter reads the ranges of the
    fake-quantization, and the kernels hold the clustered values (tfmot's ``strip_clustering_cqat``).
    """
    return import_tfmot().experimental.combine.strip_clustering_cqat(network)


def _plain_activation(config):
    """``config`` with tfmot's activation wrappers replaced by the activations they wrap (``NoOpActivation``: linear)."""
    if isinstance(config, list):
        return [_plain_activation(value) for value in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "QuantizeAwareActivation":
        return _plain_activation(config["config"]["activation"])
    if config.get("class_name") == "NoOpActivation":  # tfmot puts it only where the activation was linear
        return "linear"
    return {key: _plain_activation(value) for key, value in config.items()}


def strip_qat(network):
    """The float network of a QAT network: fake quantization removed, the trained float weights kept.

    Each ``QuantizeWrapperV2`` gives back the layer it wraps (its activation unwrapped too) and
    the ``QuantizeLayer`` after the input is dropped; the quantizer variables (ranges, and the
    centroids and indices of cluster-preserving QAT) go, the layers' own weights are copied. The
    inverse of :func:`apply_qat` up to its BatchNormalization fold: a network fresh from
    :func:`apply_qat` strips to :func:`fold_depthwise_batch_norms` of its input. A cluster-preserving
    network strips to the clustered kernels its last training step wrote (what
    :func:`strip_clustering_cqat` keeps).

    Args:
        network: A functional network from :func:`apply_qat` (not modified).

    Returns:
        A new plain Keras model with the same layer names as the float network, no tfmot layers.
    """
    config = network.get_config()
    names, bypass, layers = {}, {}, []  # wrapper -> layer name; QuantizeLayer -> the input it quantizes
    for layer in config["layers"]:
        if layer["class_name"] == "QuantizeLayer":
            bypass[layer["name"]] = layer["inbound_nodes"][0][0]
            continue
        if layer["class_name"] in _WRAPPERS:
            inner = _plain_activation(layer["config"]["layer"])
            names[layer["name"]] = inner["config"]["name"]
            layer = {**inner, "name": inner["config"]["name"], "inbound_nodes": layer["inbound_nodes"]}
        layers.append(layer)

    def rewire(ref):
        if ref[0] in bypass:
            return rewire(bypass[ref[0]])
        return [names.get(ref[0], ref[0]), *ref[1:]]

    for layer in layers:
        layer["inbound_nodes"] = [[rewire(ref) for ref in node] for node in layer["inbound_nodes"]]
    config.update(layers=layers, output_layers=[rewire(ref) for ref in config["output_layers"]])
    plain = keras.Model.from_config(config)
    wrappers = {inner: network.get_layer(wrapper) for wrapper, inner in names.items()}
    for layer in plain.layers:
        if layer.name not in wrappers:
            layer.set_weights(network.get_layer(layer.name).get_weights())
            continue
        wrapper = wrappers[layer.name]
        # The layer's own variables live in its scope; the quantizers' in the wrapper's ("quant_<name>/...").
        own = {
            weight_name(v): v
            for v in [*wrapper.weights, *wrapper.layer.weights]
            if not v.name.startswith(f"{wrapper.name}/")
        }
        layer.set_weights([own[weight_name(v)].numpy() for v in layer.weights])
    return plain
