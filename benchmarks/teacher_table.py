"""A TRILLsson-style table for a real teacher: CAM++ distilled into students of 1, 5 and 25 % of its size.

Protocol (fixed; the demo uses the same speaker split): speechocean762, speakers sorted by id;
UNSEEN = ``sorted(speakers)[1::2][:100]`` (never trained on), TRAIN = the other 150. Every model is
scored on the same clips: the centre 2 s of all 7 utterances of each unseen speaker, written once
as 16-bit FLAC under ``<work>/clips/``. Students are distilled from CAM++ on every utterance of the
150 training speakers (whole files; 1,000 steps, batch 32, lr 1e-2, MSE, global targets), the
teacher's targets cached once in ``<work>/cache`` and shared by every row.

Rows: the teacher, three students, ``speech_embedding`` (as an embedder) and MFCC mean + std; then
an ablation on the 1 % student that measures why unseen-speaker EER stays high: 50 / 100 / 150
training speakers, EER on the training speakers' own clips, and one run trained on 4 of the 7
utterances of each speaker, scored on the 3 it never heard.

    .venv/bin/python benchmarks/teacher_table.py                       # everything (37 min on 2 cores)
    .venv/bin/python benchmarks/teacher_table.py --resume              # only the rows not in the json yet
    .venv/bin/python benchmarks/teacher_table.py --rows mfcc,student_1pct --steps 100 --work /tmp/t --out /tmp/t

Writes ``benchmarks/results/teacher_table.{json,md}`` (after every row) and prints progress.
Set ``TRILLSSON_TF_CACHE`` to where the CAM++ weights are cached.
"""

import argparse
import collections
import csv
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, REPO)  # the package from this checkout

TEACHER = "campplus"
TEACHER_PARAMETERS = 6_848_544
SECONDS = 2.0
RECIPE = {"batch_size": 32, "lr": 1e-2, "loss": "mse", "target_mode": "global", "validation_fraction": 0.0}
RECIPE_TEXT = "batch 32, lr 1e-2, MSE, global targets"

# Reference embedders: scored as they are, never trained.
REFERENCES = {
    "campplus": {"label": "CAM++ (teacher)", "spec": "campplus"},
    "speech_embedding": {"label": "speech_embedding (embedder, not distilled)", "spec": "speech_embedding"},
    "mfcc": {"label": "MFCC mean + std (no network)", "spec": "mfcc"},
}
# Students: registry presets plus overrides; embedding_dim is always CAM++'s 192.
STUDENTS = {
    "student_1pct": {"label": "~1 %: tiny_cnn_k5", "student": "tiny_cnn_k5", "options": {}},
    "student_5pct": {
        "label": "~5 %: tiny_cnn_k5, wider",
        "student": "tiny_cnn_k5",
        "options": {"stem_filters": 48, "filters": [96, 160, 224, 288, 384]},
    },
    # The preset is 1.05 M at D=192 (15 %; its 1.53 M is at D=1024): alpha 1.25 brings it to ~23 %.
    "student_25pct": {
        "label": "~25 %: mobilenetv3small, alpha 1.25",
        "student": "mobilenetv3small",
        "options": {"alpha": 1.25},
    },
}
# Ablation of the 1 % student; its 150-speaker, 7-utterance run is the student_1pct row itself.
ABLATIONS = {
    "speakers_50": {"label": "50 speakers x 7 utterances", "speakers": 50, "utterances": 7},
    "speakers_100": {"label": "100 speakers x 7 utterances", "speakers": 100, "utterances": 7},
    "utterances_4": {"label": "150 speakers x 4 utterances", "speakers": 150, "utterances": 4},
}
ROWS = [*REFERENCES, *STUDENTS, *ABLATIONS]


# ----------------------------------------------------------------------------- data


def read_split(root: str) -> dict:
    """Utterances per speaker (sorted by file name) and the fixed UNSEEN / TRAIN speaker split."""
    with open(os.path.join(root, "metadata.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    files = {}
    for row in sorted(rows, key=lambda r: r["file"]):
        files.setdefault(row["speaker"], []).append(row["file"])
    speakers = sorted(files)
    unseen = speakers[1::2][:100]
    train = [speaker for speaker in speakers if speaker not in set(unseen)]
    # Nested random subsets for the ablation: spread over the ids (the ids are not in random order).
    order = [str(s) for s in np.random.default_rng(0).permutation(train)]
    profile = {row["speaker"]: f"{row['gender']}/{'child' if int(row['age']) < 15 else 'adult'}" for row in rows}
    return {"root": root, "files": files, "unseen": unseen, "train": train, "order": order, "profile": profile}


def centre_crop(audio: np.ndarray, samples: int) -> np.ndarray:
    """The centre ``samples`` of a clip; shorter clips (3 unseen ones are 1.88-1.99 s) are zero-padded."""
    if len(audio) < samples:
        audio = np.pad(audio, (0, samples - len(audio)))
    start = (len(audio) - samples) // 2
    return audio[start : start + samples]


def write_clips(split: dict, out_dir: str, selection) -> list:
    """Write the centre 2 s of each ``(speaker, file)`` once as 16-bit FLAC; AudioItems with speakers."""
    import soundfile as sf

    from trillsson_tf.audio import load_audio
    from trillsson_tf.train.data import AudioItem

    items = []
    for speaker, name in selection:
        path = os.path.join(out_dir, name)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            audio = centre_crop(load_audio(os.path.join(split["root"], name)), int(SECONDS * 16000))
            sf.write(path, audio, 16000, subtype="PCM_16")
        items.append(AudioItem(path, {"speaker": speaker}))
    return items


def clip_sets(split: dict, work: str) -> dict:
    """The evaluation clip sets: unseen voices; training clips; held-out utterances of training voices."""
    files = split["files"]
    sets = {
        # 7 utterances of each of the 100 unseen speakers: the table's test set.
        "unseen": [(s, f) for s in split["unseen"] for f in files[s]],
        # 4 utterances of 100 training speakers: audio every 7-utterance student trained on.
        "training_clips": [(s, f) for s in split["train"][:100] for f in files[s][:4]],
        # Utterances 5-7 of every training speaker: never heard by the utterances_4 run.
        "heldout_utterances": [(s, f) for s in split["train"] for f in files[s][4:]],
    }
    return {name: write_clips(split, os.path.join(work, "clips", name), pairs) for name, pairs in sets.items()}


def training_files(split: dict, speakers: int = 150, utterances: int = 7) -> list:
    chosen = split["train"] if speakers == len(split["train"]) else split["order"][:speakers]
    return [os.path.join(split["root"], f) for s in chosen for f in split["files"][s][:utterances]]


# ----------------------------------------------------------------------------- measuring

_loaded = {}


def teacher():
    """CAM++, loaded once for targets and fidelity."""
    from trillsson_tf.teachers import load_teacher

    if TEACHER not in _loaded:
        _loaded[TEACHER] = load_teacher(TEACHER)
    return _loaded[TEACHER]


def fill_targets(files: list, cache_dir: str) -> dict:
    """Run the teacher over every training file once, so the rows' training times exclude it."""
    from trillsson_tf.train.targets import build_cache

    began = time.perf_counter()
    index = build_cache(teacher(), [_item(path) for path in files], mode="global", cache_dir=cache_dir)
    return {
        "files": len(index.items),
        "computed": index.computed,
        "reused": index.reused,
        "seconds": round(time.perf_counter() - began, 1),
    }


def _item(path):
    from trillsson_tf.train.data import AudioItem

    return AudioItem(path, {})


def score(model, items, *, probe: bool, with_teacher: bool) -> dict:
    """EER / minDCF (and the speaker probe, and fidelity to CAM++) of ``model`` on one clip set."""
    from trillsson_tf.apps.evaluate import evaluate

    report = evaluate(
        model, items, teacher=teacher() if with_teacher else None, tasks=["speaker"] if probe else [], verification=True
    )
    out = {"clips": report["files"], "verification": report["verification"]["student"]}
    if probe:
        out["probe"] = report["probes"]["speaker"]["student"]
    if report.get("fidelity"):
        out["fidelity"] = {key: report["fidelity"][key] for key in ("mean_cosine", "centered_cosine", "r2")}
    return out


def int8_card(export: str, out_path: str, calibration: list) -> dict:
    """Convert the export to an int8 .tflite (frontend inside), calibrated on training files."""
    from trillsson_tf.converters.tflite import convert

    card = convert(export, out_path, quantize="int8", representative_audio=calibration, overwrite=True)
    return {"path": out_path, "size_bytes": card["size_bytes"], "parity": card.get("parity")}


def train(name: str, files: list, student: str, options: dict, args) -> dict:
    from trillsson_tf.train.distill import distill

    run = distill(
        files,
        out_dir=os.path.join(args.work, "runs", name),
        teacher=teacher(),
        student=student,
        student_options=options,
        steps=args.steps,
        checkpoint_every=args.steps,
        cache_dir=os.path.join(args.work, "cache"),
        overwrite=True,
        **RECIPE,
    )
    print(
        f"  {student} {options}: {run['student']['parameters']:,} parameters, "
        f"{run['train_seconds']:.0f} s for {run['step']} steps",
        flush=True,
    )
    return run


# ----------------------------------------------------------------------------- rows


def reference_row(name: str, sets: dict) -> dict:
    from trillsson_tf.teachers import load_teacher

    spec = REFERENCES[name]["spec"]
    embedder = teacher() if spec == TEACHER else load_teacher(spec)
    return {
        "kind": "reference",
        "label": REFERENCES[name]["label"],
        "parameters": int(embedder.parameters or 0),
        "unseen": score(embedder, sets["unseen"], probe=True, with_teacher=False),
        # The same training clips the students are scored on: are those voices simply easier?
        "training_clips": score(embedder, sets["training_clips"], probe=False, with_teacher=False),
    }


def student_row(name: str, sets: dict, split: dict, args) -> dict:
    spec = STUDENTS[name]
    files = training_files(split)
    run = train(name, files, spec["student"], spec["options"], args)
    export = run["export"]
    tflite = int8_card(export, os.path.join(args.work, "tflite", f"{name}_int8.tflite"), files[::15])
    return {
        "kind": "student",
        "label": spec["label"],
        "student": spec["student"],
        "options": spec["options"],
        "parameters": run["student"]["parameters"],
        "steps": run["step"],
        "train_files": len(files),
        "train_seconds": round(run["train_seconds"], 1),
        "export": export,
        "int8": tflite,
        "unseen": score(export, sets["unseen"], probe=True, with_teacher=True),
        "training_clips": score(export, sets["training_clips"], probe=False, with_teacher=True),
    }


def ablation_row(name: str, sets: dict, split: dict, args) -> dict:
    spec = ABLATIONS[name]
    files = training_files(split, spec["speakers"], spec["utterances"])
    chosen = split["train"] if spec["speakers"] == len(split["train"]) else split["order"][: spec["speakers"]]
    run = train(name, files, "tiny_cnn_k5", {}, args)
    row = {
        "kind": "ablation",
        "label": spec["label"],
        "speakers": spec["speakers"],
        "utterances": spec["utterances"],
        "speaker_profile": _count(split["profile"][s] for s in chosen),
        "parameters": run["student"]["parameters"],
        "steps": run["step"],
        "train_files": len(files),
        "train_seconds": round(run["train_seconds"], 1),
        "unseen": score(run["export"], sets["unseen"], probe=True, with_teacher=True),
    }
    if spec["utterances"] < 7:  # known voices, new sentences: memorised files or learnt voices?
        row["heldout_utterances"] = score(run["export"], sets["heldout_utterances"], probe=False, with_teacher=True)
        row["training_clips"] = score(run["export"], sets["training_clips"], probe=False, with_teacher=True)
    return row


def _count(values) -> dict:
    return dict(sorted(collections.Counter(values).items()))


# ----------------------------------------------------------------------------- report


def eer_text(result: dict) -> str:
    v = result["verification"]
    low, high = v["eer_ci95"]
    return f"{100 * v['eer']:.1f} ({100 * low:.1f}-{100 * high:.1f})"


def probe_text(result: dict) -> str:
    p = result["probe"]
    return f"{p['accuracy']:.3f} ({p['ci95'][0]:.3f}-{p['ci95'][1]:.3f})"


def goals(rows: dict) -> dict:
    """The issue's goals: every student's EER <= half MFCC's; the largest keeps >= 90 % of the teacher's probe."""
    if not {"mfcc", "campplus"} <= set(rows):
        return {}
    limit = rows["mfcc"]["unseen"]["verification"]["eer"] / 2
    teacher_probe = rows["campplus"]["unseen"]["probe"]["accuracy"]
    students = {name: rows[name] for name in STUDENTS if name in rows}
    out = {
        "eer_limit": limit,
        "eer": {name: row["unseen"]["verification"]["eer"] <= limit for name, row in students.items()},
    }
    if students:
        largest = max(students, key=lambda name: students[name]["parameters"])
        retention = students[largest]["unseen"]["probe"]["accuracy"] / teacher_probe
        out["retention"] = {"student": largest, "value": retention, "met": retention >= 0.9}
    return out


def main_table(rows: dict) -> list:
    teacher_probe = rows["campplus"]["unseen"]["probe"]["accuracy"] if "campplus" in rows else None
    lines = [
        "| model | parameters | share of CAM++ | int8 .tflite bytes | EER % (95 % CI) | minDCF(0.01) "
        "| speaker probe (95 % CI) | retention | EER % on training speakers' clips | training s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ["campplus", *STUDENTS, "speech_embedding", "mfcc"]:
        if name not in rows:
            continue
        row, unseen = rows[name], rows[name]["unseen"]
        label = row["label"] + (f" ({row['steps']:,} steps)" if row["kind"] == "student" else "")
        share = f"{100 * row['parameters'] / TEACHER_PARAMETERS:.1f} %"
        size = f"{row['int8']['size_bytes']:,}" if row["kind"] == "student" else "-"
        retention = f"{unseen['probe']['accuracy'] / teacher_probe:.2f}" if teacher_probe else "-"
        lines.append(
            f"| {label} | {row['parameters']:,} | {share} | {size} | {eer_text(unseen)} | "
            f"{unseen['verification']['min_dcf']:.3f} | {probe_text(unseen)} | {retention} | "
            f"{eer_text(row['training_clips'])} | {row.get('train_seconds', '-')} |"
        )
    return lines


def ablation_table(rows: dict) -> list:
    lines = [
        "| 1 % student trained on | files | EER % unseen (95 % CI) | speaker probe unseen | "
        "EER % training clips | EER % held-out utterances of training speakers | centered cosine to CAM++: "
        "unseen / training clips | training s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ["speakers_50", "speakers_100", "student_1pct", "utterances_4"]:
        if name not in rows:
            continue
        row = rows[name]
        label = "150 speakers x 7 utterances (the 1 % row)" if name == "student_1pct" else row["label"]
        seen = row.get("training_clips")
        heldout = row.get("heldout_utterances")
        cosines = f"{row['unseen']['fidelity']['centered_cosine']:.2f}" + (
            f" / {seen['fidelity']['centered_cosine']:.2f}" if seen else ""
        )
        lines.append(
            f"| {label} | {row['train_files']:,} | {eer_text(row['unseen'])} | {probe_text(row['unseen'])} | "
            f"{eer_text(seen) if seen else '-'} | {eer_text(heldout) if heldout else '-'} | {cosines} | "
            f"{row['train_seconds']} |"
        )
    return lines


def findings(rows: dict) -> list:
    """A few lines with numbers; only for the rows present."""
    out, met = [], goals(rows)

    def eer(name):
        return 100 * rows[name]["unseen"]["verification"]["eer"]

    if met.get("eer"):
        students = ", ".join(f"{name} {eer(name):.1f} %" for name in met["eer"])
        verdict = (
            "met by every student"
            if all(met["eer"].values())
            else f"missed by {sum(not v for v in met['eer'].values())} of {len(met['eer'])}"
        )
        out.append(
            f"- Goal 1, EER <= half MFCC's ({100 * met['eer_limit']:.2f} %): {verdict} ({students}; "
            f"CAM++ {eer('campplus'):.1f} %, MFCC {eer('mfcc'):.1f} %)."
        )
    if met.get("retention"):
        r = met["retention"]
        out.append(
            f"- Goal 2, the largest student ({r['student']}) keeps >= 90 % of CAM++'s unseen-speaker probe: "
            f"{'met' if r['met'] else 'missed'}, {100 * r['value']:.0f} %."
        )
    probes = [
        (name, rows[name]["unseen"]["probe"]["accuracy"]) for name in ("campplus", *STUDENTS, "mfcc") if name in rows
    ]
    if len(probes) > 1:
        out.append(
            "- Speaker probe on unseen voices: " + ", ".join(f"{name} {value:.3f}" for name, value in probes) + "."
        )
    if {"student_1pct", "campplus"} <= set(rows):
        row, seen = rows["student_1pct"], lambda name: 100 * rows[name]["training_clips"]["verification"]["eer"]
        out.append(
            f"- Memorisation: the 1 % student's EER is {eer('student_1pct'):.1f} % on unseen voices but "
            f"{seen('student_1pct'):.1f} % on its training speakers' clips (CAM++ on the same clips: "
            f"{seen('campplus'):.1f} %); centered cosine to CAM++ {row['unseen']['fidelity']['centered_cosine']:.2f} "
            f"on unseen voices, {row['training_clips']['fidelity']['centered_cosine']:.2f} on training clips."
        )
    curve = [
        (rows[n].get("speakers", 150), eer(n)) for n in ("speakers_50", "speakers_100", "student_1pct") if n in rows
    ]
    if len(curve) > 1:
        out.append(
            "- Unseen EER against training speakers: " + ", ".join(f"{s} speakers {e:.1f} %" for s, e in curve) + "."
        )
    if "utterances_4" in rows and "heldout_utterances" in rows["utterances_4"]:
        row = rows["utterances_4"]
        out.append(
            f"- Trained on 4 of 7 utterances: EER {100 * row['training_clips']['verification']['eer']:.1f} % on its "
            f"training clips, {100 * row['heldout_utterances']['verification']['eer']:.1f} % on the 3 unheard "
            f"utterances of the same speakers, {eer('utterances_4'):.1f} % on unseen speakers."
        )
    return out


def targets_text(result: dict) -> str:
    targets = result.get("teacher_targets")
    if not targets:
        return "no teacher targets needed"
    if targets["computed"]:
        return f"CAM++'s targets for the {targets['files']:,} training files, computed once for all rows: {targets['seconds']} s"
    return f"CAM++'s targets for the {targets['files']:,} training files were already in the cache"


def steps_text(rows: dict) -> str:
    """The rows' step counts (a --resume can mix runs made with different --steps)."""
    steps = sorted({row["steps"] for row in rows.values() if "steps" in row})
    return " / ".join(f"{value:,}" for value in steps) + " steps" if steps else "no students"


def commands_text(result: dict) -> str:
    runs = result.get("invocations", [])
    commands = sorted({run["command"] for run in runs if run["rows"]}) or [result["command"]]
    return (
        f"Command: {', '.join(f'`{command}`' for command in commands)}; {len(runs)} invocation(s), "
        f"{sum(run['seconds'] for run in runs) / 60:.0f} min in all (the json's `invocations`)."
    )


def to_markdown(result: dict) -> str:
    rows = result["rows"]
    lines = [
        "# CAM++ into students of 1, 5 and 25 %: speaker verification on unseen voices",
        "",
        f"CAM++ ({TEACHER_PARAMETERS:,} parameters, 192-d) distilled on speechocean762's 150 training speakers "
        f"(1,050 whole files, {steps_text(rows)}, {RECIPE_TEXT}); every model scored on the centre 2 s of all 7 "
        f"utterances of 100 speakers never trained on (700 clips, "
        f"{rows.get('campplus', {}).get('unseen', {}).get('verification', {}).get('trials', 244650):,} trials). "
        f"EER of cosine scores on vectors standardised per dimension over the clips, 95 % interval from 200 "
        f"speaker resamples; speaker probe: logistic regression, 5-fold over the 700 clips (Wilson interval); "
        f"retention = probe / CAM++'s probe. Training s: the steps alone ({targets_text(result)}). "
        f"{result['machine']['cores']}-core CPU, "
        f"{result['date']}. {commands_text(result)}",
        "",
        *main_table(rows),
        "",
    ]
    if any(name in rows for name in ABLATIONS):
        lines += [
            "Why the students miss on unseen voices (the 1 % student, same steps and recipe):",
            "",
            *ablation_table(rows),
            "",
        ]
    lines += ["Findings:", "", *findings(rows)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def load_result(path: str) -> dict:
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    return {"rows": {}}


def save(result: dict, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    result["goals"] = goals(result["rows"])
    with open(os.path.join(out_dir, "teacher_table.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    with open(os.path.join(out_dir, "teacher_table.md"), "w") as handle:
        handle.write(to_markdown(result))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=os.path.join(REPO, "..", "shared", "data"),
        help="folder holding speechocean762/ (default ../shared/data)",
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--work", default="/work/scratch/table", help="clips, target cache, runs, .tflite files")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {','.join(ROWS)}")
    parser.add_argument("--resume", action="store_true", help="skip rows already in the json")
    parser.add_argument("--out", default=RESULTS, help="where teacher_table.{json,md} go")
    args = parser.parse_args(argv)
    args.rows = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = sorted(set(args.rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {ROWS}")
    return args


def describe_run(result: dict, split: dict, args, argv) -> None:
    result.update(
        {
            "command": " ".join(["TRILLSSON_TF_CACHE=... .venv/bin/python benchmarks/teacher_table.py", *argv]),
            "date": time.strftime("%Y-%m-%d"),
            "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "processor": platform.machine()},
            "protocol": {
                "unseen_speakers": split["unseen"],
                "train_speakers": len(split["train"]),
                "clip_seconds": SECONDS,
                "recipe": RECIPE_TEXT,
                "steps": args.steps,
                "ablation_speaker_order": split["order"],
            },
        }
    )


def run_row(name: str, sets: dict, split: dict, args) -> dict:
    began = time.perf_counter()
    print(f"{name}: {({**REFERENCES, **STUDENTS, **ABLATIONS})[name]['label']}", flush=True)
    if name in REFERENCES:
        row = reference_row(name, sets)
    elif name in STUDENTS:
        row = student_row(name, sets, split, args)
    else:
        row = ablation_row(name, sets, split, args)
    row.update(date=time.strftime("%Y-%m-%d"), row_seconds=round(time.perf_counter() - began, 1))
    print(
        f"  EER {eer_text(row['unseen'])} %, probe {probe_text(row['unseen'])}, {row['row_seconds']:.0f} s", flush=True
    )
    return row


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    began = time.perf_counter()
    result = load_result(os.path.join(args.out, "teacher_table.json"))  # rows not asked for are kept
    split = read_split(os.path.join(os.path.abspath(args.data), "speechocean762"))
    describe_run(result, split, args, argv)
    todo = [name for name in args.rows if not (args.resume and name in result["rows"])]
    print(
        f"{len(split['unseen'])} unseen speakers, {len(split['train'])} training speakers; rows to run: {todo}",
        flush=True,
    )
    sets = clip_sets(split, args.work)
    if any(name in STUDENTS or name in ABLATIONS for name in todo):
        print("CAM++ targets for the 1,050 training files (computed once, cached for every row)", flush=True)
        targets = fill_targets(training_files(split), os.path.join(args.work, "cache"))
        print(f"  {targets}", flush=True)
        if targets["computed"] or "teacher_targets" not in result:  # keep the time of the run that computed them
            result["teacher_targets"] = targets
    for name in todo:
        result["rows"][name] = run_row(name, sets, split, args)
        save(result, args.out)  # after every row: an interrupted run loses one row at most
    # Every invocation is kept: with --resume, the table's rows may come from several.
    result.setdefault("invocations", []).append(
        {
            "command": result["command"],
            "date": result["date"],
            "rows": todo,
            "seconds": round(time.perf_counter() - began, 1),
        }
    )
    save(result, args.out)
    print(to_markdown(result))
    return result


if __name__ == "__main__":
    main()
