"""Read models derived from the log (models, versions, aliases, specs), applied in the append's transaction.

Event types (stream = model name; payloads are JSON):

- ``SpecRecorded``    ``{"spec": {...}, "spec_digest": sha256 of canonical JSON}``
- ``VersionRecorded`` ``{"version": N, "spec_digest", "manifest", "state", "metadata", "tensor_bytes"}``
- ``AliasSet``        ``{"alias": str, "version": int}``
- ``AliasRemoved``    ``{"alias": str}``
- ``TagsSet``         ``{"version": N, "tags": {key: text}}`` (merged into the version's tags)
- ``TagsRemoved``     ``{"version": N, "keys": [key, ...]}``
- ``DescriptionSet``  ``{"version": N or null (the model), "text": str ("" clears it)}``
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
from registry.query import encode_key, field_rows
from registry.schema import PROJECTION_TABLES, aliases, deleted_models, models, specs, version_fields, versions

SPEC_RECORDED = "SpecRecorded"
VERSION_RECORDED = "VersionRecorded"
ALIAS_SET = "AliasSet"
ALIAS_REMOVED = "AliasRemoved"
TAGS_SET = "TagsSet"
TAGS_REMOVED = "TagsRemoved"
DESCRIPTION_SET = "DescriptionSet"
EVENT_TYPES = (SPEC_RECORDED, VERSION_RECORDED, ALIAS_SET, ALIAS_REMOVED, TAGS_SET, TAGS_REMOVED, DESCRIPTION_SET)


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj``: sorted keys, no spaces, UTF-8 characters kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def spec_digest(spec: Any) -> str:
    """The sha256 hex digest of a spec dict's canonical JSON."""
    return text_digest(canonical_json(spec))


def text_digest(text: str) -> str:
    """``spec_digest`` of the spec whose canonical JSON is ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Whether the model is deleted, returned with its row: a deleted model that records something again is
# revived (lifecycle.revive), and the statement that would do it is not run for the others.
_DELETED = sa.exists().where(deleted_models.c.name == sa.bindparam("b_name")).label("deleted")
_TOUCH_MODEL = (models.update().where(models.c.name == sa.bindparam("b_name"))
                .values(updated_at=sa.bindparam("b_updated_at"), position=sa.bindparam("b_position"))
                .returning(*models.c, _DELETED))


_SPEC_KNOWN = sa.select(specs.c.digest).where(specs.c.digest == sa.bindparam("b_digest"))
_INSERT_VERSION = versions.insert()
_SET_LATEST = (models.update().where(models.c.name == sa.bindparam("b_name"))
               .values(latest_version=sa.bindparam("b_latest")))


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
            TAGS_SET: self._tags_set,
            TAGS_REMOVED: self._tags_removed,
            DESCRIPTION_SET: self._description_set,
            **lifecycle.handlers(),
            **retention.handlers(),
        }

    def _touch_model(self, conn: Connection, event: Event) -> Any:
        """The model's row after this event touched it (made for a new stream): one statement, most often."""
        row = conn.execute(_TOUCH_MODEL, {"b_name": event.stream, "b_updated_at": event.timestamp,
                                          "b_position": event.position}).first()
        if row is not None:
            return row
        return conn.execute(
            models.insert().values(
                name=event.stream, latest_version=0, spec_digest=None,
                created_at=event.timestamp, updated_at=event.timestamp, position=event.position,
            ).returning(*models.c, _DELETED),
            {"b_name": event.stream},
        ).one()

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
        if model.deleted:
            lifecycle.revive(conn, event.stream)

    def _version_recorded(self, conn: Connection, event: Event, model: Any) -> None:
        p = event.payload
        version = p["version"]
        if version != model.latest_version + 1:
            raise errors.ConflictError(
                f"model {event.stream!r}: version {version!r} recorded after version {model.latest_version} "
                f"(expected {model.latest_version + 1})"
            )
        # the model's own spec is known (a model takes a digest only once its spec is recorded): not read again
        known = model.spec_digest is not None and p["spec_digest"] == model.spec_digest
        if not known and conn.execute(_SPEC_KNOWN, {"b_digest": p["spec_digest"]}).scalar() is None:
            raise errors.NotFoundError(
                f"model {event.stream!r} version {version}: spec {p['spec_digest']!r} was never recorded"
            )
        conn.execute(
            _INSERT_VERSION,
            dict(name=event.stream, version=version, spec_digest=p["spec_digest"], manifest=p["manifest"],
                 state=p["state"], metadata=p["metadata"], tensor_bytes=p["tensor_bytes"],
                 created_at=event.timestamp, position=event.position, actor=event.actor),
        )
        self._index(conn, event.stream, version, "metadata", p["metadata"])
        conn.execute(_SET_LATEST, {"b_name": event.stream, "b_latest": version})
        if model.deleted:
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

    def _version_row(self, conn: Connection, event: Event, model: Any, version: Any) -> Any:
        row = conn.execute(
            sa.select(versions.c.tags).where(versions.c.name == event.stream, versions.c.version == version)
        ).first()
        if row is None:
            raise errors.NotFoundError(
                f"model {event.stream!r} has no version {version!r} (latest is {model.latest_version})"
            )
        return row

    def _set_version(self, conn: Connection, event: Event, version: int, **values: Any) -> None:
        conn.execute(
            versions.update().where(versions.c.name == event.stream, versions.c.version == version).values(**values)
        )

    def _tags_set(self, conn: Connection, event: Event, model: Any) -> None:
        version, tags = event.payload["version"], event.payload["tags"]
        current = self._version_row(conn, event, model, version).tags or {}
        self._set_version(conn, event, version, tags={**current, **tags})
        self._unindex(conn, event.stream, version, "tags", list(tags))
        self._index(conn, event.stream, version, "tags", tags)

    def _tags_removed(self, conn: Connection, event: Event, model: Any) -> None:
        version, keys = event.payload["version"], event.payload["keys"]
        tags = dict(self._version_row(conn, event, model, version).tags or {})
        missing = [k for k in keys if k not in tags]
        if missing:
            raise errors.NotFoundError(
                f"model {event.stream!r} version {version} has no tag {', '.join(map(repr, missing))} to remove"
            )
        self._set_version(conn, event, version, tags={k: v for k, v in tags.items() if k not in keys})
        self._unindex(conn, event.stream, version, "tags", keys)

    def _description_set(self, conn: Connection, event: Event, model: Any) -> None:
        version, text = event.payload["version"], event.payload["text"] or None
        if version is None:
            conn.execute(models.update().where(models.c.name == event.stream).values(description=text))
            return
        self._version_row(conn, event, model, version)
        self._set_version(conn, event, version, description=text)

    def _index(self, conn: Connection, name: str, version: int, source: str, values: Any) -> None:
        """Add the search rows of ``values`` (``registry.query.field_rows``)."""
        rows = field_rows(name, version, source, values or {})
        if rows:
            conn.execute(version_fields.insert(), rows)

    def _unindex(self, conn: Connection, name: str, version: int, source: str, keys: list[str]) -> None:
        f = version_fields.c
        encoded = [encode_key((k,)) for k in keys]
        conn.execute(version_fields.delete().where(f.name == name, f.version == version, f.source == source,
                                                   f.key.in_(encoded)))
