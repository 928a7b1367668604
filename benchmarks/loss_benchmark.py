"""Distillation loss against measures that mean something: the demo's job with each loss, side by side.

Runs :func:`trillsson_tf.apps.demo.run_demo` (CAM++ -> ``tiny_cnn_k5`` on the repository's
``data/``: 150 speechocean762 training speakers, scored on 100 unseen speechocean762 speakers and
the 10 LibriSpeech speakers) once per loss, in one process, and tabulates per unseen set the
speaker-verification EER (95 % speaker-bootstrap interval) and minDCF, the probes, and the
fidelity to the teacher (raw cosine beside the "predict the training mean" baseline, centered
cosine and R², for which that mean scores 0), with the teacher and the MFCC mean+std baseline
(the same in every run: seeded, deterministic) beside them.

    .venv/bin/python benchmarks/loss_benchmark.py                      # cosine, mse, l1 at the demo's steps
    .venv/bin/python benchmarks/loss_benchmark.py --losses mse --steps 300

Writes ``benchmarks/results/loss_benchmark.{json,md}`` and prints the markdown.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")


def _eer(cell: dict) -> str:
    low, high = cell["eer_ci95"]
    return f"{100 * cell['eer']:.1f} [{100 * low:.1f}-{100 * high:.1f}]"


def to_markdown(result: dict) -> str:
    first = next(iter(result["losses"].values()))
    lines = [
        "# Distillation loss: the demo's job with each loss",
        "",
        f"`{result['teacher']}` -> `{result['student']}` on `data/` ({result['records']:,} training clips of "
        f"{result['speakers']} speakers), {result['steps']} steps, the demo's recipe otherwise ({result['recipe']}), "
        f"2-core CPU, {result['date']}. Command: `{result['command']}`.",
        "Unseen speakers only. EER % with its 95 % speaker-bootstrap interval; probes: linear probes on the "
        "unseen clips (accuracy). Fidelity to the teacher on the same clips: raw cosine (the training-set mean "
        "teacher vector alone in brackets), centered cosine (both vectors minus that mean) and R²; the mean "
        "itself scores 0 on both.",
    ]
    for name, evaluation in first["evaluation"].items():
        tasks = list(evaluation["probes"])
        lines += [
            "",
            f"## {name}: {evaluation['speakers']} unseen speakers, {evaluation['clips']} clips, "
            f"{evaluation['trials']:,} trials",
            "",
            "| model | EER % [95% CI] | minDCF | "
            + " | ".join(f"{task} probe" for task in tasks)
            + " | raw cosine (mean alone) | centered cosine | R² |",
            "|---|---:|---:|" + "---:|" * len(tasks) + "---:|---:|---:|",
        ]
        for role, label in (("teacher", f"teacher `{result['teacher']}`"), ("mfcc", "MFCC mean+std (no network)")):
            sv = evaluation["verification"][role]
            probes = " | ".join(f"{evaluation['probes'][task][role]['accuracy']:.3f}" for task in tasks)
            lines.append(f"| {label} | {_eer(sv)} | {sv['min_dcf']:.3f} | {probes} | - | - | - |")
        for loss, row in result["losses"].items():
            ev = row["evaluation"][name]
            sv, fid = ev["verification"]["student"], ev["fidelity"]
            probes = " | ".join(f"{ev['probes'][task]['student']['accuracy']:.3f}" for task in tasks)
            lines.append(
                f"| student, loss `{loss}` | {_eer(sv)} | {sv['min_dcf']:.3f} | {probes} | "
                f"{fid['mean_cosine']:.3f} ({fid['training_mean_mean_cosine']:.3f}) | {fid['centered_cosine']:.3f} | "
                f"{fid['r2']:.3f} |"
            )
    lines += [
        "",
        "| loss | final training loss | distillation s (targets included) |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {loss} | {row['final_loss']:.4f} | {row['distill_s']:.0f} |" for loss, row in result["losses"].items()
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="+", default=["cosine", "mse", "l1"])
    parser.add_argument("--steps", type=int, default=None, help="distillation steps (default: the demo's)")
    parser.add_argument("--data", default=os.path.join(REPO, "data"))
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    from trillsson_tf.apps.demo import DEMO_RECIPE, DEMO_STEPS, DEMO_STUDENT, DEMO_TEACHER, run_demo
    from trillsson_tf.folders import write_atomic

    steps = args.steps or DEMO_STEPS
    work = args.work or tempfile.mkdtemp(prefix="loss_benchmark_")
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["benchmarks/loss_benchmark.py", *(sys.argv[1:] if argv is None else argv)]),
        "teacher": DEMO_TEACHER,
        "student": DEMO_STUDENT,
        "steps": steps,
        "recipe": {k: v for k, v in DEMO_RECIPE.items() if k != "loss"},
        "losses": {},
    }
    for loss in args.losses:
        report = run_demo(
            os.path.join(work, loss), data=args.data, steps=steps, recipe={"loss": loss}, overwrite=True, progress=True
        )
        result["records"] = report["training"]["records"]
        result["speakers"] = report["training"]["speakers"]
        result["losses"][loss] = {
            "evaluation": report["evaluation"],
            "final_loss": report["training"]["final_loss"],
            "distill_s": report["seconds"]["distill"],
        }
        print(loss, json.dumps(result["losses"][loss]), flush=True)
    os.makedirs(RESULTS, exist_ok=True)
    write_atomic(os.path.join(RESULTS, "loss_benchmark.json"), json.dumps(result, indent=2) + "\n")
    markdown = to_markdown(result)
    write_atomic(os.path.join(RESULTS, "loss_benchmark.md"), markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
