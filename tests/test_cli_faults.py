"""Faults a user hits at the command line (issue 39 items 8, 9, 11): a bad file is named and
skipped, every other fault is one line ``trillsson-tf <command>: error: ...`` naming the file it
concerns (exit 2; Ctrl-C exit 130, the run stays resumable), and no TensorFlow logs without ``-v``."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile

from trillsson_tf import runtime
from trillsson_tf.apps import cli
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.errors import ParameterError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANDROID_MODEL = os.path.join(ROOT, "android_demo_assets", "embedding_int8.tflite")
FSDD = os.path.join(SAMPLE_AUDIO_DIR, "fsdd")
# Two digits, each with a test take (0) and a training take (5): a digit probe on the official split.
GOOD = ("0_george_0.wav", "0_george_5.wav", "1_george_0.wav", "1_george_5.wav")


def _error_line(capsys, command: str) -> str:
    """The one error line of ``command`` on stderr (and no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"trillsson-tf {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _write_bad_wavs(folder) -> dict:
    """A NaN WAV, an Inf WAV (float32, as soundfile writes them) and a WAV that is not audio; their paths."""
    nan, inf = np.zeros(16000, np.float32), np.zeros(16000, np.float32)
    nan[100], inf[5] = np.nan, -np.inf
    paths = {name: str(folder / f"{name}.wav") for name in ("nan", "inf", "junk")}
    soundfile.write(paths["nan"], nan, 16000, subtype="FLOAT")
    soundfile.write(paths["inf"], inf, 16000, subtype="FLOAT")
    with open(paths["junk"], "wb") as handle:
        handle.write(b"RIFF1234WAVEjunk, not audio")
    return paths


@pytest.fixture
def mixed_folder(tmp_path):
    """Four good FSDD files and three bad ones."""
    folder = tmp_path / "audio"
    folder.mkdir()
    for name in GOOD:
        shutil.copy(os.path.join(FSDD, name), folder / name)
    return folder, _write_bad_wavs(folder)


# -- item 8: one bad file never stops a batch job ----------------------------------------------------


def test_load_audio_names_nan_inf_and_undecodable_files_with_a_reason(tmp_path):
    bad = _write_bad_wavs(tmp_path)
    for name in ("nan", "inf"):
        with pytest.raises(ParameterError, match=rf"{re.escape(bad[name])}.*NaN or Inf"):
            load_audio(bad[name])
    with pytest.raises(ParameterError) as error:
        load_audio(bad["junk"])
    reason = str(error.value).split("as audio:", 1)[1].strip()
    assert "junk.wav" in str(error.value) and reason, "the reason after 'as audio:' is empty"


def test_embed_skips_nan_inf_and_undecodable_files_by_name(mixed_folder, tmp_path, capsys):
    folder, bad = mixed_folder
    out = tmp_path / "e.npy"
    assert cli.main(["embed", ANDROID_MODEL, str(folder), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "Skipped 3 unreadable file(s)" in captured.out and all(path in captured.out for path in bad.values())
    assert "Embedded 4 files" in captured.out
    assert np.load(out).shape[0] == 4 and len((tmp_path / "e.files.txt").read_text().split()) == 4
    assert "NaN or Inf" in captured.err and not re.search(r"as audio: *$", captured.err, re.M)


def test_evaluate_skips_nan_and_inf_files_by_name(mixed_folder, capsys):
    folder, bad = mixed_folder
    assert (
        cli.main(["evaluate", "--model", "mfcc", "--data", str(folder), "--tasks", "digit", "--no-verification"]) == 0
    )
    out = capsys.readouterr().out
    assert "Skipped 3 unreadable file(s)" in out and all(path in out for path in bad.values())


@pytest.mark.slow
def test_distill_skips_a_nan_file_by_name(mixed_folder, tmp_path, capsys):
    folder, bad = mixed_folder
    argv = [
        "distill",
        "--data",
        str(folder),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "1",
        "--validation-fraction",
        "0",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Skipped 3 unreadable file(s)" in out and all(path in out for path in bad.values())


# -- item 9: one line instead of a traceback ----------------------------------------------------------


def test_evaluate_on_training_takes_only_is_refused_in_one_line(tmp_path, capsys):
    folder = tmp_path / "train_takes"
    folder.mkdir()
    for name in ("0_george_5.wav", "0_george_6.wav", "1_george_5.wav", "1_george_6.wav"):
        shutil.copy(os.path.join(FSDD, name), folder / name)
    assert cli.main(["evaluate", "--model", "mfcc", "--teacher", "mfcc", "--data", str(folder)]) == 2
    line = _error_line(capsys, "evaluate")
    assert str(folder) in line and "takes 0-4" in line


def test_a_manifest_that_is_not_utf8_is_named(tmp_path, capsys):
    manifest = tmp_path / "latin1.csv"
    manifest.write_bytes("path,label\nélan.wav,a\n".encode("latin-1"))
    assert cli.main(["evaluate", "--model", "mfcc", "--data", str(manifest)]) == 2
    assert str(manifest) in _error_line(capsys, "evaluate")


def test_embed_into_an_unwritable_place_fails_before_any_work(tmp_path, capsys, monkeypatch):
    in_the_way = tmp_path / "results"
    in_the_way.write_text("a file where the output folder should be\n")
    embedded = []
    monkeypatch.setattr(runtime.TFLiteModel, "embed_file", lambda self, path: embedded.append(path))
    argv = ["embed", ANDROID_MODEL, os.path.join(FSDD, GOOD[0]), "--out", str(in_the_way / "e.npy"), "--no-progress"]
    assert cli.main(argv) == 2
    assert str(in_the_way / "e.npy") in _error_line(capsys, "embed") and embedded == []


def test_export_onto_an_existing_file_is_refused_in_one_line(tmp_path, capsys):
    target = tmp_path / "model"
    target.write_text("keep me\n")
    for force in ([], ["--force"]):
        assert cli.main(["export", "tiny_cnn", str(target), *force]) == 2
        assert str(target) in _error_line(capsys, "export")
    assert target.read_text() == "keep me\n"


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export") / "tiny_cnn")
    assert cli.main(["export", "tiny_cnn", out]) == 0
    return out


def test_an_export_with_damaged_variables_is_refused_in_one_line(tiny_export, mixed_folder, tmp_path, capsys):
    data = str(mixed_folder[0])
    for damage in ("truncate", "flip"):
        export = str(tmp_path / damage)
        shutil.copytree(tiny_export, export)
        variables = os.path.join(export, "variables", "variables.data-00000-of-00001")
        content = bytearray(open(variables, "rb").read())
        if damage == "truncate":
            content = content[:1000]
        else:
            content[100::97] = bytes(value ^ 0xFF for value in content[100::97])
        with open(variables, "wb") as handle:
            handle.write(bytes(content))
        assert cli.main(["evaluate", "--model", export, "--data", data]) == 2
        assert export in _error_line(capsys, "evaluate")


def test_absurd_sample_rates_are_refused():
    model = runtime.TFLiteModel(ANDROID_MODEL)
    with pytest.raises(ParameterError, match="above 768,000 Hz"):
        model(np.zeros(1000, np.float32), sample_rate=10**9)


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MB tmpfs, filled up (root only; skipped elsewhere)."""
    mount = tmp_path / "full"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr.decode().strip()}")
    try:
        with open(mount / "filler", "wb") as handle:
            handle.write(b"\0" * (1 << 20))
    except OSError:
        pass  # full: what the test needs
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_naming_the_output(full_disk, tmp_path, capsys, tiny_export):
    wav = os.path.join(FSDD, GOOD[0])
    assert cli.main(["embed", ANDROID_MODEL, wav, "--out", str(full_disk / "e.npy"), "--no-progress"]) == 2
    line = _error_line(capsys, "embed")
    assert "No space left on device" in line and str(full_disk / "e.npy") in line
    assert not (full_disk / "e.npy").exists()  # written whole or not at all: no 0-byte file
    assert cli.main(["export", "tiny_cnn", str(full_disk / "export")]) == 2
    line = _error_line(capsys, "export")
    assert "No space left on device" in line and str(full_disk / "export") in line
    assert cli.main(["convert", tiny_export, "--out", str(full_disk / "m.tflite")]) == 2
    line = _error_line(capsys, "convert")
    assert "No space left on device" in line and str(full_disk / "m.tflite") in line
    argv = [
        "distill",
        "--data",
        FSDD,
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "1",
        "--cache-dir",
        str(full_disk / "cache"),
    ]
    assert cli.main(argv) == 2
    line = _error_line(capsys, "distill")
    assert "No space left on device" in line and str(full_disk / "cache") in line


# -- item 9: Ctrl-C -----------------------------------------------------------------------------------


def _distill_command(data, out, cache, *extra):
    return [
        sys.executable,
        "-m",
        "trillsson_tf.apps.cli",
        "distill",
        "--data",
        str(data),
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--steps",
        "60",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "2",
        "--validation-fraction",
        "0",
        *extra,
    ]


@pytest.mark.slow
def test_ctrl_c_exits_130_in_one_line_and_the_run_resumes(tmp_path):
    data = tmp_path / "audio"
    data.mkdir()
    for name in GOOD:
        shutil.copy(os.path.join(FSDD, name), data / name)
    run, cache = tmp_path / "run", tmp_path / "cache"
    process = subprocess.Popen(
        _distill_command(data, run, cache), cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    err = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: process.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    # Interrupt once a checkpoint is written (step 2) and a few steps ran past it.
    while not re.search(r"distill tiny_cnn:.*?\b([4-9]|\d\d)/60", "".join(err)):
        assert process.poll() is None and time.monotonic() < deadline, "".join(err)
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    reader.join(timeout=10)
    text = "".join(err)
    lines = [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]
    assert (
        "Traceback" not in text
        and lines[-1] == "trillsson-tf distill: error: interrupted; rerun with --resume to continue"
    )
    resumed = subprocess.run(
        _distill_command(data, run, cache, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "in 60 steps" in resumed.stdout


# -- item 11: start-up -------------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_help_and_tensorflow_free_commands_never_import_tensorflow():
    done = _python(
        "import sys\n"
        "from trillsson_tf.apps.cli import main\n"
        "for argv in (['--help'], ['embed', '--help'], ['micro-build', '--help'], ['--version']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow imported'\n"
    )
    assert done.returncode == 0, done.stderr
    assert "distill" in done.stdout


def test_a_tensorflow_command_prints_only_its_error_line_without_verbose(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "trillsson_tf.apps.cli", "export", "resnet9000", str(tmp_path / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        line for line in done.stderr.splitlines() if line.startswith("trillsson-tf export: error:")
    ]
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_refusals_name_the_command_line_options(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine\n")
    assert cli.main(["distill", "--data", FSDD, "--out", str(run), "--cache-dir", str(tmp_path / "cache")]) == 2
    line = _error_line(capsys, "distill")
    assert "--resume" in line and "--force" in line and "=True" not in line
    # Library messages in either order of keyword and flag read as the flag alone.
    assert cli._cli_text("rerun with --force (overwrite=True) to start over.") == "rerun with --force to start over."
