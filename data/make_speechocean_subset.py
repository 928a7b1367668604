"""Cut the demo's speechocean762 subset from ../shared/data/speechocean762 (run from the repository root).

150 speakers for training (5 utterances each, the centre 3 s at most) and 100 others never
trained on (4 utterances each, the centre 2 s): alternate speakers by id, so both sides hold
children and adults, women and men. Writes data/speechocean762/{train,unseen}/ and metadata.csv.
"""

import csv
import os
import sys

import numpy as np
import soundfile

SOURCE = os.path.join("..", "shared", "data", "speechocean762")
TARGET = os.path.join("data", "speechocean762")


def _centre(audio: np.ndarray, samples: int) -> np.ndarray:
    start = max(0, (len(audio) - samples) // 2)
    return audio[start : start + samples]


def main() -> None:
    with open(os.path.join(SOURCE, "metadata.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    speakers = sorted({row["speaker"] for row in rows})
    unseen = set(speakers[1::2][:100])
    out_rows = []
    for speaker in speakers:
        role = "unseen" if speaker in unseen else "train"
        utterances, seconds = (4, 2) if role == "unseen" else (5, 3)
        for row in [row for row in rows if row["speaker"] == speaker][:utterances]:
            audio, rate = soundfile.read(os.path.join(SOURCE, row["file"]), dtype="int16")
            path = os.path.join(role, row["file"])
            os.makedirs(os.path.join(TARGET, os.path.dirname(path)), exist_ok=True)
            soundfile.write(os.path.join(TARGET, path), _centre(audio, seconds * rate), rate, subtype="PCM_16")
            age_group = "child" if int(row["age"]) < 15 else "adult"
            out_rows.append(
                {"path": path, "speaker": f"so{speaker}", "sex": row["gender"], "age_group": age_group, "role": role}
            )
    with open(os.path.join(TARGET, "metadata.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "speaker", "sex", "age_group", "role"])
        writer.writeheader()
        writer.writerows(out_rows)
    print(f"{len(out_rows)} files", file=sys.stderr)


if __name__ == "__main__":
    main()
