"""Scale benchmark: Beam targets vs the local cache builder, mirrored vs one device, ONNX beside .tflite.

1. **Teacher targets** (``speech_embedding``, ``local`` mode: one target per 2 s segment) on the
   same files, timed from nothing (teacher load, decoding and resampling included):
   the single-process cache builder (:func:`trillsson_tf.train.targets.cached_targets`), the Beam
   DirectRunner with one worker (``workers=1``: batching without parallelism), with two workers
   (``workers=2``: the default multi-threading mode) and with two worker processes
   (``--direct_running_mode=multi_processing``), ``--repeats`` interleaved rounds, the fastest
   counting. Target: two workers >= 1.6x the cache builder.
   The shards are compared with the cache (max abs diff, min cosine).
2. **Mirrored strategy**: ``tiny_cnn`` distilled on those targets for the same steps and global
   batch on one device and on two logical CPU devices (``MirroredStrategy``); final validation
   loss (deterministic, on the held-out files) and the mean of the last five logged training
   losses. Target: within 2%.
3. **ONNX beside .tflite**: Wav2Small (whole model, convolution frontend, audio in) and the
   ``tiny_cnn`` per-chunk network (log-mel patch in), random weights: file size and latency (one
   thread, median of ``--runs`` calls after 5 warm-up calls) in onnxruntime and in LiteRT, and
   parity with Keras.

Writes ``benchmarks/results/scale_benchmark.{json,md}`` (``--quick``: ``scale_benchmark_quick.*``).

    .venv/bin/python benchmarks/scale_benchmark.py --data ../shared/data
    .venv/bin/python benchmarks/scale_benchmark.py --quick          # fewer files and steps
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from trillsson_tf._keras import keras, tf  # noqa: E402

# Two logical CPU devices for the mirrored strategy: configured before TensorFlow runs anything.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import argparse  # noqa: E402
import datetime  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from trillsson_tf import models  # noqa: E402
from trillsson_tf.audio import load_audio  # noqa: E402
from trillsson_tf.train.data import find_audio, load_clips  # noqa: E402
from trillsson_tf.train.distill import distill  # noqa: E402
from trillsson_tf.metrics import parity  # noqa: E402
from trillsson_tf.pipelines import build_targets  # noqa: E402
from trillsson_tf.train.targets import cached_targets, read_targets  # noqa: E402
from trillsson_tf.teachers import load_teacher  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODE = "local"
PARTS = ("targets", "mirrored", "onnx")


def _files(data: str, quick: bool) -> list:
    fsdd = sorted(glob.glob(os.path.join(data, "fsdd", "*.wav")))
    librispeech = sorted(glob.glob(os.path.join(data, "librispeech_test_other_10spk", "*", "*.flac")))
    if quick:
        fsdd, librispeech = fsdd[::10], librispeech[::5]
    return fsdd + librispeech


_BEAM_CONFIGS = (
    ("1_worker", 1, []),
    ("2_threads", 2, []),
    ("2_processes", 2, ["--direct_running_mode=multi_processing"]),
)


def _cache_builder_s(files: list, cache_dir: str):
    began = time.perf_counter()
    teacher = load_teacher("speech_embedding")
    local = cached_targets(teacher, load_clips(find_audio(files)), mode=MODE, cache_dir=cache_dir)
    return time.perf_counter() - began, local.directory


def targets_part(files: list, work: str, *, repeats: int) -> dict:
    """Cache builder vs Beam DirectRunner with 1 worker, 2 threads and 2 processes on ``files``.

    Each builder runs ``repeats`` times, interleaved, and the fastest run counts: other work on
    a shared 2-core machine only ever slows a run down.
    """
    loads = [os.getloadavg()[0]]
    timings = {"cache_builder": [], **{name: [] for name, _, _ in _BEAM_CONFIGS}}
    scores = {}
    for repeat in range(repeats):
        seconds, cache_folder = _cache_builder_s(files, os.path.join(work, f"cache{repeat}"))
        timings["cache_builder"].append(seconds)
        print(f"cache builder: {seconds:.1f} s")
        _, cache_records = read_targets(cache_folder)
        keys = sorted(cache_records)
        for name, workers, extra in _BEAM_CONFIGS:
            began = time.perf_counter()
            summary = build_targets(
                files,
                os.path.join(work, f"beam_{name}"),
                mode=MODE,
                workers=workers,
                pipeline_args=extra,
                overwrite=True,
            )
            timings[name].append(time.perf_counter() - began)
            assert summary["records"] == len(files), summary
            print(f"Beam DirectRunner, {name}: {timings[name][-1]:.1f} s")
            _, beam_records = read_targets(os.path.join(work, f"beam_{name}"))
            assert keys == sorted(beam_records)
            scores[name] = parity(
                np.concatenate([cache_records[k].targets for k in keys]),
                np.concatenate([beam_records[k].targets for k in keys]),
            )
        loads.append(os.getloadavg()[0])
    best = {name: min(values) for name, values in timings.items()}
    single_s = best.pop("cache_builder")
    return {
        "files": len(files),
        "segments": int(sum(len(record.targets) for record in cache_records.values())),
        "audio_s": round(sum(len(record.audio) for record in cache_records.values()) / 16000, 1),
        "repeats": repeats,
        "all_runs_s": {name: [round(value, 2) for value in values] for name, values in timings.items()},
        "cache_builder_s": round(single_s, 2),
        "beam_s": {name: round(seconds, 2) for name, seconds in best.items()},
        "speedup": {name: round(single_s / seconds, 3) for name, seconds in best.items()},
        "target_speedup": 1.6,
        "met": single_s / best["2_threads"] >= 1.6,
        "shards_vs_cache": {
            name: {"max_abs_diff": value["max_abs_diff"], "min_cosine": value["min_cosine"]}
            for name, value in scores.items()
        },
        # Other work on the machine skews a 2-worker speedup: the 1-minute load average before and after each round.
        "load_average": [round(load, 2) for load in loads],
    }


def mirrored_part(targets_dir: str, work: str, *, steps: int, batch_size: int) -> dict:
    """The same distillation on one device and mirrored over two logical CPU devices.

    A third run on one device from other initial weights (seed 1) shows the run-to-run noise.
    """
    runs = {}
    for name, strategy, init_seed in (
        ("none", "none", 0),
        ("mirrored", "mirrored", 0),
        ("none, other init", "none", 1),
    ):
        keras.utils.set_random_seed(init_seed)  # initial weights: the same for the first two runs
        began = time.perf_counter()
        record = distill(
            targets=targets_dir,
            out_dir=os.path.join(work, f"distill_{strategy}_{init_seed}"),
            strategy=strategy,
            steps=steps,
            batch_size=batch_size,
            checkpoint_every=steps,
            validation_fraction=0.1,
            overwrite=True,
            progress=True,
        )
        losses = [loss for _, loss in record["loss_history"]]
        runs[name] = {
            "replicas": record["training"]["replicas"],
            "final_validation_loss": record["validation_history"][-1][1],
            "last5_train_loss": float(np.mean(losses[-5:])),
            "steps_per_second": round(record["steps_per_second"], 2),
            "wall_s": round(time.perf_counter() - began, 1),
        }
        print(f"{name}: {runs[name]}")

    def relative(key, other="mirrored"):
        return round(abs(runs[other][key] / runs["none"][key] - 1), 5)

    difference = relative("final_validation_loss")
    return {
        "student": record["student"]["name"],
        "steps": steps,
        "global_batch": batch_size,
        "runs": runs,
        "relative_diff_validation_loss": difference,
        "relative_diff_last5_train_loss": relative("last5_train_loss"),
        "noise_relative_diff_validation_loss": relative("final_validation_loss", "none, other init"),
        "noise_relative_diff_last5_train_loss": relative("last5_train_loss", "none, other init"),
        "target": 0.02,
        "met": difference <= 0.02,
    }


def _median_ms(call, runs: int) -> float:
    for _ in range(5):
        call()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return round(1000 * float(np.median(times)), 3)


def _tflite_call(path: str, value: np.ndarray):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=1).get_signature_runner("serving_default")
    (name,) = runner.get_input_details()
    return lambda: runner(**{name: value})


def onnx_part(work: str, clip: np.ndarray, *, runs: int) -> list:
    """Sizes and one-thread latencies of ONNX and .tflite files of the same models."""
    from trillsson_tf.converters.onnx import convert_onnx, onnx_outputs, onnx_session
    from trillsson_tf.converters.common import log_mel_patch_rows
    from trillsson_tf.converters.tflite import convert

    keras.utils.set_random_seed(0)
    cases = []
    if "wav2small" in models.available():
        cases.append(("wav2small (audio in, 2 s)", models.build("wav2small"), True, clip[np.newaxis]))
    tiny = models.build("tiny_cnn")
    cases.append(
        ("tiny_cnn chunk network (patch in)", tiny, False, log_mel_patch_rows(clip[np.newaxis], tiny.frontend)[:1])
    )
    rows = []
    for label, model, frontend, value in cases:
        stem = os.path.join(work, model.name + ("" if frontend else "_patch"))
        card = convert_onnx(model, stem + ".onnx", frontend=frontend, overwrite=True)
        session = onnx_session(open(stem + ".onnx", "rb").read())
        tflite_card = convert(model, stem + ".tflite", frontend=frontend, overwrite=True)
        rows.append(
            {
                "model": label,
                "parameters": int(model.count_params()),
                "onnx_bytes": card["size_bytes"],
                "tflite_float32_bytes": tflite_card["size_bytes"],
                "onnx_ms": _median_ms(lambda: onnx_outputs(session, value), runs),
                "tflite_float32_ms": _median_ms(_tflite_call(stem + ".tflite", value), runs),
                "onnx_parity_mean_cosine": card["parity"]["mean_cosine"],
                "onnx_parity_max_abs_diff": card["parity"]["max_abs_diff"],
                "tflite_parity_mean_cosine": tflite_card["parity"]["mean_cosine"],
            }
        )
        print(rows[-1])
    return rows


def _markdown(report: dict) -> str:
    t, m = report["targets"], report["mirrored"]
    lines = [
        f"# Scale benchmark ({report['date']}, {report['machine']}{', quick' if report['quick'] else ''})",
        "",
        f"## Teacher targets: {t['files']} files, {t['audio_s']} s of audio, {t['segments']} local-mode segments "
        "(speech_embedding)",
        "",
        "| builder | seconds | speedup vs cache builder |",
        "|---|---:|---:|",
        f"| single-process cache builder | {t['cache_builder_s']} | 1.00x |",
        f"| Beam DirectRunner, 1 worker | {t['beam_s']['1_worker']} | {t['speedup']['1_worker']:.2f}x |",
        f"| Beam DirectRunner, 2 workers (threads, the default) | {t['beam_s']['2_threads']} | "
        f"{t['speedup']['2_threads']:.2f}x (target 1.6x: **{'met' if t['met'] else 'not met'}**) |",
        f"| Beam DirectRunner, 2 worker processes | {t['beam_s']['2_processes']} | {t['speedup']['2_processes']:.2f}x |",
        "",
        f"Fastest of {t['repeats']} interleaved rounds; all runs (s): "
        + "; ".join(f"{name} {values}" for name, values in t["all_runs_s"].items())
        + ". 1-minute load average "
        f"around the rounds: {t['load_average']} (other processes share the {report['machine']}).",
        "",
        "Shards vs cache, largest difference over the three Beam runs: max abs diff "
        f"{max(v['max_abs_diff'] for v in t['shards_vs_cache'].values()):.3g}, min cosine "
        f"{min(v['min_cosine'] for v in t['shards_vs_cache'].values()):.7f}.",
        "",
        f"## Mirrored strategy: {m['student']}, {m['steps']} steps, global batch {m['global_batch']}",
        "",
        "| devices | final validation loss | mean of last 5 train losses | steps/s |",
        "|---|---:|---:|---:|",
    ]
    for name, run in m["runs"].items():
        lines.append(
            f"| {name} ({run['replicas']} replica{'s' if run['replicas'] > 1 else ''}) | "
            f"{run['final_validation_loss']:.5g} | {run['last5_train_loss']:.5g} | {run['steps_per_second']} |"
        )
    lines += [
        "",
        f"Mirrored vs one device, same initial weights: final validation loss {100 * m['relative_diff_validation_loss']:.2f}% "
        f"apart (target 2%: **{'met' if m['met'] else 'not met'}**), last training losses "
        f"{100 * m['relative_diff_last5_train_loss']:.2f}%. Run-to-run noise (one device, other initial weights): "
        f"{100 * m['noise_relative_diff_validation_loss']:.2f}% and {100 * m['noise_relative_diff_last5_train_loss']:.2f}%.",
        "",
        "## ONNX beside .tflite (float32, random weights, one thread)",
        "",
        "| model | parameters | .onnx bytes | .tflite bytes | onnxruntime ms | LiteRT ms | ONNX parity (cosine / max abs diff) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["onnx"]:
        lines.append(
            f"| {row['model']} | {row['parameters']:,} | {row['onnx_bytes']:,} | {row['tflite_float32_bytes']:,} | "
            f"{row['onnx_ms']} | {row['tflite_float32_ms']} | {row['onnx_parity_mean_cosine']:.6f} / "
            f"{row['onnx_parity_max_abs_diff']:.2g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=os.path.join("..", "shared", "data"),
        help="folder with fsdd/ and librispeech_test_other_10spk/",
    )
    parser.add_argument("--work", default=os.path.join("runs", "scale_benchmark"), help="scratch folder (replaced)")
    parser.add_argument("--steps", type=int, default=None, help="distillation steps (default 300, quick 60)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=100, help="timed calls per latency")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the target builders (the fastest counts)")
    parser.add_argument("--quick", action="store_true", help="a tenth of FSDD, a fifth of LibriSpeech, fewer steps")
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument(
        "--parts",
        nargs="+",
        default=list(PARTS),
        choices=PARTS,
        help="run only these parts; the others are kept from the saved report",
    )
    args = parser.parse_args(argv)

    stem = os.path.join(args.results, "scale_benchmark" + ("_quick" if args.quick else ""))
    report = {}
    if set(args.parts) != set(PARTS):
        with open(stem + ".json") as handle:
            report = json.load(handle)
    if "targets" in args.parts:  # timed from nothing; other parts reuse the folder's target cache
        shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work, exist_ok=True)
    files = _files(args.data, args.quick)
    if "targets" in args.parts:
        report["targets"] = targets_part(files, args.work, repeats=args.repeats)
    if "mirrored" in args.parts:
        # The mirrored runs train on the cache builder's targets of the files above (reused when just built).
        cache = cached_targets(
            load_teacher("speech_embedding"),
            load_clips(find_audio(files)),
            mode=MODE,
            cache_dir=os.path.join(args.work, "cache"),
        )
        report["mirrored"] = mirrored_part(
            cache.directory, args.work, steps=args.steps or (60 if args.quick else 300), batch_size=args.batch_size
        )
    if "onnx" in args.parts:
        clip = load_audio(sorted(glob.glob(os.path.join(args.data, "librispeech_test_other_10spk", "*", "*.flac")))[0])
        report["onnx"] = onnx_part(args.work, clip[:32000], runs=args.runs)
    report.update(
        {
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "quick": args.quick,
            "parts_run_last": args.parts,
        }
    )
    os.makedirs(args.results, exist_ok=True)
    with open(stem + ".json", "w") as handle:
        json.dump(report, handle, indent=2)
    with open(stem + ".md", "w") as handle:
        handle.write(_markdown(report))
    print(_markdown(report))
    return report


if __name__ == "__main__":
    main()
