"""Value checks shared by the configs and the library (TensorFlow-free); each raises a one-line ParameterError."""

import numbers

from trillsson_tf.errors import ParameterError

__all__ = ["choice", "fraction", "non_negative", "non_negative_int", "optional", "positive", "positive_int"]


def positive_int(name: str, value) -> None:
    """An int >= 1 (``bool`` refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}.")


def non_negative_int(name: str, value) -> None:
    """An int >= 0 (``bool`` refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ParameterError(f"{name} must be an integer >= 0, got {value!r}.")


def positive(name: str, value) -> None:
    """A number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ParameterError(f"{name} must be a number > 0, got {value!r}.")


def non_negative(name: str, value) -> None:
    """A number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ParameterError(f"{name} must be a number >= 0, got {value!r}.")


def fraction(name: str, value) -> None:
    """A number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ParameterError(f"{name} must be in [0, 1), got {value!r}.")


def choice(*choices):
    """A check that ``value`` is one of ``choices``."""

    def check(name: str, value) -> None:
        if value not in choices:
            raise ParameterError(f"Unknown {name} {value!r}. Expected one of: {list(choices)}.")

    return check


def optional(check):
    """``check``, or ``None`` accepted."""

    def check_or_none(name: str, value) -> None:
        if value is not None:
            check(name, value)

    return check_or_none
