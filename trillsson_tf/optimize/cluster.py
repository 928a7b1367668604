"""Weight clustering of a chunk network: :func:`apply_clustering`, :func:`strip_clustering`, :func:`cluster_scope`."""

import contextlib

import numpy as np

from trillsson_tf._keras import keras
from trillsson_tf.errors import ParameterError
from trillsson_tf.optimize._common import clone, kernels
from trillsson_tf.optimize._tfmot import clustering_registry, import_tfmot

__all__ = ["MAX_CLUSTERS", "apply_clustering", "strip_clustering", "cluster_scope", "check_clusters"]

MAX_CLUSTERS = 256
"""The most clusters per kernel: int8 weights hold at most 256 distinct values, more clusters change nothing."""


def check_clusters(clusters) -> None:
    """Refuse a cluster count that is not an integer in [2, :data:`MAX_CLUSTERS`] (:class:`ParameterError`)."""
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or not 2 <= clusters <= MAX_CLUSTERS:
        raise ParameterError(f"cluster must be an integer number of clusters in [2, {MAX_CLUSTERS}], got {clusters!r}.")


def apply_clustering(network, *, clusters: int, preserve_sparsity: bool = False):
    """Wrap the kernels of a chunk network for weight clustering (k-means++ centroids).

    Args:
        network: Keras chunk network ``[n, 195, 80, 1]`` -> ``[n, D]``.
        clusters: Distinct values per kernel after training, 2-256.
        preserve_sparsity: Keep the zeros of a pruned network (sparsity-preserving clustering).

    Returns:
        A new model with clustering wrappers on Conv2D and Dense kernels (tfmot does not
        cluster depthwise kernels); train it with :func:`~trillsson_tf.optimize.recovery.recover`,
        then :func:`strip_clustering`. Load a saved one inside :func:`cluster_scope`.
    """
    tfmot = import_tfmot()
    registry = clustering_registry()

    check_clusters(clusters)
    init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS

    def wrap(layer):
        # A kernel with fewer weights than clusters is already "clustered"; k-means cannot split it further.
        if registry.supports(layer) and any(w.shape.num_elements() > clusters for w in kernels(layer, ("kernel",))):
            return tfmot.clustering.keras.cluster_weights(
                layer,
                number_of_clusters=int(clusters),
                cluster_centroids_init=init,
                preserve_sparsity=preserve_sparsity,
            )
        return layer

    return keras.models.clone_model(clone(network), clone_function=wrap)


def strip_clustering(network):
    """Remove the clustering wrappers (keeping the clustered values); the inverse of :func:`apply_clustering`."""
    return import_tfmot().clustering.keras.strip_clustering(network)


@contextlib.contextmanager
def cluster_scope():
    """A Keras custom-object scope that loads clustering-wrapped models (tfmot's ``cluster_scope``).

    >>> with cluster_scope():
    ...     model = keras.models.load_model("clustered.keras")
    """
    with import_tfmot().clustering.keras.cluster_scope():
        yield
