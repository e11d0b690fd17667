"""The projections (read models): models, versions, aliases and specs.

Revision ID: 0002_projections
Revises: 0001_event_log
Create Date: 2026-11-24 11:30:57

Created empty: ``rlreg projections rebuild`` (``EventStore.rebuild_projections``) fills them from the
log of a database upgraded from 0001.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002_projections"
down_revision: Union[str, None] = "0001_event_log"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Create the projection tables."""
    op.create_table(
        "rlreg_models",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("spec_digest", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rlreg_models")),
    )
    op.create_table(
        "rlreg_versions",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("spec_digest", sa.String(length=64), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("tensor_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_rlreg_versions")),
        sa.UniqueConstraint("position", name=op.f("uq_rlreg_versions_position")),
    )
    op.create_table(
        "rlreg_aliases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("alias", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", "alias", name=op.f("pk_rlreg_aliases")),
    )
    op.create_table(
        "rlreg_specs",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_rlreg_specs")),
    )


def downgrade() -> None:
    """Drop the projection tables."""
    op.drop_table("rlreg_specs")
    op.drop_table("rlreg_aliases")
    op.drop_table("rlreg_versions")
    op.drop_table("rlreg_models")
