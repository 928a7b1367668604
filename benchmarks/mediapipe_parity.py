"""MediaPipe Tasks runs our MediaPipe forms as the runtime does: cosine per window on real speech.

Builds an embedding student and Wav2Small (seeded random weights: parity does not depend on
training), converts each to the MediaPipe form (:func:`trillsson_tf.converters.tflite.convert` with
``mediapipe=True``: fixed ``[1, N]``, TFLite Model Metadata inside) in float32 and int8, runs them
through MediaPipe Tasks, each release in its own virtualenv (made when missing: ``mediapipe_tasks.py``):

* the current release (``mediapipe==1.2.3``): the Wav2Small forms through ``AudioClassifier``, in
  clip mode and in stream mode (20 ms blocks);
* ``mediapipe==0.10.21``, for that version only: the embedding forms through ``AudioEmbedder``
  (removed from MediaPipe in 0.10.32) and the Wav2Small forms through ``AudioClassifier``;

and compares every window's result with :class:`trillsson_tf.runtime.TFLiteModel` on the same
window (MediaPipe's windowing: non-overlapping N-sample windows, the last zero-padded;
:func:`trillsson_tf.apps.android.mediapipe_windows`). Goal: cosine >= 0.999 per window in
float32, >= 0.99 in int8, and one result per window.

    .venv/bin/python benchmarks/mediapipe_parity.py --out benchmarks/results/mediapipe.json
    .venv/bin/python benchmarks/mediapipe_parity.py --mediapipe 1.2.3 --data /path/to/flac_folder

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
CHECKS = {
    mediapipe_tasks.CURRENT: (("scores", "clips"), ("scores", "stream")),
    mediapipe_tasks.LEGACY: (("embedding", "clips"), ("scores", "clips")),
}
"""MediaPipe version -> the (output, running mode) pairs checked there."""


def convert_forms(students: dict, folder: str, calibration, fixed_samples) -> dict:
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


def build_students(embedding_student: str = "tiny_cnn") -> dict:
    """``{'embedding': model, 'scores': Wav2Small}`` with seeded random weights (``keras.utils.set_random_seed(0)``)."""
    from trillsson_tf import models
    from trillsson_tf._keras import keras

    keras.utils.set_random_seed(0)
    return {"embedding": models.build(embedding_student), "scores": models.build(MODELS["scores"][1])}


def reference_windows(model_path: str, clips: list) -> list:
    """float32 ``[windows, D]`` per clip: :class:`TFLiteModel` on each MediaPipe window of the clip."""
    from trillsson_tf.apps.android import mediapipe_windows
    from trillsson_tf.runtime import TFLiteModel, read_model_card

    model = TFLiteModel(model_path, num_threads=1)
    window = read_model_card(model_path)["inputs"][0]["shape"][-1]
    return [np.concatenate([model(row)["embedding"] for row in mediapipe_windows(clip, window)]) for clip in clips]


def compare_windows(expected: list, got: list, quantize: str) -> dict:
    """Window counts and cosine per window of ``got`` against ``expected`` (lists of ``[windows, D]``, one per clip)."""
    from trillsson_tf.metrics import parity

    counts_match = len(expected) == len(got) and all(np.shape(a) == np.shape(b) for a, b in zip(expected, got))
    scores = parity(np.concatenate(expected), np.concatenate(got)) if counts_match else None
    return {
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


def _stream_timestamps_ok(timestamps: list, window_samples: int) -> bool:
    """Stream mode: window i is stamped at its start (i N / 16 ms); the flushed tail may carry the stream's end stamp."""
    for clip in timestamps:
        starts = [i * window_samples * 1000 // mediapipe_tasks.SAMPLE_RATE_HZ for i in range(len(clip))]
        if any(t != s for t, s in zip(clip[:-1], starts[:-1])) or (clip and clip[-1] < starts[-1]):
            return False
    return True


def run(
    *,
    out=DEFAULT_OUT,
    versions=tuple(CHECKS),
    venvs=None,
    data=None,
    embedding_student="tiny_cnn",
    num_clips: int = 10,
    fixed_samples: int = 32000,
) -> dict:
    """Build, convert, run through MediaPipe and the runtime, compare; write ``out`` (JSON) and its ``.md``.

    Args:
        versions: MediaPipe versions to check (keys of :data:`CHECKS`).
        venvs: Version -> virtualenv folder (``None`` or missing: the default of ``mediapipe_tasks.SETUPS``).

    Returns:
        The report: ``{'setups', 'clips', 'fixed_samples', 'rows': [{'mediapipe', 'model', 'task',
        'mode', 'quantize', 'windows', 'mean_cosine', 'min_cosine', 'max_abs_diff', 'goal', 'met'}], 'met'}``.
    """
    from trillsson_tf.audio import load_audio

    unknown = sorted(set(versions) - set(CHECKS))
    if unknown:
        raise ValueError(f"Unknown MediaPipe version(s) {unknown}. Expected some of: {list(CHECKS)}.")
    setups = {version: mediapipe_tasks.ensure_venv((venvs or {}).get(version), version) for version in versions}
    clip_files, spare = pick_clips(speech_files(data), num_clips)
    clips = [load_audio(path) for path in clip_files]
    students = build_students(embedding_student)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        forms = convert_forms(students, folder, spare[:32], fixed_samples)
        conversion_s = time.perf_counter() - start
        expected = {key: reference_windows(path, clips) for key, path in forms.items()}
        for version in versions:
            for output, mode in CHECKS[version]:
                task = MODELS[output][0]
                for quantize in GOALS:
                    path = forms[output, quantize]
                    got = mediapipe_tasks.run_tasks(setups[version]["python"], path, task, clips, mode=mode)
                    row = {
                        "mediapipe": setups[version]["mediapipe"],
                        "model": students[output].name,
                        "output": output,
                        "task": task,
                        "mode": mode,
                        "quantize": quantize,
                        "file_bytes": os.path.getsize(path),
                        **compare_windows(expected[output, quantize], got["outputs"], quantize),
                    }
                    if mode == "stream":
                        row["block_samples"] = mediapipe_tasks.STREAM_BLOCK_SAMPLES
                        row["timestamps_ok"] = _stream_timestamps_ok(got["timestamps_ms"], fixed_samples)
                        row["met"] = row["met"] and row["timestamps_ok"]
                    rows.append(row)
    durations = [len(clip) / mediapipe_tasks.SAMPLE_RATE_HZ for clip in clips]
    report = {
        "what": "MediaPipe Tasks (AudioClassifier; AudioEmbedder in 0.10.21 only) vs trillsson_tf.runtime.TFLiteModel, "
        "per MediaPipe window",
        "setups": {
            version: {key: setup[key] for key in ("mediapipe", "numpy", "created", "setup_s")}
            for version, setup in setups.items()
        },
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
    setups = "; ".join(
        f"mediapipe {setup['mediapipe']} (numpy {setup['numpy']})" for setup in report["setups"].values()
    )
    lines = [
        "# MediaPipe Tasks parity: our MediaPipe forms in MediaPipe vs the runtime, per window",
        "",
        f"{setups}, each in its own virtualenv; {clips['count']} real LibriSpeech clips, {clips['total_s']:.1f} s "
        f"({clips['min_s']:.1f}-{clips['max_s']:.1f} s); fixed input [1, {report['fixed_samples']}]; "
        f"weights {report['weights']}. Stream mode: 20 ms blocks, one task per clip, closed at the end (which "
        "flushes the zero-padded tail window). `AudioEmbedder` rows hold for mediapipe 0.10.21 only: MediaPipe "
        "removed the TFLite embedder in 0.10.32 (1.2.x's `AudioEmbedder` takes `.litertlm` models only).",
        "",
        "| MediaPipe | model | task | mode | quantize | windows (counts match) | mean cosine | min cosine "
        "| max abs diff | goal (min) | met |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['mediapipe']} | {row['model']} ({row['output']}) | {row['task']} | {row['mode']} | "
            f"{row['quantize']} | {row['windows']} ({'yes' if row['windows_match'] else 'NO'}) | "
            f"{row.get('mean_cosine', float('nan')):.6f} | {row.get('min_cosine', float('nan')):.6f} | "
            f"{row.get('max_abs_diff', float('nan')):.2e} | >= {row['goal']} | {'yes' if row['met'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON report (the markdown goes beside it)")
    parser.add_argument(
        "--mediapipe", nargs="+", default=list(CHECKS), choices=list(CHECKS), help="MediaPipe versions to check"
    )
    parser.add_argument("--venv", default=None, help="virtualenv of the current MediaPipe (made if missing)")
    parser.add_argument("--legacy-venv", default=None, help="virtualenv of MediaPipe 0.10.21 (made if missing)")
    parser.add_argument(
        "--data", default=None, help="folder of real speech (.flac); default ../shared/data LibriSpeech"
    )
    parser.add_argument("--student", default="tiny_cnn", help="embedding student (registry name)")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--fixed-samples", type=int, default=32000)
    args = parser.parse_args(argv)
    report = run(
        out=args.out,
        versions=tuple(args.mediapipe),
        venvs={mediapipe_tasks.CURRENT: args.venv, mediapipe_tasks.LEGACY: args.legacy_venv},
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
