"""Speed, memory, import time and fidelity of the TensorFlow-free runtime (issue 5 targets).

One run, on the same real speech (10 LibriSpeech test-other utterances of 1-8 s):

* parity: the float32 and int8 ``.tflite`` through :class:`trillsson_tf.runtime.TFLiteModel`
  and the exported SavedModel (``hub.load``) against the Keras model (float64 frontend);
* speed: median over repeats of the time to embed the 10 clips one call per clip, for
  ``hub.load`` of the SavedModel and the wrapper on three files made by
  :func:`trillsson_tf.converters.tflite.convert`: float32 with the frontend inside (signature runner),
  float32 and int8 networks on log-mel patches (frontend in numpy), each at one thread and at
  as many threads as TensorFlow uses (every CPU);
* import time of ``trillsson_tf.runtime`` against ``import tensorflow`` (fresh processes);
* peak RSS of a fresh process that embeds 100 files with the int8 wrapper;
* MediaPipe Tasks (``mediapipe==0.10.21`` ``AudioEmbedder``, in its own virtualenv, made when
  missing by ``mediapipe_tasks.py``) on the same clips and the same network in its MediaPipe form
  (fixed ``[1, 32000]``, frontend inside, metadata), float32 and int8, against the wrapper at one
  thread (MediaPipe's CPU time equals its wall time: one thread): ms per second of audio end to
  end (each API as an app calls it: MediaPipe one result per zero-padded 2 s window, the wrapper
  one clip vector from the numpy frontend + patch-in network), the wrapper on MediaPipe's own
  windows, LiteRT on the MediaPipe file itself window by window (what is left is MediaPipe's
  overhead per window), and cosine per window of MediaPipe against the wrapper (goal 1.5x, 0.999);
* LiteRT's two APIs side by side (issue 42): ``TFLiteModel(api='interpreter')`` (the 1.x
  ``Interpreter``) against ``api='compiled'`` (2.x ``CompiledModel``) on the three files and a
  Wav2Small (whole clips of any length), at each thread count: ms per second of audio (clip calls),
  load + first call, and the largest difference between their clip vectors and chunk vectors.

The student has random weights (speed and parity do not depend on training). Writes
``benchmarks/results/runtime_benchmark_<student>[_quick].{json,md}`` and prints the markdown.

    .venv/bin/python benchmarks/runtime_benchmark.py                       # efficientnetv2b0, 5 repeats
    .venv/bin/python benchmarks/runtime_benchmark.py --student trillsson1
    .venv/bin/python benchmarks/runtime_benchmark.py --quick               # trillsson1, 2 repeats, 20 files for RSS
    .venv/bin/python benchmarks/runtime_benchmark.py --no-mediapipe        # without the MediaPipe comparison

numpy's BLAS runs one thread here (``OPENBLAS_NUM_THREADS=1`` unless set), like the interpreter:
on a loaded 2-core machine a two-thread BLAS made the numpy frontend 5x slower (8 ms vs 1.6 ms
for 5 s of audio, measured).
"""

import argparse
import glob
import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_LIBRISPEECH = os.path.join(REPO, "..", "shared", "data", "librispeech_test_other_10spk")
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
NUM_CLIPS = 10
CLIP_SECONDS = (1.0, 8.0)
RSS_FILES = 100
VARIANT_LABELS = {
    "float32": "float32, frontend inside",
    "float32_patch": "float32 network + numpy frontend",
    "int8": "int8 network + numpy frontend",
}
TARGETS = {  # name: (comparison, goal), from issue 5
    "float32_speedup": (">=", 4.0),
    "int8_speedup": (">=", 10.0),
    "float32_cosine": (">=", 0.9999),
    "int8_cosine": (">=", 0.99),
    "import_s": ("<", 1.0),
    "peak_rss_mb": ("<", 300.0),
    "mediapipe_float32_speedup": (">=", 1.5),  # issue 27: end to end, frontend included
    "mediapipe_int8_speedup": (">=", 1.5),
    "mediapipe_float32_cosine": (">=", 0.999),  # lowest per window
    "mediapipe_int8_cosine": (">=", 0.999),
}
API_LABELS = {**VARIANT_LABELS, "wav2small": "Wav2Small float32, whole clips (a new length each call)"}
MEDIAPIPE_SAMPLES = 32000  # trillsson_tf.converters.tflite.MEDIAPIPE_SAMPLES, the window MediaPipe runs


def speech_files(folder=None):
    """Real speech files: ``folder``, else the shared LibriSpeech copy when present, else the bundled samples."""
    files = sorted(glob.glob(os.path.join(folder or SHARED_LIBRISPEECH, "**", "*.flac"), recursive=True))
    if not files:
        from trillsson_tf.audio import SAMPLE_AUDIO_DIR

        files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))
    return files


def pick_clips(files, count=NUM_CLIPS):
    """``count`` files of 1-8 s, spread over that range; the others calibrate int8."""
    durations = {path: soundfile.info(path).duration for path in files}
    fitting = sorted(
        (path for path in files if CLIP_SECONDS[0] <= durations[path] <= CLIP_SECONDS[1]), key=durations.get
    )
    chosen = [fitting[int(i)] for i in np.linspace(0, len(fitting) - 1, count)]
    return chosen, [path for path in files if path not in chosen]


def convert(model, tmp_dir, calibration_files):
    """The three ``.tflite`` files the wrapper is timed on, made by :func:`trillsson_tf.converters.tflite.convert`.

    float32 with the frontend inside (audio in), float32 and int8 of the chunk network alone
    (log-mel patch in, the runtime's numpy frontend outside; int8 calibrated on real speech).
    """
    from trillsson_tf.converters.tflite import convert as convert_tflite

    variants = {"float32": ("float32", True), "float32_patch": ("float32", False), "int8": ("int8", False)}
    paths = {}
    for name, (quantize, frontend) in variants.items():
        paths[name] = os.path.join(tmp_dir, f"{name}.tflite")
        convert_tflite(
            model,
            paths[name],
            quantize=quantize,
            frontend=frontend,
            representative_audio=calibration_files if quantize == "int8" else None,
        )
    return paths


def median_seconds(callers, clips, repeats):
    """Median over ``repeats`` of the seconds each caller takes to embed every clip once.

    The passes are interleaved (every caller once per round, after one warm-up round), so a
    change in the machine's speed during the run (other jobs, clock changes) moves every
    caller alike and the ratios stay comparable.
    """
    for embed in callers.values():
        for clip in clips:
            embed(clip)
    times = {name: [] for name in callers}
    for _ in range(repeats):
        for name, embed in callers.items():
            start = time.perf_counter()
            for clip in clips:
                embed(clip)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def mediapipe_comparison(model, clips, patch_paths, calibration_files, tmp_dir, *, venv, repeats):
    """MediaPipe Tasks against the wrapper on the same clips and network (see the module docstring).

    Args:
        model: The Keras student.
        clips: float32 ``[samples]`` arrays at 16 kHz.
        patch_paths: ``{'float32': path, 'int8': path}`` of the patch-in files the wrapper runs.
        calibration_files: Real speech for the int8 MediaPipe form.
        tmp_dir: Where the MediaPipe forms are written.
        venv: The MediaPipe virtualenv (made when missing).
        repeats: Timed passes (median).

    Returns:
        ``{'setup', 'window_samples', 'windows', 'rows': {quantize: {...}}}``; times in ms per
        second of audio, overhead in ms per window.
    """
    import mediapipe_tasks

    from trillsson_tf.converters.tflite import convert as convert_tflite
    from trillsson_tf.apps.android import mediapipe_windows
    from trillsson_tf.metrics import parity
    from trillsson_tf.runtime import TFLiteModel

    setup = mediapipe_tasks.ensure_venv(venv)
    audio_s = sum(len(clip) for clip in clips) / 16000
    windows = [mediapipe_windows(clip, MEDIAPIPE_SAMPLES) for clip in clips]
    rows = {}
    for quantize, patch_path in patch_paths.items():
        form_path = os.path.join(tmp_dir, f"mediapipe_{quantize}.tflite")
        convert_tflite(
            model,
            form_path,
            quantize=quantize,
            mediapipe=True,
            fixed_samples=MEDIAPIPE_SAMPLES,
            representative_audio=calibration_files if quantize == "int8" else None,
        )
        mediapipe = mediapipe_tasks.run_tasks(setup["python"], form_path, "embedder", clips, repeats=repeats)
        wrapper, form = TFLiteModel(patch_path, num_threads=1), TFLiteModel(form_path, num_threads=1)
        callers = {
            "runtime_clips": lambda i: wrapper(clips[i]),
            "runtime_windows": lambda i: [wrapper(row) for row in windows[i]],
            "litert_form_windows": lambda i: [form(row) for row in windows[i]],
        }
        seconds = median_seconds(callers, range(len(clips)), repeats)
        count = sum(len(w) for w in windows)
        got = np.concatenate(mediapipe["outputs"])
        runtime = np.concatenate([wrapper(row)["embedding"] for w in windows for row in w])
        same_file = np.concatenate([form(row)["embedding"] for w in windows for row in w])
        ms = {name: 1000 * value / audio_s for name, value in seconds.items()}
        ms["mediapipe"] = 1000 * mediapipe["seconds"] / audio_s
        rows[quantize] = {
            "ms_per_audio_s": ms,
            "mediapipe_cpu_ms_per_audio_s": 1000 * mediapipe["cpu_seconds"] / audio_s,
            "speedup_end_to_end": ms["mediapipe"] / ms["runtime_clips"],
            "speedup_same_windows": ms["mediapipe"] / ms["runtime_windows"],
            "mediapipe_overhead_ms_per_window": 1000 * (mediapipe["seconds"] - seconds["litert_form_windows"]) / count,
            "litert_ms_per_window": 1000 * seconds["litert_form_windows"] / count,
            "create_s": mediapipe["create_s"],
            "form_bytes": os.path.getsize(form_path),
            "vs_runtime": parity(runtime, got),
            "vs_litert_same_file": parity(same_file, got),
        }
    return {
        "setup": {key: setup[key] for key in ("mediapipe", "numpy", "created", "setup_s")},
        "window_samples": MEDIAPIPE_SAMPLES,
        "windows": int(sum(len(w) for w in windows)),
        "rows": rows,
    }


def api_comparison(paths, clips, repeats, threads):
    """``api='interpreter'`` against ``api='compiled'`` on each file and thread count (see the module docstring).

    Returns:
        ``{row: {'label', 'ms_per_audio_s': {api: ms}, 'ratio', 'first_call_ms': {api: ms}, 'max_abs_diff',
        'output_rms'}}``; ``ratio`` is compiled over interpreter (below 1: the CompiledModel is faster).
    """
    from trillsson_tf.runtime import TFLiteModel
    from trillsson_tf.runtime.compiled import APIS

    audio_s = sum(len(clip) for clip in clips) / 16000
    rows = {}
    for variant, path in paths.items():
        for count in threads:
            wrappers, first_call_ms = {}, {}
            for api in APIS:
                start = time.perf_counter()
                wrappers[api] = TFLiteModel(path, num_threads=count, api=api)
                wrappers[api](clips[0])
                first_call_ms[api] = 1000 * (time.perf_counter() - start)
            callers = {api: lambda clip, wrapper=wrapper: wrapper(clip) for api, wrapper in wrappers.items()}
            seconds = median_seconds(callers, clips, repeats)
            outputs = {
                api: [wrapper(clip)["embedding"] for clip in clips] + [wrapper.chunk_vectors(clips[-1])["embedding"][0]]
                for api, wrapper in wrappers.items()
            }
            reference = np.concatenate(outputs["interpreter"])
            ms = {api: 1000 * value / audio_s for api, value in seconds.items()}
            rows[f"{variant}_{count}t"] = {
                "label": f"{API_LABELS[variant]}, {count} thread{'s' if count > 1 else ''}",
                "ms_per_audio_s": ms,
                "ratio": ms["compiled"] / ms["interpreter"],
                "first_call_ms": first_call_ms,
                "max_abs_diff": float(np.abs(np.concatenate(outputs["compiled"]) - reference).max()),
                "output_rms": float(np.sqrt(np.mean(reference**2))),
            }
    return rows


def api_markdown(rows):
    """The table of :func:`api_comparison`."""
    lines = [
        "",
        "## LiteRT APIs: `Interpreter` (1.x) against `CompiledModel` (2.x), the same files",
        "",
        "`TFLiteModel(path, api='interpreter')` against `api='compiled'` (ai-edge-litert 2.3.0, CPU): ms per second "
        "of audio for the clip calls above (median of interleaved runs), load + first call, and the largest "
        "difference between their outputs (every clip vector, and the chunk vectors at a 0.5 s hop of the "
        "longest clip).",
        "",
        "| file | Interpreter ms/s audio | CompiledModel ms/s audio | compiled / interpreter | load + first call ms "
        "(Interpreter, CompiledModel) | max abs diff | output RMS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows.values():
        ms, first = row["ms_per_audio_s"], row["first_call_ms"]
        lines.append(
            f"| {row['label']} | {ms['interpreter']:.2f} | {ms['compiled']:.2f} | {row['ratio']:.2f} | "
            f"{first['interpreter']:.0f}, {first['compiled']:.0f} | {row['max_abs_diff']:.2e} | {row['output_rms']:.3g} |"
        )
    return lines


def fresh_process(code):
    """stdout of ``code`` run by a fresh interpreter (from the repo root)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return result.stdout.strip().splitlines()[-1]


def import_seconds(module, repeats):
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return statistics.median(float(fresh_process(code)) for _ in range(repeats))


def peak_rss_mb(model_path, files):
    """Peak resident memory, in MB, of a fresh process that embeds ``files`` with the int8 wrapper.

    Read from ``VmHWM`` in ``/proc/self/status`` where it exists: ``getrusage``'s ``ru_maxrss``
    of a child keeps the high-water mark of the parent it was forked from (this process holds
    TensorFlow, > 1 GB), because Linux preserves it across ``execve``.
    """
    code = f"""
import resource, sys
from trillsson_tf.runtime import TFLiteModel
model = TFLiteModel({model_path!r}, num_threads=1)
vectors = model.embed_files({files!r})
assert vectors.shape[0] == {len(files)} and "tensorflow" not in sys.modules
try:
    with open("/proc/self/status") as status:
        print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024)
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    return float(fresh_process(code))


def to_markdown(report):
    speed, parity = report["speed"], report["parity"]
    lines = [
        f"# Runtime benchmark: {report['student']} ({report['parameters']:,} parameters, {report['embedding_dim']}-d)",
        "",
        f"{report['clips']['count']} real clips, {report['clips']['total_s']:.1f} s of speech "
        f"({report['clips']['min_s']:.1f}-{report['clips']['max_s']:.1f} s each), one call per clip, "
        f"median of {report['repeats']} interleaved runs. {report['machine']}.",
        "",
        "| path | file MB | s for all clips | ms per clip | speed-up vs hub.load | mean cosine vs Keras | min cosine | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in speed.items():
        fidelity = parity[name]
        size = "-" if row["file_mb"] is None else f"{row['file_mb']:.1f}"
        lines.append(
            f"| {row['label']} | {size} | {row['seconds']:.3f} | {row['ms_per_clip']:.1f} | {row['speedup']:.1f}x | "
            f"{fidelity['mean_cosine']:.6f} | {fidelity['min_cosine']:.6f} | {fidelity['max_abs_diff']:.2e} |"
        )
    imports, rss = report["import_s"], report["peak_rss_mb"]
    lines += [
        "",
        f"- Import: `trillsson_tf.runtime` {imports['trillsson_tf.runtime']:.3f} s, "
        f"`tensorflow` {imports['tensorflow']:.3f} s (median of fresh processes).",
        f"- Peak RSS (VmHWM) of a fresh process embedding {rss['files']} files with the int8 wrapper: {rss['mb']:.0f} MB.",
        f"- Embedding RMS (Keras): {parity['hub_load']['reference_rms']:.3g}.",
        f"- Speed-up targets are checked on the fastest row of each kind: {report['fastest']['float32']} "
        f"and {report['fastest']['int8']}; cosine targets on the lowest row of each kind.",
        "",
        "| target | value | goal | met |",
        "|---|---:|---:|:---:|",
    ]
    for key, check in report["checks"].items():
        lines.append(
            f"| {key} | {check['value']:.4g} | {check['op']} {check['goal']:g} | {'yes' if check['met'] else 'NO'} |"
        )
    if report.get("apis"):
        lines += api_markdown(report["apis"])
    if report.get("mediapipe"):
        lines += mediapipe_markdown(report["mediapipe"])
    return "\n".join(lines) + "\n"


def mediapipe_markdown(section):
    """The MediaPipe table of the report (see :func:`mediapipe_comparison`)."""
    lines = [
        "",
        f"## Against MediaPipe Tasks {section['setup']['mediapipe']} (`AudioEmbedder`), the same network",
        "",
        f"ms per second of audio, 1 thread; MediaPipe runs the MediaPipe form (fixed [1, {section['window_samples']}], "
        f"frontend inside, {section['windows']} windows); the wrapper runs the numpy frontend + patch-in network.",
        "",
        "| quantize | MediaPipe | wrapper, clips (end to end) | speed-up | wrapper, MediaPipe's windows | speed-up | "
        "LiteRT on the MediaPipe file, its windows | MediaPipe overhead ms/window | min cosine vs wrapper | min cosine vs LiteRT, same file |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for quantize, row in section["rows"].items():
        ms = row["ms_per_audio_s"]
        lines.append(
            f"| {quantize} | {ms['mediapipe']:.2f} | {ms['runtime_clips']:.2f} | {row['speedup_end_to_end']:.2f}x | "
            f"{ms['runtime_windows']:.2f} | {row['speedup_same_windows']:.2f}x | {ms['litert_form_windows']:.2f} | "
            f"{row['mediapipe_overhead_ms_per_window']:.2f} | {row['vs_runtime']['min_cosine']:.6f} | "
            f"{row['vs_litert_same_file']['min_cosine']:.6f} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small student, 2 repeats, 20 files for RSS")
    parser.add_argument("--student", default=None, help="registry name (default efficientnetv2b0; quick: trillsson1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes over the clips (default 5; quick: 2)")
    parser.add_argument(
        "--data", default=None, help="folder of real speech (.flac); default ../shared/data LibriSpeech"
    )
    parser.add_argument("--no-mediapipe", action="store_true", help="skip the MediaPipe Tasks comparison")
    parser.add_argument(
        "--mediapipe-venv", default=None, help="MediaPipe virtualenv (default /work/venvs/mediapipe; made if missing)"
    )
    args = parser.parse_args(argv)
    student = args.student or ("trillsson1" if args.quick else "efficientnetv2b0")
    repeats = args.repeats or (2 if args.quick else 5)

    import tensorflow_hub as hub

    from trillsson_tf import export_savedmodel, models
    from trillsson_tf.audio import load_audio
    from trillsson_tf.metrics import parity
    from trillsson_tf.runtime import TFLiteModel

    files = speech_files(args.data)
    clip_files, spare_files = pick_clips(files)
    clips = [load_audio(path) for path in clip_files]
    model = models.build(student)
    threads = sorted({1, os.cpu_count() or 1})
    with tempfile.TemporaryDirectory() as tmp_dir:
        start = time.perf_counter()
        tflite = convert(model, tmp_dir, spare_files[: 8 if args.quick else 32])
        conversion_s = time.perf_counter() - start
        saved_model = export_savedmodel(model, os.path.join(tmp_dir, "savedmodel"))
        hub_model = hub.load(saved_model)

        reference = np.concatenate([model(clip[np.newaxis])["embedding"].numpy() for clip in clips])
        callers = {"hub_load": lambda clip: hub_model(clip[np.newaxis])["embedding"].numpy()}
        labels = {"hub_load": f"hub.load(SavedModel), TF default threads ({os.cpu_count()} CPUs)"}
        sizes = {"hub_load": None}
        for variant, path in tflite.items():
            for count in threads:
                name = f"tflite_{variant}_{count}t"
                wrapper = TFLiteModel(path, num_threads=count)
                callers[name] = lambda clip, wrapper=wrapper: wrapper(clip)["embedding"]
                labels[name] = f"TFLiteModel {VARIANT_LABELS[variant]}, {count} thread{'s' if count > 1 else ''}"
                sizes[name] = os.path.getsize(path) / 1e6
        report_parity = {
            name: parity(reference, np.concatenate([call(clip) for clip in clips])) for name, call in callers.items()
        }
        seconds = median_seconds(callers, clips, repeats)
        if report_parity["hub_load"]["reference_rms"] < 1e-6:
            print(
                f"warning: {student} with random weights outputs ~0 (RMS {report_parity['hub_load']['reference_rms']:.2g}); "
                "its cosines mean little",
                file=sys.stderr,
            )
        speed = {
            name: {
                "label": labels[name],
                "seconds": seconds[name],
                "ms_per_clip": 1000 * seconds[name] / len(clips),
                "speedup": seconds["hub_load"] / seconds[name],
                "file_mb": sizes[name],
            }
            for name in callers
        }
        imports = {module: import_seconds(module, 3) for module in ("trillsson_tf.runtime", "tensorflow")}
        rss_files = (spare_files + clip_files)[: 20 if args.quick else RSS_FILES]
        rss = {"files": len(rss_files), "mb": peak_rss_mb(tflite["int8"], rss_files)}
        from trillsson_tf.converters.tflite import convert as convert_tflite

        wav2small = os.path.join(tmp_dir, "wav2small.tflite")
        convert_tflite(models.build("wav2small"), wav2small)
        apis = api_comparison({**tflite, "wav2small": wav2small}, clips, repeats, threads)
        mediapipe = None
        if not args.no_mediapipe:
            import mediapipe_tasks

            mediapipe = mediapipe_comparison(
                model,
                clips,
                {"float32": tflite["float32_patch"], "int8": tflite["int8"]},
                spare_files[: 8 if args.quick else 32],
                tmp_dir,
                repeats=repeats,
                venv=args.mediapipe_venv or mediapipe_tasks.DEFAULT_VENV,
            )

    durations = [len(clip) / 16000 for clip in clips]
    fastest = {
        kind: max((name for name in speed if name.startswith(f"tflite_{kind}")), key=lambda n: speed[n]["speedup"])
        for kind in ("float32", "int8")
    }
    checks = {
        "float32_speedup": speed[fastest["float32"]]["speedup"],
        "int8_speedup": speed[fastest["int8"]]["speedup"],
        "float32_cosine": min(
            report_parity[name]["mean_cosine"] for name in speed if name.startswith("tflite_float32")
        ),
        "int8_cosine": min(report_parity[name]["mean_cosine"] for name in speed if name.startswith("tflite_int8")),
        "import_s": imports["trillsson_tf.runtime"],
        "peak_rss_mb": rss["mb"],
    }
    for quantize, row in (mediapipe or {}).get("rows", {}).items():
        checks[f"mediapipe_{quantize}_speedup"] = row["speedup_end_to_end"]
        checks[f"mediapipe_{quantize}_cosine"] = row["vs_runtime"]["min_cosine"]
    report = {
        "student": student,
        "parameters": int(model.count_params()),
        "embedding_dim": int(reference.shape[1]),
        "quick": args.quick,
        "repeats": repeats,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "clips": {
            "count": len(clips),
            "files": [os.path.basename(p) for p in clip_files],
            "total_s": sum(durations),
            "min_s": min(durations),
            "max_s": max(durations),
        },
        "conversion_s": conversion_s,
        "parity": report_parity,
        "speed": speed,
        "import_s": imports,
        "peak_rss_mb": rss,
        "fastest": fastest,
        "apis": apis,
        "mediapipe": mediapipe,
        "checks": {
            key: {
                "value": value,
                "op": TARGETS[key][0],
                "goal": TARGETS[key][1],
                "met": value >= TARGETS[key][1] if TARGETS[key][0] == ">=" else value < TARGETS[key][1],
            }
            for key, value in checks.items()
        },
    }
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stem = os.path.join(RESULTS_DIR, f"runtime_benchmark_{student}" + ("_quick" if args.quick else ""))
    markdown = to_markdown(report)
    with open(stem + ".json", "w") as handle:
        json.dump(report, handle, indent=2)
    with open(stem + ".md", "w") as handle:
        handle.write(markdown)
    print(markdown)
    print(f"Wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
