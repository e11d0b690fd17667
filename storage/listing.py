"""What a store holds, with ages, for garbage collection: objects, and leftovers of interrupted writes.

Leftovers are temporary files of writes that never finished (``.tmp-*`` beside local objects,
``*.tmp-*`` on other filesystems) and, on S3, multipart uploads that were never completed or
aborted (a killed writer leaves their parts in the bucket, invisible to listings and billed).
"""

from __future__ import annotations

import datetime as dt
import posixpath
from dataclasses import dataclass
from typing import Any

import fsspec

from storage import digest, filesystems

_TMP_MARKERS = (".tmp-",)


@dataclass(frozen=True)
class StoredObject:
    """One stored object: its digest, size and last modification (``None`` when the store cannot say)."""

    digest: str
    nbytes: int
    modified: dt.datetime | None


@dataclass(frozen=True)
class Leftover:
    """A temporary file or an incomplete multipart upload: where, how big, since when."""

    kind: str  # "temp file" or "multipart upload"
    path: str
    nbytes: int
    modified: dt.datetime | None
    upload_id: str | None = None


def modified(info: dict[str, Any]) -> dt.datetime | None:
    """When a listed file (fsspec's ``info``) was last modified, by the store's clock (``None``: not said)."""
    for key in ("LastModified", "mtime", "created"):
        value = info.get(key)
        if isinstance(value, dt.datetime):
            return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        if isinstance(value, int | float):
            return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    return None


def _objects_root(store: Any) -> str:
    return posixpath.join(store.location.path, "objects")


def _find(store: Any) -> dict[str, dict[str, Any]]:
    with filesystems.translate_errors(store.url):
        try:
            found = store.fs.find(_objects_root(store), detail=True)
        except FileNotFoundError:
            found = {}
        if not found:
            filesystems.check_bucket(store.fs, store.location.path, store.url)
    return found


def scan(store: Any) -> tuple[list[StoredObject], list[Leftover]]:
    """Every stored object and every leftover of an interrupted write, from one listing (plus S3's uploads)."""
    objects, leftovers = [], []
    for path, info in _find(store).items():
        base = posixpath.basename(path)
        size, when = int(info.get("size") or 0), modified(info)
        if any(m in base for m in _TMP_MARKERS):
            leftovers.append(Leftover("temp file", path, size, when))
        elif digest.is_digest(digest.PREFIX + base):
            objects.append(StoredObject(digest.PREFIX + base, size, when))
    return objects, leftovers + _multipart_uploads(store)


def _multipart_uploads(store: Any) -> list[Leftover]:
    fs = store.fs
    if not hasattr(fs, "_call_s3"):
        return []
    bucket, key, _ = fs.split_path(_objects_root(store))
    out: list[Leftover] = []
    with filesystems.translate_errors(store.url):
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key + "/"}
        while True:
            page = fsspec.asyn.sync(fs.loop, fs._call_s3, "list_multipart_uploads", **kwargs)
            for u in page.get("Uploads", []):
                out.append(Leftover("multipart upload", f"{bucket}/{u['Key']}", 0, modified({"LastModified": u.get("Initiated")}),
                                    u["UploadId"]))
            if not page.get("IsTruncated"):
                return out
            kwargs.update(KeyMarker=page.get("NextKeyMarker"), UploadIdMarker=page.get("NextUploadIdMarker"))


def remove_leftover(store: Any, leftover: Leftover) -> None:
    """Delete a temporary file, or abort an incomplete multipart upload (its parts are freed)."""
    fs = store.fs
    with filesystems.translate_errors(store.url):
        if leftover.upload_id is None:
            try:
                fs.rm_file(leftover.path)
            except FileNotFoundError:
                pass  # its writer finished or cleaned up meanwhile
            return
        bucket, key, _ = fs.split_path(leftover.path)
        try:
            fsspec.asyn.sync(fs.loop, fs._call_s3, "abort_multipart_upload", Bucket=bucket, Key=key,
                             UploadId=leftover.upload_id)
        except FileNotFoundError:
            pass
