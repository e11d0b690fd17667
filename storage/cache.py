"""A local, size-bounded read cache of objects keyed by digest, shared safely between processes.

Entries are written by atomic rename and only ever replaced or unlinked, so a reader holding an open
file or memory map keeps valid bytes; every read is still verified by the caller. Eviction (least
recently used first, by modification time, refreshed on each hit) runs under a ``filelock``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterable
from typing import Any

import filelock

from storage import digest
from storage.errors import NotAFileError
from storage.filesystems import local_atomic_write, map_file

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 << 30


def default_cache_dir() -> str:
    """``RLREG_CACHE_DIR``, else ``rlreg`` under the user's cache folder."""
    if os.environ.get("RLREG_CACHE_DIR"):
        return os.environ["RLREG_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rlreg")


def default_max_bytes() -> int:
    """``RLREG_CACHE_MAX_BYTES``, else 20 GiB."""
    value = os.environ.get("RLREG_CACHE_MAX_BYTES")
    return int(value) if value else DEFAULT_MAX_BYTES


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
        except NotAFileError as exc:  # a folder or FIFO in its place: never opened for reading
            log.warning("discarding a damaged cache entry: %s", exc)
            self.discard(object_digest)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return buf

    def add(self, object_digest: str, buffers: Iterable[Any], nbytes: int) -> None:
        """Cache an object's (already verified) bytes, evicting old entries beyond the bound."""
        if nbytes > self.max_bytes:
            return
        path = self.path(object_digest)
        if os.path.isdir(path) and not os.path.islink(path):
            self.discard(object_digest)  # a folder in its place: the rename below could not replace it
        local_atomic_write(path, buffers)
        if self._since_scan is None or self._since_scan + nbytes > self.max_bytes // 10:
            self._evict()
        else:
            self._since_scan += nbytes

    def discard(self, object_digest: str) -> None:
        """Remove an object from the cache (damaged or deleted)."""
        path = self.path(object_digest)
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    def digests(self) -> list[str]:
        """The digests of every cache entry (whatever is at its path: file, folder, FIFO), sorted."""
        names = (os.path.basename(path) for _, path, _ in self._entries())
        return sorted(d for d in (digest.PREFIX + n for n in names) if digest.is_digest(d))

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
