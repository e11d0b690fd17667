"""A local, size-bounded read cache of objects keyed by digest, shared safely between processes.

Entries are written by atomic rename and only ever replaced or unlinked, so a reader holding an open
file or memory map keeps valid bytes; every read is still verified by the caller. Eviction (least
recently used first, by modification time, refreshed on each hit) runs under a ``filelock``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any

import filelock

from storage import config, digest
from storage.filesystems import local_atomic_write, map_file

DEFAULT_MAX_BYTES = config.DEFAULT_CACHE_MAX_BYTES


def default_cache_dir() -> str:
    """``RLREG_CACHE_DIR``, else ``rlreg`` under the user's cache folder (``storage.config``)."""
    return config.cache_dir()


def default_max_bytes() -> int:
    """``RLREG_CACHE_MAX_BYTES`` (``20GiB``, ``500MB`` or bytes), else 20 GiB (``storage.config``)."""
    return config.cache_max_bytes()


class ObjectCache:
    """Objects under ``<folder>/objects/<2 hex>/<64 hex>``, at most ``max_bytes`` in total."""

    def __init__(self, folder: str, max_bytes: int) -> None:
        self.folder = os.path.abspath(folder)
        self.max_bytes = max_bytes
        self._lock = filelock.FileLock(os.path.join(self.folder, ".lock"))
        self._since_scan: int | None = None  # bytes added since the last full scan (None: never scanned)

    def path(self, object_digest: str) -> str:
        """Where ``object_digest`` is cached."""
        h = digest.hex_of(object_digest)
        return os.path.join(self.folder, "objects", h[:2], h)

    def read(self, object_digest: str) -> Any | None:
        """A private memory map of the cached object, or ``None`` if it is not cached."""
        path = self.path(object_digest)
        try:
            buf = map_file(path)
        except FileNotFoundError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return buf

    def add(self, object_digest: str, buffers: Iterable[Any], nbytes: int) -> None:
        """Cache an object's (already verified) bytes, evicting old entries beyond the bound."""
        if nbytes > self.max_bytes:
            return
        local_atomic_write(self.path(object_digest), buffers)
        if self._since_scan is None or self._since_scan + nbytes > self.max_bytes // 10:
            self._evict()
        else:
            self._since_scan += nbytes

    def discard(self, object_digest: str) -> None:
        """Remove an object from the cache (damaged or deleted)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(object_digest))

    def total_bytes(self) -> int:
        """Bytes held by the cache now."""
        return sum(size for _, _, size in self._entries())

    def _entries(self) -> list[tuple[float, str, int]]:
        out = []
        root = os.path.join(self.folder, "objects")
        with contextlib.suppress(FileNotFoundError):
            for sub in os.scandir(root):
                if sub.is_dir():
                    for e in os.scandir(sub.path):
                        with contextlib.suppress(FileNotFoundError):
                            if not e.name.startswith(".tmp-"):
                                st = e.stat()
                                out.append((st.st_mtime, e.path, st.st_size))
        return out

    def _evict(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        with self._lock:
            entries = sorted(self._entries())
            total = sum(size for _, _, size in entries)
            for _, path, size in entries:
                if total <= self.max_bytes:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                total -= size
        self._since_scan = 0
