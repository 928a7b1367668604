"""trillsson_tf: small paralinguistic speech models for phones and microcontrollers.

``import trillsson_tf`` is light: the TensorFlow parts (``models``, ``export_savedmodel``,
``load``) are imported on first use, so the TensorFlow-free runtime
(:mod:`trillsson_tf.runtime`) stays TensorFlow-free.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {
    "models": ("trillsson_tf.models", None),
    "export_savedmodel": ("trillsson_tf.export", "export_savedmodel"),
    "load": ("trillsson_tf.export", "load"),
    "keras3_layer": ("trillsson_tf.keras3", "keras3_layer"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'trillsson_tf' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
