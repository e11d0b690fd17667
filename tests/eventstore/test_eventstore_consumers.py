"""Racing instances of one consumer, in separate processes: each event's side effect happens once.

Both instances read the checkpoint, then both process the same events in a transaction and save the
checkpoint with it. The control saves it as rlreg did before (refusing only backward moves): both
commit, and the side effect happens twice, which is what the check below must catch.
"""

from __future__ import annotations

import multiprocessing

import pytest
import sqlalchemy as sa
from eventstore_helpers import naive_set_checkpoint, plain

from registry import errors
from registry.eventstore import EventStore, NewEvent

INSTANCES = 2


def _consume(url: str, mode: str, barrier, outcomes) -> None:
    """One consumer instance: read the checkpoint, wait for the other, process everything after it."""
    store = EventStore(url, check_schema=False)
    try:
        after = store.get_checkpoint("mirror")
        todo = store.events(after)
        barrier.wait(timeout=60)
        with store.transaction() as conn:
            for event in todo:
                conn.execute(sa.text("INSERT INTO consumer_seen (position) VALUES (:p)"), {"p": event.position})
                if mode == "manager":  # a process manager records an event per event it handles
                    store.append("shipments", [NewEvent("Shipped", {"for": event.position})], conn=conn)
            last = todo[-1].position
            if mode == "control":
                naive_set_checkpoint(conn, "mirror", last)
            else:
                store.set_checkpoint("mirror", last, conn, expected=None if mode == "forward-only" else after)
        outcomes.put("committed")
    except errors.ConflictError as e:
        outcomes.put(f"conflict: {e}")
    finally:
        store.close()


def _race(store: EventStore, url: str, mode: str) -> tuple[list[str], dict[int, int]]:
    store.append("m", plain(3))
    with store.transaction() as conn:
        conn.execute(sa.text("CREATE TABLE consumer_seen (position INTEGER)"))  # no key: doubles stay visible
    ctx = multiprocessing.get_context("fork")
    barrier, outcomes = ctx.Barrier(INSTANCES), ctx.Queue()
    procs = [ctx.Process(target=_consume, args=(url, mode, barrier, outcomes)) for _ in range(INSTANCES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * INSTANCES
    results = sorted(outcomes.get(timeout=10) for _ in procs)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT position, count(*) FROM consumer_seen GROUP BY position")).all()
    return results, dict(rows)


@pytest.mark.parametrize("mode", ["expected", "forward-only", "manager"])
def test_racing_instances_of_a_consumer_process_each_event_once(store, store_url, mode):
    results, seen = _race(store, store_url, mode)
    assert results[0] == "committed" and results[1].startswith("conflict: checkpoint 'mirror'"), results
    assert seen == {1: 1, 2: 1, 3: 1}, f"side effects per position: {seen}"
    assert store.get_checkpoint("mirror") == 3
    if mode == "manager":
        assert [e.payload["for"] for e in store.read_stream("shipments")] == [1, 2, 3]
        assert store.head() == 6


def test_control_without_compare_and_set_processes_events_twice(store, store_url):
    results, seen = _race(store, store_url, "control")
    assert results == ["committed", "committed"]
    assert seen == {1: 2, 2: 2, 3: 2}, "the control did not double the side effects: the race above proves nothing"
