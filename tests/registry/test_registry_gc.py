"""gc: what it reclaims and keeps, leftovers of interrupted writes, a writer stalled past the grace period."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
import registry_toys as toys
import storage

from registry import NotFoundError

NOW = dt.timedelta(0)
# An object without a live row is aged by its storage mtime (the kernel's coarse clock) against the
# database clock (milliseconds): one written in the millisecond gc starts is not older than a zero grace.
TICK = 0.05


def _objects(reg, name, version):
    return set(storage.manifest_objects(reg.manifest(name, version)))


@pytest.fixture(params=["local", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def any_storage(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "blobs")
    if request.param == "memory":
        return f"memory://gc-{os.getpid()}/blobs"
    return request.getfixturevalue("s3_bucket") + "/blobs"


def test_gc_keeps_what_is_referenced_or_young_and_reclaims_the_rest(make_registry, any_storage):
    reg = make_registry(any_storage)
    module = toys.spec(hidden=64).build()
    for step in (1, 2, 3):
        toys.train_step(module, step)
        reg.snapshot("pol", module)
    only_v1 = _objects(reg, "pol", 1) - _objects(reg, "pol", 2) - _objects(reg, "pol", 3)
    assert only_v1
    reg.delete_version("pol", 1, reason="old")
    young = reg.gc()  # 24 h grace: v1 was deleted just now, its objects are kept for restore_version
    assert young.reclaimed_objects == 0 and young.kept_objects == young.examined_objects == len(reg.store.list_digests())
    dry = reg.gc(grace=NOW, dry_run=True)
    assert set(dry.reclaimed) == only_v1 and set(reg.store.list_digests()) >= only_v1
    report = reg.gc(grace=NOW)
    assert set(report.reclaimed) == only_v1
    assert report.reclaimed_bytes == dry.reclaimed_bytes > 0
    assert report.kept_objects == report.examined_objects - len(only_v1)
    assert not only_v1 & set(reg.store.list_digests())  # listed from the storage itself (the bucket on S3)
    assert reg.verify()["ok"]
    for v in (2, 3):
        reg.load("pol", v)
    with pytest.raises(NotFoundError, match="cannot restore model 'pol' version 1: .* reclaimed by gc"):
        reg.restore_version("pol", 1)
    assert reg.gc(grace=NOW).reclaimed_objects == 0


def test_gc_applies_retention_and_deleted_model_objects_go(make_registry):
    reg = make_registry()
    module = toys.spec().build()
    for step in range(4):
        toys.train_step(module, step)
        reg.snapshot("pol", module)
    reg.set_alias("pol", "prod", 1)
    reg.set_retention("pol", keep_last=1)
    assert [v.version for v in reg.versions("pol")] == [1, 4]
    reg.remove_alias("pol", "prod")
    reg.snapshot("other", toys.spec(hidden=5).build())
    others = _objects(reg, "other", 1)
    reg.delete_model("other", reason="junk")
    report = reg.gc(grace=NOW)
    assert report.retention_deleted == {"pol": [1]}
    assert not others & set(reg.store.list_digests())
    assert set(reg.store.list_digests()) == _objects(reg, "pol", 4)


def test_gc_removes_old_temp_files_only(make_registry, tmp_path):
    reg = make_registry()
    reg.snapshot("pol", toys.spec().build())
    folder = tmp_path / "blobs" / "objects" / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    old, new = folder / ".tmp-killed-writer", folder / ".tmp-running-writer"
    old.write_bytes(b"x" * 100)
    new.write_bytes(b"y")
    past = (dt.datetime.now() - dt.timedelta(hours=30)).timestamp()
    os.utime(old, (past, past))
    report = reg.gc()
    assert (report.leftovers_examined, report.leftovers_reclaimed, report.leftover_bytes_reclaimed) == (2, 1, 100)
    assert not old.exists() and new.exists()
    assert reg.verify()["ok"]
    # with no grace too, a temporary file younger than an hour may be a write in flight: kept (a gc with grace
    # 0 removed a running snapshot's before its rename, and the snapshot failed with "not found")
    minutes_ago = (dt.datetime.now() - dt.timedelta(minutes=50)).timestamp()
    os.utime(new, (minutes_ago, minutes_ago))
    assert reg.gc(grace=NOW).leftovers_reclaimed == 0 and new.exists()
    hours_ago = (dt.datetime.now() - dt.timedelta(minutes=70)).timestamp()
    os.utime(new, (hours_ago, hours_ago))
    assert reg.gc(grace=NOW).leftovers_reclaimed == 1 and not new.exists()


@pytest.mark.s3
def test_gc_aborts_incomplete_multipart_uploads(make_registry, s3_bucket, s3_server):
    import boto3

    reg = make_registry(s3_bucket + "/blobs")
    reg.snapshot("pol", toys.spec().build())
    client = boto3.client("s3", endpoint_url=s3_server)
    bucket = s3_bucket[len("s3://"):]
    upload = client.create_multipart_upload(Bucket=bucket, Key="blobs/objects/ab/abandoned")
    client.upload_part(Bucket=bucket, Key="blobs/objects/ab/abandoned", UploadId=upload["UploadId"], PartNumber=1, Body=b"z" * 10)
    report = reg.gc(grace=NOW)  # (moto reports every upload as initiated in 2010: no "young" case here)
    assert report.leftovers_reclaimed == 1
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_writer_stalled_past_the_grace_reuploads(make_registry):
    """gc runs between a snapshot's upload and its commit and deletes the fresh objects: the writer re-uploads."""
    reg, other = make_registry(), make_registry()
    module = toys.spec(hidden=64).build()
    real_put = reg.store.begin_put
    collected = []

    def put_then_stall(tensors, **kwargs):
        put = real_put(tensors, **kwargs)
        put.wait()  # stored, not yet committed
        if not collected:
            collected.append(other.gc(grace=NOW))  # as if this writer slept past the grace period here
        return put

    reg.store.begin_put = put_then_stall
    version = reg.snapshot("pol", module)
    assert collected[0].reclaimed_objects > 0  # gc did delete this snapshot's objects...
    assert reg.verify()["ok"]  # ...and the writer stored them again before its version committed
    assert toys.states_equal(reg.load("pol", version.version), module)


def test_control_without_the_protocol_a_version_names_deleted_objects(make_registry):
    """The checks can fail: an append that skips the touch protocol commits a version verify reports broken."""
    reg, other = make_registry(), make_registry()
    module = toys.spec(hidden=64).build()
    reg.snapshot("pol", module)
    toys.train_step(module, 1)
    real_append = reg._append_with_retry

    def append_without_check(name, make_events, check=None, before_commit=None):
        if before_commit is not None:  # (the snapshot's append, not a retention run after it)
            before_commit()  # the objects are stored...
        other.gc(grace=NOW)  # ...and gc deletes them: nothing references them yet
        return real_append(name, make_events)  # no check in the append: the bug the protocol prevents

    reg._append_with_retry = append_without_check
    reg.snapshot("pol", module)
    report = reg.verify()
    assert not report["ok"] and "pol/2" in report["missing"]


def test_an_object_stored_again_by_a_writer_that_died_before_touching_it_is_collected(make_registry):
    reg = make_registry()
    module = toys.spec(hidden=64).build()
    reg.snapshot("pol", module)
    tensors = {"w": module.net[0].weight.detach().clone()}
    gone = set(storage.manifest_objects(reg.store.put(tensors)))
    time.sleep(TICK)
    assert set(reg.gc(grace=NOW).reclaimed) == gone  # its row is now 'deleted'
    reg.store.put(tensors)  # stored again; the writer is killed before its touch
    time.sleep(TICK)
    assert set(reg.gc(grace=NOW).reclaimed) == gone
    assert reg.verify()["ok"]


def _rows(reg, digests):
    import sqlalchemy as sa

    from registry.schema import objects

    with reg.event_store.engine.connect() as conn:
        return {r.digest: r for r in conn.execute(sa.select(objects).where(objects.c.digest.in_(sorted(digests))))}


def test_a_snapshot_touches_its_objects_in_the_transaction_of_its_append(make_registry, monkeypatch):
    """The common case is one write transaction (one commit, one fsync on SQLite): rows made live and touched."""
    reg = make_registry()
    module = toys.spec(hidden=64).build()
    reg.snapshot("pol", module)
    toys.train_step(module, 1)
    transactions = []
    real = reg.event_store.transaction

    def counted():
        transactions.append(1)
        return real()

    monkeypatch.setattr(reg.event_store, "transaction", counted)
    version = reg.snapshot("pol", module)
    assert len(transactions) == 1
    named = _objects(reg, "pol", version.version)
    rows = _rows(reg, named)
    assert rows and set(rows) == named and all(r.state == "live" and r.generation == 0 for r in rows.values())
    assert {d: r.nbytes for d, r in rows.items()} == {d: reg.store.fs.size(reg.store._path(d)) for d in named}
    assert {r.touched_at for r in rows.values()} <= {max(r.touched_at for r in rows.values())}  # one touch


def test_a_writer_does_not_commit_while_gc_is_deleting_its_objects(make_registry):
    """The tombstone commits between a snapshot's upload and its append: the append waits for gc to end, then
    writes the objects again; no version names an object while it is being deleted."""
    import threading

    from registry import gc as collector

    reg, other = make_registry(), make_registry()
    module = toys.spec(hidden=64).build()
    real_put = reg.store.begin_put
    seen = []

    def put_then_tombstone(tensors, **kwargs):
        put = real_put(tensors, **kwargs)
        manifest = put.wait()  # stored, not yet committed
        if not seen:
            claimed = collector._tombstone(other.event_store, collector.object_sizes(manifest),
                                           dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))

            def finish():
                seen.append(other.exists("pol"))  # nothing committed while the rows were 'deleting'
                collector._finish(other.event_store, claimed, other.store.delete)  # deletes, marks 'deleted'

            threading.Timer(0.3, finish).start()
        return put

    reg.store.begin_put = put_then_tombstone
    version = reg.snapshot("pol", module)
    assert seen == [False]
    assert reg.verify()["ok"]
    rows = _rows(reg, _objects(reg, "pol", version.version))
    # claimed (1: the tombstone made the missing rows and claimed them), deleted, then revived, written again (2)
    assert all(r.state == "live" and r.generation == 2 for r in rows.values())
    assert toys.states_equal(reg.load("pol", version.version), module)


def test_a_writer_killed_between_reviving_and_re_uploading_leaves_no_live_row_for_a_missing_object(make_registry):
    """Writer A finds its objects collected and dies before storing them again; writer B's put had found
    them stored just before gc deleted them. B must not commit a version naming them while they are
    missing: a row turns ``live`` again only once its object is back (``gc.revive``). The control is the
    old order (revive in ``touch``), under which B's one-transaction append trusted the ``live`` row."""
    from registry import gc as collector

    reg = make_registry()
    module = toys.spec(hidden=64).build()
    reg.snapshot("pol", module)
    manifest = reg.manifest("pol", 1)
    reg.delete_version("pol", 1, reason="test", force=True)
    time.sleep(TICK)
    assert set(reg.gc(grace=NOW).reclaimed) == set(storage.manifest_objects(manifest))  # rows now 'deleted'
    sizes = collector.object_sizes(manifest)
    collector.touch(reg.event_store, sizes)  # writer A, killed right after its touch

    real_put = reg.store.put
    calls = []

    def put_found_stored(tensors, **kw):  # B's first put ran before gc deleted the objects: a dedup hit
        calls.append(1)
        return manifest if len(calls) == 1 else real_put(tensors, **kw)

    reg.store.put = put_found_stored  # (a re-upload puts again)
    reg.store.begin_put = lambda tensors, **kw: StoredPut(put_found_stored(tensors, **kw))
    version = reg.snapshot("pol", module)  # writer B
    assert len(calls) == 2  # B re-uploaded what gc had collected
    assert reg.verify()["ok"]
    assert toys.states_equal(reg.load("pol", version.version), module)


class StoredPut:
    """What ``Store.begin_put`` returns when every object was found stored: nothing left to wait for."""

    def __init__(self, manifest: dict) -> None:
        self.manifest = manifest
        self.nbytes = sum(int(t["nbytes"]) for t in manifest["tensors"].values())

    def wait(self) -> dict:
        return self.manifest

    def settle(self) -> None:
        pass
