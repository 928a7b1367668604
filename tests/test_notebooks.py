"""The Colab notebooks: stored without outputs, in sync with their generator, and executable in fast mode.

``01_quickstart`` runs in the default suite (about a minute on 2 cores); the others distill,
prune or fine-tune and run under ``slow``.
"""

import glob
import os
import subprocess
import sys

import nbformat
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(REPO, "notebooks")
DEFAULT = ("01_quickstart.ipynb",)


def _notebooks():
    paths = sorted(glob.glob(os.path.join(NOTEBOOKS, "*.ipynb")))
    assert paths, "no notebooks in notebooks/"
    return paths


def _execute(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("TRILLSSON_FAST", "1")
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    # The notebook's working directory is a temporary folder: it writes only there.
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors
    return notebook


def _text(notebook) -> str:
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "stream"
    )


def test_notebooks_are_stored_without_outputs():
    for path in _notebooks():
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{os.path.basename(path)} has outputs"


def test_notebooks_match_their_generator():
    result = subprocess.run(
        [sys.executable, os.path.join(NOTEBOOKS, "make_notebooks.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_notebooks_install_from_the_repository_and_read_no_local_paths():
    for path in _notebooks():
        notebook = nbformat.read(path, as_version=4)
        first_code = next(cell for cell in notebook.cells if cell.cell_type == "code").source
        assert 'find_spec("trillsson_tf") is None' in first_code and "@ git+https://github.com/" in first_code
        source = "\n".join(cell.source for cell in notebook.cells)
        assert "/work/" not in source and "../shared" not in source and "SAMPLE_AUDIO_DIR" in source
        assert 'os.environ.get("TRILLSSON_FAST") == "1"' in source


def test_quickstart_runs_in_fast_mode(tmp_path, monkeypatch):
    notebook = _execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    text = _text(notebook)
    assert "embedding (1, 96) float32" in text
    assert "int8 .tflite vs the Keras layer: cosine 0.9" in text
    assert "their mean matches the offline call: True" in text
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the chunked spectrogram and the size-vs-fidelity plot
    assert (tmp_path / "quickstart_outputs" / "tiny_cnn_int8.tflite").stat().st_size < 300_000


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        os.path.basename(p)
        for p in sorted(glob.glob(os.path.join(NOTEBOOKS, "*.ipynb")))
        if os.path.basename(p) not in DEFAULT
    ],
)
def test_notebook_runs_in_fast_mode(name, tmp_path, monkeypatch):
    notebook = _execute(name, tmp_path, monkeypatch)
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no figure"
