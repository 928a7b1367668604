"""TensorFlow-free inference on ``.tflite`` students, with the TF Hub call contract (:mod:`.model`)."""
from trillsson_tf.runtime import model as _model
from trillsson_tf.runtime.model import (
    OUTPUT_FORMATS,
    FrameStream,
    TFLiteModel,
    audio_files,
    embed_to_file,
    read_model_card,
)

__all__ = ["OUTPUT_FORMATS", "FrameStream", "TFLiteModel", "audio_files", "embed_to_file", "read_model_card"]

TFLiteModel.__module__ = FrameStream.__module__ = __name__  # where they are documented and imported from
_EMBEDDERS = _model._EMBEDDERS
