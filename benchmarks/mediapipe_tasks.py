"""MediaPipe Tasks (``mediapipe==0.10.21``) in a virtualenv of its own, driven from the project's process.

MediaPipe 0.10.21 needs numpy < 2 and the project runs numpy 2, so MediaPipe cannot be imported
here: :func:`ensure_venv` makes a virtualenv with the pinned packages (once), and
:func:`run_tasks` runs this same file there as a worker (``python mediapipe_tasks.py worker JOB``)
that loads a ``.tflite`` into ``AudioEmbedder`` or ``AudioClassifier``, feeds clips, and
returns every window's result and the median time. Used by ``mediapipe_parity.py`` and
``runtime_benchmark.py``. (mediapipe 1.2.x installs with numpy 2, but its Python
``AudioEmbedder`` accepts only ``.litertlm`` files.)

At module level this file imports the standard library and numpy only: the worker side runs
without trillsson_tf.

    .venv/bin/python benchmarks/mediapipe_tasks.py ensure [--venv /work/venvs/mediapipe]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

DEFAULT_VENV = os.environ.get("TRILLSSON_MEDIAPIPE_VENV", "/work/venvs/mediapipe")
"""Where the MediaPipe virtualenv lives unless a path is given (``$TRILLSSON_MEDIAPIPE_VENV``)."""
REQUIREMENTS = ("mediapipe==0.10.21", "numpy==1.26.4")
"""What the virtualenv holds: the last MediaPipe whose Python AudioEmbedder takes .tflite, and a numpy it supports."""
TASKS = ("embedder", "classifier")
SAMPLE_RATE_HZ = 16000


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def ensure_venv(venv: str = DEFAULT_VENV) -> dict:
    """Make the MediaPipe virtualenv at ``venv`` unless it already imports the pinned versions.

    Returns:
        ``{'python', 'created', 'setup_s', 'mediapipe', 'numpy'}``.
    """
    python = venv_python(venv)
    start, created = time.perf_counter(), False
    if not os.path.isfile(python) or _versions(python) is None:
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)
        created = True
    versions = _versions(python)
    if versions is None:
        raise RuntimeError(f"{venv} does not import {' and '.join(REQUIREMENTS)} after installing them")
    return {"python": python, "created": created, "setup_s": time.perf_counter() - start, **versions}


def _versions(python: str):
    code = "import mediapipe, numpy, json; print(json.dumps({'mediapipe': mediapipe.__version__, 'numpy': numpy.__version__}))"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    versions = json.loads(result.stdout.strip().splitlines()[-1])
    wanted = dict(requirement.split("==") for requirement in REQUIREMENTS)
    return versions if versions == wanted else None


def run_tasks(python: str, model_path: str, task: str, clips: list, *, repeats: int = 1) -> dict:
    """Run ``clips`` through a MediaPipe audio task in the virtualenv's interpreter.

    Args:
        python: The MediaPipe virtualenv's interpreter (:func:`ensure_venv`).
        model_path: A ``.tflite`` with TFLite Model Metadata and a fixed ``[1, N]`` input.
        task: ``'embedder'`` (``AudioEmbedder``) or ``'classifier'`` (``AudioClassifier``; the
            categories are put back in index order).
        clips: float32 ``[samples]`` arrays at 16 kHz.
        repeats: Timed passes over all clips after one warm-up pass.

    Returns:
        ``{'outputs': [float32 [windows, D] per clip], 'seconds': median s for all clips,
        'cpu_seconds': its median process CPU time, 'create_s': s to create the task, 'timestamps_ms': [[...] per clip], 'mediapipe': version}``.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}. Expected one of: {list(TASKS)}.")
    with tempfile.TemporaryDirectory() as folder:
        np.savez(os.path.join(folder, "clips.npz"), *[np.asarray(clip, np.float32) for clip in clips])
        job = {"model": os.path.abspath(model_path), "task": task, "repeats": repeats, "folder": folder}
        with open(os.path.join(folder, "job.json"), "w") as handle:
            json.dump(job, handle)
        result = subprocess.run(
            [python, os.path.abspath(__file__), "worker", os.path.join(folder, "job.json")],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"MediaPipe worker failed on {model_path}:\n{result.stderr[-3000:]}")
        with open(os.path.join(folder, "result.json")) as handle:
            report = json.load(handle)
        with np.load(os.path.join(folder, "outputs.npz")) as outputs:
            report["outputs"] = [outputs[f"arr_{i}"] for i in range(len(clips))]
    return report


def _worker(job_path: str) -> None:
    """The MediaPipe side: run the job, write ``result.json`` and ``outputs.npz`` beside it."""
    import mediapipe
    from mediapipe.tasks.python import audio
    from mediapipe.tasks.python.components.containers import audio_data
    from mediapipe.tasks.python.core import base_options

    with open(job_path) as handle:
        job = json.load(handle)
    with np.load(os.path.join(job["folder"], "clips.npz")) as archive:
        clips = [archive[f"arr_{i}"] for i in range(len(archive.files))]
    options = base_options.BaseOptions(model_asset_path=job["model"])
    start = time.perf_counter()
    if job["task"] == "embedder":
        task = audio.AudioEmbedder.create_from_options(audio.AudioEmbedderOptions(base_options=options))
        call = task.embed
    else:
        task = audio.AudioClassifier.create_from_options(audio.AudioClassifierOptions(base_options=options))
        call = task.classify
    create_s = time.perf_counter() - start

    def vectors(results):
        if job["task"] == "embedder":
            return np.stack([np.asarray(r.embeddings[0].embedding, np.float32) for r in results])
        rows = []
        for r in results:
            categories = r.classifications[0].categories
            row = np.zeros(len(categories), np.float32)
            for category in categories:
                row[category.index] = category.score
            rows.append(row)
        return np.stack(rows)

    def run_all():
        return [call(audio_data.AudioData.create_from_array(clip, SAMPLE_RATE_HZ)) for clip in clips]

    results = run_all()  # warm-up, and the outputs compared
    times, cpu_times = [], []
    for _ in range(job["repeats"]):
        start, cpu = time.perf_counter(), time.process_time()
        run_all()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)  # CPU time over wall time says how many threads ran
    task.close()
    np.savez(os.path.join(job["folder"], "outputs.npz"), *[vectors(r) for r in results])
    report = {
        "seconds": statistics.median(times) if times else None,
        "times": times,
        "cpu_seconds": statistics.median(cpu_times) if cpu_times else None,
        "create_s": create_s,
        "timestamps_ms": [[r.timestamp_ms for r in clip] for clip in results],
        "mediapipe": mediapipe.__version__,
    }
    with open(os.path.join(job["folder"], "result.json"), "w") as handle:
        json.dump(report, handle)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ensure = commands.add_parser("ensure", help="make the MediaPipe virtualenv if missing")
    ensure.add_argument("--venv", default=DEFAULT_VENV)
    worker = commands.add_parser("worker", help="(inside the virtualenv) run one job")
    worker.add_argument("job")
    args = parser.parse_args(argv)
    if args.command == "worker":
        _worker(args.job)
    else:
        print(json.dumps(ensure_venv(args.venv), indent=2))


if __name__ == "__main__":
    main()
