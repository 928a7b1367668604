"""Whisper layers benchmark: layer distillation of Whisper tiny.en's encoder, then keyword spotting + speaker verification.

The seed paper's recipe (arXiv 2210.16611: a transformer's hidden layers distilled into a student
about 75 % smaller, then fine-tuned for keywords and speakers) with the offline ``whisper-tiny``
teacher, beside the same recipe with ``speech_embedding`` on the same data. Offline, on the Arabic
Speech Commands copy in ``../shared/data`` (40 keywords x 30 speakers x 2 rounds, 1 s clips, and
the dataset's own speaker-disjoint split):

1. The 18 ``train`` speakers are the only ones anything is trained on (distillation, heads,
   fine-tuning). The 6 ``val`` and 6 ``test`` speakers are held out together (no model selection
   is done): keyword accuracy (Wilson 95 % interval) and speaker EER (95 % speaker-bootstrap
   interval) are scored on their 960 clips.
2. Whisper's layers one by one, no training: EER of each layer's time-mean (z-scored with the
   training clips' statistics, cosine) and a logistic-regression keyword probe on its mean + std,
   next to MFCC mean + std: where speaker and word information sit, which picks the layers.
3. ``distill_layers`` of layers ``--layers`` (default 1,2,4) into ``distil-small`` sized to 25 %
   of the encoder, and of ``speech_embedding`` layers 7,14,20 into its 25 % student, on the
   training speakers' clips, ``--distill-steps`` each.
4. ``finetune`` rows: MFCC frames (the heads' statistics pooling makes them MFCC mean + std),
   each teacher frozen, each student frozen (``--frozen-steps`` heads-only steps), each student
   fine-tuned (the same heads-only steps, then ``--tune-steps`` steps with the encoder unfrozen).
5. Sizes: the fine-tuned students converted to int8 ``.tflite`` (waveform frontend float, the
   default) and scored again through the TensorFlow-free runtime; Whisper's encoder converted to
   ``.tflite`` with int8 weights (dynamic range; log-mel frontend outside) for its size.

Writes ``<out>/benchmark.json`` and ``benchmarks/results/whisper_layers_benchmark.{json,md}``.

    nice -n 10 .venv/bin/python benchmarks/whisper_layers_benchmark.py --data ../shared/data --out runs/whisper_layers
"""

import argparse
import csv
import hashlib
import json
import os
import time

import numpy as np

from trillsson_tf.train.data import AudioItem, load_audio
from trillsson_tf.folders import write_json
from trillsson_tf.teachers.layers import LayeredTeacher, load_layered_teacher
from trillsson_tf.metrics import binomial_ci95, speaker_verification
from trillsson_tf.teachers.whisper import WHISPER_LAYERS

CORPUS = "arabic_speech_commands"
WHISPER_LAYERS_DEFAULT = "1,2,4"
SPEECH_EMBEDDING_LAYERS = "7,14,20"
MULTITASK_RESULTS = "multitask_benchmark.json"


def _items(data_dir):
    """Every clip with ``keyword``, ``speaker`` and ``split`` (``test`` for the held-out speakers), and those speakers."""
    folder = os.path.join(data_dir, CORPUS)
    with open(os.path.join(folder, "metadata.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    held = sorted({row["speaker"] for row in rows if row["split"] != "train"})
    items = [
        AudioItem(
            os.path.join(folder, row["file"]),
            {
                "keyword": row["keyword"],
                "speaker": row["speaker"],
                "split": "train" if row["split"] == "train" else "test",
                "dataset_split": row["split"],
            },
        )
        for row in rows
    ]
    return items, held


class _CachedLayers(LayeredTeacher):
    """A layered teacher computed once per clip: every layer's pooled statistics and the selected layers' frames.

    Rows are keyed by their bytes, so the distillation targets, the frozen-teacher heads and the
    scoring all reuse one pass of the teacher (1 s clips: one segment each, the clip itself).
    """

    def __init__(self, inner: LayeredTeacher, layers):
        super().__init__(inner.spec, available_layers=inner.available_layers, layers=layers)
        self.inner = inner
        self.hop_samples, self.field_samples = inner.hop_samples, inner.field_samples
        self.min_samples, self.parameters = inner.min_samples, inner.parameters
        self.identity = inner.identity.split("|layers=")[0]  # as load_layered_teacher(spec, layers=layers) names it
        self.frames, self.pooled = {}, {}
        self.computed_rows = 0
        self._finish_init()

    def _layer_outputs(self, audio):
        keys = [hashlib.sha1(row.tobytes()).hexdigest() for row in audio]
        missing = [i for i, key in enumerate(keys) if key not in self.frames]
        if missing:
            self.computed_rows += len(missing)
            outputs = self.inner._layer_outputs(audio[missing])
            for row, index in enumerate(missing):
                self.frames[keys[index]] = {name: outputs[name][row] for name in self.layers}
                self.pooled[keys[index]] = {
                    name: np.concatenate([value[row].mean(axis=0), value[row].std(axis=0)])
                    for name, value in outputs.items()
                }
        return {name: np.stack([self.frames[key][name] for key in keys]) for name in self.layers}

    def frame_spans(self, num_samples: int, num_frames: int) -> np.ndarray:
        return self.inner.frame_spans(num_samples, num_frames)


class _MfccFrames(LayeredTeacher):
    """20 MFCCs per frame (librosa's defaults at 16 kHz) as a one-layer encoder with no parameters."""

    min_samples = 2048

    def __init__(self):
        super().__init__("mfcc", available_layers=("mfcc",), layers=("mfcc",))
        self.parameters = 0
        self.identity = "mfcc-frames:librosa:20"
        self._finish_init()

    def _layer_outputs(self, audio):
        import librosa

        mfcc = librosa.feature.mfcc(y=np.asarray(audio, np.float32), sr=16000, n_mfcc=20)  # [batch, 20, frames]
        return {"mfcc": np.ascontiguousarray(mfcc.transpose(0, 2, 1), np.float32)}


def _fill(teacher: _CachedLayers, items, batch: int = 32) -> list:
    """Run the teacher on every clip (batches of ``batch``); returns each clip's cache key."""
    keys = []
    for start in range(0, len(items), batch):
        audio = np.stack([load_audio(item.path) for item in items[start : start + batch]])
        teacher.layer_outputs(audio)
        keys += [hashlib.sha1(row.tobytes()).hexdigest() for row in audio]
    return keys


def _probe(train_x, train_y, test_x, test_y, held_speakers) -> dict:
    """Keyword probe (logistic regression on standardised features) and EER of the standardised time-mean."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    probe = LogisticRegression(max_iter=1000, C=0.1).fit(scaler.transform(train_x), train_y)
    correct = int(np.sum(probe.predict(scaler.transform(test_x)) == test_y))
    width = train_x.shape[1] // 2  # the first half of [mean, std] is the time-mean
    mean, std = train_x[:, :width].mean(axis=0), train_x[:, :width].std(axis=0) + 1e-8
    sv = speaker_verification((test_x[:, :width] - mean) / std, held_speakers, bootstrap=200)
    return {
        "kws_accuracy": correct / len(test_y),
        "kws_ci95": binomial_ci95(correct, len(test_y)),
        "eer": sv["eer"],
        "eer_ci95": sv["eer_ci95"],
    }


def _layer_study(teacher: _CachedLayers, train, held_items) -> dict:
    """Each of the teacher's layers, and MFCC mean + std, probed without training an encoder."""
    keys = _fill(teacher, train + held_items)
    train_keys, held_keys = keys[: len(train)], keys[len(train) :]

    def features(keys, layer):
        return np.stack([teacher.pooled[key][layer] for key in keys])

    mfcc = _MfccFrames()

    def mfcc_features(items):
        out = []
        for start in range(0, len(items), 64):
            frames = mfcc.layer_outputs(np.stack([load_audio(i.path) for i in items[start : start + 64]]))["mfcc"]
            out.append(np.concatenate([frames.mean(axis=1), frames.std(axis=1)], axis=-1))
        return np.concatenate(out)

    train_y = np.array([i.labels["keyword"] for i in train])
    test_y = np.array([i.labels["keyword"] for i in held_items])
    speakers = [i.labels["speaker"] for i in held_items]
    study = {"mfcc mean+std": _probe(mfcc_features(train), train_y, mfcc_features(held_items), test_y, speakers)}
    for layer in teacher.inner.layers:
        study[f"layer {layer}"] = _probe(
            features(train_keys, layer), train_y, features(held_keys, layer), test_y, speakers
        )
    return study


def _stage(args, name, run):
    """``run()``'s JSON result, stored in ``<out>/stages``; with ``--reuse`` a stored result is read instead."""
    path = os.path.join(args.out, "stages", f"{name}.json")
    if args.reuse and os.path.isfile(path):
        with open(path) as handle:
            return json.load(handle)
    start = time.perf_counter()
    result = run()
    result["seconds"] = round(time.perf_counter() - start, 1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(path, result)
    return result


def _teacher_int8_bytes(out_dir) -> dict:
    """Whisper's encoder (to the final LayerNorm) as ``.tflite``, float32 and with int8 weights (dynamic range)."""
    from trillsson_tf._keras import tf
    from trillsson_tf.formats.ctranslate2 import read_ctranslate2
    from trillsson_tf.teachers.weights import weights_path
    from trillsson_tf.teachers.whisper import WHISPER_TINY_WEIGHTS, build_whisper_encoder

    encoder = build_whisper_encoder(
        read_ctranslate2(weights_path(WHISPER_TINY_WEIGHTS, None), prefix="encoder/", spec="WhisperSpec")
    )
    function = tf.function(
        lambda mel: encoder(mel)["final"], input_signature=[tf.TensorSpec([1, 100, 80], tf.float32)]
    ).get_concrete_function()
    sizes = {}
    for name, optimize in (("float32", False), ("int8_weights", True)):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], encoder)
        if optimize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        content = converter.convert()
        path = os.path.join(out_dir, f"whisper_encoder_{name}.tflite")
        os.makedirs(out_dir, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
        sizes[name] = len(content)
    return sizes


def _student_int8(export, out_path, calibration, held_items) -> dict:
    """The fine-tuned export as int8 ``.tflite`` (waveform frontend float), scored by the TF-free runtime; fully int8 for size."""
    from trillsson_tf.converters.waveform import convert_waveform
    from trillsson_tf.train.finetune import evaluate_multitask

    card = convert_waveform(export, out_path, quantize="int8", representative_audio=calibration, overwrite=True)
    report = evaluate_multitask(out_path, held_items, kws="keyword", sv="speaker")
    full = convert_waveform(
        export,
        out_path.replace(".tflite", "_full.tflite"),
        quantize="int8",
        representative_audio=calibration,
        float_frontend=False,
        overwrite=True,
    )
    return {
        "full_int8_bytes": full["size_bytes"],
        "full_int8_parity_mean_cosine": {k: round(v["mean_cosine"], 5) for k, v in full["parity"]["outputs"].items()},
        "bytes": card["size_bytes"],
        "parity_mean_cosine": {k: round(v["mean_cosine"], 5) for k, v in card["parity"]["outputs"].items()},
        "float_ops": card["float_ops"],
        "kws_accuracy": report["kws"]["accuracy"],
        "kws_ci95": report["kws"]["ci95"],
        "eer": report["sv"]["eer"],
        "eer_ci95": report["sv"]["eer_ci95"],
    }


def _row(record) -> dict:
    scores = record["scores"]
    return {
        "kws_accuracy": scores["kws"]["accuracy"],
        "kws_ci95": scores["kws"]["ci95"],
        "kws_clips": scores["kws"]["clips"],
        "eer": scores["sv"]["eer"],
        "eer_ci95": scores["sv"]["eer_ci95"],
        "min_dcf": scores["sv"]["min_dcf"],
        "trials": scores["sv"]["trials"],
        "encoder_parameters": record["parameters"]["encoder"],
        "head_parameters": record["parameters"]["heads"],
        "export": record["export"],
        "final_loss": record["loss_history"][-1][1],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join("..", "shared", "data"), help=f"folder with {CORPUS}/")
    parser.add_argument("--out", default=os.path.join("runs", "whisper_layers_benchmark"))
    parser.add_argument("--layers", default=WHISPER_LAYERS_DEFAULT, help="Whisper layers to distill")
    parser.add_argument("--distill-steps", type=int, default=500)
    parser.add_argument("--frozen-steps", type=int, default=600, help="heads-only steps (on stored frames: cheap)")
    parser.add_argument("--tune-steps", type=int, default=150, help="steps with the encoder unfrozen, after those")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--reuse", action="store_true", help="read the stages already stored in <out>/stages")
    parser.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)
    began = time.perf_counter()

    from trillsson_tf.train.distill_layers import distill_layers
    from trillsson_tf.train.finetune import finetune

    items, held = _items(args.data)
    train = [i for i in items if i.labels["split"] == "train"]
    held_items = [i for i in items if i.labels["speaker"] in held]
    whisper = _CachedLayers(load_layered_teacher("whisper-tiny", layers=",".join(WHISPER_LAYERS)), args.layers)
    speech_embedding = load_layered_teacher("speech_embedding", layers=SPEECH_EMBEDDING_LAYERS)
    study = _stage(args, "layer_study", lambda: _layer_study(whisper, train, held_items))

    def distill(teacher, name):
        record = distill_layers(
            train,
            out_dir=os.path.join(args.out, name),
            teacher=teacher,
            steps=args.distill_steps,
            batch_size=args.batch_size,
            checkpoint_every=max(1, args.distill_steps // 2),
            validation_fraction=0.05,
            cache_dir=os.path.join(args.out, "targets"),
            overwrite=True,
            progress=True,
        )
        return {
            "export": record["export"],
            "parameters": record["student"]["parameters"],
            "share_of_teacher": record["student"]["share_of_teacher"],
            "config": record["student"]["config"],
            "first_loss": record["loss_history"][0][1],
            "final_loss": record["loss_history"][-1][1],
            "validation_history": record.get("validation_history"),
            "train_segments": record["data"]["train_segments"],
            "steps": record["step"],
        }

    students = {
        "whisper-tiny": _stage(args, "distill_whisper", lambda: distill(whisper, "distill_whisper")),
        "speech_embedding": _stage(
            args, "distill_speech_embedding", lambda: distill(speech_embedding, "distill_speech_embedding")
        ),
    }
    common = dict(
        kws_labels="keyword",
        sv_labels="speaker",
        holdout_speakers=held,
        batch_size=args.batch_size,
        overwrite=True,
        progress=True,
    )
    frozen = dict(freeze_encoder=True, steps=args.frozen_steps)
    tuned = dict(steps=args.frozen_steps + args.tune_steps, head_steps=args.frozen_steps)
    configs = {
        "MFCC mean+std (no network)": ("mfcc", lambda: _MfccFrames(), frozen),
        "speech_embedding teacher, frozen": ("speech_embedding", lambda: speech_embedding, frozen),
        "speech_embedding student, frozen": (
            "speech_embedding",
            lambda: students["speech_embedding"]["export"],
            frozen,
        ),
        "speech_embedding student, fine-tuned": (
            "speech_embedding",
            lambda: students["speech_embedding"]["export"],
            tuned,
        ),
        "whisper-tiny teacher, frozen": ("whisper-tiny", lambda: whisper, frozen),
        "whisper-tiny student, frozen": ("whisper-tiny", lambda: students["whisper-tiny"]["export"], frozen),
        "whisper-tiny student, fine-tuned": ("whisper-tiny", lambda: students["whisper-tiny"]["export"], tuned),
    }
    rows = {}
    for index, (name, (family, encoder, options)) in enumerate(configs.items()):
        out_dir = os.path.join(args.out, f"finetune{index}")
        rows[name] = _stage(
            args,
            f"finetune{index}",
            lambda: {
                "family": family,
                **_row(finetune(encoder(), items, out_dir=out_dir, **common, **options)),
            },
        )

    calibration = [i.path for i in train][::30]
    sizes = {
        "whisper_encoder_tflite_bytes": _stage(
            args, "teacher_tflite", lambda: _teacher_int8_bytes(args.out + "/tflite")
        )
    }
    for family in ("whisper-tiny", "speech_embedding"):
        export = rows[f"{family} student, fine-tuned"]["export"]
        sizes[family] = _stage(
            args,
            f"int8_{family}",
            lambda: _student_int8(
                export, os.path.join(args.out, "tflite", f"{family}_multitask_int8.tflite"), calibration, held_items
            ),
        )
    from trillsson_tf.teachers import SpeechEmbeddingTeacher

    teacher_dir = SpeechEmbeddingTeacher.models_dir()
    sizes["speech_embedding_tflite_bytes"] = sum(
        os.path.getsize(os.path.join(teacher_dir, f))
        for f in (SpeechEmbeddingTeacher.MEL_MODEL, SpeechEmbeddingTeacher.EMBEDDING_MODEL)
    )
    multitask_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", MULTITASK_RESULTS)
    with open(multitask_path) as handle:
        earlier = json.load(handle)

    report = {
        "data": {
            "corpus": CORPUS,
            "train_speakers": sorted({i.labels["speaker"] for i in train}),
            "train_clips": len(train),
            "held_out_speakers": held,
            "held_out_clips": len(held_items),
            "keywords": len({i.labels["keyword"] for i in items}),
        },
        "teachers": {
            "whisper-tiny": {"layers": args.layers, "parameters": whisper.parameters},
            "speech_embedding": {"layers": SPEECH_EMBEDDING_LAYERS, "parameters": speech_embedding.parameters},
        },
        "layer_study": study,
        "students": students,
        "steps": {
            "distill": args.distill_steps,
            "frozen": args.frozen_steps,
            "tune": args.tune_steps,
            "batch_size": args.batch_size,
        },
        "rows": rows,
        "sizes": sizes,
        "multitask_benchmark": {
            name: {key: row.get(key) for key in ("kws_accuracy", "fsdd_eer", "librispeech_eer", "encoder_parameters")}
            for name, row in earlier["rows"].items()
            if "seed" not in name
        },
        "seconds": round(time.perf_counter() - began, 1),
    }
    report["whisper_rows_computed"] = whisper.computed_rows  # teacher passes: one per distinct clip when cached
    os.makedirs(args.results, exist_ok=True)
    write_json(os.path.join(args.out, "benchmark.json"), report)
    write_json(os.path.join(args.results, "whisper_layers_benchmark.json"), report)
    markdown = _markdown(report)
    from trillsson_tf.folders import write_atomic

    write_atomic(os.path.join(args.results, "whisper_layers_benchmark.md"), markdown.encode())
    print(markdown)
    return report


def _pct(value, interval=None) -> str:
    if value is None:
        return "-"
    text = f"{100 * value:.1f}"
    return text if interval is None else f"{text} [{100 * interval[0]:.1f}-{100 * interval[1]:.1f}]"


def _markdown(report: dict) -> str:
    data, steps, sizes = report["data"], report["steps"], report["sizes"]
    teachers, students = report["teachers"], report["students"]
    whisper_bytes = sizes["whisper_encoder_tflite_bytes"]
    teacher_size = {
        "whisper-tiny": f"{whisper_bytes['int8_weights']:,}",
        "speech_embedding": f"{sizes['speech_embedding_tflite_bytes']:,} (float32)",
    }
    lines = [
        "# Whisper layers benchmark: whisper-tiny -> distil-small -> keyword spotting + speaker verification",
        "",
        f"Arabic Speech Commands: {data['keywords']} keywords; trained on {data['train_clips']} clips of "
        f"{len(data['train_speakers'])} speakers (the dataset's `train` split); scored on {data['held_out_clips']} "
        f"clips of {len(data['held_out_speakers'])} speakers never trained on (its `val` + `test` splits: "
        f"{', '.join(data['held_out_speakers'])}). Keyword accuracy with Wilson 95 % intervals (clips taken as "
        "independent), EER over every pair of held-out clips with 95 % speaker-bootstrap intervals (200 draws).",
        "",
        "## Each Whisper layer, no training",
        "",
        "Keyword: logistic regression (C = 0.1) on the standardised mean + std over frames, trained on the "
        "training clips. Speaker: EER of the time-mean, standardised with the training clips' statistics, cosine.",
        "",
        "| features | keyword accuracy % | EER % |",
        "|---|---:|---:|",
    ]
    for name, row in report["layer_study"].items():
        if name == "seconds":
            continue
        lines.append(f"| {name} | {_pct(row['kws_accuracy'], row['kws_ci95'])} | {_pct(row['eer'], row['eer_ci95'])} |")
    lines += [
        "",
        "## Teacher frozen, student frozen, student fine-tuned",
        "",
        f"Students: `distil-small` sized to 25 % of each teacher, distilled {steps['distill']} steps of "
        f"{steps['batch_size']} one-second segments (Whisper layers {teachers['whisper-tiny']['layers']}, "
        f"`speech_embedding` layers {teachers['speech_embedding']['layers']}). Heads (statistics pooling, "
        "Dense(128, ReLU); keyword softmax, speaker AAM-softmax to 128-d) read every hidden state of a student "
        f"and the selected layers of a teacher; frozen: {steps['frozen']} heads-only steps; fine-tuned: the same "
        f"{steps['frozen']} heads-only steps, then {steps['tune']} steps with the encoder unfrozen; batches of "
        f"{steps['batch_size']} keyword + {steps['batch_size']} speaker-balanced clips. These are CPU-sized runs "
        "(2 shared cores); more distillation and fine-tuning steps are a GPU job.",
        "",
        "| configuration | encoder params | keyword accuracy % | EER % | minDCF | int8 .tflite bytes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["rows"].items():
        family = row["family"]
        if "teacher" in name:
            size = teacher_size[family]
        elif "fine-tuned" in name:
            size = f"{sizes[family]['bytes']:,}"
        else:
            size = "-"
        params = row["encoder_parameters"]
        share = ""
        if "student" in name:
            share = f" ({students[family]['share_of_teacher']:.1%})"
        lines.append(
            f"| {name} | {params:,}{share} | {_pct(row['kws_accuracy'], row['kws_ci95'])} | "
            f"{_pct(row['eer'], row['eer_ci95'])} | {row['min_dcf']:.3f} | {size} |"
        )
    for family in ("speech_embedding", "whisper-tiny"):
        int8 = sizes[family]
        lines.append(
            f"| {family} student, fine-tuned, int8 `.tflite` (TF-free runtime) | {students[family]['parameters']:,} | "
            f"{_pct(int8['kws_accuracy'], int8['kws_ci95'])} | {_pct(int8['eer'], int8['eer_ci95'])} | - | "
            f"{int8['bytes']:,} |"
        )
    lines += [
        "",
        "Distillation loss (L1 - log sigmoid cosine, summed over layers): "
        + "; ".join(
            f"{family} {s['first_loss']:.3f} -> {s['final_loss']:.3f} ({s['train_segments']} segments)"
            for family, s in students.items()
        )
        + ". int8 parity (mean cosine to the float export): "
        + "; ".join(
            f"{family} {sizes[family]['parity_mean_cosine']}" for family in ("whisper-tiny", "speech_embedding")
        )
        + ". The int8 files keep the waveform frontend (conv stack) float, the toolkit's default; fully int8: "
        + "; ".join(
            f"{family} {sizes[family]['full_int8_bytes']:,} bytes (parity {sizes[family]['full_int8_parity_mean_cosine']})"
            for family in ("whisper-tiny", "speech_embedding")
        )
        + f". Whisper's encoder as `.tflite`: float32 {whisper_bytes['float32']:,} bytes, int8 weights "
        f"{whisper_bytes['int8_weights']:,} (dynamic range, log-mel outside); `speech_embedding`'s two float "
        "models as published.",
        "",
        "## Beside: the speech_embedding layered runs of `multitask_benchmark.py` (FSDD + LibriSpeech)",
        "",
        "Other data (10 English digits, 7 held-out speakers, 6,000 distillation steps): read these for the "
        "pattern, not against the rows above.",
        "",
        "| configuration | keyword accuracy % | EER % FSDD | EER % LibriSpeech | encoder params |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in report["multitask_benchmark"].items():
        lines.append(
            f"| {name} | {_pct(row['kws_accuracy'])} | {_pct(row['fsdd_eer'])} | {_pct(row['librispeech_eer'])} | "
            f"{row['encoder_parameters']:,} |"
        )
    seconds = {name: row.get("seconds") for name, row in report["rows"].items()}
    lines += [
        "",
        f"Time: {report['seconds']} s in all; distillation {students['whisper-tiny'].get('seconds')} s (Whisper), "
        f"{students['speech_embedding'].get('seconds')} s (speech_embedding); layer study "
        f"{report['layer_study'].get('seconds')} s; rows {seconds}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
