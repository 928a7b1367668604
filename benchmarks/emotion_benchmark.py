"""Emotion-student benchmark: Wav2Small and the MobileNet students distilled from two score teachers.

Distils each teacher of ``--teachers`` into each student of ``--students`` (``wav2small``,
``mobilenetv3small_adv``, ``mobilenetv4convsmall``; registry defaults, MSE + 0.5 x (1 - CCC)):

- ``prosody``: three standardised per-clip scores (loudness range, pitch, spectral tilt;
  :mod:`trillsson_tf.teachers.prosody`), librosa, no parameters;
- ``crepe`` in its score form (CREPE full, 22.2 M parameters: median and 10-90 % range of the
  voiced f0 in semitones, share of voiced frames; :mod:`trillsson_tf.teachers.crepe`) at
  ``--crepe-hop-ms``, on every ``--crepe-fsdd-every``-th FSDD training file and every LibriSpeech
  one (CREPE costs tens of ms of CPU per frame);

and measures:

- CCC of each score on held-out files (FSDD takes 0-4 and every fifth LibriSpeech utterance;
  training uses the rest), float Keras models on whole clips, beside predicting the training mean
  (CCC 0) and, for CREPE, the teacher at its hop against itself at its own 10 ms hop on
  ``--crepe-reference-files`` held-out files (what the hop costs); target >= 0.8 on each
  prosody score for Wav2Small;
- with the prosody teacher, Wav2Small as int8 ``.tflite`` for TFLite Micro (dB mel bands of 1 s
  in, the frontend computed outside the model as a board would;
  :func:`trillsson_tf.converters.tflite.convert` with ``frontend=False``): file size (target <=
  100 KB), parameters (60-80 K), tensor arena in the ``tflite-micro`` interpreter (target <= 512
  KB), TFLM against LiteRT on the same file and the same inputs (CCC and mean cosine over the
  held-out clips' first second; target >= 0.99), its CCC against the teacher (runtime: whole
  clips in 1 s windows); Wav2Small int8 with the frontend inside (LiteRT; normalisation and
  spectrogram in float), and, for the record, everything in int8 including the DFT
  (``compression='pwl'``), the measurement behind keeping the spectrogram out of int8; latency of
  1 s: int8 network in LiteRT (1 thread) and in TFLM on the host (reference kernels), the numpy
  frontend (what the board computes), the frontend-inside int8 model; the MobileNet students'
  int8 sizes. The MobileNet students train for fewer steps (``--mobilenet-steps``, CPU time), so
  their BatchNorm moving statistics are re-estimated on training crops before they are scored
  (:func:`_recalibrate_batchnorm`).

Teacher targets are cached under ``<out>`` (training files: :mod:`trillsson_tf.train.targets`;
held-out files: ``<out>/held_out``), so a killed run resumes. A run with some teachers or
students updates their rows in ``benchmarks/results/emotion_benchmark.{json,md}`` and keeps the
others, each row naming the command and date that produced it.

Data: ``--data`` (``../shared/data``: FSDD and LibriSpeech test-other); the bundled
``trillsson_tf/sample_audio`` files are copies of some of those files, so they are used only
when ``--data`` is missing.

    .venv/bin/python benchmarks/emotion_benchmark.py --data ../shared/data --out runs/emotion_benchmark
    .venv/bin/python benchmarks/emotion_benchmark.py --teachers crepe --crepe-hop-ms 40 --crepe-fsdd-every 2
"""

import argparse
import glob
import hashlib
import io
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import soundfile

from trillsson_tf.converters import micro, tflite
from trillsson_tf import models
from trillsson_tf._keras import keras, tf
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.train.distill import distill
from trillsson_tf.apps.evaluate import score_agreement
from trillsson_tf.models.export import read_metadata
from trillsson_tf.folders import write_atomic
from trillsson_tf.frontend import dft
from trillsson_tf.litert import make_interpreter
from trillsson_tf.metrics import ccc, parity
from trillsson_tf.teachers.prosody import PROSODY_SCORES
from trillsson_tf.runtime import TFLiteModel
from trillsson_tf.teachers import load_teacher

STUDENTS = ("wav2small", "mobilenetv3small_adv", "mobilenetv4convsmall")
ONE_SECOND = 16000
TEACHER_SPECS = {"prosody": "prosody", "crepe": "crepe:form=scores,hop_ms={hop_ms}"}
"""The teachers this benchmark distils (``{hop_ms}``: ``--crepe-hop-ms``)."""
REFERENCE_HOP_MS = 10
"""CREPE's own hop, at which some held-out files are also scored (what a longer hop costs the teacher)."""


def _split(data: str):
    """(train, held-out) file lists: FSDD takes 5-49 / 0-4, LibriSpeech utterance index % 5 != 4 / == 4."""
    fsdd = sorted(glob.glob(os.path.join(data, "fsdd", "*.wav")))
    libri = sorted(glob.glob(os.path.join(data, "librispeech*", "**", "*.flac"), recursive=True))
    if not fsdd:
        fsdd = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*.wav")))
        libri = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))
    held = [f for f in fsdd if int(os.path.basename(f).split("_")[2].split(".")[0]) < 5]
    held += [f for f in libri if int(os.path.basename(f).rsplit("-", 1)[1].split(".")[0]) % 5 == 4]
    held_set = set(held)
    return [f for f in fsdd + libri if f not in held_set], held


def _median_ms(function, runs: int) -> float:
    for _ in range(3):
        function()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return float(np.median(times) * 1000)


def _recalibrate_batchnorm(model, clips, *, batches: int = 40, batch_size: int = 16) -> None:
    """Re-estimate every BatchNorm's moving statistics on random 2 s training crops (no weight change).

    After a few hundred steps the moving averages are still mostly their initial values when
    the momentum is high (Keras MobileNetV3: 0.999, so 67% after 400 steps), and inference
    then sees other activations than training did.
    """
    from trillsson_tf.train.data import random_crop

    layers = [layer for layer in model.submodules if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.9
    rng = np.random.default_rng(0)
    for _ in range(batches):
        model(np.stack([random_crop(clips[i], rng) for i in rng.integers(0, len(clips), batch_size)]), training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def _keras_scores(model, clips) -> np.ndarray:
    return np.stack([model(clip[np.newaxis])["scores"].numpy()[0] for clip in clips])


def _all_int8_with_dft(model, config: dict, train_clips, held_clips) -> dict:
    """Everything int8, DFT and piecewise-linear dB included (normalised audio in): size and scores.

    The trained weights go into a ``compression='pwl'`` copy (the dB curve has no weights);
    clips are normalised whole and run in 1 s windows whose outputs are averaged.
    """
    pwl = models.build("wav2small", **{**config, "compression": "pwl"})
    pwl.clip_network.set_weights(model.clip_network.get_weights())
    audio = keras.Input((ONE_SECOND,), batch_size=1)
    network = keras.Model(audio, pwl.clip_network(pwl.dft_frontend(audio)))
    converter = tf.lite.TFLiteConverter.from_keras_model(network)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    calibration = [dft.normalize_clips(clip[np.newaxis])[:, :ONE_SECOND] for clip in train_clips]
    converter.representative_dataset = lambda: ([row] for row in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    content = converter.convert()
    scores = []
    for clip in held_clips:
        normalized = dft.normalize_clips(clip[np.newaxis])[0]
        windows = normalized[: len(normalized) // ONE_SECOND * ONE_SECOND].reshape(-1, ONE_SECOND)
        scores.append(tflite.tflite_embeddings(content, windows).mean(axis=0))
    return {"bytes": len(content), "scores": np.stack(scores)}


def _spec(name: str, hop_ms: float) -> str:
    return TEACHER_SPECS[name].format(hop_ms=int(hop_ms) if float(hop_ms).is_integer() else hop_ms)


def _training_subset(train, fsdd_every: int) -> list:
    """Every ``fsdd_every``-th FSDD training file and every LibriSpeech one (a cheaper teacher pass)."""
    return [f for f in train if "librispeech" not in f][::fsdd_every] + [f for f in train if "librispeech" in f]


def _held_out_targets(name: str, teacher, files, clips, out: str) -> dict:
    """Teacher scores ``[n, k]`` of ``clips``, cached in ``<out>/held_out/`` (a killed run resumes), and their cost."""
    key = hashlib.sha1("\n".join([teacher.identity, *files]).encode()).hexdigest()[:16]
    path = os.path.join(out, "held_out", f"{name}_{key}.npz")
    if os.path.isfile(path):
        with np.load(path) as stored:
            return {"scores": stored["scores"], "cpu_seconds": float(stored["cpu_seconds"])}
    began = time.process_time()
    scores = []
    for index, clip in enumerate(clips):
        scores.append(teacher(clip[np.newaxis])["embedding"][0])
        if index % 50 == 49:
            print(f"{teacher.spec}: held-out targets {index + 1}/{len(clips)}", flush=True)
    result = {"scores": np.stack(scores), "cpu_seconds": time.process_time() - began}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **result)
    write_atomic(path, buffer.getvalue())
    return result


def _crepe_reference(teacher, held, held_clips, targets, args) -> dict:
    """The teacher at its hop against CREPE at its own 10 ms hop, on an even subset of the held-out files."""
    count = min(args.crepe_reference_files, len(held))
    rows = np.unique(np.linspace(0, len(held) - 1, count).round().astype(int))
    reference = load_teacher(_spec("crepe", REFERENCE_HOP_MS))
    fine = _held_out_targets("crepe", reference, [held[i] for i in rows], [held_clips[i] for i in rows], args.out)
    return {
        "hop_ms": REFERENCE_HOP_MS,
        "files": len(rows),
        "librispeech_files": sum("librispeech" in held[i] for i in rows),
        "audio_seconds": round(sum(len(held_clips[i]) for i in rows) / 16000, 1),
        "cpu_seconds": round(fine["cpu_seconds"], 1),
        "ccc": score_agreement(fine["scores"], targets[rows], names=teacher.score_names),
    }


def _previous(path: str) -> dict:
    """The results file's report when it has this script's layout (teachers kept across runs), else a fresh one."""
    if os.path.isfile(path):
        with open(path) as handle:
            report = json.load(handle)
        if "teachers" in report:
            return report
    return {"teachers": {}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=os.path.join("..", "shared", "data"),
        help="folder with fsdd/ and librispeech_test_other_10spk/",
    )
    parser.add_argument("--out", default=os.path.join("runs", "emotion_benchmark"))
    parser.add_argument("--teachers", nargs="+", choices=list(TEACHER_SPECS), default=list(TEACHER_SPECS))
    parser.add_argument("--students", nargs="+", choices=STUDENTS, default=list(STUDENTS))
    parser.add_argument("--steps", type=int, default=3000, help="Wav2Small distillation steps")
    parser.add_argument("--mobilenet-steps", type=int, default=600, help="distillation steps of each MobileNet student")
    parser.add_argument("--crepe-hop-ms", type=float, default=40.0, help="CREPE's hop for targets (its own: 10 ms)")
    parser.add_argument(
        "--crepe-fsdd-every", type=int, default=1, help="CREPE targets for every n-th FSDD training file only"
    )
    parser.add_argument(
        "--crepe-reference-files", type=int, default=40, help="held-out files CREPE also scores at its 10 ms hop"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="distillation seed (weights, crops, order)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--ccc-weight", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=50, help="timed LiteRT calls (TFLM: a fifth of them)")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse finished distillation runs in --out of the same length"
    )
    parser.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)
    command = " ".join(["benchmarks/emotion_benchmark.py", *(sys.argv[1:] if argv is None else argv)])
    date = time.strftime("%Y-%m-%d")
    results_json = os.path.join(args.results, "emotion_benchmark.json")

    train, held = _split(args.data)
    held_clips = [load_audio(path) for path in held]
    report = _previous(results_json)
    report.update({"train_files": len(train), "held_out_files": len(held)})

    exports, all_targets = {}, {}
    for name in args.teachers:
        spec = _spec(name, args.crepe_hop_ms)
        teacher = load_teacher(spec)
        names = list(teacher.score_names)
        files = train if name != "crepe" else _training_subset(train, args.crepe_fsdd_every)
        held_out = _held_out_targets(name, teacher, held, held_clips, args.out)
        targets = all_targets[name] = held_out["scores"]
        entry = report["teachers"].get(name, {})
        if entry.get("identity") != teacher.identity or entry.get("train_files") != len(files):
            entry = {"students": {}}  # another hop or subset: its old rows no longer belong here
        report["teachers"][name] = entry
        entry.update(
            {
                "spec": spec,
                "identity": teacher.identity,
                "parameters": teacher.parameters,
                "scores": names,
                "train_files": len(files),
                "train_audio_seconds": round(sum(soundfile.info(path).duration for path in files), 1),
                "held_out_cpu_seconds": round(held_out["cpu_seconds"], 1),
                "held_out_audio_seconds": round(sum(len(clip) for clip in held_clips) / 16000, 1),
            }
        )
        if name == "crepe":
            entry["hop_ms"] = args.crepe_hop_ms
            entry["fsdd_every"] = args.crepe_fsdd_every
            entry["reference"] = _crepe_reference(teacher, held, held_clips, targets, args)
        for student in args.students:
            steps = args.steps if student == "wav2small" else args.mobilenet_steps
            began, cpu_began = time.perf_counter(), time.process_time()
            out_dir = os.path.join(args.out, name, student)
            run_file = os.path.join(out_dir, "export", "run.json")
            finished = json.load(open(run_file)) if args.reuse and os.path.isfile(run_file) else {}
            if finished.get("step") == steps and finished.get("training", {}).get("seed") == args.seed:
                run = finished  # a finished run of the same length and seed: measure it again
            else:
                run = distill(
                    files,
                    out_dir=out_dir,
                    teacher=teacher,
                    student=student,
                    outputs=len(names),
                    ccc_weight=args.ccc_weight,
                    steps=steps,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    seed=args.seed,
                    checkpoint_every=max(1, steps // 4),
                    validation_fraction=0.0,
                    cache_dir=os.path.join(args.out, "targets"),
                    overwrite=True,
                    progress=True,
                )
            exports[name, student] = run["export"]
            model = keras.models.load_model(os.path.join(run["export"], "model.keras"))
            if student != "wav2small":  # short runs: see _recalibrate_batchnorm
                _recalibrate_batchnorm(model, [load_audio(path) for path in files[::10]])
            scores = _keras_scores(model, held_clips)
            mean = np.asarray(read_metadata(run["export"])["target_mean"], np.float32)
            entry["training_mean"] = score_agreement(targets, np.tile(mean, (len(held), 1)), names=names)
            entry["students"][student] = {
                "parameters": run["student"]["parameters"],
                "float32_bytes": run["student"]["parameters"] * 4,
                "steps": steps,
                "train_seconds": round(time.perf_counter() - began, 1),
                "cpu_seconds": round(time.process_time() - cpu_began, 1),  # with the teacher's targets if not cached
                "ccc_float": score_agreement(targets, scores, names=names),
                "command": command,
                "date": date,
            }
            print(name, student, json.dumps(entry["students"][student]), flush=True)

    calibration_files = train[:: max(1, len(train) // 64)]
    calibration = np.stack([np.resize(load_audio(path), 2 * ONE_SECOND) for path in calibration_files])
    for (name, student), export in exports.items():
        if name == "prosody" and student != "wav2small":
            path = os.path.join(args.out, f"{student}_int8.tflite")
            card = tflite.convert(
                export, path, quantize="int8", frontend=False, representative_audio=calibration, overwrite=True
            )
            report["teachers"][name]["students"][student]["int8_bytes"] = card["size_bytes"]
    if ("prosody", "wav2small") in exports:
        report["wav2small"] = _wav2small_deployment(
            exports["prosody", "wav2small"], held_clips, all_targets["prosody"], calibration, calibration_files, args
        )
        report["wav2small"].update({"command": command, "date": date})
        report["teachers"]["prosody"]["students"]["wav2small"]["int8_bytes"] = report["wav2small"]["micro_int8"][
            "bytes"
        ]
        report["targets"] = _targets(report)
    cached = {name: all_targets.get(name) for name in TEACHER_SPECS}
    for name, entry in report["teachers"].items():  # a teacher not run this time: its held-out targets, if cached
        key = hashlib.sha1("\n".join([entry["identity"], *held]).encode()).hexdigest()[:16]
        path = os.path.join(args.out, "held_out", f"{name}_{key}.npz")
        if cached.get(name) is None and os.path.isfile(path):
            with np.load(path) as stored:
                cached[name] = stored["scores"]
    if cached["prosody"] is not None and cached["crepe"] is not None:
        report["pitch_agreement"] = _pitch_agreement(cached["prosody"], cached["crepe"])

    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    for path in (os.path.join(args.out, "benchmark.json"), results_json):
        write_atomic(path, text)
    markdown = _markdown(report)
    write_atomic(os.path.join(args.results, "emotion_benchmark.md"), markdown)
    print(markdown)
    return report


def _pitch_agreement(prosody_scores, crepe_scores) -> dict:
    """Pearson r between prosody's ``pitch`` (YIN median, standardised) and CREPE's f0 median, voiced files."""
    pitch = prosody_scores[:, PROSODY_SCORES.index("pitch")]
    f0, voiced = crepe_scores[:, 0], crepe_scores[:, 2] > 0
    keep = voiced & np.isfinite(pitch) & np.isfinite(f0)
    return {"pearson_r": float(np.corrcoef(pitch[keep], f0[keep])[0, 1]), "files": int(keep.sum())}


def _wav2small_deployment(export, held_clips, targets, calibration, calibration_files, args) -> dict:
    """Wav2Small for TFLite Micro (dB mel bands of 1 s in, int8 throughout) and its variants: sizes, CCC, latency."""
    w2s = keras.models.load_model(os.path.join(export, "model.keras"))
    micro_path = os.path.join(args.out, "wav2small_int8_micro.tflite")
    card = tflite.convert(
        export,
        micro_path,
        quantize="int8",
        frontend=False,
        representative_audio=calibration,
        overwrite=True,
    )
    micro_report = micro.to_micro(micro_path, os.path.join(args.out, "micro"), name="wav2small_model", overwrite=True)
    content = open(micro_path, "rb").read()
    runtime_int8 = TFLiteModel(micro_path, num_threads=1)
    int8_scores = np.stack([runtime_int8(clip)["scores"][0] for clip in held_clips])

    first_second = np.stack(
        [np.resize(clip, ONE_SECOND) if len(clip) < ONE_SECOND else clip[:ONE_SECOND] for clip in held_clips]
    )
    features = dft.features(dft.normalize_clips(first_second))
    litert = tflite.tflite_embeddings(content, features)
    details, out = micro_report["input"], micro_report["output"]
    quantized = np.clip(np.round(features / details["scale"]) + details["zero_point"], -128, 127).astype(np.int8)
    on_tflm = (
        micro.micro_run(content, quantized, arena_bytes=micro_report["arena_bytes"]).astype(np.float32)
        - out["zero_point"]
    ) * out["scale"]
    agreement = parity(litert, on_tflm)

    inside_path = os.path.join(args.out, "wav2small_int8_frontend_inside.tflite")
    inside_card = tflite.convert(export, inside_path, quantize="int8", representative_audio=calibration, overwrite=True)
    inside = TFLiteModel(inside_path, num_threads=1)
    inside_scores = np.stack([inside(clip)["scores"][0] for clip in held_clips])
    all_int8 = _all_int8_with_dft(
        w2s,
        read_metadata(export)["build"]["config"],
        [load_audio(path) for path in calibration_files],
        held_clips,
    )

    # Latency of 1 s on this host, one thread.
    runner = make_interpreter(model_content=content, num_threads=1).get_signature_runner("serving_default")
    ((name, _),) = runner.get_input_details().items()
    one = quantized[:1]
    litert_ms = _median_ms(lambda: runner(**{name: one}), args.runs)
    from tflite_micro.python.tflite_micro import runtime as tflm_runtime

    tflm = tflm_runtime.Interpreter.from_bytes(content, arena_size=micro_report["arena_bytes"])

    def tflm_call():
        tflm.set_input(one, 0)
        tflm.invoke()

    tflm_ms = _median_ms(tflm_call, max(5, args.runs // 5))
    frontend_ms = _median_ms(lambda: dft.features(dft.normalize_clips(first_second[:1])), args.runs)
    inside_ms = _median_ms(lambda: inside(first_second[0]), args.runs)

    return {
        "parameters": int(w2s.count_params()),
        "parameters_network": int(w2s.clip_network.count_params()),
        "parameters_fixed_frontend": int(w2s.dft_frontend.count_params()),
        "gflops_per_second_of_audio": round(models.clip_gflops(w2s, ONE_SECOND), 4),
        "micro_int8": {
            "file": micro_path,
            "bytes": card["size_bytes"],
            "input": card["inputs"][0],
            "ops": micro_report["ops"],
            "arena_used_bytes": micro_report["arena_used_bytes"],
            "arena_bytes": micro_report["arena_bytes"],
            "ccc": score_agreement(targets, int8_scores, names=PROSODY_SCORES),
            "tflm_vs_litert": {
                "ccc": ccc(on_tflm, litert).tolist(),
                "mean_cosine": agreement["mean_cosine"],
                "max_abs_diff": agreement["max_abs_diff"],
                "output_step": out["scale"],
                "clips": len(held_clips),
            },
        },
        "frontend_inside_int8": {
            "bytes": inside_card["size_bytes"],
            "float_ops": inside_card["float_ops"],
            "ccc": score_agreement(targets, inside_scores, names=PROSODY_SCORES),
        },
        "all_int8_with_dft": {
            "bytes": all_int8["bytes"],
            "ccc": score_agreement(targets, all_int8["scores"], names=PROSODY_SCORES),
        },
        "latency_ms_1s": {
            "litert_int8_network_1_thread": round(litert_ms, 3),
            "tflm_int8_network_host": round(tflm_ms, 2),
            "numpy_frontend": round(frontend_ms, 3),
            "litert_int8_frontend_inside_1_thread": round(inside_ms, 3),
        },
    }


def _targets(report: dict) -> dict:
    w2s = report["wav2small"]
    micro_int8 = w2s["micro_int8"]
    return {
        "int8_bytes_le_100kb": micro_int8["bytes"] <= 100 * 1024,
        "parameters_60k_80k": 60_000 <= w2s["parameters"] <= 80_000,
        "arena_le_512kb": micro_int8["arena_bytes"] <= 512 * 1024,
        "tflm_vs_litert_ge_0_99": min(
            min(micro_int8["tflm_vs_litert"]["ccc"]), micro_int8["tflm_vs_litert"]["mean_cosine"]
        )
        >= 0.99,
        "ccc_ge_0_8_each_score": report["teachers"]["prosody"]["students"]["wav2small"]["ccc_float"]["min"] >= 0.8,
    }


def _ccc_cells(agreement, names) -> str:
    return " | ".join(f"{agreement['per_score'][name]:.3f}" for name in names) + f" | {agreement['mean']:.3f}"


def _teacher_section(name: str, entry: dict, commands: dict) -> list:
    names = entry["scores"]
    audio_s = entry["held_out_audio_seconds"]
    rows = ["", f"## Teacher `{entry['spec']}` ({', '.join(names)})", ""]
    if name == "crepe":
        reference = entry["reference"]
        subset = (
            f"; one in {entry['fsdd_every']} FSDD training files and every LibriSpeech one"
            if entry["fsdd_every"] > 1
            else ""
        )
        rows += [
            f"CREPE full ({entry['parameters']:,} parameters) at a {entry['hop_ms']:g} ms hop, on "
            f"{entry['train_files']:,} training files ({entry['train_audio_seconds']:,.0f} s of audio{subset}). Here "
            f"the teacher took {entry['held_out_cpu_seconds'] / audio_s:.2f} s of CPU per second of audio at this hop "
            f"(held-out pass: {entry['held_out_cpu_seconds']:,.0f} s for {audio_s:,.0f} s) and "
            f"{reference['cpu_seconds'] / reference['audio_seconds']:.2f} s at CREPE's {reference['hop_ms']} ms hop. "
            "Hop and files were chosen so that the CREPE run (targets and three students) fits in 30-40 minutes of "
            "CPU on the shared 2-core machine; the first row gives what the hop costs the teacher itself, on "
            f"{reference['files']} held-out files ({reference['librispeech_files']} LibriSpeech, "
            f"{reference['audio_seconds']:g} s).",
            "",
        ]
    else:
        rows += [f"{entry['train_files']:,} training files ({entry['train_audio_seconds']:,.0f} s of audio).", ""]
    rows += [
        f"| model | parameters | int8 bytes | steps | CCC {' | CCC '.join(names)} | mean | run |",
        "|---|---:|---:|---:|" + "---:|" * (len(names) + 1) + "---|",
    ]
    if name == "crepe":
        rows.append(
            f"| the teacher at {entry['hop_ms']:g} ms against itself at {entry['reference']['hop_ms']} ms "
            f"({entry['reference']['files']} held-out files) | {entry['parameters']:,} | - | - | "
            f"{_ccc_cells(entry['reference']['ccc'], names)} | |"
        )
    if "training_mean" in entry:
        rows.append(
            f"| predict the training mean (baseline) | 0 | - | - | {_ccc_cells(entry['training_mean'], names)} | |"
        )
    for student, result in entry["students"].items():
        note = " (BatchNorm statistics re-estimated on 40 training batches)" if student != "wav2small" else ""
        run = commands.setdefault((result["command"], result["date"]), len(commands) + 1)
        int8 = f"{result['int8_bytes']:,}" if "int8_bytes" in result else "-"
        rows.append(
            f"| {student}{note} | {result['parameters']:,} | {int8} | {result['steps']} | "
            f"{_ccc_cells(result['ccc_float'], names)} | [{run}] |"
        )
    return rows


def _deployment_section(report: dict, commands: dict) -> list:
    w2s = report["wav2small"]
    micro_int8 = w2s["micro_int8"]
    names = report["teachers"]["prosody"]["scores"]
    student = report["teachers"]["prosody"]["students"]["wav2small"]
    run = commands.setdefault((w2s["command"], w2s["date"]), len(commands) + 1)

    def cells(agreement):
        return " | ".join(f"{agreement['per_score'][name]:.3f}" for name in names)

    return [
        "",
        f"## Wav2Small (prosody teacher) on the way to a microcontroller (run [{run}])",
        "",
        f"| model | parameters | int8 bytes | CCC {' | CCC '.join(names)} |",
        "|---|---:|---:|" + "---:|" * len(names),
        f"| wav2small float (Keras, whole clips) | {w2s['parameters']:,} | {micro_int8['bytes']:,} | "
        f"{cells(student['ccc_float'])} |",
        f"| wav2small int8, TFLite Micro form (1 s windows, numpy frontend) | {w2s['parameters_network']:,} + "
        f"{w2s['parameters_fixed_frontend']:,} fixed | {micro_int8['bytes']:,} | {cells(micro_int8['ccc'])} |",
        f"| wav2small int8 network, float frontend inside (LiteRT) | {w2s['parameters']:,} | "
        f"{w2s['frontend_inside_int8']['bytes']:,} | {cells(w2s['frontend_inside_int8']['ccc'])} |",
        f"| wav2small all int8, DFT + PWL dB inside (not used: shown for the record) | {w2s['parameters']:,} | "
        f"{w2s['all_int8_with_dft']['bytes']:,} | {cells(w2s['all_int8_with_dft']['ccc'])} |",
        "",
        "| Wav2Small target | measured | met |",
        "|---|---:|---|",
        f"| int8 `.tflite` <= 100 KB | {micro_int8['bytes']:,} B | {report['targets']['int8_bytes_le_100kb']} |",
        f"| parameters 60-80 K | {w2s['parameters']:,} | {report['targets']['parameters_60k_80k']} |",
        f"| TFLM arena (1 s) <= 512 KB | {micro_int8['arena_bytes']:,} B (used {micro_int8['arena_used_bytes']:,}) | "
        f"{report['targets']['arena_le_512kb']} |",
        f"| TFLM vs LiteRT, same file, {micro_int8['tflm_vs_litert']['clips']} clips: CCC per score / mean cosine >= 0.99 | "
        f"{' / '.join(f'{v:.4f}' for v in micro_int8['tflm_vs_litert']['ccc'])} / {micro_int8['tflm_vs_litert']['mean_cosine']:.5f} | "
        f"{report['targets']['tflm_vs_litert_ge_0_99']} |",
        f"| CCC >= 0.8 on each score (float) | min {student['ccc_float']['min']:.3f} | "
        f"{report['targets']['ccc_ge_0_8_each_score']} |",
        "",
        f"Latency of 1 s of audio on this host, median: int8 network in LiteRT (1 thread) "
        f"{w2s['latency_ms_1s']['litert_int8_network_1_thread']} ms; the same file in TFLite Micro (host, reference kernels) "
        f"{w2s['latency_ms_1s']['tflm_int8_network_host']} ms; numpy frontend (what the board computes) "
        f"{w2s['latency_ms_1s']['numpy_frontend']} ms; int8 with the float frontend inside (LiteRT, 1 thread) "
        f"{w2s['latency_ms_1s']['litert_int8_frontend_inside_1_thread']} ms. "
        f"{w2s['gflops_per_second_of_audio']} GFLOPs per second of audio.",
        "",
        f"TFLite Micro ops: {', '.join(micro_int8['ops'])}.",
    ]


def _markdown(report: dict) -> str:
    rows = [
        "# Emotion benchmark: Wav2Small and MobileNet students, prosody and CREPE score teachers",
        "",
        f"{report['train_files']} training files, {report['held_out_files']} held-out files (FSDD takes 0-4, every "
        "fifth LibriSpeech utterance). CCC per score, computed once over the held-out set; students as float Keras "
        "models on whole clips. The training mean (the mean training target for every file) is a constant: CCC 0. "
        "Each student row names the run that produced it (listed at the end: `--teachers` / `--students` run a "
        "part, and the results file keeps the other rows).",
    ]
    commands = {}
    for name in TEACHER_SPECS:
        if name in report["teachers"]:
            rows += _teacher_section(name, report["teachers"][name], commands)
    if "pitch_agreement" in report:
        agreement = report["pitch_agreement"]
        rows += [
            "",
            f"The two teachers' pitch: prosody's `pitch` (YIN median) against CREPE's `f0_median_semitones`, Pearson r "
            f"{agreement['pearson_r']:.3f} over the {agreement['files']} held-out files CREPE finds voiced.",
        ]
    if "wav2small" in report:
        rows += _deployment_section(report, commands)
    rows += ["", "Runs:", ""]
    rows += [f"[{number}] `{command}`, {date}" for (command, date), number in commands.items()]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
