"""SQLite's writer queue (``db.WriterQueue``), with writer processes: a writer keeps the lock after its commit
for its own next append (``LINGER``), for at most ``STREAK`` in a row, and lets go when it stops.

Each check runs beside a control whose settings break what it checks (no streaks; an endless streak; a
writer that never lets go), so that the check is seen to catch the fault it is for.
"""

from __future__ import annotations

import multiprocessing
import time

import pytest
from eventstore_helpers import plain

from registry import db
from registry.eventstore import EventStore

CTX = multiprocessing.get_context("fork")
CAP = 2.0  # s a looping writer runs at most, when nothing stops it


def _writer(url, stream, appends, linger, streak, contended, started, stop, wait_after, times=None):
    """Append ``appends`` single events (``None``: until ``stop``, or ``CAP``), then wait up to ``wait_after``
    s for ``stop`` (holding no transaction) before exiting. ``times``: when the appends were done and when
    the store was closed (its lock let go), on the machine's monotonic clock."""
    db.LINGER, db.STREAK, db.CONTENDED = linger, streak, contended
    store = EventStore(url, check_schema=False)
    try:
        store.append(stream, plain(1, tag=stream))
        started.set()
        done, end = 1, time.monotonic() + CAP
        while (done < appends) if appends is not None else not stop.is_set() and time.monotonic() < end:
            store.append(stream, plain(1, tag=stream))
            done += 1
        if times is not None:
            times[0] = time.monotonic()
        stop.wait(wait_after)
    finally:
        store.close()
        if times is not None:
            times[1] = time.monotonic()


def _start(url, stream, appends=None, *, linger=db.LINGER, streak=db.STREAK, contended=db.CONTENDED, stop=None,
           wait_after=0.0, times=None):
    started, stop = CTX.Event(), stop or CTX.Event()
    args = (url, stream, appends, linger, streak, contended, started, stop, wait_after, times)
    proc = CTX.Process(target=_writer, args=args)
    proc.start()
    deadline = time.monotonic() + 30
    while not started.wait(0.05):
        assert proc.is_alive() and time.monotonic() < deadline, f"writer {stream} did not start ({proc.exitcode})"
    return proc, stop


@pytest.fixture
def sqlite_url(sqlite_url):
    """A SQLite file holding the schema, before writer processes open it."""
    EventStore(sqlite_url).close()
    return sqlite_url


def _join(*procs):
    for p in procs:
        p.join(30)
        assert p.exitcode == 0, p.exitcode


def _runs(store, stream_a, stream_b) -> float:
    """The mean length of the runs of consecutive positions appended by one writer."""
    streams = [e.stream for e in store.events() if e.stream in (stream_a, stream_b)]
    runs = 1 + sum(1 for a, b in zip(streams, streams[1:]) if a != b)
    return len(streams) / runs


def _two_bursts(url, tag, **settings) -> None:
    a, _ = _start(url, f"{tag}-a", 400, **settings)
    b, _ = _start(url, f"{tag}-b", 400, **settings)
    _join(a, b)


def test_writers_in_a_burst_append_in_streaks(sqlite_url):
    """Two processes appending as fast as they can: each commit used to hand the lock to the other."""
    _two_bursts(sqlite_url, "linger")
    _two_bursts(sqlite_url, "control", streak=0.0)  # the queue as it was: let go at every commit
    with EventStore(sqlite_url, check_schema=False) as store:
        lingering, control = _runs(store, "linger-a", "linger-b"), _runs(store, "control-a", "control-b")
    print(f"mean run: lingering {lingering:.1f}, control {control:.1f}")
    assert lingering > 4 and lingering > 2 * control, (lingering, control)


@pytest.mark.parametrize("streak, linger, starved", [(db.STREAK, db.LINGER, False), (float("inf"), float("inf"), True)],
                         ids=["streak", "control"])
def test_a_writer_that_never_stops_does_not_starve_another(sqlite_url, streak, linger, starved):
    """A writer appending without pause for ``CAP`` s; another, started after it, gets its 30 appends in
    before the first lets go of the lock at its end. The control's endless streak starves it until then
    (it keeps the lock between appends however long it waits for the CPU: with a 0.5 ms linger, a busy
    machine let the other in)."""
    looping_times, other_times = CTX.Array("d", 2), CTX.Array("d", 2)
    looping, stop = _start(sqlite_url, "looping", streak=streak, linger=linger, contended=float("inf"),
                           times=looping_times)  # in a streak at once
    other, _ = _start(sqlite_url, "other", 30, streak=streak, linger=linger, contended=float("inf"),
                      times=other_times)
    other.join(30)
    stop.set()
    _join(looping, other)
    in_time = other_times[0] < looping_times[1]  # its appends done before the first one let go at its end
    assert in_time is not starved, (
        f"the other writer's appends were done {'before' if in_time else 'after'} the first let go "
        f"({other_times[0] - looping_times[1]:+.3f} s)")


@pytest.mark.parametrize("linger, kept", [(db.LINGER, False), (float("inf"), True)], ids=["linger", "control"])
def test_a_writer_that_stops_lets_the_next_one_go(sqlite_url, linger, kept):
    """A writer appends once and then idles for ``CAP`` s: another writer's append is not held up by it. The
    control never lets go until its process ends. (Both keep the lock though alone, and without an end to
    the streak: a process's first append may take longer than ``STREAK``, and then nothing is kept.)"""
    idle, stop = _start(sqlite_url, "idle", 1, linger=linger, streak=float("inf"), contended=float("inf"),
                        wait_after=CAP)
    t0 = time.monotonic()
    with EventStore(sqlite_url, check_schema=False) as store:
        store.append("next", plain(1))
    waited = time.monotonic() - t0
    alive = idle.is_alive()
    stop.set()
    _join(idle)
    assert (not alive) is kept and (waited >= CAP / 2) is kept, (waited, alive)


def _fork_and_die(url, let_go, started):
    """Append, keeping the queue (a long ``LINGER``); fork a child that outlives this process; die at once."""
    import os

    db.LINGER, db.STREAK, db.CONTENDED = 5.0, 5.0, float("inf")
    if not let_go:
        db._linger.let_go = lambda: None  # the control: the lock goes to the child still held
    store = EventStore(url, check_schema=False)
    store.append("forking", plain(1))
    CTX.Process(target=time.sleep, args=(CAP,)).start()
    started.set()
    os._exit(0)


@pytest.mark.parametrize("let_go", [True, False], ids=["let-go", "control"])
def test_a_fork_does_not_carry_a_kept_lock_into_the_child(sqlite_url, let_go):
    """A child forked while its parent keeps the queue shares the lock file: were the lock still held, it
    would stay held through the child's copy after the parent died, until the child ended."""
    started = CTX.Event()
    parent = CTX.Process(target=_fork_and_die, args=(sqlite_url, let_go, started))
    parent.start()
    assert started.wait(30)
    parent.join()  # (no timeout: join(timeout) waits on a pipe the grandchild holds too)
    assert parent.exitcode == 0
    t0 = time.monotonic()
    with EventStore(sqlite_url, check_schema=False) as store:
        store.append("next", plain(1))
    held_up = time.monotonic() - t0 >= CAP / 2
    assert held_up is not let_go, time.monotonic() - t0


@pytest.mark.parametrize("contended, kept", [(db.CONTENDED, False), (float("inf"), True)], ids=["alone", "control"])
def test_a_writer_alone_lets_go_at_each_commit(sqlite_url, monkeypatch, contended, kept):
    """No other writer has waited: nobody gains from a streak, so the lock is not kept (nor the thread woken
    that lets go of it). The control keeps it as if others were waiting."""
    monkeypatch.setattr(db, "CONTENDED", contended)
    monkeypatch.setattr(db, "STREAK", float("inf"))  # the first append may take longer than STREAK
    with EventStore(sqlite_url, check_schema=False) as store:
        store.append("alone", plain(1))
        [entry] = [e for (pid, path), e in db._lock_files.entries.items() if path.startswith(store.engine.url.database)]
        assert entry.lingering is kept
