"""The toolkit's exception family, and the DeprecationWarning of a renamed name."""

import warnings


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


def deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """A DeprecationWarning: ``old`` (a dotted name, or ``function(keyword=)``) is now ``new``.

    ``stacklevel`` 3 points at the caller of the function that calls this one.
    """
    message = f"'{old}' is now '{new}'; the old name goes in the next release."
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)


def renamed_keywords(where: str, given: dict, renames: dict) -> dict:
    """New name -> value of the old keyword arguments ``given`` to ``where`` (``renames``: old -> new).

    Each old keyword warns (:func:`deprecated`, pointing at the caller of ``where``); another keyword
    is a TypeError, as Python's own.
    """
    values = {}
    for key, value in given.items():
        if key not in renames:
            raise TypeError(f"{where.rsplit('.', 1)[-1]}() got an unexpected keyword argument {key!r}")
        deprecated(f"{where}({key}=)", f"{where}({renames[key]}=)", stacklevel=4)
        values[renames[key]] = value
    return values


def renamed_attribute(module: str, namespace: dict, renames: dict, name: str):
    """A module ``__getattr__``: the value of the new name of ``name`` (``renames``: old -> new), warning.

    Raises:
        AttributeError: ``name`` is not an old name of ``renames``.
    """
    if name not in renames:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    deprecated(f"{module}.{name}", f"{module}.{renames[name]}", stacklevel=4)
    return namespace[renames[name]]
