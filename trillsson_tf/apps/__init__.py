"""Applications built on the library: the demo job, the Android assets, figures, the models table.

- :mod:`trillsson_tf.apps.demo`: ``trillsson-tf demo`` (teacher -> distill -> evaluate -> convert -> runtime);
- :mod:`trillsson_tf.apps.android`: ``trillsson-tf android-assets`` (int8 models, metadata, golden outputs);
- :mod:`trillsson_tf.apps.plots`: the figures of the notebooks and the benchmark report;
- :mod:`trillsson_tf.apps.models_table`: ``trillsson-tf models`` (parameters, size, GFLOPs per student).

The library never imports from here. The test-speed switch ``TRILLSSON_FAST=1`` is read here only
(:func:`smoke_steps`), by the command line; the apps take their sizes as arguments.
"""

import os

__all__ = ["FAST_ENV", "smoke_steps"]

FAST_ENV = "TRILLSSON_FAST"
"""Environment variable that asks for smoke-run sizes (``1``); the tests and notebooks' test runs set it."""


def smoke_steps(full: int, smoke: int) -> int:
    """Training steps for an app: ``smoke`` when ``TRILLSSON_FAST=1``, else ``full``."""
    return smoke if os.environ.get(FAST_ENV) == "1" else full
