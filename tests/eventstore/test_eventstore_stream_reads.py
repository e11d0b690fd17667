"""A read of one stream's events costs its page, not the stream's or the log's size (both databases).

The work of a read is measured from the statement the store ran, re-run beside it: SQLite's VM steps
(a progress handler), PostgreSQL's rows handled by each plan node (``EXPLAIN ANALYZE``). Without an
index by ``(stream, position)`` SQLite read and sorted the whole stream for each page, and PostgreSQL
walked the log from the page's position, past every other stream's events.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any
from unittest import mock

import sqlalchemy as sa
from eventstore_helpers import plain

from registry.eventstore import EventStore


class _Recording:
    """A DB-API connection that records each statement executed through it."""

    def __init__(self, conn: Any, seen: list) -> None:
        self._conn, self._seen = conn, seen

    def execute(self, query: str, params: Any = ()) -> Any:
        self._seen.append((query, params))
        return self._conn.execute(query, params)

    def cursor(self, *a: Any, **k: Any) -> Any:
        return _Recording(self._conn.cursor(*a, **k), self._seen)

    def __enter__(self) -> Any:
        self._conn.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._conn.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _work(store: EventStore, url: str, **read: Any) -> tuple[list[int], int]:
    """The positions ``store.events(**read)`` returns, and the work of the statement it ran."""
    seen: list = []
    real = store._log.events
    with mock.patch.object(store._log, "events", lambda dbapi, *a: real(_Recording(dbapi, seen), *a)):
        got = [e.position for e in store.events(**read)]
    (query, params), = seen
    if url.startswith("sqlite"):
        steps = [0]
        conn = sqlite3.connect(sa.make_url(url).database)
        try:
            conn.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1), 1)
            conn.execute(query, params).fetchall()
        finally:
            conn.close()
        return got, steps[0]
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", tuple(params)).scalar()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return got, _rows_handled(plan[0]["Plan"])


def _rows_handled(node: dict) -> int:
    own = node.get("Actual Rows", 0) * node.get("Actual Loops", 1) + node.get("Rows Removed by Filter", 0)
    return own + sum(_rows_handled(child) for child in node.get("Plans", ()))


def _grow(store: EventStore, dense: int) -> None:
    """``dense`` more events of stream "dense", with another stream's between every ten."""
    for _ in range(dense // 10):
        store.append("dense", plain(10))
        store.append("other", plain(10))


def test_a_page_of_a_stream_costs_the_page_not_the_stream_or_the_log(store_url):
    store = EventStore(store_url)
    try:
        rares = iter(["rare", "rare-again"])

        def reads() -> tuple[int, int]:
            rare = next(rares)  # a stream of 3 events at the log's end (each time a new one: the same page)
            rare_at = [e.position for e in store.append(rare, plain(3))]
            dense = [e.position for e in store.events(stream="dense")]
            tail, tail_work = _work(store, store_url, after=dense[-11], limit=10, stream="dense")
            assert tail == dense[-10:]
            found, rare_work = _work(store, store_url, after=0, limit=10, stream=rare, types=["Tick"])
            assert found == rare_at
            return tail_work, rare_work

        _grow(store, 30)
        small = reads()
        _grow(store, 3000)
        large = reads()
        # the log grew 60 times: the work of a page may not
        assert large[0] <= 3 * small[0], f"the last page of a stream: {small[0]} then {large[0]}"
        assert large[1] <= 3 * small[1], f"the first page of a rare stream: {small[1]} then {large[1]}"
    finally:
        store.close()
