"""An index of the log by stream and position: one stream's events read in order without the rest.

Revision ID: 0008_events_by_stream
Revises: 0007_retention_ends_with_model
Create Date: 2026-12-05 08:30:00

A read of one stream's events after a position (``EventStore.events(stream=)``, ``follow(stream=)``,
``Registry.events(model=)``, ``rlreg events --model``, the web app's events page of a model) had
only the ``(stream, stream_version)`` index: SQLite read every event of the stream and sorted them
for each page (a page of 100 from a stream of a million events: the million), and PostgreSQL walked
the log by position from the start, skipping other streams' events (a model with few events in a
large log: the whole log for each page). ``(stream, position)`` is the order such a read asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from alembic import op

revision: str = "0008_events_by_stream"
down_revision: Union[str, None] = "0007_retention_ends_with_model"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("ix_rlreg_events_stream_position", "rlreg_events", ["stream", "position"])


def downgrade() -> None:
    op.drop_index("ix_rlreg_events_stream_position", table_name="rlreg_events")
