"""Distillation loss against fidelity that means something: the demo's job with each loss, side by side.

Runs :func:`trillsson_tf.apps.demo.run_demo` (``speech_embedding`` -> ``tiny_cnn_k5`` on the
repository's ``data/``, the demo's recipe and steps) once per loss, in one process, and tabulates
raw cosine, centered cosine (against the training-set mean teacher vector) and R² beside the
"predict the training mean" baseline, and the probes of teacher and student. The loss with the
higher centered cosine on both corpora, that also keeps the demo's probe goals, is the one the
demo should use.

    .venv/bin/python benchmarks/loss_benchmark.py --steps 3000        # cosine and mse (results/: 3,000 steps)
    .venv/bin/python benchmarks/loss_benchmark.py --losses mse --steps 300

Writes ``benchmarks/results/loss_benchmark.{json,md}`` and prints the markdown.
"""

import argparse
import json
import os
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")


def goals_met(report: dict) -> dict:
    """The demo's probe goals: FSDD digit and speaker >= teacher, LibriSpeech speaker >= 90% of it."""
    teacher, student = report["teacher"]["probe_accuracy"], report["student"]["probe_accuracy"]
    return {
        "fsdd_digit": student["fsdd"]["digit"] >= teacher["fsdd"]["digit"],
        "fsdd_speaker": student["fsdd"]["speaker"] >= teacher["fsdd"]["speaker"],
        "librispeech_speaker": student["librispeech"]["speaker"] >= 0.9 * teacher["librispeech"]["speaker"],
    }


def to_markdown(result: dict) -> str:
    lines = [
        "# Distillation loss: the demo's job with each loss",
        "",
        f"`speech_embedding` -> `{result['student']}` on `data/` ({result['records']:,} training records), "
        f"{result['steps']} steps, the demo's recipe otherwise ({result['recipe']}), 2-core CPU, {result['date']}.",
        "Centered cosine: both vectors minus the training-set mean teacher vector; the training mean "
        "itself scores 0 centered and R² 0.",
        "",
        "| loss | FSDD raw cosine (mean baseline) | FSDD centered | FSDD R² | LibriSpeech raw (mean baseline) "
        "| LibriSpeech centered | LibriSpeech R² | FSDD digit | FSDD speaker | LibriSpeech speaker | probe goals |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for loss, row in result["losses"].items():
        fsdd, libri = row["fidelity"]["fsdd_test"], row["fidelity"]["librispeech"]
        probes = row["probes"]
        lines.append(
            f"| {loss} | {fsdd['mean_cosine']:.3f} ({fsdd['training_mean_mean_cosine']:.3f}) | {fsdd['centered_cosine']:.3f} | "
            f"{fsdd['r2']:.2f} | {libri['mean_cosine']:.3f} ({libri['training_mean_mean_cosine']:.3f}) | "
            f"{libri['centered_cosine']:.3f} | {libri['r2']:.2f} | {probes['fsdd']['digit']:.3f} | "
            f"{probes['fsdd']['speaker']:.3f} | {probes['librispeech']['speaker']:.3f} | "
            f"{'met' if all(row['goals'].values()) else 'missed: ' + ', '.join(k for k, v in row['goals'].items() if not v)} |"
        )
    teacher = result["teacher_probes"]
    lines += [
        "",
        f"Teacher probes: FSDD digit {teacher['fsdd']['digit']:.3f}, speaker {teacher['fsdd']['speaker']:.3f}; "
        f"LibriSpeech speaker {teacher['librispeech']['speaker']:.3f} (unseen speakers).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="+", default=["cosine", "mse"])
    parser.add_argument("--steps", type=int, default=None, help="distillation steps (default: the demo's)")
    parser.add_argument("--data", default=os.path.join(REPO, "data"))
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    from trillsson_tf.apps.demo import DEMO_RECIPE, DEMO_STEPS, DEMO_STUDENT, DEMO_TEACHER, run_demo

    if DEMO_TEACHER != "speech_embedding":  # its figures and report keys are those of that demo
        raise SystemExit(
            "loss_benchmark measures the speech_embedding demo: run it from commit 01b1b26 "
            f"(the demo now distills {DEMO_TEACHER}, whose report it does not read yet)."
        )

    steps = args.steps or DEMO_STEPS
    work = args.work or tempfile.mkdtemp(prefix="loss_benchmark_")
    result = {
        "date": time.strftime("%Y-%m-%d"),
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
        result["teacher_probes"] = report["teacher"]["probe_accuracy"]
        result["losses"][loss] = {
            "fidelity": report["fidelity"],
            "probes": report["student"]["probe_accuracy"],
            "goals": goals_met(report),
            "final_loss": report["training"]["final_loss"],
            "distill_s": report["seconds"]["distill"],
        }
        print(loss, json.dumps(result["losses"][loss]), flush=True)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "loss_benchmark.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    markdown = to_markdown(result)
    with open(os.path.join(RESULTS, "loss_benchmark.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
