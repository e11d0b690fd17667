"""A local, size-bounded read cache of objects keyed by digest, shared safely between processes.

Entries are written by atomic rename and only ever replaced or unlinked, so a reader holding an open
file or memory map keeps valid bytes; every read is still verified by the caller. Eviction (least
recently used first, by modification time, refreshed on each hit) runs under a ``filelock``.

The cache only saves downloads: a folder that cannot be written (full, read-only, not ours) or an
entry that cannot be read never fails a load. The load goes on without it, in memory, and the first
such failure of a cache is logged as a warning naming the folder, the error and what to do.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import filelock

from storage import config, digest
from storage.errors import NotAFileError
from storage.filesystems import SinkFailed, local_atomic_write, local_temp_path, map_file

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = config.DEFAULT_CACHE_MAX_BYTES
REST_SECONDS = 60  # after the folder failed a write, loads write nothing into it for this long


def default_cache_dir() -> str:
    """``RLREG_CACHE_DIR``, else ``rlreg`` under the user's cache folder (``storage.config``)."""
    return config.cache_dir()


def default_max_bytes() -> int:
    """``RLREG_CACHE_MAX_BYTES`` (``20GiB``, ``500MB`` or bytes), else 20 GiB (``storage.config``)."""
    return config.cache_max_bytes()


@dataclass(frozen=True)
class CacheEntry:
    """One cached object: its digest, size in bytes and last use (seconds since the epoch)."""

    digest: str
    nbytes: int
    last_used: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"digest": self.digest, "nbytes": self.nbytes, "last_used": self.last_used}


class ObjectCache:
    """Objects under ``<folder>/objects/<2 hex>/<64 hex>``, at most ``max_bytes`` in total."""

    def __init__(self, folder: str, max_bytes: int) -> None:
        self.folder = os.path.abspath(folder)
        self.max_bytes = max_bytes
        self._lock = filelock.FileLock(os.path.join(self.folder, ".lock"))
        self._since_scan: int | None = None  # bytes added since the last full scan (None: never scanned)
        self._warned = False  # a failure of the folder was logged (once a cache)
        self._resting_until = 0.0  # no writes into the folder before (time.monotonic()): it failed lately
        self.unreadable: dict[str, str] = {}  # entries that are there but could not be read: {digest: why}

    def unusable(self, exc: BaseException, doing: str) -> None:
        """Log (once a cache) that ``doing`` in the folder failed with ``exc``: loads go on without it, and
        for ``REST_SECONDS`` nothing is written there (a full disk would cost each object a download more)."""
        self._resting_until = time.monotonic() + REST_SECONDS
        if not self._warned:
            self._warned = True
            log.warning("the cache folder %s failed %s (%s: %s): going on without it (loads read from the bucket "
                        "into memory); free space there or fix its permissions, or set RLREG_CACHE_DIR to another "
                        "folder", self.folder, doing, type(exc).__name__, exc)

    def _resting(self) -> bool:
        return time.monotonic() < self._resting_until

    def discard_quietly(self, object_digest: str) -> None:
        """``discard``, for a load or a delete that goes on whatever the folder says (``unusable``)."""
        try:
            self.discard(object_digest)
        except OSError as exc:
            self.unusable(exc, f"removing {self.path(object_digest)}")

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
            self.discard_quietly(object_digest)
            return None
        except OSError as exc:  # unreadable (permissions, an I/O error): a miss
            self.unreadable[object_digest] = f"{type(exc).__name__}: {exc}"
            self.unusable(exc, f"reading {path}")
            return None
        self.unreadable.pop(object_digest, None)
        with contextlib.suppress(OSError):
            os.utime(path)
        return buf

    def add(self, object_digest: str, buffers: Iterable[Any], nbytes: int) -> None:
        """Cache an object's (already verified) bytes, evicting old entries beyond the bound (a folder that
        cannot be written is logged, ``unusable``, and left alone)."""
        if nbytes > self.max_bytes or self._resting():
            return
        path = self.path(object_digest)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                self.discard(object_digest)  # a folder in its place: the rename below could not replace it
            local_atomic_write(path, buffers, direct=True)  # read back later, if at all
        except OSError as exc:
            self.unusable(exc, f"writing {path}")
            return
        self._added(nbytes)

    def filling(self, object_digest: str, nbytes: int) -> Filling | None:
        """A temporary file to download an object into, kept as its entry only once verified (``Filling``);
        ``None`` for an object larger than the cache, or when the folder cannot be written (``unusable``)."""
        if nbytes > self.max_bytes or self._resting():
            return None
        path = self.path(object_digest)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return Filling(self, object_digest, path)
        except OSError as exc:
            self.unusable(exc, f"making a file in {os.path.dirname(path)}")
            return None

    def _added(self, nbytes: int) -> None:
        if self._since_scan is None or self._since_scan + nbytes > self.max_bytes // 10:
            try:
                self._evict()
            except OSError as exc:  # (its lock file cannot be made, an entry cannot be removed)
                self.unusable(exc, "evicting")
        else:
            self._since_scan += nbytes

    def discard(self, object_digest: str) -> None:
        """Remove an object from the cache (damaged or deleted)."""
        _remove(self.path(object_digest))
        self.unreadable.pop(object_digest, None)

    def total_bytes(self) -> int:
        """Bytes held by the cache now."""
        return sum(size for _, _, size in self._entries())

    def entries(self) -> list[CacheEntry]:
        """Every cached object, least recently used first."""
        return [CacheEntry(digest.PREFIX + os.path.basename(path), size, used) for used, path, size in sorted(self._entries())]

    def verify(self, progress: Any = None, *, discard: bool = True) -> dict[str, str]:
        """Re-hash every cached object; return the damaged ones (``{digest: why}``), discarded unless not ``discard``.

        A folder or FIFO in place of an entry is damaged too (never opened for reading).
        """
        from storage import objects  # the decoder needs torch's dtype table
        from storage.errors import IntegrityError

        damaged, done = {}, 0
        entries = self.entries()
        for entry in entries:
            try:
                buf = self.read_quiet(entry.digest)
                if buf is not None:
                    objects.decode(buf, entry.digest, self.path(entry.digest), lambda _: [])
            except (IntegrityError, NotAFileError) as exc:
                buf = None
                damaged[entry.digest] = str(exc)
                if discard:
                    self.discard(entry.digest)
            done += entry.nbytes
            if progress is not None:
                progress(done, sum(e.nbytes for e in entries))
        return damaged

    def read_quiet(self, object_digest: str) -> Any | None:
        """Like ``read`` but leaves the entry's last use alone (for ``verify``)."""
        try:
            return map_file(self.path(object_digest))
        except FileNotFoundError:
            return None

    def prune(self, max_bytes: int | None = None, older_than: float | None = None, dry_run: bool = False) -> list[CacheEntry]:
        """Remove entries unused for ``older_than`` seconds, then the least recently used beyond
        ``max_bytes``; returns what was (or, with ``dry_run``, would be) removed."""
        os.makedirs(self.folder, exist_ok=True)
        with self._lock:
            entries = self.entries()
            cutoff = None if older_than is None else time.time() - older_than
            gone = [e for e in entries if cutoff is not None and e.last_used < cutoff]
            kept = [e for e in entries if e not in gone]
            total = sum(e.nbytes for e in kept)
            for entry in kept:
                if max_bytes is None or total <= max_bytes:
                    break
                gone.append(entry)
                total -= entry.nbytes
            if not dry_run:
                for entry in gone:
                    self.discard(entry.digest)
        return gone

    def _entries(self) -> list[tuple[float, str, int]]:
        out = []
        root = os.path.join(self.folder, "objects")
        with contextlib.suppress(FileNotFoundError):
            for sub in os.scandir(root):
                if sub.is_dir():
                    for e in os.scandir(sub.path):
                        with contextlib.suppress(OSError):  # (gone meanwhile, or a link loop: not an entry)
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
                _remove(path)
                total -= size
        self._since_scan = 0


# A download's bytes are written into its cache file by these threads, never by the thread that reads
# them off the network (fsspec's event loop): a write into fresh page-cache pages, which this VM hands
# out slowly, held the loop and with it every other download (a cold 1 GiB load from S3 took 3.6 s in
# 3 of 5 rounds, against 2.0 s; s3fs's own cat of the same bytes into memory 1.9 s).
FILL_WRITERS = 2
FILL_AHEAD = 16 << 20  # bytes of one download handed to the writers and not yet written, at most (32 at once)
_fill_writers: concurrent.futures.ThreadPoolExecutor | None = None
_fill_lock = threading.Lock()


def _writers() -> concurrent.futures.ThreadPoolExecutor:
    global _fill_writers
    with _fill_lock:
        if _fill_writers is None:
            _fill_writers = concurrent.futures.ThreadPoolExecutor(FILL_WRITERS, thread_name_prefix="rlreg-cache-fill")
        return _fill_writers


def _forked() -> None:  # a forked child has none of the parent's threads (nor, maybe, a free lock)
    global _fill_writers, _fill_lock
    _fill_writers, _fill_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forked)


class Filling:
    """An object's bytes written straight into the cache folder as they are downloaded, under a temporary
    name: ``mapped()`` gives them to verify, then ``keep()`` renames them into place, or ``drop()`` removes them.

    The bytes land in the page cache once (no buffer in memory and a copy of it to a file), and what a
    load hands out is a private map of them, as for a cache hit. Only ``keep`` makes them an entry.
    ``write_at`` hands the write to the cache's writer threads; the downloading coroutine awaits
    ``drain(...)`` so that no more than ``FILL_AHEAD`` bytes wait, and ``drain(0)`` before ``done()``.
    """

    def __init__(self, cache: ObjectCache, object_digest: str, path: str) -> None:
        self._cache, self.digest, self._path = cache, object_digest, path
        self._tmp = local_temp_path(path)
        self._fd: int | None = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                                       0o600)
        self.nbytes = 0
        self._writes: collections.deque[tuple[concurrent.futures.Future, int]] = collections.deque()
        self._waiting = 0  # bytes handed to the writers and not yet seen written (by drain)

    def write_at(self, offset: int, data: Any) -> None:
        """Write ``data`` (left unchanged until written) at ``offset`` of the file, on a writer thread.

        Called by one thread at a time (the downloading one); ``done()`` or ``drain()`` raise a write's error.
        """
        view = memoryview(data).cast("B")
        if not view.nbytes:
            return
        self.nbytes = max(self.nbytes, offset + view.nbytes)
        self._writes.append((_writers().submit(self._pwrite, self._fd, view, offset), view.nbytes))
        self._waiting += view.nbytes

    @staticmethod
    def _pwrite(fd: int, view: memoryview, offset: int) -> None:
        while view.nbytes:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n

    async def drain(self, limit: int | None = None) -> None:
        """Wait (on the event loop) until at most ``limit`` (default ``FILL_AHEAD``) bytes handed over are
        unwritten; a write's error."""
        limit = FILL_AHEAD if limit is None else limit
        while self._writes:  # (the parts of a ranged read drain at once: the head is read again after each wait)
            future, nbytes = self._writes[0]
            if future.done():
                self._writes.popleft()
                self._waiting -= nbytes
                if future.exception() is not None:  # (a write's error)
                    raise self._failed(future.exception())  # type: ignore[arg-type]
            elif self._waiting <= limit:
                return
            else:  # (cancelled: so is the write, if it has not started)
                waited = asyncio.wrap_future(future)
                await asyncio.wait([waited])
                if not waited.cancelled():
                    waited.exception()  # (read here from `future`: unread, asyncio would print it when collected)

    def _wait_writes(self, cancel: bool = False) -> None:
        """Wait for every write handed over (``cancel``: those not started are not made); raise the first one's error."""
        futures = [f for f, _ in self._writes]
        concurrent.futures.wait([f for f in futures if not (cancel and f.cancel())])
        self._writes.clear()  # (only once they have ended: an interrupted wait forgets none)
        self._waiting = 0
        for f in futures:
            if not f.cancelled() and f.exception() is not None:
                raise self._failed(f.exception())  # type: ignore[arg-type]

    def _failed(self, exc: BaseException) -> BaseException:
        """A write's error: the cache folder's (``SinkFailed``: the download goes again into memory)."""
        if isinstance(exc, OSError):
            self._cache.unusable(exc, f"writing {self._tmp}")
            return SinkFailed(exc)
        return exc

    def done(self) -> None:
        """Every byte is written: close the file (a write's error is raised, the file dropped)."""
        if self._fd is not None:
            try:
                self._wait_writes()
                os.fchmod(self._fd, 0o644)
                fd, self._fd = self._fd, None
                os.close(fd)  # (a network filesystem may say only here that it is full)
            except BaseException as exc:
                self.drop()
                raise self._failed(exc) if isinstance(exc, OSError) else exc

    def mapped(self) -> Any:
        """A private (copy-on-write) map of the bytes written, to verify and hand out."""
        self.done()
        return map_file(self._tmp)

    def keep(self) -> None:
        """Make the (verified) bytes the cache's entry for the object, replacing any older one (if the
        folder refuses, ``unusable``, the bytes are dropped: a map of them stays valid)."""
        try:
            if os.path.isdir(self._path) and not os.path.islink(self._path):
                self._cache.discard(self.digest)  # a folder in its place: the rename could not replace it
            os.replace(self._tmp, self._path)
        except OSError as exc:
            self._cache.unusable(exc, f"naming {self._path}")
            self.drop()
            return
        self._cache._added(self.nbytes)

    def drop(self) -> None:
        """Remove the bytes (a failed download, or bytes that did not verify)."""
        with contextlib.suppress(Exception):  # (no write outlives the file: its number may be reused)
            self._wait_writes(cancel=True)
        with contextlib.suppress(OSError):
            if self._fd is not None:
                os.close(self._fd)
        self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


def _remove(path: str) -> None:
    """Remove a cache entry, whatever is at its path (a file, or a folder planted there)."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
