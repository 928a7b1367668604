"""Emotion-student benchmark: Wav2Small and the MobileNet students distilled from the prosody teacher.

Distils the offline ``prosody`` teacher (three standardised per-clip scores: loudness range,
pitch, spectral tilt; :mod:`trillsson_tf.prosody`) into ``wav2small``, ``mobilenetv3small_adv``
and ``mobilenetv4convsmall`` (registry defaults, MSE + 0.5 x (1 - CCC)), and measures:

- CCC of each score on held-out files (FSDD takes 0-4 and every fifth LibriSpeech utterance;
  training uses the rest), float Keras models on whole clips; target >= 0.8 on each score;
- Wav2Small as int8 ``.tflite`` for TFLite Micro (dB mel bands of 1 s in, the frontend computed
  outside the model as a board would; :func:`trillsson_tf.converters.tflite.convert` with
  ``frontend=False``): file size (target <= 100 KB), parameters (60-80 K), tensor arena in the
  ``tflite-micro`` interpreter (target <= 512 KB), TFLM against LiteRT on the same file and the
  same inputs (CCC and mean cosine over the held-out clips' first second; target >= 0.99), its
  CCC against the teacher (runtime: whole clips in 1 s windows);
- Wav2Small int8 with the frontend inside (LiteRT; normalisation and spectrogram in float), and,
  for the record, everything in int8 including the DFT (``compression='pwl'``), the measurement
  behind keeping the spectrogram out of int8;
- latency of 1 s: int8 network in LiteRT (1 thread) and in TFLM on the host (reference
  kernels), the numpy frontend (what the board computes), the frontend-inside int8 model;
- the MobileNet students' CCC, parameters and int8 sizes beside Wav2Small's. They train for
  fewer steps (``--mobilenet-steps``, CPU time), so their BatchNorm moving statistics are
  re-estimated on training crops before they are scored (:func:`_recalibrate_batchnorm`).

Data: ``--data`` (``../shared/data``: FSDD and LibriSpeech test-other); the bundled
``trillsson_tf/sample_audio`` files are copies of some of those files, so they are used only
when ``--data`` is missing. Writes ``<out>/...`` and ``benchmarks/results/emotion_benchmark.{json,md}``.

    .venv/bin/python benchmarks/emotion_benchmark.py --data ../shared/data --out runs/emotion_benchmark
"""

import argparse
import glob
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from trillsson_tf.converters import micro, tflite
from trillsson_tf import models
from trillsson_tf._keras import keras, tf
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.distill import distill
from trillsson_tf.evaluate import score_agreement
from trillsson_tf.export import read_metadata
from trillsson_tf.frontend import dft
from trillsson_tf.litert import make_interpreter
from trillsson_tf.metrics import ccc, parity
from trillsson_tf.prosody import PROSODY_SCORES
from trillsson_tf.runtime import TFLiteModel
from trillsson_tf.teachers import load_teacher

STUDENTS = ("wav2small", "mobilenetv3small_adv", "mobilenetv4convsmall")
ONE_SECOND = 16000


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
    from trillsson_tf.data import random_crop

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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=os.path.join("..", "shared", "data"),
        help="folder with fsdd/ and librispeech_test_other_10spk/",
    )
    parser.add_argument("--out", default=os.path.join("runs", "emotion_benchmark"))
    parser.add_argument("--steps", type=int, default=2000, help="Wav2Small distillation steps")
    parser.add_argument("--mobilenet-steps", type=int, default=600, help="distillation steps of each MobileNet student")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--ccc-weight", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=50, help="timed LiteRT calls (TFLM: a fifth of them)")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse finished distillation runs in --out of the same length"
    )
    parser.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)

    train, held = _split(args.data)
    teacher = load_teacher("prosody")
    held_clips = [load_audio(path) for path in held]
    targets = np.stack([teacher(clip[np.newaxis])["embedding"][0] for clip in held_clips])
    report = {
        "teacher": "prosody",
        "scores": list(PROSODY_SCORES),
        "train_files": len(train),
        "held_out_files": len(held),
        "students": {},
    }

    exports = {}
    for student in STUDENTS:
        steps = args.steps if student == "wav2small" else args.mobilenet_steps
        began = time.perf_counter()
        run_file = os.path.join(args.out, student, "export", "run.json")
        if args.reuse and os.path.isfile(run_file) and json.load(open(run_file)).get("step") == steps:
            run = json.load(open(run_file))  # a finished run of the same length: measure it again
        else:
            run = distill(
                train,
                out_dir=os.path.join(args.out, student),
                teacher=teacher,
                student=student,
                outputs=3,
                ccc_weight=args.ccc_weight,
                steps=steps,
                batch_size=args.batch_size,
                lr=args.lr,
                checkpoint_every=max(1, steps // 4),
                validation_fraction=0.0,
                cache_dir=os.path.join(args.out, "targets"),
                overwrite=True,
                progress=True,
            )
        exports[student] = run["export"]
        model = keras.models.load_model(os.path.join(run["export"], "model.keras"))
        if student != "wav2small":  # short runs: see _recalibrate_batchnorm
            _recalibrate_batchnorm(model, [load_audio(path) for path in train[::10]])
        scores = _keras_scores(model, held_clips)
        report["students"][student] = {
            "parameters": run["student"]["parameters"],
            "float32_bytes": run["student"]["parameters"] * 4,
            "steps": steps,
            "train_seconds": round(time.perf_counter() - began, 1),
            "ccc_float": score_agreement(targets, scores, names=PROSODY_SCORES),
        }

    # Wav2Small for TFLite Micro: dB mel bands of 1 s in, int8 throughout.
    w2s = keras.models.load_model(os.path.join(exports["wav2small"], "model.keras"))
    calibration = np.stack([np.resize(load_audio(path), 2 * ONE_SECOND) for path in train[:: max(1, len(train) // 64)]])
    micro_path = os.path.join(args.out, "wav2small_int8_micro.tflite")
    card = tflite.convert(
        exports["wav2small"],
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
    inside_card = tflite.convert(
        exports["wav2small"], inside_path, quantize="int8", representative_audio=calibration, overwrite=True
    )
    inside = TFLiteModel(inside_path, num_threads=1)
    inside_scores = np.stack([inside(clip)["scores"][0] for clip in held_clips])
    all_int8 = _all_int8_with_dft(
        w2s,
        read_metadata(exports["wav2small"])["build"]["config"],
        [load_audio(path) for path in train[:: max(1, len(train) // 64)]],
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

    micro_parameters = int(w2s.clip_network.count_params())
    report["wav2small"] = {
        "parameters": int(w2s.count_params()),
        "parameters_network": micro_parameters,
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
    for student in STUDENTS[1:]:
        path = os.path.join(args.out, f"{student}_int8.tflite")
        student_card = tflite.convert(
            exports[student], path, quantize="int8", frontend=False, representative_audio=calibration, overwrite=True
        )
        report["students"][student]["int8_bytes"] = student_card["size_bytes"]
    report["students"]["wav2small"]["int8_bytes"] = card["size_bytes"]
    report["targets"] = _targets(report)

    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    for path in (os.path.join(args.out, "benchmark.json"), os.path.join(args.results, "emotion_benchmark.json")):
        with open(path, "w") as handle:
            json.dump(report, handle, indent=2)
    markdown = _markdown(report)
    with open(os.path.join(args.results, "emotion_benchmark.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return report


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
        "ccc_ge_0_8_each_score": report["students"]["wav2small"]["ccc_float"]["min"] >= 0.8,
    }


def _markdown(report: dict) -> str:
    w2s, students = report["wav2small"], report["students"]
    micro_int8 = w2s["micro_int8"]
    names = report["scores"]

    def ccc_cells(agreement):
        return " | ".join(f"{agreement['per_score'][name]:.3f}" for name in names)

    rows = [
        "# Emotion benchmark: Wav2Small and MobileNet students, prosody teacher",
        "",
        f"Teacher: `prosody` ({', '.join(names)}; standardised). {report['train_files']} training files, "
        f"{report['held_out_files']} held-out files (FSDD takes 0-4, every fifth LibriSpeech utterance). "
        "CCC computed once over the held-out set.",
        "",
        f"| model | parameters | int8 bytes | steps | CCC {' | CCC '.join(names)} |",
        "|---|---:|---:|---:|" + "---:|" * len(names),
    ]
    for student, entry in students.items():
        rows.append(
            f"| {student} (float Keras, whole clips) | {entry['parameters']:,} | {entry['int8_bytes']:,} | "
            f"{entry['steps']} | {ccc_cells(entry['ccc_float'])} |"
        )
    rows += [
        f"| (MobileNet students: {students['mobilenetv3small_adv']['steps']} steps, BatchNorm statistics re-estimated "
        "on 40 training batches before scoring) | | | | | | |",
        f"| wav2small int8, TFLite Micro form (1 s windows, numpy frontend) | {w2s['parameters_network']:,} + "
        f"{w2s['parameters_fixed_frontend']:,} fixed | {micro_int8['bytes']:,} | - | {ccc_cells(micro_int8['ccc'])} |",
        f"| wav2small int8 network, float frontend inside (LiteRT) | {w2s['parameters']:,} | "
        f"{w2s['frontend_inside_int8']['bytes']:,} | - | {ccc_cells(w2s['frontend_inside_int8']['ccc'])} |",
        f"| wav2small all int8, DFT + PWL dB inside (not used: shown for the record) | {w2s['parameters']:,} | "
        f"{w2s['all_int8_with_dft']['bytes']:,} | - | {ccc_cells(w2s['all_int8_with_dft']['ccc'])} |",
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
        f"| CCC >= 0.8 on each score (float) | min {students['wav2small']['ccc_float']['min']:.3f} | "
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
        "",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
