"""Read models derived from the log (models, versions, aliases, specs), applied in the append's transaction.

Event types (stream = model name; payloads are JSON):

- ``SpecRecorded``    ``{"spec": {...}, "spec_digest": sha256 of canonical JSON}``
- ``VersionRecorded`` ``{"version": N, "spec_digest", "manifest", "state", "metadata", "tensor_bytes"}``
- ``AliasSet``        ``{"alias": str, "version": int}``
- ``AliasRemoved``    ``{"alias": str}``
- ``VersionDeleted``, ``ModelDeleted``, ``VersionRestored``: see ``registry.lifecycle``
- ``RetentionSet``, ``RetentionCleared``: see ``registry.retention``

The projector also guards the log: a version that is not the next one, a version naming an unknown
spec, an alias to a missing version or the removal of a missing alias raise, which rolls the append back.
Other event types are left to other consumers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry import errors, lifecycle, retention
from registry.eventstore import Event
from registry.schema import PROJECTION_TABLES, aliases, models, specs, versions

SPEC_RECORDED = "SpecRecorded"
VERSION_RECORDED = "VersionRecorded"
ALIAS_SET = "AliasSet"
ALIAS_REMOVED = "AliasRemoved"
EVENT_TYPES = (SPEC_RECORDED, VERSION_RECORDED, ALIAS_SET, ALIAS_REMOVED)


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj``: sorted keys, no spaces, UTF-8 characters kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def spec_digest(spec: Any) -> str:
    """The sha256 hex digest of a spec dict's canonical JSON."""
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()


class Projections:
    """The projector of the registry's read models (``EventStore(url, projector=Projections())``)."""

    def handles(self, event_type: str) -> bool:
        """True for the event types these read models are made of (the store skips the rest)."""
        return event_type in EVENT_TYPES or event_type in lifecycle.EVENT_TYPES or event_type in retention.EVENT_TYPES

    def apply(self, conn: Connection, event: Event) -> None:
        """Apply one event to the read models."""
        handler = self._handlers().get(event.type)
        if handler is None:
            return
        model = self._touch_model(conn, event)
        try:
            handler(conn, event, model)
        except (KeyError, TypeError) as e:
            raise errors.InvalidEventError(
                f"event {event.type} at stream {event.stream!r} has a malformed payload: {e!r}"
            ) from e

    def clear(self, conn: Connection) -> None:
        """Delete every projection row."""
        for table in PROJECTION_TABLES:
            conn.execute(table.delete())

    def dump(self, conn: Connection) -> dict[str, list[dict[str, Any]]]:
        """Every projection row, table by table in primary-key order (to compare a rebuild with the live rows)."""
        return {
            table.name: [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*table.primary_key))]
            for table in PROJECTION_TABLES
        }

    def _handlers(self) -> dict[str, Callable[[Connection, Event, Any], None]]:
        return {
            SPEC_RECORDED: self._spec_recorded,
            VERSION_RECORDED: self._version_recorded,
            ALIAS_SET: self._alias_set,
            ALIAS_REMOVED: self._alias_removed,
            **lifecycle.handlers(),
            **retention.handlers(),
        }

    def _touch_model(self, conn: Connection, event: Event) -> Any:
        row = conn.execute(sa.select(models).where(models.c.name == event.stream)).first()
        if row is None:
            conn.execute(
                models.insert().values(
                    name=event.stream, latest_version=0, spec_digest=None,
                    created_at=event.timestamp, updated_at=event.timestamp, position=event.position,
                )
            )
        else:
            conn.execute(
                models.update()
                .where(models.c.name == event.stream)
                .values(updated_at=event.timestamp, position=event.position)
            )
        return conn.execute(sa.select(models).where(models.c.name == event.stream)).one()

    def _spec_recorded(self, conn: Connection, event: Event, model: Any) -> None:
        spec, digest = event.payload["spec"], event.payload["spec_digest"]
        if spec_digest(spec) != digest:
            raise errors.IntegrityError(
                f"SpecRecorded for {event.stream!r}: spec_digest {digest!r} is not the digest of its spec "
                f"({spec_digest(spec)!r})"
            )
        known = conn.execute(sa.select(specs.c.digest).where(specs.c.digest == digest)).scalar()
        if known is None:
            conn.execute(specs.insert().values(digest=digest, spec=spec, position=event.position))
        conn.execute(models.update().where(models.c.name == event.stream).values(spec_digest=digest))
        lifecycle.revive(conn, event.stream)

    def _version_recorded(self, conn: Connection, event: Event, model: Any) -> None:
        p = event.payload
        version = p["version"]
        if version != model.latest_version + 1:
            raise errors.ConflictError(
                f"model {event.stream!r}: version {version!r} recorded after version {model.latest_version} "
                f"(expected {model.latest_version + 1})"
            )
        if conn.execute(sa.select(specs.c.digest).where(specs.c.digest == p["spec_digest"])).scalar() is None:
            raise errors.NotFoundError(
                f"model {event.stream!r} version {version}: spec {p['spec_digest']!r} was never recorded"
            )
        conn.execute(
            versions.insert().values(
                name=event.stream, version=version, spec_digest=p["spec_digest"], manifest=p["manifest"],
                state=p["state"], metadata=p["metadata"], tensor_bytes=p["tensor_bytes"],
                created_at=event.timestamp, position=event.position,
            )
        )
        conn.execute(models.update().where(models.c.name == event.stream).values(latest_version=version))
        lifecycle.revive(conn, event.stream)

    def _alias_set(self, conn: Connection, event: Event, model: Any) -> None:
        alias, version = event.payload["alias"], event.payload["version"]
        exists = conn.execute(
            sa.select(versions.c.version).where(versions.c.name == event.stream, versions.c.version == version)
        ).scalar()
        if exists is None:
            raise errors.NotFoundError(
                f"model {event.stream!r}: alias {alias!r} cannot point at version {version!r}, which does not "
                f"exist (latest is {model.latest_version})"
            )
        lifecycle.refuse_deleted(conn, event.stream, version)
        where = (aliases.c.name == event.stream, aliases.c.alias == alias)
        conn.execute(aliases.delete().where(*where))
        conn.execute(
            aliases.insert().values(
                name=event.stream, alias=alias, version=version, updated_at=event.timestamp, position=event.position
            )
        )

    def _alias_removed(self, conn: Connection, event: Event, model: Any) -> None:
        alias = event.payload["alias"]
        gone = conn.execute(aliases.delete().where(aliases.c.name == event.stream, aliases.c.alias == alias))
        if gone.rowcount != 1:
            raise errors.NotFoundError(f"model {event.stream!r} has no alias {alias!r} to remove")
