"""The main job on built-in defaults: build a student, export it, embed the bundled speech.

(The distillation issue grows this into teacher -> distill -> export -> evaluate.)
"""
import glob
import json
import os

import numpy as np

from trillsson_tf import models
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.errors import ParameterError
from trillsson_tf.export import export_savedmodel, load
from trillsson_tf.metrics import parity


def run_demo(out_dir, *, student: str = "trillsson1", overwrite: bool = False) -> dict:
    """Build ``student``, export it to ``<out_dir>/export``, embed bundled LibriSpeech clips.

    Args:
        out_dir: Output directory (refused when it exists, unless ``overwrite``).
        student: Registry name.
        overwrite: Replace an existing ``out_dir``.

    Returns:
        The report also written to ``<out_dir>/report.json``.
    """
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise ParameterError(f"Output directory {out_dir!r} exists and is not empty; pass overwrite=True.")
    model = models.build(student)
    export_dir = export_savedmodel(model, os.path.join(out_dir, "export"), overwrite=overwrite)
    layer = load(export_dir)
    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))[:4]
    keras_vectors, hub_vectors = [], []
    for path in files:
        clip = load_audio(path)[np.newaxis]
        keras_vectors.append(model(clip)["embedding"].numpy()[0])
        hub_vectors.append(layer(clip)["embedding"].numpy()[0])
    report = {
        "student": student,
        "parameters": int(model.count_params()),
        "export": export_dir,
        "clips": [os.path.basename(path) for path in files],
        "embedding_dim": len(keras_vectors[0]),
        "keras_vs_savedmodel": parity(np.stack(keras_vectors), np.stack(hub_vectors)),
    }
    with open(os.path.join(out_dir, "report.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    return report
