"""Tensor dtypes by name and the raw tensor record: what reading a manifest or an object header needs.

Nothing here imports torch or numpy, so commands that only list, verify or collect objects (``rlreg
gc --dry-run``) start without them; ``storage.tensors`` converts to and from torch and numpy.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from storage.errors import InvalidTensorNameError

# safetensors' dtype names (the format's own): the manifest's (torch's) name and the item size.
_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U64": ("uint64", 8),
    "U32": ("uint32", 4),
    "U16": ("uint16", 2),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
}
FORMAT_DTYPES = frozenset(_DTYPES)
_FORMAT_NAME = {manifest: fmt for fmt, (manifest, _) in _DTYPES.items()}


class RawTensor(NamedTuple):
    """One tensor's dtype (safetensors name), shape and C-order little-endian bytes.

    A named tuple: made for every tensor of every snapshot, it is built three times faster than a
    frozen dataclass (0.26 against 0.93 us).
    """

    dtype: str
    shape: tuple[int, ...]
    data: memoryview  # 1-d, format "B"
    keepalive: Any = None

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    @property
    def itemsize(self) -> int:
        return itemsize(self.dtype)


def itemsize(dtype: str) -> int:
    """Bytes per element of a safetensors dtype name."""
    return _DTYPES[dtype][1]


def manifest_dtype(dtype: str) -> str:
    """The manifest's (torch) name of a safetensors dtype name: ``F32`` -> ``float32``."""
    return _DTYPES[dtype][0]


def format_dtype(name: str) -> str:
    """The safetensors dtype name of a manifest dtype name, or ``KeyError``."""
    return _FORMAT_NAME[name]


def is_format_dtype(dtype: object) -> bool:
    """Whether ``dtype`` is a safetensors dtype name this package reads."""
    return isinstance(dtype, str) and dtype in _DTYPES


def check_name(name: object) -> str:
    """Return ``name`` if it is a non-empty string, else raise ``InvalidTensorNameError``."""
    if not isinstance(name, str):
        raise InvalidTensorNameError(
            f"tensor name {name!r} is a {type(name).__name__}, not a str"
        )
    if not name:
        raise InvalidTensorNameError("tensor name '' is empty")
    return name
