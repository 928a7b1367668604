"""Cost figures of a per-chunk (or whole-clip) network."""

from trillsson_tf._keras import tf
from trillsson_tf.kinds import WAVEFORM


def chunk_gflops(chunk_net) -> float:
    """Floating-point operations of one log-mel patch through ``chunk_net``, in GFLOPs.

    Counted by TensorFlow's profiler on the frozen graph (a multiply-add counts as 2).

    Args:
        chunk_net: Keras model taking ``[n, frames, mels, 1]``.

    Returns:
        GFLOPs for a batch of one patch.
    """
    return _gflops(chunk_net, [1, *chunk_net.input_shape[1:]])


def clip_gflops(model, num_samples: int = 16000) -> float:
    """Floating-point operations of one clip of ``num_samples`` samples through a whole-clip student, in GFLOPs.

    For Wav2Small (family ``clip``) it counts the ``dft_frontend`` and ``clip_network`` (the
    per-clip normalisation is left out); for a layer-distillation student (family ``waveform``)
    its encoder. 16,000 samples = 1 s at 16 kHz.
    """
    from trillsson_tf._keras import keras

    if model.family == WAVEFORM:
        return _gflops(model.encoder, [1, int(num_samples)])
    audio = keras.Input((int(num_samples),))
    return _gflops(keras.Model(audio, model.clip_network(model.dft_frontend(audio))), [1, int(num_samples)])


def _gflops(network, input_shape) -> float:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec(input_shape, tf.float32)
    concrete = tf.function(lambda inputs: network(inputs, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
    return profile.total_float_ops / 1e9
