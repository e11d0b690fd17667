"""follow(): stops within one event of ``stop``, is woken by commits from other processes, idles cheaply."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
from eventstore_helpers import plain

from registry import tailing
from registry.eventstore import EventStore


def test_follow_stops_within_one_event_of_stop_being_set(store):
    store.append("m", plain(50))
    seen, stop = [], threading.Event()
    for event in store.follow(0, stop=stop):
        seen.append(event.position)
        if len(seen) == 3:
            stop.set()  # 47 more are already in the batch follow read
    assert seen == [1, 2, 3]


def _append_later(url: str) -> None:
    with EventStore(url, check_schema=False) as writer:
        time.sleep(0.3)
        writer.append("other-process", plain(1))


def test_a_commit_in_another_process_wakes_the_follower(store, store_url, monkeypatch):
    monkeypatch.setattr(tailing, "SAFETY_READ", 60.0)  # no re-read but the wake-up's
    store.append("m", plain(1))
    proc = multiprocessing.get_context("fork").Process(target=_append_later, args=(store_url,))
    proc.start()
    started = time.monotonic()
    got = next(iter(store.follow(1, timeout=30)))
    proc.join(30)
    assert got.position == 2 and got.stream == "other-process"
    assert time.monotonic() - started < 20, "woken by the 30 s timeout, not by the commit"


@pytest.mark.parametrize(("poll_interval", "idle"), [(None, 2.0), (0.05, 0.5)], ids=["push", "control-poll"])
def test_an_idle_follower_reads_at_most_once_a_second(store, monkeypatch, poll_interval, idle):
    reads = []
    real = store._follower_read  # (every read of a follower, on its own connection or through the pool)
    monkeypatch.setattr(store, "_follower_read", lambda *a, **k: reads.append(1) or real(*a, **k))
    assert list(store.follow(0, poll_interval=poll_interval, timeout=idle)) == []
    if poll_interval is not None:  # the control: polling every 50 ms reads ~10 times in 0.5 s
        assert len(reads) > 4, reads
    else:
        assert len(reads) <= 1 + idle, f"{len(reads)} reads in {idle} s of idling"


def test_an_idle_sqlite_follower_checks_less_often_after_a_quiet_second_and_still_wakes(sqlite_url, monkeypatch):
    """SQLite: ``data_version`` is checked every 2 ms while commits come, every 20 ms after a quiet second
    (60 idle feeds took 44% of a core); a commit after the quiet second still reaches the follower."""
    store = EventStore(sqlite_url)
    other = EventStore(sqlite_url)  # (a commit on another connection: what data_version sees)
    checks: list[float] = []
    real = tailing.SQLiteWaker._data_version
    monkeypatch.setattr(tailing.SQLiteWaker, "_data_version", lambda self: checks.append(time.monotonic()) or real(self))
    try:
        store.append("m", plain(1))
        appended: list[float] = []
        threading.Timer(2.0, lambda: appended.append(time.monotonic()) or other.append("m", plain(1))).start()
        start = time.monotonic()
        got = next(iter(store.follow(1, timeout=10)))
        seen = time.monotonic()
    finally:
        store.close()
        other.close()
    assert got.position == 2 and seen - appended[0] < 0.5, f"seen {seen - appended[0]:.3f} s after its commit"
    busy = [t for t in checks if t - start < 0.8]
    quiet = [t for t in checks if 1.2 <= t - start < appended[0] - start]
    assert len(busy) >= 80, f"{len(busy)} checks in the first 0.8 s: no longer every 2 ms while busy"
    assert len(quiet) <= 60, f"{len(quiet)} checks in a quiet 0.8 s: every {0.8 / max(len(quiet), 1) * 1000:.1f} ms"


def test_many_followers_hold_none_of_the_pools_connections(store):
    """Sixteen followers in one process (a web page's live feeds): each follows on a connection of its
    own, so the engine's pool (5 + 10) stays free for the process's other reads and writes (each
    follower used to keep one: the sixteenth waited 30 s for one and failed, and so did every append)."""
    stop, threads, seen = threading.Event(), [], [[] for _ in range(16)]

    def follower(i: int) -> None:
        for event in store.follow(0, stop=stop):
            seen[i].append(event.position)

    for i in range(16):
        threads.append(threading.Thread(target=follower, args=(i,), daemon=True))
        threads[-1].start()
    try:
        store.append("m", plain(1))  # (each follower is reading by then: it sees the event)
        deadline = time.monotonic() + 30
        while not all(seen) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(s == [1] for s in seen), seen
        assert store.engine.pool.checkedout() == 0  # sixteen followers, none of the pool's connections
        started = time.monotonic()
        store.append("m", plain(1))
        assert store.head() == 2 and time.monotonic() - started < 10  # (not the pool's 30 s wait)
        while not all(len(s) == 2 for s in seen) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(s == [1, 2] for s in seen), seen
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not any(t.is_alive() for t in threads)


def test_leaving_a_follow_loop_after_its_connection_was_lost_raises_nothing(pg_store_url, capfd):
    """PostgreSQL: the server ends the follower's session, then the caller leaves the loop (the generator
    closed): nothing is raised or printed (``UNLISTEN`` on the dead connection raised
    ``DatabaseUnavailableError`` from the close, or printed "Exception ignored" for a ``break``)."""
    import sqlalchemy as sa

    store = EventStore(pg_store_url)
    store.append("m", plain(2))
    follow = store.follow(0)
    assert next(follow).position == 1
    with store.engine.connect() as conn:  # every other session of the database: the follower's among them
        ended = conn.execute(sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    assert ended >= 1
    try:
        follow.close()  # (what a break or contextlib.closing does)
    finally:
        store.close()
    assert "Exception ignored" not in capfd.readouterr().err


def test_a_transactions_reads_are_not_starved_by_threads_waiting_for_the_writer_queue(sqlite_url):
    """SQLite: a consumer holds ``transaction()`` and reads its checkpoint inside it while fourteen threads
    wait to set theirs: they wait for the writer queue holding none of the pool's connections, so the
    consumer's read gets one (taking the connection first ran the pool dry: the read waited 30 s and failed)."""
    store = EventStore(sqlite_url)
    store.append("m", plain(1))
    done, failures = threading.Event(), []

    def setter(i: int) -> None:
        try:
            store.set_checkpoint(f"c{i}", 1)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=setter, args=(i,), daemon=True) for i in range(14)]
    try:
        with store.transaction() as conn:
            for t in threads:
                t.start()
            time.sleep(0.3)  # (they wait for the queue now)
            started = time.monotonic()
            assert store.get_checkpoint("consumer") == 0  # a read of its own, through the pool
            assert time.monotonic() - started < 10  # (not the pool's 30 s wait)
            store.set_checkpoint("consumer", 1, conn)
        for t in threads:
            t.join(30)
        assert failures == [] and all(store.get_checkpoint(f"c{i}") == 1 for i in range(14))
    finally:
        store.close()


def test_a_follower_running_when_its_store_is_closed_ends_with_closed_error(make_store):
    """Its connection is its own (not the pool's, which close() empties): it looks at ``closed`` itself."""
    from registry import errors

    store, writer = make_store(), make_store()
    got, ended = [], []

    def follow() -> None:
        try:
            for event in store.follow(0):
                got.append(event.position)
        except errors.ClosedError as exc:
            ended.append(exc)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    writer.append("m", plain(1))
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    store.close()
    writer.append("m", plain(3))
    thread.join(20)
    assert not thread.is_alive() and len(ended) == 1 and got[0] == 1 and len(got) <= 4
