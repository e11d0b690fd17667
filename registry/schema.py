"""The tables of the event store and its projections (SQLAlchemy Core tables; Alembic owns the DDL).

Core, not ORM models: nothing maps rows to objects, and ``sqlalchemy.orm`` is not worth its import
in every command-line start-up.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON, BigInteger, CheckConstraint, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text,
    TypeDecorator, UniqueConstraint, Uuid,
)
from sqlalchemy.dialects import postgresql

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 200
TYPE_LENGTH = 100
KEY_LENGTH = 500
# Text compared by code point on both databases: SQLite's default (BINARY), PostgreSQL's "C" collation.
CodePointText = Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on both backends (SQLite keeps no zone: it is restored on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[dt.datetime], dialect: Any) -> Optional[dt.datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value!r} has no timezone: pass an aware UTC datetime")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: Optional[dt.datetime], dialect: Any) -> Optional[dt.datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


metadata = MetaData(naming_convention=NAMING_CONVENTION)  # names constraints the same way on both backends


def _required(name: str, type_: Any, **kw: Any) -> Column[Any]:
    return Column(name, type_, nullable=False, **kw)


def _optional(name: str, type_: Any, **kw: Any) -> Column[Any]:
    return Column(name, type_, nullable=True, **kw)


def _key(name: str, type_: Any) -> Column[Any]:
    return Column(name, type_, primary_key=True, autoincrement=False)


# One immutable event; ``position`` is global, dense and commit-ordered (on SQLite the rowid itself:
# ``INTEGER PRIMARY KEY``, no second index).
events = Table(
    "rlreg_events", metadata,
    _key("position", BigInteger().with_variant(Integer(), "sqlite")),
    _required("id", Uuid(), unique=True),
    _required("stream", String(NAME_LENGTH)),
    _required("stream_version", Integer),
    _required("type", String(TYPE_LENGTH)),
    _required("payload", JSON),
    _required("timestamp", UTCDateTime),
    _optional("actor", JSON(none_as_null=True)),  # who appended it (registry.actor); NULL before 0004
    UniqueConstraint("stream", "stream_version", name="uq_rlreg_events_stream_version"),
    Index("ix_rlreg_events_stream_position", "stream", "position"),  # one stream's events in log order
)

# Tables only some backends have (``info["dialects"]``; migrations/env.py compares each with its own).
POSTGRESQL_ONLY = {"dialects": ("postgresql",)}

# The current version of each stream: the row an append's expected-version check updates. PostgreSQL
# only: SQLite serialises writers, so there a stream's version is max(stream_version) of its events.
streams = Table(
    "rlreg_streams", metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    _required("version", Integer),
    info=POSTGRESQL_ONLY,
)

# The single row that allocates positions; its row lock is held to commit. PostgreSQL only: on SQLite
# the next position is max(position) + 1 under the write lock.
position_counter = Table(
    "rlreg_position", metadata,
    _key("id", Integer),
    _required("last", BigInteger),
    CheckConstraint("id = 1", name="single_row"),
    info=POSTGRESQL_ONLY,
)

# A consumer's durable position in the log, advanced only forward.
checkpoints = Table(
    "rlreg_checkpoints", metadata,
    Column("consumer", String(NAME_LENGTH), primary_key=True),
    _required("position", BigInteger),
    _required("updated_at", UTCDateTime),
)

# Projection: one row per model (stream).
models = Table(
    "rlreg_models", metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    _required("latest_version", Integer),
    _optional("spec_digest", String(64)),
    _required("created_at", UTCDateTime),
    _required("updated_at", UTCDateTime),
    _required("position", BigInteger),
    _optional("description", Text),
)

# Projection: one row per recorded model version (a state snapshot).
versions = Table(
    "rlreg_versions", metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    _key("version", Integer),
    _required("spec_digest", String(64)),
    _required("manifest", JSON),
    _required("state", JSON),
    _required("metadata", JSON),
    _required("tensor_bytes", BigInteger),
    _required("created_at", UTCDateTime),
    _required("position", BigInteger, unique=True),
    _optional("actor", JSON(none_as_null=True)),  # who recorded the version
    _optional("tags", JSON(none_as_null=True)),  # {key: text}; NULL: none yet
    _optional("description", Text),
)

# Projection for search: one row per scalar leaf of a version's metadata and per tag. ``key`` is the
# path as canonical JSON (``["eval","score"]``); ``kind`` says which of ``num`` (numbers; booleans as
# 1/0) and ``text`` holds the value. Indexed by key and value, so a ``where`` or a sort on one key
# reads an index range, not every version's JSON (see ``registry.query``).
version_fields = Table(
    "rlreg_version_fields", metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    _key("version", Integer),
    Column("source", String(8), primary_key=True),  # "metadata" or "tags"
    Column("key", String(KEY_LENGTH), primary_key=True),
    _required("kind", String(8)),  # "number", "string" or "boolean"
    _optional("num", Float(precision=53)),
    _optional("text", CodePointText),
    Index("ix_rlreg_version_fields_num", "name", "source", "key", "kind", "num", "version"),
    Index("ix_rlreg_version_fields_text", "name", "source", "key", "kind", "text", "version"),
)

# Projection: where each alias of a model points now.
aliases = Table(
    "rlreg_aliases", metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    Column("alias", String(NAME_LENGTH), primary_key=True),
    _required("version", Integer),
    _required("updated_at", UTCDateTime),
    _required("position", BigInteger),
)

# Projection: every distinct spec by digest, with the position that first recorded it.
specs = Table(
    "rlreg_specs", metadata,
    Column("digest", String(64), primary_key=True),
    _required("spec", JSON),
    _required("position", BigInteger),
)

# Projection: a deleted version (``VersionDeleted`` or ``ModelDeleted``), until ``VersionRestored``.
deleted_versions = Table(
    "rlreg_deleted_versions", metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    _key("version", Integer),
    _required("deleted_at", UTCDateTime),
    _required("reason", Text),
    _optional("actor", JSON),
    _required("position", BigInteger),
)

# Projection: a deleted model (``ModelDeleted``), until its name records a version or spec again.
deleted_models = Table(
    "rlreg_deleted_models", metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    _required("deleted_at", UTCDateTime),
    _required("reason", Text),
    _optional("actor", JSON),
    _required("position", BigInteger),
)

# Projection: a model's retention policy (``RetentionSet``; ``RetentionCleared`` removes it).
retention = Table(
    "rlreg_retention", metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    _required("policy", JSON),
    _required("position", BigInteger),
    _optional("restored", JSON(none_as_null=True)),  # versions restored since the policy was set (kept by it)
)

# Storage objects the writers and ``gc`` coordinate on (derived data: not from the log). A writer
# touches a row (``touched_at``, the database clock) in the transaction of the event naming the object
# (and, when gc collected it meanwhile, once before that too: ``registry.gc``); ``gc`` moves a row ``live`` -> ``deleting`` -> ``deleted`` under
# its row lock. ``generation`` grows at each gc claim (a tombstone) and each time a deleted object is
# written again, so a writer can tell that the object it touched was collected in between, and only
# the gc holding the latest claim deletes and finishes a row.
objects = Table(
    "rlreg_objects", metadata,
    Column("digest", String(80), primary_key=True),
    _required("nbytes", BigInteger),
    _required("state", String(16)),
    _required("generation", Integer),
    _required("touched_at", UTCDateTime),
    CheckConstraint("state IN ('live', 'deleting', 'deleted')", name="state"),
)

PROJECTION_TABLES = (version_fields, aliases, versions, models, specs, deleted_versions, deleted_models, retention)
