"""MediaPipe Tasks runs our MediaPipe forms as the runtime does: cosine per window on real speech.

Builds an embedding student and Wav2Small (seeded random weights: parity does not depend on
training), converts each to the MediaPipe form (:func:`trillsson_tf.converters.tflite.convert` with
``mediapipe=True``: fixed ``[1, N]``, TFLite Model Metadata inside) in float32 and int8,
runs the embedding forms through MediaPipe's ``AudioEmbedder`` and the Wav2Small forms through
``AudioClassifier`` (``mediapipe==0.10.21`` in its own virtualenv, made when missing:
``mediapipe_tasks.py``), and compares every window's result with
:class:`trillsson_tf.runtime.TFLiteModel` on the same window (MediaPipe's windowing: non-overlapping
N-sample windows, the last zero-padded; :func:`trillsson_tf.apps.android.mediapipe_windows`).
Goal: cosine >= 0.999 per window in float32, >= 0.99 in int8, and one result per window.

    .venv/bin/python benchmarks/mediapipe_parity.py --out benchmarks/results/mediapipe.json
    .venv/bin/python benchmarks/mediapipe_parity.py --venv /path/to/venv --data /path/to/flac_folder

:func:`run` returns the report (a dict) for a devices script; the markdown goes beside the JSON.
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import mediapipe_tasks  # noqa: E402
from runtime_benchmark import pick_clips, speech_files  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "mediapipe.json")
GOALS = {"float32": 0.999, "int8": 0.99}
"""Lowest cosine per window accepted, per quantization."""
MODELS = {"embedding": ("embedder", "tiny_cnn"), "scores": ("classifier", "wav2small")}
"""Output -> (MediaPipe task, default student)."""


def _forms(students: dict, folder: str, calibration, fixed_samples) -> dict:
    """``{(output, quantize): path}`` of the MediaPipe forms, made by the converter."""
    from trillsson_tf.converters.tflite import convert

    paths = {}
    for output, model in students.items():
        for quantize in GOALS:
            path = os.path.join(folder, f"{model.name}_{quantize}_mediapipe.tflite")
            convert(
                model,
                path,
                quantize=quantize,
                mediapipe=True,
                fixed_samples=fixed_samples,
                representative_audio=calibration if quantize == "int8" else None,
            )
            paths[output, quantize] = path
    return paths


def reference_windows(model_path: str, clips: list) -> list:
    """float32 ``[windows, D]`` per clip: :class:`TFLiteModel` on each MediaPipe window of the clip."""
    from trillsson_tf.apps.android import mediapipe_windows
    from trillsson_tf.runtime import TFLiteModel, read_model_card

    model = TFLiteModel(model_path, num_threads=1)
    window = read_model_card(model_path)["inputs"][0]["shape"][-1]
    return [np.concatenate([model(row)["embedding"] for row in mediapipe_windows(clip, window)]) for clip in clips]


def run(
    *,
    out=DEFAULT_OUT,
    venv=mediapipe_tasks.DEFAULT_VENV,
    data=None,
    embedding_student="tiny_cnn",
    num_clips: int = 10,
    fixed_samples: int = 32000,
) -> dict:
    """Build, convert, run through MediaPipe and the runtime, compare; write ``out`` (JSON) and its ``.md``.

    Returns:
        The report: ``{'setup', 'clips', 'fixed_samples', 'rows': [{'model', 'task', 'quantize',
        'windows', 'mean_cosine', 'min_cosine', 'max_abs_diff', 'goal', 'met'}], 'met'}``.
    """
    from trillsson_tf import models
    from trillsson_tf._keras import keras
    from trillsson_tf.audio import load_audio
    from trillsson_tf.metrics import parity

    setup = mediapipe_tasks.ensure_venv(venv)
    clip_files, spare = pick_clips(speech_files(data), num_clips)
    clips = [load_audio(path) for path in clip_files]
    keras.utils.set_random_seed(0)
    students = {"embedding": models.build(embedding_student), "scores": models.build(MODELS["scores"][1])}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        forms = _forms(students, folder, spare[:32], fixed_samples)
        conversion_s = time.perf_counter() - start
        for (output, quantize), path in forms.items():
            task = MODELS[output][0]
            got = mediapipe_tasks.run_tasks(setup["python"], path, task, clips)
            expected = reference_windows(path, clips)
            counts_match = all(a.shape == b.shape for a, b in zip(got["outputs"], expected))
            scores = parity(np.concatenate(expected), np.concatenate(got["outputs"])) if counts_match else None
            rows.append(
                {
                    "model": students[output].name,
                    "output": output,
                    "task": task,
                    "quantize": quantize,
                    "file_bytes": os.path.getsize(path),
                    "windows": int(sum(len(e) for e in expected)),
                    "windows_match": counts_match,
                    **(
                        {key: scores[key] for key in ("mean_cosine", "min_cosine", "max_abs_diff", "reference_rms")}
                        if scores
                        else {}
                    ),
                    "goal": GOALS[quantize],
                    "met": bool(counts_match and scores["min_cosine"] >= GOALS[quantize]),
                }
            )
    durations = [len(clip) / mediapipe_tasks.SAMPLE_RATE_HZ for clip in clips]
    report = {
        "what": "MediaPipe Tasks (AudioEmbedder / AudioClassifier) vs trillsson_tf.runtime.TFLiteModel, per MediaPipe window",
        "setup": {key: setup[key] for key in ("mediapipe", "numpy", "created", "setup_s")},
        "clips": {
            "count": len(clips),
            "files": [os.path.basename(p) for p in clip_files],
            "total_s": sum(durations),
            "min_s": min(durations),
            "max_s": max(durations),
        },
        "fixed_samples": fixed_samples,
        "conversion_s": conversion_s,
        "weights": "seeded random (keras.utils.set_random_seed(0))",
        "rows": rows,
        "met": all(row["met"] for row in rows),
    }
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as handle:
            json.dump(report, handle, indent=2)
        with open(os.path.splitext(out)[0] + ".md", "w") as handle:
            handle.write(to_markdown(report))
    return report


def to_markdown(report: dict) -> str:
    clips = report["clips"]
    lines = [
        "# MediaPipe Tasks parity: our MediaPipe forms in MediaPipe vs the runtime, per window",
        "",
        f"mediapipe {report['setup']['mediapipe']} (numpy {report['setup']['numpy']}, own virtualenv); "
        f"{clips['count']} real LibriSpeech clips, {clips['total_s']:.1f} s ({clips['min_s']:.1f}-{clips['max_s']:.1f} s); "
        f"fixed input [1, {report['fixed_samples']}]; weights {report['weights']}.",
        "",
        "| model | MediaPipe task | quantize | windows (counts match) | mean cosine | min cosine | max abs diff | goal (min) | met |",
        "|---|---|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['model']} ({row['output']}) | {row['task']} | {row['quantize']} | {row['windows']} "
            f"({'yes' if row['windows_match'] else 'NO'}) | {row.get('mean_cosine', float('nan')):.6f} | "
            f"{row.get('min_cosine', float('nan')):.6f} | {row.get('max_abs_diff', float('nan')):.2e} | "
            f">= {row['goal']} | {'yes' if row['met'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON report (the markdown goes beside it)")
    parser.add_argument("--venv", default=mediapipe_tasks.DEFAULT_VENV, help="MediaPipe virtualenv (made if missing)")
    parser.add_argument(
        "--data", default=None, help="folder of real speech (.flac); default ../shared/data LibriSpeech"
    )
    parser.add_argument("--student", default="tiny_cnn", help="embedding student (registry name)")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--fixed-samples", type=int, default=32000)
    args = parser.parse_args(argv)
    report = run(
        out=args.out,
        venv=args.venv,
        data=args.data,
        embedding_student=args.student,
        num_clips=args.clips,
        fixed_samples=args.fixed_samples,
    )
    print(to_markdown(report))
    print(f"Wrote {args.out}")
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
