"""trillsson_tf.converters.micro_project without emulators: the project files, the resolver, the runner's output format and the refusals.

Building and running the firmware on the emulated board is ``make test-micro`` (benchmarks/devices_micro.py).
"""

import json
import os
import re
import shutil

import numpy as np
import pytest

from trillsson_tf.converters import common, micro, micro_project, tflite
from trillsson_tf import litert
from trillsson_tf.errors import ConversionError, ParameterError
from trillsson_tf.frontend import DEFAULT_FRONTEND


@pytest.fixture(scope="module")
def int8_patch_model(tiny_model, tmp_path_factory):
    """The tiny trillsson1 chunk network as a full-int8 .tflite (log-mel patch in)."""
    path = tmp_path_factory.mktemp("micro_project") / "tiny_int8.tflite"
    tflite.convert(
        tiny_model, path, quantize="int8", frontend=False, representative_audio=common.parity_clips(num_clips=4)
    )
    return path


def _model_ops(path) -> set:
    return {row["op"] for row in litert.op_table(open(path, "rb").read())}


def test_project_files_resolver_input_and_board_memory(int8_patch_model, tmp_path):
    patch = common.log_mel_patch_rows(common.parity_clips(num_clips=1), DEFAULT_FRONTEND)[0]
    out = tmp_path / "board"
    record = micro_project.write_micro_project(int8_patch_model, out, name="tiny", input_values=patch)
    assert sorted(os.listdir(out)) == sorted(
        [
            "Makefile",
            "micro_project.json",
            "tiny.cc",
            "tiny.h",
            "tiny.tflite",
            "tiny_board.ld",
            "tiny_input.cc",
            "tiny_input.npy",
            "tiny_micro.json",
            "tiny_op_resolver.h",
            "tiny_runner.cc",
            "tiny_startup.c",
        ]
    )
    assert json.loads((out / "micro_project.json").read_text()) == record
    # The resolver registers exactly the model's ops, and the runner sizes its resolver by their count.
    ops = _model_ops(int8_patch_model)
    registered = re.findall(r"resolver->(\w+)\(\)", (out / "tiny_op_resolver.h").read_text())
    assert sorted(registered) == sorted(micro.MICRO_OP_RESOLVER[op] for op in ops) and record["micro"]["ops"] == sorted(
        ops
    )
    runner = (out / "tiny_runner.cc").read_text()
    assert "MicroMutableOpResolver<kTinyOpCount>" in runner and "RegisterTinyOps(&resolver)" in runner
    assert f"constexpr size_t kArenaBytes = {record['micro']['arena_bytes']};" in runner
    assert "arena_used_bytes()" in runner and "${" not in runner
    # The input array holds the quantized patch, byte for byte the tensor the host interpreter gets.
    details = record["micro"]["input"]
    want = litert.quantize(patch, {"dtype": np.int8, "quantization": (details["scale"], details["zero_point"])})
    saved = np.load(out / "tiny_input.npy")
    np.testing.assert_array_equal(saved, want.reshape(details["shape"]))
    assert record["input_bytes"] == saved.size == len(re.findall(r"0x[0-9a-f]{2}", (out / "tiny_input.cc").read_text()))
    assert np.abs(saved).max() > 0
    # The board's memory map: vector table first in flash at 0, data in SSRAM2/3.
    script = (out / "tiny_board.ld").read_text()
    assert "ORIGIN = 0x00000000, LENGTH = 4194304" in script and "ORIGIN = 0x20000000, LENGTH = 4194304" in script
    assert "KEEP(*(.vectors))" in script.split(".text", 1)[1].split("}", 1)[0]
    makefile = (out / "Makefile").read_text()
    assert "-mcpu=cortex-m4" in makefile and "--specs=rdimon.specs" in makefile and "$(TFLM)" in makefile
    with pytest.raises(ParameterError, match="exist"):
        micro_project.write_micro_project(int8_patch_model, out, name="tiny")


def test_default_input_is_zeros_and_wrong_inputs_are_refused(int8_patch_model, tmp_path):
    record = micro_project.write_micro_project(int8_patch_model, tmp_path / "zeros", arena_bytes=4096)
    assert not np.load(tmp_path / "zeros" / "g_model_input.npy").any() and record["arena_bytes"] == 4096
    with pytest.raises(
        ParameterError, match=r"The input has 3 values; the model's input \[1, 195, 80, 1\] needs 15600"
    ):
        micro_project.write_micro_project(int8_patch_model, tmp_path / "short", input_values=np.zeros(3, np.float32))
    with pytest.raises(ParameterError, match="The input is int16; the model's input is int8"):
        micro_project.write_micro_project(int8_patch_model, tmp_path / "int16", input_values=np.zeros(15600, np.int16))


def test_a_model_with_ops_tflite_micro_lacks_is_refused_before_any_file(tiny_model, tmp_path):
    path = tmp_path / "fe.tflite"
    tflite.convert(tiny_model, path, quantize="float32")
    with pytest.raises(
        ConversionError, match=r"TFLite Micro lacks these ops of the model: \[.*'COMPLEX_ABS'.*'RFFT2D'"
    ):
        micro_project.write_micro_project(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_model_over_the_board_flash_or_ram_is_refused_with_both_figures(int8_patch_model, tmp_path, monkeypatch):
    size = os.path.getsize(int8_patch_model)
    monkeypatch.setitem(micro_project.BOARD, "flash_bytes", 10_000)
    with pytest.raises(
        ParameterError, match=rf"does not fit the mps2-an386 board: flash {size:,} bytes > the board's 10,000"
    ):
        micro_project.write_micro_project(int8_patch_model, tmp_path / "flash")
    monkeypatch.setitem(micro_project.BOARD, "flash_bytes", 4 << 20)
    monkeypatch.setitem(micro_project.BOARD, "ram_bytes", 100_000)
    with pytest.raises(
        ParameterError,
        match=r"arena [\d,]+ bytes \+ 65,536 stack\) does not fit .*: RAM [\d,]+ bytes > "
        r"the board's 100,000",
    ):
        micro_project.write_micro_project(int8_patch_model, tmp_path / "ram", arena_bytes=50_000)


@pytest.mark.parametrize(
    "tool, package", [("arm-none-eabi-g++", "gcc-arm-none-eabi"), ("qemu-system-arm", "qemu-system-arm")]
)
def test_a_missing_tool_is_named_with_its_debian_package(tool, package, monkeypatch):
    which = shutil.which
    monkeypatch.setattr(
        micro_project.shutil, "which", lambda name, *a, **k: None if name == tool else which(name, *a, **k)
    )
    if tool != "arm-none-eabi-g++" and which("arm-none-eabi-g++") is None:
        pytest.skip("the cross compiler is missing here: it is reported first")
    with pytest.raises(
        ParameterError, match=rf"^{re.escape(tool)} not found: install it with `apt-get install {package}`\.$"
    ):
        micro_project.check_toolchain()


def test_missing_newlib_is_named(monkeypatch, tmp_path):
    # A compiler that knows no rdimon.specs echoes the bare name back, as gcc does.
    fake = tmp_path / "arm-none-eabi-g++"
    fake.write_text('#!/bin/sh\necho "${1#-print-file-name=}"\n')
    fake.chmod(0o755)
    which = shutil.which
    monkeypatch.setattr(
        micro_project.shutil,
        "which",
        lambda name, *a, **k: str(fake) if name == "arm-none-eabi-g++" else which(name, *a, **k) or "/bin/true",
    )
    with pytest.raises(
        ParameterError, match=r"rdimon.specs for arm-none-eabi not found: .*apt-get install libnewlib-arm-none-eabi"
    ):
        micro_project.check_toolchain()


def test_cli_micro_build_reports_a_missing_toolchain_in_one_line(int8_patch_model, tmp_path, monkeypatch, capsys):
    from trillsson_tf.apps.cli import main

    which = shutil.which
    monkeypatch.setattr(
        micro_project.shutil,
        "which",
        lambda name, *a, **k: None
        if name == "qemu-system-arm" or name == "arm-none-eabi-g++"
        else which(name, *a, **k),
    )
    assert main(["micro-build", str(int8_patch_model), "--out", str(tmp_path / "p")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "trillsson-tf micro-build: error: arm-none-eabi-g++ not found: install it with "
        "`apt-get install gcc-arm-none-eabi`."
    )


def test_no_sources_and_not_a_project_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(micro_project, "check_toolchain", lambda: {})
    with pytest.raises(ParameterError, match="TFLite Micro sources not found"):
        micro_project.prepare_tflm(tmp_path / "nothing.tar.xz")
    with pytest.raises(ParameterError, match="is not a tflite-micro source tree"):
        micro_project.prepare_tflm(tmp_path)
    with pytest.raises(ParameterError, match="is not a micro project"):
        micro_project.micro_build(tmp_path)


def test_no_sources_given_reads_the_environment_or_says_what_to_set(tmp_path, monkeypatch):
    # No folder outside the package is a default: without a path, only $TRILLSSON_TFLM counts.
    monkeypatch.setattr(micro_project, "check_toolchain", lambda: {})
    monkeypatch.delenv(micro_project.SOURCES_ENV, raising=False)
    with pytest.raises(ParameterError, match=r"^No TFLite Micro sources: .*--tflm.* set \$TRILLSSON_TFLM"):
        micro_project.prepare_tflm()
    monkeypatch.setenv(micro_project.SOURCES_ENV, str(tmp_path))
    with pytest.raises(ParameterError, match="is not a tflite-micro source tree"):
        micro_project.prepare_tflm()


def test_runner_output_is_parsed_exactly():
    text = (
        "noise\ntrillsson: output 0 INT8 4: -128 0 5 127\n"
        f"trillsson: output 1 FLOAT32 8: {np.float32(0.1).view(np.uint32):08x} {np.float32(-2.5).view(np.uint32):08x}\n"
        "trillsson: arena_used_bytes 12345\n"
    )
    parsed = micro_project.parse_runner_output(text)
    np.testing.assert_array_equal(parsed["outputs"][0], np.array([-128, 0, 5, 127], np.int8))
    assert parsed["outputs"][1].dtype == np.float32 and parsed["outputs"][1].tolist() == [np.float32(0.1), -2.5]
    assert parsed["arena_used_bytes"] == 12345 and parsed["arena_needed_bytes"] is None
    small = micro_project.parse_runner_output("trillsson: arena too small: 2048 bytes given, 128036 bytes needed\n")
    assert small == {"outputs": [], "arena_used_bytes": None, "arena_needed_bytes": 128036}
