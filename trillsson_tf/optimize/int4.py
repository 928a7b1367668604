"""int4-aware training of a chunk network's weights, for LiteRT's int4 weight-only recipe.

:func:`apply_int4_qat` fake-quantizes the kernels of every ``Conv2D`` and ``Dense`` (tfmot, 4 bits,
symmetric per output channel) and leaves activations and other layers float; :func:`strip_int4_qat`
gives back the plain network with each kernel snapped onto that grid
(:func:`~trillsson_tf.formats.weight_grid.snap_to_grid`), so the
quantizer (``convert --quantizer litert --quantize int4-weights``) stores it exactly.
"""

from trillsson_tf._keras import keras
from trillsson_tf.errors import ParameterError
from trillsson_tf.formats.weight_grid import snap_to_grid
from trillsson_tf.optimize._common import clone
from trillsson_tf.optimize._tfmot import import_tfmot
from trillsson_tf.optimize.quantize import strip_qat

__all__ = ["INT4_LAYERS", "apply_int4_qat", "check_int8_layers", "strip_int4_qat"]

INT4_LAYERS = ("Conv2D", "Dense")
"""Layer types whose kernels go to int4 (LiteRT's quantizer takes CONV_2D and FULLY_CONNECTED to int4,
and keeps DEPTHWISE_CONV_2D at int8, which needs no training)."""


def _weight_config_class():
    tfmot = import_tfmot()
    quantize = tfmot.quantization.keras

    class Int4WeightConfig(quantize.QuantizeConfig):
        """Fake-quantize a layer's ``kernel`` (``num_bits`` 4 or 8) per output channel; activations stay float."""

        def __init__(self, num_bits: int = 4):
            self.num_bits = num_bits

        def get_weights_and_quantizers(self, layer):
            quantizer = quantize.quantizers.LastValueQuantizer(
                num_bits=self.num_bits, per_axis=True, symmetric=True, narrow_range=True
            )
            return [(layer.kernel, quantizer)]

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            layer.kernel = quantize_weights[0]

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {"num_bits": self.num_bits}

    return Int4WeightConfig


def _weight_only_scheme():
    """A tfmot scheme with no layout transforms (no input QuantizeLayer, no folds) and no registry defaults."""
    tfmot = import_tfmot()
    quantize = tfmot.quantization.keras

    class Unchanged:
        def apply(self, model, layer_quantize_map):
            return model, layer_quantize_map

    class Annotated(quantize.QuantizeRegistry):
        def get_quantize_config(self, layer):
            return None

        def supports(self, layer):
            return False

    class WeightOnly(quantize.QuantizeScheme):
        def get_layout_transformer(self):
            return Unchanged()

        def get_quantize_registry(self):
            return Annotated()

    return WeightOnly()


def check_int8_layers(network, int8_layers) -> None:
    """Raise :class:`ParameterError` for names in ``int8_layers`` that are no Conv2D or Dense layer of ``network``."""
    unknown = sorted(set(int8_layers) - {layer.name for layer in network.layers if type(layer).__name__ in INT4_LAYERS})
    if unknown:
        raise ParameterError(f"int8_layers names no Conv2D or Dense layer of {network.name!r}: {unknown}.")


def apply_int4_qat(network, *, int8_layers=()):
    """Wrap ``network``'s ``Conv2D`` and ``Dense`` layers to train with int4 kernels (straight-through).

    Args:
        network: Keras chunk network ``[n, 195, 80, 1]`` -> ``[n, D]`` (not modified).
        int8_layers: Names of those layers to train with int8 kernels instead (the sensitive ones;
            the quantizer keeps them int8, finding them on the int8 grid).

    Returns:
        A new model in which those layers are ``QuantizeWrapperV2`` with int4 weight fake-quantization;
        every other layer, and every activation, is as it was.
    """
    tfmot = import_tfmot()
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    config = _weight_config_class()

    check_int8_layers(network, int8_layers)

    def annotated(layer):
        if type(layer).__name__ not in INT4_LAYERS:
            return layer
        return annotate(layer, quantize_config=config(8 if layer.name in int8_layers else 4))

    with tfmot.quantization.keras.quantize_scope({"Int4WeightConfig": config}):
        annotated_network = keras.models.clone_model(clone(network), clone_function=annotated)
        return tfmot.quantization.keras.quantize_apply(annotated_network, _weight_only_scheme())


def strip_int4_qat(network):
    """The plain network of :func:`apply_int4_qat`'s, every int4 kernel snapped onto its grid.

    Returns:
        A new Keras model with the float network's layer names, no tfmot layers; its ``Conv2D`` and
        ``Dense`` kernels are what the training forward pass used (``snap_to_grid`` of the trained ones,
        at 8 bits for ``int8_layers``).
    """
    bits = {layer.layer.name: layer.quantize_config.num_bits for layer in network.layers if hasattr(layer, "layer")}
    plain = strip_qat(network)
    for layer in plain.layers:
        if layer.name in bits:
            weights = layer.get_weights()
            layer.set_weights([snap_to_grid(weights[0], bits=bits[layer.name]), *weights[1:]])
    return plain
