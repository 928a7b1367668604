"""Multi-task benchmark: layer distillation of speech_embedding, then keyword spotting + speaker verification.

Offline, on the real teacher ``speech_embedding`` (layers 7, 14 and 20 of its 20) and the
real speech in ``../shared/data``: FSDD (digit = keyword, speaker) and the LibriSpeech
test-other speakers.

1. Speakers held out for verification (never trained on, not even by the distillation): 2 of
   the 6 FSDD speakers and 5 of the 10 LibriSpeech speakers (:func:`trillsson_tf.metrics.split_speakers`).
2. ``distill_layers`` on the training files (FSDD takes 5-49 and LibriSpeech of the other
   speakers) into ``distil-small`` sized to 25% of the teacher.
3. Five heads-and-encoder runs with the same split: the teacher's features (frozen), the student
   frozen, the student fine-tuned on one task (keyword; speaker), and the student fine-tuned on
   both. Fine-tuned runs start with ``--head-steps`` heads-only steps (the frozen recipe), then
   unfreeze the encoder with a linear learning-rate warm-up; each step has ``--batch-size`` keyword
   clips and as many speaker-balanced ones, and the heads read every encoder hidden state
   (``finetune``'s defaults). The student frozen and the multi-task run are repeated with
   ``--seeds`` - 1 more seeds (heads' initialisation and batch order; the encoder is the same), so
   that a difference between rows can be read against the spread between seeds.
4. Keyword accuracy on the FSDD test takes (0-4, all 6 speakers); speaker EER and minDCF
   (p_target 0.01) on all pairs of held-out clips, within FSDD and within LibriSpeech.
5. The multi-task export converted to float32 and int8 ``.tflite`` (int8 mixed: the waveform
   frontend float, the default; and fully int8, for comparison), calibrated on clips of both
   corpora, with parity per output; the float32 file run by the TensorFlow-free runtime on the
   FSDD held-out speakers next to the Keras model on the same clips (the keyword test set of the
   table has the training speakers' takes too, so its accuracy is not comparable), and its
   EER / minDCF checked against scikit-learn's ROC.

Writes ``<out>/benchmark.json`` and ``benchmarks/results/multitask_benchmark.{json,md}``.

    .venv/bin/python benchmarks/multitask_benchmark.py --data ../shared/data --out runs/multitask_benchmark
"""

import argparse
import glob
import json
import os
import time

import numpy as np

from trillsson_tf.converters.tflite import convert
from trillsson_tf.converters.waveform import convert_waveform
from trillsson_tf.train.data import AudioItem, find_audio, load_clips
from trillsson_tf.train.distill_layers import distill_layers
from trillsson_tf._keras import keras
from trillsson_tf.models.export import KERAS_FILE, read_metadata
from trillsson_tf.train.finetune import KWS_OUTPUT, SV_OUTPUT, finetune
from trillsson_tf.frontend.numpy_ops import mirror_pad
from trillsson_tf.teachers.layers import load_layered_teacher
from trillsson_tf.metrics import accuracy, cosine_similarity, eer, min_dcf, split_speakers, verification_trials
from trillsson_tf.runtime import TFLiteModel
from trillsson_tf.teachers import SpeechEmbeddingTeacher

LAYERS = "7,14,20"
CORPUS = "corpus"


def _items(data_dir):
    fsdd = [AudioItem(i.path, {**i.labels, CORPUS: "fsdd"}) for i in find_audio(os.path.join(data_dir, "fsdd"))]
    libri_files = sorted(glob.glob(os.path.join(data_dir, "librispeech_test_other_10spk", "*", "*.flac")))
    libri = [AudioItem(i.path, {**i.labels, CORPUS: "librispeech"}) for i in find_audio(libri_files)]
    _, fsdd_held = split_speakers([i.labels["speaker"] for i in fsdd], holdout=2)
    _, libri_held = split_speakers([i.labels["speaker"] for i in libri], holdout=5)
    return fsdd, libri, sorted(fsdd_held + libri_held)


def _sklearn_check(scores, labels) -> dict:
    """|EER - reference| and |minDCF - reference| with the reference from scikit-learn's ROC."""
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    reference_eer = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    reference_dcf = float(np.min(0.01 * (1 - tpr) + 0.99 * fpr) / 0.01)
    return {
        "eer_abs_diff": abs(eer(scores, labels) - reference_eer),
        "min_dcf_abs_diff": abs(min_dcf(scores, labels) - reference_dcf),
    }


def _runtime_scores(tflite_path, export, items, keywords):
    """Keyword accuracy and verification on ``items`` run through the TF-free runtime (both outputs).

    The Keras export runs on the same clips too (``keras_kws_accuracy``, ``kws_agreement``: share of
    equal keyword decisions), so that a gap to the table's keyword accuracy can be told apart from a
    runtime fault.
    """
    model = TFLiteModel(tflite_path, num_threads=1)
    reference = keras.models.load_model(os.path.join(export, KERAS_FILE))
    loaded = load_clips(items)
    padded = [mirror_pad(clip[np.newaxis], 16000) for clip in loaded.clips]
    outputs = [model(clip) for clip in padded]
    logits = np.concatenate([o[KWS_OUTPUT] for o in outputs])
    keras_logits = np.concatenate([reference(clip, training=False)[KWS_OUTPUT].numpy() for clip in padded])
    embeddings = np.concatenate([o[SV_OUTPUT] for o in outputs])
    digits = [keywords.index(i.labels["digit"]) for i in loaded.items]
    first, second, labels = verification_trials([i.labels["speaker"] for i in loaded.items])
    scores = cosine_similarity(embeddings[first], embeddings[second])
    return {
        "kws_accuracy": accuracy(logits, np.array(digits)),
        "keras_kws_accuracy": accuracy(keras_logits, np.array(digits)),
        "kws_agreement": float(np.mean(logits.argmax(-1) == keras_logits.argmax(-1))),
        "clips": len(loaded.items),
        "eer": eer(scores, labels),
        "min_dcf": min_dcf(scores, labels),
        "trials": int(len(labels)),
        "sklearn": _sklearn_check(scores, labels),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=os.path.join("..", "shared", "data"),
        help="folder with fsdd/ and librispeech_test_other_10spk/",
    )
    parser.add_argument("--out", default=os.path.join("runs", "multitask_benchmark"))
    parser.add_argument("--distill-steps", type=int, default=6000)
    parser.add_argument("--augment", type=int, default=2, help="augmented views per training file in the distillation")
    parser.add_argument(
        "--finetune-steps", type=int, default=1200, help="steps of the fine-tuned runs, heads-only steps included"
    )
    parser.add_argument("--head-steps", type=int, default=300, help="heads-only steps before the encoder is unfrozen")
    parser.add_argument(
        "--frozen-steps", type=int, default=600, help="steps of the heads-only runs (cheap: stored frames)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--seeds", type=int, default=2, help="seeds of the student frozen and multi-task runs (the first is 0)"
    )
    parser.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)
    began = time.perf_counter()

    fsdd, libri, held = _items(args.data)
    items = fsdd + libri
    train = [i for i in items if i.labels.get("split") != "test" and i.labels["speaker"] not in held]
    teacher = load_layered_teacher("speech_embedding", layers=LAYERS)
    timings = {}

    start = time.perf_counter()
    run = distill_layers(
        train,
        out_dir=os.path.join(args.out, "distill"),
        teacher=teacher,
        steps=args.distill_steps,
        batch_size=args.batch_size,
        checkpoint_every=max(1, args.distill_steps // 3),
        validation_fraction=0.05,
        cache_dir=os.path.join(args.out, "targets"),
        augment=args.augment,
        overwrite=True,
        progress=True,
    )
    timings["distill_s"] = time.perf_counter() - start

    common = dict(
        holdout_speakers=held,
        sv_groups=CORPUS,
        batch_size=args.batch_size,
        overwrite=True,
        progress=True,
        hidden=64,
        speaker_dim=64,
    )
    tuned = dict(steps=args.finetune_steps, head_steps=args.head_steps)
    configs = {
        "teacher features (frozen)": dict(export=teacher, freeze_encoder=True, steps=args.frozen_steps),
        "student frozen": dict(export=run["export"], freeze_encoder=True, steps=args.frozen_steps),
        "student fine-tuned, keyword only": dict(export=run["export"], sv_labels=None, **tuned),
        "student fine-tuned, speaker only": dict(export=run["export"], kws_labels=None, **tuned),
        "student fine-tuned, multi-task": dict(export=run["export"], **tuned),
    }
    for seed in range(1, args.seeds):
        configs[f"student frozen, seed {seed}"] = dict(configs["student frozen"], seed=seed)
        configs[f"student fine-tuned, multi-task, seed {seed}"] = dict(
            configs["student fine-tuned, multi-task"], seed=seed
        )
    rows = {}
    for index, (name, options) in enumerate(configs.items()):
        start = time.perf_counter()
        export = options.pop("export")
        record = finetune(export, items, out_dir=os.path.join(args.out, f"finetune{index}"), **common, **options)
        timings[name] = time.perf_counter() - start
        scores = record["scores"]
        rows[name] = {
            "kws_accuracy": scores.get("kws", {}).get("accuracy"),
            "fsdd_eer": scores.get("sv_by_group", {}).get("fsdd", {}).get("eer"),
            "fsdd_min_dcf": scores.get("sv_by_group", {}).get("fsdd", {}).get("min_dcf"),
            "librispeech_eer": scores.get("sv_by_group", {}).get("librispeech", {}).get("eer"),
            "librispeech_min_dcf": scores.get("sv_by_group", {}).get("librispeech", {}).get("min_dcf"),
            "encoder_parameters": record["parameters"]["encoder"],
            "head_parameters": record["parameters"]["heads"],
            "export": record["export"],
            "final_loss": record["loss_history"][-1][1],
        }

    multitask_export = rows["student fine-tuned, multi-task"]["export"]
    sizes = {}
    # Calibration from both corpora (the file list starts with thousands of FSDD digits).
    calibration = [i.path for i in train if i.labels[CORPUS] == "fsdd"][::100] + [
        i.path for i in train if i.labels[CORPUS] == "librispeech"
    ][::4]
    for name, mode, float_frontend in (
        ("float32", "float32", True),
        ("int8", "int8", True),
        ("int8_full", "int8", False),
    ):
        card = convert_waveform(
            multitask_export,
            os.path.join(args.out, "tflite", f"multitask_{name}.tflite"),
            quantize=mode,
            representative_audio=calibration,
            float_frontend=float_frontend,
            overwrite=True,
        )
        sizes[f"multitask_{name}"] = {
            "bytes": card["size_bytes"],
            "float_ops": card["float_ops"],
            "float_layers": card["float_layers"],
            "parity_mean_cosine": {k: round(v["mean_cosine"], 5) for k, v in card["parity"]["outputs"].items()},
        }
    card = convert(run["export"], os.path.join(args.out, "tflite", "student_encoder_float32.tflite"), overwrite=True)
    sizes["student_encoder_float32"] = {"bytes": card["size_bytes"]}
    teacher_dir = SpeechEmbeddingTeacher.models_dir()
    sizes["teacher_tflite"] = {
        "bytes": sum(
            os.path.getsize(os.path.join(teacher_dir, f))
            for f in (SpeechEmbeddingTeacher.MEL_MODEL, SpeechEmbeddingTeacher.EMBEDDING_MODEL)
        )
    }
    keywords = read_metadata(multitask_export)["keywords"]
    held_fsdd = [i for i in fsdd if i.labels["speaker"] in held]
    runtime = _runtime_scores(
        os.path.join(args.out, "tflite", "multitask_float32.tflite"), multitask_export, held_fsdd, keywords
    )

    teacher_row, multi = rows["teacher features (frozen)"], rows["student fine-tuned, multi-task"]
    frozen, kws_only, sv_only = (
        rows["student frozen"],
        rows["student fine-tuned, keyword only"],
        rows["student fine-tuned, speaker only"],
    )
    targets = {
        "fine-tuned beats frozen, keyword": multi["kws_accuracy"] > frozen["kws_accuracy"],
        "fine-tuned beats frozen, speaker (FSDD and LibriSpeech EER)": multi["fsdd_eer"] < frozen["fsdd_eer"]
        and multi["librispeech_eer"] < frozen["librispeech_eer"],
        "multi-task within 1 point of single-task, keyword": multi["kws_accuracy"] >= kws_only["kws_accuracy"] - 0.01,
        "multi-task within 1 point of single-task, speaker (FSDD EER)": multi["fsdd_eer"] <= sv_only["fsdd_eer"] + 0.01,
        "student <= 30% of the teacher's parameters": multi["encoder_parameters"] <= 0.30 * teacher.parameters,
        "keyword accuracy within 2 points of the teacher pipeline": multi["kws_accuracy"]
        >= teacher_row["kws_accuracy"] - 0.02,
        "FSDD EER within 2 points of the teacher pipeline": multi["fsdd_eer"] <= teacher_row["fsdd_eer"] + 0.02,
        "EER and minDCF agree with scikit-learn to 1e-3": max(runtime["sklearn"].values()) <= 1e-3,
    }
    seed_spread = {}
    for base in ("student frozen", "student fine-tuned, multi-task"):
        runs = [rows[base]] + [rows[f"{base}, seed {seed}"] for seed in range(1, args.seeds)]
        seed_spread[base] = {
            metric: max(r[metric] for r in runs) - min(r[metric] for r in runs)
            for metric in ("kws_accuracy", "fsdd_eer", "librispeech_eer")
        }
    report = {
        "teacher": {"spec": "speech_embedding", "layers": LAYERS, "parameters": teacher.parameters},
        "student": {
            "config": run["student"]["config"],
            "parameters": run["student"]["parameters"],
            "share_of_teacher": run["student"]["share_of_teacher"],
            "distill_steps": run["step"],
            "final_distill_loss": run["loss_history"][-1][1],
            "first_distill_loss": run["loss_history"][0][1],
        },
        "holdout_speakers": held,
        "train_files": len(train),
        "finetune_steps": args.finetune_steps,
        "head_steps": args.head_steps,
        "frozen_steps": args.frozen_steps,
        "batch_size": args.batch_size,
        "rows": rows,
        "seeds": args.seeds,
        "seed_spread": seed_spread,
        "tflite": sizes,
        "runtime_float32_fsdd_heldout": runtime,
        "targets": targets,
        "seconds": {**{k: round(v, 1) for k, v in timings.items()}, "total": round(time.perf_counter() - began, 1)},
    }
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.results, exist_ok=True)
    for path in (os.path.join(args.out, "benchmark.json"), os.path.join(args.results, "multitask_benchmark.json")):
        with open(path, "w") as handle:
            json.dump(report, handle, indent=2, default=str)
    markdown = _markdown(report)
    with open(os.path.join(args.results, "multitask_benchmark.md"), "w") as handle:
        handle.write(markdown)
    print(markdown)
    return report


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f}"


def _markdown(report: dict) -> str:
    teacher_params = report["teacher"]["parameters"]
    lines = [
        "# Multi-task benchmark: speech_embedding -> distil-small -> keyword spotting + speaker verification",
        "",
        f"Teacher `speech_embedding` (layers {report['teacher']['layers']}), {teacher_params:,} parameters; student "
        f"{report['student']['parameters']:,} ({report['student']['share_of_teacher']:.1%}), distilled "
        f"{report['student']['distill_steps']} steps (loss {report['student']['first_distill_loss']:.3f} -> "
        f"{report['student']['final_distill_loss']:.3f}); fine-tuning {report['finetune_steps']} steps (the first "
        f"{report['head_steps']} heads-only, then the encoder unfrozen with a learning-rate warm-up), heads-only runs "
        f"{report['frozen_steps']} steps, batch {report['batch_size']}; {report['train_files']} training files. "
        f"Held-out speakers: {', '.join(report['holdout_speakers'])}.",
        "",
        "| configuration | KWS accuracy % (FSDD test) | EER % FSDD | minDCF FSDD | EER % LibriSpeech | minDCF LibriSpeech | encoder params | head params |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["rows"].items():
        dcf = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(
            f"| {name} | {_pct(row['kws_accuracy'])} | {_pct(row['fsdd_eer'])} | {dcf(row['fsdd_min_dcf'])} | "
            f"{_pct(row['librispeech_eer'])} | {dcf(row['librispeech_min_dcf'])} | {row['encoder_parameters']:,} | {row['head_parameters']:,} |"
        )
    sizes = report["tflite"]
    runtime = report["runtime_float32_fsdd_heldout"]
    lines += [
        "",
        f"Spread (max - min, points) over {report['seeds']} seeds of the heads' initialisation and batch order: "
        + "; ".join(
            f"{name} KWS {_pct(s['kws_accuracy'])}, EER FSDD {_pct(s['fsdd_eer'])}, EER LibriSpeech {_pct(s['librispeech_eer'])}"
            for name, s in report["seed_spread"].items()
        )
        + ". The targets read the seed-0 rows.",
        "",
        f".tflite sizes: teacher (mel + embedding models) {sizes['teacher_tflite']['bytes']:,} bytes; student encoder float32 "
        f"{sizes['student_encoder_float32']['bytes']:,}; multi-task float32 {sizes['multitask_float32']['bytes']:,} "
        f"(parity {sizes['multitask_float32']['parity_mean_cosine']}); multi-task int8 with the waveform frontend float (default) "
        f"{sizes['multitask_int8']['bytes']:,} (parity {sizes['multitask_int8']['parity_mean_cosine']}, float ops "
        f"{', '.join(sizes['multitask_int8']['float_ops']) or 'none'}); fully int8 {sizes['multitask_int8_full']['bytes']:,} "
        f"(parity {sizes['multitask_int8_full']['parity_mean_cosine']}).",
        "",
        f"TF-free runtime, float32 multi-task file, FSDD held-out speakers ({runtime['clips']} clips of speakers never trained on, "
        f"all takes): keyword accuracy {_pct(runtime['kws_accuracy'])}% (Keras export on the same clips "
        f"{_pct(runtime['keras_kws_accuracy'])}%, same decision on {_pct(runtime['kws_agreement'])}%), "
        f"EER {_pct(runtime['eer'])}%, minDCF {runtime['min_dcf']:.3f} over {runtime['trials']:,} trials; against scikit-learn's "
        f"ROC: |EER diff| {runtime['sklearn']['eer_abs_diff']:.1e}, |minDCF diff| {runtime['sklearn']['min_dcf_abs_diff']:.1e}.",
        "",
        "| target | met |",
        "|---|---|",
        *[f"| {name} | {'yes' if met else '**no**'} |" for name, met in report["targets"].items()],
        "",
        f"Time: {report['seconds']['total']} s in all ({report['seconds']}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
