"""Android demo assets: small ``.tflite`` models with metadata, labels, a sample WAV and golden outputs.

:func:`build_android_assets` writes one folder that an Android app copies into ``src/main/assets``:
``embedding_int8.tflite`` (a distilled ``tiny_cnn`` unless another model is given: int8 network,
float log-mel frontend inside) and ``wav2small_int8.tflite`` (per-clip scores, with labels), their
model cards, a ``<model>.metadata.json`` each (read from the file itself), ``sample_16k.wav`` and
``golden_outputs.json`` (computed by :class:`trillsson_tf.runtime.TFLiteModel`, with a tolerance),
a ``README.md`` with the Kotlin LiteRT code, and the MediaPipe Tasks form of each model made from an
export. Every file: docs/DESIGN.md, "Device". TensorFlow is imported only when training or converting.
"""

import logging
import os
import shutil
import string
import tempfile
from importlib import resources

import numpy as np

from trillsson_tf import litert
from trillsson_tf.audio import SAMPLE_AUDIO_DIR, load_audio
from trillsson_tf.contract import SAMPLE_RATE_HZ, SIGNATURE_KEY
from trillsson_tf.errors import ParameterError, TrillssonError
from trillsson_tf.checks import positive_int
from trillsson_tf.folders import refuse_inputs, write_atomic, write_json
from trillsson_tf.formats.model_card import ModelCard, card_path, write_card
from trillsson_tf.teachers.weights import sha256

__all__ = [
    "DEFAULT_STEPS",
    "FAST_STEPS",
    "EMBEDDING_FILE",
    "WAV2SMALL_FILE",
    "SAMPLE_FILE",
    "GOLDEN_FILE",
    "README_FILE",
    "METADATA_SUFFIX",
    "LABELS_SUFFIX",
    "MEDIAPIPE_SUFFIX",
    "MAX_FOLDER_BYTES",
    "TASKS",
    "build_android_assets",
    "mediapipe_windows",
    "model_metadata",
    "golden_outputs",
    "check_golden",
]

_log = logging.getLogger(__name__)

DEFAULT_STEPS = 1500
"""Distillation steps of each model built here (4-10 minutes for ``tiny_cnn`` on 2 shared cores)."""
FAST_STEPS = 20
"""Distillation steps of a smoke run (the CLI uses them under ``TRILLSSON_FAST=1``)."""
EMBEDDING_FILE = "embedding_int8.tflite"
WAV2SMALL_FILE = "wav2small_int8.tflite"
SAMPLE_FILE = "sample_16k.wav"
GOLDEN_FILE = "golden_outputs.json"
README_FILE = "README.md"
METADATA_SUFFIX = ".metadata.json"
LABELS_SUFFIX = ".labels.txt"
MEDIAPIPE_SUFFIX = "_mediapipe.tflite"
MAX_FOLDER_BYTES = 10 * 1024 * 1024
"""The folder is committed to git and copied into an APK: it must stay under 10 MB."""
TASKS = ("embedding", "regression", "classification")
"""What a model's outputs are, as written in its metadata."""

_FORMAT = "trillsson_tf.android_assets/1"
_README_TEMPLATE = "android_assets_README.md"  # in templates/, filled with string.Template
_SAMPLE_SECONDS = 2.5  # one whole 195-frame chunk (1.95 s), and short enough for a unit test
_SAMPLE_SOURCE = "librispeech/1688-142285-0002.flac"  # CC BY 4.0; kept out of the student's training data
_PCM16_SCALE = 32768.0
_CALIBRATION_CLIPS = 64
# On-device tolerance: another CPU (ARM NEON vs x86 AVX) rounds int8 kernels differently; the
# direction of an embedding is what an app uses, so the test compares cosine and a relative
# error. 0.99 / 5% leave room for kernel differences and catch a wrong input scaling (which
# moves the cosine far below 0.9) or a wrong model file.
_MIN_COSINE = 0.99
_MAX_RELATIVE_ERROR = 0.05


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def _signature_runner(model_path: str):
    interpreter = litert.make_interpreter(model_path=model_path, num_threads=1)
    signatures = interpreter.get_signature_list()
    if SIGNATURE_KEY not in signatures:
        raise ParameterError(
            f"{model_path!r} has no {SIGNATURE_KEY!r} signature (it has {list(signatures)}); "
            "convert it with trillsson_tf.converters.tflite.convert."
        )
    return interpreter, interpreter.get_signature_runner(SIGNATURE_KEY)


def model_metadata(model_path, *, task: str, description: str, output_meaning: dict, labels=None, source=None) -> dict:
    """The app-facing description of a ``.tflite`` model, read from the model file itself.

    Args:
        model_path: The ``.tflite`` file (with a ``serving_default`` signature).
        task: What the outputs are, one of :data:`TASKS`.
        description: One sentence for the app developer.
        output_meaning: Output name -> what its values mean (units, order, how to compare them).
        labels: Names of the output columns (class names, score names), or ``None``.
        source: JSON-friendly provenance (student, teacher, training steps, parity).

    Returns:
        ``{'format', 'model_file', 'model_bytes', 'sha256', 'task', 'description', 'signature',
        'input', 'outputs', 'labels', 'labels_file', 'source'}``; ``input`` holds the tensor name, shape
        (``-1`` = any size), dtype, sample rate in Hz, channels, value range and the PCM16 scale.

    Raises:
        ParameterError: no ``serving_default`` signature, not exactly one input, an output
            named in ``output_meaning`` that the model lacks (or one it has left undescribed).
    """
    if task not in TASKS:
        raise ParameterError(f"Unknown task {task!r}. Expected one of: {list(TASKS)}.")
    model_path = os.fspath(model_path)
    if not os.path.isfile(model_path):
        raise ParameterError(f"TFLite model file not found: {model_path!r}.")
    _, runner = _signature_runner(model_path)
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    if len(inputs) != 1:
        raise ParameterError(f"{model_path!r} must take one input (audio); it takes {sorted(inputs)}.")
    if set(outputs) != set(output_meaning):
        raise ParameterError(
            f"{model_path!r} has outputs {sorted(outputs)}; output_meaning describes {sorted(output_meaning)}."
        )
    ((input_name, input_details),) = inputs.items()
    model_input = litert.tensor_card(input_name, input_details)
    model_input.update(
        {
            "sample_rate_hz": SAMPLE_RATE_HZ,
            "channels": 1,
            "value_range": [-1.0, 1.0],
            "pcm16_scale": 1.0 / _PCM16_SCALE,
            "layout": "[batch, samples]: one row per clip; -1 means any size (resize the input before running)",
        }
    )
    stem = os.path.splitext(os.path.basename(model_path))[0]
    return {
        "format": _FORMAT,
        "model_file": os.path.basename(model_path),
        "model_bytes": os.path.getsize(model_path),
        "sha256": sha256(model_path),
        "task": task,
        "description": description,
        "signature": SIGNATURE_KEY,
        "input": model_input,
        "outputs": [
            {**litert.tensor_card(name, outputs[name]), "meaning": output_meaning[name]} for name in sorted(outputs)
        ],
        "labels": list(labels) if labels else None,
        "labels_file": stem + LABELS_SUFFIX if labels else None,
        "source": source,
    }


def golden_outputs(model_path, audio) -> dict:
    """Every output of a model on one clip, computed with :class:`trillsson_tf.runtime.TFLiteModel`.

    Args:
        model_path: The ``.tflite`` file.
        audio: float32 ``[samples]`` at 16 kHz in [-1, 1] (the sample WAV as read back).

    Returns:
        Output name -> float32 values ``[1, D]`` as nested lists (JSON-ready).
    """
    from trillsson_tf.runtime import TFLiteModel

    _, runner = _signature_runner(os.fspath(model_path))
    return {
        name: TFLiteModel(model_path, num_threads=1, output_key=name)(audio)["embedding"].astype(np.float32).tolist()
        for name in sorted(runner.get_output_details())
    }


def check_golden(expected, actual) -> dict:
    """Compare outputs with golden ones using the on-device tolerance.

    Args:
        expected: Output name -> ``[1, D]`` golden values.
        actual: Output name -> ``[1, D]`` values computed now.

    Returns:
        Output name -> ``{'cosine', 'relative_error', 'passed'}``; ``relative_error`` is the
        largest absolute difference over the largest golden magnitude.
    """
    from trillsson_tf.metrics import cosine_similarity

    report = {}
    for name, golden in expected.items():
        golden, values = np.asarray(golden, np.float64), np.asarray(actual[name], np.float64)
        cosine = float(cosine_similarity(golden.reshape(1, -1), values.reshape(1, -1))[0])
        relative = float(np.max(np.abs(golden - values)) / max(np.max(np.abs(golden)), 1e-12))
        report[name] = {
            "cosine": cosine,
            "relative_error": relative,
            "passed": cosine >= _MIN_COSINE and relative <= _MAX_RELATIVE_ERROR,
        }
    return report


def _write_sample(out_dir: str) -> str:
    """A 2.5 s, 16-bit, 16 kHz mono excerpt of a bundled LibriSpeech utterance."""
    import soundfile

    audio = load_audio(os.path.join(SAMPLE_AUDIO_DIR, _SAMPLE_SOURCE))[: int(_SAMPLE_SECONDS * SAMPLE_RATE_HZ)]
    path = os.path.join(out_dir, SAMPLE_FILE)
    soundfile.write(path, audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    return path


def _training_items():
    """Bundled FSDD training takes and LibriSpeech utterances, without the sample WAV's source."""
    from trillsson_tf.train.data import find_audio

    fsdd = [item for item in find_audio(os.path.join(SAMPLE_AUDIO_DIR, "fsdd")) if item.labels["split"] == "train"]
    sample = os.path.abspath(os.path.join(SAMPLE_AUDIO_DIR, _SAMPLE_SOURCE))
    librispeech = [
        item
        for item in find_audio(os.path.join(SAMPLE_AUDIO_DIR, "librispeech"))
        if os.path.abspath(item.path) != sample
    ]
    return fsdd + librispeech


def _distill_student(work_dir: str, folder: str, teacher, student: str, steps: int, progress: bool) -> str:
    """Distill ``teacher`` into ``student`` on the bundled audio in ``<work_dir>/<folder>`` (resumed when a run is
    there; targets cached in ``<work_dir>/targets``); returns the export folder."""
    from trillsson_tf.train.distill import distill
    from trillsson_tf.train.engine import RUN_FILE

    resume = os.path.isfile(os.path.join(work_dir, folder, RUN_FILE))
    run = distill(
        _training_items(),
        out_dir=os.path.join(work_dir, folder),
        teacher=teacher,
        student=student,
        steps=steps,
        checkpoint_every=max(1, steps // 4),
        validation_fraction=0.0,
        cache_dir=os.path.join(work_dir, "targets"),
        resume=resume,
        progress=progress,
    )
    return run["export"]


def _distill_embedding_student(work_dir: str, steps: int, progress: bool) -> str:
    """Distill ``speech_embedding`` into ``tiny_cnn`` in ``work_dir`` (resumed when a run is there)."""
    from trillsson_tf.teachers import SPEECH_EMBEDDING

    return _distill_student(work_dir, "distill", SPEECH_EMBEDDING, "tiny_cnn", steps, progress)


def _without_host_paths(value):
    """``value`` with every absolute path reduced to its file name (the card is committed and shipped)."""
    if isinstance(value, dict):
        return {key: _without_host_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_host_paths(item) for item in value]
    if isinstance(value, str) and os.path.isabs(value):
        return os.path.basename(value.rstrip(os.sep))
    return value


def _place_model(model, out_path: str, calibration, scratch: str) -> dict:
    """Put an int8 model at ``out_path`` with its card beside it; returns the card (``{}`` when none).

    An export is converted (int8, frontend inside) in ``scratch``; a ``.tflite`` is copied.
    """
    from trillsson_tf.runtime import read_model_card

    model = os.fspath(model)
    if model.endswith(".tflite"):
        if not os.path.isfile(model):
            raise ParameterError(f"TFLite model file not found: {model!r}.")
        shutil.copyfile(model, out_path)
        card = read_model_card(model)
    else:
        from trillsson_tf.converters.tflite import convert

        converted = os.path.join(scratch, os.path.basename(out_path))
        card = convert(model, converted, quantize="int8", representative_audio=calibration, overwrite=True)
        shutil.copyfile(converted, out_path)
    if card:
        card = _write_card(out_path, card)
    return card


def _write_card(out_path: str, card: dict) -> dict:
    """Write the card of the model copied to ``out_path`` beside it, without host paths; returns it."""
    card = _without_host_paths({**card, "model_file": os.path.basename(out_path)})
    return write_card(card_path(out_path), ModelCard.from_dict(card, where=card_path(out_path)))


def _mediapipe_form(model, out_path: str, calibration, scratch: str, fixed_samples):
    """The MediaPipe form of an export at ``out_path`` (int8, fixed ``[1, N]``) with its card, or why there is none."""
    model = os.fspath(model)
    if model.endswith(".tflite"):
        return "made from an export only: a given .tflite keeps its input shape, and MediaPipe needs a fixed [1, N]"
    from trillsson_tf.converters.tflite import convert

    converted = os.path.join(scratch, os.path.basename(out_path))
    card = convert(
        model,
        converted,
        quantize="int8",
        representative_audio=calibration,
        mediapipe=True,
        fixed_samples=fixed_samples,
        overwrite=True,
    )
    shutil.copyfile(converted, out_path)
    _write_card(out_path, card)
    return None


def mediapipe_windows(audio: np.ndarray, window_samples: int) -> np.ndarray:
    """How MediaPipe Tasks cuts a clip: non-overlapping windows, the last one zero-padded.

    Args:
        audio: float32 ``[samples]``.
        window_samples: The model's fixed input length N.

    Returns:
        float32 ``[ceil(samples / N), N]``: one row per result MediaPipe returns.
    """
    count = max(1, -(-len(audio) // window_samples))
    windows = np.zeros((count, window_samples), np.float32)
    windows.reshape(-1)[: len(audio)] = audio
    return windows


def _mediapipe_golden(model_path: str, audio: np.ndarray) -> dict:
    """Outputs of a MediaPipe form per MediaPipe window (the runtime on each window), and their mean."""
    from trillsson_tf.runtime import TFLiteModel

    _, runner = _signature_runner(model_path)
    ((_, details),) = runner.get_input_details().items()
    window = int(details["shape_signature"][-1])
    windows = mediapipe_windows(audio, window)
    outputs = {}
    for name in sorted(runner.get_output_details()):
        model = TFLiteModel(model_path, num_threads=1, output_key=name)
        outputs[name] = np.concatenate([model(row)["embedding"] for row in windows]).astype(np.float32).tolist()
    return {"window_samples": window, "windows": len(windows), "outputs": outputs}


def _source(card: dict) -> dict:
    """Provenance from a converter model card, without host paths: student, teacher, steps, parity."""
    source = card.get("source") or {}
    run = source.get("run") or {}
    teacher = source.get("teacher") or run.get("teacher") or {}
    parity = card.get("parity") or {}
    return {
        "model": card.get("name"),
        "parameters": source.get("parameters"),
        "teacher": teacher.get("spec"),
        "training_steps": run.get("step"),
        "quantize": card.get("quantize"),
        "float_ops": card.get("float_ops"),
        "parity_vs_keras": {
            key: parity[key] for key in ("mean_cosine", "min_cosine", "max_abs_diff", "ccc", "clips") if key in parity
        },
        "licence": card.get("licence"),
    }


def _wav2small_outputs(model_path: str) -> dict:
    """Output meanings and labels of a Wav2Small model, from its output width and the prosody teacher's names."""
    from trillsson_tf.teachers.prosody import PROSODY_SCORES

    _, runner = _signature_runner(model_path)
    outputs = runner.get_output_details()
    meaning, labels = {}, None
    for name, details in outputs.items():
        width = int(details["shape_signature"][-1])
        if width == len(PROSODY_SCORES):
            labels = list(PROSODY_SCORES)
            meaning[name] = (
                f"[batch, {width}] per-clip scores, in the order of the labels file ({', '.join(PROSODY_SCORES)}); "
                "standardised targets of the prosody teacher (trillsson_tf.teachers.prosody): 0 is the training mean, "
                "1 one standard deviation"
            )
        else:
            meaning[name] = f"[batch, {width}] per-clip scores (regression outputs of the Wav2Small head)"
    return {"meaning": meaning, "labels": labels}


def _default_wav2small(work_dir: str, steps: int, progress: bool):
    """Distill Wav2Small from the prosody teacher when the registry has it; ``None`` otherwise."""
    from trillsson_tf import models

    if "wav2small" not in models.available():
        return None
    from trillsson_tf.teachers import PROSODY

    return _distill_student(work_dir, "wav2small", PROSODY, "wav2small", steps, progress)


def _mediapipe_files(golden: dict, skipped: dict) -> str:
    """The README's list of MediaPipe forms: the files here with their window, or why there are none."""
    forms = golden.get("mediapipe") or {}
    if forms:
        return "\n".join(
            f"- `{name}`: fixed input `[1, {form['window_samples']}]` "
            f"({form['window_samples'] / SAMPLE_RATE_HZ:g} s windows); on `{SAMPLE_FILE}` MediaPipe gives "
            f"{form['windows']} results, golden per window in `{GOLDEN_FILE}` (`mediapipe`)"
            for name, form in sorted(forms.items())
        )
    reasons = sorted({why for name, why in skipped.items() if name.endswith(MEDIAPIPE_SUFFIX)})
    return (
        "No MediaPipe form in this folder (" + "; ".join(reasons) + "). Make one from an export with "
        "`trillsson-tf convert EXPORT --mediapipe --quantize int8 --data AUDIO --out model_mediapipe.tflite`."
    )


def _readme(entries: list, golden: dict, skipped: dict) -> str:
    """The folder's README: what each file is, and Kotlin that loads a model and reads its outputs.

    The text is ``templates/android_assets_README.md``; this fills in the model table, the Kotlin
    usage lines, the MediaPipe forms and the names and tolerances of these assets.
    """
    rows = "\n".join(
        f"| `{entry['model_file']}` | {entry['model_bytes'] / 1024:.0f} KB | {entry['task']} | "
        f"`{entry['input']['name']}` {entry['input']['shape']} {entry['input']['dtype']} | "
        + ", ".join(f"`{out['name']}` {out['shape']}" for out in entry["outputs"])
        + " |"
        for entry in entries
    )
    usage = "\n".join(
        f'val {"embedder" if entry["task"] == "embedding" else "scorer"} = AudioModel(context, "{entry["model_file"]}", '
        f'outputWidth = {entry["outputs"][0]["shape"][-1]})   // output "{entry["outputs"][0]["name"]}"'
        + (f"; columns: {entry['labels_file']}" if entry["labels_file"] else "")
        for entry in entries
    )
    embedding = entries[0]
    template = string.Template((resources.files(__package__) / "templates" / _README_TEMPLATE).read_text())
    return template.substitute(
        rows=rows,
        usage=usage,
        sample_file=SAMPLE_FILE,
        golden_file=GOLDEN_FILE,
        sample_seconds=golden["sample"]["seconds"],
        sample_source=os.path.basename(_SAMPLE_SOURCE),
        min_cosine=golden["tolerance"]["min_cosine"],
        max_relative_error=golden["tolerance"]["max_relative_error"],
        input_name=embedding["input"]["name"],
        embedding_file=embedding["model_file"],
        output_name=embedding["outputs"][0]["name"],
        width=embedding["outputs"][0]["shape"][-1],
        mediapipe_files=_mediapipe_files(golden, skipped),
    )


def _check_request(out_dir: str, embedding_model, wav2small_model, work_dir, overwrite: bool, steps) -> None:
    """Refuse an output folder that overlaps an input or is not empty (without ``overwrite``), and bad ``steps``."""
    # The folder is replaced at the end, after the models were read from it: refuse an overlap first.
    refuse_inputs(
        out_dir,
        [("--embedding-model", embedding_model), ("--wav2small-model", wav2small_model), ("--work-dir", work_dir)],
    )
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise ParameterError(
                f"Output directory {out_dir!r} exists and is not empty; pass overwrite=True (CLI --force)."
            )
    positive_int("steps", steps)


def _embedding_entry(source, staging: str, calibration, scratch: str) -> tuple:
    """Place the embedding model in ``staging``; returns ``(card, metadata entry)``."""
    path = os.path.join(staging, EMBEDDING_FILE)
    card = _place_model(source, path, calibration, scratch)
    _, runner = _signature_runner(path)
    ((output_name, details),) = runner.get_output_details().items()
    width = int(details["shape_signature"][-1])
    teacher = _source(card)["teacher"] or "its teacher"
    entry = model_metadata(
        path,
        task="embedding",
        description=f"Speech embedding student ({card.get('name', 'unknown')}), int8 network with the TRILLsson "
        f"log-mel frontend inside (float); distilled from {teacher}.",
        output_meaning={
            output_name: f"[batch, {width}] clip embedding: the mean over 1.95 s chunks (clips under "
            "2 s are mirror-padded); compare clips by cosine similarity"
        },
        source=_source(card),
    )
    return card, entry


def _wav2small_source(wav2small_model, with_wav2small: bool, work: str, steps: int, progress: bool) -> tuple:
    """``(the Wav2Small model to place, None)``, or ``(None, why there is none)``."""
    if not with_wav2small:
        return None, "with_wav2small=False (CLI --no-wav2small)"
    source = wav2small_model if wav2small_model is not None else _default_wav2small(work, steps, progress)
    if source is None:
        return None, "the student registry has no 'wav2small' and no wav2small_model was given"
    return source, None


def _wav2small_entry(source, staging: str, calibration, scratch: str) -> tuple:
    """Place the Wav2Small model in ``staging``; returns ``(card, metadata entry)``."""
    path = os.path.join(staging, WAV2SMALL_FILE)
    card = _place_model(source, path, calibration, scratch)
    described = _wav2small_outputs(path)
    entry = model_metadata(
        path,
        task="regression",
        description="Wav2Small: raw 16 kHz audio in, per-clip scores out, int8.",
        output_meaning=described["meaning"],
        labels=described["labels"],
        source=_source(card),
    )
    return card, entry


def _write_descriptions(staging: str, entries: list) -> None:
    """Each model's ``<stem>.metadata.json``, and its labels file when it has labels."""
    for entry in entries:
        stem = os.path.splitext(entry["model_file"])[0]
        write_json(os.path.join(staging, stem + METADATA_SUFFIX), entry)
        if entry["labels_file"]:
            write_atomic(os.path.join(staging, entry["labels_file"]), "\n".join(entry["labels"]) + "\n")


def _mediapipe_forms(sources: dict, staging: str, sample, calibration, scratch: str, mediapipe, fixed_samples, skipped):
    """The MediaPipe form of each model, written in ``staging``: ``{form file: its golden outputs}``.

    A model without one gets a line in ``skipped`` (form file -> why).
    """
    forms = {}
    for name, model in sources.items():
        form = name.replace(".tflite", MEDIAPIPE_SUFFIX)
        why = (
            _mediapipe_form(model, os.path.join(staging, form), calibration, scratch, fixed_samples)
            if mediapipe
            else "mediapipe=False (CLI --no-mediapipe)"
        )
        if why is None:
            forms[form] = _mediapipe_golden(os.path.join(staging, form), sample)
        else:
            skipped[form] = why
    return forms


def _golden(staging: str, sample, sample_path: str, entries: list, forms: dict) -> dict:
    """The golden-outputs record: the sample WAV, the tolerance, every model's outputs on it (and the forms')."""
    golden = {
        "format": _FORMAT,
        "sample": {
            "file": SAMPLE_FILE,
            "sample_rate_hz": SAMPLE_RATE_HZ,
            "samples": int(len(sample)),
            "seconds": round(len(sample) / SAMPLE_RATE_HZ, 3),
            "sha256": sha256(sample_path),
        },
        "generated_with": "trillsson_tf.runtime.TFLiteModel, 1 thread",
        "tolerance": {"min_cosine": _MIN_COSINE, "max_relative_error": _MAX_RELATIVE_ERROR},
        "models": {
            entry["model_file"]: golden_outputs(os.path.join(staging, entry["model_file"]), sample) for entry in entries
        },
    }
    if forms:
        golden["mediapipe"] = forms
    return golden


def _publish(staging: str, out_dir: str) -> int:
    """Replace ``out_dir`` with the staged folder; returns its size in bytes.

    Raises:
        TrillssonError: the folder is larger than :data:`MAX_FOLDER_BYTES` (``out_dir`` is left as it was).
    """
    size = _folder_bytes(staging)
    if size > MAX_FOLDER_BYTES:
        raise TrillssonError(
            f"The assets come to {size:,} bytes, over the {MAX_FOLDER_BYTES:,}-byte limit; use smaller models."
        )
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    shutil.copytree(staging, out_dir)
    return size


def build_android_assets(
    out_dir,
    *,
    embedding_model=None,
    wav2small_model=None,
    with_wav2small: bool = True,
    steps: int = DEFAULT_STEPS,
    work_dir=None,
    overwrite: bool = False,
    progress: bool = False,
    mediapipe: bool = True,
    fixed_samples=None,
) -> dict:
    """Write the Android demo assets folder (models, metadata, labels, sample WAV, golden outputs, README).

    Args:
        out_dir: Output folder (refused when it exists and is not empty, unless ``overwrite``).
        embedding_model: A trillsson_tf export directory or ``.keras`` file (converted to int8
            with the frontend inside), or a ``.tflite`` file (copied with its model card).
            ``None``: distill ``speech_embedding`` into ``tiny_cnn`` on the bundled audio.
        wav2small_model: The same forms, for the Wav2Small scores model. ``None``: distill it
            from the prosody teacher when the registry has ``wav2small``, else leave it out.
        with_wav2small: ``False`` leaves the Wav2Small model out.
        steps: Distillation steps for the models built here (:data:`FAST_STEPS` for a smoke run).
        work_dir: Folder for the distillation runs and target cache (kept, and resumed on the
            next call); ``None`` uses a temporary folder.
        overwrite: Replace an existing ``out_dir``.
        progress: Progress bars while distilling.
        mediapipe: Also write the MediaPipe Tasks form of each model made from an export
            (``<model>_mediapipe.tflite``).
        fixed_samples: Window of the MediaPipe forms in samples (``None``: 32,000, 2 s).

    Returns:
        Summary: ``{'out_dir', 'files', 'folder_bytes', 'models': {file: {'bytes', 'parity'}},
        'skipped': {what: why}}``.

    Raises:
        ParameterError: an existing ``out_dir`` without ``overwrite``, a missing model file,
            a model whose outputs do not match its description.
        TrillssonError: the folder ends up larger than :data:`MAX_FOLDER_BYTES`.
    """
    out_dir = os.fspath(out_dir)
    _check_request(out_dir, embedding_model, wav2small_model, work_dir, overwrite, steps)
    with tempfile.TemporaryDirectory() as staging, tempfile.TemporaryDirectory() as scratch:
        work = os.fspath(work_dir) if work_dir is not None else scratch
        sample_path = _write_sample(staging)
        sample = load_audio(sample_path)  # the PCM16 values the device reads, not the float original
        calibration = [item.path for item in _training_items()][:_CALIBRATION_CLIPS]
        entries, skipped, cards, sources = [], {}, {}, {}

        sources[EMBEDDING_FILE] = (
            embedding_model if embedding_model is not None else _distill_embedding_student(work, steps, progress)
        )
        cards[EMBEDDING_FILE], entry = _embedding_entry(sources[EMBEDDING_FILE], staging, calibration, scratch)
        entries.append(entry)
        source, why = _wav2small_source(wav2small_model, with_wav2small, work, steps, progress)
        if why is not None:
            skipped[WAV2SMALL_FILE] = why
        else:
            sources[WAV2SMALL_FILE] = source
            cards[WAV2SMALL_FILE], entry = _wav2small_entry(source, staging, calibration, scratch)
            entries.append(entry)

        _write_descriptions(staging, entries)
        forms = _mediapipe_forms(sources, staging, sample, calibration, scratch, mediapipe, fixed_samples, skipped)
        golden = _golden(staging, sample, sample_path, entries, forms)
        write_json(os.path.join(staging, GOLDEN_FILE), golden)
        write_atomic(os.path.join(staging, README_FILE), _readme(entries, golden, skipped))
        size = _publish(staging, out_dir)

    _log.info("Android assets written to %s (%d bytes)", out_dir, size)
    return {
        "out_dir": out_dir,
        "files": sorted(os.listdir(out_dir)),
        "folder_bytes": size,
        "models": {
            name: {
                "bytes": os.path.getsize(os.path.join(out_dir, name)),
                "parity": (cards[name].get("parity") or {}).get("mean_cosine"),
            }
            for name in cards
        },
        "skipped": skipped,
    }
