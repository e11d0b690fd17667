"""The two contenders of ``bench.eventstore`` behind one small interface: rlreg's EventStore and
eventsourcing 9.5.6's application recorders (``SQLiteApplicationRecorder``, ``PostgresApplicationRecorder``).

Both record one event per ``append_one`` call in its own transaction, ``append_batch`` records ``n``
events of one stream in one transaction, ``read`` returns up to ``limit`` events after a position and
``tail`` counts what a follower receives. The peer's SQLite connections get rlreg's ``synchronous``
setting so both pay for the same durability (``durability()`` names it).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any, Optional

from sqlalchemy.engine import make_url

from registry.db import SQLITE_BUSY_TIMEOUT
from registry.eventstore import EventStore, NewEvent
from registry.projections import Projections


class Rlreg:
    """rlreg's EventStore with the registry's projector (which skips the bench's ``Tick`` events)."""

    name = "rlreg"

    def __init__(self, url: str) -> None:
        self.url = url
        self.store = EventStore(url, projector=Projections(), check_schema=False)
        self.streams: dict[str, int] = {}

    @classmethod
    def create(cls, url: str) -> "Rlreg":
        """Make the schema, then open."""
        EventStore(url).close()
        return cls(url)

    def durability(self) -> str:
        """``synchronous`` on SQLite, ``synchronous_commit`` on PostgreSQL."""
        with self.store.engine.connect() as conn:
            if self.store.engine.dialect.name == "sqlite":
                return f"synchronous={conn.exec_driver_sql('PRAGMA synchronous').scalar()}"
            return f"synchronous_commit={conn.exec_driver_sql('SHOW synchronous_commit').scalar()}"

    def append_one(self, stream: str, i: int) -> None:
        """One event, one transaction."""
        self.store.append(stream, [NewEvent("Tick", {"i": i})])

    def append_batch(self, stream: str, n: int) -> None:
        """``n`` events of a new stream in one transaction."""
        self.store.append(stream, [NewEvent("Tick", {"i": i}) for i in range(n)], expected_version=0)

    def read(self, after: int, limit: int) -> int:
        """How many events one read returned."""
        return len(self.store.events(after, limit))

    def tail(self, after: int, count: int, seen: Optional[dict[int, float]] = None, clock: Any = None,
             stop: Optional[threading.Event] = None) -> int:
        """Follow from ``after`` until ``count`` events arrived (recording arrival times in ``seen``)."""
        got = 0
        for event in self.store.follow(after, stop=stop):
            got += 1
            if seen is not None:
                seen[event.position] = clock()
            if got == count:
                break
        return got

    def close(self) -> None:
        """Release connections."""
        self.store.close()


class Peer:
    """eventsourcing's application recorder on the same kind of database."""

    name = "eventsourcing"

    def __init__(self, url: str, synchronous: Optional[str] = None) -> None:
        self.url, self.synchronous = url, synchronous
        self.recorder = _recorder(url, synchronous)

    @classmethod
    def create(cls, url: str, synchronous: Optional[str] = None) -> "Peer":
        """Make the table, then open."""
        peer = cls(url, synchronous)
        peer.recorder.create_table()
        return peer

    def durability(self) -> str:
        """The setting its connections run with."""
        if make_url(self.url).get_backend_name() == "sqlite":
            with self.recorder.datastore.transaction(commit=False) as c:
                c.execute("PRAGMA synchronous")
                return f"synchronous={c.fetchone()[0]}"
        with self.recorder.datastore.get_connection() as conn:
            return f"synchronous_commit={conn.execute('SHOW synchronous_commit').fetchone()['synchronous_commit']}"

    def append_one(self, stream: str, i: int) -> None:
        """One event, one transaction (the stream's version counted here, as an aggregate would)."""
        from eventsourcing.persistence import StoredEvent

        version = self._next_version(stream)
        state = json.dumps({"i": i}).encode()
        self.recorder.insert_events([StoredEvent(self._id(stream), version, "Tick", state)])

    def append_batch(self, stream: str, n: int) -> None:
        """``n`` events of a new stream in one transaction."""
        from eventsourcing.persistence import StoredEvent

        oid = uuid.uuid4()
        self.recorder.insert_events(
            [StoredEvent(oid, i + 1, "Tick", json.dumps({"i": i}).encode()) for i in range(n)]
        )

    def read(self, after: int, limit: int) -> int:
        """How many notifications one select returned."""
        return len(self.recorder.select_notifications(after, limit, inclusive_of_start=False))

    def tail(self, after: int, count: int, seen: Optional[dict[int, float]] = None, clock: Any = None,
             stop: Optional[threading.Event] = None) -> int:
        """Subscribe (PostgreSQL: LISTEN/NOTIFY) or page through (SQLite has no subscription)."""
        if make_url(self.url).get_backend_name() == "sqlite":
            return self._page(after, count)
        got = 0
        with self.recorder.subscribe(gt=after) as subscription:
            for notification in subscription:
                got += 1
                if seen is not None:
                    seen[notification.id] = clock()
                if got == count:
                    break
        return got

    def _page(self, after: int, count: int) -> int:
        got = 0
        while got < count:
            page = self.recorder.select_notifications(after, 500, inclusive_of_start=False)
            if not page:
                break
            got, after = got + len(page), page[-1].id
        return got

    def _next_version(self, stream: str) -> int:
        self._versions = getattr(self, "_versions", {})
        self._versions[stream] = self._versions.get(stream, 0) + 1
        return self._versions[stream]

    def _id(self, stream: str) -> uuid.UUID:
        self._ids = getattr(self, "_ids", {})
        if stream not in self._ids:
            self._ids[stream] = uuid.uuid4()
        return self._ids[stream]

    def close(self) -> None:
        """Release connections."""
        self.recorder.datastore.close()


def _recorder(url: str, synchronous: Optional[str]) -> Any:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

        datastore = SQLiteDatastore(parsed.database, lock_timeout=int(SQLITE_BUSY_TIMEOUT))  # rlreg's busy timeout
        if synchronous is not None:
            _set_synchronous(datastore, synchronous)
        return SQLiteApplicationRecorder(datastore)
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    datastore = PostgresDatastore(
        parsed.database, parsed.host or "127.0.0.1", parsed.port or 5432, parsed.username or "postgres",
        parsed.password or "", pool_size=1, max_overflow=2,
    )
    return PostgresApplicationRecorder(datastore)


def _set_synchronous(datastore: Any, level: str) -> None:
    """Give every connection of the peer's pool rlreg's ``PRAGMA synchronous`` (a per-connection setting)."""
    pool = datastore.pool
    create = pool._create_connection

    def create_with_level() -> Any:
        connection = create()
        connection._sqlite_conn.execute(f"PRAGMA synchronous={level}")
        return connection

    pool._create_connection = create_with_level


CONTENDERS = {"rlreg": Rlreg, "eventsourcing": Peer}


def contenders(urls: dict[str, str], synchronous: Optional[str]) -> Iterator[Any]:
    """Open both (the peer with ``synchronous``)."""
    yield Rlreg(urls["rlreg"])
    yield Peer(urls["eventsourcing"], synchronous)
