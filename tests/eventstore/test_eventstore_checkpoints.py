"""Consumer checkpoints: durable, forward only, in the consumer's own transaction; and follow()."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from eventstore_helpers import plain

from registry import errors


def test_checkpoint_starts_at_zero_and_only_moves_forward(store):
    store.append("m", plain(3))
    assert store.get_checkpoint("tracker") == 0
    store.set_checkpoint("tracker", 2)
    store.set_checkpoint("tracker", 2)  # re-saving the same position is fine
    with pytest.raises(errors.ConflictError, match=r"checkpoint 'tracker': cannot move backwards from 2 to 1"):
        store.set_checkpoint("tracker", 1)
    assert store.get_checkpoint("tracker") == 2
    store.set_checkpoint("tracker", 3)
    assert store.get_checkpoint("tracker") == 3 and store.get_checkpoint("other") == 0


@pytest.mark.parametrize("position", [4, -1, "2", True])
def test_checkpoint_outside_the_log_is_refused(store, position):
    store.append("m", plain(3))
    with pytest.raises(errors.ConflictError, match=rf"checkpoint 'c': position {position!r} is not in the log \(head is 3\)"):
        store.set_checkpoint("c", position)
    assert store.get_checkpoint("c") == 0


def test_checkpoint_commits_or_rolls_back_with_the_consumers_writes(store):
    store.append("m", plain(2))
    with store.transaction() as conn:
        conn.execute(sa.text("CREATE TABLE consumer_seen (position INTEGER PRIMARY KEY)"))
    with pytest.raises(RuntimeError, match="consumer crashed"):
        with store.transaction() as conn:
            conn.execute(sa.text("INSERT INTO consumer_seen VALUES (1)"))
            store.set_checkpoint("c", 1, conn=conn)
            raise RuntimeError("consumer crashed")
    assert store.get_checkpoint("c") == 0
    with store.transaction() as conn:
        conn.execute(sa.text("INSERT INTO consumer_seen VALUES (1)"))
        store.set_checkpoint("c", 1, conn=conn)
    assert store.get_checkpoint("c") == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT position FROM consumer_seen")).scalars().all() == [1]


def test_follow_yields_events_as_they_commit_and_stops(store, make_store):
    writer = make_store()
    store.append("m", plain(1))
    seen, stop = [], threading.Event()

    def tail() -> None:
        for event in store.follow(0, poll_interval=0.01, stop=stop):
            seen.append(event.position)
            if len(seen) == 4:
                stop.set()

    t = threading.Thread(target=tail)
    t.start()
    writer.append("m", plain(3))
    t.join(30)
    assert not t.is_alive() and seen == [1, 2, 3, 4]
    assert [e.position for e in store.follow(2, timeout=0.05)] == [3, 4]
