"""CTranslate2 ``model.bin`` files, read and written with numpy only (TensorFlow-free).

Layout (little-endian, CTranslate2's ``model_spec.py``): u32 binary version, spec name, u32
spec revision, u32 variable count; per variable: name, u8 rank, u32 dims, u8 dtype, u32 byte
count, raw bytes; then u32 alias count and (alias, variable) name pairs. A string is a u16
byte count and bytes ending in NUL. Binary versions 1-3 lack the spec, aliases or dtype
fields; they are read as CTranslate2 reads them. Arrays keep their stored dtype (float16
stays float16: ``astype(np.float32)`` is exact), except bfloat16, widened to float32 (exact).
"""

import os
import struct

import numpy as np

from trillsson_tf.errors import ParameterError

__all__ = ["MAX_BINARY_VERSION", "read_ctranslate2", "write_ctranslate2"]

MAX_BINARY_VERSION = 6
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}  # 5: bfloat16 bits
_CODES = {
    np.dtype(np.float32): 0,
    np.dtype(np.int8): 1,
    np.dtype(np.int16): 2,
    np.dtype(np.int32): 3,
    np.dtype(np.float16): 4,
}
_ITEM_SIZE_DTYPES = {4: np.float32, 2: np.int16, 1: np.int8}  # binary versions 1-3 stored item sizes
_BFLOAT16 = 5
_MAX_RANK = 8


class _Cursor:
    """Reads little-endian fields from ``data``; a short read or a bad field raises naming the file."""

    def __init__(self, data: bytes, path: str):
        self.data, self.path, self.offset = data, path, 0

    def fail(self, reason: str):
        raise ParameterError(f"{self.path!r} is not a readable CTranslate2 model.bin: {reason}.")

    def take(self, size: int) -> int:
        start = self.offset
        if start + size > len(self.data):
            raise ParameterError(
                f"CTranslate2 file {self.path!r} is truncated: {size} bytes wanted at offset {start}, "
                f"{len(self.data) - start} left (file size {len(self.data)})."
            )
        self.offset += size
        return start

    def unpack(self, fmt: str):
        return struct.unpack_from("<" + fmt, self.data, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        size = self.unpack("H")
        raw = self.data[self.take(size) : self.offset]
        if not raw.endswith(b"\0"):
            self.fail(f"string at offset {self.offset - size} does not end in NUL")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"string at offset {self.offset - size} is not UTF-8")


def _variable(cursor: _Cursor, version: int):
    """One variable's name, dtype, shape and byte offset; the cursor moves past its bytes."""
    name = cursor.string()
    rank = cursor.unpack("B")
    if rank > _MAX_RANK:
        cursor.fail(f"variable {name!r} has rank {rank}")
    shape = tuple(cursor.unpack("I") for _ in range(rank))
    if version >= 4:
        code = cursor.unpack("B")
        if code not in _DTYPES:
            cursor.fail(f"variable {name!r} has unknown dtype code {code}")
        dtype, size = _DTYPES[code], cursor.unpack("I")
    else:
        item = cursor.unpack("B")
        if item not in _ITEM_SIZE_DTYPES:
            cursor.fail(f"variable {name!r} has item size {item}")
        code, dtype = None, _ITEM_SIZE_DTYPES[item]
        size = cursor.unpack("I") * item
    if size != int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize:
        cursor.fail(f"variable {name!r} of shape {list(shape)} holds {size} bytes")
    return name, dtype, code == _BFLOAT16, shape, cursor.take(size)


def read_ctranslate2(path, *, prefix: str = "", spec=None) -> dict:
    """The variables of a CTranslate2 ``model.bin``.

    Args:
        path: The ``model.bin`` file.
        prefix: Keep only variables (and aliases) whose name starts with this (``"encoder/"``).
        spec: Expected spec name (``"WhisperSpec"``), or ``None`` to accept any.

    Returns:
        ``{name: numpy array}`` in file order, aliases last (an alias is the same array object).

    Raises:
        ParameterError: missing, truncated or foreign file, or another spec (names the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ParameterError(f"CTranslate2 file not found: {path!r}.")
    with open(path, "rb") as handle:
        cursor = _Cursor(handle.read(), path)
    version = cursor.unpack("I")
    if not 1 <= version <= MAX_BINARY_VERSION:
        cursor.fail(f"binary version {version}, expected 1 to {MAX_BINARY_VERSION}")
    name = cursor.string() if version >= 2 else ""
    if version >= 2:
        cursor.unpack("I")  # spec revision: the layout does not depend on it
    if spec is not None and name != spec:
        raise ParameterError(f"CTranslate2 file {path!r} holds a {name or 'unnamed'!r} model, not a {spec!r} model.")
    variables = {}
    for _ in range(cursor.unpack("I")):
        key, dtype, bfloat16, shape, offset = _variable(cursor, version)
        if key.startswith(prefix):
            array = np.frombuffer(cursor.data, dtype, int(np.prod(shape, dtype=np.int64)), offset).reshape(shape)
            variables[key] = (array.astype(np.uint32) << 16).view(np.float32) if bfloat16 else array.copy()
    for _ in range(cursor.unpack("I") if version >= 3 else 0):
        alias, target = cursor.string(), cursor.string()
        if alias.startswith(prefix) and target in variables:
            variables[alias] = variables[target]
    if cursor.offset != len(cursor.data):
        cursor.fail(f"{len(cursor.data) - cursor.offset} unexpected bytes after the aliases")
    return variables


def _string(text: str) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ctranslate2(path, variables: dict, *, spec: str, revision: int, aliases=None) -> None:
    """Write ``variables`` (``{name: array}`` of float32/16, int8/16/32) as a binary-version-6 ``model.bin``.

    ``aliases`` is ``{alias: variable name}``. Used to make modified copies of a model
    (``benchmarks/parity_whisper.py``) and test files.
    """
    parts = [struct.pack("<I", MAX_BINARY_VERSION), _string(spec), struct.pack("<II", revision, len(variables))]
    for name, value in variables.items():
        array = np.asarray(value, order="C")  # not ascontiguousarray: it turns scalars into rank 1
        if array.dtype not in _CODES:
            raise ParameterError(f"Cannot write variable {name!r} of dtype {array.dtype} to {os.fspath(path)!r}.")
        parts += [_string(name), struct.pack(f"<B{array.ndim}I", array.ndim, *array.shape)]
        parts += [
            struct.pack("<BI", _CODES[array.dtype], array.nbytes),
            array.astype(array.dtype.newbyteorder("<")).tobytes(),
        ]
    aliases = dict(aliases or {})
    parts.append(struct.pack("<I", len(aliases)))
    parts += [_string(alias) + _string(target) for alias, target in aliases.items()]
    with open(path, "wb") as handle:
        handle.write(b"".join(parts))
