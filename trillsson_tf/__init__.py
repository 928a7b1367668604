"""trillsson_tf: small paralinguistic speech models for phones and microcontrollers.

Entry points, imported on first use (``import trillsson_tf`` stays light, the runtime TensorFlow-free):
``TFLiteModel`` (:mod:`trillsson_tf.runtime`), ``build`` (:func:`trillsson_tf.models.build`),
``export_savedmodel`` / ``load`` (:mod:`trillsson_tf.models.export`), ``load_teacher``
(:func:`trillsson_tf.teachers.load_teacher`), ``convert`` (:func:`trillsson_tf.converters.tflite.convert`),
``keras3_layer`` (:mod:`trillsson_tf.converters.keras3`) and the modules ``models``, ``export``
(:mod:`trillsson_tf.models.export`) and ``distill`` (:mod:`trillsson_tf.train.distill`). ``trillsson_tf.export``
and ``trillsson_tf.distill`` are modules, not functions (why: docs/DESIGN.md, "What is good and stays"):
call ``trillsson_tf.export_savedmodel(...)`` and ``trillsson_tf.distill.distill(...)``. The modules' names
before they moved into folders by layer (:data:`_MOVED`) import the same modules, with a DeprecationWarning.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings

__version__ = "0.1.0"

# Public name -> (module, attribute in it; None: the module itself).
_LAZY = {
    "TFLiteModel": ("trillsson_tf.runtime", "TFLiteModel"),
    "build": ("trillsson_tf.models", "build"),
    "export_savedmodel": ("trillsson_tf.models.export", "export_savedmodel"),
    "load": ("trillsson_tf.models.export", "load"),
    "load_teacher": ("trillsson_tf.teachers", "load_teacher"),
    "convert": ("trillsson_tf.converters.tflite", "convert"),
    "keras3_layer": ("trillsson_tf.converters.keras3", "keras3_layer"),
    "models": ("trillsson_tf.models", None),
    "export": ("trillsson_tf.models.export", None),
    "distill": ("trillsson_tf.train.distill", None),
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


# Old module name -> new: the modules moved into folders by layer (issue 40); the old names work for one release.
_MOVED = {
    "trillsson_tf.layer_teachers": "trillsson_tf.teachers.layers",
    "trillsson_tf.prosody": "trillsson_tf.teachers.prosody",
    "trillsson_tf.export": "trillsson_tf.models.export",
    "trillsson_tf.data": "trillsson_tf.train.data",
    "trillsson_tf.augment": "trillsson_tf.train.augment",
    "trillsson_tf.targets": "trillsson_tf.train.targets",
    "trillsson_tf.input_pipeline": "trillsson_tf.train.input_pipeline",
    "trillsson_tf.training": "trillsson_tf.train.engine",
    "trillsson_tf.distribute": "trillsson_tf.train.distribute",
    "trillsson_tf.distill": "trillsson_tf.train.distill",
    "trillsson_tf.distill_layers": "trillsson_tf.train.distill_layers",
    "trillsson_tf.finetune": "trillsson_tf.train.finetune",
    "trillsson_tf.keras3": "trillsson_tf.converters.keras3",
    "trillsson_tf.evaluate": "trillsson_tf.apps.evaluate",
    "trillsson_tf.cli": "trillsson_tf.apps.cli",
    "converters": "trillsson_tf.converters",
}


def _new_name(name):
    """``(old, new)`` for an old module name or a submodule of an old package name; ``None`` otherwise."""
    for old, new in _MOVED.items():
        if name == old or name.startswith(old + "."):
            return old, new + name[len(old) :]
    return None


def _importer_stacklevel() -> int:
    """``stacklevel`` of the line that imported an old name: past this file and ``importlib.import_module``
    (``warnings`` itself steps over importlib's bootstrap frames without counting them)."""
    frame, level = sys._getframe(2), 2
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name and "_bootstrap" in name):
            if name not in (__file__, importlib.__file__):
                return level
            level += 1
        frame = frame.f_back
    return level


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """The old names of :data:`_MOVED`, with a DeprecationWarning naming the new one.

    The old name is the new module itself (``sys.modules[old] is sys.modules[new]``): attributes set
    through either name (monkeypatching) are seen through both. First on ``sys.meta_path``, so that
    ``converters.micro`` never loads a second copy from the package's folder; an installed distribution
    that is itself called ``converters`` wins over the old name.
    """

    def find_spec(self, name, path=None, target=None):
        names = _new_name(name)
        if names is None:
            return None
        old, new = names
        if name == old and "." not in name and any(_finds(finder, name) for finder in sys.meta_path):
            return None  # a top-level package of that name is installed
        if name != old and sys.modules.get(old) is not sys.modules.get(_MOVED[old], self):
            return None  # a submodule of another package that has the old name
        return importlib.util.spec_from_loader(name, self, origin=_source(new))

    def _warn(self, name):
        new = _new_name(name)[1]
        message = f"'{name}' is now '{new}'; the old name goes in the next release."
        warnings.warn(message, DeprecationWarning, stacklevel=_importer_stacklevel())
        return new

    def create_module(self, spec):
        module = importlib.import_module(self._warn(spec.name))
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state  # importlib set the old name's spec; the module keeps its own

    def get_code(self, name):
        """``python -m trillsson_tf.cli``: the new module's code."""
        new = self._warn(name)
        return importlib.util.find_spec(new).loader.get_code(new)


def _source(module: str) -> str:
    """The file of the library module ``module``, found without importing it (``python -m`` puts it in ``sys.argv``)."""
    path = os.path.join(os.path.dirname(__file__), *module.split(".")[1:])
    return os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"


def _finds(finder, name) -> bool:
    if type(finder).__name__ == _MovedModules.__name__ or not hasattr(finder, "find_spec"):
        return False
    return finder.find_spec(name, None) is not None


if not any(type(finder).__name__ == _MovedModules.__name__ for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
