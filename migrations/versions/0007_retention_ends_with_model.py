"""A model's deletion ends its retention policy, in registries recorded before that rule too.

Revision ID: 0007_retention_ends_with_model
Revises: 0006_sqlite_rowid_log
Create Date: 2026-12-04 09:00:00

``ModelDeleted`` ends the model's retention policy: its projection deletes the model's
``rlreg_retention`` row, so a model made again under the name keeps every version until a policy is
set for it. Read models projected before that rule still hold such a policy: every snapshot of the
model made again, and every ``gc``, applied it (deleting its versions), and ``rebuild_projections``,
which replays the log under the rule, disagreed with them. This revision deletes those rows, and only
those: a policy whose model's latest ``ModelDeleted`` event comes after its latest ``RetentionSet``
(one stream: the model's), which is what a replay leaves (a ``RetentionCleared`` after the deletion
already removed the row; a ``RetentionSet`` after it is a policy of the model made again, kept).
Downgrading leaves the rows deleted (the older rule's read models are what ``rlreg projections
rebuild`` makes under the older rlreg).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from alembic import op

revision: str = "0007_retention_ends_with_model"
down_revision: Union[str, None] = "0006_sqlite_rowid_log"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# The event types of registry.lifecycle and registry.retention, as recorded (a revision does not import the
# code it upgrades to: that code may change, the revision may not). Driven by the policies (a few rows),
# each reading its model's stream through the (stream, stream_version) index, not the whole log.
ENDED_BY_DELETION = """
DELETE FROM rlreg_retention
WHERE (SELECT MAX(e.stream_version) FROM rlreg_events e
       WHERE e.stream = rlreg_retention.name AND e.type = 'ModelDeleted')
    > (SELECT MAX(e.stream_version) FROM rlreg_events e
       WHERE e.stream = rlreg_retention.name AND e.type = 'RetentionSet')
"""


def upgrade() -> None:
    """Delete the retention policies their model's deletion ended."""
    op.execute(ENDED_BY_DELETION)


def downgrade() -> None:
    """Nothing: the policies stay ended (see the module docstring)."""
