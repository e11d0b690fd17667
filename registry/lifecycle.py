"""Deleting and restoring versions and models: events, their projection, and the reads that honour them.

Deletion is an event; the log stays append-only. Event types (stream = model name):

- ``VersionDeleted``  ``{"version": N, "reason": str}``
- ``ModelDeleted``    ``{"reason": str, "versions": [the live versions it deletes]}`` (it also ends the
                      model's retention policy: a model made again under the name starts without one)
- ``VersionRestored`` ``{"version": N}``

A deleted version keeps its ``rlreg_versions`` row (and its number: numbering never goes back);
``rlreg_deleted_versions`` says when, by whom and why it was deleted. A deleted model's name can be
used again: its next ``VersionRecorded`` (or ``SpecRecorded``) brings it back and continues the
numbering. Deleting a version an alias points at is refused; ``force`` removes those aliases first,
as ``AliasRemoved`` events of the same append.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from registry import errors
from registry.eventstore import Event, NewEvent
from registry.records import Deletion
from registry.schema import aliases, deleted_models, deleted_versions, models, retention, versions

VERSION_DELETED = "VersionDeleted"
MODEL_DELETED = "ModelDeleted"
VERSION_RESTORED = "VersionRestored"
ALIAS_REMOVED = "AliasRemoved"
EVENT_TYPES = (VERSION_DELETED, MODEL_DELETED, VERSION_RESTORED)
MAX_REASON = 1000


def check_reason(name: str, reason: Any) -> str:
    """``reason`` if it is a non-empty text of at most ``MAX_REASON`` characters."""
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON or "\0" in reason:
        raise errors.InvalidEventError(
            f"deleting from model {name!r}: reason must be a non-empty text of at most {MAX_REASON} "
            f"characters (why it is deleted) without NUL (\\0), got {reason!r:.80}"
        )
    return reason.strip()


def describe_actor(actor: Any) -> str:
    """``alice (bob@host)`` for an event's actor; what we have when it is partial or missing."""
    if not isinstance(actor, dict) or not actor:
        return "an unrecorded actor"
    who = f"{actor.get('user', '?')}@{actor.get('host', '?')}"
    return f"{actor['actor']} ({who})" if actor.get("actor") else who


# --- reads ------------------------------------------------------------------------------------


def _deletion(row: Any) -> Deletion:
    return Deletion(deleted_at=row.deleted_at, reason=row.reason, actor=row.actor, position=row.position)


def deletions(conn: Connection, name: str, numbers: Iterable[int] | None = None) -> dict[int, Deletion]:
    """``{version: Deletion}`` of ``name``'s deleted versions (of those among ``numbers`` only, if given)."""
    query = sa.select(deleted_versions).where(deleted_versions.c.name == name)
    if numbers is None:
        return {r.version: _deletion(r) for r in conn.execute(query)}
    query = query.where(deleted_versions.c.version.in_(sa.bindparam("numbers", expanding=True)))
    wanted = sorted(set(numbers))
    return {r.version: _deletion(r) for at in range(0, len(wanted), 500)
            for r in conn.execute(query, {"numbers": wanted[at:at + 500]})}


def not_deleted(name: str, version: Any) -> Any:
    """The SQL condition that version ``version`` (a column) of ``name`` is not deleted (one ``NOT EXISTS``,
    not a list of the deleted ones: a model kept by a ``keep_last`` policy may have deleted 100,000)."""
    dv = deleted_versions.c
    return ~sa.exists().where(dv.name == name, dv.version == version)


def model_deletion(conn: Connection, name: str) -> Deletion | None:
    """How ``name`` was deleted as a whole, or ``None`` when it is live."""
    row = conn.execute(sa.select(deleted_models).where(deleted_models.c.name == name)).first()
    return _deletion(row) if row is not None else None


def deleted_model_names(conn: Connection) -> set[str]:
    """The names of the deleted models."""
    return set(conn.execute(sa.select(deleted_models.c.name)).scalars())


def live_versions(conn: Connection, name: str | None = None) -> sa.Select:
    """A select of the ``rlreg_versions`` rows that are not deleted (of ``name``, or of every model)."""
    gone = sa.select(deleted_versions.c.version).where(
        deleted_versions.c.name == versions.c.name, deleted_versions.c.version == versions.c.version
    )
    query = sa.select(versions).where(~gone.exists())
    return query if name is None else query.where(versions.c.name == name)


def _error(name: str, version: int | None, d: Deletion, what: str) -> errors.DeletedError:
    return errors.DeletedError(
        f"{what} was deleted at {d.deleted_at:%Y-%m-%d %H:%M:%S} UTC by {describe_actor(d.actor)} "
        f"(event {d.position}): {d.reason}",
        name=name, version=version, deleted_at=d.deleted_at, actor=d.actor, reason=d.reason, position=d.position,
    )


def refuse_deleted(conn: Connection, name: str, version: int) -> None:
    """Raise ``DeletedError`` (when, who, why, how to undo) if ``version`` of ``name`` is deleted."""
    row = version_row(conn, name, version)
    if row is not None:
        refuse_deleted_row(row)


def model_query(name: str) -> sa.Select:
    """The ``rlreg_models`` row of ``name`` with how it was deleted (``model_deleted_at`` etc., or nulls)."""
    joined = models.outerjoin(deleted_models, deleted_models.c.name == models.c.name)
    return sa.select(
        models, deleted_models.c.deleted_at.label("model_deleted_at"), deleted_models.c.reason.label("model_deletion_reason"),
        deleted_models.c.actor.label("model_deletion_actor"), deleted_models.c.position.label("model_deletion_position"),
    ).select_from(joined).where(models.c.name == name)


def version_query(name: str, version: int, json_text: bool = False) -> sa.Select:
    """The ``rlreg_versions`` row of a version with how it was deleted (``deleted_at`` etc., or nulls);
    ``json_text``: its ``manifest`` and ``state`` as JSON text, not parsed (for who keeps them parsed)."""
    joined = versions.outerjoin(deleted_versions, sa.and_(
        deleted_versions.c.name == versions.c.name, deleted_versions.c.version == versions.c.version))
    columns = [sa.cast(c, sa.Text).label(c.name) if json_text and c.name in ("manifest", "state") else c
               for c in versions.c]
    return sa.select(
        *columns, deleted_versions.c.deleted_at, deleted_versions.c.reason.label("deletion_reason"),
        deleted_versions.c.actor.label("deletion_actor"), deleted_versions.c.position.label("deletion_position"),
    ).select_from(joined).where(versions.c.name == name, versions.c.version == version)


# Built once, with parameters: building a statement per call costs more than the read itself.
_MODEL_QUERY = model_query(sa.bindparam("model_name"))
_VERSION_QUERY = {text: version_query(sa.bindparam("version_name"), sa.bindparam("version_number"), text)
                  for text in (False, True)}
_ALIASED = sa.select(aliases.c.version).where(aliases.c.name == sa.bindparam("version_name"),
                                              aliases.c.alias == sa.bindparam("alias")).scalar_subquery()
_ALIASED_QUERY = {text: version_query(sa.bindparam("version_name"), _ALIASED, text) for text in (False, True)}


_REVIVE = deleted_models.delete().where(deleted_models.c.name == sa.bindparam("b_name"))


def model_row(conn: Connection, name: str) -> Any:
    """The row of ``model_query(name)``, or ``None``."""
    return conn.execute(_MODEL_QUERY, {"model_name": name}).first()


def version_row(conn: Connection, name: str, version: int, json_text: bool = False) -> Any:
    """The row of ``version_query(name, version, json_text)``, or ``None``."""
    return conn.execute(_VERSION_QUERY[json_text], {"version_name": name, "version_number": version}).first()


def aliased_row(conn: Connection, name: str, alias: str, json_text: bool = False) -> Any:
    """The row of ``version_query`` for the version ``alias`` points at (one statement), or ``None``."""
    return conn.execute(_ALIASED_QUERY[json_text], {"version_name": name, "alias": alias}).first()


def refuse_deleted_row(row: Any) -> None:
    """Raise ``DeletedError`` if ``row`` (of ``version_query``) is a deleted version."""
    if row.deleted_at is not None:
        d = Deletion(row.deleted_at, row.deletion_reason, row.deletion_actor, row.deletion_position)
        err = _error(row.name, row.version, d, f"model {row.name!r} version {row.version}")
        err.args = (f"{err.args[0]}; `rlreg restore {row.name}:{row.version}` brings it back until gc reclaims it",)
        raise err


def latest_row(conn: Connection, model: Any, json_text: bool = False) -> Any:
    """The newest live version's row of ``model`` (a ``model_query`` row); ``DeletedError`` if none is left."""
    name = model.name
    if model.model_deleted_at is not None:
        d = Deletion(model.model_deleted_at, model.model_deletion_reason, model.model_deletion_actor,
                     model.model_deletion_position)
        raise _error(name, None, d, f"model {name!r}")
    if model.latest_version == 0:
        raise errors.NotFoundError(f"model {name!r} has no versions yet (only a spec)")
    row = version_row(conn, name, model.latest_version, json_text)
    if row.deleted_at is None:
        return row
    latest = conn.execute(sa.select(sa.func.max(live_versions(conn, name).subquery().c.version))).scalar()
    if latest is None:
        refuse_deleted_row(row)  # every version is deleted: say who deleted the last
    return version_row(conn, name, latest, json_text)


def live_model(conn: Connection, name: str) -> Any:
    """The ``rlreg_models`` row of a live model; ``NotFoundError``/``DeletedError`` otherwise."""
    model = conn.execute(sa.select(models).where(models.c.name == name)).first()
    if model is None:
        raise errors.NotFoundError(f"no model named {name!r}")
    gone = model_deletion(conn, name)
    if gone is not None:
        raise _error(name, None, gone, f"model {name!r}")
    return model


def aliases_at(conn: Connection, name: str, version: int | None = None) -> list[str]:
    """The aliases of ``name`` (pointing at ``version``, when given), sorted."""
    query = sa.select(aliases.c.alias).where(aliases.c.name == name)
    if version is not None:
        query = query.where(aliases.c.version == version)
    return sorted(conn.execute(query).scalars())


# --- the events an API call appends --------------------------------------------------------------


def _refuse_aliased(name: str, what: str, names: list[str], force: bool) -> list[NewEvent]:
    if names and not force:
        listed = ", ".join(f"{name}@{a}" for a in names)
        raise errors.ConflictError(
            f"cannot delete {what}: aliases point at it ({listed}); move or remove them "
            "(rlreg alias rm), or delete with force=True (rlreg rm --force) to remove them in the same append"
        )
    return [NewEvent(ALIAS_REMOVED, {"alias": a}) for a in names]


def version_deleted(conn: Connection, name: str, version: int, reason: str, force: bool) -> list[NewEvent]:
    """``[AliasRemoved..., VersionDeleted]`` for deleting a live version (``ConflictError`` if aliased)."""
    removed = _refuse_aliased(name, f"model {name!r} version {version}", aliases_at(conn, name, version), force)
    return [*removed, NewEvent(VERSION_DELETED, {"version": version, "reason": reason})]


def model_deleted(conn: Connection, name: str, reason: str, force: bool) -> list[NewEvent]:
    """``[AliasRemoved..., ModelDeleted]`` for deleting a live model (``ConflictError`` if aliased)."""
    live_model(conn, name)
    removed = _refuse_aliased(name, f"model {name!r}", aliases_at(conn, name), force)
    live = [r.version for r in conn.execute(live_versions(conn, name).order_by(versions.c.version))]
    return [*removed, NewEvent(MODEL_DELETED, {"reason": reason, "versions": live})]


def version_restored(conn: Connection, name: str, version: int) -> list[NewEvent]:
    """``[VersionRestored]`` for a deleted version (``ConflictError`` when it is not deleted)."""
    exists = conn.execute(
        sa.select(versions.c.version).where(versions.c.name == name, versions.c.version == version)
    ).first()
    if exists is None:
        raise errors.NotFoundError(f"model {name!r} has no version {version} to restore")
    if version not in deletions(conn, name):
        raise errors.ConflictError(f"model {name!r} version {version} is not deleted: nothing to restore")
    return [NewEvent(VERSION_RESTORED, {"version": version})]


# --- projection -----------------------------------------------------------------------------------


def _insert_deletion(conn: Connection, table: sa.Table, event: Event, reason: str, **key: Any) -> None:
    conn.execute(table.insert().values(
        **key, deleted_at=event.timestamp, reason=reason, actor=getattr(event, "actor", None), position=event.position,
    ))


def apply_version_deleted(conn: Connection, event: Event, model: Any) -> None:
    """Project ``VersionDeleted``: the version must exist, be live and have no alias."""
    name, version = event.stream, event.payload["version"]
    if conn.execute(sa.select(versions.c.version).where(versions.c.name == name, versions.c.version == version)).first() is None:
        raise errors.NotFoundError(f"model {name!r} has no version {version!r} to delete")
    refuse_deleted(conn, name, version)
    _refuse_aliased(name, f"model {name!r} version {version}", aliases_at(conn, name, version), False)
    _insert_deletion(conn, deleted_versions, event, event.payload["reason"], name=name, version=version)


def apply_model_deleted(conn: Connection, event: Event, model: Any) -> None:
    """Project ``ModelDeleted``: every live version is deleted, the model is hidden and its retention
    policy ends (it would otherwise delete the versions of a model made again under the name, while
    ``retention show``/``clear`` refuse the deleted model)."""
    name, reason = event.stream, event.payload["reason"]
    if model_deletion(conn, name) is not None:
        raise errors.ConflictError(f"model {name!r} is already deleted")
    _refuse_aliased(name, f"model {name!r}", aliases_at(conn, name), False)
    for row in conn.execute(live_versions(conn, name)).all():
        _insert_deletion(conn, deleted_versions, event, reason, name=name, version=row.version)
    _insert_deletion(conn, deleted_models, event, reason, name=name)
    conn.execute(retention.delete().where(retention.c.name == name))


def apply_version_restored(conn: Connection, event: Event, model: Any) -> None:
    """Project ``VersionRestored``: the version is live again, and so is its model."""
    name, version = event.stream, event.payload["version"]
    gone = conn.execute(
        deleted_versions.delete().where(deleted_versions.c.name == name, deleted_versions.c.version == version)
    )
    if gone.rowcount != 1:
        raise errors.ConflictError(f"model {name!r} version {version!r} is not deleted: nothing to restore")
    revive(conn, name)
    policy = conn.execute(sa.select(retention.c.restored).where(retention.c.name == name)).first()
    if policy is not None:  # its retention policy keeps it (registry.retention)
        restored = sorted({*(policy.restored or ()), version})
        conn.execute(retention.update().where(retention.c.name == name).values(restored=restored))


def revive(conn: Connection, name: str) -> None:
    """A deleted model whose name records something again is live again (its old versions stay deleted)."""
    conn.execute(_REVIVE, {"b_name": name})


def handlers() -> dict[str, Any]:
    """The projector's handlers of the lifecycle events."""
    return {
        VERSION_DELETED: apply_version_deleted,
        MODEL_DELETED: apply_model_deleted,
        VERSION_RESTORED: apply_version_restored,
    }


def live_counts(conn: Connection) -> dict[str, tuple[int, int]]:
    """``{model: (live versions, newest live version)}`` of every model with a live version."""
    live = live_versions(conn).subquery()
    rows = conn.execute(sa.select(live.c.name, sa.func.count(), sa.func.max(live.c.version)).group_by(live.c.name))
    return {name: (count, newest) for name, count, newest in rows}


def manifest_of(conn: Connection, name: str, version: int) -> dict:
    """The manifest of a version, deleted or not."""
    return conn.execute(
        sa.select(versions.c.manifest).where(versions.c.name == name, versions.c.version == version)
    ).scalar_one()
