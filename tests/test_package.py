"""``import trillsson_tf``: the entry points are there lazily, tab-complete, and leave TensorFlow out."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import trillsson_tf

ENTRY_POINTS = {
    "TFLiteModel",
    "build",
    "export_savedmodel",
    "load",
    "load_teacher",
    "convert",
    "keras3_layer",
    "models",
    "export",
    "distill",
}


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_entry_points_tab_complete():
    assert ENTRY_POINTS <= set(dir(trillsson_tf))
    assert ENTRY_POINTS <= set(trillsson_tf.__all__)
    assert "__version__" in dir(trillsson_tf)


def test_import_and_the_runtime_entry_point_load_no_tensorflow():
    code = (
        "import sys; import trillsson_tf; assert 'tensorflow' not in sys.modules, 'import'; "
        "model_class = trillsson_tf.TFLiteModel; assert 'tensorflow' not in sys.modules, 'TFLiteModel'; "
        "print(model_class.__module__)"
    )
    assert _run(code) == "trillsson_tf.runtime"


def test_entry_points_are_the_library_functions():
    from trillsson_tf.converters import tflite
    from trillsson_tf import models, runtime, teachers
    from trillsson_tf.models import export
    from trillsson_tf.converters import keras3

    assert trillsson_tf.TFLiteModel is runtime.TFLiteModel
    assert trillsson_tf.build is models.build
    assert trillsson_tf.export_savedmodel is export.export_savedmodel
    assert trillsson_tf.load is export.load
    assert trillsson_tf.load_teacher is teachers.load_teacher
    assert trillsson_tf.convert is tflite.convert
    assert trillsson_tf.keras3_layer is keras3.keras3_layer


def test_names_shared_with_a_submodule_are_that_submodule_whatever_was_imported_first():
    """Importing ``trillsson_tf.export`` rebinds ``trillsson_tf.export`` to the module, so the lazy
    attribute must already be the module, before and after."""
    submodules = {info.name for info in pkgutil.iter_modules(trillsson_tf.__path__)}
    shared = sorted(ENTRY_POINTS & submodules)
    assert {"export", "distill", "models"} <= set(shared)
    code = (
        "import importlib, sys, types; import trillsson_tf; "
        f"names = {shared!r}; "
        "before = {name: getattr(trillsson_tf, name) for name in names}; "
        "[importlib.import_module('trillsson_tf.' + name) for name in names]; "
        "assert all(isinstance(before[name], types.ModuleType) for name in names), before; "
        "assert all(getattr(trillsson_tf, name) is sys.modules['trillsson_tf.' + name] is before[name] "
        "for name in names); print('ok')"
    )
    assert _run(code) == "ok"
    for name in shared:
        assert getattr(trillsson_tf, name) is importlib.import_module(f"trillsson_tf.{name}")
    assert callable(trillsson_tf.export.export_savedmodel) and callable(trillsson_tf.distill.distill)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        trillsson_tf.no_such_thing


def test_old_converters_names_warn_and_forward_for_one_release():
    """``converters`` was a top-level package of the wheel (the name of another PyPI project); it is
    ``trillsson_tf.converters`` now, and the old names forward to it with a DeprecationWarning."""
    probe = (
        "import warnings, trillsson_tf\n"
        "import trillsson_tf.converters.tflite as new\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from converters.tflite import convert\n"
        "    from converters import micro\n"
        "import trillsson_tf.converters.micro as new_micro\n"
        "assert convert is new.convert and micro is new_micro, (convert, micro)\n"
        "print(sorted({str(w.message) for w in caught if w.category is DeprecationWarning}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'converters.tflite' is now 'trillsson_tf.converters.tflite'" in done.stdout
    assert "'converters' is now 'trillsson_tf.converters'" in done.stdout  # also covers `from converters import micro`
