"""The ``rlreg://`` fsspec protocol: each model version as a read-only checkpoint folder.

``rlreg://name/3``, ``rlreg://name@prod`` and ``rlreg://name`` (the latest) are folders laid out as
``RLModule.save_to_path`` writes them, so ``RLModuleSpec(load_state_path="rlreg://name@best").build()``
and ``module.restore_from_path("rlreg://name/3")`` read them like any other checkpoint, in a process
that never imported ``registry``: fsspec finds this class through the ``fsspec.specs`` entry point.
Paths follow the grammar of ``registry.uri``; a bare ``name`` is spelled ``name@latest`` inside the
filesystem, so that ``<path>/<module_id>`` (how a MultiRLModule restores) stays inside that model.

Serving verified bytes: a version's checkpoint is built in memory from the tensors ``Store.get``
returns (each verified against its digest) and served from those immutable bytes; nothing is
re-read from a scratch folder that another process could change after it was written. The
``MAX_CACHED`` most recently used checkpoints (at most ``MAX_CACHED_BYTES`` in all) stay built.
Eviction only drops the cache's reference: a reader that already holds a checkpoint keeps reading
it, so evicting under concurrent readers is safe. Filesystem instances are not cached, so one
``storage.Location`` (one restore) resolves an alias or "the latest" once and reads every file of
that same version.
"""

from __future__ import annotations

import errno
import io
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec import AbstractFileSystem

from registry import errors
from registry.uri import ModelRef, canonical_path, split_path

MAX_CACHED = 8  # checkpoints kept built per process, most recently used
MAX_CACHED_BYTES = 1 << 30  # ... and at most this many bytes of them (the newest is always kept)


@dataclass(frozen=True)
class Checkpoint:
    """One version's checkpoint folder in memory: file bytes by relative path, and its folders."""

    files: dict[str, bytes]
    folders: frozenset[str]

    @property
    def nbytes(self) -> int:
        """Total bytes of its files."""
        return sum(len(b) for b in self.files.values())

    def children(self, folder: str) -> list[str]:
        """Relative paths of ``folder``'s direct children, sorted."""
        prefix = f"{folder}/" if folder else ""
        out = {p[len(prefix):].split("/", 1)[0] for p in [*self.files, *self.folders] if p.startswith(prefix) and p != folder}
        return sorted(prefix + c for c in out if c)


_LOCK = threading.Lock()  # guards _CACHE
_BUILD_LOCK = threading.Lock()  # one build at a time (as the folder exports were): loads stay serial
_CACHE: OrderedDict[tuple[str, str, str, int, int], Checkpoint] = OrderedDict()  # least recent first


def build_checkpoint(reg: Any, name: str, version: int) -> Checkpoint:
    """``reg``'s version as checkpoint bytes: the module loaded from verified tensors, saved in memory."""
    memory = fsspec.filesystem("memory")
    root = f"/rlreg-fs/{uuid.uuid4().hex}"
    try:
        reg.export(name, version, f"memory://{root}")
        files = {path[len(root) + 1:]: memory.cat_file(path) for path in memory.find(root)}
    finally:
        if memory.exists(root):
            memory.rm(root, recursive=True)
    folders = {""} | {"/".join(p.split("/")[:k]) for p in files for k in range(1, p.count("/") + 1)}
    return Checkpoint(files, frozenset(folders))


def _cached(key: tuple[str, str, str, int, int], build: Any) -> Checkpoint:
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    with _BUILD_LOCK:
        with _LOCK:
            hit = _CACHE.get(key)  # another thread may have built it while we waited
        if hit is None:
            hit = build()
        with _LOCK:
            _CACHE[key] = hit
            _CACHE.move_to_end(key)
            while len(_CACHE) > 1 and (
                len(_CACHE) > MAX_CACHED or sum(c.nbytes for c in _CACHE.values()) > MAX_CACHED_BYTES
            ):
                _CACHE.popitem(last=False)  # readers holding it keep their reference
        return hit


class RegistryFileSystem(AbstractFileSystem):
    """Read-only fsspec filesystem over a registry (the default one unless URLs are given)."""

    protocol = "rlreg"
    root_marker = ""
    cachable = False  # one instance per Location: an alias resolves once per restore

    def __init__(self, db_url: str | None = None, storage_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.db_url, self.storage_url = db_url, storage_url
        self._pinned: dict[tuple[str, str | None], int] = {}

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        stripped = super()._strip_protocol(path)
        return canonical_path(stripped) if isinstance(stripped, str) else stripped

    def _registry(self) -> Any:
        from registry import default_registry

        return default_registry(self.db_url, self.storage_url)

    def _resolve(self, path: str) -> tuple[ModelRef, str, Checkpoint]:
        """The version a path names (aliases and "latest" pinned for this instance), the inner path, its files."""
        try:
            ref, inner = split_path(path)
            reg = self._registry()
            if ref.version is None:
                key = (ref.name, ref.alias)
                if key not in self._pinned:
                    self._pinned[key] = reg.version(ref.name, alias=ref.alias).version
                ref = ModelRef(ref.name, self._pinned[key])
            recorded = reg.version(ref.name, ref.version)
        except errors.NotFoundError as exc:
            raise FileNotFoundError(f"rlreg://{path}: {exc}") from None
        except errors.InvalidNameError as exc:
            raise FileNotFoundError(f"rlreg://{path} names no model: {exc}") from None
        # The position too: a database wiped and refilled at the same URL must not serve stale files.
        key = (reg.db_url, reg.storage_url, ref.name, recorded.version, recorded.position)
        checkpoint = _cached(key, lambda: build_checkpoint(reg, ref.name, recorded.version))
        return ref, inner, checkpoint

    def info(self, path: str, **kwargs: Any) -> dict:
        stripped = self._strip_protocol(path)
        ref, inner, checkpoint = self._resolve(stripped)
        if inner in checkpoint.files:
            return {"name": stripped, "size": len(checkpoint.files[inner]), "type": "file"}
        if inner in checkpoint.folders:
            return {"name": stripped, "size": 0, "type": "directory"}
        raise FileNotFoundError(f"rlreg://{stripped}: version {ref.version} of model "
                                f"{ref.name!r} has no file or folder {inner!r}")

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        stripped = self._strip_protocol(path)
        found = self.info(stripped)
        if found["type"] == "file":
            entries = [found]
        else:
            _, inner, checkpoint = self._resolve(stripped)
            base = stripped[: len(stripped) - len(inner)].rstrip("/")
            entries = [self.info(f"{base}/{child}") for child in checkpoint.children(inner)]
        return entries if detail else [e["name"] for e in entries]

    def _file(self, path: str) -> tuple[str, bytes]:
        stripped = self._strip_protocol(path)
        if self.info(stripped)["type"] != "file":
            raise IsADirectoryError(f"rlreg://{stripped} is a folder")
        _, inner, checkpoint = self._resolve(stripped)
        return stripped, checkpoint.files[inner]

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            self._read_only(path)
        return io.BytesIO(self._file(path)[1])

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        return self._file(path)[1][start:end]

    def _read_only(self, path: Any = "", *args: Any, **kwargs: Any) -> None:
        where = f"rlreg://{self._strip_protocol(path)}" if isinstance(path, str) else "rlreg://"
        raise OSError(errno.EROFS, f"{where} is read-only: record versions with registry.snapshot() instead")

    mkdir = makedirs = rm = _rm = rmdir = pipe_file = put_file = touch = mv = cp_file = _read_only
