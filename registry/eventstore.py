"""An append-only event log on SQLite and PostgreSQL, with consumer checkpoints and push tailing.

Positions are global, dense (1, 2, 3, … with no holes) and commit-ordered, so a reader tailing the log
with ``events(after=p)`` never skips an event that commits late. Sequences, autoincrement and
``bigserial`` do not give this: two transactions take ids 5 and 6, 6 commits first, a reader sees 6
and moves past 5 before it commits (and a rollback leaves a hole). On PostgreSQL an append, in one
transaction, (1) checks the stream's expected version with a conditional write of ``rlreg_streams``,
so a loser allocates nothing, (2) allocates positions by ``UPDATE rlreg_position SET last = last + n``,
whose row lock is held to commit, so the next allocator waits until this one is visible, (3) inserts
the events and (4) runs the projector when it handles one of them. SQLite takes its write lock up
front (``BEGIN IMMEDIATE``, WAL, a busy timeout), which serialises writers: there the next position is
``max(position) + 1`` and a stream's version the highest of its events, read under that lock (no
counter or stream rows). An event id already recorded fails the insert (ids are unique); the append
then returns the original events when all its ids are those of one earlier append (an idempotent
retry). The SQL of these steps lives in ``registry.eventlog``: one statement per append on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Optional, Protocol, Union

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from registry import db, errors, tailing
from registry.eventlog import PostgresLog, SQLiteLog, gc_paused, uuid_from_int
from registry.names import MAX_INTEGER, validate_position
from registry.schema import NAME_LENGTH, TYPE_LENGTH, checkpoints


_ids_random = random.Random(os.urandom(32))
# A forked child must not draw its parent's numbers (the module's own generator is not reseeded by Python)
os.register_at_fork(after_in_child=lambda: _ids_random.seed(os.urandom(32)))


def time_ordered_uuid() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Ids that grow with time land at the end of the id index instead of on random pages: an append of
    many events touches a few index pages, not one per event. The random bits come from a generator
    seeded with 256 bits from the OS in each process (ids must be unique, not secret): 0.13 µs an id,
    where a system call for each (``os.urandom``) took 0.86 µs.
    """
    value = (time.time_ns() // 1_000_000) << 80 | (_ids_random.getrandbits(76) & _RANDOM_BITS) | _VERSION_7
    return uuid_from_int(value)  # in range by construction: no UUID(int=) checks


_RANDOM_BITS = (0xFFF << 64) | ((1 << 62) - 1)  # rand_a (12 bits) and rand_b (62 bits)
_VERSION_7 = (0x7 << 76) | (0b10 << 62)  # the version and variant fields


@dataclasses.dataclass(frozen=True)
class NewEvent:
    """An event to append: a type, a JSON payload, an id (a retry reuses the id) and who appends it.

    ``actor`` (a JSON object, see ``registry.actor``) left ``None`` is filled by the store's ``actor``
    callable, if it has one.
    """

    type: str
    payload: Any
    id: uuid.UUID = dataclasses.field(default_factory=time_ordered_uuid)
    actor: Optional[dict[str, Any]] = None


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
    actor: Optional[dict[str, Any]] = None

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
            "actor": self.actor,
        }


class Projector(Protocol):
    """Applies events to read models inside the append's transaction.

    A projector may also define ``handles(event_type) -> bool``: appends of events it does not handle
    then skip it (on PostgreSQL they are then a single statement, without a transaction around it).
    """

    def apply(self, conn: Connection, event: Event) -> None:
        """Apply one recorded event."""

    def clear(self, conn: Connection) -> None:
        """Delete every projection row (before a rebuild)."""


def closed_message(where: str) -> str:
    """What ``ClosedError`` says of the registry at ``where``."""
    return f"the registry at {where} was closed (close(), or the end of its `with` block): open a new one to use it again"


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
        actor: Optional[Callable[[], dict[str, Any]]] = None,
    ) -> None:
        """``actor()``, if given, supplies the actor of each appended event that names none."""
        self.actor = actor
        self.closed = False  # close() was called
        if isinstance(url_or_engine, Engine):
            self.engine, self._owns_engine = url_or_engine, False
        else:
            self.engine, self._owns_engine = db.create_engine(url_or_engine, create=create), True
        self.projector = projector
        self._sqlite = db.is_sqlite(self.engine)
        self._log: Union[SQLiteLog, PostgresLog] = SQLiteLog() if self._sqlite else PostgresLog()
        in_memory = self.engine.url.database in (None, "", ":memory:")
        self.in_memory = self._sqlite and in_memory  # one connection, for one thread (sqlite://)
        self._pinned = db.ThreadConnections(self.engine) if self._sqlite and not in_memory else None
        self._writers = db.sqlite_writer_queue(self.engine)
        if check_schema:
            try:
                db.ensure_schema(self.engine, upgrade=upgrade, create=create)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Release the engine's connections (only if this store created the engine); a store that
        created its engine refuses any later use with ``ClosedError`` rather than connect again."""
        self.closed = True
        if self._owns_engine:  # first: no thread connects again once close() began, nor takes an idle
            where = self.engine.url.render_as_string(hide_password=True)  # pooled connection
            db.close_for_good(self.engine, lambda: errors.ClosedError(closed_message(where)))
        if self._pinned is not None:
            self._pinned.close()

    def __enter__(self) -> "EventStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite) for a consumer's writes, checkpoint and appends."""
        # The writer queue first, then the connection: a thread waiting its turn holds none of the pool's
        # connections, which the queue's holder may need for its reads (the other order ran a process
        # out of connections: the holder's read waited 30 s for one and failed).
        with self._writers, db.translate_errors("write transaction"), self.engine.connect() as conn:
            conn = conn.execution_options(**{db.WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        with db.translate_errors(what), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _driver(self, what: str) -> Iterator[Any]:
        """A driver connection outside any transaction (each statement commits on its own)."""
        if self._pinned is not None:
            with db.translate_errors(what):
                yield self._pinned.get()
            return
        with db.dbapi_connection(self.engine, what, autocommit=True) as driver:
            yield driver

    # --- append ----------------------------------------------------------------------------

    def append(
        self,
        stream: str,
        new_events: Sequence[NewEvent],
        expected_version: Optional[int] = None,
        *,
        conn: Optional[Connection] = None,
    ) -> list[Event]:
        """Append ``new_events`` to ``stream`` atomically; ``expected_version=None`` appends at the head.

        Raises ``ConflictError`` (naming stream, expected and actual) when the stream is not at
        ``expected_version``. A retry with the same event ids returns the originally recorded events.
        With ``conn`` (from ``transaction()``) the append joins that transaction, e.g. to commit a
        consumer's new events with its ``set_checkpoint`` (a conflict then rolls both back).
        """
        new_events = self._with_actor(list(new_events))
        payloads = _check_append(stream, new_events, expected_version)
        what = f"append to stream {stream!r}"
        if conn is not None:
            with db.translate_errors(what):
                return self._append_joined(conn, stream, new_events, payloads, expected_version)
        try:
            with db.translate_errors(what):
                return self._append_own(stream, new_events, payloads, expected_version)
        except errors.ConflictError:
            # An id already recorded, or a concurrent retry of this very append won: then its events are ours.
            with self._driver("re-reading a conflicting append") as driver:
                recorded = self._recorded(driver, new_events)
            if recorded is None:
                raise
            return recorded

    def _with_actor(self, new_events: list[NewEvent]) -> list[NewEvent]:
        if self.actor is None or all(not isinstance(e, NewEvent) or e.actor is not None for e in new_events):
            return new_events
        actor = self.actor()
        return [dataclasses.replace(e, actor=actor) if isinstance(e, NewEvent) and e.actor is None else e
                for e in new_events]

    def _append_own(
        self, stream: str, new_events: list[NewEvent], payloads: list[str], expected: Optional[int]
    ) -> list[Event]:
        if self._projects(new_events):
            with self.transaction() as conn:
                return self._write_and_project(conn, stream, new_events, payloads, expected)
        columns = _columns(new_events, payloads)  # before the write lock: it is held for as little as it can be
        if not self._sqlite:
            with self._driver("appending") as driver:  # one statement, its own transaction
                written = self._write(driver, stream, columns, expected)
        else:
            with self._writers:
                driver = self._pinned.get() if self._pinned is not None else None
                if driver is None:  # in memory: the engine's one connection
                    with db.dbapi_connection(self.engine, "appending") as driver:
                        written = self._write_sqlite(driver, stream, columns, expected)
                else:
                    written = self._write_sqlite(driver, stream, columns, expected)
        return _recorded_events(stream, new_events, written)

    def _write_sqlite(self, driver: Any, stream: str, columns: _Columns, expected: Optional[int]) -> _Written:
        driver.execute("BEGIN IMMEDIATE")
        try:
            written = self._write(driver, stream, columns, expected)
            driver.execute("COMMIT")
        except BaseException:
            driver.rollback()
            raise
        return written

    def _append_joined(
        self, conn: Connection, stream: str, new_events: list[NewEvent], payloads: list[str], expected: Optional[int]
    ) -> list[Event]:
        # Check first: on PostgreSQL a failed insert would abort the caller's whole transaction.
        recorded = self._recorded(_driver_of(conn), new_events, first_only=True)
        if recorded is not None:
            return recorded
        return self._write_and_project(conn, stream, new_events, payloads, expected)

    def _write_and_project(
        self, conn: Connection, stream: str, new_events: list[NewEvent], payloads: list[str], expected: Optional[int]
    ) -> list[Event]:
        written = self._write(_driver_of(conn), stream, _columns(new_events, payloads), expected)
        recorded = _recorded_events(stream, new_events, written)
        if self.projector is not None:
            for event in recorded:
                self.projector.apply(conn, event)
        return recorded

    def _projects(self, new_events: list[NewEvent]) -> bool:
        if self.projector is None:
            return False
        handles = getattr(self.projector, "handles", None)
        if handles is None:
            return True
        if len(new_events) == 1:
            return handles(new_events[0].type)
        return any(map(handles, {e.type for e in new_events}))

    def _write(self, driver: Any, stream: str, columns: _Columns, expected: Optional[int]) -> _Written:
        now = dt.datetime.now(dt.timezone.utc)
        types, payloads, ids, actors = columns
        written = self._log.write(driver, stream, types, payloads, ids, expected, now, actors)
        if written is None:
            actual = self._log.stream_version(driver, stream)
            raise errors.ConflictError(
                f"stream {stream!r}: expected version {expected}, but it is at version {actual}"
            )
        return written[0], written[1], now

    def _recorded(self, driver: Any, new_events: list[NewEvent], first_only: bool = False) -> Optional[list[Event]]:
        """The events of an earlier append with exactly these ids, or None if none of them is recorded."""
        ids = [e.id for e in new_events]
        first = self._log.position_of(driver, ids[0])
        if first is not None:
            rows = self._log.span(driver, first, first + len(ids) - 1)
            if [r["id"] for r in rows] == ids:
                return events_of(rows)
        elif first_only:
            return None  # a later id already recorded fails the insert
        found = self._log.count_ids(driver, ids)
        if not found:
            return None
        raise errors.ConflictError(
            f"append of {len(ids)} events: {len(found)} of their ids are already recorded and "
            f"{len(ids) - len(found)} are not (recorded: {', '.join(sorted(found)[:3])}): "
            "a retry must resend exactly the original events"
        )

    # --- reads -----------------------------------------------------------------------------

    def events(self, after: int = 0, limit: Optional[int] = None, *, stream: Optional[str] = None,
               types: Optional[Sequence[str]] = None) -> list[Event]:
        """Events with ``position > after``, ascending; at most ``limit``; only those of ``stream`` and of
        ``types`` when given (the filter is the read's: ``limit`` counts the events returned)."""
        validate_position(after, "events after position")
        if limit is not None:
            validate_position(limit, "events limit")
        if stream is not None:
            _check_name("stream", stream)
        if types is not None:
            if isinstance(types, str | Mapping) or not isinstance(types, Iterable):
                raise errors.InvalidNameError(f"events types {types!r}: expected a list of event type names")
            types = list(types)
            for name in types:  # (before the set: a list inside is unhashable)
                _check_name("event type", name, TYPE_LENGTH)
            types = sorted(set(types))
            if not types:
                return []
            if len(types) > _MAX_TYPES:
                raise errors.InvalidNameError(f"events types: {len(types)} names, at most {_MAX_TYPES} at once")
        with self._driver("reading events") as driver:
            return events_of(self._log.events(driver, after, limit, stream, types))

    def read_stream(self, stream: str, after: int = 0, types: Optional[Sequence[str]] = None) -> list[Event]:
        """The events of ``stream`` with ``stream_version > after`` (only ``types``, if given), in stream order."""
        with self._driver(f"reading stream {stream!r}") as driver:
            return events_of(self._log.stream(driver, stream, after, types))

    def stream_version(self, stream: str, conn: Optional[Connection] = None) -> int:
        """The current version of ``stream`` (0 when it has no events), in ``conn``'s transaction if given."""
        if conn is not None:
            with db.translate_errors(f"reading stream {stream!r}"):
                return self._log.stream_version(_driver_of(conn), stream)
        with self._driver(f"reading stream {stream!r}") as driver:
            return self._log.stream_version(driver, stream)

    def head(self) -> int:
        """The position of the last committed event (0 for an empty log)."""
        with self._driver("reading the head") as driver:
            return self._log.head(driver)

    def follow(
        self,
        after: int = 0,
        *,
        poll_interval: Optional[float] = None,
        timeout: Optional[float] = None,
        stop: Optional[threading.Event] = None,
        batch: int = 500,
    ) -> Iterator[Event]:
        """Yield events after ``after`` as they commit; ends after ``timeout`` s without one, or on ``stop``.

        Woken by the database (PostgreSQL ``LISTEN``, SQLite ``data_version``), it reads by position
        as ``events()`` does; ``poll_interval`` (seconds) polls instead. Once ``stop`` is set it yields
        nothing more, not even the rest of a batch already read. Its arguments are checked at the call
        (``after`` past the head is a ``NotFoundError``: see ``check_position``), not at the first event.
        """
        self.check_position(after)
        _check_seconds("poll_interval", poll_interval, zero=False)
        _check_seconds("timeout", timeout, zero=True)
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise errors.InvalidNameError(f"follow: batch {batch!r} is not a positive integer")
        return self._follow(after, poll_interval, timeout, stop, batch)

    def _follow(self, after: int, poll_interval: Optional[float], timeout: Optional[float],
                stop: Optional[threading.Event], batch: int) -> Iterator[Event]:
        with tailing.waker(self.engine, poll_interval) as waker:
            idle_since = time.monotonic()
            while stop is None or not stop.is_set():
                if self.closed:  # (its connection is its own: close() cannot take it away, so it looks)
                    where = self.engine.url.render_as_string(hide_password=True)
                    raise errors.ClosedError(closed_message(where))
                waker.mark()
                got = self._follower_read(waker.driver, after, batch)
                for event in got:
                    if stop is not None and stop.is_set():
                        return
                    yield event
                    after = event.position
                if got:
                    idle_since = time.monotonic()
                    if len(got) == batch:
                        continue
                left = None if timeout is None else timeout - (time.monotonic() - idle_since)
                if left is not None and left <= 0:
                    return
                waker.wait(tailing.SAFETY_READ if left is None else left, stop)

    def check_position(self, after: int, what: str = "follow after position") -> int:
        """``after`` if the log holds it (0 up to the head), else ``InvalidNameError`` (not a position) or
        ``NotFoundError`` (past the head: a position kept from another database, or from this one before
        it was restored from an older backup; following from there would skip the events up to it)."""
        validate_position(after, what)
        if after:
            head = self.head()
            if after > head:
                raise errors.NotFoundError(
                    f"{what} {after}: the log ends at position {head}, so there is no such position here (was "
                    "it kept from another database, or from this one before it was restored from a backup?): "
                    f"follow from {head} or less"
                )
        return after

    def _follower_read(self, driver: Any, after: int, limit: int) -> list[Event]:
        """``events(after, limit)`` on a follower's own connection (``driver``), else through the pool."""
        if driver is None:
            return self.events(after, limit=limit)
        with db.translate_errors("reading events"):
            return events_of(self._log.events(driver, after, limit))

    # --- consumer checkpoints --------------------------------------------------------------

    def get_checkpoint(self, consumer: str) -> int:
        """The position ``consumer`` has processed up to (0 if it never saved one)."""
        _check_name("consumer", consumer)
        with self._read(f"reading checkpoint {consumer!r}") as conn:
            return _checkpoint(conn, consumer)

    def set_checkpoint(
        self, consumer: str, position: int, conn: Optional[Connection] = None, *, expected: Optional[int] = None
    ) -> None:
        """Advance ``consumer``'s checkpoint to ``position``, in ``conn``'s transaction if given.

        ``expected`` is the checkpoint the caller read before processing: if another instance of the
        consumer moved it since, this raises ``ConflictError`` and the caller's transaction rolls back
        (its side effects with it), so racing instances process each event exactly once. A position
        that does not move the checkpoint forward, or lies past the head, is refused the same way.
        """
        _check_name("consumer", consumer)
        if conn is None:
            with self.transaction() as own:
                return self.set_checkpoint(consumer, position, own, expected=expected)
        with db.translate_errors(f"saving checkpoint {consumer!r}"):
            _set_checkpoint(conn, consumer, position, expected, self._log.head(_driver_of(conn)))
        return None

    # --- projections -----------------------------------------------------------------------

    def rebuild_projections(self, batch: int = 1000) -> int:
        """Delete every projection row and replay the whole log into them; returns the events replayed."""
        if self.projector is None:
            raise errors.RegistryError("this EventStore has no projector to rebuild")
        with self.transaction() as conn:
            driver = _driver_of(conn)
            self._log.lock_appends(driver)  # first: no append interleaves with the replay
            self.projector.clear(conn)
            count, after = 0, 0
            while True:
                rows = self._log.events(driver, after, batch)
                if not rows:
                    return count
                for event in events_of(rows):
                    self.projector.apply(conn, event)
                count, after = count + len(rows), rows[-1]["position"]


_Columns = tuple[list[str], list[str], list[uuid.UUID], list[Optional[str]]]  # types, payloads, ids, actors
_Written = tuple[int, int, dt.datetime]  # last position, last stream version, timestamp


def _columns(new_events: list[NewEvent], payloads: list[str]) -> _Columns:
    """What the log's ``write`` takes, column by column (payloads already JSON)."""
    actors = [None if e.actor is None else _JSON.encode(e.actor) for e in new_events]
    return [e.type for e in new_events], payloads, [e.id for e in new_events], actors


def _recorded_events(stream: str, new_events: list[NewEvent], written: _Written) -> list[Event]:
    """The events an append recorded, from its last position and stream version."""
    last_position, last_version, now = written
    first, version = last_position - len(new_events) + 1, last_version - len(new_events) + 1
    return events_of(
        [{"position": first + i, "stream": stream, "stream_version": version + i, "type": e.type,
          "payload": e.payload, "timestamp": now, "id": e.id, "actor": e.actor}
         for i, e in enumerate(new_events)]
    )


def _check_seconds(what: str, value: Any, *, zero: bool) -> None:
    """``InvalidNameError`` unless ``value`` is ``None`` or a number of seconds (0 too, if ``zero``)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value >= 0 if zero else value > 0):
        raise errors.InvalidNameError(f"follow: {what} {value!r} is not a number of seconds "
                                      f"({'0 or more' if zero else 'more than 0'})")


_MAX_TYPES = 1000  # event types of one filtered read (SQLite's variables: 32,766 in its default build)


def events_of(rows: Sequence[dict[str, Any]]) -> list[Event]:
    """``[Event(**row) for row in rows]``, each dict becoming an event's ``__dict__`` as it is.

    The frozen dataclass's ``__init__`` makes one ``object.__setattr__`` call per field; the rows
    (from ``registry.eventlog`` or an append) already hold exactly the fields, in order.
    """
    if len(rows) < 256:  # gc_paused would not pause for so few: skip its context manager
        return [_event(row) for row in rows]
    with gc_paused(len(rows)):
        return [_event(row) for row in rows]


def _event(fields: dict[str, Any], new: Any = object.__new__, set_: Any = object.__setattr__) -> Event:
    event = new(Event)
    set_(event, "__dict__", fields)
    return event


def _driver_of(conn: Connection) -> Any:
    """The sqlite3/psycopg connection under a SQLAlchemy connection (inside its transaction)."""
    return conn.connection.driver_connection


def _insert_for(conn: Connection) -> Callable[..., Any]:
    if db.is_sqlite(conn):  # each dialect imported only where it is used (start-up of the CLI)
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert


def _checkpoint(conn: Connection, consumer: str) -> int:
    query = sa.select(checkpoints.c.position).where(checkpoints.c.consumer == consumer)
    return conn.execute(query).scalar() or 0


def _set_checkpoint(conn: Connection, consumer: str, position: int, expected: Optional[int], head: int) -> None:
    if not _is_position(position) or position > head:
        raise errors.ConflictError(
            f"checkpoint {consumer!r}: position {position!r} is not in the log (head is {head})"
        )
    if expected is not None and not _is_position(expected):
        raise errors.ConflictError(f"checkpoint {consumer!r}: expected {expected!r} is not a position")
    now = dt.datetime.now(dt.timezone.utc)
    moved = _move_checkpoint(conn, consumer, position, expected, now)
    if moved:
        return
    current = _checkpoint(conn, consumer)
    if expected is not None and current != expected:
        raise errors.ConflictError(
            f"checkpoint {consumer!r}: expected it at {expected}, but it is at {current} (another instance "
            "of this consumer moved it: roll back, re-read the checkpoint and process from there)"
        )
    raise errors.ConflictError(
        f"checkpoint {consumer!r}: cannot move from {current} to {position}: it only moves forward (another "
        "instance of this consumer may have processed these events: roll back)"
    )


def _move_checkpoint(conn: Connection, consumer: str, position: int, expected: Optional[int], now: dt.datetime) -> bool:
    """Compare and set in one statement (the row lock makes a racing instance re-check); True if it moved."""
    table = checkpoints
    if expected is not None and expected > 0:
        moved = conn.execute(
            table.update()
            .where(table.c.consumer == consumer, table.c.position == expected, table.c.position < position)
            .values(position=position, updated_at=now)
        )
        return moved.rowcount == 1
    guard = table.c.position < position if expected is None else sa.and_(table.c.position == 0, table.c.position < position)
    insert = _insert_for(conn)(table).values(consumer=consumer, position=position, updated_at=now)
    upsert = insert.on_conflict_do_update(
        index_elements=[table.c.consumer],
        set_={"position": position, "updated_at": now},
        where=guard,
    ).returning(table.c.position)
    return position > 0 and conn.execute(upsert).first() is not None


def _is_position(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_name(what: str, name: Any, limit: int = NAME_LENGTH) -> None:
    if not isinstance(name, str) or not name or len(name) > limit or name != name.strip() or "\0" in name:
        raise errors.InvalidNameError(
            f"{what} name {name!r} is invalid: expected 1-{limit} characters without surrounding whitespace "
            "or NUL (PostgreSQL's text cannot hold it)"
        )


_JSON = json.JSONEncoder(allow_nan=False)  # json.dumps(..., allow_nan=False) would build one per call


def _payload_encoder() -> Callable[[Any], str]:
    """``_JSON.encode`` for the payloads of one append, its C encoder built once instead of once per payload.

    The encoder's circular-reference markers are its own: it is not shared between threads.
    """
    if c_make_encoder is None:  # no C accelerator
        whole = _JSON.encode
    else:
        encode = c_make_encoder({}, _JSON.default, encode_basestring_ascii, None, ": ", ", ", False, False, False)

        def whole(value: Any) -> str:
            return "".join(encode(value, 0))

    def payload(value: Any) -> str:
        if type(value) is dict and db.encoding_json() and any(map(db.encoded_json, value.values())):
            return _spliced(value, whole)
        return whole(value)

    return payload


def _spliced(value: dict, whole: Callable[[Any], str]) -> str:
    """``whole(value)``, each value ``db.json_encoded`` gave a text taking that text (the encoder's own
    format: ``{"key": value, ...}``, ASCII)."""
    if not all(type(k) is str for k in value):
        return whole(value)
    parts = []
    for key, item in value.items():
        text = db.encoded_json(item)
        parts.append(f"{encode_basestring_ascii(key)}: {whole(item) if text is None else text}")
    return "{" + ", ".join(parts) + "}"


def encode_json(value: Any) -> str:
    """``value`` as an append encodes a payload's values (``json.dumps``'s format, NaN refused)."""
    return _JSON.encode(value)


def _check_append(stream: str, new_events: list[NewEvent], expected: Optional[int]) -> list[str]:
    """Refuse bad input before anything is written; returns the payloads as JSON text."""
    _check_name("stream", stream)
    if not new_events:
        raise errors.InvalidEventError(f"append to stream {stream!r}: no events given")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)
                                 or not 0 <= expected <= MAX_INTEGER):
        raise errors.InvalidEventError(
            f"append to stream {stream!r}: expected_version must be None or an int from 0 to 2^63 - 1, got {expected!r}"
        )
    payloads, encode, types = [], _payload_encoder(), set()
    for e in new_events:
        if not isinstance(e, NewEvent):
            raise errors.InvalidEventError(f"append to stream {stream!r}: {e!r} is not a NewEvent")
        if e.type not in types:  # an append's events mostly share a type: checked once
            _check_name("event type", e.type, TYPE_LENGTH)
            types.add(e.type)
        if not isinstance(e.id, uuid.UUID):
            raise errors.InvalidEventError(f"append to stream {stream!r}: event id {e.id!r} is not a uuid.UUID")
        try:
            payloads.append(encode(e.payload))
        except (TypeError, ValueError) as exc:
            raise errors.InvalidEventError(
                f"append to stream {stream!r}: the payload of {e.type!r} is not JSON: {exc}"
            ) from exc
        if e.actor is not None and not _is_json_object(e.actor):
            raise errors.InvalidEventError(
                f"append to stream {stream!r}: the actor of {e.type!r} is not a JSON object: {e.actor!r}"
            )
    if len(new_events) > 1 and len({e.id for e in new_events}) != len(new_events):
        raise errors.InvalidEventError(f"append to stream {stream!r}: two events share an id")
    return payloads


def _is_json_object(value: Any) -> bool:
    try:
        _JSON.encode(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)
