"""The event log's hot SQL, one class per backend, on the raw DBAPI connection (no per-row SQLAlchemy work).

An append is a few statements inside the writer's transaction on SQLite (in-process, so cheap) and
ONE statement on PostgreSQL: data-modifying CTEs claim the stream version, move the position counter
(whose row lock is held to commit, so positions commit in order), insert the events and
``pg_notify`` the followers. Each step only runs if the one before it did, so a conflicting append
changes nothing. Idempotency is checked by the first event's id (unique, so indexed) only when the
insert or the stream claim fails: the common path never looks.

Reads return tuples in ``Event``'s field order; the caller builds the events with ``Event(*row)``.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional

EVENT_COLUMNS = "position, stream, stream_version, type, payload, timestamp, id"
PG_EVENT_COLUMNS = EVENT_COLUMNS.replace("payload", "payload::text")  # parsed in bulk, as on SQLite
CHANNEL = "rlreg_events"  # PostgreSQL NOTIFY channel: woken followers read by position
UTC = dt.timezone.utc


class SQLiteLog:
    """The log's statements on SQLite (the caller holds ``BEGIN IMMEDIATE``)."""

    read_all = f"SELECT {EVENT_COLUMNS} FROM rlreg_events WHERE position > ? ORDER BY position LIMIT ?"
    read_span = f"SELECT {EVENT_COLUMNS} FROM rlreg_events WHERE position BETWEEN ? AND ? ORDER BY position"
    read_stream_sql = (
        f"SELECT {EVENT_COLUMNS} FROM rlreg_events WHERE stream = ? AND stream_version > ? ORDER BY stream_version"
    )
    claims = {
        None: "INSERT INTO rlreg_streams (name, version) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET version = version + excluded.version RETURNING version",
        0: "INSERT INTO rlreg_streams (name, version) VALUES (?, ?) ON CONFLICT (name) DO NOTHING RETURNING version",
    }
    advance = "UPDATE rlreg_streams SET version = version + ? WHERE name = ? AND version = ? RETURNING version"
    allocate = "UPDATE rlreg_position SET last = last + ? WHERE id = 1 RETURNING last"
    insert = (
        "INSERT INTO rlreg_events (position, id, stream, stream_version, type, payload, timestamp) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )

    def write(
        self, dbapi: Any, stream: str, types: Sequence[str], payloads: Sequence[str], ids: Sequence[uuid.UUID],
        expected: Optional[int], now: dt.datetime,
    ) -> Optional[tuple[int, int]]:
        """Append; returns (last position, last stream version), or None if the stream is not at ``expected``."""
        n = len(ids)
        if expected is None or expected == 0:
            got = dbapi.execute(self.claims[expected], (stream, n)).fetchall()
        else:
            got = dbapi.execute(self.advance, (n, stream, expected)).fetchall()
        if not got:
            return None
        last = dbapi.execute(self.allocate, (n,)).fetchall()[0][0]
        version, first = got[0][0] - n + 1, last - n + 1
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")  # ``now`` is UTC; SQLAlchemy's format for SQLite
        rows = [(first + i, ids[i].hex, stream, version + i, types[i], payloads[i], stamp) for i in range(n)]
        if n == 1:
            dbapi.execute(self.insert, rows[0])
        else:
            dbapi.executemany(self.insert, rows)
        return last, got[0][0]

    def events(self, dbapi: Any, after: int, limit: Optional[int]) -> list[tuple]:
        """Rows with ``position > after``, ascending."""
        return _sqlite_rows(dbapi.execute(self.read_all, (after, -1 if limit is None else limit)).fetchall())

    def span(self, dbapi: Any, first: int, last: int) -> list[tuple]:
        """Rows with positions ``first..last``."""
        return _sqlite_rows(dbapi.execute(self.read_span, (first, last)).fetchall())

    def stream(self, dbapi: Any, stream: str, after: int, types: Optional[Sequence[str]] = None) -> list[tuple]:
        """Rows of ``stream`` after ``after`` (only of ``types``, if given), in stream order."""
        if types is None:
            return _sqlite_rows(dbapi.execute(self.read_stream_sql, (stream, after)).fetchall())
        query = self.read_stream_sql.replace(" ORDER BY", f" AND type IN ({', '.join('?' * len(types))}) ORDER BY")
        return _sqlite_rows(dbapi.execute(query, (stream, after, *types)).fetchall())

    def head(self, dbapi: Any) -> int:
        """The last position."""
        return dbapi.execute("SELECT last FROM rlreg_position WHERE id = 1").fetchone()[0]

    def stream_version(self, dbapi: Any, stream: str) -> int:
        """The stream's version (0 if it has none)."""
        row = dbapi.execute("SELECT version FROM rlreg_streams WHERE name = ?", (stream,)).fetchone()
        return 0 if row is None else row[0]

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


def _sqlite_rows(rows: list[tuple]) -> list[tuple]:
    """SQLite keeps payloads as JSON text, timestamps as UTC text and ids as hex: convert in bulk."""
    if not rows:
        return rows
    parse = dt.datetime.fromisoformat
    with gc_paused(len(rows)):
        return [
            (r[0], r[1], r[2], r[3], p, parse(r[5] + "+00:00"), uuid_from_hex(r[6]))
            for r, p in zip(rows, _payloads(rows))
        ]


def _pg_rows(rows: list[tuple]) -> list[tuple]:
    if not rows:
        return rows
    with gc_paused(len(rows)):
        return [(r[0], r[1], r[2], r[3], p, r[5], r[6]) for r, p in zip(rows, _payloads(rows))]


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


_new, _set, _UNKNOWN = object.__new__, object.__setattr__, uuid.SafeUUID.unknown


def uuid_from_hex(text: str) -> uuid.UUID:
    """``uuid.UUID(text)`` for the 32 hex digits SQLite holds, without its parsing of other spellings."""
    made = _new(uuid.UUID)
    _set(made, "int", int(text, 16))
    _set(made, "is_safe", _UNKNOWN)
    return made


class PostgresLog:
    """The log's statements on PostgreSQL (psycopg 3; prepared automatically once reused)."""

    read_all = f"SELECT {PG_EVENT_COLUMNS} FROM rlreg_events WHERE position > %s ORDER BY position LIMIT %s"
    read_span = f"SELECT {PG_EVENT_COLUMNS} FROM rlreg_events WHERE position BETWEEN %s AND %s ORDER BY position"
    read_stream_sql = (
        f"SELECT {PG_EVENT_COLUMNS} FROM rlreg_events WHERE stream = %s AND stream_version > %s "
        "ORDER BY stream_version"
    )
    claims = {
        None: "INSERT INTO rlreg_streams AS t (name, version) VALUES (%(stream)s, %(n)s) "
        "ON CONFLICT (name) DO UPDATE SET version = t.version + %(n)s RETURNING version",
        0: "INSERT INTO rlreg_streams (name, version) VALUES (%(stream)s, %(n)s) "
        "ON CONFLICT (name) DO NOTHING RETURNING version",
        "advance": "UPDATE rlreg_streams SET version = version + %(n)s "
        "WHERE name = %(stream)s AND version = %(expected)s RETURNING version",
    }
    append_sql = """
        WITH s AS ({claim}),
        c AS (
            UPDATE rlreg_position SET last = last + %(n)s WHERE id = 1 AND EXISTS (SELECT FROM s) RETURNING last
        ),
        i AS (
            INSERT INTO rlreg_events (position, id, stream, stream_version, type, payload, timestamp)
            SELECT c.last - %(n)s + u.k, u.id, %(stream)s, s.version - %(n)s + u.k, u.type, u.payload::json, %(now)s
            FROM c, s, unnest(%(ids)s::uuid[], %(types)s::text[], %(payloads)s::text[]) WITH ORDINALITY
                AS u(id, type, payload, k)
        )
        SELECT c.last, s.version, pg_notify('{channel}', c.last::text) FROM c, s
    """

    def __init__(self) -> None:
        self.statements = {
            key: self.append_sql.format(claim=claim, channel=CHANNEL) for key, claim in self.claims.items()
        }

    def write(
        self, dbapi: Any, stream: str, types: Sequence[str], payloads: Sequence[str], ids: Sequence[uuid.UUID],
        expected: Optional[int], now: dt.datetime,
    ) -> Optional[tuple[int, int]]:
        """Append in one statement; returns (last position, last stream version), or None on a stream conflict."""
        key = expected if expected is None or expected == 0 else "advance"
        params = {"stream": stream, "n": len(ids), "expected": expected, "now": now,
                  "ids": list(ids), "types": list(types), "payloads": list(payloads)}
        row = dbapi.execute(self.statements[key], params).fetchone()
        return None if row is None else (row[0], row[1])

    def events(self, dbapi: Any, after: int, limit: Optional[int]) -> list[tuple]:
        """Rows with ``position > after``, ascending."""
        return _pg_rows(dbapi.execute(self.read_all, (after, limit)).fetchall())

    def span(self, dbapi: Any, first: int, last: int) -> list[tuple]:
        """Rows with positions ``first..last``."""
        return _pg_rows(dbapi.execute(self.read_span, (first, last)).fetchall())

    def stream(self, dbapi: Any, stream: str, after: int, types: Optional[Sequence[str]] = None) -> list[tuple]:
        """Rows of ``stream`` after ``after`` (only of ``types``, if given), in stream order."""
        if types is None:
            return _pg_rows(dbapi.execute(self.read_stream_sql, (stream, after)).fetchall())
        query = self.read_stream_sql.replace(" ORDER BY", " AND type = ANY(%s) ORDER BY")
        return _pg_rows(dbapi.execute(query, (stream, after, list(types))).fetchall())

    def head(self, dbapi: Any) -> int:
        """The last position."""
        return dbapi.execute("SELECT last FROM rlreg_position WHERE id = 1").fetchone()[0]

    def stream_version(self, dbapi: Any, stream: str) -> int:
        """The stream's version (0 if it has none)."""
        row = dbapi.execute("SELECT version FROM rlreg_streams WHERE name = %s", (stream,)).fetchone()
        return 0 if row is None else row[0]

    def position_of(self, dbapi: Any, event_id: uuid.UUID) -> Optional[int]:
        """The position of the event with ``event_id``, or None."""
        row = dbapi.execute("SELECT position FROM rlreg_events WHERE id = %s", (event_id,)).fetchone()
        return None if row is None else row[0]

    def count_ids(self, dbapi: Any, ids: Sequence[uuid.UUID]) -> list[str]:
        """Which of ``ids`` are recorded (the rare path of a partial retry)."""
        rows = dbapi.execute("SELECT id FROM rlreg_events WHERE id = ANY(%s::uuid[])", (list(ids),)).fetchall()
        return [str(r[0]) for r in rows]
