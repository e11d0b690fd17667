"""Small verified JSON records beside the cached objects: what an offline load needs besides tensors.

``RLREG_OFFLINE=1`` loads a version with neither the database nor the bucket: its objects come from
the object cache (``storage.cache``), and its spec, state and manifest from a record written here
when it was last loaded online. The records are verified like the objects, so a damaged or tampered
record is an ``IntegrityError``, never silently used. Layout, under the cache folder::

    records/<2 hex>/<64 hex>   one record: canonical JSON named by the blake3 digest of its bytes
    index/<2 hex>/<64 hex>     one key's entry (the name is the digest of the key): its key and the
                               digest of its current record

A record repeats its key, and an index entry is read only when it names the key asked for, so a
record cannot be passed off under another key (another database, model or version). Every file is
written through a temporary file and a rename, so readers in other processes see the old entry or
the new one, never a torn one. JSON only: nothing here is ever unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from typing import Any

from storage import digest
from storage.errors import IntegrityError, NotAFileError
from storage.filesystems import local_atomic_write, open_regular
from storage.jsondepth import MAX_JSON_DEPTH, text_depth

RECORD_FORMAT = "rlreg.cache-record/1"
INDEX_FORMAT = "rlreg.cache-index/1"
_KEY_FORMAT = "rlreg.cache-key/1"
_WRAPPING = 4  # levels the record and index add around the JSON they hold


def canonical(value: Any) -> bytes:
    """The one byte encoding of a JSON value (sorted keys, no spaces, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class RecordCache:
    """Verified JSON records keyed by short lists of strings and integers, under ``<folder>``."""

    def __init__(self, folder: str) -> None:
        self.folder = os.path.abspath(folder)

    def index_path(self, key: Sequence[Any]) -> str:
        """Where the index entry of ``key`` lives."""
        h = digest.hex_of(digest.bytes_digest(canonical([_KEY_FORMAT, *key])))
        return os.path.join(self.folder, "index", h[:2], h)

    def record_path(self, record_digest: str) -> str:
        """Where the record ``record_digest`` lives."""
        h = digest.hex_of(record_digest)
        return os.path.join(self.folder, "records", h[:2], h)

    def put(self, key: Sequence[Any], value: Any) -> str:
        """Record ``value`` (JSON) under ``key``, replacing what the key held; returns the record's digest.

        Nothing is rewritten when the key already holds these bytes.
        """
        key = list(key)
        data = canonical({"format": RECORD_FORMAT, "key": key, "value": value})
        record = digest.bytes_digest(data)
        path = self.record_path(record)
        if _read_if_file(path) != data:
            local_atomic_write(path, [data])
        entry = canonical({"format": INDEX_FORMAT, "key": key, "record": record})
        index = self.index_path(key)
        if _read_if_file(index) != entry:
            local_atomic_write(index, [entry])
        return record

    def get(self, key: Sequence[Any]) -> Any | None:
        """The value recorded under ``key`` (verified), ``None`` if there is none; ``IntegrityError`` if
        the entry or its record is damaged (names the file and says how to record it again)."""
        key = list(key)
        index = self.index_path(key)
        raw = _read(index)
        if raw is None:
            return None
        entry = _parse(raw, index, "index entry")
        record = entry.get("record")
        if entry.get("format") != INDEX_FORMAT or entry.get("key") != key or not digest.is_digest(record):
            raise _damaged(index, "index entry", f"it does not name a record of {_shown(key)}")
        path = self.record_path(record)
        data = _read(path)
        if data is None:
            raise _damaged(index, "index entry", f"the record it names ({record}) is missing")
        got = digest.bytes_digest(data)
        if got != record:
            raise _damaged(path, "record", f"its bytes hash to {got}, not {record}")
        found = _parse(data, path, "record")
        if found.get("format") != RECORD_FORMAT or found.get("key") != key or "value" not in found:
            raise _damaged(path, "record", f"it is not the record of {_shown(key)}")
        return found["value"]

    def remove(self, key: Sequence[Any]) -> None:
        """Forget ``key`` (its record stays until pruned: other keys may share it)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.index_path(list(key)))


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
        raise _damaged(path, "entry", str(exc)) from None
    with open(fd, "rb", closefd=True) as f:
        return f.read()


def _parse(data: bytes, path: str, what: str) -> dict:
    if text_depth(data) > MAX_JSON_DEPTH + _WRAPPING:
        raise _damaged(path, what, f"its JSON nests deeper than {MAX_JSON_DEPTH + _WRAPPING} levels")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(path, what, f"it is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise _damaged(path, what, "it is not a JSON object")
    return value


def _shown(key: list) -> str:
    return "/".join(str(k) for k in key)


def _damaged(path: str, what: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"damaged cache {what} {path}: {why}; delete it and load the version once online to record it again"
    )
