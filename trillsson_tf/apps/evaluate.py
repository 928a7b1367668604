"""Evaluation: fidelity to a teacher and NOSS-style linear probes, student and teacher side by side.

- Fidelity: MSE and mean cosine between the model's and the teacher's clip vectors (only the files
  labelled ``split=test`` when a split exists).
- Linear probes: logistic regression on standardised clip vectors for each label column (optionally
  L2- or per-speaker normalised); train -> test with a ``split`` label, else stratified k-fold.
- CCC (``metric='ccc'``): for score models (A/D/V students), the concordance correlation coefficient
  of each output over the evaluated files (:func:`trillsson_tf.metrics.ccc`); no probes.
More: docs/DESIGN.md, "Training".
"""

import logging
import os

import numpy as np

from trillsson_tf.train.data import find_audio, load_clips
from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import write_json
from trillsson_tf.metrics import binomial_ci95, ccc, fidelity, speaker_verification
from trillsson_tf.teachers import load_teacher

__all__ = ["METRICS", "NORMALIZATIONS", "evaluate", "score_agreement", "embed_clips", "probe_accuracy", "format_table"]

_log = logging.getLogger(__name__)

NORMALIZATIONS = ("none", "l2", "speaker")
METRICS = ("probes", "ccc")
"""``probes``: fidelity and linear probes (embedding models); ``ccc``: fidelity and per-score CCC."""
_SPLIT = "split"
_SPEAKER = "speaker"
_NOT_TASKS = (_SPLIT, "take", "chapter", "utterance", "round")
_MAX_FOLDS = 5


def embed_clips(embedder, clips, *, progress: bool = False) -> np.ndarray:
    """Clip vectors of ``clips``, one clip per call (clips differ in length).

    Args:
        embedder: A :class:`trillsson_tf.teachers.Teacher` (any model loaded by ``load_teacher``).
        clips: float32 ``[samples]`` arrays at 16 kHz.
        progress: Show a progress bar.

    Returns:
        float32 ``[clips, D]``.
    """
    from tqdm.auto import tqdm

    vectors = [
        embedder(clip[np.newaxis])["embedding"][0]
        for clip in tqdm(clips, desc=f"embedding ({embedder.spec})", unit="clip", disable=not progress)
    ]
    return np.stack(vectors).astype(np.float32)


def score_agreement(reference, candidate, *, names=None) -> dict:
    """CCC of each score of ``candidate`` (student) against ``reference`` (teacher), over the set.

    Args:
        reference: float ``[n, k]`` teacher scores.
        candidate: float ``[n, k]`` model scores.
        names: k names (default ``score0`` ...).

    Returns:
        ``{'per_score': {name: ccc}, 'mean': float, 'min': float}``.
    """
    values = ccc(candidate, reference)
    names = list(names) if names is not None else [f"score{index}" for index in range(len(values))]
    return {
        "per_score": dict(zip(names, map(float, values))),
        "mean": float(np.mean(values)),
        "min": float(np.min(values)),
    }


def _normalise(vectors: np.ndarray, normalization: str, speakers) -> np.ndarray:
    if normalization == "l2":
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if normalization == "speaker":
        if speakers is None:
            raise ParameterError("normalization='speaker' needs a speaker label for every file.")
        out = np.empty_like(vectors)
        speakers = np.asarray(speakers)
        for speaker in np.unique(speakers):
            rows = speakers == speaker
            out[rows] = (vectors[rows] - vectors[rows].mean(0)) / (vectors[rows].std(0) + 1e-6)
        return out
    return vectors


def probe_accuracy(vectors, labels, *, normalization: str = "none", speakers=None, split=None, seed: int = 0) -> dict:
    """Accuracy of a logistic-regression probe on clip vectors.

    Args:
        vectors: float ``[n, D]`` clip vectors.
        labels: ``[n]`` class labels (any hashable values).
        normalization: One of :data:`NORMALIZATIONS`.
        speakers: ``[n]`` speaker labels (needed for ``speaker`` normalisation).
        split: ``[n]`` of ``'train'``/``'test'``; ``None`` for stratified k-fold.
        seed: Seeds the folds and the solver.

    Returns:
        ``{'accuracy', 'protocol', 'classes', 'n', 'ci95'}`` (Wilson interval over the scored files).

    Raises:
        ParameterError: unknown normalization, fewer than 2 classes, or a class with a single file
            (k-fold) / an empty train or test side (split).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if normalization not in NORMALIZATIONS:
        raise ParameterError(f"Unknown normalization {normalization!r}. Expected one of: {list(NORMALIZATIONS)}.")
    vectors = _normalise(np.asarray(vectors, np.float64), normalization, speakers)
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ParameterError(f"A probe needs at least 2 classes; got {list(classes)}.")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    if split is not None:
        split = np.asarray(split)
        train, test = split == "train", split == "test"
        if not train.any() or not test.any():
            raise ParameterError(f"The split needs 'train' and 'test' files; got {sorted(set(split.tolist()))}.")
        accuracy = float(probe.fit(vectors[train], labels[train]).score(vectors[test], labels[test]))
        protocol, scored = "split", int(test.sum())
    else:
        folds = min(_MAX_FOLDS, int(counts.min()))
        if folds < 2:
            raise ParameterError(f"Cross-validation needs 2 files per class; class {classes[counts.argmin()]!r} has 1.")
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        accuracy = float(cross_val_score(probe, vectors, labels, cv=cv).mean())
        protocol, scored = f"{folds}-fold", len(labels)  # every file is scored once, in its fold
    return {
        "accuracy": accuracy,
        "protocol": protocol,
        "classes": int(len(classes)),
        "n": int(len(labels)),
        "ci95": binomial_ci95(int(round(accuracy * scored)), scored),
    }


def _training_mean(model):
    """The training-set mean teacher vector a distilled export records (``target_mean``), or ``None``."""
    if not isinstance(model, (str, os.PathLike)) or not os.path.isdir(model):
        return None
    from trillsson_tf.models.export import read_metadata

    mean = read_metadata(model).get("target_mean")
    return None if mean is None else np.asarray(mean, np.float64)


def _scored_rows(split: list, has_split: bool, data) -> np.ndarray:
    """Which files fidelity and CCC score: the ``test`` side of a split, else every file.

    Raises:
        ParameterError: a split without test files (for example FSDD takes 5+ only).
    """
    if not has_split:
        return np.ones(len(split), bool)
    rows = np.array([value == "test" for value in split])
    if not rows.any():
        where = repr(os.fspath(data)) if isinstance(data, (str, os.PathLike)) else "the data"
        raise ParameterError(
            f"Every file of {where} is on the train side of its split (FSDD: takes 5 and up), "
            "so none is left to score; add test files (FSDD takes 0-4)."
        )
    return rows


def _tasks(items, tasks):
    available = sorted({key for item in items for key in item.labels} - set(_NOT_TASKS))
    if tasks is None:
        return [task for task in available if len({item.labels.get(task) for item in items if task in item.labels}) > 1]
    unknown = [task for task in tasks if task not in available]
    if unknown:
        raise ParameterError(f"Unknown label column(s) {unknown}. Expected some of: {available}.")
    return list(tasks)


def _check_options(normalization: str, metric: str, teacher) -> None:
    """Refuse an unknown normalization or metric, and ``ccc`` without a teacher."""
    if normalization not in NORMALIZATIONS:
        raise ParameterError(f"Unknown normalization {normalization!r}. Expected one of: {list(NORMALIZATIONS)}.")
    if metric not in METRICS:
        raise ParameterError(f"Unknown metric {metric!r}. Expected one of: {list(METRICS)}.")
    if metric == "ccc" and teacher is None:
        raise ParameterError(
            "metric='ccc' compares the model's scores with a teacher's: pass teacher=... (CLI --teacher)."
        )


def _embedders(model, teacher, baseline, output_key) -> dict:
    """Role (``student``, ``teacher``, ``baseline``) -> loaded embedder, for the roles given."""
    embedders = {"student": load_teacher(model, output_key=output_key)}
    if teacher is not None:
        embedders["teacher"] = load_teacher(teacher)
    if baseline is not None:
        embedders["baseline"] = load_teacher(baseline)
    return embedders


def _teacher_fidelity(vectors: dict, split: list, has_split: bool, data, model):
    """Fidelity of the student's clip vectors to the teacher's on the scored files; ``None`` when widths differ."""
    if vectors["student"].shape[1] != vectors["teacher"].shape[1]:
        _log.warning(
            "No fidelity: the model gives %d-d vectors, the teacher %d-d.",
            vectors["student"].shape[1],
            vectors["teacher"].shape[1],
        )
        return None
    rows = _scored_rows(split, has_split, data)
    return {
        **fidelity(vectors["teacher"][rows], vectors["student"][rows], center=_training_mean(model)),
        "files": int(rows.sum()),
    }


def _teacher_ccc(vectors: dict, split: list, has_split: bool, data, names) -> dict:
    """:func:`score_agreement` of the student's scores with the teacher's on the scored files."""
    if vectors["student"].shape[1] != vectors["teacher"].shape[1]:
        raise ParameterError(
            f"metric='ccc' needs one model output per teacher score: the model gives {vectors['student'].shape[1]}, "
            f"the teacher {vectors['teacher'].shape[1]}."
        )
    rows = _scored_rows(split, has_split, data)
    return {
        **score_agreement(vectors["teacher"][rows], vectors["student"][rows], names=names),
        "files": int(rows.sum()),
    }


def _task_probes(vectors: dict, items, task: str, normalization: str, split) -> dict:
    """Role -> :func:`probe_accuracy` on the files labelled with ``task`` (``split``: every file's, or ``None``)."""
    rows = np.array([task in item.labels for item in items])
    task_labels = [item.labels[task] for item in items if task in item.labels]
    speakers = [item.labels.get(_SPEAKER) for item in items if task in item.labels]
    task_norm = "none" if normalization == "speaker" and task == _SPEAKER else normalization
    if task_norm == "speaker" and any(speaker is None for speaker in speakers):
        raise ParameterError(f"normalization='speaker' needs a speaker label on every file of task {task!r}.")
    task_split = [value for value, keep in zip(split, rows) if keep] if split is not None else None
    return {
        role: probe_accuracy(
            vectors[role][rows], task_labels, normalization=task_norm, speakers=speakers, split=task_split
        )
        for role in vectors
    }


def evaluate(
    model,
    data,
    *,
    teacher=None,
    labels=None,
    tasks=None,
    normalization: str = "none",
    output_key=None,
    out_json=None,
    progress: bool = False,
    metric: str = "probes",
    kws=None,
    sv=None,
    baseline=None,
    verification=None,
) -> dict:
    """Evaluate an embedding model (and its teacher) on labelled audio.

    Args:
        model: Any spec of :func:`trillsson_tf.teachers.load_teacher` (for example a
            distillation's ``<out>/export``), or a loaded teacher object.
        data: A folder, a CSV manifest, or a list of paths.
        teacher: Optional teacher spec; adds fidelity and the teacher's probe accuracies.
        labels: Optional CSV manifest of extra label columns (``path`` plus columns).
        tasks: Label columns to probe (default: every column with 2+ values, except
            ``split``/``take``/``chapter``).
        normalization: One of :data:`NORMALIZATIONS`.
        output_key: The model's output to use, when it has several.
        out_json: Write the report there as JSON.
        progress: Progress bars while embedding.
        metric: One of :data:`METRICS`; ``ccc`` needs ``teacher`` with as many outputs as the model.
        kws: Keyword label column of a fine-tuned multi-task model; with ``sv``, the report is
            :func:`trillsson_tf.train.finetune.evaluate_multitask`'s (keyword accuracy, EER, minDCF).
        sv: Speaker label column of a fine-tuned multi-task model (see ``kws``).
        baseline: A third embedder scored beside model and teacher (``'mfcc'``: MFCC mean + std,
            no network; any teacher spec).
        verification: Speaker verification on the ``speaker`` label (EER and minDCF of cosine
            scores over every clip pair, vectors standardised per dimension over the evaluated
            clips, 95% interval from 200 speaker resamples); ``None``: when the files have speakers
            with 2+ clips.

    Returns:
        ``{'model', 'teacher', 'files', 'skipped', 'normalization', 'fidelity', 'probes'}``;
        ``probes[task]`` holds ``student`` (and ``teacher``) results of :func:`probe_accuracy`;
        with ``metric='ccc'`` also ``ccc`` (:func:`score_agreement` plus ``files``).
    """
    if kws is not None or sv is not None:
        from trillsson_tf.train.finetune import evaluate_multitask

        return evaluate_multitask(model, data, kws=kws, sv=sv, labels=labels, out_json=out_json, progress=progress)
    _check_options(normalization, metric, teacher)
    loaded = load_clips(find_audio(data, labels=labels), progress=progress)
    items = loaded.items
    task_names = _tasks(items, tasks) if metric == "probes" else []
    embedders = _embedders(model, teacher, baseline, output_key)
    vectors = {role: embed_clips(embedder, loaded.clips, progress=progress) for role, embedder in embedders.items()}

    split = [item.labels.get(_SPLIT) for item in items]
    has_split = all(value in ("train", "test") for value in split)
    report = {
        "model": embedders["student"].describe(),
        "teacher": embedders["teacher"].describe() if teacher is not None else None,
        "baseline": embedders["baseline"].describe() if baseline is not None else None,
        "files": len(items),
        "skipped": [path for path, _ in loaded.skipped],
        "normalization": normalization,
        "fidelity": None,
        "probes": {},
    }
    if teacher is not None:
        report["fidelity"] = _teacher_fidelity(vectors, split, has_split, data, model)
    if metric == "ccc":
        names = getattr(embedders["teacher"], "score_names", None)
        report["ccc"] = _teacher_ccc(vectors, split, has_split, data, names)
    for task in task_names:
        report["probes"][task] = _task_probes(vectors, items, task, normalization, split if has_split else None)
    speakers = [item.labels.get(_SPEAKER) for item in items]
    if verification or (verification is None and metric == "probes" and _has_trials(speakers)):
        report["verification"] = {role: _verify(vectors[role], speakers) for role in vectors}
    if out_json is not None:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        write_json(out_json, report)
    return report


def _has_trials(speakers) -> bool:
    if any(speaker is None for speaker in speakers):
        return False
    names, counts = np.unique(np.asarray(speakers, dtype=str), return_counts=True)
    return len(names) >= 2 and counts.max() >= 2


def _verify(vectors: np.ndarray, speakers) -> dict:
    if any(speaker is None for speaker in speakers):
        raise ParameterError("Speaker verification needs a speaker label on every file.")
    standardised = (vectors - vectors.mean(axis=0)) / (vectors.std(axis=0) + 1e-8)
    return speaker_verification(standardised, speakers, bootstrap=200)


def format_table(report: dict) -> str:
    """The probes and fidelity of an :func:`evaluate` report as a plain-text table."""
    if "probes" not in report:  # a multi-task report (evaluate with kws / sv)
        lines = (
            [f"keyword accuracy on {report['kws']['clips']} test files: {report['kws']['accuracy']:.3f}"]
            if "kws" in report
            else []
        )
        if "sv" in report:
            sv = report["sv"]
            lines.append(
                f"speaker verification, {sv['speakers']} unseen speakers, {sv['trials']:,} trials: "
                f"EER {100 * sv['eer']:.2f}%, minDCF(0.01) {sv['min_dcf']:.3f}"
            )
        return "\n".join(lines)
    roles = ["student"] + [role for role in ("teacher", "baseline") if report.get(role)]
    lines = (
        [f"{'task':<12}{'classes':>8}{'protocol':>10}" + "".join(f"{role:>10}" for role in roles)]
        if report["probes"]
        else []
    )
    for task, results in report["probes"].items():
        first = results["student"]
        lines.append(
            f"{task:<12}{first['classes']:>8}{first['protocol']:>10}"
            + "".join(f"{results[role]['accuracy']:>10.3f}" for role in roles)
        )
    for role, sv in (report.get("verification") or {}).items():
        lines.append(
            f"speaker verification ({role}), {sv['speakers']} speakers, {sv['trials']:,} trials: EER "
            f"{100 * sv['eer']:.2f}% (95% CI {100 * sv['eer_ci95'][0]:.2f}-{100 * sv['eer_ci95'][1]:.2f}), "
            f"minDCF(0.01) {sv['min_dcf']:.3f}"
        )
    if report.get("ccc"):
        agreement = report["ccc"]
        lines.append(f"CCC against the teacher on {agreement['files']} files (mean {agreement['mean']:.3f}):")
        lines.extend(f"  {name:<20}{value:>8.3f}" for name, value in agreement["per_score"].items())
    if report.get("fidelity"):
        fid = report["fidelity"]
        mean = fid["baselines"]["training_mean"]
        lines.append(
            f"fidelity to teacher on {fid['files']} files: mean cosine {fid['mean_cosine']:.4f} (the training mean "
            f"alone: {mean['mean_cosine']:.4f}), centered cosine {fid['centered_cosine']:.4f} (on the "
            f"{fid['centered_on']} mean), R2 {fid['r2']:.4f}, MSE {fid['mse']:.4g}"
        )
    return "\n".join(lines)
