"""Live streams through the TensorFlow-free runtime: real-time factor and per-hop latency (issue 27).

For ``tiny_cnn``, ``efficientnetv2b0`` and Wav2Small (full-size, untrained weights: speed does
not depend on training), each converted here by :func:`trillsson_tf.converters.tflite.convert` to float32
with the frontend inside and to int8 (the chunk students' network on numpy log-mel patches;
Wav2Small with its spectrogram inside, in float32), one interpreter thread:

* real speech (LibriSpeech test-other utterances joined to ``--seconds`` of audio) is fed to
  :meth:`trillsson_tf.runtime.TFLiteModel.open_stream` in 20 ms blocks, as a microphone gives it;
* **real-time factor** = seconds of compute / seconds of audio streamed (below 1: keeps up);
* **per-hop latency** = the time of the ``feed`` that completes a chunk, from the arrival of
  the chunk's last sample to its vector (one model call on one chunk, plus the numpy
  frontend for patch-in files); median and p90 over the hops of a pass;
* at a 0.5 s hop and at 1.95 s (hop = chunk step: the non-overlapping chunks of today's
  ``stream()``), and a check that the streamed vectors equal the offline ``chunk_vectors``.

Every figure is the median over ``--repeats`` passes (interleaved, so a change in the machine's
load moves every file alike). Writes ``benchmarks/results/live_stream_benchmark.{json,md}``
(``live_stream_benchmark_quick`` with ``--quick``) and prints the markdown.

    .venv/bin/python benchmarks/live_stream_benchmark.py                 # 3 students x 2 files, 5 repeats, 30 s
    .venv/bin/python benchmarks/live_stream_benchmark.py --quick         # 2 repeats, 10 s of audio

numpy's BLAS runs one thread (``OPENBLAS_NUM_THREADS=1`` unless set), like the interpreter.
"""

import argparse
import glob
import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHARED_LIBRISPEECH = os.path.join(REPO, "..", "shared", "data", "librispeech_test_other_10spk")
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
STUDENTS = ("tiny_cnn", "efficientnetv2b0", "wav2small")
BLOCK_SAMPLES = 320  # 20 ms at 16 kHz, a common microphone buffer
HOPS_S = (0.5, 1.95)
CALIBRATION_CLIPS = 8


def speech(seconds: float, rate: int = 16000):
    """``seconds`` of real speech at 16 kHz (LibriSpeech utterances joined) and the rest of the files for calibration."""
    from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio

    files = sorted(glob.glob(os.path.join(SHARED_LIBRISPEECH, "**", "*.flac"), recursive=True))
    files = files or sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))
    clips, total, used = [], 0, 0
    for path in files:
        if total >= seconds * rate:
            break
        clips.append(load_audio(path))
        total, used = total + len(clips[-1]), used + 1
    audio = np.concatenate(clips)[: int(seconds * rate)].astype(np.float32)
    return audio, files[used : used + CALIBRATION_CLIPS] or files[:CALIBRATION_CLIPS]


def convert(name: str, folder: str, calibration) -> dict:
    """The float32 and int8 files of one student: ``{variant: (path, description)}``."""
    from trillsson_tf.converters.tflite import convert as convert_tflite
    from trillsson_tf import models
    from trillsson_tf._keras import keras

    keras.utils.set_random_seed(0)
    model = models.build(name)
    chunk = models.get_preset(name).family == "chunk"
    variants = {
        "float32": ({"quantize": "float32"}, "float32, frontend inside"),
        "int8": (
            {"quantize": "int8", "frontend": not chunk, "representative_audio": calibration},
            "int8 network + numpy frontend" if chunk else "int8 network, spectrogram inside (float32)",
        ),
    }
    paths = {}
    for variant, (options, description) in variants.items():
        path = os.path.join(folder, f"{name}_{variant}.tflite")
        convert_tflite(model, path, **options)
        paths[variant] = (path, description)
    return paths, int(model.count_params())


def one_pass(model, audio: np.ndarray, hop_s: float) -> dict:
    """Stream ``audio`` in 20 ms blocks: seconds of compute, the latency of each chunk-completing feed, the vectors."""
    stream = model.open_stream(hop_s)
    latencies, vectors, busy = [], [], 0.0
    for start in range(0, len(audio), BLOCK_SAMPLES):
        begin = time.perf_counter()
        _, got = stream.feed(audio[start : start + BLOCK_SAMPLES])
        elapsed = time.perf_counter() - begin
        busy += elapsed
        if len(got):
            latencies.append(elapsed)
            vectors.append(got)
    return {"busy_s": busy, "latencies_s": latencies, "vectors": np.concatenate(vectors)}


def measure(files: dict, audio: np.ndarray, repeats: int) -> list:
    """Every file at every hop, passes interleaved; rows of median figures."""
    from trillsson_tf.runtime import TFLiteModel

    models = {key: TFLiteModel(path, num_threads=1) for key, (path, _) in files.items()}
    for key, model in models.items():  # warm-up: every interpreter made, caches filled
        for hop_s in HOPS_S:
            one_pass(model, audio[: 3 * 16000], hop_s)
    passes = {(key, hop_s): [] for key in models for hop_s in HOPS_S}
    for _ in range(repeats):
        for key, model in models.items():
            for hop_s in HOPS_S:
                passes[key, hop_s].append(one_pass(model, audio, hop_s))
    seconds = len(audio) / 16000
    rows = []
    for (key, hop_s), runs in passes.items():
        model = models[key]
        offline = model.chunk_vectors(audio, hop_s=hop_s)["embedding"][0]
        rows.append(
            {
                "student": key[0],
                "variant": key[1],
                "file": files[key][1],
                "hop_s": hop_s,
                "windows": int(len(runs[0]["vectors"])),  # chunk vectors (the key results have always had)
                "real_time_factor": statistics.median(run["busy_s"] / seconds for run in runs),
                "latency_median_ms": 1000 * statistics.median(statistics.median(run["latencies_s"]) for run in runs),
                "latency_p90_ms": 1000
                * statistics.median(float(np.percentile(run["latencies_s"], 90)) for run in runs),
                "stream_vs_offline_max_abs_diff": float(np.abs(runs[0]["vectors"] - offline).max()),
                "size_bytes": os.path.getsize(files[key][0]),
            }
        )
    return rows


def cpu_name() -> str:
    """The CPU model and whether it has VNNI (the int8 dot products int8 speed depends on)."""
    try:
        with open("/proc/cpuinfo") as handle:
            info = handle.read()
    except OSError:
        return platform.processor() or platform.machine()
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
        platform.machine(),
    )
    return name + (", VNNI" if "vnni" in info else ", no VNNI")


def to_markdown(report: dict) -> str:
    """The report as the markdown of ``results/live_stream_benchmark.md``."""
    machine = report["machine"]
    lines = [
        "# Live streams through the runtime: real-time factor and per-hop latency",
        "",
        f"`benchmarks/live_stream_benchmark.py{' --quick' if report['quick'] else ''}`, {machine['date_utc']} UTC, "
        f"{machine['cpu']} ({machine['cores']} cores), Python {machine['python']}, 1 interpreter thread; "
        f"{report['audio_s']:.0f} s of real speech in {1000 * BLOCK_SAMPLES / 16000:.0f} ms blocks, "
        f"median of {report['repeats']} passes. Untrained weights (speed does not depend on training).",
        "",
        "Real-time factor: compute seconds per second of audio. Latency: the feed that completes a chunk, "
        "from its last sample to its vector (a new vector is due every hop; each chunk reads 1.965 s of audio).",
        "",
        "| student | parameters | file | hop s | chunks | real-time factor | latency median ms | latency p90 ms | stream = offline (max abs diff) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['student']} | {report['parameters'][row['student']]:,} | {row['file']} | {row['hop_s']:g} | "
            f"{row['windows']} | {row['real_time_factor']:.4f} | {row['latency_median_ms']:.2f} | "
            f"{row['latency_p90_ms']:.2f} | {row['stream_vs_offline_max_abs_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats on 10 s of audio")
    parser.add_argument("--repeats", type=int, default=None, help="passes per file and hop (default 5, quick 2)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of speech streamed (default 30, quick 10)")
    parser.add_argument("--students", default=",".join(STUDENTS), help="comma-separated registry names")
    parser.add_argument("--out", default=RESULTS_DIR, help="folder of the results files")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    audio, calibration = speech(args.seconds or (10.0 if args.quick else 30.0))
    rows, parameters = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.students.split(","):
            files, parameters[name] = convert(name, folder, calibration)
            rows += measure({(name, variant): entry for variant, entry in files.items()}, audio, repeats)
            print(f"{name}: done", file=sys.stderr, flush=True)
    report = {
        "quick": args.quick,
        "repeats": repeats,
        "audio_s": len(audio) / 16000,
        "block_samples": BLOCK_SAMPLES,
        "parameters": parameters,
        "rows": rows,
        "machine": {
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
    }
    stem = os.path.join(args.out, "live_stream_benchmark_quick" if args.quick else "live_stream_benchmark")
    os.makedirs(args.out, exist_ok=True)
    with open(stem + ".json", "w") as handle:
        json.dump(report, handle, indent=2)
    markdown = to_markdown(report)
    with open(stem + ".md", "w") as handle:
        handle.write(markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
