"""The event-store benchmark: rlreg's EventStore against eventsourcing 9.5.6's recorders, in one run.

On a SQLite file and on PostgreSQL (fresh databases on ``RLREG_TEST_PG_URL``'s server, default
127.0.0.1:5432, dropped afterwards; skipped with a printed reason when unreachable). Each contender
has its own database of the same kind; rounds alternate between them and every row is the median
of the rounds, with the ratio rlreg ÷ eventsourcing (> 1 means rlreg is faster). The peer's SQLite
connections run with rlreg's ``synchronous`` setting (printed), PostgreSQL with the server's.

Cases: single-event appends from 1, 8 (and on PostgreSQL 16) writer processes, each to its own
stream; a fill of 100,000 events in appends of 100; one read of 10,000 events; a follower catching up
on 100,000 events; commit-to-visible delay of a follower (the peer has no SQLite subscription); the
reads per second of an idle follower. ``python -m bench.eventstore [--quick]`` prints the table.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from bench.eventstore_peer import CONTENDERS, Peer, Rlreg

PG_ADMIN_URL = os.environ.get("RLREG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SIZES = {
    True: {"rounds": 3, "append_rounds": 3, "appends": 200, "fill": 20_000, "read": 10_000, "catch_up": 20_000,
           "delays": 40, "idle": 2.0},
    False: {"rounds": 5, "append_rounds": 9, "appends": 600, "fill": 100_000, "read": 10_000, "catch_up": 100_000,
            "delays": 150, "idle": 5.0},
}
FILL_BATCH = 100


def row(case: str, system: str, metric: str, value: float, unit: str, **detail: Any) -> dict[str, Any]:
    """One measurement, in the shape of bench/peers/peerlib.row."""
    return {"case": case, "system": system, "metric": metric, "value": value, "unit": unit, **detail}


# --- appends from writer processes ---------------------------------------------------------------


def _writer(kind: str, url: str, synchronous: Any, stream: str, appends: int, barrier: Any) -> None:
    contender = Rlreg(url) if kind == "rlreg" else Peer(url, synchronous)
    try:
        for i in range(3):
            contender.append_one(f"{stream}-warm-up", i)  # connect, prepare statements
        barrier.wait()
        for i in range(appends):
            contender.append_one(stream, i)
    finally:
        contender.close()


def appends_per_second(kind: str, url: str, synchronous: Any, writers: int, appends: int) -> float:
    """Appends per second of ``writers`` processes, each making ``appends`` single-event appends."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(writers + 1)
    tag = uuid.uuid4().hex[:8]
    procs = [
        ctx.Process(target=_writer, args=(kind, url, synchronous, f"w{i}-{tag}", appends, barrier))
        for i in range(writers)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"a {kind} writer failed: exit codes {[p.exitcode for p in procs]}")
    return writers * appends / elapsed


# --- fill, reads, tailing ------------------------------------------------------------------------


def fill(contender: Any, events: int) -> float:
    """Seconds to append ``events`` events in appends of ``FILL_BATCH``."""
    start = time.perf_counter()
    for _ in range(events // FILL_BATCH):
        contender.append_batch(f"fill-{uuid.uuid4().hex}", FILL_BATCH)
    return time.perf_counter() - start


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def tail_delays(contender: Any, count: int) -> list[float]:
    """Seconds from each append returning to the contender's follower receiving it."""
    head = contender.store.head() if isinstance(contender, Rlreg) else contender.recorder.max_notification_id() or 0
    seen: dict[int, float] = {}
    committed: list[float] = []
    stop = threading.Event()
    follower = threading.Thread(target=contender.tail, args=(head, count, seen, time.perf_counter, stop))
    follower.start()
    time.sleep(0.5)  # let it start listening
    try:
        for i in range(count):
            contender.append_one("delay", i)
            committed.append(time.perf_counter())
            time.sleep(0.01 + 0.013 * (i % 3))  # not in phase with anything
        follower.join(60)
    finally:
        stop.set()
        follower.join()
    return [seen[head + 1 + i] - t for i, t in enumerate(committed) if head + 1 + i in seen]


def idle_reads_per_second(store: Any, seconds: float) -> float:
    """Log reads per second of a follower that has nothing to read, after its first (rlreg only)."""
    reads = [0]
    real = store.events

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads[0] += 1
        return real(*args, **kwargs)

    store.events = counting
    try:
        for _ in store.follow(store.head(), timeout=seconds):
            pass
    finally:
        del store.events
    return (reads[0] - 1) / seconds


# --- databases -----------------------------------------------------------------------------------


@contextmanager
def _sqlite_urls() -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="rlreg-bench-") as tmp:
        yield {kind: f"sqlite:///{tmp}/{kind}.db" for kind in CONTENDERS}


@contextmanager
def _postgres_urls() -> Iterator[dict[str, str] | None]:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    names = {kind: f"rlreg_bench_{kind[:6]}_{uuid.uuid4().hex[:8]}" for kind in CONTENDERS}
    try:
        with admin.connect() as conn:
            for name in names.values():
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as e:  # noqa: BLE001 - any failure means no server to measure
        print(f"eventstore bench: PostgreSQL skipped: {PG_ADMIN_URL} unreachable ({e.__class__.__name__})", file=sys.stderr)
        admin.dispose()
        yield None
        return
    try:
        yield {kind: PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name for kind, name in names.items()}
    finally:
        with admin.connect() as conn:
            for name in names.values():
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# --- the run -------------------------------------------------------------------------------------


def _medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {kind: statistics.median(values) for kind, values in samples.items()}


def _ratio_rows(case: str, backend: str, metric: str, unit: str, samples: dict[str, list[float]],
                higher_is_better: bool, **detail: Any) -> list[dict[str, Any]]:
    med = _medians(samples)
    ours, peer = med["rlreg"], med["eventsourcing"]
    ratio = ours / peer if higher_is_better else peer / ours
    rows = [row(case, f"{kind}/{backend}", metric, value, unit, rounds=len(samples[kind]), **detail)
            for kind, value in med.items()]
    rows.append(row(case, f"ratio/{backend}", "rlreg ÷ eventsourcing (>1: rlreg faster)", ratio, "x", **detail))
    return rows


def run_backend(backend: str, urls: dict[str, str], size: dict[str, Any]) -> list[dict[str, Any]]:
    """Every case on one backend, rounds interleaved between the contenders."""
    ours = Rlreg.create(urls["rlreg"])
    synchronous = ours.durability().split("=")[1] if backend == "sqlite" else None
    peer = Peer.create(urls["eventsourcing"], synchronous)
    contenders = {"rlreg": ours, "eventsourcing": peer}
    durability = {kind: c.durability() for kind, c in contenders.items()}
    print(f"  {backend}: durability {durability}", flush=True)
    rows: list[dict[str, Any]] = []
    writer_counts = (1, 8, 16) if backend == "postgresql" else (1, 8)
    for writers in writer_counts:
        samples: dict[str, list[float]] = {kind: [] for kind in CONTENDERS}
        per_writer = max(size["appends"] // writers, 40)
        for _ in range(size["append_rounds"]):  # short runs (0.2-0.7 s): more rounds for a steady median
            for kind in CONTENDERS:
                samples[kind].append(appends_per_second(kind, urls[kind], synchronous, writers, per_writer))
        rows += _ratio_rows(f"append 1 event, {writers} writer process(es)", backend, "appends/s", "1/s",
                            samples, True, writers=writers, durability=durability)
    samples = {kind: [] for kind in CONTENDERS}
    for _ in range(size["rounds"]):
        for kind, c in contenders.items():
            samples[kind].append(size["fill"] / fill(c, size["fill"]))
    rows += _ratio_rows(f"fill {size['fill']:,} events ({FILL_BATCH} per append)", backend, "events/s", "1/s",
                        samples, True)
    for case, fn in (
        (f"read {size['read']:,} events in one call", lambda c: c.read(0, size["read"])),
        (f"catch up on {size['catch_up']:,} events", lambda c: c.tail(0, size["catch_up"])),
    ):
        samples = {kind: [] for kind in CONTENDERS}
        for _ in range(size["rounds"]):
            for kind, c in contenders.items():
                samples[kind].append(timed(lambda: fn(c)) * 1000)
        rows += _ratio_rows(case, backend, "time", "ms", samples, False)
    rows += _delay_rows(backend, contenders, size)
    rows.append(row("idle follower", f"rlreg/{backend}", "log reads", idle_reads_per_second(ours.store, size["idle"]), "1/s"))
    for c in contenders.values():
        c.close()
    return rows


def _delay_rows(backend: str, contenders: dict[str, Any], size: dict[str, Any]) -> list[dict[str, Any]]:
    kinds = list(CONTENDERS) if backend == "postgresql" else ["rlreg"]  # the peer cannot subscribe on SQLite
    rows = []
    for kind in kinds:
        delays = sorted(tail_delays(contenders[kind], size["delays"]))
        for metric, value in (("median", statistics.median(delays)), ("p95", delays[int(0.95 * (len(delays) - 1))])):
            rows.append(row("commit -> follower", f"{kind}/{backend}", f"delay {metric}", value * 1000, "ms",
                            received=len(delays), sent=size["delays"]))
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure both backends; returns the rows (and prints them)."""
    size, rows = SIZES[quick], []
    with _sqlite_urls() as urls:
        rows += _printed(run_backend("sqlite", urls, size))
    with _postgres_urls() as urls:
        if urls is not None:
            rows += _printed(run_backend("postgresql", urls, size))
    return rows


def _printed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        print(f"{r['system']:>26}  {r['case']:<44} {r['metric']:<40} {r['value']:10.2f} {r['unit']}", flush=True)
    return rows


if __name__ == "__main__":
    run("--quick" in sys.argv[1:])
