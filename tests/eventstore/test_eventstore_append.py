"""The append contract, on SQLite and PostgreSQL: dense commit-ordered positions, conflicts, idempotency."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from eventstore_helpers import jitter, plain

from registry import errors, eventstore
from registry.eventstore import EventStore, NewEvent


def test_append_records_positions_versions_and_reads_back(store):
    first = store.append("a", plain(2), expected_version=0)
    second = store.append("b", plain(1), expected_version=0)
    third = store.append("a", plain(1), expected_version=2)
    assert [e.position for e in first + second + third] == [1, 2, 3, 4]
    assert [e.stream_version for e in third] == [3]
    assert store.head() == 4 and store.stream_version("a") == 3 and store.stream_version("nope") == 0
    assert store.events() == first + second + third
    assert store.events(after=1, limit=2) == [first[1], second[0]]
    assert store.read_stream("a") == first + third
    assert store.read_stream("a", after=2) == third
    assert first[0].timestamp.tzinfo is not None
    assert first[0].to_dict()["id"] == str(first[0].id)


def test_append_at_head_when_no_expected_version(store):
    store.append("s", plain(2))
    got = store.append("s", plain(1))
    assert got[0].stream_version == 3 and got[0].position == 3


def test_conflict_loser_leaves_head_and_log_unchanged(store):
    store.append("m", plain(2), expected_version=0)
    before = store.events()
    with pytest.raises(errors.ConflictError, match=r"stream 'm': expected version 1, but it is at version 2"):
        store.append("m", plain(1), expected_version=1)
    with pytest.raises(errors.ConflictError, match=r"stream 'm': expected version 0, but it is at version 2"):
        store.append("m", plain(1), expected_version=0)
    assert store.head() == 2 and store.events() == before and store.stream_version("m") == 2
    # the next append still gets the next position: the losers allocated nothing
    assert store.append("other", plain(1))[0].position == 3


def test_racing_creators_of_one_stream_have_exactly_one_winner(make_store):
    stores = [make_store() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[object] = [None] * len(stores)

    def create(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = stores[i].append("same", plain(i + 1), expected_version=0)
        except errors.ConflictError as e:
            outcomes[i] = e

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if isinstance(o, list)]
    assert len(winners) == 1, outcomes
    assert all("expected version 0, but it is at version" in str(o) for o in outcomes if o is not winners[0])
    assert stores[0].head() == len(winners[0]) == stores[0].stream_version("same")


def test_idempotent_retry_returns_the_original_positions(store):
    batch = plain(2)
    original = store.append("m", batch, expected_version=0)
    store.append("other", plain(1))
    assert store.append("m", batch, expected_version=0) == original
    assert store.append("m", batch) == original
    assert store.head() == 3


def test_partial_overlap_of_ids_is_refused_and_changes_nothing(store):
    batch = plain(2)
    store.append("m", batch)
    with pytest.raises(errors.ConflictError, match=r"1 of their ids are already recorded and 1 are not"):
        store.append("m", [batch[0], NewEvent("Tick", {})])
    assert store.head() == 2


@pytest.mark.parametrize("at", [0, 63, 64, 99, 100])
def test_a_recorded_id_late_in_a_long_append_is_refused_and_changes_nothing(store, at):
    # On SQLite a long append's rows go in by several INSERTs (64, 32, 4 rows): one refused late rolls back
    # the rows before it
    first = plain(1)
    store.append("m", first)
    batch = plain(101)
    batch[at] = first[0]
    with pytest.raises(errors.ConflictError, match=r"1 of their ids are already recorded and 100 are not"):
        store.append("m", batch)
    assert store.head() == 1 and store.events() == store.read_stream("m") and len(store.events()) == 1
    appended = store.append("m", plain(101))
    assert [e.position for e in appended] == list(range(2, 103)) and store.events()[1:] == appended


@pytest.mark.parametrize(
    ("stream", "events", "expected", "error", "message"),
    [
        ("", [NewEvent("T", {})], None, errors.InvalidNameError, r"stream name '' is invalid"),
        (" m", [NewEvent("T", {})], None, errors.InvalidNameError, r"stream name ' m' is invalid"),
        ("m", [], None, errors.InvalidEventError, r"append to stream 'm': no events given"),
        ("m", [NewEvent("T", {"x": {1, 2}})], None, errors.InvalidEventError, r"the payload of 'T' is not JSON"),
        ("m", [NewEvent("T", {"x": float("nan")})], None, errors.InvalidEventError, r"payload of 'T' is not JSON"),
        ("m", [NewEvent("", {})], None, errors.InvalidNameError, r"event type name '' is invalid"),
        ("m", [NewEvent("T", {})], -1, errors.InvalidEventError, r"expected_version must be None or an int from 0"),
        ("m", [NewEvent("T", {})], 2**63, errors.InvalidEventError, r"an int from 0 to 2\^63 - 1, got 9223372036854775808"),
        ("m\0", [NewEvent("T", {})], None, errors.InvalidNameError, r"without surrounding whitespace or NUL"),
        ("m", ["not an event"], None, errors.InvalidEventError, r"'not an event' is not a NewEvent"),
    ],
)
def test_bad_input_raises_before_anything_is_written(store, stream, events, expected, error, message):
    store.append("keep", plain(1))
    with pytest.raises(error, match=message):
        store.append(stream, events, expected_version=expected)
    assert store.head() == 1


def test_two_events_sharing_an_id_are_refused(store):
    same = uuid.uuid4()
    with pytest.raises(errors.InvalidEventError, match="two events share an id"):
        store.append("m", [NewEvent("T", {}, same), NewEvent("T", {}, same)])
    assert store.head() == 0


def test_two_writers_racing_do_not_interleave_positions(make_store):
    stores = [make_store(), make_store()]
    appended: dict[str, list[list[int]]] = {"w0": [], "w1": []}
    barrier = threading.Barrier(2)

    def write(i: int) -> None:
        barrier.wait()
        for _ in range(25):
            jitter()
            appended[f"w{i}"].append([e.position for e in stores[i].append(f"w{i}", plain(3))])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = stores[0].events()
    assert [e.position for e in log] == list(range(1, 151))
    for stream, batches in appended.items():
        for positions in batches:
            assert positions == list(range(positions[0], positions[0] + 3)), positions
            assert {log[p - 1].stream for p in positions} == {stream}
        assert [e.stream_version for e in stores[0].read_stream(stream)] == list(range(1, 76))


class _HoldOpen:
    """A projector that holds the append's transaction open (after allocation) until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def apply(self, conn, event) -> None:
        self.entered.set()
        assert self.release.wait(30), "the test never released the held append"

    def clear(self, conn) -> None:
        pass


def _wait_for_lock_waiter(store: EventStore) -> None:
    """On PostgreSQL, wait until some session of this database waits on a lock."""
    if store.engine.dialect.name != "postgresql":
        return
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    with store.engine.connect() as conn:
        while conn.execute(query).scalar() == 0:
            assert time.monotonic() < deadline, "the second append never waited on the counter's lock"
            conn.rollback()
            time.sleep(0.01)


def test_an_uncommitted_allocation_blocks_the_next_and_a_tailer_sees_neither(make_store):
    hold = _HoldOpen()
    first_store, second_store, tailer = make_store(projector=hold), make_store(), make_store()
    results: dict[str, list] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", first_store.append("a", plain(2))))
    second_done = threading.Event()

    def second_append() -> None:
        results["second"] = second_store.append("b", plain(1))
        second_done.set()

    first.start()
    try:
        assert hold.entered.wait(30), "the first append never reached its projector"
        second = threading.Thread(target=second_append)
        second.start()
        _wait_for_lock_waiter(tailer)
        assert not second_done.wait(0.3), "the second append committed while the first held the counter"
        assert tailer.events() == [] and tailer.head() == 0
    finally:
        hold.release.set()
    first.join()
    second.join()
    log = tailer.events()
    assert [(e.stream, e.position) for e in log] == [("a", 1), ("a", 2), ("b", 3)]
    assert log == results["first"] + results["second"]


def test_a_transaction_appending_to_two_streams_and_a_plain_append_to_the_second_both_commit(make_store):
    """A consumer's transaction appends to ``a``, then to ``b``, while a plain append to ``b`` waits for it:
    on PostgreSQL the plain append used to hold ``b``'s row while waiting for the position counter the
    transaction held, and the transaction's second append then waited for ``b``'s row: a deadlock, one
    of the two failed. Every append now takes the counter first."""
    store, other, watcher = make_store(), make_store(), make_store()
    store.append("b", plain(1))
    failures: list[Exception] = []

    def plain_append() -> None:
        try:
            other.append("b", plain(1))
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    second = threading.Thread(target=plain_append)
    with store.transaction() as conn:
        store.append("a", plain(1), conn=conn)
        second.start()
        _wait_for_lock_waiter(watcher)  # (SQLite: the plain append waits for the write lock; no look needed)
        store.append("b", plain(1), conn=conn)
    second.join(30)
    assert not second.is_alive() and failures == []
    log = watcher.events()
    assert [(e.stream, e.stream_version) for e in log] == [("b", 1), ("a", 1), ("b", 2), ("b", 3)]


def test_driver_errors_are_mapped_into_registry_errors():
    with pytest.raises(errors.DatabaseUnavailableError, match="reading the schema revision") as info:
        EventStore("postgresql://postgres@127.0.0.1:1/nowhere")
    assert isinstance(info.value, ConnectionError)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("expected", [None, 0])
def test_concurrent_retries_of_one_append_record_it_once(make_store, expected):
    stores = [make_store() for _ in range(4)]
    batch = plain(2)
    barrier = threading.Barrier(len(stores))
    results: list[object] = [None] * len(stores)

    def retry(i: int) -> None:
        barrier.wait()
        results[i] = stores[i].append("m", batch, expected_version=expected)

    threads = [threading.Thread(target=retry, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == results[0] for r in results), results
    assert [e.position for e in results[0]] == [1, 2]
    assert stores[0].head() == 2 and stores[0].stream_version("m") == 2


def test_payloads_round_trip_exactly(store):
    payload = {"z": 1, "a": [1.5, -0.0, 2**62, None, True], "ü": {"nested": "ß✓"}, "m": ""}
    recorded = store.append("m", [NewEvent("T", payload)])
    (read,) = store.events()
    assert read == recorded[0]
    assert list(read.payload) == ["z", "a", "ü", "m"]  # key order kept, not re-sorted
    assert read.payload == payload and isinstance(read.payload["a"][2], int)


def test_a_large_page_reads_back_exactly_as_appended(store):
    # Pages of 256+ rows are built in bulk (one JSON parse, GC paused, binary fetch on PostgreSQL).
    events = [NewEvent("T", {"i": i, "x": [i / 3, None, "é"]}, actor={"user": f"u{i}"} if i % 3 else None)
              for i in range(600)]
    appended = store.append("big", events[:300], expected_version=0) + store.append("big", events[300:])
    for read in (store.events(), store.events(after=0, limit=600), store.read_stream("big")):
        assert read == appended
        assert all(e.timestamp.tzinfo is not None and e.timestamp.utcoffset().total_seconds() == 0 for e in read)
        assert all(type(e.id) is uuid.UUID and e.id.version == 7 for e in read)
        assert [e.to_dict() for e in read] == [e.to_dict() for e in appended]


@pytest.mark.parametrize("payload", [{"a": [1, 2.5, None, True]}, "x\u00e9\n", 3, [], {1: "a", True: 1, None: 2}, (1, 2)])
def test_payloads_are_stored_as_json_dumps_writes_them(store, payload):
    recorded = store.append("p", [NewEvent("T", payload)])[0]
    with store.engine.connect() as conn:
        query = f"SELECT CAST(payload AS TEXT) FROM rlreg_events WHERE position = {recorded.position}"
        text = conn.exec_driver_sql(query).scalar()
    assert text == json.dumps(payload, allow_nan=False)  # PostgreSQL's json (not jsonb) keeps the text as sent


def _random_parts(ids) -> list[int]:
    return [i.int & ((0xFFF << 64) | ((1 << 62) - 1)) for i in ids]


def _child_ids(queue) -> None:
    queue.put(_random_parts(eventstore.time_ordered_uuid() for _ in range(20)))


def test_event_ids_are_uuid7_and_a_forked_process_draws_its_own_random_bits():
    ids = [eventstore.time_ordered_uuid() for _ in range(2000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids) and len(set(ids)) == 2000
    millis = [i.int >> 80 for i in ids]
    assert millis == sorted(millis) and abs(millis[-1] - time.time() * 1000) < 5000  # the clock, in order
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    state = eventstore._ids_random.getstate()
    child = ctx.Process(target=_child_ids, args=(queue,))
    child.start()
    in_child = queue.get(timeout=30)
    child.join(timeout=30)
    in_parent = _random_parts(eventstore.time_ordered_uuid() for _ in range(20))
    assert not set(in_child) & set(in_parent), "a forked child repeated its parent's ids"
    # The control: a generator in the parent's state at the fork draws exactly the parent's bits again.
    eventstore._ids_random.setstate(state)
    assert _random_parts(eventstore.time_ordered_uuid() for _ in range(20)) == in_parent


def test_a_sqlite_append_seeks_the_head_and_the_stream_version_instead_of_scanning(sqlite_url):
    # SQLite keeps no counter or stream rows: both are max() over an index, which must stay a seek (a
    # max() wrapped in coalesce(), or read through a subquery in FROM, scans every event of the stream).
    with EventStore(sqlite_url) as store:
        store.append("long", plain(20_000), expected_version=0)
        driver = store._pinned.get()
        steps = []
        driver.set_progress_handler(lambda: steps.append(1), 100)  # called every 100 VM instructions
        try:
            store.append("long", plain(1), expected_version=20_000)
            store.append("long", plain(3))
            assert store.stream_version("long") == 20_004 and store.head() == 20_004
        finally:
            driver.set_progress_handler(None, 0)
        assert len(steps) * 100 < 5_000, f"{len(steps) * 100} VM instructions: a scan of the stream's 20,000 events"


def test_events_filtered_by_stream_and_types_count_matches_toward_the_limit(store):
    store.append("a", plain(3))
    store.append("b", [eventstore.NewEvent("Other", {})] * 1 + plain(2))
    store.append("a", [eventstore.NewEvent("Other", {})])
    every = store.events()
    assert [e.position for e in store.events(stream="a")] == [e.position for e in every if e.stream == "a"]
    assert [e.position for e in store.events(0, 2, stream="b")] == [4, 5]
    assert [e.position for e in store.events(types=["Other"])] == [4, 7]
    assert [e.position for e in store.events(3, 1, stream="a", types=["Other", "Nope"])] == [7]
    assert store.events(types=[]) == [] and store.events(stream="nope") == []


def test_a_conflict_caught_in_a_transaction_holds_no_other_append_off(pg_store_url):
    """PostgreSQL: ``append(expected_version=0)`` on a stream that exists, caught by the caller, who goes on
    in its transaction: the failed claim took no lock, so an append to another stream commits meanwhile
    (the counter's lock, taken first, was held to the transaction's end)."""
    store, other = EventStore(pg_store_url), EventStore(pg_store_url)
    try:
        store.append("a", plain(1))
        done = threading.Event()
        with store.transaction() as conn:
            with pytest.raises(errors.ConflictError):
                store.append("a", plain(1), expected_version=0, conn=conn)
            threading.Thread(target=lambda: (other.append("b", plain(1)), done.set()), daemon=True).start()
            assert done.wait(10), "an append to another stream waited for the transaction that lost a conflict"
        assert [(e.stream, e.position) for e in other.events()] == [("a", 1), ("b", 2)]
    finally:
        store.close()
        other.close()
