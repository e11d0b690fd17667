"""The ``rlreg://`` fsspec protocol: each model version as a read-only checkpoint folder.

``rlreg://name/3``, ``rlreg://name@prod`` and ``rlreg://name`` (the latest) are folders laid out as
``RLModule.save_to_path`` writes them, so ``RLModuleSpec(load_state_path="rlreg://name@best").build()``
and ``module.restore_from_path("rlreg://name/3")`` read them like any other checkpoint, in a process
that never imported ``registry``: fsspec finds this class through the ``fsspec.specs`` entry point.

A version is exported once per process into a temporary folder and served from there (versions
never change; the ``MAX_EXPORTED`` most recently used stay exported). Filesystem instances are not
cached, so one ``storage.Location`` (one restore) resolves an alias or "the latest" once and reads
every file of that same version.
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from registry import errors
from registry.uri import ModelRef, split_path

_LOCK = threading.Lock()
_EXPORTED: OrderedDict[tuple[str, str, str, int, int], str] = OrderedDict()  # least recently used first
MAX_EXPORTED = 16  # versions kept exported per process; older folders are deleted
_ROOT: list[str] = []


def _scratch() -> str:
    if not _ROOT:
        root = tempfile.mkdtemp(prefix="rlreg-fs-")
        atexit.register(shutil.rmtree, root, True)
        _ROOT.append(root)
    return _ROOT[0]


class RegistryFileSystem(AbstractFileSystem):
    """Read-only fsspec filesystem over a registry (the default one unless URLs are given)."""

    protocol = "rlreg"
    root_marker = ""
    cachable = False  # one instance per Location: an alias resolves once per restore

    def __init__(self, db_url: str | None = None, storage_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.db_url, self.storage_url = db_url, storage_url
        self._pinned: dict[tuple[str, str | None], int] = {}
        self._local = LocalFileSystem()

    def _registry(self) -> Any:
        from registry import default_registry

        return default_registry(self.db_url, self.storage_url)

    def _resolve(self, path: str) -> tuple[ModelRef, str]:
        """The version a path names (aliases and "latest" pinned for this instance) and the inner path."""
        path = self._strip_protocol(path)
        reg = self._registry()
        segments = path.split("/")
        candidates = ["/".join(segments[:k]) for k in range(1, len(segments) + 1)]
        try:
            ref, inner = split_path(path, reg.existing_names(candidates) if "@" not in path else ())
            if ref.version is None:
                key = (ref.name, ref.alias)
                if key not in self._pinned:
                    self._pinned[key] = reg.version(ref.name, alias=ref.alias).version
                ref = ModelRef(ref.name, self._pinned[key])
            return ref, inner
        except errors.NotFoundError as exc:
            raise FileNotFoundError(f"rlreg://{path}: {exc}") from None
        except errors.InvalidNameError as exc:
            raise FileNotFoundError(f"rlreg://{path} names no model: {exc}") from None

    def _materialise(self, ref: ModelRef) -> str:
        reg = self._registry()
        try:
            recorded = reg.version(ref.name, ref.version)
        except errors.NotFoundError as exc:
            raise FileNotFoundError(f"{ref}: {exc}") from None
        # The position too: a database wiped and refilled at the same URL must not serve stale files.
        key = (reg.db_url, reg.storage_url, ref.name, recorded.version, recorded.position)
        with _LOCK:
            folder = _EXPORTED.get(key)
            if folder is not None and os.path.isdir(folder):
                _EXPORTED.move_to_end(key)
                return folder
            target = os.path.join(tempfile.mkdtemp(dir=_scratch()), "checkpoint")
            reg.export(ref.name, recorded.version, target)
            _EXPORTED[key] = target
            while len(_EXPORTED) > MAX_EXPORTED:
                _, old = _EXPORTED.popitem(last=False)
                shutil.rmtree(os.path.dirname(old), ignore_errors=True)
            return target

    def _local_path(self, path: str) -> tuple[str, str]:
        """(local path serving ``path``, ``path`` without protocol)."""
        stripped = self._strip_protocol(path)
        ref, inner = self._resolve(stripped)
        root = self._materialise(ref)
        return (os.path.join(root, *inner.split("/")) if inner else root), stripped

    def _rename(self, info: dict, local_root: str, root: str) -> dict:
        out = dict(info)
        rel = os.path.relpath(info["name"], local_root).replace(os.sep, "/")
        out["name"] = root if rel == "." else f"{root}/{rel}"
        return out

    def info(self, path: str, **kwargs: Any) -> dict:
        local, stripped = self._local_path(path)
        if not os.path.exists(local):
            raise FileNotFoundError(f"rlreg://{stripped}")
        return self._rename(self._local.info(local), local, stripped)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        local, stripped = self._local_path(path)
        if not os.path.exists(local):
            raise FileNotFoundError(f"rlreg://{stripped}")
        if not os.path.isdir(local):
            entries = [self.info(path)]
        else:
            entries = [
                self._rename(self._local.info(os.path.join(local, n)), local, stripped)
                for n in sorted(os.listdir(local))
            ]
        return entries if detail else [e["name"] for e in entries]

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            self._read_only(path)
        local, stripped = self._local_path(path)
        if not os.path.isfile(local):
            raise FileNotFoundError(f"rlreg://{stripped}")
        return self._local.open(local, "rb")

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        local, stripped = self._local_path(path)
        if not os.path.isfile(local):
            raise FileNotFoundError(f"rlreg://{stripped}")
        return self._local.cat_file(local, start=start, end=end)

    def _read_only(self, path: Any = "", *args: Any, **kwargs: Any) -> None:
        where = f"rlreg://{self._strip_protocol(path)}" if isinstance(path, str) else "rlreg://"
        raise OSError(errno.EROFS, f"{where} is read-only: record versions with registry.snapshot() instead")

    mkdir = makedirs = rm = _rm = rmdir = pipe_file = put_file = touch = mv = cp_file = _read_only
