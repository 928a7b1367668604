"""TensorFlow-free inference on ``.tflite`` students, with the TF Hub call contract.

>>> from trillsson_tf.runtime import TFLiteModel
>>> model = TFLiteModel("t1_int8.tflite", num_threads=1)
>>> model(audio)["embedding"]        # float32 [samples] or [batch, samples] at 16 kHz -> [batch, D]
>>> model.embed_file("clip.flac")    # -> float32 [D]
>>> model.chunk_vectors(audio, hop_s=0.5)   # {'embedding': [batch, chunks, D], 'start_s': [chunks]}
>>> stream = model.open_stream(hop_s=0.5)   # live audio: stream.feed(block) -> (start_s, vectors)

Modules: card, pool, compiled, feeders, inputs, model, stream, files. Imports numpy, never TensorFlow.
"""

from trillsson_tf.errors import renamed_attribute
from trillsson_tf.runtime.card import read_model_card
from trillsson_tf.runtime.feeders import FEEDERS
from trillsson_tf.runtime.files import OUTPUT_FORMATS, audio_files, embed_to_file
from trillsson_tf.runtime.model import TFLiteModel
from trillsson_tf.runtime.stream import ChunkStream

__all__ = [
    "FEEDERS",
    "OUTPUT_FORMATS",
    "ChunkStream",
    "TFLiteModel",
    "audio_files",
    "embed_to_file",
    "read_model_card",
]

TFLiteModel.__module__ = ChunkStream.__module__ = __name__  # documented, and reported, where they are imported from

_EMBEDDERS = FEEDERS
"""The old name of :data:`FEEDERS` (input name -> how it is fed), kept for code that reads it."""

_RENAMED = {"FrameStream": "ChunkStream"}


def __getattr__(name):  # the old names of _RENAMED, deprecated for one release
    return renamed_attribute(__name__, globals(), _RENAMED, name)
