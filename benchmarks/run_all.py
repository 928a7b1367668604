"""One benchmark for every model and format: size, latency, peak memory, fidelity, probes; report + plots.

For each model (a ``tiny_cnn`` distilled from the offline ``speech_embedding`` teacher, and
random-weight registry students for speed and size: ``trillsson1``, ``wav2small`` when the
registry has it) and each format:

=============  ============================================================================
keras          the Keras model in a ``tf.function`` (float64 log-mel frontend, as trained)
savedmodel     the hub-format export through ``hub.load``
float32        ``.tflite``, frontend inside (audio in), :class:`trillsson_tf.runtime.TFLiteModel`
float16        the same with float16 weights
dynamic        dynamic-range ``.tflite`` of the network only (patch in; the runtime computes the
               log-mel in numpy): the converter refuses dynamic range with the frontend inside
int8           int8 network, float frontend inside (audio in)
int8_patch     fully int8 network (patch in, numpy frontend): the file a microcontroller gets
tflm_int8      ``int8_patch`` in the ``tflite-micro`` Python interpreter (reference kernels on
               the host, numpy frontend); only for models up to ``--tflm-max-params``
=============  ============================================================================

it measures: parameters; file size; latency on real speech cut to 1 s and 8 s (median and p90
of ``--runs`` calls after 3 warm-up calls, one thread everywhere: TensorFlow intra/inter-op 1,
LiteRT ``num_threads=1``, ``OPENBLAS_NUM_THREADS=1``); peak resident memory (VmHWM) of a fresh
process that loads the format and embeds the 8 s clip once (the Python interpreter and its
imports included: TensorFlow alone is most of the two TF formats); fidelity (mean cosine and
max abs diff) to the float Keras model on held-out speech (FSDD test takes and the bundled
LibriSpeech utterances), and to the teacher where there is one; FSDD digit and speaker probe
accuracy (logistic regression fit on takes 5-7, scored on takes 0-1) for the distilled model.

Conversions go through :func:`trillsson_tf.converters.tflite.convert`, probes and fidelity through
:mod:`trillsson_tf.apps.evaluate`, fresh processes through ``runtime_benchmark.fresh_process``.
Writes ``<out>/results.md``, ``<out>/results.json`` and ``<out>/plots/*.png`` (``--quick``:
``results_quick.*`` and ``plots/quick_*.png``).

    .venv/bin/python benchmarks/run_all.py --student-export runs/android_assets_work/distill/export
    .venv/bin/python benchmarks/run_all.py --quick          # tiny_cnn only, fewer clips (a few minutes)
"""

import argparse
import datetime
import glob
import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import platform
import sys
import tempfile
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)
import runtime_benchmark  # noqa: E402  (fresh_process, speech_files)

from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio  # noqa: E402
from trillsson_tf.errors import TrillssonError  # noqa: E402
from trillsson_tf.litert import dequantize, quantize  # noqa: E402
from trillsson_tf.runtime import TFLiteModel  # noqa: E402

FORMATS = ("keras", "savedmodel", "float32", "float16", "dynamic", "int8", "int8_patch", "tflm_int8")
TFLITE_FORMATS = {  # format: (quantize, frontend inside)
    "float32": ("float32", True),
    "float16": ("float16", True),
    "dynamic": ("dynamic", False),
    "int8": ("int8", True),
    "int8_patch": ("int8", False),
}
CLIP_SECONDS = (1, 8)
WARMUP_CALLS = 3
DISTILLED = "tiny_cnn"
TEACHER = "speech_embedding"
_VMHWM = """
with open("/proc/self/status") as status:
    print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024)
"""


class MicroModel(TFLiteModel):
    """:class:`TFLiteModel`'s input handling (numpy frontend, quantization, mean over chunks) with
    each network call run by the ``tflite-micro`` interpreter instead of LiteRT.

    One TFLM interpreter is kept (``micro_run`` builds one per call, which would time its setup).
    """

    def __init__(self, model_path, *, arena_bytes=None):
        from tflite_micro.python.tflite_micro import runtime

        super().__init__(model_path, num_threads=1)
        with open(model_path, "rb") as handle:
            self._micro = runtime.Interpreter.from_bytes(handle.read(), arena_size=arena_bytes)

    def _run(self, values):
        rows = []
        for row in quantize(values, self._input):
            self._micro.set_input(row[np.newaxis], 0)
            self._micro.invoke()
            rows.append(np.array(self._micro.get_output(0)))
        return dequantize(np.concatenate(rows), self._output)


def machine() -> dict:
    """CPU model, cores, OS, Python and library versions, and the UTC date of the run."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    import ai_edge_litert
    import tensorflow as tf

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        # Other jobs share this machine kind's cores: the 1-minute load at the start says how busy it was.
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def latency_clips() -> dict:
    """Real speech cut to 1 s and 8 s: the first utterance of at least 8 s, else utterances joined."""
    files = runtime_benchmark.speech_files()
    audio = np.zeros(0, np.float32)
    for path in files:
        clip = load_audio(path)
        audio = clip if len(clip) >= 8 * 16000 else np.concatenate([audio, clip])
        if len(audio) >= 8 * 16000:
            break
    return {seconds: np.ascontiguousarray(audio[: seconds * 16000]) for seconds in CLIP_SECONDS}


def evaluation_data(quick: bool) -> dict:
    """FSDD clips with digit/speaker/split labels (probes) and held-out clips for fidelity."""
    from trillsson_tf.train.data import find_audio, load_clips

    takes = ("0", "5") if quick else ("0", "1", "5", "6", "7")
    fsdd = [item for item in find_audio(os.path.join(SAMPLE_AUDIO_DIR, "fsdd")) if item.labels["take"] in takes]
    librispeech = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))[: 4 if quick else None]
    loaded = load_clips(fsdd)
    clips = list(loaded.clips) + [load_audio(path) for path in librispeech]
    held_out = np.array([item.labels["split"] == "test" for item in loaded.items] + [True] * len(librispeech))
    return {
        "clips": clips,
        "held_out": held_out,
        "fsdd_rows": len(loaded.items),
        "labels": {task: [item.labels[task] for item in loaded.items] for task in ("digit", "speaker")},
        "split": [item.labels["split"] for item in loaded.items],
        "description": f"{int(held_out.sum())} held-out clips (FSDD takes 0{'' if quick else '-1'}, "
        f"{len(librispeech)} LibriSpeech utterances); probes on {len(loaded.items)} FSDD clips",
    }


def distilled_export(args) -> str:
    """The export of the distilled student: ``--student-export``, else a (resumable) run in ``--work-dir``."""
    from trillsson_tf.train.data import find_audio
    from trillsson_tf.train.distill import distill
    from trillsson_tf.train.engine import RUN_FILE

    if args.student_export:
        return args.student_export
    out_dir = os.path.join(args.work_dir, "distill")
    train = [item for item in find_audio(os.path.join(SAMPLE_AUDIO_DIR, "fsdd")) if item.labels["split"] == "train"]
    train += find_audio(os.path.join(SAMPLE_AUDIO_DIR, "librispeech"))
    run = distill(
        train,
        out_dir=out_dir,
        teacher=TEACHER,
        student=DISTILLED,
        steps=args.distill_steps,
        checkpoint_every=max(1, args.distill_steps // 4),
        validation_fraction=0.0,
        cache_dir=os.path.join(args.work_dir, "targets"),
        resume=os.path.isfile(os.path.join(out_dir, RUN_FILE)),
        progress=True,
    )
    return run["export"]


def timed(call, clip, runs: int) -> dict:
    """Median and p90 milliseconds of ``call(clip)`` over ``runs`` calls after the warm-up."""
    for _ in range(WARMUP_CALLS):
        call(clip)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call(clip)
        times.append(time.perf_counter() - start)
    return {"median_ms": 1000 * float(np.median(times)), "p90_ms": 1000 * float(np.percentile(times, 90)), "runs": runs}


def folder_bytes(path: str, *, exclude=()) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
        if name not in exclude
    )


def peak_rss_mb(setup: str, clip_path: str) -> float:
    """VmHWM in MB of a fresh process running ``setup`` (which defines ``embed``) on the saved clip."""
    code = f"import numpy as np\n{setup}\nembed(np.load({clip_path!r}))\n{_VMHWM}"
    return float(runtime_benchmark.fresh_process(code))


def _tf_one_thread() -> str:
    return (
        "from trillsson_tf._keras import tf\n"
        "tf.config.threading.set_intra_op_parallelism_threads(1)\n"
        "tf.config.threading.set_inter_op_parallelism_threads(1)\n"
    )


def build_formats(name: str, export_dir: str, work: str, calibration, tflm_max_params: int) -> dict:
    """Every format of one model: ``{format: {'embed', 'file_bytes', 'memory_setup', 'note'}}`` or ``{'error'}``."""
    from trillsson_tf.converters.common import load_keras_model
    from trillsson_tf.converters.tflite import convert
    from trillsson_tf._keras import tf
    from trillsson_tf.models import output_key

    model, _ = load_keras_model(export_dir)
    key = output_key(model)
    function = tf.function(
        lambda audio: model(audio, training=False)[key], input_signature=[tf.TensorSpec([1, None], tf.float32)]
    )
    formats = {
        "keras": {
            "embed": lambda clip: function(tf.constant(clip[np.newaxis])).numpy(),
            "file_bytes": os.path.getsize(os.path.join(export_dir, "model.keras")),
            "memory_setup": _tf_one_thread() + "from trillsson_tf.converters.common import load_keras_model\n"
            f"model, _ = load_keras_model({export_dir!r})\n"
            f"embed = lambda clip: model(clip[np.newaxis])[{key!r}].numpy()",
            "note": "model.keras file",
        },
    }
    import tensorflow_hub as hub

    loaded = hub.load(export_dir)
    formats["savedmodel"] = {
        "embed": lambda clip: loaded(tf.constant(clip[np.newaxis]))[key].numpy(),
        "file_bytes": folder_bytes(export_dir, exclude=("model.keras", "run.json", "trillsson_tf.json")),
        "memory_setup": _tf_one_thread() + f"import tensorflow_hub as hub\nloaded = hub.load({export_dir!r})\n"
        f"embed = lambda clip: loaded(tf.constant(clip[np.newaxis]))[{key!r}].numpy()",
        "note": "SavedModel folder",
    }
    for fmt, (quantization, frontend) in TFLITE_FORMATS.items():
        path = os.path.join(work, f"{name}_{fmt}.tflite")
        try:
            card = convert(
                export_dir,
                path,
                quantize=quantization,
                frontend=frontend,
                overwrite=True,
                representative_audio=calibration if quantization == "int8" else None,
            )
        except TrillssonError as error:
            formats[fmt] = {"error": str(error)}
            continue
        runtime = TFLiteModel(path, num_threads=1)
        formats[fmt] = {
            "embed": lambda clip, runtime=runtime: runtime(clip)["embedding"],
            "file_bytes": card["size_bytes"],
            "memory_setup": f"from trillsson_tf.runtime import TFLiteModel\nruntime = TFLiteModel({path!r}, num_threads=1)\n"
            "embed = lambda clip: runtime(clip)['embedding']",
            "note": ("frontend inside" if frontend else "numpy frontend")
            + (
                f", {len(card['float_ops'])} float ops (the frontend)"
                if quantization == "int8" and card["float_ops"]
                else ""
            ),
            "path": path,
        }
    parameters = int(model.count_params())
    if "path" not in formats.get("int8_patch", {}):
        formats["tflm_int8"] = {"error": "no int8_patch model to run"}
    elif parameters > tflm_max_params:
        formats["tflm_int8"] = {
            "error": f"{parameters:,} parameters: too large for a microcontroller (limit {tflm_max_params:,})"
        }
    else:
        try:
            from trillsson_tf.converters.micro import to_micro

            report = to_micro(
                formats["int8_patch"]["path"], os.path.join(work, f"{name}_micro"), name=f"g_{name}", overwrite=True
            )
            micro = MicroModel(formats["int8_patch"]["path"], arena_bytes=report["arena_bytes"])
        except TrillssonError as error:
            formats["tflm_int8"] = {"error": str(error)}
        else:
            formats["tflm_int8"] = {
                "embed": lambda clip: micro(clip)["embedding"],
                "file_bytes": report["model_bytes"],
                "memory_setup": f"import sys; sys.path.insert(0, {HERE!r})\nfrom run_all import MicroModel\n"
                f"micro = MicroModel({formats['int8_patch']['path']!r}, arena_bytes={report['arena_bytes']})\n"
                "embed = lambda clip: micro(clip)['embedding']",
                "note": f"arena {report['arena_bytes']:,} bytes; host reference kernels",
            }
    return {"model": model, "parameters": parameters, "formats": formats}


def measure_model(name: str, built: dict, data: dict, clips: dict, clip_path: str, runs: int, teacher_vectors) -> list:
    """One row per format: size, latency, memory, fidelity (to the Keras model and the teacher), probes."""
    from trillsson_tf.apps.evaluate import probe_accuracy
    from trillsson_tf.metrics import fidelity, parity

    vectors = {}
    rows = []
    held = data["held_out"]
    for fmt in FORMATS:
        spec = built["formats"].get(fmt)
        row = {"model": name, "format": fmt, "parameters": built["parameters"]}
        if spec is None or "error" in spec:
            rows.append({**row, "error": spec["error"] if spec else "not built"})
            continue
        print(f"  {name} / {fmt}", flush=True)
        vectors[fmt] = np.concatenate([spec["embed"](clip) for clip in data["clips"]])
        reference = vectors["keras"]
        agreement = parity(reference[held], vectors[fmt][held])
        row.update(
            {
                "file_bytes": int(spec["file_bytes"]),
                "note": spec["note"],
                "latency": {f"{seconds}s": timed(spec["embed"], clips[seconds], runs) for seconds in CLIP_SECONDS},
                "peak_rss_mb": peak_rss_mb(spec["memory_setup"], clip_path),
                "fidelity_to_float": {
                    "mean_cosine": agreement["mean_cosine"],
                    "max_abs_diff": agreement["max_abs_diff"],
                },
            }
        )
        if teacher_vectors is not None and teacher_vectors.shape[1] == vectors[fmt].shape[1]:
            row["fidelity_to_teacher"] = fidelity(teacher_vectors[held], vectors[fmt][held])["mean_cosine"]
            fsdd = vectors[fmt][: data["fsdd_rows"]]
            row["probes"] = {
                task: probe_accuracy(fsdd, labels, split=data["split"])["accuracy"]
                for task, labels in data["labels"].items()
            }
        rows.append(row)
    return rows


def _ms(row, seconds):
    latency = row["latency"][f"{seconds}s"]
    return f"{latency['median_ms']:.1f} / {latency['p90_ms']:.1f}"


def to_markdown(report: dict) -> str:
    """The report as markdown: machine and date, then one table per model."""
    info = report["machine"]
    lines = [
        "# trillsson_tf benchmark: every model and format",
        "",
        f"Measured {info['date_utc']} UTC on {info['cpu']} ({info['cores']} cores), {info['os']}, Python {info['python']}, "
        f"TensorFlow {info['tensorflow']}, ai-edge-litert {info['ai_edge_litert']}; load average {info['load_average_1min']} "
        "at the start (other jobs shared the cores)" + (" (quick mode)" if report["quick"] else "") + ".",
        f"Latency: median / p90 ms of {report['runs']} calls on real speech cut to 1 s and 8 s, one thread. "
        "Peak RSS: VmHWM of a fresh process that loads the format and embeds the 8 s clip once. "
        f"Fidelity: mean cosine on {report['data']}.",
        "",
    ]
    for model in report["models"]:
        rows = [row for row in report["rows"] if row["model"] == model["name"]]
        lines += [f"## {model['name']} ({model['parameters']:,} parameters; {model['weights']})", ""]
        with_teacher = any("fidelity_to_teacher" in row for row in rows)
        header = "| format | file KB | ms 1 s (median / p90) | ms 8 s (median / p90) | peak RSS MB | cosine to float | max abs diff |"
        rule = "|---|---:|---:|---:|---:|---:|---:|"
        if with_teacher:
            header += f" cosine to {TEACHER} | FSDD digit probe | FSDD speaker probe |"
            rule += "---:|---:|---:|"
        lines += [header + " notes |", rule + "---|"]
        for row in rows:
            if "error" in row:
                lines.append(
                    f"| {row['format']} | - | - | - | - | - | - |"
                    + (" - | - | - |" if with_teacher else "")
                    + f" not run: {row['error']} |"
                )
                continue
            cells = [
                row["format"],
                f"{row['file_bytes'] / 1024:,.0f}",
                _ms(row, 1),
                _ms(row, 8),
                f"{row['peak_rss_mb']:.0f}",
                f"{row['fidelity_to_float']['mean_cosine']:.6f}",
                f"{row['fidelity_to_float']['max_abs_diff']:.2e}",
            ]
            if with_teacher:
                probes = row.get("probes", {})
                cells += [
                    f"{row.get('fidelity_to_teacher', float('nan')):.4f}",
                    f"{probes.get('digit', float('nan')):.3f}",
                    f"{probes.get('speaker', float('nan')):.3f}",
                ]
            lines.append("| " + " | ".join(cells + [row["note"]]) + " |")
        if model.get("teacher"):
            teacher = model["teacher"]
            lines += [
                "",
                f"Teacher `{TEACHER}` ({teacher['parameters']:,} parameters) on the same clips: FSDD digit probe "
                f"{teacher['probes']['digit']:.3f}, speaker probe {teacher['probes']['speaker']:.3f}.",
            ]
        lines.append("")
    for name, error in report.get("failed", {}).items():
        lines += [f"## {name}: not measured", "", f"The run failed: `{error}`.", ""]
    lines += [f"Plots: `{report['plots']['latency']}`, `{report['plots']['size_vs_fidelity']}`.", ""]
    return "\n".join(lines)


def write_plots(report: dict, out_dir: str, prefix: str) -> dict:
    """Latency bars (one panel per model) and size against fidelity, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trillsson_tf.apps import plots

    os.makedirs(os.path.join(out_dir, "plots"), exist_ok=True)
    stamp = (
        f"{report['machine']['cpu']}, {report['machine']['cores']} cores, 1 thread; {report['machine']['date_utc']} UTC"
    )
    paths = {
        "latency": os.path.join("plots", f"{prefix}latency.png"),
        "size_vs_fidelity": os.path.join("plots", f"{prefix}size_vs_fidelity.png"),
    }
    measured = [row for row in report["rows"] if "error" not in row]
    names = list(dict.fromkeys(row["model"] for row in measured))
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 3.6 * len(names)), layout="constrained", squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        plots.latency_bars(
            [
                {"label": row["format"], "clip_s": seconds, **row["latency"][f"{seconds}s"]}
                for row in measured
                if row["model"] == name
                for seconds in CLIP_SECONDS
            ],
            ax=ax,
            title=name,
        )
    fig.suptitle(f"Latency per clip ({stamp})", fontsize="small")
    fig.savefig(os.path.join(out_dir, paths["latency"]), dpi=110)
    plt.close(fig)
    # The Keras and SavedModel rows are the reference (cosine 1 by definition) and TFLM runs the
    # int8_patch file: only the .tflite files are placed.
    ax = plots.size_vs_fidelity(
        [
            {
                "label": row["format"],
                "group": row["model"],
                "size_bytes": row["file_bytes"],
                "fidelity": row["fidelity_to_float"]["mean_cosine"],
            }
            for row in measured
            if row["format"] in TFLITE_FORMATS
        ],
        distance=True,
        title=f"size vs fidelity to the float Keras model ({stamp})",
    )
    ax.title.set_fontsize("small")
    ax.figure.savefig(os.path.join(out_dir, paths["size_vs_fidelity"]), dpi=110)
    plt.close(ax.figure)
    return paths


def benchmark_model(name, args, data, clips, clip_path, calibration, teacher, teacher_vectors):
    """Convert one model to every format and measure it: ``(model entry, rows)``."""
    from trillsson_tf import export_savedmodel, models
    from trillsson_tf.apps.evaluate import probe_accuracy

    if name == DISTILLED:
        export_dir, weights = distilled_export(args), f"distilled from {TEACHER}"
        with open(os.path.join(export_dir, "run.json")) as handle:
            weights += f", {json.load(handle)['step']} steps"
    else:
        export_dir = export_savedmodel(
            models.build(name), os.path.join(args.work_dir, f"{name}_random"), overwrite=True
        )
        weights = "random weights: speed, size and conversion fidelity only"
    built = build_formats(name, export_dir, args.work_dir, calibration, args.tflm_max_params)
    entry = {"name": name, "parameters": built["parameters"], "weights": weights}
    is_distilled = name == DISTILLED
    if is_distilled:
        fsdd = teacher_vectors[: data["fsdd_rows"]]
        entry["teacher"] = {
            "parameters": teacher.parameters,
            "probes": {
                task: probe_accuracy(fsdd, labels, split=data["split"])["accuracy"]
                for task, labels in data["labels"].items()
            },
        }
    rows = measure_model(name, built, data, clips, clip_path, args.runs, teacher_vectors if is_distilled else None)
    return entry, rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny_cnn only, fewer clips, 30-step distillation")
    parser.add_argument(
        "--models",
        nargs="*",
        default=None,
        help=f"models (default: {DISTILLED} trillsson1 wav2small; quick: {DISTILLED}); "
        f"{DISTILLED} is the distilled one, the others have random weights",
    )
    parser.add_argument(
        "--student-export", default=None, help=f"export of a distilled {DISTILLED} (default: distill one)"
    )
    parser.add_argument(
        "--distill-steps", type=int, default=None, help="steps when distilling here (default 1500; quick 30)"
    )
    parser.add_argument(
        "--work-dir", default=os.path.join(REPO, "runs", "benchmark"), help="distillation run and converted files"
    )
    parser.add_argument(
        "--runs", type=int, default=50, help="timed calls per format and clip length (>= 50 for the report)"
    )
    parser.add_argument("--tflm-max-params", type=int, default=1_000_000, help="largest model run in TFLite Micro")
    parser.add_argument("--out", default=HERE, help="folder for results.md, results.json and plots/")
    args = parser.parse_args(argv)
    args.distill_steps = args.distill_steps or (30 if args.quick else 1500)

    from trillsson_tf import models
    from trillsson_tf._keras import tf
    from trillsson_tf.apps.evaluate import embed_clips
    from trillsson_tf.teachers import load_teacher

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran in this process (a test calling main): the report says so
        print(
            "warning: TensorFlow was initialised before the benchmark; its thread settings stay as they were",
            file=sys.stderr,
        )
    names = args.models or (
        [DISTILLED]
        if args.quick
        else [DISTILLED, "trillsson1"] + (["wav2small"] if "wav2small" in models.available() else [])
    )
    os.makedirs(args.work_dir, exist_ok=True)
    data = evaluation_data(args.quick)
    clips = latency_clips()
    calibration = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_6.wav")))
    teacher = load_teacher(TEACHER)
    teacher_vectors = embed_clips(teacher, data["clips"])
    machine_info = {**machine(), "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}
    report = {
        "machine": machine_info,
        "quick": args.quick,
        "runs": args.runs,
        "data": data["description"],
        "models": [],
        "rows": [],
        "failed": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        clip_path = os.path.join(tmp, "clip_8s.npy")
        np.save(clip_path, clips[8])
        for name in names:
            print(f"{name}: converting", flush=True)
            try:
                entry, rows = benchmark_model(name, args, data, clips, clip_path, calibration, teacher, teacher_vectors)
            except Exception as error:  # one model's failure (say, a converter bug) must not lose the others' figures
                traceback.print_exc()
                report["failed"][name] = f"{type(error).__name__}: {error}"
                continue
            report["models"].append(entry)
            report["rows"] += rows
    prefix = "quick_" if args.quick else ""
    report["plots"] = write_plots(report, args.out, prefix)
    stem = os.path.join(args.out, "results_quick" if args.quick else "results")
    with open(stem + ".json", "w") as handle:
        json.dump(report, handle, indent=2)
    markdown = to_markdown(report)
    with open(stem + ".md", "w") as handle:
        handle.write(markdown)
    print(markdown)
    print(f"Wrote {stem}.md, {stem}.json and {', '.join(report['plots'].values())}")
    return report


if __name__ == "__main__":
    main()
