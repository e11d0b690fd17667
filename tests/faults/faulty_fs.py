"""``faulty://PATH``: the local disk through an fsspec filesystem that fails its Nth operation (EIO).

Arm it with ``FaultyFileSystem.arm(n)``; ``fired`` says whether the fault happened. Like SQLite's I/O
error tests, a test arms N = 1, 2, ... until the operation under test completes without reaching it.
"""

from __future__ import annotations

import errno

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem


class FaultyFileSystem(AbstractFileSystem):
    """Delegates to the local disk; the ``fail_at``-th counted operation raises ``OSError(EIO)``."""

    protocol = "faulty"
    root_marker = "/"
    calls, fail_at, fired = 0, 0, False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.local = LocalFileSystem(auto_mkdir=True)

    @classmethod
    def arm(cls, n: int) -> None:
        cls.calls, cls.fail_at, cls.fired = 0, n, False

    @classmethod
    def _tick(cls, op: str, path: str) -> None:
        cls.calls += 1
        if cls.calls == cls.fail_at:
            cls.fired = True
            raise OSError(errno.EIO, f"injected fault at operation {cls.calls} ({op} {path})")

    @classmethod
    def _strip_protocol(cls, path):
        path = path[len("faulty://"):] if path.startswith("faulty://") else path
        return path.rstrip("/") or "/"

    def _open(self, path, mode="rb", **kwargs):
        self._tick(f"open({mode})", path)
        return self.local._open(path, mode, **kwargs)

    def info(self, path, **kwargs):
        self._tick("info", path)
        return self.local.info(path)

    def ls(self, path, detail=True, **kwargs):
        self._tick("ls", path)
        return self.local.ls(path, detail=detail)

    def cat_file(self, path, start=None, end=None, **kwargs):
        self._tick("cat", path)
        return self.local.cat_file(path, start=start, end=end)

    def mv(self, path1, path2, **kwargs):
        self._tick("mv", path1)
        self.local.mv(path1, path2)

    def rm_file(self, path):
        self._tick("rm", path)
        self.local.rm_file(path)

    def rm(self, path, recursive=False, maxdepth=None):
        for p in [path] if isinstance(path, str) else path:
            self.rm_file(p)

    def makedirs(self, path, exist_ok=False):
        self.local.makedirs(path, exist_ok=exist_ok)

    def mkdir(self, path, create_parents=True, **kwargs):
        self.local.mkdir(path, create_parents=create_parents, **kwargs)


def register() -> None:
    """Make ``faulty://`` known to fsspec (in this process)."""
    fsspec.register_implementation("faulty", FaultyFileSystem, clobber=True)
