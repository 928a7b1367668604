"""trillsson_tf: small paralinguistic speech models for phones and microcontrollers.

Entry points, imported on first use (``import trillsson_tf`` stays light, the runtime TensorFlow-free):
``TFLiteModel`` (:mod:`trillsson_tf.runtime`), ``build`` (:func:`trillsson_tf.models.build`),
``export_savedmodel`` / ``load`` (:mod:`trillsson_tf.export`), ``load_teacher``
(:func:`trillsson_tf.teachers.load_teacher`), ``convert`` (:func:`converters.tflite.convert`),
``keras3_layer`` (:mod:`trillsson_tf.keras3`) and the modules ``models``, ``export`` and ``distill``.
``trillsson_tf.export`` and ``trillsson_tf.distill`` are submodules, not functions (why:
docs/DESIGN.md, "What is good and stays"): call ``trillsson_tf.export_savedmodel(...)`` and
``trillsson_tf.distill.distill(...)``.
"""

import importlib

__version__ = "0.1.0"

# Public name -> (module, attribute in it; None: the module itself).
_LAZY = {
    "TFLiteModel": ("trillsson_tf.runtime", "TFLiteModel"),
    "build": ("trillsson_tf.models", "build"),
    "export_savedmodel": ("trillsson_tf.export", "export_savedmodel"),
    "load": ("trillsson_tf.export", "load"),
    "load_teacher": ("trillsson_tf.teachers", "load_teacher"),
    "convert": ("converters.tflite", "convert"),
    "keras3_layer": ("trillsson_tf.keras3", "keras3_layer"),
    "models": ("trillsson_tf.models", None),
    "export": ("trillsson_tf.export", None),
    "distill": ("trillsson_tf.distill", None),
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


def __dir__():
    return sorted({*globals(), *_LAZY})
