"""Tensors and numpy arrays as (dtype, shape, raw little-endian bytes), and back, without copies."""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import numpy as np
import torch

from storage.dtypes import (  # noqa: F401  (re-exported: the torch-free half of this module)
    _DTYPES, FORMAT_DTYPES, RawTensor, check_name, format_dtype, is_format_dtype, itemsize, manifest_dtype,
)
from storage.errors import UnsupportedDtypeError
from storage.safetensors_format import DATA_ALIGNMENT

_TORCH_DTYPES: dict[str, torch.dtype] = {fmt: getattr(torch, name) for fmt, (name, _) in _DTYPES.items()}
_NAME_OF_TORCH = {v: k for k, v in _TORCH_DTYPES.items()}
_EMPTY = memoryview(b"")
_NUMPY_LACKS = {"BF16", "F8_E4M3", "F8_E5M2"}
_NAME_OF_NUMPY = {np.dtype(name): fmt for fmt, (name, _) in _DTYPES.items() if fmt not in _NUMPY_LACKS}


HOLD_GIL_BELOW = 1 << 20  # bytes: a smaller copy keeps the GIL (copy_bytes)


def _memmove_holding_gil() -> Any:
    """libc's ``memmove`` called without releasing the GIL (``ctypes.PyDLL``), or ``ctypes.memmove``."""
    try:
        fn = ctypes.PyDLL(None).memmove
    except (OSError, AttributeError, TypeError):  # pragma: no cover (no process-wide symbol table)
        return ctypes.memmove
    fn.restype, fn.argtypes = ctypes.c_void_p, (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    return fn


_MEMMOVE_GIL = _memmove_holding_gil()


def copy_bytes(dst: int, src: int, n: int) -> None:
    """``memmove(dst, src, n)`` between addresses; one under ``HOLD_GIL_BELOW`` keeps the GIL.

    ``ctypes.memmove`` releases the GIL and takes it back for every call: copying 50 tensors of
    20 KB that way took 1.1-1.8 ms after file writes (single copies stalled 0.2-1 ms), 0.3 ms holding
    it. A large copy still lets other threads run.
    """
    (_MEMMOVE_GIL if n < HOLD_GIL_BELOW else ctypes.memmove)(dst, src, n)


def dtype_name(dtype: torch.dtype) -> str | None:
    """The safetensors dtype name of a torch dtype (``torch.float32`` -> ``F32``), ``None`` if unsupported."""
    return _NAME_OF_TORCH.get(dtype)


def to_raw(name: str, value: object) -> RawTensor:
    """The raw bytes of a torch tensor or numpy array (a ``RawTensor`` as it is), copying only if not C-contiguous."""
    if isinstance(value, RawTensor):
        return value
    if isinstance(value, torch.Tensor):
        return _torch_to_raw(name, value)
    if isinstance(value, np.ndarray | np.generic):
        return _numpy_to_raw(name, np.asarray(value))
    raise UnsupportedDtypeError(
        f"tensor {name!r}: a {type(value).__module__}.{type(value).__qualname__} is not a "
        "torch.Tensor or numpy.ndarray"
    )


def _torch_to_raw(name: str, t: torch.Tensor) -> RawTensor:
    if t.layout is not torch.strided:
        raise UnsupportedDtypeError(f"tensor {name!r}: layout {t.layout} is not supported (only strided)")
    dtype = _NAME_OF_TORCH.get(t.dtype)
    if dtype is None:
        raise UnsupportedDtypeError(f"tensor {name!r}: dtype {t.dtype} is not supported")
    # A tensor of its own over the same memory, kept with the record: the caller's tensor may be given
    # other memory meanwhile (``p.data = ...``, ``module.to(...)``), which would free the bytes read here.
    t = t.detach()
    if not t.is_cpu:
        t = t.cpu()
    if not t.is_contiguous():
        t = t.contiguous()
    nbytes = t.nbytes
    # A view of the tensor's memory by address, as safetensors does: far cheaper than .numpy().
    data = memoryview((ctypes.c_ubyte * nbytes).from_address(t.data_ptr())).cast("B") if nbytes else _EMPTY
    if sys.byteorder == "big":  # pragma: no cover - little-endian machines only in CI
        data = memoryview(bytearray(_byteswap(data, t.element_size())))
    return RawTensor(dtype, tuple(t.shape), data, t)


def _numpy_to_raw(name: str, a: np.ndarray) -> RawTensor:
    dt = a.dtype
    native = dt.newbyteorder("=") if dt.byteorder in "<>" else dt
    dtype = _NAME_OF_NUMPY.get(native)
    if dtype is None:
        raise UnsupportedDtypeError(f"tensor {name!r}: numpy dtype {dt} is not supported")
    le = dt.newbyteorder("<")
    if dt != le or not a.flags.c_contiguous:
        a = a.astype(le, order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    if a.size == 0:
        data = memoryview(b"")
    else:
        data = memoryview(a.reshape(-1).view(np.uint8))
    return RawTensor(dtype, tuple(int(s) for s in a.shape), data, a)


def _byteswap(data: memoryview, size: int) -> bytes:  # pragma: no cover
    return np.frombuffer(data, dtype=f"u{size}" if size > 1 else "u1").byteswap().tobytes()


ALIGNMENT = DATA_ALIGNMENT  # bytes: where torch's CPU allocator starts every tensor (and objects their data)


class BufferView:
    """Zero-copy tensors over one writable buffer (a memory map or a bytearray)."""

    __slots__ = ("flat", "base", "_typed")

    def __init__(self, buf: Any) -> None:
        if memoryview(buf).nbytes == 0:
            self.flat = torch.empty(0, dtype=torch.uint8)
        else:
            self.flat = torch.frombuffer(buf, dtype=torch.uint8)
        self.base = self.flat.data_ptr()
        self._typed: dict[str, torch.Tensor] = {}

    def tensor(self, start: int, stop: int, dtype: str, shape: list[int] | tuple[int, ...],
               aligned: bool = False) -> torch.Tensor:
        """``buf[start:stop]`` as ``dtype``/``shape``: a view, or a copy if ``start`` is misaligned for the
        dtype (or, with ``aligned``, not on a 64-byte boundary, as torch would allocate it)."""
        tdtype = _TORCH_DTYPES[dtype]
        size = tdtype.itemsize
        if stop == start:
            return torch.empty(tuple(shape), dtype=tdtype)
        if start % size or (aligned and (self.base + start) % ALIGNMENT):
            t = torch.empty(tuple(shape), dtype=tdtype)
            copy_bytes(t.data_ptr(), self.base + start, stop - start)
        else:
            typed = self._typed.get(dtype)
            if typed is None:
                n = self.flat.numel() // size * size
                typed = self._typed[dtype] = self.flat[:n].view(tdtype)
            t = typed.as_strided(tuple(shape), _strides(shape), start // size)
        if sys.byteorder == "big":  # pragma: no cover
            t = torch.from_numpy(t.numpy().byteswap())
        return t


def _strides(shape: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    out = []
    step = 1
    for s in reversed(shape):
        out.append(step)
        step *= max(s, 1)
    return tuple(reversed(out))
