"""Pruning, weight clustering and quantization-aware training of the per-chunk network, with label-free
recovery; :func:`optimize_export` runs them on an export (``trillsson-tf optimize``).

Every verb works on the chunk network (log-mel patch ``[n, 195, 80, 1]`` -> ``[n, D]``); the frontend
stays float and outside. tfmot style: ``apply_*`` returns a new model, ``strip_*`` removes the training
wrappers, ``*_scope()`` loads a saved wrapped model. Modules: :mod:`~trillsson_tf.optimize.prune`,
:mod:`~trillsson_tf.optimize.cluster`, :mod:`~trillsson_tf.optimize.quantize`, :mod:`~trillsson_tf.optimize.int4`,
:mod:`~trillsson_tf.optimize.recovery` (:func:`recover`, :func:`rewrap`),
:mod:`~trillsson_tf.optimize.pipeline` and :mod:`~trillsson_tf.optimize._tfmot` (the only door to
tfmot internals). Importing this package does not import tfmot (it sets a Keras environment variable).
"""

from trillsson_tf.optimize.cluster import apply_clustering, cluster_scope, strip_clustering
from trillsson_tf.optimize.int4 import apply_int4_qat, strip_int4_qat
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
    "apply_int4_qat",
    "strip_int4_qat",
    "fold_depthwise_batch_norms",
    "quantize_scope",
    "recover",
    "rewrap",
    "optimize_export",
]
