"""RLREG_OFFLINE=1: versions loaded once online load again with the database and the bucket gone.

Online, a PostgreSQL (or SQLite) registry over moto's S3 records versions and loads some; then the
database is dropped (or its file deleted) and the bucket removed, with AWS_ENDPOINT_URL pointing at a
closed port, so anything that still tried to reach either would fail. Offline loads must give the
same bytes, resolve aliases from their last sighting with a warning, and refuse the rest clearly.
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import boto3
import pytest
import registry_toys as toys
import torch

import registry
import rlmodule
from registry import Registry


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tensors(module) -> dict[str, bytes]:
    """The module's tensors as their raw bytes (bit-identical, whatever the dtype)."""
    tensors, _ = rlmodule.split_state(module.get_state())
    return {k: (str(t.dtype), tuple(t.shape), t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            for k, t in tensors.items()}


def _record_online(db_url: str, storage_url: str, cache: Path) -> dict:
    """Versions 1..3 of ``walk``; prod -> 1, staging -> 3; loads of walk@prod and the latest (then 2).

    Returns the bytes of each version loaded online, by version.
    """
    with Registry(db_url, storage_url, cache_dir=str(cache)) as reg:
        for seed in (1, 2, 3):
            torch.manual_seed(seed)
            reg.snapshot("walk", toys.spec(hidden=4).build(), metadata={"seed": seed})
        reg.set_alias("walk", "prod", 1)
        reg.set_alias("walk", "staging", 3)
        loaded = {1: _tensors(reg.load("walk", alias="prod")), 3: _tensors(reg.load("walk"))}
        reg.snapshot("walk", toys.spec(hidden=4).build())  # version 4: never loaded
    return loaded


def _cut_off_s3(bucket: str, monkeypatch) -> None:
    """Delete the bucket and point every S3 client at a closed port."""
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    name = bucket.removeprefix("s3://")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")


def _check_offline(reg: Registry, loaded: dict) -> None:
    """What an offline registry must do with what ``_record_online`` left in the cache."""
    assert reg.offline
    assert _tensors(reg.load("walk", 1)) == loaded[1]
    assert _tensors(reg.load("walk:3")) == loaded[3]
    with pytest.warns(registry.OfflineAliasWarning) as seen:
        assert _tensors(reg.load("walk", alias="prod")) == loaded[1]
    [warning] = seen
    text = str(warning.message)
    assert "'walk'@prod" in text and "version 1" in text and "last seen online, at 20" in text, text
    with pytest.warns(registry.OfflineAliasWarning, match=r"version 3, which was its latest version"):
        assert _tensors(reg.load("walk")) == loaded[3]
    # staging -> 3 was seen when the latest (3) was loaded: it resolves too
    with pytest.warns(registry.OfflineAliasWarning, match="alias 'staging' pointed"):
        assert reg.version("walk", alias="staging").version == 3
    assert reg.version("walk", 1).metadata == {"seed": 1} and reg.version("walk", 1).aliases == ("prod",)
    with pytest.raises(registry.NotCachedError, match=r"version 4 is not in the offline cache .*load it once online"):
        reg.load("walk", 4)
    with pytest.raises(registry.NotCachedError, match="version 2 is not in the offline cache"):
        reg.load("walk", 2)
    with pytest.raises(registry.NotCachedError, match="alias 'nightly' was never seen"):
        reg.load("walk@nightly")
    with pytest.raises(registry.NotCachedError, match="model 'run' version 1 is not in the offline cache"):
        reg.load("run", 1)
    with pytest.raises(registry.OfflineError, match="snapshot of 'walk' needs the database .*RLREG_OFFLINE"):
        reg.snapshot("walk", toys.spec(hidden=4).build())
    with pytest.raises(registry.OfflineError, match="RLREG_OFFLINE=1 does not contact"):
        reg.set_alias("walk", "prod", 3)
    with pytest.raises(registry.OfflineError):
        reg.models()


def test_postgres_and_s3_gone(pg_admin_engine, pg_url, s3_bucket, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    loaded = _record_online(pg_url, f"{s3_bucket}/m", cache)
    with pg_admin_engine.connect() as conn:  # the database is gone for good
        conn.exec_driver_sql(f'DROP DATABASE "{pg_url.rsplit("/", 1)[1]}" WITH (FORCE)')
    _cut_off_s3(s3_bucket, monkeypatch)
    with pytest.raises(registry.NotFoundError, match="does not exist on the server"):  # control: it is gone
        Registry(pg_url, cache_dir=str(cache))

    with Registry(pg_url, cache_dir=str(cache), offline=True) as reg:  # no storage URL: the recorded one
        _check_offline(reg, loaded)

    # RLREG_OFFLINE=1 and the rlreg:// URIs of a spec: the default registry of RLREG_DB_URL, offline
    monkeypatch.setenv("RLREG_OFFLINE", "1")
    monkeypatch.setenv("RLREG_DB_URL", pg_url)
    monkeypatch.setenv("RLREG_CACHE_DIR", str(cache))
    with pytest.warns(registry.OfflineAliasWarning, match="'walk'@prod resolved to version 1"):
        module = toys.spec(hidden=4, load_state_path="rlreg://walk@prod").build()
    assert _tensors(module) == loaded[1]
    assert _tensors(toys.spec(hidden=4, load_state_path="rlreg://walk/3").build()) == loaded[3]
    with pytest.raises(registry.NotCachedError, match="version 4"):
        toys.spec(hidden=4, load_state_path="rlreg://walk/4").build()


def test_sqlite_file_deleted_and_s3_gone(sqlite_url, s3_bucket, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    loaded = _record_online(sqlite_url, f"{s3_bucket}/m", cache)
    _cut_off_s3(s3_bucket, monkeypatch)
    db_file = Path(sqlite_url.removeprefix("sqlite:///"))
    for path in db_file.parent.glob(db_file.name + "*"):  # the file, its -wal and -shm
        path.unlink()
    with Registry(sqlite_url, cache_dir=str(cache), offline=True) as reg:
        _check_offline(reg, loaded)
    assert not db_file.exists()  # offline never created (or opened) the database


def test_local_store_offline_reads_the_folder_in_place(sqlite_url, local_storage_url, tmp_path):
    """The default embedded kind of registry: objects in a local folder, read there offline."""
    cache = tmp_path / "cache"
    loaded = _record_online(sqlite_url, local_storage_url, cache)
    os.unlink(sqlite_url.removeprefix("sqlite:///"))
    with Registry(sqlite_url, cache_dir=str(cache), offline=True) as reg:
        assert reg.storage_url == "file://" + local_storage_url
        _check_offline(reg, loaded)


def test_offline_writes_record_nothing(sqlite_url, local_storage_url, tmp_path):
    with Registry(sqlite_url, local_storage_url, cache_dir=str(tmp_path / "cache")) as reg:
        reg.snapshot("walk", toys.spec(hidden=4).build())
        reg.load("walk", 1)
        head = reg.head()
    with Registry(sqlite_url, local_storage_url, cache_dir=str(tmp_path / "cache"), offline=True) as off:
        for write in (lambda: off.snapshot("walk", toys.spec(hidden=4).build()),
                      lambda: off.register("walk", toys.spec(hidden=4)), lambda: off.set_alias("walk", "prod", 1),
                      lambda: off.set_tags("walk", 1, {"stage": "eval"}), lambda: off.delete_version("walk", 1, reason="x"),
                      lambda: off.gc(dry_run=True)):
            with pytest.raises(registry.OfflineError, match="RLREG_OFFLINE"):
                write()
    with Registry(sqlite_url, local_storage_url) as reg:
        assert reg.head() == head and reg.versions("walk")[-1].version == 1


def _record_files(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "offline" / "records").rglob("*") if p.is_file())


def test_loads_leave_one_record_per_key(sqlite_url, local_storage_url, tmp_path):
    """Loading again rewrites nothing but stale sightings: the cache does not grow with every load."""
    cache = tmp_path / "cache"
    _record_online(sqlite_url, local_storage_url, cache)
    before = {p: p.stat().st_mtime_ns for p in _record_files(cache)}
    assert len(before) == 6  # versions 1 and 3, prod, staging, latest, where the objects live
    with Registry(sqlite_url, local_storage_url, cache_dir=str(cache)) as reg:
        for _ in range(3):
            reg.load("walk", alias="prod")
            reg.load("walk", 1)
    assert {p: p.stat().st_mtime_ns for p in _record_files(cache)} == before


def test_a_tampered_record_is_an_integrity_error(sqlite_url, s3_bucket, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    loaded = _record_online(sqlite_url, f"{s3_bucket}/m", cache)
    _cut_off_s3(s3_bucket, monkeypatch)
    reg = Registry(sqlite_url, cache_dir=str(cache), offline=True)
    records = reg._offline_cache.records
    path = Path(records.path(["version", reg._offline_cache.db, "walk", 1]))
    original = path.read_bytes()

    # a record's bytes changed (the spec's hidden size): its content no longer matches its digest
    path.write_bytes(original.replace(b'"hidden":4', b'"hidden":5'))
    with pytest.raises(registry.IntegrityError, match="damaged cache record .*content hashes to"):
        reg.load("walk", 1)
    # another valid record (version 3's) copied over version 1's
    path.write_bytes(Path(records.path(["version", reg._offline_cache.db, "walk", 3])).read_bytes())
    with pytest.raises(registry.IntegrityError, match="it is the record of version/.*/walk/3, not of version/"):
        reg.load("walk", 1)
    # an alias sighting tampered with
    Path(records.path(["alias", reg._offline_cache.db, "walk", "prod"])).write_bytes(b"{not json")
    with pytest.raises(registry.IntegrityError, match="is not JSON"):
        reg.load("walk@prod")
    path.unlink()  # a record deleted: simply not cached
    with pytest.raises(registry.NotCachedError, match="version 1 is not in the offline cache"):
        reg.load("walk", 1)
    # the control: untouched entries still load
    assert _tensors(reg.load("walk", 3)) == loaded[3]
    reg.close()
    assert all(not p.name.startswith(".tmp-") for p in _record_files(cache))


def test_registry_open_offline_never_connects(tmp_path):
    """Offline, a URL nothing listens on is never dialled: opening is instant and loads say what is missing."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/gone"
    with pytest.raises(registry.DatabaseUnavailableError):  # control: online, the port is closed
        Registry(url, cache_dir=str(tmp_path / "cache"))
    with Registry(url, cache_dir=str(tmp_path / "cache"), offline=True) as reg:
        with pytest.raises(registry.NotCachedError, match="holds nothing|never seen|not in the offline cache"):
            reg.load("walk")
        with pytest.raises(registry.NotCachedError, match="version 1 is not in the offline cache"):
            reg.load("walk", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(registry.OfflineError):
            Registry(url, cache_dir=str(tmp_path / "cache"), offline=True).history("walk")


def test_an_unwritable_cache_never_fails_an_online_load(sqlite_url, local_storage_url, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    with Registry(sqlite_url, local_storage_url, cache_dir=str(blocker)) as reg:
        reg.snapshot("walk", toys.spec(hidden=4).build())
        with caplog.at_level("DEBUG", logger="registry.offline"):
            for _ in range(3):
                reg.load("walk", 1)
    warned = [r for r in caplog.records if r.name == "registry.offline" and r.levelname == "WARNING"]
    assert len(warned) == 1 and "could not be recorded" in warned[0].getMessage()


def test_a_load_records_again_what_was_removed_from_the_cache(sqlite_url, local_storage_url, tmp_path):
    """A load that read the very same row as the one before skips recording it again only while the
    records it put are still there (a pruned cache is written again at the next load)."""
    cache = tmp_path / "cache"
    with Registry(sqlite_url, local_storage_url, cache_dir=str(cache)) as reg:
        reg.snapshot("walk", toys.spec(hidden=4).build())
        reg.set_alias("walk", "prod", 1)
        reg.load("walk", alias="prod")
        recorded = {p: p.read_bytes() for p in _record_files(cache)}
        assert len(recorded) == 4  # version 1, prod, latest, where the objects live
        for path in recorded:
            path.unlink()
            reg.load("walk", alias="prod")
            assert path.exists()
        assert {p: p.read_bytes() for p in _record_files(cache)}.keys() == recorded.keys()


def test_sightings_are_refreshed_once_due_while_the_row_is_kept(sqlite_url, local_storage_url, tmp_path,
                                                                monkeypatch):
    from registry import offline

    cache = tmp_path / "cache"
    with Registry(sqlite_url, local_storage_url, cache_dir=str(cache)) as reg:
        reg.snapshot("walk", toys.spec(hidden=4).build())
        reg.set_alias("walk", "prod", 1)
        reg.load("walk", alias="prod")
        times = {p: p.stat().st_mtime_ns for p in _record_files(cache)}
        reg.load("walk", alias="prod")
        assert {p: p.stat().st_mtime_ns for p in _record_files(cache)} == times  # nothing due: nothing written
        monkeypatch.setattr(offline, "SIGHTING_REFRESH", 0.0)
        reg.load("walk", alias="prod")
        changed = [p for p in _record_files(cache) if p.stat().st_mtime_ns != times[p]]
        assert len(changed) == 2 and all('"seen_at"' in p.read_text() for p in changed)  # prod and latest


def test_a_sighting_another_process_rewrote_is_checked_again(sqlite_url, local_storage_url, tmp_path):
    """The next load reads a sighting changed on disk since it recorded it, and records its own again."""
    from storage.records import RecordCache

    cache = tmp_path / "cache"
    with Registry(sqlite_url, local_storage_url, cache_dir=str(cache)) as reg:
        reg.snapshot("walk", toys.spec(hidden=4).build())
        reg.set_alias("walk", "prod", 1)
        reg.load("walk", alias="prod")
        key = ["alias", reg._offline_cache.db, "walk", "prod"]
        elsewhere = RecordCache(str(cache / "offline"))  # another process, reading an older database
        elsewhere.put(key, {"version": 99, "seen_at": "2026-01-01T00:00:00+00:00"})
        reg.load("walk", alias="prod")
        assert RecordCache(str(cache / "offline")).get(key)["version"] == 1


def test_only_reads_the_registry_keeps_are_remembered(tmp_path):
    from registry import offline

    oc = offline.OfflineCache(str(tmp_path), "sqlite:////nowhere/rlreg.db", "here")

    class Row:
        name, version, manifest, state, metadata, spec_digest = "m", 1, {}, {}, {}, "d"
        created_at, tensor_bytes, position, actor, tags, description = None, 0, 1, None, {}, None

    oc.remember(Row(), {}, (), True, None)  # e.g. PostgreSQL: every read is a new row
    assert oc._recorded == {}
    oc.remember(Row(), {}, (), True, None, kept=True)
    assert list(oc._recorded) == [("m", 1)]


def test_record_paths_of_equal_but_differently_typed_keys_stay_apart(tmp_path):
    from storage.records import RecordCache

    cache = RecordCache(str(tmp_path))
    assert cache.path(["k", True]) != cache.path(["k", 1])
    assert cache.path(["k", 1]) == RecordCache(str(tmp_path)).path(["k", 1])
    assert cache.path(["k", 1.0]) == RecordCache(str(tmp_path)).path(["k", 1.0])
