"""Compression and conversion benchmark (issue 4 targets): sizes, fidelity, pruning curve, latency.

On a distilled student (by default ``tiny_cnn`` distilled here from the offline
``speech_embedding`` teacher on FSDD training takes and half of the LibriSpeech speakers in
``../shared/data``; or any export with ``--export``):

* ``.tflite`` variants through :func:`trillsson_tf.converters.tflite.convert`: float32, float16 and int8 with
  the frontend inside (audio in), and float32, dynamic-range and int8 of the network alone
  (log-mel patch in, the numpy frontend of the runtime outside); file sizes and ratios;
* fidelity: mean cosine of each variant, run by :class:`trillsson_tf.runtime.TFLiteModel`, to
  the float Keras model (float64 frontend) on held-out real speech (FSDD test takes 0-4 and
  the LibriSpeech utterances of the speakers never trained on, cut to at most 8 s);
* pruning curve: :func:`trillsson_tf.optimize.optimize_export` at 50% and 80% sparsity with
  sparsity-preserving QAT and recovery by distillation against the unoptimized model, then
  int8, once pruning single weights and once in ``--block`` blocks (default 4x1: four
  consecutive inputs of the Dense and 1x1-convolution kernels, contiguous in the file); gzip
  size of each int8 file against the unpruned int8 file's, with the fidelity of each point (to
  the unoptimized float model). The pruning targets are judged on the block curve, the form to
  ship compressed;
* sizes at TRILLsson scale: the same variants of an untrained ``--scale-student`` (default
  ``trillsson1``, 5 M parameters; file sizes do not depend on the weights' values). On the
  74 K-parameter student a fixed part of every file (the float mel matrix of the audio-in
  forms, int32 biases, per-channel scales, the flatbuffer's tensor table) is a third of the
  int8 file, so its ratios say little about a TRILLsson-class model; the size targets are
  judged on this row and the tiny student's ratios are reported beside them;
* latency: LiteRT, one thread, median of ``--runs`` calls (after 3 warm-up calls) on 1 s of
  real speech, end to end through ``TFLiteModel`` (patch-in variants include the numpy log-mel),
  and the network alone for the patch-in variants; for the scale student too, its variants timed
  in alternating turns of 10 calls (``runtime_benchmark.median_seconds``), whose int8 / float32 ratio on
  the patch-in path is the latency target (the tiny student's is set by its
  float frontend, and so is the audio-in int8 file's, whose TFLite RFFT stays float).

Writes ``benchmarks/results/convert_benchmark.{json,md}`` and prints the markdown.

    .venv/bin/python benchmarks/convert_benchmark.py                    # distills first (~3 min)
    .venv/bin/python benchmarks/convert_benchmark.py --export runs/t1/export
"""

import argparse
import glob
import gzip
import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread everywhere, like the interpreter
os.environ.setdefault("OMP_NUM_THREADS", "1")
import platform
import statistics
import time

import numpy as np

from runtime_benchmark import median_seconds  # interleaved timing, as the runtime benchmark times its paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")
VARIANTS = {  # name: (quantize, frontend inside)
    "float32": ("float32", True),
    "float16": ("float16", True),
    "int8": ("int8", True),
    "float32_patch": ("float32", False),
    "dynamic_patch": ("dynamic", False),
    "int8_patch": ("int8", False),
}
SPARSITIES = (0.5, 0.8)
BLOCK = "4x1"
MAX_CLIP_SAMPLES = 8 * 16000
WARMUP_CALLS = 3
SCALE_TURN_CALLS = 10
TARGETS = {  # name: (comparison, goal), from issue 4
    "scale_int8_size_ratio": ("<=", 0.27),
    "scale_float16_size_ratio": ("<=", 0.52),
    "float16_cosine": (">=", 0.9999),
    "int8_cosine": (">=", 0.99),
    # The pruning targets on the block-pruned curve (--block); single-weight pruning is reported beside.
    "pruned50_int8_cosine": (">=", 0.98),
    "gzip_ratio_50": ("<=", 0.70),
    "gzip_ratio_80": ("<=", 0.45),
    # The int8 network with the runtime's numpy frontend (patch in) is the int8 deployment form;
    # the audio-in int8 file keeps TFLite's float frontend, whose RFFT then dominates (reported too).
    "scale_int8_patch_latency_ratio": ("<=", 0.5),
}


def split_data(data_dir: str, *, fsdd_every: int):
    """Training files (FSDD takes 5-49, every ``fsdd_every``-th, + LibriSpeech of half the speakers) and held-out files."""
    from trillsson_tf.train.data import find_audio

    fsdd = find_audio(os.path.join(data_dir, "fsdd"))
    librispeech = find_audio(sorted(glob.glob(os.path.join(data_dir, "librispeech_test_other_10spk", "*", "*.flac"))))
    seen = set(sorted({item.labels["speaker"] for item in librispeech})[::2])
    train = [item for item in fsdd if item.labels["split"] == "train"][::fsdd_every]
    train += [item for item in librispeech if item.labels["speaker"] in seen]
    held = [item for item in fsdd if item.labels["split"] == "test"][::5]
    held += [item for item in librispeech if item.labels["speaker"] not in seen]
    return train, held


def distilled_export(args, train) -> str:
    """``--export``, or a ``tiny_cnn`` distilled here from ``speech_embedding``."""
    if args.export:
        return args.export
    from trillsson_tf.train.distill import distill

    run = distill(
        train,
        out_dir=os.path.join(args.work, "distill"),
        teacher="speech_embedding",
        student="tiny_cnn",
        steps=args.distill_steps,
        batch_size=32,
        checkpoint_every=args.distill_steps,
        validation_fraction=0.0,
        cache_dir=os.path.join(args.work, "targets"),
        overwrite=True,
        progress=True,
    )
    return run["export"]


def embed_all(model, clips) -> np.ndarray:
    """``[n, D]`` clip vectors of a TFLiteModel or a Keras model, one call per clip."""
    from trillsson_tf.models import EMBEDDING_KEY

    rows = []
    for clip in clips:
        out = model(clip[np.newaxis])[EMBEDDING_KEY]
        rows.append(out.numpy() if hasattr(out, "numpy") else out)
    return np.concatenate(rows)


def median_ms(call, runs: int) -> float:
    for _ in range(WARMUP_CALLS):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def int8_weights_gzip_bytes(path: str) -> int:
    """gzip size of the int8 constant tensors alone (the kernels), without biases, scales and the flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    ops = interpreter._get_ops_details()
    produced = {index for op in ops for index in op["outputs"]} | {d["index"] for d in interpreter.get_input_details()}
    constants = {index for op in ops for index in op["inputs"] if index >= 0 and index not in produced}
    kernels = [
        interpreter.get_tensor(d["index"])
        for d in interpreter.get_tensor_details()
        if d["index"] in constants and d["dtype"] == np.int8
    ]
    return len(gzip.compress(b"".join(kernel.tobytes() for kernel in kernels), 9))


def measure(path: str, reference, clips, second, runs: int) -> dict:
    """Size, gzip size, fidelity to ``reference`` on ``clips``, latency on ``second`` (1 s) of one ``.tflite``."""
    from trillsson_tf.metrics import parity
    from trillsson_tf.runtime import TFLiteModel

    content = open(path, "rb").read()
    model = TFLiteModel(path, num_threads=1)
    vectors = embed_all(model, clips)
    # Distilled embeddings share a large mean (the teacher's), which alone makes cosines high;
    # the cosine of the deviations from the reference mean shows whether the clip-specific part survives.
    centre = reference.mean(axis=0)
    row = {
        "file": os.path.relpath(path, REPO),
        "bytes": len(content),
        "gzip_bytes": len(gzip.compress(content, 9)),
        "int8_weights_gzip_bytes": int8_weights_gzip_bytes(path),
        "fidelity": {
            **{k: round(v, 6) for k, v in parity(reference, vectors).items()},
            "centered_mean_cosine": round(parity(reference - centre, vectors - centre)["mean_cosine"], 6),
        },
        "latency_ms": round(median_ms(lambda: model(second), runs), 3),
    }
    if not model.frontend_inside:  # the interpreter alone on one patch, without the numpy frontend
        from trillsson_tf.frontend import numpy_ops

        patch = numpy_ops.log_mel_patches(second[np.newaxis], model.frontend)[0, :1]
        row["network_latency_ms"] = round(median_ms(lambda: model.feeder.run_patches(patch), runs), 3)
    return row


def convert_variants(export: str, out_dir: str, calibration, prefix: str, names) -> dict:
    from trillsson_tf.converters.tflite import convert

    paths = {}
    for name in names:
        quantize, frontend = VARIANTS[name]
        paths[name] = os.path.join(out_dir, f"{prefix}_{name}.tflite")
        convert(
            export,
            paths[name],
            quantize=quantize,
            frontend=frontend,
            overwrite=True,
            representative_audio=calibration if quantize == "int8" else None,
        )
    return paths


def scale_sizes(student: str, out_dir: str, calibration, second, runs: int) -> dict:
    """Bytes and 1 s latency of each variant of the untrained registry ``student``.

    Neither depends on training, and at TRILLsson scale the network, not the float frontend
    and the file's fixed part, is what the size and latency ratios measure.
    """
    from trillsson_tf.converters.tflite import convert
    from trillsson_tf import models
    from trillsson_tf.runtime import TFLiteModel

    model = models.build(student)
    sizes, calls = {}, {}
    for name in ("float32", "float16", "int8", "float32_patch", "int8_patch"):
        quantize, frontend = VARIANTS[name]
        path = os.path.join(out_dir, f"{student}_{name}.tflite")
        convert(
            model,
            path,
            quantize=quantize,
            frontend=frontend,
            overwrite=True,
            representative_audio=calibration if quantize == "int8" else None,
        )
        sizes[name] = os.path.getsize(path)
        calls[name] = lambda clip, wrapper=TFLiteModel(path, num_threads=1): wrapper(clip)
    # Turns of SCALE_TURN_CALLS calls alternate between the variants, so a change in the machine's speed
    # moves every variant alike (two sequential runs here had moved a ratio from 0.42 to 0.51).
    seconds = median_seconds(calls, [second] * SCALE_TURN_CALLS, max(1, runs // SCALE_TURN_CALLS))
    latency = {name: round(1000 * value / SCALE_TURN_CALLS, 3) for name, value in seconds.items()}
    return {"name": student, "parameters": int(model.count_params()), "bytes": sizes, "latency_ms": latency}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=SHARED_DATA, help="folder with fsdd/ and librispeech_test_other_10spk/")
    parser.add_argument("--export", default=None, help="distilled export to use instead of distilling tiny_cnn here")
    parser.add_argument(
        "--work", default=os.path.join(REPO, "runs", "convert_benchmark"), help="work folder (replaced)"
    )
    parser.add_argument("--distill-steps", type=int, default=800)
    parser.add_argument("--fsdd-every", type=int, default=4, help="use every n-th FSDD training file")
    parser.add_argument(
        "--block", default=BLOCK, help="block shape of the second pruning curve (rows run along the input axis)"
    )
    parser.add_argument("--optimize-steps", type=int, default=300, help="recovery steps per optimize stage")
    parser.add_argument("--runs", type=int, default=100, help="timed calls per latency (median)")
    parser.add_argument(
        "--scale-student", default="trillsson1", help="registry student whose file sizes show the ratios at scale"
    )
    parser.add_argument("--results", default=RESULTS_DIR, help="folder for convert_benchmark.{json,md}")
    args = parser.parse_args(argv)

    from trillsson_tf.converters.common import load_keras_model
    from trillsson_tf.audio import load_audio
    from trillsson_tf.optimize import optimize_export

    os.makedirs(args.work, exist_ok=True)
    began = time.perf_counter()
    train, held = split_data(args.data, fsdd_every=args.fsdd_every)
    export = distilled_export(args, train)
    model, _ = load_keras_model(export)
    clips = [load_audio(item.path)[:MAX_CLIP_SAMPLES] for item in held]
    second = np.resize(load_audio(held[-1].path), 16000).astype(np.float32)  # 1 s of real speech
    reference = embed_all(model, clips)
    calibration = [item.path for item in train][:: max(1, len(train) // 32)]
    tflite_dir = os.path.join(args.work, "tflite")
    os.makedirs(tflite_dir, exist_ok=True)

    paths = convert_variants(export, tflite_dir, calibration, "student", VARIANTS)
    rows = {name: measure(path, reference, clips, second, args.runs) for name, path in paths.items()}

    curve = [{"sparsity": 0.0, "block": None, "int8_patch": rows["int8_patch"], "int8": rows["int8"], "optimize": None}]
    for block, sparsity in [(block, sparsity) for block in (None, args.block) for sparsity in SPARSITIES]:
        tag = f"pruned{int(sparsity * 100)}" + (f"_block{block}" if block else "")
        report = optimize_export(
            export,
            os.path.join(args.work, tag),
            data=train,
            prune=sparsity,
            block_size=block,
            qat=True,
            steps=args.optimize_steps,
            overwrite=True,
            progress=True,
        )
        pruned = convert_variants(report["export"], tflite_dir, calibration, tag, ("int8", "int8_patch"))
        point = {name: measure(path, reference, clips, second, args.runs) for name, path in pruned.items()}
        point.update(
            sparsity=sparsity,
            block=block,
            optimize={
                "kernel_sparsity": round(report["sparsity"]["overall"], 4),
                "not_prunable": report["not_prunable"],
                "keras_fidelity_held_out": round(report["fidelity"]["mean_cosine"], 6),
                "final_loss": {stage: record["loss_curve"][-1][1] for stage, record in report["stages"].items()},
                "seconds": report["seconds"],
            },
        )
        curve.append(point)
    scale = scale_sizes(args.scale_student, tflite_dir, calibration, second, args.runs)
    for point in curve:
        for name in ("int8", "int8_patch"):
            point[name]["gzip_ratio_to_unpruned"] = round(point[name]["gzip_bytes"] / rows[name]["gzip_bytes"], 4)
            point[name]["weights_gzip_ratio_to_unpruned"] = round(
                point[name]["int8_weights_gzip_bytes"] / rows[name]["int8_weights_gzip_bytes"], 4
            )

    def at(sparsity, block):
        return next(point for point in curve if point["sparsity"] == sparsity and point["block"] == block)

    values = {
        "scale_int8_size_ratio": scale["bytes"]["int8"] / scale["bytes"]["float32"],
        "scale_float16_size_ratio": scale["bytes"]["float16"] / scale["bytes"]["float32"],
        "scale_int8_patch_size_ratio": scale["bytes"]["int8_patch"] / scale["bytes"]["float32_patch"],
        "int8_size_ratio": rows["int8"]["bytes"] / rows["float32"]["bytes"],
        "int8_patch_size_ratio": rows["int8_patch"]["bytes"] / rows["float32_patch"]["bytes"],
        "float16_size_ratio": rows["float16"]["bytes"] / rows["float32"]["bytes"],
        "float16_cosine": rows["float16"]["fidelity"]["mean_cosine"],
        "dynamic_patch_cosine": rows["dynamic_patch"]["fidelity"]["mean_cosine"],
        "int8_cosine": rows["int8"]["fidelity"]["mean_cosine"],
        "int8_patch_cosine": rows["int8_patch"]["fidelity"]["mean_cosine"],
        "pruned50_int8_cosine": at(0.5, args.block)["int8"]["fidelity"]["mean_cosine"],
        "pruned50_int8_patch_cosine": at(0.5, args.block)["int8_patch"]["fidelity"]["mean_cosine"],
        "gzip_ratio_50": at(0.5, args.block)["int8_patch"]["gzip_ratio_to_unpruned"],
        "gzip_ratio_80": at(0.8, args.block)["int8_patch"]["gzip_ratio_to_unpruned"],
        "weights_gzip_ratio_50": at(0.5, args.block)["int8_patch"]["weights_gzip_ratio_to_unpruned"],
        "weights_gzip_ratio_80": at(0.8, args.block)["int8_patch"]["weights_gzip_ratio_to_unpruned"],
        "single_weights_pruned50_int8_cosine": at(0.5, None)["int8"]["fidelity"]["mean_cosine"],
        "single_weights_gzip_ratio_50": at(0.5, None)["int8_patch"]["gzip_ratio_to_unpruned"],
        "single_weights_gzip_ratio_80": at(0.8, None)["int8_patch"]["gzip_ratio_to_unpruned"],
        "scale_int8_latency_ratio": scale["latency_ms"]["int8"] / scale["latency_ms"]["float32"],
        "scale_int8_patch_latency_ratio": scale["latency_ms"]["int8_patch"] / scale["latency_ms"]["float32_patch"],
        "int8_latency_ratio": rows["int8"]["latency_ms"] / rows["float32"]["latency_ms"],
        "int8_patch_latency_ratio": rows["int8_patch"]["latency_ms"] / rows["float32_patch"]["latency_ms"],
        "int8_network_latency_ratio": rows["int8_patch"]["network_latency_ms"]
        / rows["float32_patch"]["network_latency_ms"],
    }
    result = {
        "student": {
            "export": os.path.relpath(export, REPO),
            "name": model.name,
            "parameters": int(model.count_params()),
        },
        "data": {
            "train_files": len(train),
            "held_out_files": len(held),
            "held_out": "FSDD takes 0-4 (every 5th) + LibriSpeech speakers never trained on, clips cut to 8 s",
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": args.runs,
        "block": args.block,
        "variants": rows,
        "pruning_curve": curve,
        "scale_sizes": scale,
        "values": {k: round(v, 6) for k, v in values.items()},
        "targets": {
            name: {
                "value": round(values[name], 6),
                "goal": f"{op} {goal}",
                "met": values[name] <= goal if op == "<=" else values[name] >= goal,
            }
            for name, (op, goal) in TARGETS.items()
        },
        "seconds": round(time.perf_counter() - began, 1),
    }
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "convert_benchmark.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    markdown = to_markdown(result)
    with open(os.path.join(args.results, "convert_benchmark.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return result


def to_markdown(result: dict) -> str:
    """The report as markdown (tables of variants, pruning curve and targets)."""
    rows = result["variants"]
    student = result["student"]
    lines = [
        f"# Conversion benchmark: {student['name']} ({student['parameters']:,} parameters)",
        "",
        f"Student export `{student['export']}`; fidelity = mean cosine to the float Keras model on "
        f"{result['data']['held_out_files']} held-out real clips ({result['data']['held_out']}); latency = LiteRT, "
        f"1 thread, median of {result['runs']} calls on 1 s of speech, end to end through `TFLiteModel` "
        f"(patch-in variants include the numpy log-mel). {result['machine']['platform']}, {result['machine']['cpus']} CPUs.",
        "",
        "| variant | input | bytes | ratio to float32 | gzip bytes | mean cosine | min cosine | centered cosine "
        "| latency ms | network ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        base = rows["float32" if VARIANTS[name][1] else "float32_patch"]["bytes"]
        lines.append(
            f"| {name} | {'audio' if VARIANTS[name][1] else 'log-mel patch'} | {row['bytes']:,} | {row['bytes'] / base:.3f} | "
            f"{row['gzip_bytes']:,} | {row['fidelity']['mean_cosine']:.6f} | {row['fidelity']['min_cosine']:.6f} | "
            f"{row['fidelity']['centered_mean_cosine']:.4f} | "
            f"{row['latency_ms']:.3f} | {row.get('network_latency_ms', '-')} |"
        )
    lines += [
        "",
        "Pruning curve (prune + sparsity-preserving QAT, recovered by distillation from the unoptimized model, then int8):",
        "",
        "| sparsity | blocks | kernel sparsity | int8 patch gzip bytes | gzip ratio | int8 kernels alone: gzip ratio "
        "| mean cosine | centered cosine | int8 (audio in) gzip ratio | mean cosine | latency ms (audio in) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for point in result["pruning_curve"]:
        patch, audio = point["int8_patch"], point["int8"]
        kernel = point["optimize"]["kernel_sparsity"] if point["optimize"] else 0.0
        lines.append(
            f"| {point['sparsity']:.0%} | {point['block'] or '-'} | {kernel:.3f} | {patch['gzip_bytes']:,} | {patch['gzip_ratio_to_unpruned']:.3f} | "
            f"{patch['weights_gzip_ratio_to_unpruned']:.3f} | {patch['fidelity']['mean_cosine']:.6f} | {patch['fidelity']['centered_mean_cosine']:.4f} | "
            f"{audio['gzip_ratio_to_unpruned']:.3f} | "
            f"{audio['fidelity']['mean_cosine']:.6f} | {audio['latency_ms']:.3f} |"
        )
    values, scale = result["values"], result["scale_sizes"]
    unpruned = rows["int8_patch"]
    lines += [
        "",
        f"The int8 kernels alone gzip to {unpruned['int8_weights_gzip_bytes']:,} of the unpruned patch-in file's "
        f"{unpruned['gzip_bytes']:,} bytes; the rest (int32 biases, per-channel scales, tensor table) stays whole "
        f"when pruning and bounds the file's gzip ratio. Pruned weight by weight, the int8 file gzips to "
        f"{values['single_weights_gzip_ratio_50']:.3f} of the unpruned one at 50% and "
        f"{values['single_weights_gzip_ratio_80']:.3f} at 80% (mean cosine {values['single_weights_pruned50_int8_cosine']:.4f} "
        f"at 50%); in {result['block']} blocks the zeros lie in runs that gzip codes far more cheaply (the targets' rows).",
        "",
        f"Sizes at TRILLsson scale (untrained {scale['name']}, {scale['parameters']:,} parameters): "
        + ", ".join(f"{name} {size:,} B" for name, size in scale["bytes"].items())
        + f"; int8/float32 {values['scale_int8_size_ratio']:.3f} (audio in), {values['scale_int8_patch_size_ratio']:.3f} "
        f"(patch in); float16/float32 {values['scale_float16_size_ratio']:.3f}. Same ratios of the distilled "
        f"{student['name']}: int8 {values['int8_size_ratio']:.3f} (audio in), {values['int8_patch_size_ratio']:.3f} "
        f"(patch in), float16 {values['float16_size_ratio']:.3f}.",
        "",
        "Latency at that scale (1 s, 1 thread): "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in scale["latency_ms"].items())
        + f"; int8/float32 {values['scale_int8_latency_ratio']:.3f} (audio in), "
        f"{values['scale_int8_patch_latency_ratio']:.3f} (patch in); the distilled {student['name']}'s "
        f"{values['int8_latency_ratio']:.3f} (audio in) is its float frontend's.",
        "",
        f"Other ratios: int8/float32 size of the network alone {values['int8_patch_size_ratio']:.3f}; int8/float32 "
        f"latency of the patch-in path {values['int8_patch_latency_ratio']:.3f}, of the network alone "
        f"{values['int8_network_latency_ratio']:.3f}; dynamic-range (patch in) mean cosine {values['dynamic_patch_cosine']:.6f}.",
        "",
        "| target | value | goal | met |",
        "|---|---:|---:|:---:|",
    ]
    for name, target in result["targets"].items():
        lines.append(f"| {name} | {target['value']:.4g} | {target['goal']} | {'yes' if target['met'] else 'NO'} |")
    lines += ["", f"Total {result['seconds']} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
