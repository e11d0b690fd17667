"""Helpers shared by the event-store tests: events of the registry's types and process workers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
import uuid
from typing import Optional

from registry.eventstore import Event, EventStore, NewEvent
from registry.projections import spec_digest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from registry.schema import checkpoints, events, position_counter, streams


def spec_event(spec: dict) -> NewEvent:
    """A ``SpecRecorded`` event for ``spec``."""
    return NewEvent("SpecRecorded", {"spec": spec, "spec_digest": spec_digest(spec)})


def version_event(version: int, spec: dict, metadata: Optional[dict] = None) -> NewEvent:
    """A ``VersionRecorded`` event of ``version`` under ``spec``."""
    payload = {
        "version": version,
        "spec_digest": spec_digest(spec),
        "manifest": {"format": "rlreg.manifest/1", "tensors": {}},
        "state": {"step": version},
        "metadata": metadata or {},
        "tensor_bytes": 4 * version,
    }
    return NewEvent("VersionRecorded", payload)


def plain(n: int, tag: str = "x") -> list[NewEvent]:
    """``n`` events of a type no projector handles."""
    return [NewEvent("Tick", {"tag": tag, "i": i}) for i in range(n)]


class NaiveEventStore(EventStore):
    """The control: positions taken like a sequence (committed apart from the append), then appended.

    This is what a sequence, autoincrement or bigserial does; the delay widens the window in which a
    later-allocated append commits first, so a tailer moves past a position that commits late. On
    PostgreSQL it allocates from the log's counter; on SQLite (which keeps none) from a counter table
    of its own, ``naive_position``.
    """

    max_delay = 0.004

    def append(self, stream, new_events, expected_version=None):
        new_events = list(new_events)
        n = len(new_events)
        with self.transaction() as conn:  # "nextval": allocated and committed at once
            last = self._allocate(conn, n)
        time.sleep(random.uniform(0, self.max_delay))
        with self.transaction() as conn:
            if conn.dialect.name == "sqlite":
                version = self.stream_version(stream, conn) + n
            else:
                version = conn.execute(
                    postgresql.insert(streams).values(name=stream, version=n)
                    .on_conflict_do_update(index_elements=[streams.c.name], set_={"version": streams.c.version + n})
                    .returning(streams.c.version)
                ).scalar_one()
            recorded = [
                self._event(last - n + 1 + i, stream, version - n + 1 + i, e) for i, e in enumerate(new_events)
            ]
            conn.execute(events.insert(), [dataclasses.asdict(e) for e in recorded])
        return recorded

    def _allocate(self, conn, n: int) -> int:
        if conn.dialect.name != "sqlite":
            return conn.execute(
                position_counter.update().values(last=position_counter.c.last + n).returning(position_counter.c.last)
            ).scalar_one()
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS naive_position (id INTEGER PRIMARY KEY, last INTEGER)")
        conn.exec_driver_sql("INSERT OR IGNORE INTO naive_position VALUES (1, (SELECT coalesce(max(position), 0) FROM rlreg_events))")
        return conn.exec_driver_sql("UPDATE naive_position SET last = last + ? RETURNING last", (n,)).scalar_one()

    @staticmethod
    def _event(position, stream, stream_version, new):
        return Event(position, stream, stream_version, new.type, new.payload, dt.datetime.now(dt.timezone.utc), new.id)


def append_worker(url: str, naive: bool, stream: str, appends: int, barrier) -> None:
    """A writer process: ``appends`` appends of 1-3 events to its own stream, after the barrier."""
    cls = NaiveEventStore if naive else EventStore
    store = cls(url, check_schema=False)
    try:
        barrier.wait()
        for i in range(appends):
            store.append(stream, plain(1 + i % 3, tag=stream))
    finally:
        store.close()


def open_and_append_worker(url: str, barrier) -> None:
    """A first-start process: open the (possibly empty) database at once with others, then append."""
    barrier.wait()
    with EventStore(url) as store:
        store.append(f"proc-{uuid.uuid4().hex[:8]}", plain(1))


def jitter() -> None:
    """A tiny random pause, to vary interleavings between threads."""
    time.sleep(random.uniform(0, 0.001))


def naive_set_checkpoint(conn, consumer: str, position: int) -> None:
    """The control: rlreg's checkpoint before compare-and-set, which refused only backward moves."""
    now = dt.datetime.now(dt.timezone.utc)
    insert = (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(checkpoints)
    conn.execute(insert.values(consumer=consumer, position=position, updated_at=now).on_conflict_do_nothing())
    current = conn.execute(
        sa.select(checkpoints.c.position).where(checkpoints.c.consumer == consumer).with_for_update()
    ).scalar_one()
    assert position >= current, "the control only refuses moving backwards"
    conn.execute(checkpoints.update().where(checkpoints.c.consumer == consumer).values(position=position))
