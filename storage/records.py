"""Small verified JSON records beside the cached objects: what an offline load needs besides tensors.

``RLREG_OFFLINE=1`` loads a version with neither the database nor the bucket: its objects come from
the object cache (``storage.cache``), and its spec, state and manifest from a record written here
when it was last loaded online. The records are verified like the objects, so a damaged or tampered
record is an ``IntegrityError``, never silently used. Layout, under the folder given::

    records/<2 hex>/<64 hex>   the record of one key (the file's name is the digest of the key):
                               canonical JSON {"format", "key", "value", "digest"}, where "digest" is
                               the blake3 digest of the canonical JSON of the other three

A record repeats its key, and is read only when it names the key asked for, so a record cannot be
passed off under another key (another database, model or version); one whose bytes changed no longer
matches its digest. Every file is written through a temporary file and a rename, so readers in other
processes see the old record or the new one, never a torn one; replacing a key's record leaves
nothing behind. JSON only: nothing here is ever unpickled.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

from storage import digest, forklocks
from storage.errors import IntegrityError, NotAFileError
from storage.filesystems import local_atomic_write, open_regular
from storage.jsondepth import MAX_JSON_DEPTH, text_depth

RECORD_FORMAT = "rlreg.cache-record/1"
_KEY_FORMAT = "rlreg.cache-key/1"
_WRAPPING = 4  # levels the record adds around the JSON it holds
_READ = object()  # RecordCache._written: a file read and verified, its value not kept
_REMEMBERED = 256  # records whose last put a RecordCache remembers (to skip encoding them again)


def canonical(value: Any) -> bytes:
    """The one byte encoding of a JSON value (sorted keys, no spaces, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class RecordCache:
    """Verified JSON records keyed by short lists of strings and integers, under ``<folder>``."""

    def __init__(self, folder: str) -> None:
        self.folder = os.path.abspath(folder)
        # path -> (value put, or _READ for a file read and verified), and the file's stat then
        self._written: dict[str, tuple[Any, tuple]] = {}
        self._paths: dict[tuple, str] = {}  # key -> path, for the keys put or asked about lately
        self._lock = forklocks.new_lock(self)  # several threads load at once: an eviction iterates over _written

    def path(self, key: Sequence[Any]) -> str:
        """Where the record of ``key`` lives."""
        remembered = tuple((type(k), k) for k in key)  # (1, True and 1.0 are equal keys, not equal JSON)
        try:
            found = self._paths.get(remembered)
        except TypeError:  # an unhashable part: not remembered
            found, remembered = None, None
        if found is not None:
            return found
        h = digest.hex_of(digest.bytes_digest(canonical([_KEY_FORMAT, *key])))
        path = os.path.join(self.folder, "records", h[:2], h)
        if remembered is not None:
            if len(self._paths) >= _REMEMBERED:
                self._paths.clear()
            self._paths[remembered] = path
        return path

    @staticmethod
    def encode(key: Sequence[Any], value: Any) -> bytes:
        """The bytes of the record of ``value`` under ``key``."""
        body = {"format": RECORD_FORMAT, "key": list(key), "value": value}
        return canonical({**body, "digest": digest.bytes_digest(canonical(body))})

    def put(self, key: Sequence[Any], value: Any) -> bool:
        """Record ``value`` (JSON) under ``key``, replacing what the key held; whether anything was written
        (nothing is when the key already holds these bytes)."""
        path = self.path(key)
        known = self._written.get(path)
        if known is not None and known[0] is not _READ and known[0] == value and known[1] == _signature(path):
            return False  # this process put these values there, and the file has not changed since
        data = self.encode(key, value)
        written = _read_if_file(path) != data
        if written:
            local_atomic_write(path, [data])
        signature = _signature(path)
        if signature is not None:
            self._note(path, json.loads(data)["value"], signature)  # a copy: the caller's may change
        return written

    def _note(self, path: str, value: Any, signature: tuple) -> None:
        """Remember that the file at ``path``, as ``signature`` finds it, holds ``value``."""
        with self._lock:
            self._written.pop(path, None)
            self._written[path] = (value, signature)
            while len(self._written) > _REMEMBERED:
                self._written.pop(next(iter(self._written)), None)

    def unchanged(self, key: Sequence[Any]) -> bool:
        """Whether this RecordCache put or read the record of ``key`` and its file has not changed since
        (one stat)."""
        path = self.path(key)
        found = self._written.get(path)
        return found is not None and found[1] == _signature(path)

    def known(self, key: Sequence[Any]) -> Any | None:
        """The value this RecordCache last put under ``key`` if its file has not changed since (inode, size,
        time), else ``None``: not read, not verified; to decide whether to put again, as ``put`` does. (A
        load asks whether to refresh the sightings of its aliases, which it wrote itself a moment before.)"""
        path = self.path(list(key))
        found = self._written.get(path)
        if found is None or found[0] is _READ or found[1] != _signature(path):
            return None
        return copy.deepcopy(found[0])

    def get(self, key: Sequence[Any]) -> Any | None:
        """The value recorded under ``key`` (verified), ``None`` if there is none; ``IntegrityError`` if
        the record is damaged (names the file and says how to record it again)."""
        key = list(key)
        path = self.path(key)
        signature = _signature(path)  # before the read: a file replaced meanwhile then never matches it
        data = _read(path)
        if data is None:
            return None
        found = _checked(data, path)
        if found.get("key") != key:
            raise _damaged(path, f"it is the record of {_shown(found.get('key'))}, not of {_shown(key)}")
        if signature is not None:
            self._note(path, _READ, signature)  # (its value is not kept: a record may be large)
        return found["value"]

    def files(self) -> list[str]:
        """The path of every record."""
        root = os.path.join(self.folder, "records")
        out = []
        with contextlib.suppress(FileNotFoundError):
            for sub in sorted(os.scandir(root), key=lambda e: e.name):
                if sub.is_dir(follow_symlinks=False):
                    out += sorted(e.path for e in os.scandir(sub.path) if not e.name.startswith(".tmp-"))
        return out

    def verify(self, *, discard: bool = True) -> dict[str, str]:
        """Check every record (its digest, and that it lies where its key puts it); return the damaged
        ones (``{path: why}``), removed unless not ``discard`` (an offline load then says it is not cached)."""
        damaged = {}
        for path in self.files():
            try:
                found = _checked(_read(path) or b"", path)
                key = found.get("key")
                if not isinstance(key, list) or self.path(key) != path:
                    raise _damaged(path, f"it is the record of {_shown(key)}, which belongs elsewhere")
            except IntegrityError as exc:
                damaged[path] = str(exc)
                if discard:
                    with contextlib.suppress(FileNotFoundError):
                        if os.path.isdir(path) and not os.path.islink(path):
                            shutil.rmtree(path)
                        else:
                            os.unlink(path)
        return damaged

    def remove(self, key: Sequence[Any]) -> None:
        """Forget ``key``."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(list(key)))


def _signature(path: str) -> tuple | None:
    """What tells a regular file rewritten (or replaced) since: inode, size and modification time."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)


def _read_if_file(path: str) -> bytes | None:
    try:
        return _read(path)
    except IntegrityError:
        return None


def _read(path: str) -> bytes | None:
    """The bytes of a local regular file, ``None`` if it is missing, ``IntegrityError`` if not a file."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return None
    except NotAFileError as exc:
        raise _damaged(path, str(exc)) from None
    with open(fd, "rb", closefd=True) as f:
        return f.read()


def _checked(data: bytes, path: str) -> dict:
    """The parsed record in ``data``, its digest checked (and dropped), else ``IntegrityError``."""
    found = _parse(data, path)
    stated = found.pop("digest", None)
    if found.get("format") != RECORD_FORMAT or "value" not in found or not digest.is_digest(stated):
        raise _damaged(path, "it is not a record of this rlreg")
    got = digest.bytes_digest(canonical(found))
    if got != stated:
        raise _damaged(path, f"its content hashes to {got}, not to the {stated} it states")
    return found


def _parse(data: bytes, path: str) -> dict:
    if text_depth(data) > MAX_JSON_DEPTH + _WRAPPING:
        raise _damaged(path, f"its JSON nests deeper than {MAX_JSON_DEPTH + _WRAPPING} levels")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(path, f"it is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _damaged(path, "it is not a JSON object")
    return value


def _shown(key: Any) -> str:
    return "/".join(str(k) for k in key) if isinstance(key, list) else repr(key)


def _damaged(path: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"damaged cache record {path}: {why}; delete it and load the version once online to record it again"
    )
