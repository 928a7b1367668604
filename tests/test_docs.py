"""The README and the benchmarks document stay honest: the command table is the CLI's, the Layout
names every module, and every relative link and anchor resolves. No TensorFlow is imported."""

import argparse
import glob
import os
import re

from trillsson_tf.apps import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BENCHMARKS_README = os.path.join(ROOT, "benchmarks", "README.md")
LIBRARY_ROOTS = ("trillsson_tf",)
# A path in the Layout starts with one of the repository's top-level folders.
_REPO_PATH = re.compile(
    r"(?<![\w/.])(?:trillsson_tf|converters|benchmarks|tests|notebooks|android_demo_assets)/[\w/.-]*"
)
# A bare module file name (``prune.py``), resolved in the folder of the line it is on.
_BARE_MODULE = re.compile(r"(?<![\w/.])\w+\.py\b")


def _read(path) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _section(text: str, title: str) -> list:
    """The lines of the ``## title`` section of a markdown text (up to the next ``## ``)."""
    lines = text.splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def _cli_commands() -> set:
    # A light command: the TensorFlow-importing subcommands are then added without their options.
    parser = cli.build_parser("models")
    (subcommands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return set(subcommands.choices)


def test_readme_command_table_lists_every_cli_command():
    rows = [line for line in _section(_read(README), "Command line") if line.startswith("| `")]
    table = [re.match(r"\| `([\w-]+)` \|", row).group(1) for row in rows]
    assert len(table) == len(set(table)), f"a command is listed twice: {table}"
    assert set(table) == _cli_commands()


def _layout_entries() -> list:
    """``(path, text)`` per entry of the README Layout block; indented lines continue the entry above."""
    block = _section(_read(README), "Layout")
    fences = [i for i, line in enumerate(block) if line.startswith("```")]
    entries = []
    for line in block[fences[0] + 1 : fences[1]]:
        if not line.strip():
            continue
        if line[0].isspace():
            path, text = entries[-1]
            entries[-1] = (path, f"{text} {line.strip()}")
        else:
            path, _, text = line.partition(" ")
            entries.append((path, text))
    return entries


def _layout_paths() -> set:
    """Every path the Layout names, relative to the repository root (folders end with ``/``)."""
    named = set()
    for path, text in _layout_entries():
        named.add(path)
        folder = path if path.endswith("/") else os.path.dirname(path) + "/"
        named.update(_REPO_PATH.findall(text))
        named.update(folder + name for name in _BARE_MODULE.findall(text))
    return named


def test_layout_names_every_module():
    """The README Layout names every module and package of ``trillsson_tf/``.

    The rule:

    - a module directly in ``trillsson_tf/`` (private ones such as
      ``trillsson_tf/_keras.py`` included) is named by its full path, e.g.
      ``trillsson_tf/runtime.py``;
    - a subpackage (a folder with ``__init__.py``) has a line of its own that starts with its path
      and a slash, e.g. ``trillsson_tf/optimize/``; its ``__init__.py`` needs nothing more;
    - a public module of a subpackage is named by its file name on that line or its indented
      continuation lines (``prune.py``), or by its full path anywhere in the block;
    - a private module of a subpackage (``_name.py``) is covered by its package's line;
    - every path the block names exists: full paths from the repository root, file names in the
      folder of the line they are on.
    """
    named = _layout_paths()
    missing = []
    for library in LIBRARY_ROOTS:
        for module in sorted(glob.glob(os.path.join(ROOT, library, "**", "*.py"), recursive=True)):
            relative = os.path.relpath(module, ROOT).replace(os.sep, "/")
            folder, name = os.path.split(relative)
            top_level = folder in LIBRARY_ROOTS
            if name == "__init__.py":
                if not top_level and folder + "/" not in named:
                    missing.append(folder + "/")
            elif top_level or not name.startswith("_"):
                if relative not in named:
                    missing.append(relative)
            elif folder + "/" not in named:
                missing.append(relative)
    assert not missing, f"the README Layout does not name: {missing}"
    absent = sorted(path for path in named if not os.path.exists(os.path.join(ROOT, path)))
    assert not absent, f"the README Layout names paths that do not exist: {absent}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_and_anchors_resolve():
    for document in (README, BENCHMARKS_README):
        text = _read(document)
        anchors = {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"\w+://", target):
                continue
            path, _, anchor = target.partition("#")
            if path:
                assert os.path.exists(os.path.join(os.path.dirname(document), path)), (document, target)
            elif anchor:
                assert anchor in anchors, (document, target)


def test_benchmarks_document_covers_every_script_and_result():
    text = _read(BENCHMARKS_README)
    scripts = [os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "benchmarks", "*.py"))]
    assert [s for s in scripts if s not in text] == []
    results = [os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "benchmarks", "results", "*.md"))]
    assert [r for r in results if f"](results/{r})" not in text] == []
    assert "benchmarks/README.md" in _read(README)


def test_readme_is_a_front_door():
    """About 200 lines: the measurements live in benchmarks/README.md."""
    assert len(_read(README).splitlines()) <= 210
