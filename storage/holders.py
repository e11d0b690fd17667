"""Who references a store's objects from outside it: one small JSON file per holder, ``<url>/holders/<id>.json``.

A store does not know what its objects are for: a registry's database says which of them its
versions use. Several databases may record objects in one store; one that deleted the objects its
own versions no longer use would then delete objects another still uses. So a holder records itself
in the store before it stores an object (``hold``), and one about to delete asks who else holds the
store first (``holders``): ``registry.gc`` refuses a store another holder holds.

Each holder's file is its own, named by its id: recording one never reads or rewrites another's, so
holders need no lock between them, on a folder or a bucket alike. A file is written whole (renamed
into place and fsynced on a local folder, one PUT on S3) and removed only by ``release``. A file that
cannot be read or parsed still names a holder: it is reported with ``"damaged"`` set, never skipped.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Iterable
from typing import Any

from storage import filesystems

FOLDER = "holders"
SUFFIX = ".json"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_id(holder: str) -> str:
    """``holder`` when it is a valid holder id (a file name: letters, digits, ``_.-``; 1-128), else ``ValueError``."""
    if not isinstance(holder, str) or not _ID.fullmatch(holder) or holder.endswith(SUFFIX):
        raise ValueError(f"{holder!r} is not a holder id: 1-128 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return holder


def _folder(store: Any) -> str:
    return posixpath.join(store.location.path, FOLDER)


def _path(store: Any, holder: str) -> str:
    return posixpath.join(_folder(store), check_id(holder) + SUFFIX)


def hold(store: Any, holder: str, record: dict[str, Any]) -> bool:
    """Record ``holder`` (with ``record``, JSON-able) in ``store`` unless it is recorded; True if written now.

    Durable before it returns (a local folder: the file and its folder fsynced), so that a store
    holding an object this holder recorded after this call also holds its file.
    """
    path = _path(store, holder)
    store._require_online("recording a holder")
    with filesystems.translate_errors(store.url):
        if filesystems.size_of(store.fs, path) is not None:
            return False
        data = json.dumps({**record, "holder": holder}, sort_keys=True).encode()
        if store.is_local:
            filesystems.local_atomic_write(path, [data], durable=store.durable)
        else:
            filesystems.atomic_write(store.fs, path, [data], size=len(data))
    return True


def holders(store: Any, *, unread: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """``{holder id: its record}`` of every holder recorded in ``store`` (``{}`` for none); a file that
    cannot be read or parsed gives ``{"damaged": reason}``, so that it still counts as a holder. The
    records of ``unread`` holders are listed, not read (``{}``: one request less each on S3)."""
    unread = set(unread)
    store._require_online("listing the holders")
    folder = _folder(store)
    with filesystems.translate_errors(store.url):
        try:
            # (refresh: a listings cache turned on must not hide a holder recorded since)
            paths = [p for p in store.fs.ls(folder, detail=False, refresh=True) if p.endswith(SUFFIX)]
        except FileNotFoundError:
            return {}
        found = {}
        for p in sorted(paths):
            name = posixpath.basename(p)[: -len(SUFFIX)]
            if name.startswith(".tmp-"):  # a write under way (a local temporary file)
                continue
            found[name] = {} if name in unread else _read(store, p)
    return found


def _read(store: Any, path: str) -> dict[str, Any]:
    try:
        record = json.loads(store.fs.cat_file(path))
    except FileNotFoundError:  # released meanwhile: read as damaged, a holder that was there
        return {"damaged": "removed while it was read"}
    except (ValueError, OSError) as exc:
        return {"damaged": f"{type(exc).__name__}: {exc}"}
    return record if isinstance(record, dict) else {"damaged": "not a JSON object"}


def release(store: Any, holder: str) -> bool:
    """Remove ``holder``'s record from ``store``; True if there was one."""
    path = _path(store, holder)
    store._require_online("removing a holder")
    with filesystems.translate_errors(store.url):
        try:
            if store.is_local:
                os.unlink(path)
                if store.durable:
                    filesystems.fsync_folder(posixpath.dirname(path))
            else:
                if filesystems.size_of(store.fs, path) is None:
                    return False
                store.fs.rm_file(path)
        except FileNotFoundError:
            return False
    return True

