"""The main job, offline, on real speech: a real teacher -> targets -> distill -> export -> speaker
verification on voices never trained on -> convert (``.tflite``, TFLite Micro) -> the TensorFlow-free runtime.

The CAM++ speaker encoder (``campplus``, 6.85 M parameters) is distilled into a student of under 1 %
of its size. ``make demo`` trains on the 150 training speakers of the repository's speechocean762
subset and scores the 100 others and the 10 LibriSpeech speakers; the bundled samples (no
speechocean762) train on FSDD and half the LibriSpeech speakers and score the other half.
``steps=FAST_STEPS`` is a smoke run (the tests; the CLI under ``TRILLSSON_FAST=1``).
"""

import logging
import os
import time

import numpy as np

from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.checks import positive_int
from trillsson_tf.train.data import find_audio, source_paths
from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import prepare_output_dir, write_json

__all__ = ["DEMO_RECIPE", "DEMO_STEPS", "DEMO_STUDENT", "DEMO_TEACHER", "FAST_STEPS", "run_demo", "summary"]

_log = logging.getLogger(__name__)

DEMO_TEACHER = "campplus"
"""The demo's teacher: CAM++ (3D-Speaker), 192-d speaker embeddings."""
DEMO_STUDENT = "tiny_cnn_k5"
"""The demo's student: 61.5 K parameters at D=192, 0.9 % of CAM++."""
DEMO_STEPS = 1000
"""Training steps of the full demo (more steps did not lower the unseen-speaker EER: benchmarks/README.md)."""
# MSE on standardised targets at lr 1e-2 (benchmarks/loss_benchmark.py, distill_benchmark.py); no augmented
# views: with CAM++ they cost a teacher call each and did not lower the unseen-speaker EER.
DEMO_RECIPE = {"loss": "mse", "lr": 1e-2, "augment": 0}
"""Distillation options of the demo (:func:`trillsson_tf.train.distill.distill` keywords)."""
FAST_STEPS = 20
"""Training steps of a smoke run."""
SPEECHOCEAN_MANIFEST = os.path.join("speechocean762", "metadata.csv")
_BATCH_SIZE = 32
_SEED = 0
_RUNTIME_CLIPS = 120  # unseen clips the TensorFlow-free runtime is checked on
_ROLES = ("teacher", "student", "baseline")


def _folder_mb(path: str) -> float:
    total = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
    return round(total / 1e6, 3)


def _corpora(data) -> tuple:
    """``(training items, {set name: (unseen items, tasks)})`` of a demo folder."""
    named = find_audio(data)
    fsdd = [item for item in named if "digit" in item.labels]
    librispeech = [item for item in named if "chapter" in item.labels]
    manifest = os.path.join(data, SPEECHOCEAN_MANIFEST)
    if os.path.isfile(manifest):
        speechocean = find_audio(manifest)
        train = [item for item in speechocean if item.labels.get("role") == "train"]
        unseen = {
            "speechocean762": (
                [item for item in speechocean if item.labels.get("role") == "unseen"],
                ["speaker", "sex", "age_group"],
            )
        }
        if librispeech:
            unseen["librispeech"] = (librispeech, ["speaker", "sex"])
    else:
        speakers = sorted({item.labels["speaker"] for item in librispeech})
        seen = set(speakers[::2])
        train = [item for item in fsdd if item.labels["split"] == "train"]
        train += [item for item in librispeech if item.labels["speaker"] in seen]
        unseen = {
            "librispeech": ([item for item in librispeech if item.labels["speaker"] not in seen], ["speaker", "sex"])
        }
    for name, (items, _) in unseen.items():
        if len({item.labels["speaker"] for item in items}) < 2 or not train:
            raise ParameterError(
                f"The demo needs training speech and unseen speakers: {data} holds {len(train)} training files and "
                f"{len(items)} {name} files; give {SPEECHOCEAN_MANIFEST} or FSDD ({{digit}}_{{speaker}}_{{take}}) and "
                "LibriSpeech ({speaker}-{chapter}-{utterance}) files of at least 4 speakers."
            )
    return train, unseen


def _score(export_dir, teacher, items, tasks, out_json) -> dict:
    """Speaker verification and probes of teacher, student and MFCC on unseen speakers, plus fidelity."""
    from trillsson_tf.apps.evaluate import evaluate

    report = evaluate(
        export_dir, items, teacher=teacher, baseline="mfcc", tasks=tasks, verification=True, out_json=out_json
    )
    roles = {"student": "student", "teacher": "teacher", "baseline": "mfcc"}
    verification = {
        name: {
            "eer": round(sv["eer"], 4),
            "eer_ci95": [round(v, 4) for v in sv["eer_ci95"]],
            "min_dcf": round(sv["min_dcf"], 4),
        }
        for role, name in roles.items()
        for sv in [report["verification"][role]]
    }
    probes = {
        task: {
            roles[role]: {"accuracy": round(result["accuracy"], 4), "ci95": [round(v, 4) for v in result["ci95"]]}
            for role, result in results.items()
        }
        for task, results in report["probes"].items()
    }
    fid = report["fidelity"]
    first = report["verification"]["student"]
    return {
        "speakers": first["speakers"],
        "clips": first["clips"],
        "trials": first["trials"],
        "target_trials": first["target_trials"],
        "verification": verification,
        "probes": probes,
        "fidelity": {key: round(fid[key], 4) for key in ("mean_cosine", "centered_cosine", "r2")}
        | {"training_mean_mean_cosine": round(fid["baselines"]["training_mean"]["mean_cosine"], 4)},
    }


def _convert_and_run(export_dir: str, train_items, out_dir: str, test_files) -> dict:
    """float16 and int8 ``.tflite`` (audio in), int8 patch-in + TFLite Micro, and the runtime on ``test_files``."""
    from trillsson_tf.converters.common import load_keras_model
    from trillsson_tf.converters.micro import to_micro
    from trillsson_tf.converters.tflite import convert
    from trillsson_tf.metrics import parity
    from trillsson_tf.models import EMBEDDING_KEY
    from trillsson_tf.runtime import TFLiteModel

    calibration = [item.path for item in train_items]
    cards = {
        mode: convert(
            export_dir,
            os.path.join(out_dir, f"student_{mode}.tflite"),
            quantize=mode,
            representative_audio=calibration if mode == "int8" else None,
        )
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
        "micro": {
            "source": micro["files"]["source"],
            "model_bytes": micro["model_bytes"],
            "arena_bytes": micro["arena_bytes"],
        },
        "runtime_int8_vs_keras": {
            key: round(value, 6) for key, value in parity(keras_vectors, runtime_vectors).items()
        },
        "runtime_clips": len(clips),
    }


def _deterministic() -> None:
    """Seeds and op determinism: two runs of the demo print the same figures."""
    from trillsson_tf._keras import keras, tf

    keras.utils.set_random_seed(_SEED)
    tf.config.experimental.enable_op_determinism()


def _recipe(steps, recipe) -> dict:
    """:data:`DEMO_RECIPE` with ``recipe``'s options over it; refuses bad ``steps`` and unknown options."""
    positive_int("steps", steps)
    unknown = sorted(set(recipe or {}) - set(DEMO_RECIPE))
    if unknown:
        raise ParameterError(f"Unknown recipe option(s) {unknown}; the demo's recipe has {sorted(DEMO_RECIPE)}.")
    return {**DEMO_RECIPE, **(recipe or {})}


def _distill(train, out_dir: str, teacher, student: str, steps: int, recipe: dict, progress: bool) -> dict:
    """Distill ``teacher`` into ``student`` on ``train`` in ``<out_dir>/distill`` (targets cached in ``targets/``)."""
    from trillsson_tf.train.distill import distill

    return distill(
        train,
        out_dir=os.path.join(out_dir, "distill"),
        teacher=teacher,
        student=student,
        steps=steps,
        batch_size=_BATCH_SIZE,
        checkpoint_every=max(1, steps // 3),
        validation_fraction=0.0,
        seed=_SEED,
        cache_dir=os.path.join(out_dir, "targets"),
        progress=progress,
        **recipe,
    )


def _report(teacher, student: str, run: dict, data, train, recipe, evaluation, deployed, seconds) -> dict:
    """The demo's report: teacher, student, the unseen-speaker evaluation, training, deployed files, timings in s."""
    export_dir = run["export"]
    return {
        "teacher": {
            "name": DEMO_TEACHER,
            "parameters": teacher.parameters,
            "licence": teacher.describe().get("licence"),
        },
        "student": {
            "name": student,
            "parameters": run["student"]["parameters"],
            "parameter_ratio_to_teacher": round(run["student"]["parameters"] / teacher.parameters, 4),
            "export": export_dir,
            "export_mb": _folder_mb(export_dir),
        },
        "baseline": "mfcc: 20 MFCCs, mean and std per clip (no network)",
        "evaluation": evaluation,
        "training": {
            "data": data,
            "files": run["data"]["files"],
            "records": run["data"]["train_records"],
            "speakers": len({item.labels.get("speaker") for item in train}),
            "steps": run["step"],
            "batch_size": _BATCH_SIZE,
            **recipe,
            "final_loss": round(run["loss_history"][-1][1], 6),
        },
        "tflite": deployed,
        "seconds": seconds,
    }


def run_demo(
    out_dir,
    *,
    data=None,
    student: str = DEMO_STUDENT,
    steps: int = DEMO_STEPS,
    recipe=None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Distill CAM++ into ``student`` on real speech, score unseen speakers, convert, run.

    Args:
        out_dir: Output folder (refused when it exists and is not empty, unless ``overwrite``).
            Gets ``distill/`` (the run, with ``distill/export``), ``targets/`` (the cache),
            ``evaluation_<set>.json`` and ``report.json``.
        data: A folder with ``speechocean762/metadata.csv`` (``make demo``: the repository's
            ``data/``) and/or FSDD and LibriSpeech files named as in their corpora; ``None``: the
            bundled samples.
        student: Registry name of the student.
        steps: Distillation steps (:data:`FAST_STEPS` for a smoke run).
        recipe: Distillation options that replace those of :data:`DEMO_RECIPE`.
        overwrite: Replace an existing ``out_dir``.
        progress: Progress bars.

    Returns:
        The report also written to ``<out_dir>/report.json``: teacher and student, per unseen set
        the EER (95 % interval) and minDCF of teacher, student and MFCC, probes with intervals,
        fidelity, the ``.tflite`` sizes and parities, the TFLite Micro arena, timings in s.

    Raises:
        ParameterError: bad ``steps`` or recipe, a non-empty ``out_dir``, ``data`` without training
            speech or unseen speakers.
    """
    from trillsson_tf.teachers import load_teacher

    recipe = _recipe(steps, recipe)
    data = SAMPLE_AUDIO_DIR if data is None else os.fspath(data)
    train, unseen = _corpora(data)
    out_dir = prepare_output_dir(out_dir, overwrite=overwrite, inputs=[("--data", source_paths(data))])
    teacher = load_teacher(DEMO_TEACHER)
    _deterministic()
    began = time.perf_counter()
    run = _distill(train, out_dir, teacher, student, steps, recipe, progress)
    distill_s, began = time.perf_counter() - began, time.perf_counter()
    export_dir = run["export"]
    evaluation = {
        name: _score(export_dir, teacher, items, tasks, os.path.join(out_dir, f"evaluation_{name}.json"))
        for name, (items, tasks) in unseen.items()
    }
    evaluate_s, began = time.perf_counter() - began, time.perf_counter()
    first_set = next(iter(unseen.values()))[0]
    deployed = _convert_and_run(
        export_dir, train, os.path.join(out_dir, "tflite"), [item.path for item in first_set][:_RUNTIME_CLIPS]
    )
    seconds = {
        "distill": round(distill_s, 1),
        "evaluate": round(evaluate_s, 1),
        "convert_and_run": round(time.perf_counter() - began, 1),
    }
    report = _report(teacher, student, run, data, train, recipe, evaluation, deployed, seconds)
    write_json(os.path.join(out_dir, "report.json"), report)
    _log.info("Demo report written to %s", os.path.join(out_dir, "report.json"))
    return report


def summary(report: dict) -> str:
    """The demo's verdict: EER of teacher, student and MFCC on unseen speakers, probes, then the deployed files."""
    teacher, student, training = report["teacher"], report["student"], report["training"]
    lines = [
        f"teacher {teacher['name']} ({teacher['parameters']:,} parameters) -> student {student['name']} "
        f"({student['parameters']:,}, {100 * student['parameter_ratio_to_teacher']:.1f}%), {training['steps']} steps "
        f"on {training['files']:,} clips of {training['speakers']} speakers",
        f"{'unseen speakers':<44}{'teacher':>17}{'student':>17}{'MFCC':>17}",
    ]
    for name, result in report["evaluation"].items():
        cells = [
            f"{100 * v['eer']:.1f} [{100 * v['eer_ci95'][0]:.1f}-{100 * v['eer_ci95'][1]:.1f}]"
            for v in (result["verification"][role] for role in ("teacher", "student", "mfcc"))
        ]
        label = f"{name} EER % ({result['speakers']} speakers, {result['clips']} clips)"
        lines.append(f"{label:<44}" + "".join(f"{cell:>17}" for cell in cells))
        for task, roles in result["probes"].items():
            cells = [f"{roles[role]['accuracy']:.3f}" for role in ("teacher", "student", "mfcc")]
            lines.append(f"{f'  {task} probe accuracy':<44}" + "".join(f"{cell:>17}" for cell in cells))
        fid = result["fidelity"]
        lines.append(
            f"  fidelity: cosine {fid['mean_cosine']:.3f} (training mean alone {fid['training_mean_mean_cosine']:.3f}), "
            f"centered cosine {fid['centered_cosine']:.3f}, R2 {fid['r2']:.3f}"
        )
    deployed = report["tflite"]
    lines.append(
        f"int8 .tflite {deployed['size_bytes']['int8']:,} bytes, runtime vs Keras mean cosine "
        f"{deployed['runtime_int8_vs_keras']['mean_cosine']:.4f}; TFLite Micro arena {deployed['micro']['arena_bytes']:,} bytes"
    )
    return "\n".join(lines)
