"""The event log's hot SQL, one class per backend, on the raw DBAPI connection (no per-row SQLAlchemy work).

An append is two statements inside the writer's transaction on SQLite (SQLite runs one writer at a
time, so the next position and the stream's version are read off the log itself, then the events
inserted) and ONE statement on PostgreSQL: data-modifying CTEs lock the position counter's row (held to
commit, so positions commit in order), claim the stream version, move the counter, insert the events
and ``pg_notify`` the followers. Each step only runs if the one before it did, so a conflicting append
changes nothing. The counter is locked before the stream's row: every append takes the two in that
order, so a transaction appending to several streams (a consumer's ``append(conn=...)``) cannot
deadlock with a plain append to one of them (the other order held a stream's row while waiting for
the counter that transaction held). Idempotency is checked by the first event's id (unique, so
indexed) only when the insert or the stream claim fails: the common path never looks.

Reads return one dict of ``Event``'s fields per row, built in one pass with the page's JSON parsed in
one call; the caller makes each dict an event's ``__dict__``.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional

EVENT_COLUMNS = "position, stream, stream_version, type, payload, timestamp, id, actor"
# SQLite keeps UTC timestamps without an offset: SQLite appends it, in C, for ``fromisoformat``
SQLITE_EVENT_COLUMNS = EVENT_COLUMNS.replace("timestamp", "timestamp || '+00:00'")
# JSON parsed in bulk, as on SQLite
PG_EVENT_COLUMNS = EVENT_COLUMNS.replace("payload", "payload::text").replace("actor", "actor::text")
CHANNEL = "rlreg_events"  # PostgreSQL NOTIFY channel: woken followers read by position
UTC = dt.timezone.utc


class SQLiteLog:
    """The log's statements on SQLite (the caller holds ``BEGIN IMMEDIATE``).

    SQLite runs one writer at a time, so under the write lock the next position is ``max(position) + 1``
    (the rowid's last entry) and a stream's version is ``max(stream_version)`` of its events (one seek
    in the stream index): an append writes its events and nothing else. No counter or stream row is
    needed for dense, commit-ordered positions or the expected-version check (migration 0006).
    """

    read_all = f"SELECT {SQLITE_EVENT_COLUMNS} FROM rlreg_events WHERE position > ? ORDER BY position LIMIT ?"
    read_span = f"SELECT {SQLITE_EVENT_COLUMNS} FROM rlreg_events WHERE position BETWEEN ? AND ? ORDER BY position"
    read_stream_sql = (
        f"SELECT {SQLITE_EVENT_COLUMNS} FROM rlreg_events WHERE stream = ? AND stream_version > ? ORDER BY stream_version"
    )
    # Each max() in a SELECT of its own: SQLite answers it from the end of the index (one seek). Folded
    # into one INSERT … SELECT (the version read through a subquery in FROM) it scanned the stream's whole
    # index range instead: 250,000 VM steps at 50,000 events (SQLite 3.40).
    _head = "ifnull((SELECT max(position) FROM rlreg_events), 0)"
    _version = "ifnull((SELECT max(stream_version) FROM rlreg_events WHERE stream = ?), 0)"
    head_sql, version_sql, heads_sql = f"SELECT {_head}", f"SELECT {_version}", f"SELECT {_head}, {_version}"
    insert = (
        "INSERT INTO rlreg_events (position, id, stream, stream_version, type, payload, timestamp, actor) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def write(
        self, dbapi: Any, stream: str, types: Sequence[str], payloads: Sequence[str], ids: Sequence[uuid.UUID],
        expected: Optional[int], now: dt.datetime, actors: Sequence[Optional[str]],
    ) -> Optional[tuple[int, int]]:
        """Append; returns (last position, last stream version), or None if the stream is not at ``expected``."""
        head, version = dbapi.execute(self.heads_sql, (stream,)).fetchone()
        if expected is not None and version != expected:
            return None
        stamp = now.isoformat(" ", "microseconds")[:26]  # UTC, SQLAlchemy's "%Y-%m-%d %H:%M:%S.%f" (strftime: 3x slower)
        n = len(ids)
        if n == 1:
            dbapi.execute(self.insert, (head + 1, ids[0].hex, stream, version + 1, types[0], payloads[0], stamp, actors[0]))
            return head + 1, version + 1
        # Rows go in by multi-row INSERTs of 64, 32, .., 1 rows (n's binary digits: at most seven
        # statements an append, and seven texts in the connection's statement cache): one step of the
        # statement for many rows, where executemany steps it once per row (a fill of 100-event appends
        # ran 5% faster, the SQL being most of an append).
        i = 0
        for size in _CHUNKS:
            while n - i >= size:
                params: list[Any] = []
                for j in range(i, i + size):
                    params += (head + 1 + j, ids[j].hex, stream, version + 1 + j, types[j], payloads[j], stamp,
                               actors[j])
                dbapi.execute(_insert_rows(size), params)
                i += size
        return head + n, version + n

    def events(self, dbapi: Any, after: int, limit: Optional[int], stream: Optional[str] = None,
               types: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
        """Rows with ``position > after``, ascending (only of ``stream`` and ``types``, if given)."""
        if stream is None and types is None:
            return _sqlite_page(dbapi, self.read_all, (after, -1 if limit is None else limit), limit)
        where, params = _filters("?", stream, types, array=False)
        query = self.read_all.replace(" ORDER BY", f"{where} ORDER BY")
        return _sqlite_page(dbapi, query, (after, *params, -1 if limit is None else limit), limit)

    def span(self, dbapi: Any, first: int, last: int) -> list[dict[str, Any]]:
        """Rows with positions ``first..last``."""
        return _sqlite_page(dbapi, self.read_span, (first, last), last - first + 1)

    def stream(self, dbapi: Any, stream: str, after: int, types: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
        """Rows of ``stream`` after ``after`` (only of ``types``, if given), in stream order."""
        if types is None:
            return _sqlite_page(dbapi, self.read_stream_sql, (stream, after))
        query = self.read_stream_sql.replace(" ORDER BY", f" AND type IN ({', '.join('?' * len(types))}) ORDER BY")
        return _sqlite_page(dbapi, query, (stream, after, *types))

    def head(self, dbapi: Any) -> int:
        """The last position."""
        return dbapi.execute(self.head_sql).fetchone()[0]

    def stream_version(self, dbapi: Any, stream: str) -> int:
        """The stream's version (0 if it has none)."""
        return dbapi.execute(self.version_sql, (stream,)).fetchone()[0]

    def lock_appends(self, dbapi: Any) -> None:
        """Hold off appends until the caller's transaction ends: its ``BEGIN IMMEDIATE`` already does."""

    def position_of(self, dbapi: Any, event_id: uuid.UUID) -> Optional[int]:
        """The position of the event with ``event_id``, or None."""
        row = dbapi.execute("SELECT position FROM rlreg_events WHERE id = ?", (event_id.hex,)).fetchone()
        return None if row is None else row[0]

    def count_ids(self, dbapi: Any, ids: Sequence[uuid.UUID]) -> list[str]:
        """Which of ``ids`` are recorded (the rare path of a partial retry)."""
        marks = ", ".join("?" * len(ids))
        rows = dbapi.execute(f"SELECT id FROM rlreg_events WHERE id IN ({marks})", [i.hex for i in ids]).fetchall()
        return [str(uuid_from_hex(r[0])) for r in rows]


def _payloads(rows: list[tuple]) -> list[Any]:
    """Every row's JSON payload (column 4) in one parse: one C call for the page, not one per row."""
    return json.loads("[" + ",".join([r[4] for r in rows]) + "]")


def _actors(rows: list[tuple]) -> list[Any]:
    """Every row's actor (column 7, JSON or NULL) in one parse."""
    return json.loads("[" + ",".join([r[7] or "null" for r in rows]) + "]")


def _sqlite_page(dbapi: Any, query: str, params: Sequence[Any], rows: Optional[int] = None) -> list[dict[str, Any]]:
    """The rows of a read of events."""
    with gc_paused(1_000_000 if rows is None else rows):  # the cursor's tuples too
        return _sqlite_rows(dbapi.execute(query, params).fetchall())


def _sqlite_rows(rows: list[tuple]) -> list[dict[str, Any]]:
    """SQLite keeps payloads as JSON text, timestamps as UTC text and ids as hex: convert in bulk."""
    if not rows:
        return []
    parse, from_hex = dt.datetime.fromisoformat, uuid_from_hex
    with gc_paused(len(rows)):
        return [
            {"position": r[0], "stream": r[1], "stream_version": r[2], "type": r[3], "payload": p,
             "timestamp": parse(r[5]), "id": from_hex(r[6]), "actor": a}
            for r, p, a in zip(rows, _payloads(rows), _actors(rows))
        ]


def _pg_page(dbapi: Any, query: str, params: Sequence[Any], rows: Optional[int] = None) -> list[dict[str, Any]]:
    """The rows of a read of events, fetched in binary (ints, timestamps and UUIDs decode faster than from text)."""
    with gc_paused(1_000_000 if rows is None else rows):  # the cursor's tuples too
        with dbapi.cursor(binary=True) as cursor:
            return _pg_rows(cursor.execute(query, params).fetchall())


def _pg_rows(rows: list[tuple]) -> list[dict[str, Any]]:
    if not rows:
        return []
    with gc_paused(len(rows)):
        return [
            {"position": r[0], "stream": r[1], "stream_version": r[2], "type": r[3], "payload": p,
             "timestamp": r[5], "id": r[6], "actor": a}
            for r, p, a in zip(rows, _payloads(rows), _actors(rows))
        ]


def _filters(mark: str, stream: Optional[str], types: Optional[Sequence[str]], *,
             array: bool) -> tuple[str, list[Any]]:
    """The ``AND ...`` of a filtered read and its parameters (``array``: the types as one array parameter,
    PostgreSQL's ``= ANY``; else one parameter each, SQLite's ``IN``)."""
    where, params = "", []
    if stream is not None:
        where, params = f" AND stream = {mark}", [stream]
    if types is not None and array:
        where, params = f"{where} AND type = ANY({mark})", [*params, list(types)]
    elif types is not None:
        where, params = f"{where} AND type IN ({','.join([mark] * len(types))})", [*params, *types]
    return where, params


@contextmanager
def gc_paused(objects: int) -> Iterator[None]:
    """Pause the cyclic GC while a large page of (acyclic) rows or events is built.

    Every few hundred new containers start a collection, and the older generations' collections scan
    the whole heap: in a large process that costs more than building the page. Nothing cyclic is
    made here, so nothing is left behind for the collector.
    """
    if objects < 256 or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_new, _UUID, _UNKNOWN = object.__new__, uuid.UUID, uuid.SafeUUID.unknown
_set_int, _set_safe = uuid.UUID.__dict__["int"].__set__, uuid.UUID.__dict__["is_safe"].__set__  # the slots


def uuid_from_hex(text: str) -> uuid.UUID:
    """``uuid.UUID(text)`` for the 32 hex digits SQLite holds, without its parsing of other spellings."""
    return uuid_from_int(int(text, 16))


def uuid_from_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a 128-bit ``value``, without its range check."""
    made = _new(_UUID)
    _set_int(made, value)
    _set_safe(made, _UNKNOWN)
    return made


class PostgresLog:
    """The log's statements on PostgreSQL (psycopg 3; prepared automatically once reused)."""

    read_all = f"SELECT {PG_EVENT_COLUMNS} FROM rlreg_events WHERE position > %s ORDER BY position LIMIT %s"
    read_span = f"SELECT {PG_EVENT_COLUMNS} FROM rlreg_events WHERE position BETWEEN %s AND %s ORDER BY position"
    read_stream_sql = (
        f"SELECT {PG_EVENT_COLUMNS} FROM rlreg_events WHERE stream = %s AND stream_version > %s "
        "ORDER BY stream_version"
    )
    # Each claim reads the locked counter row (``k``), so it runs, and takes the stream's row lock, after it.
    # ``k`` first looks (no lock) whether the claim can succeed: one that cannot takes no lock either (a
    # caller that catches the conflict in its own transaction would hold every append off to its end).
    claims = {
        None: ("", "INSERT INTO rlreg_streams AS t (name, version) SELECT %(stream)s, %(n)s FROM k "
               "ON CONFLICT (name) DO UPDATE SET version = t.version + %(n)s RETURNING version"),
        0: (" AND NOT EXISTS (SELECT FROM rlreg_streams WHERE name = %(stream)s)",
            "INSERT INTO rlreg_streams (name, version) SELECT %(stream)s, %(n)s FROM k "
            "ON CONFLICT (name) DO NOTHING RETURNING version"),
        "advance": (" AND EXISTS (SELECT FROM rlreg_streams WHERE name = %(stream)s AND version = %(expected)s)",
                    "UPDATE rlreg_streams SET version = version + %(n)s FROM k "
                    "WHERE name = %(stream)s AND version = %(expected)s RETURNING version"),
    }
    append_sql = """
        WITH k AS (SELECT last FROM rlreg_position WHERE id = 1{can} FOR UPDATE),
        s AS ({claim}),
        c AS (
            UPDATE rlreg_position SET last = last + %(n)s WHERE id = 1 AND EXISTS (SELECT FROM s) RETURNING last
        ),
        i AS (
            INSERT INTO rlreg_events (position, id, stream, stream_version, type, payload, timestamp, actor)
            SELECT c.last - %(n)s + u.k, u.id, %(stream)s, s.version - %(n)s + u.k, u.type, u.payload::json, %(now)s,
                u.actor::json
            FROM c, s, unnest(%(ids)s::uuid[], %(types)s::text[], %(payloads)s::text[], %(actors)s::text[])
                WITH ORDINALITY AS u(id, type, payload, actor, k)
        )
        SELECT c.last, s.version, pg_notify('{channel}', c.last::text) FROM c, s
    """

    def __init__(self) -> None:
        self.statements = {
            key: self.append_sql.format(can=can, claim=claim, channel=CHANNEL) for key, (can, claim) in self.claims.items()
        }

    def write(
        self, dbapi: Any, stream: str, types: Sequence[str], payloads: Sequence[str], ids: Sequence[uuid.UUID],
        expected: Optional[int], now: dt.datetime, actors: Sequence[Optional[str]],
    ) -> Optional[tuple[int, int]]:
        """Append in one statement; returns (last position, last stream version), or None on a stream conflict."""
        key = expected if expected is None or expected == 0 else "advance"
        params = {"stream": stream, "n": len(ids), "expected": expected, "now": now,
                  "ids": list(ids), "types": list(types), "payloads": list(payloads), "actors": list(actors)}
        row = dbapi.execute(self.statements[key], params).fetchone()
        return None if row is None else (row[0], row[1])

    def events(self, dbapi: Any, after: int, limit: Optional[int], stream: Optional[str] = None,
               types: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
        """Rows with ``position > after``, ascending (only of ``stream`` and ``types``, if given)."""
        if stream is None and types is None:
            return _pg_page(dbapi, self.read_all, (after, limit), limit)
        where, params = _filters("%s", stream, types, array=True)
        query = self.read_all.replace(" ORDER BY", f"{where} ORDER BY")
        return _pg_page(dbapi, query, (after, *params, limit), limit)

    def span(self, dbapi: Any, first: int, last: int) -> list[dict[str, Any]]:
        """Rows with positions ``first..last``."""
        return _pg_page(dbapi, self.read_span, (first, last), last - first + 1)

    def stream(self, dbapi: Any, stream: str, after: int, types: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
        """Rows of ``stream`` after ``after`` (only of ``types``, if given), in stream order."""
        if types is None:
            return _pg_page(dbapi, self.read_stream_sql, (stream, after))
        query = self.read_stream_sql.replace(" ORDER BY", " AND type = ANY(%s) ORDER BY")
        return _pg_page(dbapi, query, (stream, after, list(types)))

    def head(self, dbapi: Any) -> int:
        """The last position."""
        return dbapi.execute("SELECT last FROM rlreg_position WHERE id = 1").fetchone()[0]

    def stream_version(self, dbapi: Any, stream: str) -> int:
        """The stream's version (0 if it has none)."""
        row = dbapi.execute("SELECT version FROM rlreg_streams WHERE name = %s", (stream,)).fetchone()
        return 0 if row is None else row[0]

    def lock_appends(self, dbapi: Any) -> None:
        """Hold off appends until the caller's transaction ends: the counter's row lock."""
        dbapi.execute("UPDATE rlreg_position SET last = last WHERE id = 1")

    def position_of(self, dbapi: Any, event_id: uuid.UUID) -> Optional[int]:
        """The position of the event with ``event_id``, or None."""
        row = dbapi.execute("SELECT position FROM rlreg_events WHERE id = %s", (event_id,)).fetchone()
        return None if row is None else row[0]

    def count_ids(self, dbapi: Any, ids: Sequence[uuid.UUID]) -> list[str]:
        """Which of ``ids`` are recorded (the rare path of a partial retry)."""
        rows = dbapi.execute("SELECT id FROM rlreg_events WHERE id = ANY(%s::uuid[])", (list(ids),)).fetchall()
        return [str(r[0]) for r in rows]


_CHUNKS = (64, 32, 16, 8, 4, 2, 1)  # rows per INSERT (8 values each: 512 at most, below even the 999 variables
# that SQLite before 3.32 allows)


@functools.lru_cache(maxsize=len(_CHUNKS))
def _insert_rows(rows: int) -> str:
    """``SQLiteLog.insert`` for ``rows`` rows at once."""
    return SQLiteLog.insert + ", (?, ?, ?, ?, ?, ?, ?, ?)" * (rows - 1)
