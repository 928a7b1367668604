"""The one import point for TensorFlow and Keras 2 (tf_keras).

tfmot and ``hub.KerasLayer`` only work with Keras 2 models. Importing tfmot sets
``TF_USE_LEGACY_KERAS=1`` as a side effect; setting it here, before TensorFlow is first
imported, makes ``tf.keras`` mean ``tf_keras`` in every module of the process, whether or
not tfmot is imported later.
"""

import os
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

# tensorflow-hub 0.16.1 imports pkg_resources (pinned setuptools keeps it); its deprecation
# warning is not actionable for our users.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

__all__ = ["tf", "keras"]
