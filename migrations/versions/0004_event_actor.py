"""Who did what: every event (and the version it records) carries its actor.

Revision ID: 0004_event_actor
Revises: 0005_lifecycle
Create Date: 2026-12-02 16:45:00

Nullable columns: events recorded before this revision have no actor. Plain ``ADD COLUMN`` on both
databases (no batch copy on SQLite, which would drop 0003's append-only triggers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004_event_actor"
down_revision: Union[str, None] = "0005_lifecycle"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add ``actor`` to the events and to the versions projection."""
    op.add_column("rlreg_events", sa.Column("actor", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("rlreg_versions", sa.Column("actor", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    """Drop the ``actor`` columns (in place: SQLite >= 3.35; a batch copy would lose the triggers)."""
    op.execute("ALTER TABLE rlreg_versions DROP COLUMN actor")
    op.execute("ALTER TABLE rlreg_events DROP COLUMN actor")
