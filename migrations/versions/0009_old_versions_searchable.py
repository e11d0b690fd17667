"""The search projection of versions recorded before it: ``rlreg_version_fields`` filled from their rows.

Revision ID: 0009_old_versions_searchable
Revises: 0008_events_by_stream
Create Date: 2026-12-06 10:30:00

``0005_tags_descriptions`` created ``rlreg_version_fields`` empty, and only versions recorded (and tags
set) after it got their rows: upgraded from ``0002_projections``, ``0003_append_only_events``,
``0005_lifecycle`` (or ``0004_event_actor``), every ``metadata.*`` filter and sort silently found none of
the older versions until someone ran ``rlreg projections rebuild``, and the live read models differed from
a rebuild. The projection is a function of each ``rlreg_versions`` row alone (its ``metadata`` and its
``tags``; a deleted version keeps both, and its rows), so a migration can derive it without replaying the
log: this revision adds, for each version and each of the two sources with no row at all, the rows the
projector makes of it. A source with rows was projected already (by the projector, or by a rebuild) and
is left as it is; one whose values have nothing searchable gets none again. Databases upgraded with
the empty table before this revision (and used since) are mended the same way.

Why here and not by replaying the log at upgrade: a revision must not import the code it upgrades to
(that code changes, the revision may not), so ``field_rows`` and its limits are copied below as
``registry.query`` had them at this revision; a later change of them comes with a revision of its own.
Versions are read 500 at a time in key order (a registry of 100,000 versions: a few seconds, once).

Offline (``--sql``) nothing is emitted: the rows are computed in Python. Downgrading leaves the rows
(they are what a rebuild makes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Union

import sqlalchemy as sa
from alembic import context, op

revision: str = "0009_old_versions_searchable"
down_revision: Union[str, None] = "0008_events_by_stream"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SOURCES = ("metadata", "tags")
BATCH = 500
MAX_KEY_BYTES = 500  # registry.query at this revision: longer key paths are not searchable
MAX_TEXT = 1000  # bytes: longer strings are not searchable
MAX_FLOAT = 1e308  # larger numbers are not searchable

versions = sa.table(
    "rlreg_versions", sa.column("name", sa.String), sa.column("version", sa.Integer),
    sa.column("metadata", sa.JSON), sa.column("tags", sa.JSON),
)
fields = sa.table(
    "rlreg_version_fields", sa.column("name", sa.String), sa.column("version", sa.Integer),
    sa.column("source", sa.String), sa.column("key", sa.String), sa.column("kind", sa.String),
    sa.column("num", sa.Float), sa.column("text", sa.Text),
)


def _json_kind(value: Any) -> Union[str, None]:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else None


def _encode_key(path: tuple[str, ...]) -> str:
    return json.dumps(list(path), ensure_ascii=False, separators=(",", ":"))


def field_rows(name: str, version: int, source: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``registry.query.field_rows`` as of this revision: one row per searchable scalar leaf."""
    rows: list[dict[str, Any]] = []

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(inner, (*path, key))
            return
        kind = _json_kind(value)
        if kind is None or (kind == "string" and len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT):
            return
        key = _encode_key(path)
        if len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES:
            number = float(value) if kind != "string" and abs(value) <= MAX_FLOAT else None
            if kind == "string" or number is not None:
                rows.append({"name": name, "version": version, "source": source, "key": key, "kind": kind,
                             "num": number, "text": value if kind == "string" else None})

    walk(values, ())
    return rows


def _has_rows(source: str) -> Any:
    return sa.exists().where(fields.c.name == versions.c.name, fields.c.version == versions.c.version,
                             fields.c.source == source).label(f"has_{source}")


def upgrade() -> None:
    """Add the search rows of every version source that has none."""
    if context.is_offline_mode():
        return
    conn = op.get_bind()
    key = sa.tuple_(versions.c.name, versions.c.version)
    query = (sa.select(versions.c.name, versions.c.version, versions.c.metadata, versions.c.tags,
                       *(_has_rows(s) for s in SOURCES))
             .order_by(versions.c.name, versions.c.version).limit(BATCH))
    after = None
    while True:
        page = conn.execute(query if after is None else query.where(key > sa.tuple_(*after))).all()
        if not page:
            return
        rows = [row for v in page for source in SOURCES if not getattr(v, f"has_{source}")
                for row in field_rows(v.name, v.version, source, getattr(v, source) or {})]
        if rows:
            conn.execute(fields.insert(), rows)
        after = (page[-1].name, page[-1].version)


def downgrade() -> None:
    """Nothing (see the module docstring)."""
