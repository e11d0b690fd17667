"""The versions restored since a model's retention policy was set, kept on the policy's row.

Revision ID: 0010_retention_keeps_restored
Revises: 0009_old_versions_searchable
Create Date: 2026-12-05 09:20:00

A retention policy keeps a version restored after it was set (a restore is deliberate: the policy would
delete it again at the next snapshot or gc). The writer read them from the model's stream, every
``VersionRestored`` past the ``RetentionSet``, at each snapshot: every event of the stream since the
policy, a cost that grew with the model's log (400,000 events: a snapshot 31 -> 88 ms). The projection
now keeps them in ``rlreg_retention.restored`` (a JSON list, ``NULL`` for none): a ``RetentionSet``
starts it empty, a ``VersionRestored`` of a model with a policy adds its version. This revision adds
the column and fills it from the log, as a rebuild would (one read of the ``VersionRestored`` events,
payloads parsed here: nothing is emitted offline, with ``--sql``). Downgrading drops the column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import context, op

revision: str = "0010_retention_keeps_restored"
down_revision: Union[str, None] = "0009_old_versions_searchable"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

retention = sa.table("rlreg_retention", sa.column("name", sa.String), sa.column("position", sa.BigInteger),
                     sa.column("restored", sa.JSON))
events = sa.table("rlreg_events", sa.column("stream", sa.String), sa.column("type", sa.String),
                  sa.column("position", sa.BigInteger), sa.column("payload", sa.Text))


def upgrade() -> None:
    op.add_column("rlreg_retention", sa.Column("restored", sa.JSON(), nullable=True))
    if context.is_offline_mode():
        return
    conn = op.get_bind()
    since = dict(conn.execute(sa.select(retention.c.name, retention.c.position)).all())
    if not since:
        return
    restored: dict[str, set[int]] = {}
    payload = sa.cast(events.c.payload, sa.Text)  # (PostgreSQL's json column, read as its text)
    query = sa.select(events.c.stream, events.c.position, payload).where(events.c.type == "VersionRestored")
    for stream, position, text in conn.execute(query):
        if stream in since and position > since[stream]:
            restored.setdefault(stream, set()).add(json.loads(text)["version"])
    for name, numbers in restored.items():
        conn.execute(retention.update().where(retention.c.name == name).values(restored=sorted(numbers)))


def downgrade() -> None:
    with op.batch_alter_table("rlreg_retention") as batch:
        batch.drop_column("restored")
