"""Timing helpers shared by benchmark suites: best-of-N wall time, machine bandwidths."""

from __future__ import annotations

import gc
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def best_of(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None) -> float:
    """The fastest of ``repeats`` runs of ``fn()`` in seconds (``setup()`` runs untimed before each)."""
    best = float("inf")
    for _ in range(repeats):
        if setup is not None:
            setup()
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def interleaved(cases: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds of each ``name: (fn, setup)``, run in turn within each repeat.

    Alternating the contenders gives each the same share of a shared machine's bad moments.
    """
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeats):
        for name, (fn, setup) in cases.items():
            if setup is not None:
                setup()
            gc.collect()
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def memcpy_bandwidth(nbytes: int = 256 << 20, repeats: int = 3) -> float:
    """Bytes per second of one large in-memory copy (numpy ``copyto``)."""
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    return nbytes / best_of(lambda: np.copyto(dst, src), repeats)


def disk_write_bandwidth(folder: str, nbytes: int = 256 << 20, repeats: int = 3, fsync: bool = False) -> float:
    """Bytes per second of writing one new file of ``nbytes`` in ``folder`` (optionally fsync'd)."""
    data = memoryview(np.ones(nbytes, dtype=np.uint8))
    fd, path = tempfile.mkstemp(dir=folder)
    os.close(fd)

    def write() -> None:
        with open(path, "wb", buffering=0) as f:
            f.write(data)
            if fsync:
                os.fsync(f.fileno())

    try:
        return nbytes / best_of(write, repeats, setup=lambda: os.path.exists(path) and os.unlink(path))
    finally:
        if os.path.exists(path):
            os.unlink(path)
