"""The main job, offline, on real speech: teacher -> targets -> distill -> export -> evaluate
-> convert (float16 and int8 ``.tflite``, TFLite Micro C array) -> run with the TensorFlow-free runtime.

The real ``speech_embedding`` teacher (from the pyopen-wakeword wheel) is distilled into a
student of under a quarter of its parameters (:data:`DEMO_STUDENT`, recipe :data:`DEMO_RECIPE`)
on the FSDD training takes (5-49) and the LibriSpeech utterances of half the speakers of
``data`` (``make demo``: the repository's ``data/``, 3,000 FSDD + 100 LibriSpeech files; by
default the 320 bundled clips). The export is then evaluated next to the teacher on the FSDD
files (probes fit on the training takes, scored on takes 0-4; fidelity on takes 0-4) and on
the LibriSpeech speakers never trained on (speaker and sex, cross-validated). It is converted
to float16 and int8 ``.tflite`` files (frontend inside, audio in) and to an int8 patch-in model
with its TFLite Micro C array, and the int8 file is run on the held-out FSDD takes by
:class:`trillsson_tf.runtime.TFLiteModel`, which is compared with the Keras export on the same
clips. ``steps=FAST_STEPS`` shortens training to a smoke run (the tests; the CLI under
``TRILLSSON_FAST=1``).
"""
import json
import logging
import os
import time

import numpy as np

from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.data import find_audio
from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import prepare_output_dir

__all__ = ["DEMO_RECIPE", "DEMO_STEPS", "DEMO_STUDENT", "FAST_STEPS", "run_demo", "summary"]

_log = logging.getLogger(__name__)

DEMO_STUDENT = "tiny_cnn_k5"
"""The demo's student: 80 K parameters, 24% of ``speech_embedding``'s."""
DEMO_STEPS = 2000
"""Training steps of the full demo (6.6 minutes of distillation, targets included, on 2 cores)."""
# The recipe of benchmarks/distill_benchmark.py, which measured it: the tiny students underfit
# this teacher at lr 1e-3, and 3 augmented views narrow the gap between training and held-out clips.
# MSE on standardised targets: same raw cosine and probes as the cosine loss, centered cosine 0.86
# against 0.56 on FSDD and R² 0.74 against -21 (benchmarks/loss_benchmark.py).
DEMO_RECIPE = {"loss": "mse", "lr": 1e-2, "augment": 3}
"""Distillation options of the demo (:func:`trillsson_tf.distill.distill` keywords)."""
FAST_STEPS = 20
"""Training steps of a smoke run."""
_BATCH_SIZE = 32
_RUNTIME_CLIPS = 120  # held-out FSDD clips the TensorFlow-free runtime is checked on


def _folder_mb(path: str) -> float:
    total = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
    return round(total / 1e6, 3)


def _convert_and_run(export_dir: str, train_items, out_dir: str, test_files) -> dict:
    """float16 and int8 ``.tflite`` (audio in), int8 patch-in + TFLite Micro, and the runtime on ``test_files``."""
    from converters.micro import to_micro
    from converters.common import load_keras_model
    from converters.tflite import convert
    from trillsson_tf.metrics import parity
    from trillsson_tf.models import EMBEDDING_KEY
    from trillsson_tf.runtime import TFLiteModel

    calibration = [item.path for item in train_items]
    cards = {
        mode: convert(export_dir, os.path.join(out_dir, f"student_{mode}.tflite"), quantize=mode,
                      representative_audio=calibration if mode == "int8" else None)
        for mode in ("float32", "float16", "int8")
    }
    micro_model = os.path.join(out_dir, "micro", "student_int8_patch.tflite")
    convert(export_dir, micro_model, quantize="int8", frontend=False, representative_audio=calibration)
    micro = to_micro(micro_model, os.path.join(out_dir, "micro"), name="g_student")

    runtime = TFLiteModel(os.path.join(out_dir, "student_int8.tflite"), num_threads=1)
    keras_model, _ = load_keras_model(export_dir)
    clips = [load_audio(path) for path in test_files]
    keras_vectors = np.concatenate([keras_model(clip[np.newaxis])[EMBEDDING_KEY].numpy() for clip in clips])
    runtime_vectors = np.concatenate([runtime(clip)[EMBEDDING_KEY] for clip in clips])
    size_f32 = cards["float32"]["size_bytes"]
    return {
        "files": {mode: os.path.join(out_dir, f"student_{mode}.tflite") for mode in cards},
        "size_bytes": {mode: card["size_bytes"] for mode, card in cards.items()},
        "size_ratio_to_float32": {mode: round(card["size_bytes"] / size_f32, 3) for mode, card in cards.items()},
        "parity_mean_cosine": {mode: round(card["parity"]["mean_cosine"], 6) for mode, card in cards.items()},
        "micro": {"source": micro["files"]["source"], "model_bytes": micro["model_bytes"], "arena_bytes": micro["arena_bytes"]},
        "runtime_int8_vs_keras": {key: round(value, 6) for key, value in parity(keras_vectors, runtime_vectors).items()},
        "runtime_clips": len(clips),
    }


def _corpora(data) -> tuple:
    """``(fsdd items, librispeech items)`` of a folder, told apart by their file names' labels."""
    items = find_audio(data)
    fsdd = [item for item in items if "digit" in item.labels]
    librispeech = [item for item in items if "chapter" in item.labels]
    if not fsdd or len({item.labels["speaker"] for item in librispeech}) < 2:
        raise ParameterError(f"The demo needs FSDD files ({{digit}}_{{speaker}}_{{take}}) and LibriSpeech files of at "
                             f"least 2 speakers ({{speaker}}-{{chapter}}-{{utterance}}) under {data}; found "
                             f"{len(fsdd)} FSDD and {len(librispeech)} LibriSpeech files.")
    return fsdd, librispeech


def run_demo(out_dir, *, data=None, student: str = DEMO_STUDENT, steps: int = DEMO_STEPS, recipe=None,
             overwrite: bool = False, progress: bool = False) -> dict:
    """Distill ``speech_embedding`` into ``student`` on real speech, export, evaluate, convert, run.

    Args:
        out_dir: Output folder (refused when it exists and is not empty, unless ``overwrite``).
            Gets ``distill/`` (the run, with ``distill/export``), ``targets/`` (the cache),
            ``evaluation_fsdd.json``, ``evaluation_librispeech.json`` and ``report.json``.
        data: A folder of FSDD and LibriSpeech files named as in their corpora (``make demo``:
            the repository's ``data/``); ``None``: the bundled samples.
        student: Registry name of the student.
        steps: Distillation steps (:data:`FAST_STEPS` for a smoke run).
        recipe: Distillation options that replace those of :data:`DEMO_RECIPE` (e.g.
            ``{'loss': 'mse'}``; ``benchmarks/loss_benchmark.py`` compares losses this way).
        overwrite: Replace an existing ``out_dir``.
        progress: Progress bars.

    Returns:
        The report also written to ``<out_dir>/report.json``: teacher and student parameter
        counts, probe accuracies of both, raw and centered cosine and R² beside the training-mean
        baseline, export size in MB, ``.tflite`` sizes and parity, the TFLite Micro arena,
        runtime-vs-Keras parity, timings in s.

    Raises:
        ParameterError: bad ``steps``, a non-empty ``out_dir``, ``data`` without both corpora.
    """
    from trillsson_tf.distill import distill
    from trillsson_tf.evaluate import evaluate
    from trillsson_tf.teachers import SPEECH_EMBEDDING, load_teacher

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps must be a positive integer, got {steps!r}.")
    unknown = sorted(set(recipe or {}) - set(DEMO_RECIPE))
    if unknown:
        raise ParameterError(f"Unknown recipe option(s) {unknown}; the demo's recipe has {sorted(DEMO_RECIPE)}.")
    recipe = {**DEMO_RECIPE, **(recipe or {})}
    data = SAMPLE_AUDIO_DIR if data is None else os.fspath(data)
    fsdd, librispeech = _corpora(data)
    out_dir = prepare_output_dir(out_dir, overwrite=overwrite)
    speakers = sorted({item.labels["speaker"] for item in librispeech})
    seen_speakers = set(speakers[::2])
    unseen = [item.path for item in librispeech if item.labels["speaker"] not in seen_speakers]
    train = [item for item in fsdd if item.labels["split"] == "train"]
    train += [item for item in librispeech if item.labels["speaker"] in seen_speakers]

    teacher = load_teacher(SPEECH_EMBEDDING)
    began = time.perf_counter()
    run = distill(
        train,
        out_dir=os.path.join(out_dir, "distill"),
        teacher=teacher,
        student=student,
        steps=steps,
        batch_size=_BATCH_SIZE,
        checkpoint_every=max(1, steps // 3),
        validation_fraction=0.0,
        cache_dir=os.path.join(out_dir, "targets"),
        progress=progress,
        **recipe,
    )
    distill_s = time.perf_counter() - began
    export_dir = run["export"]
    began = time.perf_counter()
    on_fsdd = evaluate(export_dir, [item.path for item in fsdd], teacher=teacher,
                       out_json=os.path.join(out_dir, "evaluation_fsdd.json"), progress=progress)
    on_librispeech = evaluate(
        export_dir,
        unseen,
        teacher=teacher,
        tasks=["speaker", "sex"],
        out_json=os.path.join(out_dir, "evaluation_librispeech.json"),
        progress=progress,
    )
    evaluate_s = time.perf_counter() - began
    began = time.perf_counter()
    test_files = [item.path for item in fsdd if item.labels["split"] == "test"]
    deployed = _convert_and_run(export_dir, train, os.path.join(out_dir, "tflite"), test_files[:_RUNTIME_CLIPS])
    convert_s = time.perf_counter() - began

    def accuracies(report, role):
        return {task: round(results[role]["accuracy"], 4) for task, results in report["probes"].items()}

    report = {
        "teacher": {
            "name": SPEECH_EMBEDDING,
            "parameters": teacher.parameters,
            "probe_accuracy": {"fsdd": accuracies(on_fsdd, "teacher"), "librispeech": accuracies(on_librispeech, "teacher")},
        },
        "student": {
            "name": student,
            "parameters": run["student"]["parameters"],
            "parameter_ratio_to_teacher": round(run["student"]["parameters"] / teacher.parameters, 4),
            "probe_accuracy": {"fsdd": accuracies(on_fsdd, "student"), "librispeech": accuracies(on_librispeech, "student")},
            "export": export_dir,
            "export_mb": _folder_mb(export_dir),
            "float32_weights_mb": round(run["student"]["parameters"] * 4 / 1e6, 3),
        },
        "mean_cosine_fsdd_test": round(on_fsdd["fidelity"]["mean_cosine"], 4),
        "mean_cosine_librispeech": round(on_librispeech["fidelity"]["mean_cosine"], 4),
        # Raw cosine flatters (the training mean alone scores high): what differs between clips, and the baseline.
        "fidelity": {corpus: {key: round(fid[key], 4) for key in ("mean_cosine", "centered_cosine", "r2")}
                     | {"training_mean_mean_cosine": round(fid["baselines"]["training_mean"]["mean_cosine"], 4)}
                     for corpus, fid in (("fsdd_test", on_fsdd["fidelity"]), ("librispeech", on_librispeech["fidelity"]))},
        "training": {
            "data": data,
            "files": run["data"]["files"],
            "records": run["data"]["train_records"],
            "steps": run["step"],
            "batch_size": _BATCH_SIZE,
            **recipe,
            "final_loss": run["loss_history"][-1][1],
            "librispeech_speakers_seen": sorted(seen_speakers),
            "librispeech_speakers_unseen": sorted(set(speakers) - seen_speakers),
        },
        "tflite": deployed,
        "seconds": {"distill": round(distill_s, 1), "evaluate": round(evaluate_s, 1), "convert_and_run": round(convert_s, 1)},
    }
    with open(os.path.join(out_dir, "report.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    _log.info("Demo report written to %s", os.path.join(out_dir, "report.json"))
    return report


def summary(report: dict) -> str:
    """The demo's verdict as a short table: probes of teacher and student, then fidelity beside its baseline."""
    teacher, student = report["teacher"], report["student"]
    lines = [f"teacher {teacher['name']} ({teacher['parameters']:,} parameters) -> student {student['name']} "
             f"({student['parameters']:,}, {100 * student['parameter_ratio_to_teacher']:.0f}%), "
             f"{report['training']['steps']} steps on {report['training']['records']:,} clips",
             f"{'probe':<40}{'teacher':>9}{'student':>9}"]
    for corpus, label in (("fsdd", "FSDD {} (takes 0-4)"), ("librispeech", "LibriSpeech {} (unseen speakers)")):
        for task, value in teacher["probe_accuracy"][corpus].items():
            lines.append(f"{label.format(task):<40}{value:>9.3f}{student['probe_accuracy'][corpus][task]:>9.3f}")
    for corpus, fid in report["fidelity"].items():
        lines.append(f"fidelity on {corpus}: raw cosine {fid['mean_cosine']:.3f} (training mean alone "
                     f"{fid['training_mean_mean_cosine']:.3f}), centered cosine {fid['centered_cosine']:.3f}, "
                     f"R2 {fid['r2']:.3f}")
    deployed = report["tflite"]
    lines.append(f"int8 .tflite {deployed['size_bytes']['int8']:,} bytes, runtime vs Keras mean cosine "
                 f"{deployed['runtime_int8_vs_keras']['mean_cosine']:.4f}; TFLite Micro arena "
                 f"{deployed['micro']['arena_bytes']:,} bytes")
    return "\n".join(lines)
