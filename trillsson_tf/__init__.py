"""trillsson_tf: small paralinguistic speech models for phones and microcontrollers.

Entry points, imported on first use (``import trillsson_tf`` stays light, the runtime TensorFlow-free):
``TFLiteModel`` (:mod:`trillsson_tf.runtime`), ``build`` (:func:`trillsson_tf.models.build`),
``export_savedmodel`` / ``load`` (:mod:`trillsson_tf.export`), ``load_teacher``
(:func:`trillsson_tf.teachers.load_teacher`), ``convert`` (:func:`trillsson_tf.converters.tflite.convert`),
``keras3_layer`` (:mod:`trillsson_tf.keras3`) and the modules ``models``, ``export`` and ``distill``.
``trillsson_tf.export`` and ``trillsson_tf.distill`` are submodules, not functions (why:
docs/DESIGN.md, "What is good and stays"): call ``trillsson_tf.export_savedmodel(...)`` and
``trillsson_tf.distill.distill(...)``.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__version__ = "0.1.0"

# Public name -> (module, attribute in it; None: the module itself).
_LAZY = {
    "TFLiteModel": ("trillsson_tf.runtime", "TFLiteModel"),
    "build": ("trillsson_tf.models", "build"),
    "export_savedmodel": ("trillsson_tf.export", "export_savedmodel"),
    "load": ("trillsson_tf.export", "load"),
    "load_teacher": ("trillsson_tf.teachers", "load_teacher"),
    "convert": ("trillsson_tf.converters.tflite", "convert"),
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


class _OldConverters(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``converters`` and ``converters.*``, the old top-level names of :mod:`trillsson_tf.converters`.

    Kept for one release, with a DeprecationWarning; last on ``sys.meta_path``, so an installed
    distribution of that name wins. Each old name is a small module forwarding to the new one.
    """

    def find_spec(self, name, path=None, target=None):
        if name == "converters" or name.startswith("converters."):
            return importlib.util.spec_from_loader(name, self, is_package=name == "converters")
        return None

    def create_module(self, spec):
        new = f"trillsson_tf.{spec.name}"
        warnings.warn(
            f"'{spec.name}' is now '{new}'; the old name goes in the next release.", DeprecationWarning, stacklevel=2
        )
        target = importlib.import_module(new)
        module = types.ModuleType(spec.name, target.__doc__)
        if spec.name == "converters":
            module.__path__ = []  # submodules come from this finder, never a second copy from the real folder

        def forward(attribute):
            if attribute.startswith("__"):
                raise AttributeError(attribute)
            try:
                return getattr(target, attribute)
            except AttributeError:
                if not hasattr(target, "__path__"):
                    raise
            try:  # ``from converters import micro``: the real submodule, not another forwarder
                return importlib.import_module(f"{new}.{attribute}")
            except ModuleNotFoundError:
                raise AttributeError(f"module {spec.name!r} has no attribute {attribute!r}") from None

        module.__getattr__ = forward
        return module

    def exec_module(self, module):
        pass


if not any(isinstance(finder, _OldConverters) for finder in sys.meta_path):
    sys.meta_path.append(_OldConverters())
