"""The event log: events, streams, the position counter and consumer checkpoints.

Revision ID: 0001_event_log
Revises:
Create Date: 2026-11-24 11:30:57
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001_event_log"
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Create the log's tables and the counter's single row."""
    op.create_table(
        "rlreg_events",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("stream", sa.String(length=200), nullable=False),
        sa.Column("stream_version", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_rlreg_events")),
        sa.UniqueConstraint("id", name=op.f("uq_rlreg_events_id")),
        sa.UniqueConstraint("stream", "stream_version", name="uq_rlreg_events_stream_version"),
    )
    op.create_table(
        "rlreg_streams",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rlreg_streams")),
    )
    counter = op.create_table(
        "rlreg_position",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_rlreg_position_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rlreg_position")),
    )
    op.bulk_insert(counter, [{"id": 1, "last": 0}])
    op.create_table(
        "rlreg_checkpoints",
        sa.Column("consumer", sa.String(length=200), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", name=op.f("pk_rlreg_checkpoints")),
    )


def downgrade() -> None:
    """Drop the log's tables."""
    op.drop_table("rlreg_checkpoints")
    op.drop_table("rlreg_position")
    op.drop_table("rlreg_streams")
    op.drop_table("rlreg_events")
