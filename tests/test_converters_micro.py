"""trillsson_tf.converters.micro: C array + resolver that compile, arena measured in the tflite-micro interpreter."""

import shutil
import subprocess

import numpy as np
import pytest

from trillsson_tf.converters import common, micro, tflite
from trillsson_tf.errors import ConversionError, ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


@pytest.fixture(scope="module")
def int8_patch_model(tiny_model, tmp_path_factory):
    """The tiny trillsson1 chunk network as a full-int8 .tflite (log-mel patch in)."""
    path = tmp_path_factory.mktemp("micro") / "tiny_int8.tflite"
    tflite.convert(
        tiny_model, path, quantize="int8", frontend=False, representative_audio=common.parity_clips(num_clips=4)
    )
    return path


def test_micro_files_compile_and_the_model_runs_in_tflm(int8_patch_model, tmp_path):
    report = micro.to_micro(int8_patch_model, tmp_path / "out", name="tiny_model")
    files = report["files"]
    source = open(files["source"]).read()
    assert 'extern "C" alignas(16) const unsigned char tiny_model[]' in source
    assert f"tiny_model_len = {report['model_bytes']};" in source
    subprocess.run(["g++", "-std=c++17", "-c", files["source"], "-o", str(tmp_path / "model.o")], check=True)
    resolver = open(files["resolver"]).read()
    assert "resolver->AddConv2D()" in resolver and "resolver->AddFullyConnected()" in resolver
    assert report["arena_used_bytes"] > 0 and report["arena_bytes"] >= report["arena_used_bytes"]

    content = open(int8_patch_model, "rb").read()
    details = report["input"]
    patches = common.log_mel_patch_rows(common.parity_clips(num_clips=2), DEFAULT_FRONTEND)
    quantized = np.clip(np.round(patches / details["scale"]) + details["zero_point"], -128, 127).astype(np.int8)
    on_micro = micro.micro_run(content, quantized, arena_bytes=report["arena_bytes"])
    out = report["output"]
    got = (on_micro.astype(np.float32) - out["zero_point"]) * out["scale"]
    want = tflite.tflite_embeddings(content, patches)
    assert np.abs(want).mean() > 0.05
    np.testing.assert_allclose(got, want, atol=2 * out["scale"])  # LiteRT and TFLM int8 kernels agree
    with pytest.raises(ParameterError, match="exist"):
        micro.to_micro(int8_patch_model, tmp_path / "out", name="tiny_model")


def test_the_resolver_header_compiles_against_a_stub_resolver(int8_patch_model, tmp_path):
    report = micro.to_micro(int8_patch_model, tmp_path, name="m")
    stub = tmp_path / "tensorflow" / "lite" / "micro"
    stub.mkdir(parents=True)
    methods = "\n".join(f"  TfLiteStatus {name}() {{ return kTfLiteOk; }}" for name in micro.MICRO_OP_RESOLVER.values())
    (stub / "micro_mutable_op_resolver.h").write_text(
        "enum TfLiteStatus { kTfLiteOk, kTfLiteError };\nnamespace tflite {\n"
        f"template <unsigned N> struct MicroMutableOpResolver {{\n{methods}\n}};\n}}\n"
    )
    (tmp_path / "main.cc").write_text(
        '#include "m.h"\n#include "m_op_resolver.h"\nint main() {\n'
        "  tflite::MicroMutableOpResolver<kMOpCount> resolver;\n"
        "  return RegisterMOps(&resolver) == kTfLiteOk && m_len > 0 && kMArenaBytes > 0 ? 0 : 1;\n}\n"
    )
    binary = tmp_path / "main"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-I",
            str(tmp_path),
            str(tmp_path / "main.cc"),
            report["files"]["source"],
            "-o",
            str(binary),
        ],
        check=True,
    )
    assert subprocess.run([str(binary)]).returncode == 0


def test_a_model_with_the_frontend_inside_is_refused_with_its_ops(tiny_model, tmp_path):
    path = tmp_path / "fe.tflite"
    tflite.convert(tiny_model, path, quantize="float32")
    with pytest.raises(
        ConversionError, match=r"TFLite Micro lacks these ops of the model: \[.*'COMPLEX_ABS'.*'RFFT2D'"
    ):
        micro.to_micro(path, tmp_path / "out")


def test_bad_name_is_refused(int8_patch_model, tmp_path):
    with pytest.raises(ParameterError, match="C identifier"):
        micro.to_micro(int8_patch_model, tmp_path, name="1-model")


def test_cli_convert_int8_micro_and_refusals(tiny_model, tmp_path, capsys):
    from trillsson_tf.apps.cli import main
    from trillsson_tf.models.export import export_savedmodel

    export = str(export_savedmodel(tiny_model, tmp_path / "export"))
    not_ours = str(tmp_path.parent)  # a folder without model.keras
    out = str(tmp_path / "micro" / "t1.tflite")
    assert main(["convert", export, "--quantize", "int8", "--out", out]) == 2
    assert "needs representative audio" in capsys.readouterr().err
    from trillsson_tf.audio import SAMPLE_AUDIO_DIR

    audio = f"{SAMPLE_AUDIO_DIR}/librispeech"
    assert (
        main(["convert", export, "--quantize", "int8", "--no-frontend", "--micro", "--data", audio, "--out", out]) == 0
    )
    printed = capsys.readouterr().out
    assert "mean cosine" in printed and "TFLite Micro" in printed
    assert main(["convert", export, "--quantize", "int8", "--no-frontend", "--data", audio, "--out", out]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["convert", not_ours, "--out", str(tmp_path / "x.tflite")]) == 2
