"""Pruning, weight clustering and quantization-aware training of the per-chunk network, with label-free
recovery; :func:`optimize_export` runs them on an export (``trillsson-tf optimize``).

Every verb works on the chunk network (log-mel patch ``[n, 195, 80, 1]`` -> ``[n, D]``); the
frontend stays float and outside. Each technique applies, strips and scopes, tfmot style:
``apply_*`` returns a new model and leaves its input untouched, ``strip_*`` removes the training
wrappers, ``*_scope()`` loads a saved wrapped model.

- :mod:`~trillsson_tf.optimize.prune`: :func:`apply_pruning`, :func:`strip_pruning`,
  :func:`pruning_scope`, :func:`sparsity_report` (depthwise kernels and block-sparse 1x1
  convolutions included).
- :mod:`~trillsson_tf.optimize.cluster`: :func:`apply_clustering`, :func:`strip_clustering`,
  :func:`cluster_scope`.
- :mod:`~trillsson_tf.optimize.quantize`: :func:`apply_qat`, :func:`strip_qat`,
  :func:`quantize_scope`, :func:`fold_depthwise_batch_norms`, range calibration, the layers
  quantized at their output only (:data:`OUTPUT_ONLY_QUANTIZE`).
- :mod:`~trillsson_tf.optimize.recovery`: :func:`recover` (train the optimized network to
  reproduce the unoptimized one on real audio patches; no labels) and :func:`rewrap`.
- :mod:`~trillsson_tf.optimize.pipeline`: :func:`optimize_export`, its stages, report and resume.
- :mod:`~trillsson_tf.optimize._tfmot`: the only module that touches tfmot internals (private
  modules, a patch), checked against the pinned tfmot version.

Importing this package does not import tfmot (importing tfmot sets a Keras environment
variable): the functions import it when called.
"""
from trillsson_tf.optimize.cluster import apply_clustering, cluster_scope, strip_clustering
from trillsson_tf.optimize.pipeline import (
    QAT_LEARNING_RATE,
    RECOVERY_LEARNING_RATE,
    REPORT_FILE,
    STAGES,
    optimize_export,
)
from trillsson_tf.optimize.prune import SCHEDULES, apply_pruning, pruning_scope, sparsity_report, strip_pruning
from trillsson_tf.optimize.quantize import (
    OUTPUT_ONLY_QUANTIZE,
    apply_qat,
    fold_depthwise_batch_norms,
    quantize_scope,
    strip_qat,
)
from trillsson_tf.optimize.recovery import recover, rewrap

__all__ = [
    "SCHEDULES",
    "STAGES",
    "OUTPUT_ONLY_QUANTIZE",
    "RECOVERY_LEARNING_RATE",
    "QAT_LEARNING_RATE",
    "REPORT_FILE",
    "apply_pruning",
    "strip_pruning",
    "pruning_scope",
    "sparsity_report",
    "apply_clustering",
    "strip_clustering",
    "cluster_scope",
    "apply_qat",
    "strip_qat",
    "fold_depthwise_batch_norms",
    "quantize_scope",
    "recover",
    "rewrap",
    "optimize_export",
]
