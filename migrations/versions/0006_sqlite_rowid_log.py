"""SQLite: the log is its own position index, and an append writes nothing but its events.

Revision ID: 0006_sqlite_rowid_log
Revises: 0005_lifecycle_tables_if_missing
Create Date: 2026-12-03 06:40:00

On SQLite ``position BIGINT PRIMARY KEY`` is a second B-tree beside the table's rowid, and every
append also updated the ``rlreg_streams`` row of its stream and the ``rlreg_position`` counter: six
B-tree pages written (and fsynced through the WAL) per one-event commit. SQLite serialises writers
(``BEGIN IMMEDIATE``), so neither row is needed there: under the write lock the next position is
``max(position) + 1`` and a stream's version is ``max(stream_version)`` of its events, both one
seek. This revision rebuilds ``rlreg_events`` on SQLite with ``position INTEGER PRIMARY KEY`` (the
rowid itself: the table is ordered by position and has no separate index for it) and drops the two
tables. Positions, ids, stream versions and every event are copied as they are. PostgreSQL, where
concurrent writers need the counter's row lock and the stream row's check, is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006_sqlite_rowid_log"
down_revision: Union[str, None] = "0005_lifecycle_tables_if_missing"  # (was 0005_tags_descriptions: see that revision)
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = "position, id, stream, stream_version, type, payload, timestamp, actor"
APPEND_ONLY = [  # as revision 0003 made them: DROP TABLE takes a table's triggers with it
    f"""
    CREATE TRIGGER rlreg_events_no_{op_name.lower()} BEFORE {op_name} ON rlreg_events
    BEGIN SELECT RAISE(ABORT, 'rlreg_events is append-only: {op_name} refused'); END
    """
    for op_name in ("UPDATE", "DELETE")
]


def _is_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def _rebuild_events(position_type: sa.types.TypeEngine) -> None:
    """Recreate ``rlreg_events`` with ``position_type``, every row copied in position order."""
    op.create_table(
        "rlreg_events_rebuilt",
        sa.Column("position", position_type, autoincrement=False, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("stream", sa.String(length=200), nullable=False),
        sa.Column("stream_version", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.JSON(none_as_null=True), nullable=True),
        sa.PrimaryKeyConstraint("position", name="pk_rlreg_events"),
        sa.UniqueConstraint("id", name="uq_rlreg_events_id"),
        sa.UniqueConstraint("stream", "stream_version", name="uq_rlreg_events_stream_version"),
    )
    op.execute(f"INSERT INTO rlreg_events_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM rlreg_events ORDER BY position")
    op.execute("DROP TABLE rlreg_events")
    op.execute("ALTER TABLE rlreg_events_rebuilt RENAME TO rlreg_events")
    for statement in APPEND_ONLY:
        op.execute(statement)


def upgrade() -> None:
    """SQLite: position becomes the rowid; the stream and counter rows go (derived from the log from now on)."""
    if not _is_sqlite():
        return
    _rebuild_events(sa.Integer())
    op.drop_table("rlreg_streams")
    op.drop_table("rlreg_position")


def downgrade() -> None:
    """SQLite: the BIGINT position and the stream and counter rows again, rebuilt from the log."""
    if not _is_sqlite():
        return
    op.create_table(
        "rlreg_streams",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_rlreg_streams"),
    )
    op.create_table(
        "rlreg_position",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_rlreg_position_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_rlreg_position"),
    )
    op.execute("INSERT INTO rlreg_streams (name, version) SELECT stream, max(stream_version) FROM rlreg_events GROUP BY stream")
    op.execute("INSERT INTO rlreg_position (id, last) SELECT 1, coalesce(max(position), 0) FROM rlreg_events")
    _rebuild_events(sa.BigInteger())
