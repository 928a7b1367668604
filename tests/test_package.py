"""``import trillsson_tf``: the entry points are there lazily, tab-complete, and leave TensorFlow out."""

import importlib
import pkgutil
import json
import subprocess
import sys
import warnings

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
    """Importing ``trillsson_tf.models`` (or the old module name ``trillsson_tf.export``) binds that package
    attribute to the module, so the lazy attribute must already be the module, before and after."""
    submodules = {info.name for info in pkgutil.iter_modules(trillsson_tf.__path__)}
    moved = {old.rpartition(".")[2] for old in trillsson_tf._MOVED if old.startswith("trillsson_tf.")}
    shared = sorted(ENTRY_POINTS & (submodules | moved))
    assert {"export", "distill", "models"} <= set(shared)
    code = (
        "import importlib, sys, types, warnings; import trillsson_tf; "
        "warnings.simplefilter('ignore', DeprecationWarning); "
        f"names = {shared!r}; "
        "before = {name: getattr(trillsson_tf, name) for name in names}; "
        "[importlib.import_module('trillsson_tf.' + name) for name in names]; "
        "assert all(isinstance(before[name], types.ModuleType) for name in names), before; "
        "assert all(getattr(trillsson_tf, name) is sys.modules['trillsson_tf.' + name] is before[name] "
        "for name in names); print('ok')"
    )
    assert _run(code) == "ok"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
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


_MOVED_PROBE = """
import importlib, json, sys, warnings
import trillsson_tf

def ours(caught):
    return [(str(w.message), w.filename) for w in caught if issubclass(w.category, DeprecationWarning)
            and "the old name goes" in str(w.message)]

report = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for new in dict.fromkeys(trillsson_tf._MOVED.values()):
        importlib.import_module(new)
    facade = trillsson_tf.distill
    from trillsson_tf import distill as facade_from
report["new_paths_and_facade"] = ours(caught)
report["facade_is_new"] = facade is facade_from is sys.modules["trillsson_tf.train.distill"]
report["old"] = {}
for old, new in trillsson_tf._MOVED.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    report["old"][old] = [module is sys.modules[new] is sys.modules[old], ours(caught)]
for name in [name for name in sys.modules if name.startswith("converters") or name == "trillsson_tf.data"]:
    del sys.modules[name]  # imported again below, through each form of import
del trillsson_tf.data
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from trillsson_tf import data
    import converters.micro as micro
report["forms"] = {
    "from package import old": data is sys.modules["trillsson_tf.train.data"],
    "import old package.submodule": micro is sys.modules["trillsson_tf.converters.micro"],
    "messages": ours(caught),
}
import trillsson_tf.distill
from trillsson_tf.distill import distill
trillsson_tf.distill.MONKEYPATCHED = 1
report["forms"]["import old, from old import"] = (
    trillsson_tf.distill is sys.modules["trillsson_tf.train.distill"] and distill is trillsson_tf.distill.distill
    and sys.modules["trillsson_tf.train.distill"].MONKEYPATCHED == 1
)
report["spec"] = sys.modules["trillsson_tf.distill"].__spec__.name
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def moved_report():
    """One fresh interpreter: every new path and the facade, then every old name of ``_MOVED``, then each form."""
    return json.loads(_run(_MOVED_PROBE).splitlines()[-1])


def test_new_paths_and_the_facade_give_no_deprecation_warning(moved_report):
    assert moved_report["new_paths_and_facade"] == []
    assert moved_report["facade_is_new"]


def test_old_module_names_warn_naming_the_new_path_and_are_the_new_modules(moved_report):
    assert set(moved_report["old"]) == set(trillsson_tf._MOVED) and len(trillsson_tf._MOVED) == 16
    for old, (same, messages) in moved_report["old"].items():
        new = trillsson_tf._MOVED[old]
        assert same, f"{old} is not the module {new}"
        assert [message for message, _ in messages] == [
            f"'{old}' is now '{new}'; the old name goes in the next release."
        ]
    assert moved_report["spec"] == "trillsson_tf.train.distill"  # the module keeps its own spec


def test_every_form_of_import_of_an_old_name_reaches_the_new_module(moved_report):
    forms = moved_report["forms"]
    assert forms["from package import old"] and forms["import old package.submodule"]
    assert forms["import old, from old import"]  # and a monkeypatched attribute is seen through both names
    messages = {message for message, _ in forms["messages"]}
    assert messages == {
        "'trillsson_tf.data' is now 'trillsson_tf.train.data'; the old name goes in the next release.",
        "'converters' is now 'trillsson_tf.converters'; the old name goes in the next release.",
        "'converters.micro' is now 'trillsson_tf.converters.micro'; the old name goes in the next release.",
    }
    assert {filename for _, filename in forms["messages"]} == {"<string>"}  # the importing line, not importlib


def test_python_m_of_the_old_cli_name_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "trillsson_tf.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith(trillsson_tf.__version__)
