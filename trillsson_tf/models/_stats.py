"""Cost figures of a per-chunk network."""
from trillsson_tf._keras import tf


def chunk_gflops(chunk_net) -> float:
    """Floating-point operations of one log-mel patch through ``chunk_net``, in GFLOPs.

    Counted by TensorFlow's profiler on the frozen graph (a multiply-add counts as 2).

    Args:
        chunk_net: Keras model taking ``[n, frames, mels, 1]``.

    Returns:
        GFLOPs for a batch of one patch.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([1, *chunk_net.input_shape[1:]], tf.float32)
    concrete = tf.function(lambda patch: chunk_net(patch, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
    return profile.total_float_ops / 1e9
