"""The event-store benchmark: appends per second with 1 and 8 writer processes, and commit-to-tailer delay.

On a SQLite file and on PostgreSQL (a fresh database on ``RLREG_TEST_PG_URL``'s server, default
127.0.0.1:5432, dropped afterwards; skipped with a printed reason when unreachable). Each writer
process appends single events to its own stream at the head; the delay is from ``append()`` returning
to a ``follow()`` tailer yielding the event, at the default 50 ms poll and at 5 ms. ``run(quick)`` returns the rows;
``python -m bench.eventstore [--quick]`` prints them.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from registry.eventstore import EventStore, NewEvent
from registry.projections import Projections

PG_ADMIN_URL = os.environ.get("RLREG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WRITERS = (1, 8)
POLL_INTERVALS = (0.05, 0.005)  # follow()'s default, and a tight one for the floor
SIZES = {True: {"appends": 100, "delays": 30}, False: {"appends": 500, "delays": 200}}


def row(case: str, system: str, metric: str, value: float, unit: str, **detail: Any) -> dict[str, Any]:
    """One measurement, in the shape of bench/peers/peerlib.row."""
    return {"case": case, "system": system, "metric": metric, "value": value, "unit": unit, **detail}


def _writer(url: str, stream: str, appends: int, barrier: Any) -> None:
    store = EventStore(url, projector=Projections(), check_schema=False)
    try:
        store.append(f"{stream}-warm-up", [NewEvent("Tick", {})])  # connect and fill the statement cache
        barrier.wait()
        for i in range(appends):
            store.append(stream, [NewEvent("Tick", {"i": i})])
    finally:
        store.close()


def appends_per_second(url: str, writers: int, appends: int) -> float:
    """Appends per second of ``writers`` processes, each making ``appends`` single-event appends."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(writers + 1)
    procs = [ctx.Process(target=_writer, args=(url, f"w{i}", appends, barrier)) for i in range(writers)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a writer failed: exit codes {[p.exitcode for p in procs]}")
    return writers * appends / elapsed  # the warm-up appends happen before the clock starts


def tail_delays(url: str, count: int, poll_interval: float = 0.05) -> list[float]:
    """Seconds from each ``append()`` returning to a ``follow()`` tailer yielding it."""
    store = EventStore(url, projector=Projections(), check_schema=False)
    committed: dict[int, float] = {}
    seen: dict[int, float] = {}
    stop = threading.Event()

    def tail() -> None:
        for event in store.follow(store.head(), poll_interval=poll_interval, stop=stop):
            seen[event.position] = time.perf_counter()
            if len(seen) == count:
                stop.set()

    tailer = threading.Thread(target=tail)
    tailer.start()
    try:
        for i in range(count):
            position = store.append("delay", [NewEvent("Tick", {"i": i})])[0].position
            committed[position] = time.perf_counter()
            time.sleep(0.01 + 0.013 * (i % 3))  # not in phase with the poll
        tailer.join(60)
    finally:
        stop.set()
        tailer.join()
        store.close()
    return [max(0.0, seen[p] - committed[p]) for p in committed if p in seen]


def _databases() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="rlreg-bench-") as tmp:
        yield "sqlite", f"sqlite:///{tmp}/bench.db"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"rlreg_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as e:  # noqa: BLE001 - any failure means no server to measure
        print(f"eventstore bench: PostgreSQL skipped: {PG_ADMIN_URL} unreachable ({e.__class__.__name__})", file=sys.stderr)
        admin.dispose()
        return
    try:
        yield "postgresql", PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure both backends; returns the rows (and prints them)."""
    size, rows = SIZES[quick], []
    for system, url in _databases():
        EventStore(url).close()  # create the schema once
        for writers in WRITERS:
            rate = appends_per_second(url, writers, size["appends"] // writers if writers > 1 else size["appends"])
            rows.append(row(f"append, {writers} writer process(es)", system, "appends/s", rate, "1/s", writers=writers))
        for poll in POLL_INTERVALS:
            delays = sorted(tail_delays(url, size["delays"], poll))
            for metric, value in (("median", statistics.median(delays)), ("p95", delays[int(0.95 * (len(delays) - 1))])):
                case = f"commit -> follow({poll * 1000:g} ms poll)"
                rows.append(row(case, system, f"delay {metric}", value * 1000, "ms", poll_interval_ms=poll * 1000))
    for r in rows:
        print(f"{r['system']:>10}  {r['case']:<32} {r['metric']:<14} {r['value']:10.1f} {r['unit']}")
    return rows


if __name__ == "__main__":
    run("--quick" in sys.argv[1:])
