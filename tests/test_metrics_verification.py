"""Keyword and speaker-verification metrics: EER / minDCF against scikit-learn, trials, speaker splits."""

import numpy as np
import pytest

from trillsson_tf.errors import ParameterError
from trillsson_tf.metrics import accuracy, eer, min_dcf, speaker_verification, split_speakers, verification_trials


def _sklearn_eer(scores, labels):
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


def _sklearn_min_dcf(scores, labels, p_target):
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return np.min(p_target * (1 - tpr) + (1 - p_target) * fpr) / min(p_target, 1 - p_target)


def test_known_score_sets():
    assert eer([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 0.0
    assert eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 1.0
    # One target below one non-target out of 2 + 2: the ROC crosses the EER line at 0.5.
    assert eer([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.5)
    # Four of each; targets 0.9, 0.8, 0.6, 0.3 and non-targets 0.7, 0.4, 0.2, 0.1: one miss and one false accept at 0.5.
    scores, labels = [0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1], [1, 1, 1, 1, 0, 0, 0, 0]
    assert eer(scores, labels) == pytest.approx(0.25)
    assert min_dcf(scores, labels, p_target=0.5) == pytest.approx(0.5)  # (0.25 + 0.25) / 2 / 0.5
    assert min_dcf([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_eer_and_min_dcf_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400 + 300 * seed)
    scores = rng.normal(size=len(labels)) + labels * (0.5 + seed / 2)
    if seed % 2:
        scores = np.round(scores, 1)  # ties: many scores share a threshold
    assert abs(eer(scores, labels) - _sklearn_eer(scores, labels)) < 1e-3
    for p_target in (0.01, 0.05):
        assert abs(min_dcf(scores, labels, p_target=p_target) - _sklearn_min_dcf(scores, labels, p_target)) < 1e-3


def test_accuracy_takes_labels_or_scores():
    assert accuracy(["a", "b", "b"], ["a", "b", "a"]) == pytest.approx(2 / 3)
    assert accuracy(np.array([[0.1, 0.9], [2.0, 1.0]]), [1, 1]) == 0.5
    with pytest.raises(ParameterError, match="accuracy needs"):
        accuracy([1, 2], [1])


def test_trials_and_speaker_split():
    first, second, labels = verification_trials(["a", "a", "b", "b", "b"])
    assert len(first) == 10 and labels.sum() == 1 + 3
    assert np.all(first < second)
    first, _, _ = verification_trials(["a", "a", "b", "b", "b"], max_trials=4, seed=1)
    assert len(first) == 4
    speakers = [f"s{i}" for i in range(10)] * 3
    training, scoring = split_speakers(speakers, holdout=0.4, seed=3)
    assert len(scoring) == 4 and len(training) == 6 and not set(training) & set(scoring)
    assert split_speakers(speakers, holdout=0.4, seed=3) == (training, scoring)  # deterministic
    embeddings = np.repeat(np.eye(3), 4, axis=0) + 0.01 * np.random.default_rng(0).normal(size=(12, 3))
    result = speaker_verification(embeddings, np.repeat(["x", "y", "z"], 4))
    assert result["eer"] == 0.0 and result["trials"] == 66 and result["target_trials"] == 18 and result["speakers"] == 3


def test_bad_trials_are_refused():
    with pytest.raises(ParameterError, match="at least 2 speakers; got 1"):
        verification_trials(["a", "a", "a"])
    with pytest.raises(ParameterError, match="a speaker with at least 2 clips"):
        verification_trials(["a", "b", "c"])
    with pytest.raises(ParameterError, match="at least 2 scoring speakers and 1 training speaker"):
        split_speakers(["a", "b"], holdout=2)
    with pytest.raises(ParameterError, match="both target"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ParameterError, match="NaN"):
        eer([0.1, np.nan], [1, 0])
    with pytest.raises(ParameterError, match="p_target"):
        min_dcf([0.1, 0.2], [1, 0], p_target=1.5)


def test_weighted_eer_equals_repeated_trials():
    rng = np.random.default_rng(3)
    scores, labels = rng.normal(size=200), (rng.uniform(size=200) < 0.3).astype(int)
    scores[labels == 1] += 1.0
    weights = rng.integers(0, 4, 200)
    repeated = eer(np.repeat(scores, weights), np.repeat(labels, weights))
    assert eer(scores, labels, weights) == pytest.approx(repeated, abs=1e-12)


def test_speaker_bootstrap_interval():
    """The 95% interval holds the point EER, narrows with more speakers, and repeats with the seed."""
    from trillsson_tf.metrics import speaker_verification

    def embeddings(speakers, rng):
        centres = rng.normal(size=(speakers, 16))
        labels = np.repeat(np.arange(speakers), 4)
        return centres[labels] + rng.normal(scale=1.2, size=(len(labels), 16)), labels

    small = speaker_verification(*embeddings(10, np.random.default_rng(0)), bootstrap=200)
    large = speaker_verification(*embeddings(80, np.random.default_rng(0)), bootstrap=200)
    for result in (small, large):
        low, high = result["eer_ci95"]
        assert low <= result["eer"] <= high
    assert np.diff(large["eer_ci95"])[0] < np.diff(small["eer_ci95"])[0]
    again = speaker_verification(*embeddings(10, np.random.default_rng(0)), bootstrap=200)
    assert again["eer_ci95"] == small["eer_ci95"]


def test_speaker_bootstrap_sorted_once_equals_weighted_eer():
    """Each draw of the bootstrap (trials sorted once) gives exactly eer() with that draw's weights."""
    from trillsson_tf.metrics import _speaker_bootstrap, eer, verification_trials

    rng = np.random.default_rng(3)
    speakers = np.repeat(np.arange(7), 5)
    vectors = rng.normal(size=(7, 8))[speakers] + rng.normal(scale=1.5, size=(len(speakers), 8))
    first, second, labels = verification_trials(speakers)
    scores = np.round(np.sum(vectors[first] * vectors[second], axis=1), 1)  # rounded: many tied scores
    draws = np.random.default_rng(11)
    reference = []
    for _ in range(50):
        counts = np.bincount(draws.integers(0, 7, 7), minlength=7).astype(np.float64)
        weights = counts[speakers[first]] * counts[speakers[second]]
        if (weights * labels).sum() and (weights * (1 - labels)).sum():
            reference.append(eer(scores, labels, weights))
    expected = np.percentile(reference, [2.5, 97.5])
    np.testing.assert_allclose(
        _speaker_bootstrap(scores, labels, speakers, first, second, 50, 11), expected, atol=1e-12
    )


def test_binomial_interval():
    from trillsson_tf.metrics import binomial_ci95

    assert binomial_ci95(50, 100) == pytest.approx([0.4038, 0.5962], abs=1e-4)
    assert binomial_ci95(10, 10)[1] == 1.0 and binomial_ci95(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    with pytest.raises(ParameterError):
        binomial_ci95(0, 0)
