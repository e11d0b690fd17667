"""Tags, descriptions and the search projection (``rlreg_version_fields``, see ``registry.query``).

Revision ID: 0005_tags_descriptions
Revises: 0004_event_actor
Create Date: 2026-12-02 17:00:00

Filled by the projector from VersionRecorded, TagsSet, TagsRemoved and DescriptionSet events; created
empty here: the rows of versions recorded before it are added by ``0009_old_versions_searchable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_tags_descriptions"
down_revision: Union[str, None] = "0004_event_actor"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add ``tags`` and ``description`` to versions and ``description`` to models."""
    op.add_column("rlreg_versions", sa.Column("tags", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("rlreg_versions", sa.Column("description", sa.Text(), nullable=True))
    op.add_column("rlreg_models", sa.Column("description", sa.Text(), nullable=True))
    op.create_table(
        "rlreg_version_fields",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("num", sa.Float(precision=53), nullable=True),
        sa.Column("text", sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql"), nullable=True),
        sa.PrimaryKeyConstraint("name", "version", "source", "key", name=op.f("pk_rlreg_version_fields")),
    )
    op.create_index("ix_rlreg_version_fields_num", "rlreg_version_fields", ["name", "source", "key", "kind", "num", "version"])
    op.create_index("ix_rlreg_version_fields_text", "rlreg_version_fields", ["name", "source", "key", "kind", "text", "version"])


def downgrade() -> None:
    """Drop them (in place: SQLite >= 3.35)."""
    op.drop_table("rlreg_version_fields")
    op.execute("ALTER TABLE rlreg_models DROP COLUMN description")
    op.execute("ALTER TABLE rlreg_versions DROP COLUMN description")
    op.execute("ALTER TABLE rlreg_versions DROP COLUMN tags")
