"""metrics.ccc: a hand-computed example, numpy for random data, constant predictions, bad input."""

import numpy as np
import pytest

from trillsson_tf.errors import ParameterError
from trillsson_tf.metrics import ccc


def test_ccc_of_a_hand_computed_example():
    # mean 2 vs 3, variances 2/3 each, covariance 2/3: 2 (2/3) / (2/3 + 2/3 + 1) = 4/7.
    assert ccc([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == pytest.approx(4.0 / 7.0)
    assert ccc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert ccc([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_ccc_matches_numpy_per_dimension_over_the_whole_set():
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(200, 3))
    predictions = 0.8 * targets + rng.normal(scale=0.5, size=(200, 3)) + [0.0, 0.3, -0.2]
    values = ccc(predictions, targets)
    assert values.shape == (3,)
    for k in range(3):
        x, y = predictions[:, k], targets[:, k]
        covariance = np.cov(x, y, ddof=0)[0, 1]
        expected = 2 * covariance / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
        assert values[k] == pytest.approx(expected, rel=1e-12)
    assert values[1] < np.corrcoef(predictions[:, 1], targets[:, 1])[0, 1]  # a shifted mean costs concordance


def test_constant_predictions_give_a_defined_value():
    targets = np.array([[0.1, 1.0], [0.5, 1.0], [0.9, 1.0]])
    values = ccc(np.zeros((3, 2)) + [0.0, 1.0], targets)
    assert values.tolist() == [0.0, 1.0]  # no covariance; identical constants agree perfectly
    assert not np.any(np.isnan(ccc(np.ones((4, 2)), np.zeros((4, 2)))))


def test_bad_input_is_refused():
    with pytest.raises(ParameterError, match="one shape"):
        ccc(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ParameterError, match="at least 2 rows"):
        ccc([1.0], [1.0])
    with pytest.raises(ParameterError, match="NaN or Inf"):
        ccc([1.0, np.nan], [1.0, 2.0])
