"""A ``Registry`` used after ``close()`` raises ``ClosedError``: it never connects again behind the
caller's back, and nothing is recorded (a closed file refuses its reads and writes the same way)."""

from __future__ import annotations

import os
import threading
import time
import urllib.parse

import pytest
import registry_toys as toys
from registry_toys import SETTLE, Gate

import registry
from registry import ClosedError, Registry
from registry import db as registry_db
from registry import retention


@pytest.fixture
def closed(make_registry) -> Registry:
    reg = make_registry()
    reg.snapshot("pol", toys.spec().build())
    reg.set_alias("pol", "best", 1)
    reg.load("pol", alias="best")  # a kept read (SQLite) must not be served after close either
    reg.close()
    return reg


USES = {
    "models": lambda r: r.models(),
    "versions": lambda r: r.versions("pol"),
    "load by alias": lambda r: r.load("pol", alias="best"),
    "load by number": lambda r: r.load("pol", 1),
    "tensors": lambda r: r.tensors("pol", 1),
    "events": lambda r: r.events(),
    "follow": lambda r: next(iter(r.follow(timeout=1))),
    "head": lambda r: r.head(),
    "snapshot": lambda r: r.snapshot("pol", toys.spec().build()),
    "snapshot block=False": lambda r: r.snapshot("pol", toys.spec().build(), block=False),  # raises at once
    "register": lambda r: r.register("other", toys.spec()),
    "set_alias": lambda r: r.set_alias("pol", "best", 1),
    "set_tags": lambda r: r.set_tags("pol", 1, {"k": "v"}),
    "delete_version": lambda r: r.delete_version("pol", 1, reason="closed test", force=True),
    "verify": lambda r: r.verify(),
}


@pytest.mark.parametrize("use", list(USES))
def test_every_use_after_close_raises_closed_error_and_records_nothing(closed, use, local_storage_url):
    head_before = Registry(closed.db_url, local_storage_url)
    try:
        before = head_before.head()
    finally:
        head_before.close()
    with pytest.raises(ClosedError, match=r"the registry at .* was closed .* open a new one"):
        USES[use](closed)
    assert closed.closed
    assert closed._queue is None or closed._queue._pool is None  # no snapshot job was queued
    with Registry(closed.db_url, local_storage_url) as fresh:
        assert fresh.head() == before
        assert [v.version for v in fresh.versions("pol")] == [1]


def test_close_twice_and_a_with_block(make_registry):
    reg = make_registry()
    assert not reg.closed
    with reg:
        reg.register("pol", toys.spec())
    assert reg.closed
    reg.close()  # again: nothing to do
    with pytest.raises(ClosedError):
        reg.models()
    assert isinstance(ClosedError("x"), (registry.RegistryError, ValueError))


def test_the_default_registry_is_opened_again_once_closed(default_env):
    first = registry.default_registry()
    registry.register("pol", toys.spec())
    first.close()
    again = registry.default_registry()
    assert again is not first and not again.closed
    assert [m.name for m in registry.models()] == ["pol"]


def test_a_thread_that_connects_again_while_close_runs_is_refused(sqlite_url, local_storage_url, monkeypatch):
    """close() refuses new connections before it tells the other threads' pinned SQLite connections to
    go: a thread that reads in between opens nothing that outlives the close."""
    reg = Registry(sqlite_url, local_storage_url)
    reg.register("pol", toys.spec())
    seen: list[object] = []

    def other_thread() -> None:
        for _ in range(2):  # in close()'s gap, then once it has returned
            try:
                seen.append(reg.head())
            except Exception as e:  # noqa: BLE001 - whatever it was, the assert below names it
                seen.append(e)
            gap.wait()

    gap = threading.Barrier(2, timeout=60)
    original = registry_db.ThreadConnections.close

    def close_then_let_the_other_thread_in(self) -> None:
        original(self)  # the other thread's connection is stale now: its next read connects again
        worker.start()
        gap.wait()

    worker = threading.Thread(target=other_thread)
    monkeypatch.setattr(registry_db.ThreadConnections, "close", close_then_let_the_other_thread_in)
    reg.close()
    gap.wait()
    worker.join(30)
    assert [type(x) for x in seen] == [ClosedError, ClosedError], seen


def test_a_read_only_sqlite_registry_is_refused_after_close(sqlite_url, local_storage_url, monkeypatch):
    with Registry(sqlite_url, local_storage_url) as writer:
        writer.register("pol", toys.spec())
    path = registry_db.normalize_url(sqlite_url).database  # opened as a folder this process cannot write is
    monkeypatch.setattr(registry_db, "_read_only_uri", lambda _: f"file:{urllib.parse.quote(path)}?mode=ro")
    reader = Registry(sqlite_url, local_storage_url, create=False)
    reader.head()
    assert [m.name for m in reader.models()] == ["pol"]
    with pytest.raises(registry.errors.DatabaseReadOnlyError):  # control: it is the read-only connection
        reader.register("other", toys.spec())
    reader.close()
    for use in (reader.models, reader.head, reader.events):  # (the last two read the log itself)
        with pytest.raises(ClosedError):
            use()


def test_an_offline_registry_is_refused_after_close(sqlite_url, local_storage_url, tmp_path):
    cache = str(tmp_path / "cache")
    with Registry(sqlite_url, local_storage_url, cache_dir=cache) as online:
        online.snapshot("pol", toys.spec().build())
        online.load("pol", 1)  # now in the offline cache
    offline = Registry(sqlite_url, local_storage_url, cache_dir=cache, offline=True)
    offline.load("pol", 1)
    offline.close()
    assert offline.closed
    for use in (lambda: offline.load("pol", 1), lambda: offline.version("pol", 1),
                lambda: offline.snapshot("pol", toys.spec().build()), lambda: offline.set_alias("pol", "a", 1)):
        with pytest.raises(ClosedError):
            use()


def test_a_bad_pending_snapshots_opens_nothing(sqlite_url, local_storage_url, monkeypatch):
    opened = []
    monkeypatch.setattr(registry.eventstore.EventStore, "__init__",
                        lambda self, *a, **k: opened.append(a) or (_ for _ in ()).throw(AssertionError("opened")))
    with pytest.raises(ValueError, match="pending_snapshots"):
        Registry(sqlite_url, local_storage_url, pending_snapshots=0)
    assert opened == []


def _closing(reg: Registry) -> tuple[Gate, threading.Thread, list]:
    """``reg`` with a ``snapshot(block=False)`` held by its progress callback, and ``close()`` started in
    a thread (it waits for that snapshot): the window in which it is closing but not yet closed."""
    gate = Gate()
    held = reg.snapshot("pol", toys.spec().build(), {"held": True}, block=False, progress=gate)
    raised: list = []
    closer = threading.Thread(target=lambda: _collect(reg.close, raised))
    try:
        assert gate.entered.wait(30)
        closer.start()
        _until_closing(reg)
        time.sleep(SETTLE)
        assert closer.is_alive() and not held.done(), "close() must wait for the held snapshot"
    except BaseException:
        gate.open()  # (no thread outlives a failed test)
        if closer.is_alive():
            closer.join(60)
        raise
    return gate, closer, raised


def _until_closing(reg: Registry) -> None:
    """Wait until ``close()``, called in another thread, has begun (``closed`` is set before it waits)."""
    deadline = time.monotonic() + 30
    while not reg.closed:
        assert time.monotonic() < deadline, "close() never began"
        time.sleep(0.01)


def _collect(fn, into: list) -> None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the test asserts it is empty
        into.append(exc)


def test_new_work_is_refused_while_close_waits_for_pending_snapshots(make_registry, local_storage_url):
    """From the call to close() on, a snapshot(block=False) is refused (before: it was queued on a new
    pool close() did not wait for, and failed or committed behind its back), and so is any other use;
    the snapshot already pending still commits, and close() returns once it has."""
    reg = make_registry()
    reg.register("pol", toys.spec())
    reg.snapshot("other", toys.spec().build())
    reg.load("other", 1)  # (a kept read, SQLite: not served once close() was called either)
    gate, closer, raised = _closing(reg)
    try:
        for use in (lambda: reg.load("other", 1), lambda: reg.event_store.head()):
            with pytest.raises(ClosedError):
                use()
        for use in USES:
            with pytest.raises(ClosedError):
                USES[use](reg)
        for use in (reg.storage_history, lambda: reg.history("pol"), reg.rebuild_projections, reg.schema_status,
                    reg.upgrade_schema, lambda: reg.move_storage(local_storage_url + "-moved")):
            with pytest.raises(ClosedError):
                use()
    finally:
        gate.open()
        closer.join(60)
    assert not closer.is_alive() and raised == []
    assert reg._queue._pool is None  # no job was queued after close() began
    with Registry(reg.db_url, local_storage_url) as fresh:
        assert [(v.version, v.metadata) for v in fresh.versions("pol")] == [(1, {"held": True})]
        assert fresh.version("pol", 1).version == 1 and fresh.aliases("pol") == {}


def test_a_snapshot_close_waits_for_still_applies_its_retention_policy(make_registry, local_storage_url):
    """The pending snapshot's own reads and writes after its commit (its model's retention policy) are
    not refused while close() waits for it."""
    reg = make_registry()
    reg.snapshot("pol", toys.spec().build())
    reg.set_retention("pol", keep_last=1)
    gate, closer, raised = _closing(reg)
    gate.open()
    closer.join(60)
    assert not closer.is_alive() and raised == [], raised
    with Registry(reg.db_url, local_storage_url) as fresh:
        assert [v.version for v in fresh.versions("pol")] == [2]  # version 1 deleted by the policy


def test_the_default_registry_is_not_a_closing_one(default_env):
    first = registry.default_registry()
    first.register("pol", toys.spec())
    gate, closer, raised = _closing(first)
    try:
        again = registry.default_registry()
        assert again is not first and not again.closed
        assert [m.name for m in again.models()] == ["pol"]
    finally:
        gate.open()
        closer.join(60)
    assert raised == []


def test_a_queue_closed_after_a_submit_took_its_slot_refuses_it():
    """The race close() could lose: a snapshot(block=False) that passed the registry's check and took its
    slot, and is queued only after close() drained the queue, is refused (it would run on a new pool
    that nobody waits for)."""
    from registry.pending import SnapshotQueue

    queue = SnapshotQueue(2)
    ran: list[str] = []

    def stage() -> str:  # (the caller's thread, after its slot was taken)
        queue.close(lambda: ClosedError("closed meanwhile"))
        return "staged"

    with pytest.raises(ClosedError, match="closed meanwhile"):
        queue.submit("pol", stage, lambda staged, wait_turn: ran.append(staged))
    assert ran == [] and queue._pool is None
    assert queue._slots.acquire(blocking=False) and queue._slots.acquire(blocking=False)  # its slot came back


def test_a_snapshot_that_passed_its_check_before_close_makes_no_queue_after_it(make_registry, monkeypatch):
    """close() in another thread between a snapshot's first check and its queue: no queue is made after
    close() took its last look (a queue it never saw would hold a job nobody waits for)."""
    reg = make_registry()
    original = type(reg)._module_spec

    def close_meanwhile(self, module):  # (the other thread's close(), at this moment)
        self.close()
        return original(self, module)

    monkeypatch.setattr(type(reg), "_module_spec", close_meanwhile)
    with pytest.raises(ClosedError):
        reg.snapshot("pol", toys.spec().build(), block=False)
    assert reg._queue is None


def test_a_blocking_snapshot_that_commits_while_another_thread_closes_returns_its_version(
        make_registry, local_storage_url, monkeypatch):
    """A snapshot in another thread, committed before close() began, returns its version even when
    the retention policy it applies after the commit meets the closing registry: raising would tell
    its caller it was not recorded (a retry would record it twice). The policy is left for later."""
    reg = make_registry()
    reg.snapshot("pol", toys.spec().build())
    reg.set_retention("pol", keep_last=1)
    original = retention.apply
    committed, closing = threading.Event(), threading.Event()

    def apply_once_closing(r, name):
        committed.set()
        assert closing.wait(30)
        return original(r, name)

    monkeypatch.setattr(retention, "apply", apply_once_closing)
    got: list = []
    writer = threading.Thread(target=lambda: _collect(lambda: got.append(reg.snapshot("pol", toys.spec().build())),
                                                     got))
    writer.start()
    try:
        assert committed.wait(30)
        reg.close()
    finally:
        closing.set()
        writer.join(60)
    assert [getattr(v, "version", v) for v in got] == [2]
    with Registry(reg.db_url, local_storage_url) as fresh:
        assert [v.version for v in fresh.versions("pol")] == [1, 2]  # (version 1: deleted by the next snapshot)


def test_a_progress_callback_of_a_snapshot_close_waits_for_writes_through_the_default_registry(default_env):
    """Within the snapshot close() waits for (its progress callback), the default registry is still that
    registry, not a new one: a write made there waits for the snapshots of its name called before."""
    first = registry.default_registry()
    first.snapshot("pol", toys.spec().build())
    seen: list = []

    def callback(done: int, total: int) -> None:
        if seen:
            return
        _until_closing(first)
        seen.append(registry.default_registry())
        registry.set_alias("pol", "cb", 1)

    pending = first.snapshot("other", toys.spec().build(), block=False, progress=callback)
    first.close()
    assert pending.result(0).version == 1
    assert seen == [first]
    with Registry(*default_env) as fresh:
        assert fresh.aliases("pol") == {"cb": 1}


def test_a_forked_child_gets_a_free_queue_lock(make_registry):
    """Another thread of the parent may hold the lock that makes the snapshot queue (or close()'s look
    at it) at the fork: the child, which has no such thread, can still make its queue and close."""
    reg = make_registry()
    with reg._queue_lock:  # (held, as by the parent's other thread, across the fork)
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if the lock can be taken
            os._exit(0 if reg._queue_lock.acquire(timeout=10) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_set_retention_returns_its_event_when_another_thread_closes_before_the_policy_is_applied(
        make_registry, local_storage_url, monkeypatch):
    """The policy is recorded (its event committed) before it is applied: a close() in another thread
    meanwhile leaves it for the next snapshot or gc, and the call returns its event (raising would
    tell the caller it was not recorded, and a retry would record it twice)."""
    reg = make_registry()
    for _ in range(2):
        reg.snapshot("pol", toys.spec().build())
    gate = Gate()
    reg.snapshot("other", toys.spec().build(), block=False, progress=gate)  # (close() will wait for it)
    assert gate.entered.wait(30)
    raised: list = []
    closer = threading.Thread(target=lambda: _collect(reg.close, raised))
    original = retention.apply

    def close_then_apply(r, name):  # (after the RetentionSet commit)
        closer.start()
        _until_closing(reg)
        return original(r, name)

    monkeypatch.setattr(retention, "apply", close_then_apply)
    try:
        event = reg.set_retention("pol", keep_last=1)
    finally:
        gate.open()
        if closer.is_alive():
            closer.join(60)
    assert event.payload.get("keep_last") == 1 and raised == []
    with Registry(reg.db_url, local_storage_url) as fresh:
        assert fresh.retention("pol")["keep_last"] == 1
        assert [v.version for v in fresh.versions("pol")] == [1, 2]  # (applied by the next snapshot or gc)
