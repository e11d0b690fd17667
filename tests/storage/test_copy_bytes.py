"""``copy_bytes``: memmove between addresses, holding the GIL for small copies and not for large."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from storage import tensors
from storage.tensors import HOLD_GIL_BELOW, copy_bytes


@pytest.mark.parametrize("n", [1, 4096, HOLD_GIL_BELOW - 1, HOLD_GIL_BELOW, 3 * HOLD_GIL_BELOW + 5])
def test_copies_every_byte_on_both_sides_of_the_bound(n):
    src = np.random.default_rng(n).integers(0, 256, n + 64, dtype=np.uint8)
    dst = np.zeros(n + 64, dtype=np.uint8)
    copy_bytes(dst.ctypes.data + 3, src.ctypes.data + 7, n)
    assert bytes(dst[3 : 3 + n]) == bytes(src[7 : 7 + n])
    assert not dst[:3].any() and not dst[3 + n :].any()


@pytest.mark.parametrize("n", [100, HOLD_GIL_BELOW + 100])
def test_overlapping_ranges_move_as_memmove_does(n):
    buf = np.arange(n + 50, dtype=np.uint32).astype(np.uint8)
    want = bytes(buf[: n])
    copy_bytes(buf.ctypes.data + 50, buf.ctypes.data, n)
    assert bytes(buf[50 : 50 + n]) == want


def test_small_copies_keep_the_gil_and_large_ones_release_it():
    # ctypes.PyDLL functions run with the GIL held; CDLL ones (ctypes.memmove) release it
    assert tensors._MEMMOVE_GIL is not ctypes.memmove
    assert type(tensors._MEMMOVE_GIL)._flags_ & ctypes._FUNCFLAG_PYTHONAPI
