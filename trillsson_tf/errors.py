"""The toolkit's exception family."""


class TrillssonError(Exception):
    """Base class of every error raised on purpose by trillsson_tf."""


class ParameterError(TrillssonError, ValueError):
    """A bad argument or input value: wrong choice, shape, range or content."""


class AudioTypeError(TrillssonError, TypeError):
    """Audio of the wrong type or dtype (for example int16 samples where float32 is expected)."""


class UnsupportedLayerError(TrillssonError, ValueError):
    """A layer that an optimization or conversion step cannot handle."""


class ConversionError(TrillssonError, RuntimeError):
    """A conversion (to SavedModel, .tflite or a C array) that failed or was refused."""


class WeightPortingError(TrillssonError, ValueError):
    """Variables of a source model that could not be placed into a target model."""
