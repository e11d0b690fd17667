"""Deletion, retention and garbage collection: deleted versions and models, policies, storage objects.

Revision ID: 0005_lifecycle
Revises: 0003_append_only_events
Create Date: 2026-12-02 16:50:00

``rlreg_deleted_versions``, ``rlreg_deleted_models`` and ``rlreg_retention`` are projections (rebuilt
from the log); ``rlreg_objects`` is what writers and ``gc`` coordinate on, derived from the storage
listing and the versions (created empty: ``gc`` adds rows for objects it finds without one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005_lifecycle"
down_revision: Union[str, None] = "0003_append_only_events"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _deletion_columns() -> list[sa.Column]:
    return [
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.JSON(), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    """Create the lifecycle tables."""
    op.create_table(
        "rlreg_deleted_versions",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        *_deletion_columns(),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_rlreg_deleted_versions")),
    )
    op.create_table(
        "rlreg_deleted_models",
        sa.Column("name", sa.String(length=200), nullable=False),
        *_deletion_columns(),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rlreg_deleted_models")),
    )
    op.create_table(
        "rlreg_retention",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rlreg_retention")),
    )
    op.create_table(
        "rlreg_objects",
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("nbytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("touched_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('live', 'deleting', 'deleted')", name=op.f("ck_rlreg_objects_state")),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_rlreg_objects")),
    )


def downgrade() -> None:
    """Drop the lifecycle tables."""
    for table in ("rlreg_objects", "rlreg_retention", "rlreg_deleted_models", "rlreg_deleted_versions"):
        op.drop_table(table)
