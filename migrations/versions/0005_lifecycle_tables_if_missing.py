"""The lifecycle tables of ``0005_lifecycle``, made where that revision never ran (the first-parent history).

Revision ID: 0005_lifecycle_tables_if_missing
Revises: 0005_tags_descriptions
Create Date: 2026-12-06 10:00:00

Two histories of this schema were shipped. rlreg up to 47bfa33 had ``0003_append_only_events ->
0004_event_actor -> 0005_tags_descriptions``; the lifecycle work had ``0003_append_only_events ->
0005_lifecycle``; their merge (cd6831b) re-parented ``0004_event_actor`` after ``0005_lifecycle``. Alembic
records only the current revision, so a database stamped ``0004_event_actor`` or ``0005_tags_descriptions``
by the first history counts ``0005_lifecycle`` (an ancestor now) as applied, though its tables were never
made: ``0007_retention_ends_with_model`` then failed on the missing ``rlreg_retention``, on every upgrade.

The stamp cannot tell the two histories apart, so this revision looks: it creates each of
``0005_lifecycle``'s tables that is missing, exactly as that revision does, and leaves those that exist
(every database of the merged history) alone. Created empty, which is what the projections of such a
database are: the first history had no lifecycle events (no deletion, no retention policy), and
``rlreg_objects`` starts empty as in ``0005_lifecycle`` (``gc`` adds rows for the objects it finds).
It sits before ``0006_sqlite_rowid_log`` (re-parented onto it), the first revision only the merged
history shipped: every database at 0006 or later has the tables.

Offline (``--sql``) nothing is emitted: a script cannot look, and a script from the base or from 0003
makes the tables in ``0005_lifecycle``. Downgrading does nothing: the tables are ``0005_lifecycle``'s,
whose downgrade drops them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import context, op

revision: str = "0005_lifecycle_tables_if_missing"
down_revision: Union[str, None] = "0005_tags_descriptions"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _deletion_columns() -> list[sa.Column]:
    return [
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.JSON(), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
    ]


# 0005_lifecycle's tables, as it creates them (a revision does not import another, nor the app's schema).
TABLES = {
    "rlreg_deleted_versions": lambda: op.create_table(
        "rlreg_deleted_versions",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        *_deletion_columns(),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_rlreg_deleted_versions")),
    ),
    "rlreg_deleted_models": lambda: op.create_table(
        "rlreg_deleted_models",
        sa.Column("name", sa.String(length=200), nullable=False),
        *_deletion_columns(),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rlreg_deleted_models")),
    ),
    "rlreg_retention": lambda: op.create_table(
        "rlreg_retention",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rlreg_retention")),
    ),
    "rlreg_objects": lambda: op.create_table(
        "rlreg_objects",
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("nbytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("touched_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('live', 'deleting', 'deleted')", name=op.f("ck_rlreg_objects_state")),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_rlreg_objects")),
    ),
}


def upgrade() -> None:
    """Create the lifecycle tables that are not there."""
    if context.is_offline_mode():
        return
    inspector = sa.inspect(op.get_bind())
    for name, create in TABLES.items():
        if not inspector.has_table(name):
            create()


def downgrade() -> None:
    """Nothing (see the module docstring)."""
