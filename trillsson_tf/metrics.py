"""Metrics over numpy arrays (no TensorFlow): embedding parity and, later, task scores."""

import numpy as np

from trillsson_tf.errors import ParameterError

__all__ = ["ccc", "cosine_similarity", "fidelity", "parity"]
__all__ += [
    "accuracy",
    "eer",
    "min_dcf",
    "split_speakers",
    "verification_trials",
    "speaker_verification",
    "binomial_ci95",
]


def cosine_similarity(a, b) -> np.ndarray:
    """Row-wise cosine similarity.

    Args:
        a: float array ``[n, D]``.
        b: float array ``[n, D]``.

    Returns:
        float64 array ``[n]``; a pair where either row is all zeros scores 0.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ParameterError(f"cosine_similarity needs two [n, D] arrays of one shape, got {a.shape} and {b.shape}.")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def parity(reference, candidate) -> dict:
    """How closely ``candidate`` embeddings follow ``reference`` ones.

    Args:
        reference: float array ``[n, D]`` (for example the Keras model's embeddings).
        candidate: float array ``[n, D]`` (for example a SavedModel's or a .tflite's).

    Returns:
        ``{'mean_cosine', 'min_cosine', 'max_abs_diff', 'reference_rms'}`` as floats;
        ``reference_rms`` shows whether ``max_abs_diff`` is small relative to the values.
    """
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    cosine = cosine_similarity(reference, candidate)
    return {
        "mean_cosine": float(cosine.mean()),
        "min_cosine": float(cosine.min()),
        "max_abs_diff": float(np.max(np.abs(reference.astype(np.float64) - candidate))),
        "reference_rms": float(np.sqrt(np.mean(np.square(reference.astype(np.float64))))),
    }


def _agreement(reference: np.ndarray, candidate: np.ndarray, center: np.ndarray) -> dict:
    """Raw cosine, cosine of the deviations from ``center``, and R² (about the reference's own mean)."""
    residual = np.sum((reference - candidate) ** 2)
    spread = np.sum((reference - reference.mean(axis=0)) ** 2)
    centered = cosine_similarity(reference - center, candidate - center)
    return {
        "mean_cosine": float(cosine_similarity(reference, candidate).mean()),
        "centered_cosine": float(centered.mean()),
        "r2": float(1.0 - residual / spread) if spread > 0 else 0.0,
    }


def fidelity(reference, candidate, *, center=None, training_targets=None) -> dict:
    """How closely ``candidate`` vectors follow ``reference`` (teacher) vectors, beside what trivial answers score.

    Raw cosine flatters: against ``speech_embedding`` the training-set mean vector alone scores
    0.86. The centered cosine compares what differs between clips (both vectors minus
    ``center``, the training-set mean teacher vector) and R² says how much of the teacher's
    spread the candidate explains.

    Args:
        reference: float ``[n, D]`` teacher vectors.
        candidate: float ``[n, D]`` student vectors.
        center: float ``[D]``, the mean teacher vector of the training set (``None``: the mean
            of ``reference``, named so in ``centered_on``).
        training_targets: Optional float ``[m, D]`` teacher vectors of the training set: adds the
            ``nearest_training_target`` baseline (for each row, the training target of highest
            cosine, chosen with the answer known).

    Returns:
        ``{'mse', 'mean_cosine', 'min_cosine', 'centered_cosine', 'r2', 'centered_on',
        'baselines': {'training_mean': {...}, 'nearest_training_target': {...}}}`` (floats; each
        baseline has ``mean_cosine``, ``centered_cosine`` and ``r2``).
    """
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    cosine = cosine_similarity(reference, candidate)
    centered_on = "evaluation set" if center is None else "training targets"
    center = reference.mean(axis=0) if center is None else np.asarray(center, np.float64)
    if center.shape != reference.shape[1:]:
        raise ParameterError(
            f"center must be one [D] vector of the reference's width {reference.shape[1]}, got {center.shape}."
        )
    baselines = {"training_mean": _agreement(reference, np.broadcast_to(center, reference.shape), center)}
    if training_targets is not None:
        train = np.asarray(training_targets, np.float64)
        unit = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
        nearest = np.concatenate(
            [np.argmax(rows @ unit.T, axis=1) for rows in np.array_split(reference, max(1, len(reference) // 256))]
        )
        baselines["nearest_training_target"] = _agreement(reference, train[nearest], center)
    return {
        "mse": float(np.mean((reference - candidate) ** 2)),
        "min_cosine": float(cosine.min()),
        **_agreement(reference, candidate, center),
        "centered_on": centered_on,
        "baselines": baselines,
    }


def ccc(predictions, targets):
    """Concordance correlation coefficient, per dimension, computed once over the whole set.

    ``2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))**2)`` with population (1/n)
    moments (Lin 1989; as the Wav2Small paper scores A/D/V), so a model is scored against the set, not clip by clip.
    Constant predictions give 0 against varying targets (no covariance) and 1 when they
    equal the targets exactly; the result is never NaN.

    Args:
        predictions: float ``[n]`` or ``[n, k]`` (for example A/D/V scores of n clips).
        targets: float array of the same shape (for example the teacher's scores).

    Returns:
        float for ``[n]`` inputs; float64 array ``[k]`` for ``[n, k]``; each in [-1, 1].

    Raises:
        ParameterError: different shapes, rank other than 1 or 2, fewer than 2 rows, NaN/Inf.
    """
    x, y = np.asarray(predictions, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if x.shape != y.shape or x.ndim not in (1, 2):
        raise ParameterError(f"ccc needs two [n] or [n, k] arrays of one shape, got {x.shape} and {y.shape}.")
    if x.shape[0] < 2:
        raise ParameterError(f"ccc needs at least 2 rows (it is a statistic of the set), got {x.shape[0]}.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ParameterError("ccc got NaN or Inf values.")
    x2, y2 = (x, y) if x.ndim == 2 else (x[:, np.newaxis], y[:, np.newaxis])
    mean_x, mean_y = x2.mean(axis=0), y2.mean(axis=0)
    covariance = np.mean((x2 - mean_x) * (y2 - mean_y), axis=0)
    denominator = x2.var(axis=0) + y2.var(axis=0) + (mean_x - mean_y) ** 2
    # A zero denominator means both columns are constant and equal: perfect agreement.
    values = np.divide(2.0 * covariance, denominator, out=np.ones_like(denominator), where=denominator > 0)
    return float(values[0]) if x.ndim == 1 else values


# -- keyword spotting and speaker verification (the multi-task fine-tuning) ------------------------


def accuracy(predictions, labels) -> float:
    """Share of correct predictions.

    Args:
        predictions: ``[n]`` predicted labels (any comparable values), or float ``[n, K]``
            scores / logits whose argmax is the predicted class index.
        labels: ``[n]`` true labels (class indices when ``predictions`` are scores).

    Returns:
        float in [0, 1].

    Raises:
        ParameterError: empty input or mismatched lengths.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=1)
    if predictions.ndim != 1 or predictions.shape != labels.shape or not len(labels):
        raise ParameterError(
            f"accuracy needs [n] (or [n, K] scores) and [n] labels, n > 0; got {predictions.shape} and {labels.shape}."
        )
    return float(np.mean(predictions == labels))


def _roc(scores, labels, weights=None):
    """False-positive and true-positive rates at every distinct threshold, from (0, 0) to (1, 1).

    The same points as ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``;
    ``weights`` (``[n]`` >= 0) count each trial that many times (the speaker bootstrap).
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.ndim != 1 or scores.shape != labels.shape or not len(scores):
        raise ParameterError(
            f"Trial scores and labels must be two [n] arrays, n > 0; got {scores.shape} and {labels.shape}."
        )
    if not np.all(np.isfinite(scores)):
        raise ParameterError("Trial scores hold NaN or Inf values.")
    if not np.all(np.isin(labels, (0, 1))):
        raise ParameterError(
            f"Trial labels must be 1 (same speaker) or 0; got values {sorted(set(labels.tolist()))[:5]}."
        )
    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        raise ParameterError(
            f"Trials need both target (1) and non-target (0) pairs; got {positives} of {len(labels)} targets."
        )
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels, weights = scores[order], labels[order].astype(np.float64), weights[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(labels * weights)[last_of_each_score]
    false_positives = np.cumsum((1.0 - labels) * weights)[last_of_each_score]
    fpr = np.r_[0.0, false_positives / false_positives[-1]]
    tpr = np.r_[0.0, true_positives / true_positives[-1]]
    return fpr, tpr


def eer(scores, labels, weights=None) -> float:
    """Equal error rate of verification trials, as a fraction.

    The point where the false-accept rate equals the false-reject rate, found on the ROC
    polyline (linear interpolation between the two ROC points around the crossing); this
    equals the common ``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)`` on
    scikit-learn's ROC.

    Args:
        scores: float ``[n]`` trial scores (for example cosine similarities); higher = more
            likely the same speaker.
        labels: ``[n]`` 1 for target (same-speaker) trials, 0 otherwise.
        weights: Optional ``[n]`` trial weights (counts), as the speaker bootstrap draws them.

    Returns:
        float in [0, 1] (0.05 = 5% EER).

    Raises:
        ParameterError: mismatched shapes, NaN/Inf scores, labels other than 0/1, or trials of
            one kind only.
    """
    return _eer_on_roc(*_roc(scores, labels, weights))


def _eer_on_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The EER where the ROC polyline ``(fpr, tpr)`` crosses ``fpr = 1 - tpr`` (see :func:`eer`)."""
    gap = (1.0 - tpr) - fpr  # false-reject minus false-accept: falls from 1 to -1 along the ROC
    k = int(np.argmax(gap <= 0))
    if gap[k] == 0:
        return float(fpr[k])
    t = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def min_dcf(scores, labels, *, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Minimum normalised detection cost of verification trials (NIST SRE definition).

    ``DCF(t) = c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target)``, minimised over
    every threshold t and divided by ``min(c_miss * p_target, c_fa * (1 - p_target))`` (the
    cost of always accepting or always rejecting), so 1.0 means no better than a fixed answer.

    Args:
        scores: float ``[n]`` trial scores, higher = same speaker.
        labels: ``[n]`` 1 for target trials, 0 otherwise.
        p_target: Prior of a target trial, in (0, 1).
        c_miss: Cost of a false reject (> 0).
        c_fa: Cost of a false accept (> 0).

    Returns:
        float in [0, 1].

    Raises:
        ParameterError: bad trials (see :func:`eer`) or costs / prior out of range.
    """
    if not 0.0 < p_target < 1.0 or not c_miss > 0 or not c_fa > 0:
        raise ParameterError(
            f"min_dcf needs 0 < p_target < 1 and positive costs; got p_target={p_target}, c_miss={c_miss}, c_fa={c_fa}."
        )
    fpr, tpr = _roc(scores, labels)
    cost = c_miss * (1.0 - tpr) * p_target + c_fa * fpr * (1.0 - p_target)
    return float(cost.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def split_speakers(speakers, *, holdout=0.5, seed: int = 0) -> tuple:
    """Split speakers into disjoint training and scoring sets (deterministic).

    Each speaker's side depends only on a hash of ``seed`` and its name, so verification is
    always scored on voices the model never trained on.

    Args:
        speakers: ``[n]`` speaker labels (repeats allowed: one per clip).
        holdout: Scoring speakers: a fraction in (0, 1) of the distinct speakers (rounded, at
            least 2) or a count (int >= 2).
        seed: Changes the split.

    Returns:
        ``(training_speakers, scoring_speakers)``: two sorted tuples of distinct labels.

    Raises:
        ParameterError: fewer than 2 scoring speakers or no training speaker would remain.
    """
    import hashlib

    names = sorted({str(speaker) for speaker in speakers})
    if isinstance(holdout, (int, np.integer)) and not isinstance(holdout, bool):
        count = int(holdout)
    elif isinstance(holdout, float) and 0.0 < holdout < 1.0:
        count = max(2, int(round(holdout * len(names))))
    else:
        raise ParameterError(f"holdout must be a fraction in (0, 1) or a speaker count, got {holdout!r}.")
    if count < 2 or count >= len(names):
        raise ParameterError(
            f"Holding out {count} of {len(names)} speakers {names} leaves no scoring pair or no training speaker; "
            "speaker verification needs at least 2 scoring speakers and 1 training speaker."
        )
    ranked = sorted(names, key=lambda name: hashlib.md5(f"{seed}:{name}".encode()).hexdigest())
    return tuple(sorted(ranked[count:])), tuple(sorted(ranked[:count]))


def verification_trials(speakers, *, max_trials=None, seed: int = 0) -> tuple:
    """Every pair of clips as a verification trial (or a random subset of them).

    Args:
        speakers: ``[n]`` speaker label of each clip.
        max_trials: Keep at most this many pairs (uniformly drawn); ``None`` keeps all.
        seed: Seeds the draw.

    Returns:
        ``(first, second, labels)``: int arrays ``[m]`` of clip indices (``first < second``) and
        int8 ``[m]`` labels, 1 when both clips have the same speaker.

    Raises:
        ParameterError: fewer than 2 speakers, or no speaker with 2 clips (no target trial).
    """
    speakers = np.asarray([str(speaker) for speaker in speakers])
    names, counts = np.unique(speakers, return_counts=True)
    if len(names) < 2:
        raise ParameterError(
            f"Speaker-verification trials need clips of at least 2 speakers; got {len(names)}: {names.tolist()}."
        )
    if counts.max() < 2:
        raise ParameterError("Speaker-verification trials need a speaker with at least 2 clips (a same-speaker trial).")
    first, second = np.triu_indices(len(speakers), k=1)
    if max_trials is not None and len(first) > max_trials:
        keep = np.sort(np.random.default_rng(seed).choice(len(first), int(max_trials), replace=False))
        first, second = first[keep], second[keep]
    return first, second, (speakers[first] == speakers[second]).astype(np.int8)


def speaker_verification(
    embeddings, speakers, *, p_target: float = 0.01, max_trials=None, seed: int = 0, bootstrap: int = 0
) -> dict:
    """EER and minDCF of cosine scoring over all clip pairs of ``speakers``.

    Args:
        embeddings: float ``[n, E]`` speaker embeddings, one per clip.
        speakers: ``[n]`` speaker labels (all of them unseen in training, for a fair score).
        p_target: Target prior of :func:`min_dcf`.
        max_trials: Cap on the number of pairs (see :func:`verification_trials`).
        seed: Seeds the draw of pairs and the bootstrap.
        bootstrap: Resamples of the speakers (with replacement) for a 95% interval of the EER;
            0: none. Trials between speakers drawn ``a`` and ``b`` times count ``a * b`` times.

    Returns:
        ``{'eer', 'min_dcf', 'trials', 'target_trials', 'speakers', 'clips'}``, plus
        ``eer_ci95`` ``[low, high]`` with ``bootstrap``.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or len(embeddings) != len(speakers):
        raise ParameterError(
            f"embeddings must be [n, E] with one row per speaker label; got {embeddings.shape} for {len(speakers)} labels."
        )
    first, second, labels = verification_trials(speakers, max_trials=max_trials, seed=seed)
    scores = cosine_similarity(embeddings[first], embeddings[second])
    result = {
        "eer": eer(scores, labels),
        "min_dcf": min_dcf(scores, labels, p_target=p_target),
        "trials": int(len(labels)),
        "target_trials": int(labels.sum()),
        "speakers": int(len(set(map(str, speakers)))),
        "clips": int(len(embeddings)),
    }
    if bootstrap:
        result["eer_ci95"] = _speaker_bootstrap(scores, labels, speakers, first, second, bootstrap, seed)
    return result


def _speaker_bootstrap(scores, labels, speakers, first, second, draws: int, seed: int) -> list:
    """2.5th and 97.5th percentiles of the EER over speaker resamples (trial weights = product of draw counts).

    Each draw's EER is :func:`eer` with its weights; the trials are sorted once for all draws
    (960 clips, 460 K trials: 200 draws in seconds instead of a minute).
    """
    names, index = np.unique(np.asarray([str(speaker) for speaker in speakers]), return_inverse=True)
    rng = np.random.default_rng(seed)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")  # the order of _roc
    ranked = scores[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    is_target = np.asarray(labels)[order].astype(np.float64)
    first_speaker, second_speaker = index[np.asarray(first)[order]], index[np.asarray(second)[order]]
    values = []
    for _ in range(int(draws)):
        counts = np.bincount(rng.integers(0, len(names), len(names)), minlength=len(names)).astype(np.float64)
        weights = counts[first_speaker] * counts[second_speaker]
        true_positives = np.cumsum(is_target * weights)[last_of_each_score]
        false_positives = np.cumsum((1.0 - is_target) * weights)[last_of_each_score]
        if true_positives[-1] == 0 or false_positives[-1] == 0:
            continue
        fpr = np.r_[0.0, false_positives / false_positives[-1]]
        values.append(_eer_on_roc(fpr, np.r_[0.0, true_positives / true_positives[-1]]))
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def binomial_ci95(correct: int, total: int) -> list:
    """Wilson 95% interval of an accuracy of ``correct`` of ``total`` (for probes of fewer than ~1,000 trials)."""
    if total <= 0:
        raise ParameterError(f"An interval needs at least one trial; got {total}.")
    z, p = 1.959964, correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [float(max(0.0, centre - half)), float(min(1.0, round(centre + half, 12)))]
