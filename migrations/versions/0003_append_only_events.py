"""Events are never updated or deleted: the database refuses it, not only the code.

Revision ID: 0003_append_only_events
Revises: 0002_projections
Create Date: 2026-11-24 11:52:00

Triggers refuse UPDATE and DELETE on ``rlreg_events`` (and TRUNCATE on PostgreSQL), so a stray
statement from a tool or a bug cannot rewrite history that consumers have already processed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from alembic import op

revision: str = "0003_append_only_events"
down_revision: Union[str, None] = "0002_projections"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

PG_UP = [
    """
    CREATE FUNCTION rlreg_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'rlreg_events is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER rlreg_events_append_only BEFORE UPDATE OR DELETE ON rlreg_events
    FOR EACH ROW EXECUTE FUNCTION rlreg_events_refuse_change()
    """,
    """
    CREATE TRIGGER rlreg_events_no_truncate BEFORE TRUNCATE ON rlreg_events
    FOR EACH STATEMENT EXECUTE FUNCTION rlreg_events_refuse_change()
    """,
]
PG_DOWN = [
    "DROP TRIGGER rlreg_events_no_truncate ON rlreg_events",
    "DROP TRIGGER rlreg_events_append_only ON rlreg_events",
    "DROP FUNCTION rlreg_events_refuse_change()",
]
SQLITE_UP = [
    f"""
    CREATE TRIGGER rlreg_events_no_{op_name.lower()} BEFORE {op_name} ON rlreg_events
    BEGIN SELECT RAISE(ABORT, 'rlreg_events is append-only: {op_name} refused'); END
    """
    for op_name in ("UPDATE", "DELETE")
]
SQLITE_DOWN = ["DROP TRIGGER rlreg_events_no_update", "DROP TRIGGER rlreg_events_no_delete"]


def _is_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def upgrade() -> None:
    """Create the append-only triggers."""
    for statement in SQLITE_UP if _is_sqlite() else PG_UP:
        op.execute(statement)


def downgrade() -> None:
    """Drop the append-only triggers."""
    for statement in SQLITE_DOWN if _is_sqlite() else PG_DOWN:
        op.execute(statement)
