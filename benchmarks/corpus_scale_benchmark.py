"""Streaming distillation: peak RSS and steps/s of the training process at 1x, 10x and more of a corpus.

The corpus is the real speech of ``../shared/data`` (FSDD + LibriSpeech test-other) and its
augmented views (:mod:`trillsson_tf.train.augment`: speed, trim, gain, noise), each with its own
``speech_embedding`` target. The targets of each size are built into a cache of its own
(``build_cache``; timed; a cache left by an earlier run is reused), as a user's corpus would
be, then each size is distilled in a fresh process (``tiny_cnn``, batch 32, ``--steps``) and
the process's peak RSS (``ru_maxrss``), steps/s, records, hours and disk per hour of shards
are recorded. Steps/s is given two ways: over the whole loop, and steady (the steps after the
first, which traces the step and fills the shuffle buffer); ``--repeats`` runs every size that
many times, the sizes taking turns, and the table gives the medians.
Sizes are views per file: 0 (1x), 9 (10x), and ``--views`` for the largest; ``--files``
files are taken evenly from the corpus (the teacher's time bounds what a 2-core run can build).
``--baseline CHECKOUT`` also runs the 1x size with the toolkit of another checkout (e.g. a
worktree of the last commit that held the corpus in memory) for the in-memory steps/s and RSS.
``--file-counts 300 3000 12000`` scales files instead of views (distinct 2 s files cut from the
corpus, the default 10 % held out, as ``distill --data`` runs by default): peak RSS must not grow
with the number of files (``corpus_scale_benchmark_files.{json,md}``).

    .venv/bin/python benchmarks/corpus_scale_benchmark.py                      # 300 files: 1x, 10x, 20x; 60 steps
    .venv/bin/python benchmarks/corpus_scale_benchmark.py --files 0 --views 0 9 99 --steps 400 --repeats 3 --baseline ../wt/inmem
    .venv/bin/python benchmarks/corpus_scale_benchmark.py --file-counts 300 3000 12000 --steps 100 --repeats 3

Writes ``benchmarks/results/corpus_scale_benchmark.{json,md}`` and prints the markdown.
"""

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
DATA = os.path.join(REPO, "..", "shared", "data")
JOB = """
import json, resource, sys
from trillsson_tf.train.distill import distill
job = json.load(sys.stdin)
record = distill(job["files"], out_dir=job["out"], student="tiny_cnn", steps=job["steps"], batch_size=32,
                 checkpoint_every=job["steps"], cache_dir=job["cache"], augment=job["views"], overwrite=True,
                 validation_fraction=job.get("validation_fraction", 0.0))
print("RESULT " + json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                              "steps_per_second": record["steps_per_second"], "data": record.get("data", {}),
                              "steady_steps_per_second": record.get("steady_steps_per_second"),
                              "first_step_seconds": record.get("first_step_seconds"),
                              "scan_seconds": record.get("data", {}).get("scan_seconds")}))
"""


def corpus_files():
    """The real speech files of ``../shared/data``, sorted."""
    files = sorted(
        glob.glob(os.path.join(DATA, "**", "*.wav"), recursive=True)
        + glob.glob(os.path.join(DATA, "**", "*.flac"), recursive=True)
    )
    if not files:
        raise SystemExit(f"No audio under {DATA}.")
    return files


def run_size(files, views, *, cache, steps, work, checkout=REPO, validation_fraction=0.0):
    """Distill one size in a fresh process with the toolkit of ``checkout``; returns its RESULT record."""
    job = {
        "files": files,
        "out": os.path.join(work, f"run_{views}_{len(files)}_{os.path.basename(checkout)}"),
        "cache": cache,
        "views": views,
        "steps": steps,
        "validation_fraction": validation_fraction,
    }
    # The job goes in on stdin: thousands of paths exceed the 128 KB limit of one argument.
    result = subprocess.run(
        [sys.executable, "-c", JOB], input=json.dumps(job), capture_output=True, text=True, cwd=checkout
    )
    if result.returncode:
        raise SystemExit(f"The {views}-view run failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    output = result.stdout
    return json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])


def shard_bytes(folder):
    """Bytes of the shard files in a targets folder."""
    return sum(os.path.getsize(path) for path in glob.glob(os.path.join(folder, "targets-*.tfrecord")))


def _median(runs, key):
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def _rate(value):
    return f"{value:.2f}" if value is not None else "-"


def to_markdown(report):
    lines = [
        "# Streaming distillation: memory and speed against corpus size",
        "",
        f"{report['files']} real speech files ({report['source']}) and their augmented views, "
        f"`speech_embedding` targets, `tiny_cnn`, batch 32, {report['steps']} steps, 2-core CPU, one fresh "
        f"process per run, each size from its own target cache, {report['repeats']} run(s) per size taking turns, "
        f"medians ({report['date']}). Steps/s over the whole loop and steady (after the first step, which "
        "traces the step function and fills the shuffle buffer); the shard scan (keys, target moments) comes before the first step. Targets: the local builder (`build_cache`), "
        "records/s while it computed them (blank: reused from an earlier build).",
        "",
        "| size | records | hours | shards | peak RSS MB | shard scan s | steps/s | steady steps/s | first step s | "
        "targets built s | records/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["sizes"]:
        rate = f"{row['build_records_per_s']:.0f}" if row.get("build_records_per_s") else ""
        built = f"{row['build_s']:.0f}" if row.get("build_records_per_s") else ""
        first_step = f"{row['first_step_seconds']:.1f}" if row.get("first_step_seconds") is not None else "-"
        scan = f"{row['scan_seconds']:.0f}" if row.get("scan_seconds") is not None else "-"
        lines.append(
            f"| {row['views'] + 1}x | {row['records']:,} | {row['hours']:.2f} | {row.get('shards') or ''} | "
            f"{row['rss_mb']:.0f} | {scan} | {_rate(row['steps_per_second'])} | "
            f"{_rate(row.get('steady_steps_per_second'))} | {first_step} | {built} | {rate} |"
        )
    first, last = report["sizes"][0], report["sizes"][-1]
    baseline = report.get("in_memory_1x")
    if baseline:
        lines.append(
            f"| 1x, in memory (`{baseline['checkout']}`) | {first['records']:,} | {first['hours']:.2f} | - | "
            f"{baseline['rss_mb']:.0f} | - | {_rate(baseline['steps_per_second'])} | - | - | | |"
        )
    steady = ""
    if first.get("steady_steps_per_second") and last.get("steady_steps_per_second"):
        steady = f", steady {last['steady_steps_per_second'] / first['steady_steps_per_second']:.3f}"
    lines += [
        "",
        f"- Peak RSS {last['views'] + 1}x / 1x: {last['rss_mb'] / first['rss_mb']:.3f}; "
        f"steps/s {last['views'] + 1}x / 1x: {last['steps_per_second'] / first['steps_per_second']:.3f}{steady}.",
        "- Steps/s of each run (whole loop / steady): "
        + "; ".join(
            f"{row['views'] + 1}x "
            + ", ".join(
                f"{_rate(run['steps_per_second'])} / {_rate(run.get('steady_steps_per_second'))}" for run in row["runs"]
            )
            for row in report["sizes"]
        )
        + ".",
        f"- Shards: {report['mb_per_hour']:.0f} MB per hour of audio (16-bit PCM + targets).",
    ]
    if baseline:
        lines.append(
            f"- Streaming / in-memory at 1x (whole loop; the in-memory trainer records no steady rate): "
            f"steps/s {first['steps_per_second'] / baseline['steps_per_second']:.3f}, "
            f"peak RSS {first['rss_mb'] / baseline['rss_mb']:.3f}."
        )
    return "\n".join(lines) + "\n"


def cut_files(count, folder):
    """``count`` distinct 2 s WAVs cut from the corpus (file ``i``: corpus file ``i mod M`` at a shifted start)."""
    import numpy as np
    import soundfile

    from trillsson_tf.audio import load_audio

    os.makedirs(folder, exist_ok=True)
    corpus = [load_audio(path) for path in corpus_files()]
    corpus = [clip for clip in corpus if len(clip) >= 32000]
    paths = []
    for i in range(count):
        clip = corpus[i % len(corpus)]
        start = (i // len(corpus) * 4000) % (len(clip) - 32000 + 1)
        paths.append(os.path.join(folder, f"cut_{i:06d}.wav"))
        if not os.path.exists(paths[-1]):
            soundfile.write(paths[-1], clip[start : start + 32000].astype(np.float32), 16000, subtype="PCM_16")
    return paths


def scale_files(counts, *, steps, work, repeats=1):
    """Peak RSS and steps/s of ``distill`` (10 % held out) on each number of files; writes ``*_files.{json,md}``.

    ``repeats`` runs per size, the sizes taking turns; the table gives medians (peak RSS moves by a
    few percent from run to run).
    """
    from trillsson_tf.train.targets import build_cache
    from trillsson_tf.train.data import find_audio
    from trillsson_tf.teachers import load_teacher

    teacher = load_teacher("speech_embedding")
    everything = cut_files(max(counts), os.path.join(work, "cut"))
    rows = []
    for count in sorted(counts):
        cache = os.path.join(work, f"cache_files_{count}")
        build_cache(teacher, find_audio(everything[:count]), cache_dir=cache, progress=True)
        rows.append({"files": count, "cache": cache, "runs": []})
    for repeat in range(repeats):
        for row in rows:
            run = run_size(
                everything[: row["files"]], 0, cache=row["cache"], steps=steps, work=work, validation_fraction=0.1
            )
            row["runs"].append({"rss_mb": run["rss_mb"], "steps_per_second": run["steps_per_second"]})
            row["validation_files"] = run["data"].get("validation_files")
            print({"files": row["files"], "repeat": repeat, **row["runs"][-1]}, flush=True)
    for row in rows:
        row.update({key: _median(row["runs"], key) for key in ("rss_mb", "steps_per_second")})
    lines = [
        "# Streaming distillation: memory against the number of files",
        "",
        f"Distinct 2 s files cut from ../shared/data, `speech_embedding` targets (cached before the run), "
        f"`tiny_cnn`, batch 32, {steps} steps, 10 % of files held out, one fresh process per run, "
        f"{repeats} run(s) per size taking turns, medians, 2-core CPU ({time.strftime('%Y-%m-%d')}).",
        "",
        "| files | held out | peak RSS MB (median) | RSS / smallest | peak RSS of each run | steps/s |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        each = ", ".join(f"{run['rss_mb']:.0f}" for run in row["runs"])
        lines.append(
            f"| {row['files']:,} | {row['validation_files']} | {row['rss_mb']:.0f} | "
            f"{row['rss_mb'] / rows[0]['rss_mb']:.3f} | {each} | {_rate(row['steps_per_second'])} |"
        )
    markdown = "\n".join(lines) + "\n"
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "corpus_scale_benchmark_files.json"), "w") as handle:
        json.dump(
            {"date": time.strftime("%Y-%m-%d"), "steps": steps, "repeats": repeats, "rows": rows}, handle, indent=2
        )
    with open(os.path.join(RESULTS, "corpus_scale_benchmark_files.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--views", type=int, nargs="+", default=[0, 9, 19], help="augmented views per file, one size each"
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1, help="runs per size (the sizes take turns; medians reported)")
    parser.add_argument("--files", type=int, default=300, help="files taken evenly from the corpus (0: all)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--baseline", default=None, help="a checkout whose distill holds the corpus in memory")
    parser.add_argument(
        "--file-counts",
        type=int,
        nargs="+",
        default=None,
        help="scale distinct 2 s files instead of views (e.g. 300 3000 12000)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.steps < 2:
        parser.error("--repeats must be at least 1 and --steps at least 2")
    if args.file_counts:
        return scale_files(
            args.file_counts,
            steps=args.steps,
            repeats=args.repeats,
            work=args.work or tempfile.mkdtemp(prefix="corpus_scale_benchmark_"),
        )
    from trillsson_tf.train.data import find_audio
    from trillsson_tf.train.targets import build_cache
    from trillsson_tf.teachers import load_teacher

    files = corpus_files()
    files = files[:: max(1, len(files) // args.files)][: args.files] if args.files else files
    work = args.work or tempfile.mkdtemp(prefix="corpus_scale_benchmark_")
    teacher, items = load_teacher("speech_embedding"), find_audio(files)
    sizes = []
    for views in sorted(args.views):
        # Each size has its own cache, as a user's corpus would: a run reads the shards of its own records.
        cache = os.path.join(work, f"cache_{views}")
        began = time.perf_counter()
        index = build_cache(teacher, items, cache_dir=cache, views=views, progress=True)
        build_s = time.perf_counter() - began
        sizes.append(
            {
                "views": views,
                "cache": cache,
                "build_s": build_s,
                "build_records_computed": index.computed,
                "build_records_reused": index.reused,
                "build_records_per_s": index.computed / build_s if index.computed else None,
                "shard_mb": shard_bytes(index.directory) / 1e6,
                "runs": [],
            }
        )
    baseline_runs = []
    checkout = os.path.abspath(args.baseline) if args.baseline else None
    # The sizes take turns so that a slow spell of the machine falls on all of them alike.
    for repeat in range(args.repeats):
        for size in sizes:
            size["runs"].append(run_size(files, size["views"], cache=size["cache"], steps=args.steps, work=work))
            print(
                {
                    "views": size["views"],
                    "repeat": repeat,
                    **{k: v for k, v in size["runs"][-1].items() if k != "data"},
                },
                flush=True,
            )
        if checkout:
            baseline_runs.append(
                run_size(
                    files,
                    0,
                    cache=os.path.join(work, "cache_in_memory"),
                    steps=args.steps,
                    work=work,
                    checkout=checkout,
                )
            )
            print(
                {"baseline": checkout, "repeat": repeat, "steps_per_second": baseline_runs[-1]["steps_per_second"]},
                flush=True,
            )
    for size in sizes:
        data = size["runs"][-1]["data"]
        size.update(
            {
                "records": data["train_records"],
                "hours": data["train_hours"],
                "shards": data.get("shards_read"),
                "rss_mb": max(run["rss_mb"] for run in size["runs"]),
                **{
                    key: _median(size["runs"], key)
                    for key in ("steps_per_second", "steady_steps_per_second", "first_step_seconds", "scan_seconds")
                },
            }
        )
        for run in size["runs"]:
            run.pop("data")
    baseline = None
    if checkout:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True
        ).stdout.strip()
        baseline = {
            "checkout": commit or checkout,
            "rss_mb": max(run["rss_mb"] for run in baseline_runs),
            "steps_per_second": _median(baseline_runs, "steps_per_second"),
            "runs": [run["steps_per_second"] for run in baseline_runs],
        }
    largest = sizes[-1]  # every record of its shards is read (nothing held out)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "source": "../shared/data",
        "files": len(files),
        "steps": args.steps,
        "repeats": args.repeats,
        "sizes": sizes,
        "in_memory_1x": baseline,
        "mb_per_hour": largest["shard_mb"] / largest["hours"],
        "builder_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "corpus_scale_benchmark.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    markdown = to_markdown(report)
    with open(os.path.join(RESULTS, "corpus_scale_benchmark.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
