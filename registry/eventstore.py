"""An append-only event log on SQLAlchemy Core, the same SQL on SQLite and PostgreSQL.

Positions are global, dense (1, 2, 3, … with no holes) and commit-ordered, so a reader tailing the log
with ``events(after=p)`` never skips an event that commits late. Sequences, autoincrement and
``bigserial`` do not give this: two transactions take ids 5 and 6, 6 commits first, a reader sees 6
and moves past 5 before it commits (and a rollback leaves a hole). Here an append, in one transaction,
(1) returns the original events when all its ids were already recorded (an idempotent retry),
(2) checks the stream's expected version with a conditional ``UPDATE`` of ``rlreg_streams``, so a
loser allocates nothing, (3) allocates positions by ``UPDATE rlreg_position SET last = last + n``,
whose row lock is held to commit, so the next allocator waits until this one is visible, then
(4) inserts the events and (5) runs the projector. SQLite takes its write lock up front
(``BEGIN IMMEDIATE``, WAL, a busy timeout), which serialises writers the same way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional, Protocol, Union

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine

from registry import db, errors
from registry.schema import NAME_LENGTH, TYPE_LENGTH, checkpoints, events, position_counter, streams


@dataclasses.dataclass(frozen=True)
class NewEvent:
    """An event to append: a type, a JSON payload and an id (a retry reuses the id)."""

    type: str
    payload: Any
    id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)


@dataclasses.dataclass(frozen=True)
class Event:
    """A recorded event."""

    position: int
    stream: str
    stream_version: int
    type: str
    payload: Any
    timestamp: dt.datetime
    id: uuid.UUID

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "position": self.position,
            "stream": self.stream,
            "stream_version": self.stream_version,
            "type": self.type,
            "payload": self.payload,
            "timestamp": self.timestamp.isoformat(),
            "id": str(self.id),
        }


class Projector(Protocol):
    """Applies events to read models inside the append's transaction."""

    def apply(self, conn: Connection, event: Event) -> None:
        """Apply one recorded event."""

    def clear(self, conn: Connection) -> None:
        """Delete every projection row (before a rebuild)."""


class EventStore:
    """The event log of one database; thread-safe, one engine per store."""

    def __init__(
        self,
        url_or_engine: Union[str, URL, Engine],
        projector: Optional[Projector] = None,
        *,
        upgrade: bool = False,
        check_schema: bool = True,
        create: bool = True,
    ) -> None:
        if isinstance(url_or_engine, Engine):
            self.engine, self._owns_engine = url_or_engine, False
        else:
            self.engine, self._owns_engine = db.create_engine(url_or_engine, create=create), True
        self.projector = projector
        if check_schema:
            try:
                db.ensure_schema(self.engine, upgrade=upgrade, create=create)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Release the engine's connections (only if this store created the engine)."""
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> "EventStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), e.g. for a consumer's writes and checkpoint."""
        with db.sqlite_writer_queue(self.engine), db.translate_errors("write transaction"), self.engine.connect() as conn:
            conn = conn.execution_options(**{db.WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        with db.translate_errors(what), self.engine.connect() as conn, conn.begin():
            yield conn

    # --- append ----------------------------------------------------------------------------

    def append(
        self,
        stream: str,
        new_events: Sequence[NewEvent],
        expected_version: Optional[int] = None,
        *,
        check: Optional[Callable[[Connection], None]] = None,
    ) -> list[Event]:
        """Append ``new_events`` to ``stream`` atomically; ``expected_version=None`` appends at the head.

        Raises ``ConflictError`` (naming stream, expected and actual) when the stream is not at
        ``expected_version``. A retry with the same event ids returns the originally recorded events.
        ``check(conn)``, if given, runs in the append's transaction before anything is written (a
        precondition on other tables, e.g. that the objects the events name are not being collected):
        whatever it raises rolls the append back.
        """
        new_events = list(new_events)
        _check_append(stream, new_events, expected_version)
        try:
            with self.transaction() as conn:
                return self._append_in(conn, stream, new_events, expected_version, check)
        except errors.ConflictError:
            # A concurrent retry of this very append may have committed first: then its events are ours.
            with self._read("re-reading a conflicting append") as conn:
                recorded = self._recorded(conn, new_events)
            if recorded is None:
                raise
            return recorded

    def _append_in(
        self, conn: Connection, stream: str, new_events: list[NewEvent], expected: Optional[int],
        check: Optional[Callable[[Connection], None]] = None,
    ) -> list[Event]:
        recorded = self._recorded(conn, new_events)
        if recorded is not None:
            return recorded
        if check is not None:
            check(conn)
        n = len(new_events)
        first_version = self._advance_stream(conn, stream, n, expected) - n + 1
        last_position = conn.execute(
            position_counter.update()
            .where(position_counter.c.id == 1)
            .values(last=position_counter.c.last + n)
            .returning(position_counter.c.last)
        ).scalar_one()
        now = dt.datetime.now(dt.timezone.utc)
        recorded = [
            Event(last_position - n + 1 + i, stream, first_version + i, e.type, e.payload, now, e.id)
            for i, e in enumerate(new_events)
        ]
        self._insert(conn, recorded)
        if self.projector is not None:
            for event in recorded:
                self.projector.apply(conn, event)
        return recorded

    def _insert(self, conn: Connection, recorded: list[Event]) -> None:
        conn.execute(events.insert(), [dataclasses.asdict(e) for e in recorded])

    def _recorded(self, conn: Connection, new_events: list[NewEvent]) -> Optional[list[Event]]:
        ids = [e.id for e in new_events]
        rows = conn.execute(sa.select(events).where(events.c.id.in_(ids)).order_by(events.c.position)).all()
        if not rows:
            return None
        if len(rows) != len(ids):
            found = {r.id for r in rows}
            raise errors.ConflictError(
                f"append of {len(ids)} events: {len(found)} of their ids are already recorded and "
                f"{len(ids) - len(found)} are not (recorded: {', '.join(sorted(map(str, found))[:3])}): "
                "a retry must resend exactly the original events"
            )
        return [_event(r) for r in rows]

    def _advance_stream(self, conn: Connection, stream: str, n: int, expected: Optional[int]) -> int:
        """Move the stream's version forward by ``n``; returns the new version."""
        if expected is None:
            upsert = _insert_for(conn)(streams).values(name=stream, version=n)
            upsert = upsert.on_conflict_do_update(
                index_elements=[streams.c.name], set_={"version": streams.c.version + n}
            ).returning(streams.c.version)
            return conn.execute(upsert).scalar_one()
        if expected == 0:
            claim = _insert_for(conn)(streams).values(name=stream, version=n).on_conflict_do_nothing()
        else:
            claim = (
                streams.update()
                .where(streams.c.name == stream, streams.c.version == expected)
                .values(version=expected + n)
            )
        if conn.execute(claim.returning(streams.c.version)).first() is None:
            actual = conn.execute(sa.select(streams.c.version).where(streams.c.name == stream)).scalar()
            raise errors.ConflictError(
                f"stream {stream!r}: expected version {expected}, but it is at version {actual or 0}"
            )
        return expected + n

    # --- reads -----------------------------------------------------------------------------

    def events(self, after: int = 0, limit: Optional[int] = None) -> list[Event]:
        """Events with ``position > after``, ascending; at most ``limit``."""
        query = sa.select(events).where(events.c.position > after).order_by(events.c.position)
        if limit is not None:
            query = query.limit(limit)
        with self._read("reading events") as conn:
            return [_event(r) for r in conn.execute(query)]

    def read_stream(self, stream: str, after: int = 0) -> list[Event]:
        """The events of ``stream`` with ``stream_version > after``, in stream order."""
        query = (
            sa.select(events)
            .where(events.c.stream == stream, events.c.stream_version > after)
            .order_by(events.c.stream_version)
        )
        with self._read(f"reading stream {stream!r}") as conn:
            return [_event(r) for r in conn.execute(query)]

    def stream_version(self, stream: str) -> int:
        """The current version of ``stream`` (0 when it has no events)."""
        with self._read(f"reading stream {stream!r}") as conn:
            version = conn.execute(sa.select(streams.c.version).where(streams.c.name == stream)).scalar()
        return version or 0

    def head(self) -> int:
        """The position of the last committed event (0 for an empty log)."""
        with self._read("reading the head") as conn:
            return conn.execute(sa.select(position_counter.c.last).where(position_counter.c.id == 1)).scalar_one()

    def follow(
        self,
        after: int = 0,
        *,
        poll_interval: float = 0.05,
        timeout: Optional[float] = None,
        stop: Optional[threading.Event] = None,
        batch: int = 500,
    ) -> Iterator[Event]:
        """Yield events after ``after`` as they commit; ends after ``timeout`` s without one, or on ``stop``."""
        idle_since = time.monotonic()
        while stop is None or not stop.is_set():
            got = self.events(after, limit=batch)
            for event in got:
                yield event
                after = event.position
            if got:
                idle_since = time.monotonic()
                continue
            if timeout is not None and time.monotonic() - idle_since >= timeout:
                return
            if stop is not None:
                stop.wait(poll_interval)
            else:
                time.sleep(poll_interval)

    # --- consumer checkpoints --------------------------------------------------------------

    def get_checkpoint(self, consumer: str) -> int:
        """The position ``consumer`` has processed up to (0 if it never saved one)."""
        with self._read(f"reading checkpoint {consumer!r}") as conn:
            return _checkpoint(conn, consumer)

    def set_checkpoint(self, consumer: str, position: int, conn: Optional[Connection] = None) -> None:
        """Advance ``consumer``'s checkpoint to ``position``, in ``conn``'s transaction if given.

        Raises ``ConflictError`` if that would move it backwards or past the head.
        """
        _check_name("consumer", consumer)
        if conn is None:
            with self.transaction() as own:
                return self.set_checkpoint(consumer, position, own)
        with db.translate_errors(f"saving checkpoint {consumer!r}"):
            _set_checkpoint(conn, consumer, position)
        return None

    # --- projections -----------------------------------------------------------------------

    def rebuild_projections(self, batch: int = 1000) -> int:
        """Delete every projection row and replay the whole log into them; returns the events replayed."""
        if self.projector is None:
            raise errors.RegistryError("this EventStore has no projector to rebuild")
        with self.transaction() as conn:
            # Take the counter's row lock first: no append interleaves with the replay.
            conn.execute(position_counter.update().values(last=position_counter.c.last))
            self.projector.clear(conn)
            count, after = 0, 0
            while True:
                rows = conn.execute(
                    sa.select(events).where(events.c.position > after).order_by(events.c.position).limit(batch)
                ).all()
                if not rows:
                    return count
                for row in rows:
                    self.projector.apply(conn, _event(row))
                count, after = count + len(rows), rows[-1].position


def _insert_for(conn: Connection) -> Callable[..., Any]:
    return sqlite.insert if db.is_sqlite(conn) else postgresql.insert


def _event(row: Any) -> Event:
    return Event(row.position, row.stream, row.stream_version, row.type, row.payload, row.timestamp, row.id)


def _checkpoint(conn: Connection, consumer: str) -> int:
    query = sa.select(checkpoints.c.position).where(checkpoints.c.consumer == consumer)
    return conn.execute(query).scalar() or 0


def _set_checkpoint(conn: Connection, consumer: str, position: int) -> None:
    head = conn.execute(sa.select(position_counter.c.last)).scalar_one()
    if isinstance(position, bool) or not isinstance(position, int) or position < 0 or position > head:
        raise errors.ConflictError(
            f"checkpoint {consumer!r}: position {position!r} is not in the log (head is {head})"
        )
    now = dt.datetime.now(dt.timezone.utc)
    insert = _insert_for(conn)(checkpoints).values(consumer=consumer, position=position, updated_at=now)
    conn.execute(insert.on_conflict_do_nothing())
    current = conn.execute(
        sa.select(checkpoints.c.position).where(checkpoints.c.consumer == consumer).with_for_update()
    ).scalar_one()
    if position < current:
        raise errors.ConflictError(
            f"checkpoint {consumer!r}: cannot move backwards from {current} to {position}"
        )
    conn.execute(
        checkpoints.update().where(checkpoints.c.consumer == consumer).values(position=position, updated_at=now)
    )


def _check_name(what: str, name: Any, limit: int = NAME_LENGTH) -> None:
    if not isinstance(name, str) or not name or len(name) > limit or name != name.strip():
        raise errors.InvalidNameError(
            f"{what} name {name!r} is invalid: expected 1-{limit} characters without surrounding whitespace"
        )


def _check_append(stream: str, new_events: list[NewEvent], expected: Optional[int]) -> None:
    _check_name("stream", stream)
    if not new_events:
        raise errors.InvalidEventError(f"append to stream {stream!r}: no events given")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int) or expected < 0):
        raise errors.InvalidEventError(
            f"append to stream {stream!r}: expected_version must be None or an int >= 0, got {expected!r}"
        )
    for e in new_events:
        if not isinstance(e, NewEvent):
            raise errors.InvalidEventError(f"append to stream {stream!r}: {e!r} is not a NewEvent")
        _check_name("event type", e.type, TYPE_LENGTH)
        try:
            json.dumps(e.payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise errors.InvalidEventError(
                f"append to stream {stream!r}: the payload of {e.type!r} is not JSON: {exc}"
            ) from exc
    if len({e.id for e in new_events}) != len(new_events):
        raise errors.InvalidEventError(f"append to stream {stream!r}: two events share an id")
