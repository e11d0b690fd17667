"""``RLREG_OFFLINE=1``: load versions loaded once before, with neither the database nor the bucket.

Like ``HF_HUB_OFFLINE``. Each online load (``Registry.load``, ``rlreg://``, ``rlreg export``) records
in the cache folder (``RLREG_CACHE_DIR``), beside the cached objects, what loading the version again
needs (``storage.records``: content-addressed JSON, verified on every read):

- ``version``: the version's spec, non-tensor state, manifest and what ``Registry.version`` shows
  (created_at, metadata, tags, ...), keyed by (database, model, version);
- ``alias``: a sighting of each alias pointing at the loaded version (and ``latest`` when it was the
  latest), keyed by (database, model, alias): the version and when it was seen;
- ``storage``: where the database kept the objects (a local folder is read in place offline).

The database is named by its URL, password dropped (a SQLite file by its absolute path); an
in-memory SQLite database records nothing. Offline, ``Registry`` never opens the database:
``NAME@alias`` (and the latest) resolve from the last sighting with an ``OfflineAliasWarning`` that
names when that was, and anything not recorded is a ``NotCachedError`` saying to load it online once.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from storage.errors import IntegrityError as StorageIntegrityError
from storage.errors import StorageError
from storage.records import RecordCache

from registry import db, errors
from registry.uri import LATEST

log = logging.getLogger(__name__)
FOLDER = "offline"  # under the cache folder: records/ and index/
ONLINE = "with RLREG_OFFLINE unset (offline=False)"
SIGHTING_REFRESH = 60.0  # seconds: a sighting of the same version younger than this is not rewritten
_RECORDED_KEPT = 64  # versions whose last recording ``remember`` keeps (as many as a registry keeps reads)


@dataclass(frozen=True)
class OfflineRow:
    """A version as the cache recorded it: the fields of a projected version row that loads read."""

    name: str
    version: int
    manifest: dict
    state: Any
    metadata: dict
    created_at: datetime.datetime | None
    spec_digest: str
    tensor_bytes: int = 0
    position: int = 0
    actor: Any = None
    tags: dict = field(default_factory=dict)
    description: str | None = None
    aliases: tuple[str, ...] = ()


def db_identity(db_url: str) -> str | None:
    """The key of a database in the cache: its URL without password (``None``: in-memory SQLite)."""
    parsed = db.normalize_url(db_url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return None
        parsed = parsed.set(database=os.path.abspath(database))
    return parsed.set(password=None).render_as_string(hide_password=False)


class Unreachable:
    """The event store of an offline registry: every use is an ``OfflineError`` (nothing connects)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.closed = False

    def close(self) -> None:
        """Nothing to release (loads from the cache go on working)."""
        self.closed = True

    def __getattr__(self, attr: str) -> Any:
        raise refused(self.where, "this operation")


def refused(where: str, what: str) -> errors.OfflineError:
    """The error of an operation that needs the database, asked offline."""
    return errors.OfflineError(
        f"{what} needs the database {where}, which RLREG_OFFLINE=1 does not contact: offline, only loads "
        f"of versions already in the cache work (load, export, show); unset RLREG_OFFLINE to reach the database"
    )


class OfflineCache:
    """The records of one database in one cache folder: written by online loads, read offline."""

    def __init__(self, cache_dir: str, db_url: str, where: str) -> None:
        self.folder = os.path.abspath(cache_dir)
        self.records = RecordCache(os.path.join(self.folder, FOLDER))
        self.db = db_identity(db_url)
        self.where = where
        self._warned = False
        # (name, version) -> (row, aliases, latest, storage URL) last recorded: a load that read the very
        # same row (the registry's kept read) records nothing again while its files are unchanged
        self._recorded: dict[tuple[str, int], tuple] = {}

    # -- online: remember what a load needed --------------------------------------------------------

    def remember(self, row: Any, spec: dict, aliases: tuple[str, ...], latest: bool, storage_url: str | None,
                 *, kept: bool = False) -> None:
        """Record a version just read from the database, and the aliases seen pointing at it now.

        ``kept``: ``row`` is a read the registry keeps, which the next load may hand in again (the same
        object, while the database is unchanged). Never fails the load: a cache that cannot be written
        only loses the offline copy (logged).
        """
        if self.db is None:
            return
        try:
            if kept and self._recorded_already(row, aliases, latest, storage_url):
                return
            self.records.put(["version", self.db, row.name, row.version], {
                "name": row.name, "version": row.version, "spec": spec, "manifest": row.manifest,
                "state": row.state or {}, "metadata": row.metadata or {}, "spec_digest": row.spec_digest,
                "created_at": row.created_at.isoformat() if row.created_at is not None else None,
                "tensor_bytes": row.tensor_bytes, "position": row.position, "actor": row.actor,
                "tags": row.tags or {}, "description": row.description, "aliases": sorted(aliases),
            })
            now = datetime.datetime.now(datetime.timezone.utc)
            for alias in (*aliases, *([LATEST] if latest else [])):
                key = ["alias", self.db, row.name, alias]
                if not self._seen_lately(key, row.version, now):
                    self.records.put(key, {"version": row.version, "seen_at": now.isoformat()})
            if storage_url:
                self.records.put(["storage", self.db], {"url": storage_url})
            if kept:
                if len(self._recorded) >= _RECORDED_KEPT:
                    self._recorded.clear()
                self._recorded[(row.name, row.version)] = (row, aliases, latest, storage_url, time.time())
        except (OSError, ValueError, TypeError, StorageError) as exc:
            level = logging.DEBUG if self._warned else logging.WARNING  # once per registry, not per load
            self._warned = True
            log.log(level, "model %r version %s could not be recorded in the cache %s for offline loads: %s",
                    row.name, row.version, self.folder, exc)

    def _recorded_already(self, row: Any, aliases: tuple[str, ...], latest: bool, storage_url: str | None) -> bool:
        """Whether the last ``remember`` of this version had this very row (not an equal one: the same
        object), the same aliases, latest and storage URL, less than ``SIGHTING_REFRESH`` ago, the
        version, storage and sighting records it put or read are unchanged on disk (one stat each):
        then all it would write is there already, and a sighting is at most twice ``SIGHTING_REFRESH``
        old (by the wall clock: a machine suspended meanwhile counts) when it is rewritten. A 1 MiB load
        spent 150 us making and comparing the records again."""
        last = self._recorded.get((row.name, row.version))
        if last is None or last[0] is not row or last[1:4] != (aliases, latest, storage_url):
            return False
        if not 0 <= time.time() - last[4] < SIGHTING_REFRESH:
            return False  # the sightings' times are due to be refreshed (or the clock was set back)
        keys = [["version", self.db, row.name, row.version], *([["storage", self.db]] if storage_url else []),
                *(["alias", self.db, row.name, a] for a in (*aliases, *([LATEST] if latest else [])))]
        return all(self.records.unchanged(key) for key in keys)

    def _seen_lately(self, key: list, version: int, now: datetime.datetime) -> bool:
        """Whether the sighting of ``key`` names ``version`` and is younger than ``SIGHTING_REFRESH``."""
        try:
            found = self.records.known(key) or self.records.get(key)
            seen_at = datetime.datetime.fromisoformat(found["seen_at"])
            return found["version"] == version and (now - seen_at).total_seconds() < SIGHTING_REFRESH
        except (StorageError, KeyError, TypeError, ValueError):
            return False  # none yet, or damaged: written afresh

    # -- offline: read it back ---------------------------------------------------------------------

    def storage_url(self) -> str | None:
        """The storage URL the database recorded when last seen, or ``None``."""
        found = self._get(["storage", self.db]) if self.db is not None else None
        url = found.get("url") if isinstance(found, dict) else None
        return url if isinstance(url, str) else None

    def version(self, name: str, version: int) -> tuple[OfflineRow, dict]:
        """The recorded row and spec of ``name`` version ``version``; ``NotCachedError`` if not recorded."""
        from registry.projections import spec_digest

        key = ["version", self.db, name, version]
        value = self._get(key) if self.db is not None else None
        if value is None:
            raise errors.NotCachedError(
                f"model {name!r} version {version} is not in the offline cache {self.folder} (of the database "
                f"{self.where}): RLREG_OFFLINE=1 loads only versions loaded once online with this cache; "
                f"load it once online, {ONLINE}, and it loads offline from then on"
            )
        try:
            created = value["created_at"]
            row = OfflineRow(
                name=value["name"], version=value["version"], manifest=dict(value["manifest"]),
                state=value["state"], metadata=dict(value["metadata"]),
                created_at=datetime.datetime.fromisoformat(created) if created else None,
                spec_digest=value["spec_digest"], tensor_bytes=int(value["tensor_bytes"] or 0),
                position=int(value["position"] or 0), actor=value["actor"], tags=dict(value["tags"] or {}),
                description=value["description"], aliases=tuple(value["aliases"]),
            )
            spec = dict(value["spec"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self._damaged(key, f"a field is missing or of the wrong type ({exc!r})") from None
        if (row.name, row.version) != (name, version) or spec_digest(spec) != row.spec_digest:
            raise self._damaged(key, "its spec does not match its spec digest")
        return row, spec

    def resolve(self, name: str, alias: str | None) -> int:
        """The version ``alias`` (``None``/``latest``: the latest) named when last seen, with a warning."""
        alias = alias or LATEST
        key = ["alias", self.db, name, alias]
        value = self._get(key) if self.db is not None else None
        what = "its latest version" if alias == LATEST else f"alias {alias!r}"
        if value is None:
            raise errors.NotCachedError(
                f"model {name!r}: {what} was never seen by a load online with the offline cache {self.folder} "
                f"(of the database {self.where}): load it once online, {ONLINE}, or name a cached version"
            )
        try:
            version, seen_at = int(value["version"]), datetime.datetime.fromisoformat(value["seen_at"])
        except (KeyError, TypeError, ValueError) as exc:
            raise self._damaged(key, f"a field is missing or of the wrong type ({exc!r})") from None
        when = f"{seen_at.astimezone(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC ({_ago(seen_at)})"
        said = "was its latest version" if alias == LATEST else f"is where alias {alias!r} pointed"
        warnings.warn(
            f"RLREG_OFFLINE=1: model {name!r}@{alias} resolved to version {version}, which {said} when "
            f"last seen online, at {when}; it may have changed since", errors.OfflineAliasWarning, stacklevel=4,
        )
        return version

    def _get(self, key: list) -> Any:
        try:
            return self.records.get(key)
        except StorageIntegrityError as exc:
            raise errors.IntegrityError(str(exc)) from exc

    def _damaged(self, key: list, why: str) -> errors.IntegrityError:
        path = self.records.path(key)
        return errors.IntegrityError(
            f"damaged cache record {path} ({'/'.join(map(str, key[2:]))}): {why}; delete it "
            "and load the version once online to record it again"
        )


def _ago(moment: datetime.datetime) -> str:
    seconds = max(0.0, (datetime.datetime.now(datetime.timezone.utc) - moment).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"
