"""Unseen speakers in another language: CAM++ and its teacher_table.py students on Arabic Speech Commands.

``teacher_table.py`` distils CAM++ on 150 speechocean762 speakers (English read by Mandarin-L1
speakers) and scores them on 100 others. This script scores the same models on voices and a
language none of them trained on: Arabic Speech Commands (``<data>/arabic_speech_commands``,
Ghandoura et al. 2021, CC BY 4.0): 30 speakers x 40 keywords x 2 rounds, 1 s each, labels from the
file names (:func:`trillsson_tf.train.data.labels_from_name`). Per model: speaker verification over every
clip pair (EER with a 95 % interval from 200 speaker resamples, minDCF(0.01); vectors standardised
per dimension over the clips, as in ``evaluate``) and a 30-speaker linear probe (5-fold, Wilson
interval). Rows: CAM++ (the teacher), the students of ``teacher_table.py`` (its exports in
``<work>/runs/<row>/export``, read as they are), ``speech_embedding`` and the MFCC mean + std
baseline (no network); beside each, its EER on the 100 unseen speechocean762 speakers from
``results/teacher_table.json``.

    .venv/bin/python benchmarks/arabic_speakers.py                     # after teacher_table.py, same --work
    .venv/bin/python benchmarks/arabic_speakers.py --rows campplus,mfcc --per-speaker 20

Writes ``benchmarks/results/arabic_speakers.{json,md}``. Set ``TRILLSSON_TF_CACHE`` to where the
CAM++ weights are cached.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, REPO)  # the package from this checkout

# Row name -> (label, load_teacher spec or None for a teacher_table.py student export).
ROWS = {
    "campplus": ("CAM++ (teacher)", "campplus"),
    "student_1pct": ("~1 %: tiny_cnn_k5", None),
    "student_5pct": ("~5 %: tiny_cnn_k5, wider", None),
    "student_25pct": ("~25 %: mobilenetv3small, alpha 1.25", None),
    "speech_embedding": ("speech_embedding (embedder, not distilled)", "speech_embedding"),
    "mfcc": ("MFCC mean + std (no network)", "mfcc"),
}


def arabic_items(root: str, per_speaker: int = 0) -> list:
    """The corpus' clips with their labels, sorted by path; the first ``per_speaker`` of each speaker (0: all)."""
    from trillsson_tf.train.data import find_audio

    items = [item for item in find_audio(root) if "keyword" in item.labels]
    if per_speaker:
        kept, seen = [], {}
        for item in sorted(items, key=lambda i: (i.labels["round"], i.labels["keyword"])):
            speaker = item.labels["speaker"]
            if seen.get(speaker, 0) < per_speaker:
                kept.append(item)
                seen[speaker] = seen.get(speaker, 0) + 1
        items = sorted(kept, key=lambda i: i.path)
    return items


def score(model, items) -> dict:
    """EER, minDCF and the speaker probe of one model (a spec, a loaded teacher or an export) on ``items``."""
    from trillsson_tf.apps.evaluate import evaluate

    report = evaluate(model, items, tasks=["speaker"], verification=True)
    return {"verification": report["verification"]["student"], "probe": report["probes"]["speaker"]["student"]}


def english_eer(name: str, table: dict):
    row = table.get("rows", {}).get(name)
    return None if row is None else row["unseen"]["verification"]


def to_markdown(result: dict) -> str:
    rows = result["rows"]
    lines = [
        "# Unseen speakers in another language: Arabic Speech Commands",
        "",
        f"{result['clips']:,} clips of {result['speakers']} speakers ({result['clips_per_speaker']} each: 1 s keywords, "
        f"Arabic), {result['trials']:,} trials ({result['target_trials']:,} same-speaker). No model trained on any of "
        "this speech or language; the students are `teacher_table.py`'s, distilled from CAM++ on 150 speechocean762 "
        f"speakers (English). {result['date']}, `{result['command']}`.",
        "",
        "| model | parameters | Arabic EER % (95 % CI) | minDCF(0.01) | speaker probe (95 % CI) "
        "| speechocean762 EER % (95 % CI), teacher_table.md |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def eer(v):
        return f"{100 * v['eer']:.1f} ({100 * v['eer_ci95'][0]:.1f}-{100 * v['eer_ci95'][1]:.1f})"

    for name, row in rows.items():
        v, p = row["verification"], row["probe"]
        english = eer(row["speechocean762"]) if row.get("speechocean762") else "-"
        lines.append(
            f"| {row['label']} | {row['parameters']:,} | {eer(v)} | {v['min_dcf']:.3f} | "
            f"{p['accuracy']:.3f} ({p['ci95'][0]:.3f}-{p['ci95'][1]:.3f}) | {english} |"
        )
    if "mfcc" in rows:
        limit = rows["mfcc"]["verification"]["eer"] / 2
        students = [name for name in rows if name.startswith("student_")]
        met = [name for name in students if rows[name]["verification"]["eer"] <= limit]
        lines += [
            "",
            f"Goal of issue 38 (every student's EER at most half the MFCC baseline's, here {100 * limit:.1f} %): "
            f"{len(met)} of {len(students)} students meet it on Arabic.",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=os.path.join(REPO, "..", "shared", "data"), help="holds arabic_speech_commands/"
    )
    parser.add_argument("--work", default="/work/scratch/table", help="teacher_table.py's --work (its runs/)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {','.join(ROWS)}")
    parser.add_argument("--per-speaker", type=int, default=0, help="clips per speaker (0: all 80)")
    parser.add_argument("--out", default=RESULTS, help="where arabic_speakers.{json,md} go")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")

    from trillsson_tf.folders import write_atomic
    from trillsson_tf.teachers import load_teacher

    items = arabic_items(os.path.join(os.path.abspath(args.data), "arabic_speech_commands"), args.per_speaker)
    speakers = sorted({item.labels["speaker"] for item in items})
    table_path = os.path.join(RESULTS, "teacher_table.json")
    table = json.load(open(table_path)) if os.path.isfile(table_path) else {}
    result = {
        "command": " ".join(["benchmarks/arabic_speakers.py", *argv]),
        "date": time.strftime("%Y-%m-%d"),
        "clips": len(items),
        "speakers": len(speakers),
        "clips_per_speaker": len(items) // len(speakers),
        "rows": {},
    }
    for name in names:
        label, spec = ROWS[name]
        began = time.perf_counter()
        if spec is None:
            model = os.path.join(args.work, "runs", name, "export")
            if not os.path.isdir(model):
                print(f"{name}: no export at {model} (run teacher_table.py --rows {name} first); left out", flush=True)
                continue
            parameters = load_teacher(model).parameters
        else:
            model = load_teacher(spec)
            parameters = model.parameters or 0
        row = {"label": label, "parameters": int(parameters or 0), **score(model, items)}
        row["model"] = model if isinstance(model, str) else spec
        row["speechocean762"] = english_eer(name, table)
        row["seconds"] = round(time.perf_counter() - began, 1)
        result["rows"][name] = row
        verification = row["verification"]
        result["trials"], result["target_trials"] = verification["trials"], verification["target_trials"]
        print(
            f"{name}: EER {100 * verification['eer']:.1f} %, probe {row['probe']['accuracy']:.3f}, {row['seconds']} s"
        )
    os.makedirs(args.out, exist_ok=True)
    write_atomic(os.path.join(args.out, "arabic_speakers.json"), json.dumps(result, indent=2) + "\n")
    markdown = to_markdown(result)
    write_atomic(os.path.join(args.out, "arabic_speakers.md"), markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
