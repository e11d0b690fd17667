"""Durable writes through the registry: objects are on disk for good before the event naming them commits."""

from __future__ import annotations

import os

import registry_toys
from registry import Registry
from registry.eventstore import EventStore
from storage import manifest_objects


def test_objects_are_fsynced_before_the_version_event_commits(tmp_path, monkeypatch):
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace, real_append = os.fsync, os.replace, EventStore.append

    def fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kwargs):
        calls.append(("replace", str(dst)))
        return real_replace(src, dst, **kwargs)

    def append(self, *args, **kwargs):
        calls.append(("append", ""))
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(EventStore, "append", append)
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", str(tmp_path / "blobs")) as reg:
        reg.snapshot("m", registry_toys.spec(hidden=64).build())
        objs = manifest_objects(reg.manifest("m"))
    before = calls[: calls.index(("append", ""))]
    for obj in objs:
        h = obj.removeprefix("blake3:")
        path = str(tmp_path / "blobs" / "objects" / h[:2] / h)
        rename = before.index(("replace", path))
        assert ("fsync", os.path.dirname(path)) in before[rename + 1 :]
        assert any(op == "fsync" and arg.endswith("-" + h) for op, arg in before[:rename])  # the temp file


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
