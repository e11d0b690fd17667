"""Tags and descriptions: projected from TagsSet, TagsRemoved and DescriptionSet events.

Revision ID: 0005_tags_descriptions
Revises: 0004_event_actor
Create Date: 2026-12-02 17:00:00

Nullable columns filled by the projector (``rlreg projections rebuild`` fills them for old logs, which
hold no such events anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005_tags_descriptions"
down_revision: Union[str, None] = "0004_event_actor"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add ``tags`` and ``description`` to versions and ``description`` to models."""
    op.add_column("rlreg_versions", sa.Column("tags", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("rlreg_versions", sa.Column("description", sa.Text(), nullable=True))
    op.add_column("rlreg_models", sa.Column("description", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop them (in place: SQLite >= 3.35)."""
    op.execute("ALTER TABLE rlreg_models DROP COLUMN description")
    op.execute("ALTER TABLE rlreg_versions DROP COLUMN description")
    op.execute("ALTER TABLE rlreg_versions DROP COLUMN tags")
