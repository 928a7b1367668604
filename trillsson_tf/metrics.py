"""Metrics over numpy arrays (no TensorFlow): embedding parity and, later, task scores."""
import numpy as np

from trillsson_tf.errors import ParameterError

__all__ = ["cosine_similarity", "parity"]


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
