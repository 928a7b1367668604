"""PyTorch ``.pt`` state dicts read into numpy without torch, refusing anything but tensors and containers."""

import collections
import os
import pickle
import zipfile

import numpy as np

from trillsson_tf.errors import ParameterError

__all__ = ["read_state_dict"]

# Storage classes of the zip format (torch >= 1.6) and the numpy dtype of their raw bytes (little-endian).
_STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": None,  # no numpy dtype; refused below with a clear message
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _Storage:
    def __init__(self, dtype: str, key: str):
        self.dtype, self.key = dtype, key


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return ("tensor", storage, int(offset), tuple(size), tuple(stride))


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


class _RestrictedUnpickler(pickle.Unpickler):
    """Knows only the globals a state dict needs; any other global is refused, never imported."""

    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("collections", "OrderedDict"): _ordered_dict,
    }

    def __init__(self, handle, path):
        super().__init__(handle)
        self._path = path

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise ParameterError(
            f"{self._path!r} asks to load {module}.{name}; only tensors and plain containers are read "
            "(arbitrary pickled objects are never unpickled)."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise ParameterError(f"{self._path!r} has a persistent id {pid!r} that is not a tensor storage.")
        kind = pid[1] if isinstance(pid[1], str) else getattr(pid[1], "__name__", str(pid[1]))
        dtype = _STORAGE_DTYPES.get(kind)
        if dtype is None:
            raise ParameterError(f"{self._path!r} holds a {kind} tensor, which numpy cannot represent.")
        return _Storage(dtype, str(pid[2]))


def _materialise(value, archive, prefix, cache):
    if isinstance(value, tuple) and len(value) == 5 and value[0] == "tensor":
        _, storage, offset, size, stride = value
        if storage.key not in cache:
            cache[storage.key] = np.frombuffer(archive.read(f"{prefix}/data/{storage.key}"), dtype=storage.dtype)
        flat = cache[storage.key]
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(step * itemsize for step in stride), writeable=False
        )
        return np.array(view)
    if isinstance(value, dict):
        return collections.OrderedDict((key, _materialise(item, archive, prefix, cache)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_materialise(item, archive, prefix, cache) for item in value)
    return value


def read_state_dict(path) -> dict:
    """Arrays of a ``.pt`` file saved by ``torch.save`` (zip format).

    Returns:
        ``{name: np.ndarray}`` in the file's order (nested containers kept as they are).

    Raises:
        ParameterError: not a zip-format ``.pt``, or a pickle that asks for any global but
            tensor rebuilding, storages and ``OrderedDict``.
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise ParameterError(f"{path!r} is not a zip-format PyTorch file (torch.save since 1.6).")
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ParameterError(f"{path!r} has {len(pickles)} data.pkl records; expected one.")
        prefix = pickles[0][: -len("/data.pkl")]
        with archive.open(pickles[0]) as handle:
            try:
                raw = _RestrictedUnpickler(handle, path).load()
            except ParameterError:
                raise
            except Exception as error:  # a corrupt pickle: name the file, not the unpickler's internals
                raise ParameterError(f"{path!r} could not be read as a state dict: {error}") from None
        try:
            return _materialise(raw, archive, prefix, {})
        except (KeyError, ValueError) as error:
            raise ParameterError(f"{path!r} has a missing or short tensor storage: {error}") from None
