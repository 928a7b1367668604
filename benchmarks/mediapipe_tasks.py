"""MediaPipe Tasks in virtualenvs of their own, driven from the project's process: the current release and 0.10.21.

Two MediaPipe releases are checked, each in its own virtualenv (:data:`SETUPS`):

* ``mediapipe==1.2.3`` (the current release, numpy 2): ``AudioClassifier`` on a ``.tflite``
  with metadata, in clip mode (``classify``) and stream mode (``classify_async``). It has no
  ``AudioEmbedder`` for ``.tflite`` files: MediaPipe removed the TFLite embedder (first released
  in 0.10.32); 1.2.x's Python ``AudioEmbedder`` takes only ``.litertlm`` models (LiteRT-LM).
* ``mediapipe==0.10.21`` (numpy < 2): the last release with the TFLite ``AudioEmbedder``, and its
  ``AudioClassifier``; clip mode. Its checks hold for that version only.

:func:`ensure_venv` makes a version's virtualenv (once), and :func:`run_tasks` runs this same file
there as a worker (``python mediapipe_tasks.py worker JOB``) that loads a ``.tflite`` into the
task, feeds clips, and returns every window's result and the median time. Used by
``mediapipe_parity.py`` and ``runtime_benchmark.py``.

At module level this file imports the standard library and numpy only: the worker side runs
without trillsson_tf.

    .venv/bin/python benchmarks/mediapipe_tasks.py ensure [--version 1.2.3] [--venv /work/venvs/mediapipe-1.2.3]
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

CURRENT = "1.2.3"
"""The newest MediaPipe release (PyPI, 2026-12): ``AudioClassifier`` only for ``.tflite`` audio models."""
LEGACY = "0.10.21"
"""The last MediaPipe release checked with the TFLite ``AudioEmbedder`` (numpy < 2)."""
SETUPS = {
    CURRENT: {
        "requirements": ("mediapipe==1.2.3", "numpy==2.4.6"),
        "venv": os.environ.get("TRILLSSON_MEDIAPIPE_CURRENT_VENV", "/work/venvs/mediapipe-1.2.3"),
        "tasks": ("classifier",),
        "modes": ("clips", "stream"),
    },
    LEGACY: {
        "requirements": ("mediapipe==0.10.21", "numpy==1.26.4"),
        "venv": os.environ.get("TRILLSSON_MEDIAPIPE_VENV", "/work/venvs/mediapipe"),
        "tasks": ("embedder", "classifier"),
        "modes": ("clips",),
    },
}
"""Version -> its pinned packages, default virtualenv (``$TRILLSSON_MEDIAPIPE_CURRENT_VENV``,
``$TRILLSSON_MEDIAPIPE_VENV``), the audio tasks that take a ``.tflite`` there, and the running modes checked."""
DEFAULT_VENV = SETUPS[LEGACY]["venv"]
"""The 0.10.21 virtualenv (what ``runtime_benchmark.py`` uses for ``AudioEmbedder``)."""
REQUIREMENTS = SETUPS[LEGACY]["requirements"]
TASKS = ("embedder", "classifier")
MODES = ("clips", "stream")
SAMPLE_RATE_HZ = 16000
STREAM_BLOCK_SAMPLES = 320
"""Stream mode feeds the clip in blocks of this many samples (20 ms, what a microphone callback hands over)."""


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def ensure_venv(venv=None, version: str = LEGACY) -> dict:
    """Make the virtualenv of MediaPipe ``version`` at ``venv`` unless it already imports the pinned versions.

    Args:
        venv: The folder (``None``: the version's default in :data:`SETUPS`).
        version: A key of :data:`SETUPS`.

    Returns:
        ``{'python', 'created', 'setup_s', 'mediapipe', 'numpy'}``.
    """
    if version not in SETUPS:
        raise ValueError(f"Unknown MediaPipe version {version!r}. Expected one of: {list(SETUPS)}.")
    venv = venv or SETUPS[version]["venv"]
    requirements = SETUPS[version]["requirements"]
    python = venv_python(venv)
    start, created = time.perf_counter(), False
    if not os.path.isfile(python) or _versions(python, requirements) is None:
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *requirements], check=True)
        created = True
    versions = _versions(python, requirements)
    if versions is None:
        raise RuntimeError(f"{venv} does not import {' and '.join(requirements)} after installing them")
    return {"python": python, "created": created, "setup_s": time.perf_counter() - start, **versions}


def _versions(python: str, requirements=REQUIREMENTS):
    code = "import mediapipe, numpy, json; print(json.dumps({'mediapipe': mediapipe.__version__, 'numpy': numpy.__version__}))"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    versions = json.loads(result.stdout.strip().splitlines()[-1])
    wanted = dict(requirement.split("==") for requirement in requirements)
    return versions if versions == wanted else None


def run_tasks(
    python: str,
    model_path: str,
    task: str,
    clips: list,
    *,
    repeats: int = 1,
    mode: str = "clips",
    block_samples: int = STREAM_BLOCK_SAMPLES,
) -> dict:
    """Run ``clips`` through a MediaPipe audio task in a virtualenv's interpreter.

    Args:
        python: The MediaPipe virtualenv's interpreter (:func:`ensure_venv`).
        model_path: A ``.tflite`` with TFLite Model Metadata and a fixed ``[1, N]`` input.
        task: ``'embedder'`` (``AudioEmbedder``, 0.10.21 only) or ``'classifier'``
            (``AudioClassifier``; the categories are put back in index order).
        clips: float32 ``[samples]`` arrays at 16 kHz.
        repeats: Timed passes over all clips after one warm-up pass.
        mode: ``'clips'`` (one ``classify`` / ``embed`` call per clip) or ``'stream'`` (a task
            in stream mode per clip, fed ``block_samples`` at a time with their timestamps, then
            closed, which flushes the zero-padded tail window).
        block_samples: Block size of the stream mode, in samples.

    Returns:
        ``{'outputs': [float32 [windows, D] per clip], 'seconds': median s for all clips,
        'cpu_seconds': its median process CPU time, 'create_s': s to create the task,
        'timestamps_ms': [[...] per clip], 'mediapipe': version}``.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}. Expected one of: {list(TASKS)}.")
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}. Expected one of: {list(MODES)}.")
    with tempfile.TemporaryDirectory() as folder:
        np.savez(os.path.join(folder, "clips.npz"), *[np.asarray(clip, np.float32) for clip in clips])
        job = {
            "model": os.path.abspath(model_path),
            "task": task,
            "repeats": repeats,
            "mode": mode,
            "block_samples": int(block_samples),
            "folder": folder,
        }
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
    embedder = job["task"] == "embedder"
    block = job.get("block_samples", STREAM_BLOCK_SAMPLES)

    def create(callback=None):
        options = {"base_options": base_options.BaseOptions(model_asset_path=job["model"])}
        if callback is not None:
            options.update(running_mode=audio.RunningMode.AUDIO_STREAM, result_callback=callback)
        if embedder:
            return audio.AudioEmbedder.create_from_options(audio.AudioEmbedderOptions(**options))
        return audio.AudioClassifier.create_from_options(audio.AudioClassifierOptions(**options))

    def vector(result):
        if embedder:
            return np.asarray(result.embeddings[0].embedding, np.float32)
        categories = result.classifications[0].categories
        row = np.zeros(len(categories), np.float32)
        for category in categories:
            row[category.index] = category.score
        return row

    def clip_mode(task, clip):
        call = task.embed if embedder else task.classify
        results = call(audio_data.AudioData.create_from_array(clip, SAMPLE_RATE_HZ))
        return [(r.timestamp_ms, vector(r)) for r in results]

    def stream_mode(clip):
        got = []
        task = create(lambda result, timestamp_ms: got.append((timestamp_ms, vector(result))))
        send = task.embed_async if embedder else task.classify_async
        for start in range(0, len(clip), block):
            send(
                audio_data.AudioData.create_from_array(clip[start : start + block], SAMPLE_RATE_HZ),
                start * 1000 // SAMPLE_RATE_HZ,
            )
        task.close()  # waits for the graph: the zero-padded tail window comes out here
        return got

    start = time.perf_counter()
    task = create()
    create_s = time.perf_counter() - start

    def run_all():
        if job["mode"] == "stream":
            return [stream_mode(clip) for clip in clips]
        return [clip_mode(task, clip) for clip in clips]

    results = run_all()  # warm-up, and the outputs compared
    times, cpu_times = [], []
    for _ in range(job["repeats"]):
        start, cpu = time.perf_counter(), time.process_time()
        run_all()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)  # CPU time over wall time says how many threads ran
    task.close()
    np.savez(os.path.join(job["folder"], "outputs.npz"), *[np.stack([v for _, v in clip]) for clip in results])
    report = {
        "seconds": statistics.median(times) if times else None,
        "times": times,
        "cpu_seconds": statistics.median(cpu_times) if cpu_times else None,
        "create_s": create_s,
        "timestamps_ms": [[None if t is None else int(t) for t, _ in clip] for clip in results],
        "mediapipe": mediapipe.__version__,
    }
    with open(os.path.join(job["folder"], "result.json"), "w") as handle:
        json.dump(report, handle)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ensure = commands.add_parser("ensure", help="make a MediaPipe virtualenv if missing")
    ensure.add_argument("--version", default=CURRENT, choices=sorted(SETUPS))
    ensure.add_argument("--venv", default=None, help="default: the version's folder in SETUPS")
    worker = commands.add_parser("worker", help="(inside the virtualenv) run one job")
    worker.add_argument("job")
    args = parser.parse_args(argv)
    if args.command == "worker":
        _worker(args.job)
    else:
        print(json.dumps(ensure_venv(args.venv, args.version), indent=2))


if __name__ == "__main__":
    main()
