"""MobileNet score students side by side: CCC against the prosody teacher at the same number of steps.

Distills ``mobilenetv3small_adv`` and ``mobilenetv4convsmall`` with the emotion benchmark's data
split, teacher and recipe (MSE + 0.5 x (1 - CCC), batch 16, lr 3e-3; ``emotion_benchmark.py``),
and scores each on the 320 held-out files twice: as trained, and after the emotion benchmark's
re-estimation of the BatchNorm moving statistics (``emotion_benchmark._recalibrate_batchnorm``).
It is the check of the ``mobilenetv3small_adv`` fix (near-constant scores from Keras
MobileNetV3's BatchNorm momentum 0.999 and its pixel rescaling, :mod:`trillsson_tf.models.mobilenet`)
without the full emotion benchmark's Wav2Small and TFLite Micro runs.

    .venv/bin/python benchmarks/mobilenet_students.py --data ../shared/data --steps 400

Writes ``benchmarks/results/mobilenet_students.{json,md}``.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import emotion_benchmark  # noqa: E402  (the same split, scoring and recalibration)
from trillsson_tf._keras import keras  # noqa: E402
from trillsson_tf.audio import load_audio  # noqa: E402
from trillsson_tf.train.distill import distill  # noqa: E402
from trillsson_tf.apps.evaluate import score_agreement  # noqa: E402
from trillsson_tf.teachers.prosody import PROSODY_SCORES  # noqa: E402
from trillsson_tf.teachers import load_teacher  # noqa: E402

STUDENTS = ("mobilenetv3small_adv", "mobilenetv4convsmall")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--out", default=os.path.join("runs", "mobilenet_students"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)

    train, held = emotion_benchmark._split(args.data)
    teacher = load_teacher("prosody")
    held_clips = [load_audio(path) for path in held]
    targets = np.stack([teacher(clip[np.newaxis])["embedding"][0] for clip in held_clips])
    calibration = [load_audio(path) for path in train[::10]]
    report = {
        "teacher": "prosody",
        "steps": args.steps,
        "train_files": len(train),
        "held_out_files": len(held),
        "students": {},
    }
    for student in STUDENTS:
        began = time.perf_counter()
        run = distill(
            train,
            out_dir=os.path.join(args.out, student),
            teacher=teacher,
            student=student,
            outputs=3,
            ccc_weight=0.5,
            steps=args.steps,
            batch_size=16,
            lr=3e-3,
            checkpoint_every=max(1, args.steps // 4),
            validation_fraction=0.0,
            cache_dir=os.path.join(args.out, "targets"),
            overwrite=True,
            progress=True,
        )
        model = keras.models.load_model(os.path.join(run["export"], "model.keras"))
        as_trained = score_agreement(targets, emotion_benchmark._keras_scores(model, held_clips), names=PROSODY_SCORES)
        emotion_benchmark._recalibrate_batchnorm(model, calibration)
        recalibrated = score_agreement(
            targets, emotion_benchmark._keras_scores(model, held_clips), names=PROSODY_SCORES
        )
        report["students"][student] = {
            "parameters": run["student"]["parameters"],
            "ccc_as_trained": as_trained,
            "ccc_recalibrated": recalibrated,
            "seconds": round(time.perf_counter() - began, 1),
        }
    lines = [
        f"# MobileNet score students, prosody teacher, {args.steps} steps",
        "",
        f"{len(train)} training / {len(held)} held-out files; CCC on the held-out files.",
        "",
        "| student | parameters | as trained: "
        + " / ".join(PROSODY_SCORES)
        + " | BatchNorm re-estimated: "
        + " / ".join(PROSODY_SCORES)
        + " |",
        "|---|---:|---:|---:|",
    ]
    for student, entry in report["students"].items():
        cells = [
            " / ".join(f"{entry[key]['per_score'][name]:.3f}" for name in PROSODY_SCORES)
            for key in ("ccc_as_trained", "ccc_recalibrated")
        ]
        lines.append(f"| {student} | {entry['parameters']:,} | {cells[0]} | {cells[1]} |")
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "mobilenet_students.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(args.results, "mobilenet_students.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
