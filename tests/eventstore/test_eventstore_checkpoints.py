"""Consumer checkpoints: durable, forward only, in the consumer's own transaction; and follow()."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from eventstore_helpers import plain

from registry import errors
from registry.eventstore import NewEvent


def test_checkpoint_starts_at_zero_and_only_moves_forward(store):
    store.append("m", plain(3))
    assert store.get_checkpoint("tracker") == 0
    with pytest.raises(errors.ConflictError, match=r"checkpoint 'tracker': cannot move from 0 to 0: it only moves forward"):
        store.set_checkpoint("tracker", 0)
    store.set_checkpoint("tracker", 2)
    for position in (2, 1):  # saving the same position again means another instance processed it too
        with pytest.raises(errors.ConflictError, match=rf"checkpoint 'tracker': cannot move from 2 to {position}: it only"):
            store.set_checkpoint("tracker", position)
    assert store.get_checkpoint("tracker") == 2
    store.set_checkpoint("tracker", 3)
    assert store.get_checkpoint("tracker") == 3 and store.get_checkpoint("other") == 0


def test_expected_checkpoint_is_compared_and_set(store):
    store.append("m", plain(4))
    store.set_checkpoint("c", 1, expected=0)
    store.set_checkpoint("c", 3, expected=1)
    for stale in (0, 1, 2):
        with pytest.raises(errors.ConflictError, match=rf"checkpoint 'c': expected it at {stale}, but it is at 3 \(another instance"):
            store.set_checkpoint("c", 4, expected=stale)
    with pytest.raises(errors.ConflictError, match=r"checkpoint 'fresh': cannot move from 0 to 0"):
        store.set_checkpoint("fresh", 0, expected=0)
    with pytest.raises(errors.ConflictError, match=r"checkpoint 'c': expected 'x' is not a position"):
        store.set_checkpoint("c", 4, expected="x")
    assert store.get_checkpoint("c") == 3 and store.get_checkpoint("fresh") == 0
    store.set_checkpoint("c", 4, expected=3)
    assert store.get_checkpoint("c") == 4


def test_a_stale_expected_checkpoint_rolls_back_the_consumers_writes(store):
    store.append("m", plain(2))
    with store.transaction() as conn:
        conn.execute(sa.text("CREATE TABLE consumer_seen (position INTEGER)"))
    store.set_checkpoint("c", 1)
    with pytest.raises(errors.ConflictError, match="expected it at 0, but it is at 1"):
        with store.transaction() as conn:
            conn.execute(sa.text("INSERT INTO consumer_seen VALUES (1)"))
            store.set_checkpoint("c", 2, conn, expected=0)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM consumer_seen")).scalar() == 0
    assert store.get_checkpoint("c") == 1


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


def test_append_and_checkpoint_commit_together(store):
    store.append("orders", plain(2))
    with store.transaction() as conn:  # a process manager: checkpoint and the events it records, at once
        store.set_checkpoint("pm", 1, conn, expected=0)
        made = store.append("shipments", plain(1, tag="ship 1"), conn=conn)
    assert made[0].position == 3 and store.get_checkpoint("pm") == 1
    with pytest.raises(errors.ConflictError, match="expected it at 0, but it is at 1"):
        with store.transaction() as conn:
            store.append("shipments", plain(1, tag="ship 1 again"), conn=conn)
            store.set_checkpoint("pm", 2, conn, expected=0)
    with pytest.raises(errors.ConflictError, match="stream 'shipments': expected version 0, but it is at version 1"):
        with store.transaction() as conn:
            store.set_checkpoint("pm", 2, conn, expected=1)
            store.append("shipments", plain(1), expected_version=0, conn=conn)
    assert store.head() == 3 and store.get_checkpoint("pm") == 1
    assert [e.payload["tag"] for e in store.read_stream("shipments")] == ["ship 1"]
    with store.transaction() as conn:  # a retry of a committed append inside a transaction returns it
        assert store.append("shipments", [NewEvent(made[0].type, made[0].payload, made[0].id)], conn=conn) == made


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


@pytest.mark.parametrize("name", ["", "x" * 201, "a\0b", " padded"])
def test_get_checkpoint_refuses_the_names_set_checkpoint_refuses(store, name):
    """Both backends alike: a NUL was taken by SQLite and failed on PostgreSQL with a generic error, and
    get_checkpoint answered 0 for a name set_checkpoint refuses."""
    from registry import errors

    with pytest.raises(errors.InvalidNameError, match="consumer name"):
        store.get_checkpoint(name)
    with pytest.raises(errors.InvalidNameError, match="consumer name"):
        store.set_checkpoint(name, 0)


@pytest.mark.parametrize(("after", "limit"), [(None, None), (2**63, None), (0, 2**63), (-1, None)])
def test_events_refuses_positions_out_of_range_on_both_backends(store, after, limit):
    from registry import errors

    with pytest.raises(errors.InvalidNameError):
        store.events(after, limit)


@pytest.mark.parametrize("types", ["Tick", ["Tick", 1], ["a\0b"], [""], ["x"] * 1 + [f"t{i}" for i in range(1000)],
                                   [["AliasSet"]], [{}], 7, {"AliasSet": 1}])
def test_events_refuses_types_that_are_not_a_list_of_type_names(store, types):
    """A bare string (it filtered by its characters), a non-string, a NUL (SQLite answered [], PostgreSQL
    failed), more names than one read takes (SQLite's variables: an "outage" before)."""
    from registry import errors

    with pytest.raises(errors.InvalidNameError):
        store.events(types=types)
