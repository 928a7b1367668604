"""Outputs never delete or overwrite a command's inputs, and never replace a file without --force (issue 39).

The rule itself (trillsson_tf.folders) on real folders, then the commands that hit it as a user
would: ``distill --data X --out X --force``, ``optimize EXP --out EXP --force``, ``convert`` onto
its export's own files and ``evaluate --json`` onto an existing file. Every refusal comes before
any teacher, training or evaluation runs, so these are fast.
"""

import glob
import json
import os
import shutil

import pytest

from trillsson_tf.apps import cli
from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import prepare_output_dir, refuse_inputs

WAVS = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_0.wav")))[:4]


def _snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                files[os.path.relpath(path, folder)] = handle.read()
    return files


@pytest.fixture
def data(tmp_path):
    """A folder of 4 real FSDD WAVs (the user's data)."""
    folder = tmp_path / "data"
    folder.mkdir()
    for path in WAVS:
        shutil.copy(path, folder)
    return folder


# -- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "out, relation", [(".", "is"), ("..", "holds"), ("run", "lies inside")], ids=["equal", "containing", "inside"]
)
def test_an_output_folder_overlapping_an_input_is_refused_and_nothing_is_deleted(data, out, relation):
    before = _snapshot(data.parent)
    out = os.path.normpath(os.path.join(data, out))
    with pytest.raises(
        ParameterError,
        match=rf"^Output directory '{out}' {relation} the input --data '{data}'; "
        "choose an output outside the inputs.$",
    ):
        prepare_output_dir(out, overwrite=True, inputs=[("--data", data)])
    assert _snapshot(data.parent) == before


def test_symbolic_links_are_resolved(data, tmp_path):
    link = tmp_path / "link_to_data"
    link.symlink_to(data, target_is_directory=True)
    with pytest.raises(ParameterError, match="is the input --data"):
        prepare_output_dir(link, overwrite=True, inputs=[("--data", data)])
    # The input reached through a link inside the output: the output holds it.
    out = tmp_path / "out"
    (out / "deep").mkdir(parents=True)
    shutil.move(str(data), out / "deep" / "data")
    data.symlink_to(out / "deep" / "data", target_is_directory=True)
    with pytest.raises(ParameterError, match="holds the input --data"):
        prepare_output_dir(out, overwrite=True, inputs=[("--data", data)])
    assert sorted(os.listdir(data)) == sorted(os.path.basename(path) for path in WAVS)


def test_listed_files_count_and_others_pass(data, tmp_path):
    with pytest.raises(ParameterError, match=r"holds the input --data '.*_0\.wav'"):
        refuse_inputs(data, [("--data", [str(tmp_path / "list.csv"), str(data / os.path.basename(WAVS[0]))])])
    sibling = tmp_path / "data2"  # a name that starts like the input's is not inside it
    assert prepare_output_dir(
        sibling,
        overwrite=True,
        inputs=[("--data", data), ("--teacher", "speech_embedding"), ("--labels", None), ("--teacher", object())],
    ) == str(sibling)
    refuse_inputs(tmp_path / "missing", [("--data", tmp_path / "missing" / "nothing.wav")])  # nothing there to lose


def test_an_output_file_is_refused_only_when_it_is_an_input(data, tmp_path):
    wav = data / os.path.basename(WAVS[0])
    with pytest.raises(ParameterError, match=r"^Output '.*_0\.wav' is the input audio file"):
        refuse_inputs(str(wav), [("audio file", [str(wav)])], what="Output", folder=False)
    os.link(wav, tmp_path / "hard.wav")  # another name of the same file is the same file
    with pytest.raises(ParameterError, match="is the input audio file"):
        refuse_inputs(tmp_path / "hard.wav", [("audio file", [wav])], what="Output", folder=False)
    refuse_inputs(data / "embeddings.npy", [("--data", data)], what="Output", folder=False)  # a new file beside them


# -- the commands ------------------------------------------------------------------------------


def _refused(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_distill_with_its_data_as_out_and_force_keeps_the_data(data, tmp_path, capsys):
    before = _snapshot(data)
    err = _refused(capsys, ["distill", "--data", str(data), "--out", str(data), "--force", "--steps", "1"])
    assert f"Output directory {str(data)!r} is the input --data {str(data)!r}" in err
    # A manifest whose files lie in --out: they are inputs too.
    manifest = tmp_path / "list.csv"
    manifest.write_text("".join(f"{name}\n" for name in sorted(os.listdir(data))))
    shutil.move(str(manifest), data / "list.csv")
    err = _refused(capsys, ["distill", "--data", str(data / "list.csv"), "--out", str(data), "--force"])
    assert "is the input --data" in err or "holds the input --data" in err
    assert {name: body for name, body in _snapshot(data).items() if name != "list.csv"} == before


@pytest.fixture(scope="module")
def export(tmp_path_factory, tiny_model):
    """A tiny trillsson1 export (what `distill` and `export` write)."""
    from trillsson_tf.models.export import export_savedmodel

    return export_savedmodel(tiny_model, tmp_path_factory.mktemp("source") / "export")


def test_optimize_with_its_export_as_out_and_force_keeps_the_export(export, data, tmp_path, capsys):
    copy = shutil.copytree(export, tmp_path / "export")
    before = _snapshot(copy)
    err = _refused(
        capsys, ["optimize", str(copy), "--prune", "0.5", "--data", str(data), "--out", str(copy), "--force"]
    )
    assert f"Output directory {str(copy)!r} is the input export {str(copy)!r}" in err
    _refused(
        capsys, ["optimize", str(copy), "--prune", "0.5", "--data", str(data), "--out", str(copy / "opt"), "--force"]
    )
    assert _snapshot(copy) == before


def test_convert_never_writes_over_its_export(export, tmp_path, capsys):
    copy = shutil.copytree(export, tmp_path / "export")
    before = _snapshot(copy)
    # The card of trillsson_tf.tflite would be the export's own trillsson_tf.json.
    err = _refused(capsys, ["convert", str(copy), "--out", str(copy / "trillsson_tf.tflite"), "--force"])
    assert f"Output {str(copy / 'trillsson_tf.json')!r} is the input model" in err
    assert _snapshot(copy) == before


def test_evaluate_refuses_an_existing_json_without_force(data, tmp_path, capsys):
    report = tmp_path / "report.json"
    report.write_text('{"mine": 1}')
    err = _refused(capsys, ["evaluate", "--model", "speech_embedding", "--data", str(data), "--json", str(report)])
    assert f"--json {str(report)!r} exists; pass --force to replace it." in err
    manifest = tmp_path / "list.csv"
    manifest.write_text("".join(f"{path}\n" for path in WAVS))
    err = _refused(
        capsys, ["evaluate", "--model", "speech_embedding", "--data", str(manifest), "--json", str(manifest), "--force"]
    )
    assert f"--json {str(manifest)!r} is the input --data" in err
    assert report.read_text() == '{"mine": 1}' and manifest.read_text().count("\n") == len(WAVS)


def test_android_assets_never_replace_the_folder_their_model_is_in(tmp_path):
    from trillsson_tf.apps import android

    model = tmp_path / "assets" / "mine.tflite"
    model.parent.mkdir()
    model.write_bytes(b"the user's model")
    with pytest.raises(ParameterError, match=r"^Output directory '.*assets' holds the input --embedding-model"):
        android.build_android_assets(tmp_path / "assets", embedding_model=str(model), overwrite=True)
    assert model.read_bytes() == b"the user's model"


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    from trillsson_tf.folders import write_atomic, write_json

    path = tmp_path / "run.json"
    write_json(path, {"step": 1})
    assert json.loads(path.read_text()) == {"step": 1} and oct(path.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(TypeError):  # not JSON: the old record stays
        write_json(path, {"step": object()})
    assert json.loads(path.read_text()) == {"step": 1}

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, b"{}")
    assert json.loads(path.read_text()) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no partial file left behind
