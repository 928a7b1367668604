"""The command line: each subcommand on real inputs, errors exit with status 2."""

import json
import os

import pytest

from trillsson_tf.apps import cli


def test_models_lists_params_size_and_flops(capsys):
    assert cli.main(["models", "trillsson1", "mobilenetv3small", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == ["trillsson1", "mobilenetv3small"]
    assert rows[0]["parameters"] == 5_007_160
    assert rows[0]["float32_mb"] == pytest.approx(20.03, abs=0.01)
    assert 0.1 < rows[0]["gflops_per_chunk"] < 10
    assert cli.main(["models", "trillsson1", "--no-flops"]) == 0
    table = capsys.readouterr().out
    assert "trillsson1" in table and "5,007,160" in table


def test_export_writes_a_savedmodel_and_refuses_to_overwrite(tmp_path, capsys):
    out = str(tmp_path / "mnv3")
    assert cli.main(["export", "mobilenetv3small", out, "--embedding-dim", "16"]) == 0
    assert os.path.isfile(os.path.join(out, "saved_model.pb"))
    assert cli.main(["export", "mobilenetv3small", out]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_unknown_model_is_a_clean_error(capsys):
    assert cli.main(["export", "resnet9000", "somewhere"]) == 2
    err = capsys.readouterr().err
    assert "Unknown student 'resnet9000'" in err and "Traceback" not in err


def test_emotion_flags_refuse_mismatches_cleanly(tmp_path, capsys):
    from trillsson_tf.audio import SAMPLE_AUDIO_DIR

    audio = os.path.join(SAMPLE_AUDIO_DIR, "librispeech")
    args = [
        "distill",
        "--teacher",
        "prosody",
        "--student",
        "wav2small",
        "--data",
        audio,
        "--out",
        str(tmp_path / "w2s"),
        "--outputs",
        "4",
        "--ccc-weight",
        "0.5",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert cli.main(args) == 2
    assert "outputs=4, but teacher 'prosody' gives 3 values" in capsys.readouterr().err
    assert cli.main(["evaluate", "--model", "prosody", "--data", audio, "--metric", "ccc"]) == 2
    assert "metric='ccc'" in capsys.readouterr().err
    assert cli.main(["models", "wav2small", "--json", "--no-flops"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["parameters"] == 73_464


def _embed_with_flags(tmp_path, capsys, *flags, after=()):
    """Run ``embed`` on the committed Android model, one speech clip and one silent clip; stderr."""
    import numpy as np
    import soundfile

    assets = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "android_demo_assets")
    silent = str(tmp_path / "silent.wav")
    soundfile.write(silent, np.zeros(16000, np.float32), 16000)
    argv = [
        *flags,
        "embed",
        os.path.join(assets, "embedding_int8.tflite"),
        os.path.join(assets, "sample_16k.wav"),
        silent,
        "--out",
        str(tmp_path / "e.npy"),
        "--force",
        "--no-progress",
        *after,
    ]
    assert cli.main(argv) == 0
    return capsys.readouterr().err


def test_verbosity_flags_set_what_the_toolkit_logs(tmp_path, capsys):
    import logging

    silent_warning = "WARNING trillsson_tf.runtime: Audio clip(s) [0] are silent (all zeros)."  # one clip a call
    err = _embed_with_flags(tmp_path, capsys)
    assert silent_warning in err and "INFO trillsson_tf" not in err
    err = _embed_with_flags(tmp_path, capsys, "-v")
    # One handler however often main() runs: no line twice, and the loggers are left as they were.
    assert err.count(silent_warning) == 1 and "INFO trillsson_tf.runtime: Wrote 2 embeddings (96-d)" in err
    assert (
        logging.getLogger("trillsson_tf").handlers == [] and logging.getLogger("trillsson_tf").level == logging.NOTSET
    )
    err = _embed_with_flags(tmp_path, capsys, after=["--verbose"])  # after the subcommand too
    assert "INFO trillsson_tf.runtime: Wrote 2 embeddings" in err
    err = _embed_with_flags(tmp_path, capsys, "-q")
    assert "trillsson_tf" not in err
    levels = {
        flags: cli._log_level(cli.build_parser("embed").parse_args([*flags, "embed", "m.tflite", "a.wav"]))
        for flags in [(), ("-q",), ("-v",), ("-vv",), ("-v", "-v", "-v")]
    }
    assert levels == {
        (): logging.WARNING,
        ("-q",): logging.ERROR,
        ("-v",): logging.INFO,
        ("-vv",): logging.DEBUG,
        ("-v", "-v", "-v"): logging.DEBUG,
    }


def test_verbose_and_quiet_together_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["-v", "-q", "models"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
