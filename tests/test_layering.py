"""The library's import structure: every module imports, imports flow one way (no circle; down the layers
that the folders show, :data:`LAYERS`), no module takes another's private names, and the TensorFlow-free
side (:data:`TENSORFLOW_FREE`) loads no TensorFlow when imported.

The checks read the source with ``ast``: imports at module level and inside functions (a lazy import
inside a function still ties the two modules together), each violation reported as ``file:line``.
Tests, benchmarks and notebooks are not library code and are not checked.
"""

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("trillsson_tf",)
"""The library: every ``.py`` file under these folders."""
LAYERS = {
    "": 0,  # the modules directly in trillsson_tf/: errors, checks, contract, kinds, configs, audio, folders, ...
    "frontend": 1,
    "formats": 1,
    "runtime": 2,  # depends on the base, frontend/ and formats/ only; train/finetune and apps/ run .tflite files
    "models": 3,
    "teachers": 4,
    "train": 5,
    "pipelines": 5,  # the targets of train/ on Apache Beam
    "optimize": 6,
    "converters": 7,
    "apps": 8,
}
"""Folder of ``trillsson_tf/`` -> layer: a module imports only from its own layer or a lower one."""
UPWARD_IMPORTS = {}
"""``(source, target) -> reason`` for an import against the layers that stays (none)."""
CLI = "trillsson_tf.apps.cli"
"""Nothing imports the command line."""
TENSORFLOW_FREE = {
    "folders": ("", "runtime", "formats"),  # "": the modules directly in trillsson_tf/ (the base)
    "except": ("trillsson_tf._keras",),  # the one TensorFlow import
    "and": ("trillsson_tf.frontend", "trillsson_tf.frontend.numpy_ops"),
}
"""The TensorFlow-free side: neither its modules nor what they import at module level may load TensorFlow."""
TENSORFLOW_MODULES = ("tensorflow", "tf_keras", "keras", "tensorflow_hub", "tensorflow_model_optimization", "tf2onnx")


@dataclass(frozen=True)
class Import:
    """One import statement's link from ``source`` to the library module ``target`` (or a third-party name)."""

    source: str
    target: str
    names: tuple  # names taken with ``from target import ...`` (empty for ``import target``)
    path: str
    line: int
    in_function: bool

    @property
    def where(self) -> str:
        return f"{os.path.relpath(self.path, REPO)}:{self.line}" + (" (in a function)" if self.in_function else "")


def _library_files() -> dict:
    """Module name -> file path of every library module."""
    files = {}
    for package in PACKAGES:
        for root, dirs, names in os.walk(os.path.join(REPO, package)):
            dirs[:] = sorted(d for d in dirs if os.path.isfile(os.path.join(root, d, "__init__.py")))
            for name in sorted(names):
                if name.endswith(".py"):
                    parts = os.path.relpath(os.path.join(root, name), REPO)[: -len(".py")].split(os.sep)
                    files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = os.path.join(root, name)
    return files


FILES = _library_files()


def _is_package(module: str) -> bool:
    return FILES[module].endswith("__init__.py")


def _folder(module: str) -> str:
    """The folder of ``trillsson_tf/`` a library module lives in (``""``: directly in it)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and _is_package(".".join(parts[:2])) else ""


TENSORFLOW_FREE_SIDE = tuple(
    sorted(
        module
        for module in FILES
        if (_folder(module) in TENSORFLOW_FREE["folders"] and module not in TENSORFLOW_FREE["except"])
        or module in TENSORFLOW_FREE["and"]
    )
)
"""Every module of :data:`TENSORFLOW_FREE`."""


def _resolve(module: str, level: int, name) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    if not level:
        return name
    package = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{name}" if name else package


def _library_module(name: str):
    """The library module ``name`` refers to (its longest existing prefix), or ``None`` (third party)."""
    while name and name not in FILES:
        name = name.rpartition(".")[0]
    return name or None


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, module: str):
        self.module, self.imports, self._depth = module, [], 0

    def _function(self, node):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, target, names, node):
        self.imports.append(Import(self.module, target, tuple(names), FILES[self.module], node.lineno, self._depth > 0))

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name, (), node)

    def visit_ImportFrom(self, node):
        base = _resolve(self.module, node.level, node.module)
        submodules = [alias.name for alias in node.names if f"{base}.{alias.name}" in FILES]
        names = [alias.name for alias in node.names if f"{base}.{alias.name}" not in FILES]
        for name in submodules:  # ``from package import submodule`` links to the submodule
            self._add(f"{base}.{name}", (), node)
        if names:
            self._add(base, names, node)


def _imports() -> list:
    found = []
    for module, path in FILES.items():
        with open(path) as handle:
            tree = ast.parse(handle.read(), filename=path)
        visitor = _ImportVisitor(module)
        visitor.visit(tree)
        found += visitor.imports
    return found


IMPORTS = _imports()


def _library_edges() -> dict:
    """(source, target) -> the imports that make ``source`` depend on the library module ``target``."""
    edges = {}
    for item in IMPORTS:
        target = _library_module(item.target)
        if target and target != item.source:
            edges.setdefault((item.source, target), []).append(item)
    return edges


def _cycles(edges) -> list:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    graph = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(FILES)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_every_library_module_imports():
    """In a fresh interpreter, so import-time side effects stay out of the other tests."""
    code = f"""
import importlib, json, traceback
failed, skipped = {{}}, {{}}
for name in {sorted(FILES)!r}:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        top = (error.name or "").partition(".")[0]
        if top and top not in {PACKAGES!r}:
            skipped[name] = error.name  # an optional extra that is not installed
        else:
            failed[name] = traceback.format_exc(limit=-3)
    except Exception:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps({{"failed": failed, "skipped": skipped}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["failed"], "\n\n".join(f"{name}:\n{error}" for name, error in report["failed"].items())


def test_no_import_circle():
    """Nothing imports a module that (directly or through others) imports it back.

    A package's ``__init__`` importing its own submodules is not a circle by itself: Python runs the
    parent first, so a submodule's implicit dependency on it is not counted; a submodule that
    imports names from its parent's ``__init__`` is, when that ``__init__`` imports it.
    """
    edges = _library_edges()
    report = []
    for group in _cycles(edges):
        links = [
            f"  {source} -> {target}: " + ", ".join(item.where for item in edges[source, target])
            for source, target in sorted(edges)
            if source in group and target in group
        ]
        report.append("circle among " + ", ".join(group) + ":\n" + "\n".join(links))
    assert not report, "\n".join(report)


def _layer(module: str) -> int:
    """The layer of the folder ``module`` lives in (:data:`LAYERS`)."""
    return LAYERS[_folder(module)]


def test_every_folder_has_a_layer():
    """A new folder of ``trillsson_tf/`` is placed in :data:`LAYERS` before its imports can be checked."""
    folders = {_folder(module) for module in FILES}
    assert folders == set(LAYERS), f"folders without a layer: {sorted(folders - set(LAYERS))}"


def test_imports_point_down_the_layers():
    """A module imports only from its own layer or a lower one (:data:`LAYERS`, read from the folder each file
    lives in); nothing imports the CLI.

    (``trillsson_tf.convert`` and the other public names reach their modules by name, lazily, from the
    package's ``__init__``: the public facade, not an import of the library's modules.)
    """
    edges = _library_edges()
    report = [
        f"{item.where}: {item.source} (layer {_layer(source)}) imports "
        + (f"{target} (layer {_layer(target)})" if target != CLI else f"{target}, the command line")
        for (source, target), items in sorted(edges.items())
        for item in items
        if (_layer(target) > _layer(source) and (source, target) not in UPWARD_IMPORTS) or target == CLI
    ]
    assert not report, "imports against the layers:\n" + "\n".join(report)
    stale = sorted(pair for pair in UPWARD_IMPORTS if pair not in edges)
    assert not stale, f"UPWARD_IMPORTS lists imports that are gone: {stale}"


def test_no_private_name_is_imported_from_another_module():
    """``from trillsson_tf.x import _helper`` is a defect; importing a private module (``_keras``) is not."""
    report = [
        f"{item.where}: from {item.target} import {name}"
        for item in IMPORTS
        if _library_module(item.target)
        for name in item.names
        if name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
    ]
    assert not report, "private names imported across modules:\n" + "\n".join(report)


def _module_level_closure(roots) -> dict:
    """Library module -> the import chain that reaches it at import time from one of ``roots``.

    Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, so parents are followed too.
    """
    chains = {}
    pending = [(root, (root,)) for root in roots if root in FILES]
    while pending:
        module, chain = pending.pop()
        if module in chains:
            continue
        chains[module] = chain
        parent = module.rpartition(".")[0]
        if parent:
            pending.append((parent, chain + (parent,)))
        for item in IMPORTS:
            target = _library_module(item.target)
            if item.source == module and not item.in_function and target:
                pending.append((target, chain + (target,)))
    return chains


def test_tensorflow_free_side_imports_no_tensorflow_at_module_level():
    chains = _module_level_closure(TENSORFLOW_FREE_SIDE)
    report = [
        f"{item.where}: import {item.target} (reached by {' -> '.join(chains[item.source])})"
        for item in IMPORTS
        if item.source in chains and not item.in_function and item.target.partition(".")[0] in TENSORFLOW_MODULES
    ]
    assert not report, "TensorFlow imported on the TensorFlow-free side:\n" + "\n".join(report)


@pytest.mark.parametrize(
    "module",
    ["trillsson_tf.runtime", "trillsson_tf.runtime.model", "trillsson_tf.audio", "trillsson_tf.formats.model_card"],
)
def test_tensorflow_free_side_is_checked(module):
    """The checks above read the real files: guard against a walk that finds nothing."""
    assert module in FILES and module in TENSORFLOW_FREE_SIDE and any(item.source == module for item in IMPORTS)
    assert (
        "trillsson_tf._keras" not in TENSORFLOW_FREE_SIDE and "trillsson_tf.frontend.tf_ops" not in TENSORFLOW_FREE_SIDE
    )


def test_runtime_modules_stay_under_300_lines():
    """Issue 40: the runtime package is small pieces (card, pool, feeders, model, stream, files), none over 300 lines."""
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "trillsson_tf", "runtime")
    lengths = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name)) as handle:
                lengths[name] = sum(1 for _ in handle)
    assert "model.py" in lengths and len(lengths) >= 6
    assert {name: n for name, n in lengths.items() if n > 300} == {}
