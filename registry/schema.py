"""The tables of the event store and its projections (SQLAlchemy 2.x models; Alembic owns the DDL)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Optional

from sqlalchemy import (
    JSON, BigInteger, CheckConstraint, DateTime, Float, Index, Integer, MetaData, String, Text, TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class Base(DeclarativeBase):
    """Declarative base whose MetaData names constraints the same way on SQLite and PostgreSQL."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class EventRow(Base):
    """One immutable event; ``position`` is global, dense and commit-ordered."""

    __tablename__ = "rlreg_events"
    __table_args__ = (UniqueConstraint("stream", "stream_version", name="uq_rlreg_events_stream_version"),)

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    stream: Mapped[str] = mapped_column(String(NAME_LENGTH))
    stream_version: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(TYPE_LENGTH))
    payload: Mapped[Any] = mapped_column(JSON)
    timestamp: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[Optional[Any]] = mapped_column(JSON(none_as_null=True))  # who appended it (registry.actor); NULL before 0004


class StreamRow(Base):
    """The current version of each stream: the row an append's expected-version check updates."""

    __tablename__ = "rlreg_streams"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class PositionCounterRow(Base):
    """The single row that allocates positions; its row lock is held to commit."""

    __tablename__ = "rlreg_position"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(BigInteger)


class CheckpointRow(Base):
    """A consumer's durable position in the log, advanced only forward."""

    __tablename__ = "rlreg_checkpoints"

    consumer: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ModelRow(Base):
    """Projection: one row per model (stream)."""

    __tablename__ = "rlreg_models"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    latest_version: Mapped[int] = mapped_column(Integer)
    spec_digest: Mapped[Optional[str]] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    position: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[Optional[str]] = mapped_column(Text)


class VersionRow(Base):
    """Projection: one row per recorded model version (a state snapshot)."""

    __tablename__ = "rlreg_versions"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    spec_digest: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[Any] = mapped_column(JSON)
    state: Mapped[Any] = mapped_column(JSON)
    metadata_: Mapped[Any] = mapped_column("metadata", JSON)
    tensor_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    position: Mapped[int] = mapped_column(BigInteger, unique=True)
    actor: Mapped[Optional[Any]] = mapped_column(JSON(none_as_null=True))  # who recorded the version
    tags: Mapped[Optional[Any]] = mapped_column(JSON(none_as_null=True))  # {key: text}; NULL: none yet
    description: Mapped[Optional[str]] = mapped_column(Text)


class VersionFieldRow(Base):
    """Projection for search: one row per scalar leaf of a version's metadata and per tag.

    ``key`` is the path as canonical JSON (``["eval","score"]``); ``kind`` says which of ``num``
    (numbers; booleans as 1/0) and ``text`` holds the value. Indexed by key and value, so a ``where``
    or a sort on one key reads an index range, not every version's JSON (see ``registry.query``).
    """

    __tablename__ = "rlreg_version_fields"
    __table_args__ = (
        Index("ix_rlreg_version_fields_num", "name", "source", "key", "kind", "num", "version"),
        Index("ix_rlreg_version_fields_text", "name", "source", "key", "kind", "text", "version"),
    )

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(8), primary_key=True)  # "metadata" or "tags"
    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # "number", "string" or "boolean"
    num: Mapped[Optional[float]] = mapped_column(Float(precision=53))
    text: Mapped[Optional[str]] = mapped_column(CodePointText)


class AliasRow(Base):
    """Projection: where each alias of a model points now."""

    __tablename__ = "rlreg_aliases"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    alias: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    position: Mapped[int] = mapped_column(BigInteger)


class SpecRow(Base):
    """Projection: every distinct spec by digest, with the position that first recorded it."""

    __tablename__ = "rlreg_specs"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[Any] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(BigInteger)


class DeletedVersionRow(Base):
    """Projection: a deleted version (``VersionDeleted`` or ``ModelDeleted``), until ``VersionRestored``."""

    __tablename__ = "rlreg_deleted_versions"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    deleted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[Optional[Any]] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(BigInteger)


class DeletedModelRow(Base):
    """Projection: a deleted model (``ModelDeleted``), until its name records a version or spec again."""

    __tablename__ = "rlreg_deleted_models"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    deleted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[Optional[Any]] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(BigInteger)


class RetentionRow(Base):
    """Projection: a model's retention policy (``RetentionSet``; ``RetentionCleared`` removes it)."""

    __tablename__ = "rlreg_retention"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    policy: Mapped[Any] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(BigInteger)


class ObjectRow(Base):
    """Storage objects the writers and ``gc`` coordinate on (derived data: not from the log).

    A writer touches a row (``touched_at``, the database clock) before it references the object and
    again in the transaction of the event naming it; ``gc`` moves a row ``live`` -> ``deleting`` ->
    ``deleted`` under its row lock. ``generation`` grows each time a deleted object is written again,
    so a writer can tell that the object it touched was collected in between.
    """

    __tablename__ = "rlreg_objects"
    __table_args__ = (CheckConstraint("state IN ('live', 'deleting', 'deleted')", name="state"),)

    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    nbytes: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    touched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


metadata = Base.metadata
events = EventRow.__table__
streams = StreamRow.__table__
position_counter = PositionCounterRow.__table__
checkpoints = CheckpointRow.__table__
models = ModelRow.__table__
versions = VersionRow.__table__
aliases = AliasRow.__table__
specs = SpecRow.__table__
version_fields = VersionFieldRow.__table__
deleted_versions = DeletedVersionRow.__table__
deleted_models = DeletedModelRow.__table__
retention = RetentionRow.__table__
objects = ObjectRow.__table__
PROJECTION_TABLES = (version_fields, aliases, versions, models, specs, deleted_versions, deleted_models, retention)
