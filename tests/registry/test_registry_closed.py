"""A ``Registry`` used after ``close()`` raises ``ClosedError``: it never connects again behind the
caller's back, and nothing is recorded (a closed file refuses its reads and writes the same way)."""

from __future__ import annotations

import threading
import urllib.parse

import pytest
import registry_toys as toys

import registry
from registry import ClosedError, Registry
from registry import db as registry_db


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
