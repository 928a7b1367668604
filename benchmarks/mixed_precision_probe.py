"""Which students train in mixed float16: the probe ``distill --mixed-precision`` runs, on every student.

For each registry student (seeded weights: the probe runs before any step, on the weights the
run starts from), :func:`trillsson_tf.train.engine.check_float16` builds it under the
``mixed_float16`` policy and in float32 with the same weights and compares their outputs on
2 s crops of real LibriSpeech speech from ``../shared/data``. Below
:data:`trillsson_tf.train.engine.FLOAT16_TOLERANCE` (relative) the student trains in float16;
above it ``distill`` refuses (``--mixed-precision``) or falls back to float32 (automatic mode),
naming the first layer off. float16 rounding is the same on CPU and GPU (IEEE binary16), so
the probe is meaningful on this machine; cuDNN kernels may round differently in the last bits.

    .venv/bin/python benchmarks/mixed_precision_probe.py                       # every student
    .venv/bin/python benchmarks/mixed_precision_probe.py --students tiny_cnn mobilenetv3small

Writes ``benchmarks/results/mixed_precision_probe.{json,md}`` and prints the markdown.
"""

import argparse
import glob
import json
import os
import re
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
DATA = os.path.join(HERE, "..", "..", "shared", "data", "librispeech_test_other_10spk")


def speech_crops(count: int, samples: int = 32000) -> np.ndarray:
    """float32 ``[count, samples]``: the first ``samples`` of ``count`` LibriSpeech files."""
    from trillsson_tf.audio import load_audio

    files = sorted(glob.glob(os.path.join(DATA, "**", "*.flac"), recursive=True))
    if len(files) < count:
        raise SystemExit(f"Need {count} .flac files under {DATA}, found {len(files)}.")
    return np.stack([load_audio(path)[:samples] for path in files[:: len(files) // count][:count]])


def probe(name: str, audio: np.ndarray, seed: int = 0) -> dict:
    """``{'student', 'error', 'trains_in_float16', 'refusal'}`` for one registry student."""
    from trillsson_tf import models
    from trillsson_tf._keras import keras
    from trillsson_tf.errors import ParameterError
    from trillsson_tf.train.engine import FLOAT16_TOLERANCE, check_float16

    began = time.perf_counter()
    keras.utils.set_random_seed(seed)
    try:
        error, refusal = check_float16(lambda: models.build(name), audio, tolerance=float("inf")), None
    except ParameterError as raised:  # not finite, or a layer that does not build in float16
        error, refusal = float("nan"), str(raised)
    if error > FLOAT16_TOLERANCE:  # the same weights again, for the refusal that names the layer
        keras.utils.set_random_seed(seed)
        try:
            check_float16(lambda: models.build(name), audio)
        except ParameterError as raised:
            refusal = str(raised)
    keras.backend.clear_session()
    return {
        "student": name,
        "error": error,
        "trains_in_float16": refusal is None,
        "refusal": refusal,
        "seconds": time.perf_counter() - began,
    }


def to_markdown(report: dict) -> str:
    lines = [
        "# Mixed float16: which students pass the probe",
        "",
        f"`check_float16` on {report['clips']} real 2 s LibriSpeech crops, seeded weights, tolerance "
        f"{report['tolerance']} (relative max abs error of the output), {report['date']}.",
        "",
        "| student | relative error | trains in float16 | first layer off |",
        "|---|---:|:---:|---|",
    ]
    for row in report["rows"]:
        found = re.search(r"first at layer '([^']+)'", row["refusal"] or "")
        layer = found.group(1) if found else (row["refusal"] or "-")
        lines.append(
            f"| {row['student']} | {row['error']:.4f} | {'yes' if row['trains_in_float16'] else 'no'} | {layer} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    from trillsson_tf import models
    from trillsson_tf.train.engine import FLOAT16_TOLERANCE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", nargs="+", default=list(models.available()))
    parser.add_argument("--clips", type=int, default=4)
    args = parser.parse_args(argv)
    audio = speech_crops(args.clips)
    rows = []
    for name in args.students:
        rows.append(probe(name, audio))
        print(rows[-1]["student"], f"{rows[-1]['error']:.4f}", rows[-1]["trains_in_float16"], flush=True)
    report = {"date": time.strftime("%Y-%m-%d"), "clips": args.clips, "tolerance": FLOAT16_TOLERANCE, "rows": rows}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "mixed_precision_probe.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    markdown = to_markdown(report)
    with open(os.path.join(RESULTS, "mixed_precision_probe.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
