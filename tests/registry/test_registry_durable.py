"""Durable writes through the registry: objects are on disk for good before the event naming them commits."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest
import registry_toys
import sqlalchemy as sa
from registry import Registry
from registry.eventstore import EventStore
from storage import StorageWriteError, filesystems, manifest_objects


def test_objects_are_fsynced_before_the_version_event_commits(tmp_path, monkeypatch, syscalls):
    """The append may run while the objects are written (``Store.begin_put``); its commit comes after every
    object's fsyncs (temp file, or its O_DSYNC writes, before its rename, folder after it)."""
    calls = syscalls
    real_append = EventStore.append

    def append(self, *args, **kwargs):
        calls.append(("append", ""))
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(EventStore, "append", append)
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", str(tmp_path / "blobs")) as reg:
        sa.event.listen(reg.event_store.engine, "commit", lambda conn: calls.append(("commit", "")))
        calls.clear()  # opening a new registry appended its storage binding
        reg.snapshot("m", registry_toys.spec(hidden=64).build())
        objs = manifest_objects(reg.manifest("m"))
    appended = calls.index(("append", ""))
    before = calls[: calls.index(("commit", ""), appended)]  # everything before the append's commit
    for obj in objs:
        h = obj.removeprefix("blake3:")
        path = str(tmp_path / "blobs" / "objects" / h[:2] / h)
        rename = next(i for i, (op, arg) in enumerate(before) if op == "replace" and arg.endswith(" -> " + path))
        assert ("fsync", os.path.dirname(path)) in before[rename + 1 :]
        # the temp file: fsynced, or opened O_DSYNC (each write returns once stored)
        assert any(op in ("fsync", "dsync") and arg.endswith("-" + h) for op, arg in before[:rename])


def test_the_append_runs_while_the_objects_are_written_and_commits_only_after_them(make_registry, monkeypatch):
    """A snapshot's objects are written (and fsynced) while its append's statements run; the append commits
    once they are durable: another reader sees no new version while an object's folder fsync is held up."""
    reg, other = make_registry(), make_registry()
    module = registry_toys.spec(hidden=64).build()
    reg.snapshot("m", module)  # (the first put makes the object folders)
    registry_toys.train_step(module, 1)
    held, appended, out = threading.Event(), threading.Event(), {}
    real_fsync_folder, real_append = filesystems.fsync_folder, EventStore.append

    def slow_fsync_folder(folder):
        assert held.wait(30), "never released"
        real_fsync_folder(folder)

    def append(self, *args, **kwargs):
        recorded = real_append(self, *args, **kwargs)
        appended.set()
        return recorded

    monkeypatch.setattr(filesystems, "fsync_folder", slow_fsync_folder)
    monkeypatch.setattr(EventStore, "append", append)
    worker = threading.Thread(target=lambda: out.setdefault("v", reg.snapshot("m", module)))
    worker.start()
    try:
        assert appended.wait(10), "the append waited for the objects' writes (no overlap)"
        time.sleep(0.3)  # time enough for a wrong commit
        assert other.version("m").version == 1  # appended, not committed: an object is not durable yet
    finally:
        held.set()
        worker.join(30)
    assert out["v"].version == 2 and other.version("m").version == 2
    assert registry_toys.states_equal(other.load("m", 2), module)


def test_a_failed_object_write_rolls_the_append_back(make_registry, monkeypatch):
    """An object write that fails after the append's statements ran: nothing is recorded, the error is storage's."""
    reg = make_registry()
    module = registry_toys.spec(hidden=64).build()
    reg.snapshot("m", module)
    registry_toys.train_step(module, 1)

    def full_disk(folder):
        raise OSError(errno.ENOSPC, "No space left on device", folder)

    monkeypatch.setattr(filesystems, "fsync_folder", full_disk)
    with pytest.raises(StorageWriteError, match="no space"):
        reg.snapshot("m", module)
    assert reg.version("m").version == 1 and [v.version for v in reg.versions("m")] == [1]
    monkeypatch.undo()
    assert reg.snapshot("m", module).version == 2  # nothing left locked or half-written


def test_sqlite_commits_are_synchronous_full_in_wal(tmp_path):
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", str(tmp_path / "blobs")) as reg:
        with reg.event_store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_a_truncated_object_is_rewritten_by_a_snapshot_of_the_same_weights(sqlite_url, storage_url, tmp_path):
    """Issue 15: the second snapshot succeeded while its version failed to load with IntegrityError."""
    module = registry_toys.spec(hidden=64).build()
    with Registry(sqlite_url, storage_url, cache_dir=str(tmp_path / "c1")) as reg:
        reg.snapshot("m", module)
        big = max(reg.manifest("m")["objects"].items(), key=lambda kv: kv[1]["nbytes"])[0]
        path = reg.store._path(big)
        reg.store.fs.pipe_file(path, bytes(reg.store.fs.cat_file(path))[:100])
    with Registry(sqlite_url, storage_url, cache_dir=str(tmp_path / "c2")) as reg:
        assert reg.snapshot("m", module).version == 2
    with Registry(sqlite_url, storage_url, cache_dir=str(tmp_path / "c3")) as reg:
        for version in (1, 2):
            loaded = reg.load("m", version)
            assert all((a == b).all() for a, b in zip(loaded.state_dict().values(), module.state_dict().values()))


@pytest.mark.parametrize("overlap_max", [0, 1 << 40], ids=["large", "control-overlapping"])
def test_a_large_snapshot_stores_its_objects_before_taking_the_registrys_write_lock(make_registry, monkeypatch,
                                                                                   overlap_max):
    """The append's transaction holds the registry's write lock (SQLite's; PostgreSQL's position counter) to
    its commit: a snapshot past ``OVERLAP_MAX_BYTES`` waits for its objects first, so another writer (of
    another model) is not held up by its object writes. The control overlaps them, and the other waits."""
    import registry.api as api

    reg, other = make_registry(), make_registry()
    module = registry_toys.spec(hidden=64).build()
    reg.snapshot("m", module)
    other.snapshot("n", registry_toys.spec(hidden=8).build())
    registry_toys.train_step(module, 1)
    monkeypatch.setattr(api, "OVERLAP_MAX_BYTES", overlap_max)  # this small module counts as large
    held, out = threading.Event(), {}
    real_fsync_folder = filesystems.fsync_folder

    def slow_fsync_folder(folder):
        assert held.wait(30), "never released"
        real_fsync_folder(folder)

    monkeypatch.setattr(filesystems, "fsync_folder", slow_fsync_folder)
    snapshot = threading.Thread(target=lambda: out.setdefault("v", reg.snapshot("m", module)))
    snapshot.start()
    alias = threading.Thread(target=lambda: out.setdefault("alias", other.set_alias("n", "best", 1)))
    try:
        time.sleep(0.3)  # the snapshot is held in its objects' writes (or, for the control, in its append)
        alias.start()
        alias.join(2 if overlap_max else 10)
        if overlap_max:
            assert alias.is_alive(), "the control did not hold the write lock while its objects were written"
        else:
            assert not alias.is_alive() and "alias" in out, "another model's write waited on this snapshot's objects"
            assert other.version("m").version == 1  # nothing recorded before its objects are durable
    finally:
        held.set()
        snapshot.join(30)
        alias.join(30)
    assert out["v"].version == 2 and "alias" in out


def test_the_manifest_encoded_once_is_stored_as_json_dumps_writes_it(reg, monkeypatch):
    """A snapshot's manifest is encoded once for its event and its versions row; both texts are what
    encoding each value on its own writes (the event's payload as the append's encoder, the row as
    ``json.dumps``)."""
    import json

    import registry_toys as toys
    import sqlalchemy as sa

    from registry import db

    hits = []
    real = db.encoded_json
    monkeypatch.setattr(db, "encoded_json", lambda value: hits.append(real(value)) or hits[-1])
    module = toys.spec().build()
    reg.snapshot("m", module, {"note": "é", "nested": {"a": [1, 2.5]}})
    toys.train_step(module, 1)
    reg.snapshot("m", module)
    assert len([h for h in hits if h is not None]) >= 4  # each manifest: in its payload and in its row
    with reg.event_store.engine.connect() as conn:
        payloads = conn.execute(sa.text("SELECT CAST(payload AS TEXT) FROM rlreg_events")).scalars().all()
        rows = conn.execute(sa.text("SELECT CAST(manifest AS TEXT) FROM rlreg_versions")).scalars().all()
    assert len(payloads) >= 3 and len(rows) == 2
    for text in payloads:
        assert text == json.dumps(json.loads(text), allow_nan=False)
    for text in rows:
        assert text == json.dumps(json.loads(text))
    assert [reg.load("m", v).state_dict()["steps"].item() for v in (1, 2)] == [0, 1]
