"""LiteRT's quantizer beside TensorFlow's int8 (issue 42 item 4): size, parity, speed, probe accuracy.

On a distilled student (by default ``make demo``'s export, ``runs/demo/distill/export``: tiny_cnn_k5
distilled from CAM++ on the repository's speechocean762 training speakers; or ``--export``), the
patch-in form (the network alone; the runtime's numpy log-mel outside), written by
:func:`trillsson_tf.converters.tflite.convert`:

* float32, and today's TensorFlow int8 (``quantize='int8'``);
* LiteRT's four recipes (``quantizer='litert'``: int8 weights, int4 weights, static int8, int4 mixed),
  calibrated, and their error reports run, on the same real speech as the TensorFlow int8 (32 clips
  of the training speakers);

each with: file size and its ratio to float32; parity (mean and lowest cosine of clip vectors, run by
:class:`trillsson_tf.runtime.TFLiteModel`) against the float32 file on the 400 clips of the 100 unseen
speakers; ms per second of audio (one call per clip, 1 thread, median of interleaved runs,
``runtime_benchmark.median_seconds``); linear-probe accuracy on those clips (speaker, sex, age group,
stratified 5-fold, as ``make demo`` scores); the layers kept float. The same files at scale: an
untrained ``--scale-student`` (default ``trillsson1``, 5 M parameters; sizes do not depend on the
weights' values), where the fixed part of a file (flatbuffer, biases, scales) no longer dominates.

Goal (issue 42): an int4-weight network at <= 0.15 of its float32 size, parity >= 0.99, probe
accuracy within 1 point of float32. Writes ``benchmarks/results/quantizer_benchmark.{json,md}``.

    .venv/bin/python benchmarks/quantizer_benchmark.py                 # needs `make demo` first
    .venv/bin/python benchmarks/quantizer_benchmark.py --export runs/x/export --data data
    # a larger trained student: teacher_table's 1.6 M mobilenetv3small (25 % of CAM++), distilled from CAM++
    .venv/bin/python benchmarks/quantizer_benchmark.py --export /work/scratch/table/runs/student_25pct/export \
        --results quantizer_benchmark_mobilenetv3small
    # trillsson1 at D = 192 distilled from CAM++ (teacher_table's files and recipe at lr 1e-3, 1,000 steps)
    .venv/bin/python benchmarks/quantizer_benchmark.py --export <run>/export --results quantizer_benchmark_trillsson1 --repeats 3
"""

import argparse
import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread everywhere, like the interpreter
os.environ.setdefault("OMP_NUM_THREADS", "1")
import platform
import tempfile
import time


from runtime_benchmark import median_seconds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
VARIANTS = {  # name: (quantizer, quantize)
    "float32": ("tensorflow", "float32"),
    "tf_int8": ("tensorflow", "int8"),
    "litert_int8_weights": ("litert", "int8-weights"),
    "litert_int4_weights": ("litert", "int4-weights"),
    "litert_int8": ("litert", "int8"),
    "litert_int4_mixed": ("litert", "int4-mixed"),
}
INT4_TRAINED = "litert_int4_trained"  # optimize --int4 of the same student, then int4-weights
LABELS = {
    "float32": "float32 (TensorFlow)",
    "tf_int8": "TensorFlow int8 (today's)",
    "litert_int8_weights": "LiteRT int8 weights",
    "litert_int4_weights": "LiteRT int4 weights",
    "litert_int8": "LiteRT static int8",
    "litert_int4_mixed": "LiteRT int4 mixed",
    INT4_TRAINED: "LiteRT int4 weights after int4 training",
}
TASKS = ("speaker", "sex", "age_group")
CALIBRATION_CLIPS = 32
SPEED_CLIPS = 40
GOAL = {"size_ratio": 0.15, "min_mean_cosine": 0.99, "probe_points": 1.0}


def demo_items(data: str, *, every_training_file: bool = False) -> tuple:
    """``(training files, unseen items)`` of the demo's speechocean762 manifest: 32 training files
    (calibration), or all of them."""
    from trillsson_tf.train.data import find_audio

    items = find_audio(os.path.join(data, "speechocean762", "metadata.csv"))
    train = [item.path for item in items if item.labels.get("role") == "train"]
    if not every_training_file:
        train = train[:: max(1, len(train) // CALIBRATION_CLIPS)][:CALIBRATION_CLIPS]
    return train, [item for item in items if item.labels.get("role") == "unseen"]


def int4_trained(export, folder: str, calibration, training_files: list, args, int8_layers=()) -> tuple:
    """``optimize --int4`` of ``export`` on the training speakers' files, converted with ``int4-weights``:
    ``(path, card, optimize report)``."""
    from trillsson_tf.converters.tflite import convert
    from trillsson_tf.optimize import optimize_export

    start = time.perf_counter()
    report = optimize_export(
        export,
        os.path.join(folder, "int4_training"),
        data=training_files,
        int4=True,
        int8_layers=int8_layers,
        steps=args.int4_steps,
        learning_rate=args.int4_lr,
        num_patches=args.int4_patches,
        progress=True,
    )
    path = os.path.join(folder, f"student_{INT4_TRAINED}.tflite")
    card = convert(
        report["export"],
        path,
        frontend=False,
        quantize="int4-weights",
        quantizer="litert",
        representative_audio=calibration,
        overwrite=True,
    )
    card["seconds"] = time.perf_counter() - start
    return path, card, report


def convert_all(export, folder: str, calibration, *, prefix: str) -> dict:
    """Every variant of ``export``'s patch-in form: ``{name: (path, card)}``."""
    from trillsson_tf.converters.tflite import convert

    files = {}
    for name, (quantizer, quantize) in VARIANTS.items():
        path = os.path.join(folder, f"{prefix}_{name}.tflite")
        start = time.perf_counter()
        card = convert(
            export,
            path,
            frontend=False,
            quantize=quantize,
            quantizer=quantizer,
            representative_audio=calibration if quantize != "float32" else None,
            overwrite=True,
        )
        card["seconds"] = time.perf_counter() - start
        files[name] = (path, card)
    return files


def measure(files: dict, clips: list, labels: dict, repeats: int) -> dict:
    """Size, parity against float32, ms per second of audio and probe accuracy of each file."""
    from trillsson_tf.apps.evaluate import probe_accuracy
    from trillsson_tf.metrics import parity
    from trillsson_tf.runtime import TFLiteModel

    models = {name: TFLiteModel(path, num_threads=1) for name, (path, _) in files.items()}
    vectors = {name: model.embed_files(clips) for name, model in models.items()} if labels else {}
    speed_clips = _audio(clips[:SPEED_CLIPS])
    seconds = median_seconds(models, speed_clips, repeats)
    audio_s = sum(len(clip) for clip in speed_clips) / 16000
    reference = vectors.get("float32")
    rows = {}
    for name, (path, card) in files.items():
        entry = card.get("quantizer") or {}
        rows[name] = {
            "label": LABELS[name],
            "bytes": os.path.getsize(path),
            "size_ratio": os.path.getsize(path) / os.path.getsize(files["float32"][0]),
            "ms_per_audio_s": 1000 * seconds[name] / audio_s,
            "card_parity_mean_cosine": card["parity"]["mean_cosine"],
            "float_layers": entry.get("float_layers", []),
            "flagged": [
                layer["layer"] for layer in entry.get("int4_report", entry.get("layers", [])) if layer["flagged"]
            ],
            "convert_s": card["seconds"],
        }
        if reference is not None:
            rows[name]["parity"] = {k: round(v, 6) for k, v in parity(reference, vectors[name]).items()}
            rows[name]["probes"] = {
                task: round(probe_accuracy(vectors[name], values)["accuracy"], 4) for task, values in labels.items()
            }
    return rows


def _audio(paths):
    from trillsson_tf.audio import load_audio

    return [load_audio(path) for path in paths]


def _int8_note(options: dict) -> str:
    layers = options.get("int8_layers") or []
    return f" ({len(layers)} layers at int8: {', '.join(layers)})" if layers else ""


def to_markdown(report: dict) -> str:
    lines = [
        "# LiteRT's quantizer beside TensorFlow's int8 (patch-in form)",
        "",
        f"{report['student']['name']} ({report['student']['parameters']:,} parameters, `{report['student']['export']}`); "
        f"parity and probes on {report['clips']} clips of {report['speakers']} unseen speakers (speechocean762); "
        f"calibration and error reports on {report['calibration_clips']} training clips, the same for both "
        f"quantizers; ms per second of audio over {report['speed_audio_s']:.0f} s, 1 thread, median of "
        f"{report['repeats']} interleaved runs. ai-edge-quantizer {report['versions']['ai-edge-quantizer']}, "
        f"TensorFlow {report['versions']['tensorflow']}. {report['machine']}.",
        "",
        "| file | bytes | / float32 | mean cosine vs float32 | lowest cosine | ms / s audio | "
        + " | ".join(f"{task} probe" for task in TASKS)
        + " | layers kept float |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(TASKS) + "---|",
    ]
    for row in report["rows"].values():
        probes = " | ".join(f"{100 * row['probes'][task]:.2f}%" for task in TASKS)
        kept = ", ".join(layer.rpartition("/")[2] for layer in row["float_layers"]) or "-"
        lines.append(
            f"| {row['label']} | {row['bytes']:,} | {row['size_ratio']:.3f} | {row['parity']['mean_cosine']:.4f} | "
            f"{row['parity']['min_cosine']:.4f} | {row['ms_per_audio_s']:.2f} | {probes} | {kept} |"
        )
    if "int4_training" in report:
        training, row = report["int4_training"], report["rows"][INT4_TRAINED]
        options = training["options"]
        lines += [
            "",
            f"{LABELS[INT4_TRAINED]}: `optimize --int4` ({options['steps']} steps, lr {options['learning_rate']:g}, "
            f"{options['num_patches']} patches of the training speakers' files; {training['seconds']:.0f} s), then "
            f"int4 weights{_int8_note(options)}. Against the float student it came from (the table's float32): held-out mean cosine "
            f"{training['fidelity']['mean_cosine']:.4f} (Keras); its int4 file against its own float32 form "
            f"(card): {row['card_parity_mean_cosine']:.6f}.",
        ]
    scale = report["scale"]
    lines += [
        "",
        f"At scale: untrained {scale['student']} ({scale['parameters']:,} parameters), the same conversions; "
        "parity from each card (against the Keras model on the converters' held-out LibriSpeech, random weights).",
        "",
        "| file | bytes | / float32 | card mean cosine | layers kept float |",
        "|---|---:|---:|---:|---|",
    ]
    for row in scale["rows"].values():
        lines.append(
            f"| {row['label']} | {row['bytes']:,} | {row['size_ratio']:.3f} | {row['card_parity_mean_cosine']:.4f} | "
            f"{len(row['float_layers'])} |"
        )
    lines += [
        "",
        "Goal (issue 42): an int4-weight network at <= 0.15 of float32, parity >= 0.99, probes within 1 point.",
        "",
    ]
    lines += ["| file | size ratio | mean cosine | worst probe change (points) | met |", "|---|---:|---:|---:|:---:|"]
    for check in report["goal"]:
        lines.append(
            f"| {check['file']} | {check['size_ratio']:.3f} | {check['mean_cosine']:.4f} | "
            f"{check['probe_points']:+.2f} | {'yes' if check['met'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def goal_checks(rows: dict, scale_rows: dict) -> list:
    """The issue's goal on each int4 file: the trained student's size, parity and probes; beside it the scale
    student's size ratio with the trained student's parity and probes (the scale student is untrained)."""
    checks = []
    for name in ("litert_int4_weights", "litert_int4_mixed", INT4_TRAINED):
        if name not in rows:
            continue
        row = rows[name]
        points = min(100 * (row["probes"][task] - rows["float32"]["probes"][task]) for task in TASKS)
        at_scale = [(f"{LABELS[name]}, at scale", scale_rows[name]["size_ratio"])] if name in scale_rows else []
        for label, ratio in [(LABELS[name], row["size_ratio"]), *at_scale]:
            met = ratio <= GOAL["size_ratio"] and row["parity"]["mean_cosine"] >= GOAL["min_mean_cosine"]
            checks.append(
                {
                    "file": label,
                    "size_ratio": ratio,
                    "mean_cosine": row["parity"]["mean_cosine"],
                    "probe_points": points,
                    "met": bool(met and points >= -GOAL["probe_points"]),
                }
            )
    return checks


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", default=os.path.join(REPO, "runs", "demo", "distill", "export"))
    parser.add_argument("--data", default=os.path.join(REPO, "data"), help="folder with speechocean762/metadata.csv")
    parser.add_argument("--scale-student", default="trillsson1")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", default="quantizer_benchmark", help="results file stem in benchmarks/results")
    parser.add_argument("--int4-steps", type=int, default=300, help="optimize --int4 steps (0: leave that row out)")
    parser.add_argument("--int4-lr", type=float, default=None, help="optimize --int4 learning rate (default 1e-4)")
    parser.add_argument("--int4-patches", type=int, default=1024, help="optimize --int4 training patches")
    parser.add_argument(
        "--int8-budget",
        type=float,
        default=0.0,
        help="optimize --int4 --int8-layers: the int4 report's most sensitive layers at int8 within this size "
        "ratio to float32 (0: all int4)",
    )
    args = parser.parse_args(argv)
    if not os.path.isdir(args.export):
        parser.error(f"no export at {args.export}: run `make demo` first, or pass --export")

    import tensorflow as tf

    from trillsson_tf import models
    from trillsson_tf._keras import keras
    from trillsson_tf.converters.common import load_keras_model
    from trillsson_tf.converters.litert_quantizer import int8_within, quantizer_version
    from trillsson_tf.folders import write_atomic

    calibration, unseen = demo_items(args.data)
    training_files, _ = demo_items(args.data, every_training_file=True)
    clips = [item.path for item in unseen]
    labels = {task: [item.labels[task] for item in unseen] for task in TASKS}
    model, _ = load_keras_model(args.export)
    keras.utils.set_random_seed(0)  # the untrained scale student's weights, so its flagged layers repeat
    scale_model = models.build(args.scale_student)
    with tempfile.TemporaryDirectory() as folder:
        files = convert_all(args.export, folder, calibration, prefix="student")
        int4_report = None
        if args.int4_steps:
            int8_layers = []
            if args.int8_budget:
                (int4_path, int4_card), (float_path, _) = files["litert_int4_weights"], files["float32"]
                sizes = os.path.getsize(int4_path), os.path.getsize(float_path)
                int8_layers = int8_within(int4_card["quantizer"]["layers"], *sizes, args.int8_budget)
            path, card, int4_report = int4_trained(args.export, folder, calibration, training_files, args, int8_layers)
            files[INT4_TRAINED] = (path, card)
        rows = measure(files, clips, labels, args.repeats)
        scale_rows = measure(convert_all(scale_model, folder, calibration, prefix="scale"), clips[:SPEED_CLIPS], {}, 1)
    speed_audio_s = sum(len(clip) for clip in _audio(clips[:SPEED_CLIPS])) / 16000
    report = {
        "student": {
            "name": model.name,
            "parameters": int(model.count_params()),
            "export": os.path.relpath(args.export, REPO) if args.export.startswith(REPO) else args.export,
        },
        "clips": len(clips),
        "speakers": len(set(labels["speaker"])),
        "calibration_clips": len(calibration),
        "speed_audio_s": speed_audio_s,
        "repeats": args.repeats,
        "versions": {"ai-edge-quantizer": quantizer_version(), "tensorflow": tf.__version__},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "rows": rows,
        "scale": {"student": args.scale_student, "parameters": int(scale_model.count_params()), "rows": scale_rows},
        "goal": goal_checks(rows, scale_rows),
    }
    if int4_report is not None:
        report["int4_training"] = {
            key: int4_report[key] for key in ("options", "fidelity", "seconds") if key in int4_report
        }
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stem = os.path.join(RESULTS_DIR, args.results)
    markdown = to_markdown(report)
    write_atomic(stem + ".json", json.dumps(report, indent=2))
    write_atomic(stem + ".md", markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
