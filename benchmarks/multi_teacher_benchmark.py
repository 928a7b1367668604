"""Several teachers, one student: CAM++ + CREPE scores + speech_embedding into one tiny_cnn_k5, beside one-teacher students.

Protocol: teacher_table's speechocean762 split (150 training speakers, 1,050 whole files; 100
unseen speakers, the centre 2 s of their 700 utterances, the clips teacher_table writes). Every
student is ``tiny_cnn_k5`` trained with teacher_table's recipe (batch 32, lr 1e-2, MSE, global
targets) for ``--steps``; the several-teacher student weighs its teachers equally, each on its
standardised targets. Every embedder is scored on the same tasks:

- speaker (CAM++'s task): EER on the 700 unseen clips (cosine of standardised vectors, 95 %
  interval from 200 speaker resamples);
- pitch (CREPE's task): CCC of a ridge probe from the vector to CREPE's three scores (f0 median,
  f0 range, voicing share) on the unseen clips, 5 folds grouped by speaker; a student's own
  CREPE output is also scored directly;
- keyword (speech_embedding's task): FSDD digit probe (logistic regression, 5-fold, 600 clips of
  6 speakers; Wilson interval);
- beyond them: gender and child/adult probes on the unseen speakers, 5 folds grouped by speaker.

The several-teacher student is scored twice: its ``embedding`` output (its backbone's pooled
features, the projection's input) and its teacher outputs standardised side by side (each block
over the square root of its width: the deployable vector before 2026-12-07). Why its speaker EER
falls short is measured by more runs: CAM++ weighted 2, 3 and 4 times the others (loss
balance), and students of about twice the width, several-teacher and CAM++ alone (capacity).

    .venv/bin/python benchmarks/multi_teacher_benchmark.py --work /work/scratch/table   # shares teacher_table's clips and CAM++ cache
    ... --reuse   # re-export and rescore finished runs (after a change to the export), train only the missing ones

Writes ``benchmarks/results/multi_teacher_benchmark.{json,md}``.
"""

import argparse
import glob
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import teacher_table  # noqa: E402  (the split, the clips and the recipe)

CREPE = "crepe:form=scores,hop_ms=100"  # clip statistics of pitch: a 100 ms hop keeps CREPE at 1/10 of its 10 ms cost
TEACHERS = {"campplus": "campplus", "crepe": CREPE, "speech_embedding": "speech_embedding"}
STUDENT = "tiny_cnn_k5"
WIDE = {"stem_filters": 32, "filters": (64, 96, 128, 192, 288)}  # about twice the parameters
SEVERAL = (  # (run name, label, teacher weights, student options): equal weights, then why speaker EER falls short
    ("several", "", None, None),
    ("several_speaker_x2", ", CAM++ weight 2", (2.0, 1.0, 1.0), None),
    ("several_speaker_x3", ", CAM++ weight 3", (3.0, 1.0, 1.0), None),
    ("several_speaker_x4", ", CAM++ weight 4", (4.0, 1.0, 1.0), None),
    ("several_wide", ", wide", None, WIDE),
)
WIDE_SINGLE = {"single_campplus_wide": WIDE}  # the one-teacher student of the wide several-teacher student's size
FSDD_CLIPS = 600


def _items(paths, labels=None):
    from trillsson_tf.train.data import AudioItem

    return [AudioItem(path, dict(labels[i]) if labels else {}) for i, path in enumerate(paths)]


def train(name: str, teachers: list, files: list, args, *, weights=None, options=None) -> dict:
    """One student; with ``--reuse`` a finished run of the same settings is re-exported, not retrained."""
    from trillsson_tf.train.distill import distill
    from trillsson_tf.errors import ParameterError
    from trillsson_tf.teachers import load_teacher

    loaded = [load_teacher(spec) for spec in teachers]
    out_dir = os.path.join(args.work, "multi_runs", name)
    reuse = args.reuse and os.path.isfile(os.path.join(out_dir, "run.json"))
    common = dict(
        teacher=loaded[0] if len(loaded) == 1 else tuple(loaded),
        teacher_weights=weights,
        student=STUDENT,
        student_options=options,
        steps=args.steps,
        checkpoint_every=args.steps,
        cache_dir=os.path.join(args.work, "cache"),
        progress=True,
        **teacher_table.RECIPE,
    )
    try:
        run = distill(files, out_dir=out_dir, overwrite=not reuse, resume=reuse, **common)
    except ParameterError as error:  # the cache changed since it trained (or its settings): train it again
        print(f"  {name}: not reused ({error}); training", flush=True)
        run, reuse = distill(files, out_dir=out_dir, overwrite=True, **common), False
    if reuse:  # the training time of the run that trained it
        run["train_seconds"] = _previous(args).get(name, {}).get("train_seconds")
    print(f"  {name}: {run['student']['parameters']:,} parameters, {run['train_seconds'] or 0:.0f} s", flush=True)
    return run


def _previous(args) -> dict:
    """The rows of the results file this run replaces, by run name: ``{run name: row}``."""
    import json

    path = os.path.join(args.out, "multi_teacher_benchmark.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        rows = json.load(handle)["rows"]
    older = {"several_embedding": "several"}  # results written before rows named their run
    return {row.get("run") or older.get(key, key.replace("student_", "single_")): row for key, row in rows.items()}


def heads_side_by_side(export: str):
    """``clip -> vector``: every teacher output standardised (target moments), each over sqrt(width), side by side."""
    import json

    from trillsson_tf._keras import keras

    model = keras.models.load_model(os.path.join(export, "model.keras"))
    with open(os.path.join(export, "trillsson_tf.json")) as handle:
        metadata = json.load(handle)
    mean, std = np.array(metadata["target_mean"]), np.array(metadata["target_std"])
    names = metadata["teacher_outputs"]
    balance = np.concatenate([np.full(metadata["outputs"][n], 1 / np.sqrt(metadata["outputs"][n])) for n in names])

    def vector(clip):
        outputs = model(clip[np.newaxis])
        return (np.concatenate([outputs[name].numpy()[0] for name in names]) - mean) / std * balance

    return vector


_memo = {}


def embedder(spec, output_key=None):
    """``clip float32 [samples] -> vector``: a teacher preset or an export (one of its outputs); CREPE's are kept."""
    from trillsson_tf.teachers import load_teacher

    loaded = load_teacher(spec, output_key=output_key)
    if spec != CREPE:
        return lambda clip: loaded(clip[np.newaxis])["embedding"][0]

    def crepe(clip):  # the pitch reference and the CREPE row read the same clips: run CREPE once on each
        if id(clip) not in _memo:
            _memo[id(clip)] = (clip, loaded(clip[np.newaxis])["embedding"][0])
        return _memo[id(clip)][1]

    return crepe


def vectors(function, clips) -> np.ndarray:
    return np.stack([np.asarray(function(clip), np.float32) for clip in clips])


def grouped_probe(x, y, groups, *, regression: bool, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions of a linear probe, 5 folds grouped by speaker (no voice on both sides)."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    predictions = np.zeros(y.shape, np.float64) if regression else np.empty(len(y), dtype=object)
    for train, test in GroupKFold(5).split(x, y, groups):
        head = RidgeCV(alphas=np.logspace(-3, 3, 13)) if regression else LogisticRegression(max_iter=2000)
        probe = make_pipeline(StandardScaler(), head).fit(x[train], y[train])
        predictions[test] = probe.predict(x[test])
    return predictions


def score(x_unseen, x_fsdd, data: dict, direct_pitch=None) -> dict:
    from trillsson_tf.apps.evaluate import probe_accuracy
    from trillsson_tf.metrics import binomial_ci95, ccc, speaker_verification

    standard = (x_unseen - x_unseen.mean(0)) / (x_unseen.std(0) + 1e-8)
    out = {"dims": int(x_unseen.shape[1])}
    out["speaker"] = speaker_verification(standard, data["speakers"], bootstrap=200)
    pitch = grouped_probe(x_unseen, data["pitch"], data["speakers"], regression=True)
    out["pitch_probe_ccc"] = [float(ccc(pitch[:, k], data["pitch"][:, k])) for k in range(data["pitch"].shape[1])]
    if direct_pitch is not None:
        out["pitch_direct_ccc"] = [float(ccc(direct_pitch[:, k], data["pitch"][:, k])) for k in range(3)]
    out["digit"] = probe_accuracy(x_fsdd, data["digits"])
    for task in ("gender", "age_group"):
        predicted = grouped_probe(x_unseen, data[task], data["speakers"], regression=False)
        correct = int(np.sum(predicted == data[task]))
        out[task] = {"accuracy": correct / len(predicted), "ci95": binomial_ci95(correct, len(predicted))}
    return out


def load_data(args, split: dict) -> dict:
    """The unseen clips (audio, speakers, gender, child/adult, CREPE's scores) and the FSDD digit clips."""
    import csv

    from trillsson_tf.audio import load_audio

    sets = teacher_table.clip_sets(split, args.work)
    unseen = sets["unseen"]
    with open(os.path.join(split["root"], "metadata.csv"), newline="") as handle:
        meta = {row["speaker"]: row for row in csv.DictReader(handle)}
    speakers = np.array([item.labels["speaker"] for item in unseen])
    fsdd = sorted(glob.glob(os.path.join(args.data, "fsdd", "**", "*.wav"), recursive=True))
    fsdd = fsdd[:: max(1, len(fsdd) // FSDD_CLIPS)][:FSDD_CLIPS]
    data = {
        "unseen": [load_audio(item.path) for item in unseen],
        "speakers": speakers,
        "gender": np.array([meta[s]["gender"] for s in speakers]),
        "age_group": np.array(["child" if int(meta[s]["age"]) < 15 else "adult" for s in speakers]),
        "fsdd": [load_audio(path) for path in fsdd],
        "digits": np.array([os.path.basename(path).split("_")[0] for path in fsdd]),
    }
    print(f"CREPE scores of the {len(unseen)} unseen clips (the pitch task's reference)", flush=True)
    data["crepe"] = embedder(CREPE)
    data["pitch"] = vectors(data["crepe"], data["unseen"]).astype(np.float64)
    return data


def row(label: str, function, data: dict, *, parameters: int, direct=None, extra=None) -> dict:
    began = time.perf_counter()
    x_unseen, x_fsdd = vectors(function, data["unseen"]), vectors(function, data["fsdd"])
    direct_pitch = vectors(direct, data["unseen"]) if direct is not None else None
    result = {"label": label, "parameters": parameters, **score(x_unseen, x_fsdd, data, direct_pitch), **(extra or {})}
    result["seconds"] = round(time.perf_counter() - began, 1)
    print(f"  {label}: EER {100 * result['speaker']['eer']:.1f} %, digit {result['digit']['accuracy']:.3f}", flush=True)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--work", default="/work/scratch/table", help="clips, target caches, runs")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--reuse", action="store_true", help="re-export finished runs in --work instead of retraining")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    split = teacher_table.read_split(os.path.join(os.path.abspath(args.data), "speechocean762"))
    files = teacher_table.training_files(split)
    data = load_data(args, split)
    from trillsson_tf.teachers import load_teacher

    rows = {}
    for name, spec in TEACHERS.items():
        function = data["crepe"] if spec == CREPE else embedder(spec)
        rows[f"teacher_{name}"] = row(
            f"{name} (teacher)", function, data, parameters=int(load_teacher(spec).parameters or 0)
        )
    rows["mfcc"] = row("MFCC mean + std (no network)", embedder("mfcc"), data, parameters=0)
    for name, spec in TEACHERS.items():
        run = train(f"single_{name}", [spec], files, args)
        rows[f"student_{name}"] = row(
            f"{STUDENT} from {name} alone",
            embedder(run["export"]),
            data,
            parameters=run["student"]["parameters"],
            direct=embedder(run["export"]) if name == "crepe" else None,
            extra={"run": f"single_{name}", "train_seconds": run["train_seconds"] and round(run["train_seconds"], 1)},
        )
    for name, label, weights, options in SEVERAL:
        run = train(name, list(TEACHERS.values()), files, args, weights=weights, options=options)
        extra = {
            "run": name,
            "train_seconds": run["train_seconds"] and round(run["train_seconds"], 1),
            "fidelity": run.get("fidelity"),
        }
        common = dict(parameters=run["student"]["parameters"], direct=embedder(run["export"], "crepe"), extra=extra)
        rows[name] = row(f"{STUDENT} from all three{label}: embedding", embedder(run["export"]), data, **common)
        if name == "several":  # what the deployable vector was before: the teacher outputs, standardised
            heads = dict(common, extra={**extra, "run": "several_heads"})
            rows["several_heads"] = row(
                f"{STUDENT} from all three: heads side by side", heads_side_by_side(run["export"]), data, **heads
            )
    for name, options in WIDE_SINGLE.items():
        run = train(name, [TEACHERS["campplus"]], files, args, options=options)
        rows[name] = row(
            f"{STUDENT} from campplus alone, wide",
            embedder(run["export"]),
            data,
            parameters=run["student"]["parameters"],
            extra={"run": name, "train_seconds": run["train_seconds"] and round(run["train_seconds"], 1)},
        )
    result = {
        "command": " ".join([".venv/bin/python benchmarks/multi_teacher_benchmark.py", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cores": os.cpu_count(), "platform": platform.platform()},
        "teachers": TEACHERS,
        "student": STUDENT,
        "steps": args.steps,
        "recipe": teacher_table.RECIPE_TEXT,
        "train_files": len(files),
        "unseen_clips": len(data["unseen"]),
        "fsdd_clips": len(data["fsdd"]),
        "seconds": round(time.perf_counter() - began, 1),
        "rows": rows,
    }
    os.makedirs(args.out, exist_ok=True)
    from trillsson_tf.folders import write_atomic, write_json

    write_json(os.path.join(args.out, "multi_teacher_benchmark.json"), result)
    write_atomic(os.path.join(args.out, "multi_teacher_benchmark.md"), to_markdown(result))
    print(to_markdown(result))
    return result


def _ci(values, scale=100.0, digits=1) -> str:
    return f"{scale * values[0]:.{digits}f}-{scale * values[1]:.{digits}f}"


def to_markdown(result: dict) -> str:
    lines = [
        "# Several teachers, one student",
        "",
        f"Teachers: {', '.join(f'`{spec}`' for spec in result['teachers'].values())}. Students: `{result['student']}`, "
        f"{result['steps']} steps, {result['recipe']}, on speechocean762's {result['train_files']:,} training files "
        f"(150 speakers). Scored on the centre 2 s of {result['unseen_clips']} clips of 100 unseen speakers and "
        f"{result['fsdd_clips']} FSDD clips. 2-core CPU, {result['date']}, {result['seconds'] / 60:.0f} min. "
        f"Command: `{result['command']}`.",
        "",
        "| embedder | parameters | dims | speaker EER % (95 % CI) | pitch CCC, probe (f0 median / range / voiced) "
        "| pitch CCC, own output | FSDD digit (95 % CI) | gender (95 % CI) | child/adult (95 % CI) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for values in result["rows"].values():
        direct = values.get("pitch_direct_ccc")
        lines.append(
            f"| {values['label']} | {values['parameters']:,} | {values['dims']} "
            f"| {100 * values['speaker']['eer']:.1f} ({_ci(values['speaker']['eer_ci95'])}) "
            f"| {' / '.join(f'{v:.2f}' for v in values['pitch_probe_ccc'])} "
            f"| {' / '.join(f'{v:.2f}' for v in direct) if direct else '-'} "
            f"| {values['digit']['accuracy']:.3f} ({_ci(values['digit']['ci95'], 1, 3)}) "
            f"| {values['gender']['accuracy']:.3f} ({_ci(values['gender']['ci95'], 1, 3)}) "
            f"| {values['age_group']['accuracy']:.3f} ({_ci(values['age_group']['ci95'], 1, 3)}) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
