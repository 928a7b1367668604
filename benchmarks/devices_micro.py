"""TFLite Micro firmware on an emulated Cortex-M4 board (``mps2-an386`` in ``qemu-system-arm``).

Two int8 models made here (seeded random weights: agreement and sizes do not depend on training),
calibrated and fed with real speech from the bundled LibriSpeech clips:

* ``wav2small`` (the default, 73,464 parameters), the ``--micro`` form: int8 dB mel bands of 1 s in;
* ``tiny_cnn``, the patch-in int8 embedding network (``frontend=False``: log-mel patch in).

Each goes through :func:`trillsson_tf.converters.micro_project.write_micro_project` and
:func:`trillsson_tf.converters.micro_project.micro_build`: built with Debian's ``arm-none-eabi`` toolchain
against ``libtensorflow-microlite.a`` (built once, cached), run on the board, and its outputs
compared bit for bit with the host ``tflite-micro`` interpreter's. Records flash (text + rodata
+ the rest stored) and RAM (data + bss, and with the arena measured on the board) from the ELF,
and checks that a too-small arena makes the runner report the size it needs. Writes
``benchmarks/results/devices_micro.json``.

    .venv/bin/python benchmarks/devices_micro.py [--tflm PATH]     # make test-micro
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
SHARED_TFLM = os.path.join("..", "shared", "third_party", "tflite-micro-*.tar.xz")  # beside the checkout
ONE_SECOND = 16000
TOO_SMALL_ARENA = 2048  # bytes: far below either model's need


def _models(work: str) -> dict:
    """``{label: (tflite path, float input)}``: the two int8 models and one real-speech input each."""
    from trillsson_tf.converters import common, tflite
    from trillsson_tf import models
    from trillsson_tf._keras import keras
    from trillsson_tf.frontend import DEFAULT_FRONTEND, dft

    clips = common.parity_clips(num_clips=4, num_samples=2 * ONE_SECOND)
    made = {}
    keras.utils.set_random_seed(0)
    path = os.path.join(work, "wav2small_micro.tflite")
    tflite.convert(models.build("wav2small"), path, quantize="int8", frontend=False, representative_audio=clips)
    made["wav2small (--micro form)"] = (path, dft.features(dft.normalize_clips(clips[:1, :ONE_SECOND]))[0])
    keras.utils.set_random_seed(0)
    path = os.path.join(work, "tiny_cnn_int8_patch.tflite")
    tflite.convert(models.build("tiny_cnn"), path, quantize="int8", frontend=False, representative_audio=clips)
    made["tiny_cnn (int8, patch in)"] = (path, common.log_mel_patch_rows(clips[:1], DEFAULT_FRONTEND)[0])
    return made


def _checkouts() -> list:
    """This checkout and, for a git worktree, its main checkout (``../shared`` sits beside that one)."""
    found = [REPO]
    git = os.path.join(REPO, ".git")
    if os.path.isfile(git):  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        with open(git) as handle:
            found.append(os.path.normpath(os.path.join(handle.read().split(":", 1)[1].strip(), "..", "..", "..")))
    return found


def default_tflm():
    """``$TRILLSSON_TFLM``, else the tflite-micro tarball in ``../shared/third_party``, else ``None``."""
    from trillsson_tf.converters import micro_project

    candidates = sorted(path for checkout in _checkouts() for path in glob.glob(os.path.join(checkout, SHARED_TFLM)))
    return os.environ.get(micro_project.SOURCES_ENV) or next(iter(candidates), None)


def run_micro(tflm=None, out_json=None) -> dict:
    """Build and run both models on the board; the report (also written to ``devices_micro.json``)."""
    from trillsson_tf.converters import micro_project
    from trillsson_tf.errors import ParameterError

    micro_project.check_toolchain()
    tflm = tflm or default_tflm()
    start = time.perf_counter()
    library = micro_project.prepare_tflm(tflm, progress=True)
    report = {
        "board": micro_project.BOARD,
        "library": {"built_s": library["built_s"], "setup_s": time.perf_counter() - start},
        "models": {},
    }
    with tempfile.TemporaryDirectory() as work:
        for label, (path, features) in _models(work).items():
            project = os.path.join(work, os.path.basename(path).replace(".tflite", "_board"))
            record = micro_project.write_micro_project(path, project, name="model", input_values=features)
            built = micro_project.micro_build(project, tflm=tflm)
            sizes = built["sizes"]
            with open(os.path.join(project, "model_micro.json")) as handle:
                card = json.load(handle)["on_board"]  # micro_build puts the board's figures into the form's card
            report["models"][label] = {
                "model_bytes": record["micro"]["model_bytes"],
                "ops": record["micro"]["ops"],
                "text": sizes["text"],
                "rodata": sizes["rodata"],
                "data": sizes["data"],
                "bss": sizes["bss"],
                "flash_bytes": sizes["flash_bytes"],
                "ram_static_bytes": sizes["ram_bytes"],
                "arena_reserved_bytes": built["arena_bytes"],
                "arena_used_board_bytes": built["on_board"]["arena_used_bytes"],
                "arena_used_host_bytes": built["host"]["arena_used_bytes"],
                "ram_used_bytes": built["ram_used_bytes"],
                "bit_exact": built["bit_exact"],
                "max_abs_diff": built["max_abs_diff"],
                "outputs_board": built["on_board"]["outputs"][0],
                "build_s": built["build_s"],
                "run_s": built["on_board"]["run_s"],
                "card_on_board": card,
                "card_matches": card["flash_bytes"] == sizes["flash_bytes"]
                and card["arena_used_bytes"] == built["on_board"]["arena_used_bytes"],
            }
        # Bad input on the board: an arena far too small; the runner must say what it needs.
        label = "tiny_cnn (int8, patch in)"
        project = os.path.join(work, "too_small")
        micro_project.write_micro_project(
            path, project, name="model", input_values=features, arena_bytes=TOO_SMALL_ARENA
        )
        try:
            micro_project.micro_build(project, tflm=tflm)
            report["too_small_arena"] = {"refused": False}
        except ParameterError as error:
            report["too_small_arena"] = {"refused": True, "message": str(error)}
    rows = report["models"].values()
    report["passed"] = (
        all(row["bit_exact"] and row["card_matches"] for row in rows) and report["too_small_arena"]["refused"]
    )
    with open(out_json or os.path.join(RESULTS_DIR, "devices_micro.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflm", default=None, help="tflite-micro tarball or tree (default: ../shared/third_party)")
    parser.add_argument("--json", default=None, help="output file (default: benchmarks/results/devices_micro.json)")
    args = parser.parse_args()
    report = run_micro(args.tflm, args.json)
    for label, row in report["models"].items():
        print(
            f"{label}: flash {row['flash_bytes']:,} B (text {row['text']:,} + rodata {row['rodata']:,}), RAM "
            f"{row['ram_static_bytes']:,} B static, arena used on the board {row['arena_used_board_bytes']:,} B "
            f"(host {row['arena_used_host_bytes']:,}), bit-exact {row['bit_exact']}, run {row['run_s']:.1f} s"
        )
    print(f"too-small arena: {report['too_small_arena']}; passed: {report['passed']}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
