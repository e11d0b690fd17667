"""gc's review fixes (SQLite and PostgreSQL): a registry that never recorded an object does not collect a
storage holding some; a revive after gc collected the object again; retention ends with its model; an
interrupted gc's ``deleting`` rows are settled; a dry run previews retention; grace and version bounds."""

from __future__ import annotations

import copy
import datetime as dt
import os
import threading
import time
from pathlib import Path

import pytest
import registry_toys as toys
import sqlalchemy as sa
import storage

from registry import InvalidEventError, InvalidNameError, NotFoundError, Registry, StorageMismatchError
from registry import gc as collector
from registry.eventstore import NewEvent
from registry.schema import objects

NOW = dt.timedelta(0)
TICK = 0.05  # an object's storage mtime (the kernel's coarse clock) against the database clock: see test_registry_gc


def _objects(reg, name, version):
    return set(storage.manifest_objects(reg.manifest(name, version)))


def _rows(reg, digests):
    with reg.event_store.engine.connect() as conn:
        return {r.digest: r for r in conn.execute(sa.select(objects).where(objects.c.digest.in_(sorted(digests))))}


# --- 1. a registry that never recorded an object refuses to collect a storage that holds some ----------


def _age(folder, days: float = 2) -> None:
    """Make every file under ``folder`` look stored ``days`` ago (a registry in use for a while)."""
    then = time.time() - days * 86400
    for path in Path(folder).rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def test_gc_refuses_a_storage_holding_objects_its_registry_never_recorded(make_registry, local_storage_url, tmp_path):
    """A new, empty registry (what a mistyped database URL opens) given another registry's storage: gc
    would delete every object there older than the grace. Both the API and ``collect`` refuse, dry run too.
    (Objects younger than the registry are its own first snapshot's: test_registry_gc's stalled writer.)"""
    with Registry(f"sqlite:///{tmp_path / 'owner.db'}", local_storage_url) as owner:
        owner.snapshot("pol", toys.spec(hidden=16).build())
        theirs = set(owner.store.list_digests())
    _age(local_storage_url)
    stranger = make_registry(local_storage_url)  # this test's database (SQLite or PostgreSQL): no events
    for run in (lambda: stranger.gc(grace=NOW), lambda: stranger.gc(grace=NOW, dry_run=True),
                lambda: collector.collect(stranger, grace=NOW)):
        with pytest.raises(StorageMismatchError, match=r"has never recorded an object, but its storage .* holds \d+ object"):
            run()
    assert set(stranger.store.list_digests()) == theirs
    with Registry(f"sqlite:///{tmp_path / 'owner.db'}", local_storage_url) as owner:
        assert owner.verify()["ok"]


def test_a_registry_that_recorded_only_deleted_versions_still_collects(reg):
    """The refusal is only for a registry that never recorded an object: one whose versions are all deleted
    (rows ``deleted`` by an earlier gc, versions kept in the log) collects as before."""
    reg.snapshot("pol", toys.spec(hidden=16).build())
    reg.delete_model("pol", reason="done")
    time.sleep(TICK)
    assert reg.gc(grace=NOW).reclaimed_objects == 1
    assert reg.gc(grace=NOW).reclaimed_objects == 0


# --- 6. the grace period is bounded ----------------------------------------------------------------------


def test_a_grace_past_ten_years_is_refused(reg):
    for grace in (dt.timedelta(days=800_000), dt.timedelta.max, dt.timedelta(days=3651), -dt.timedelta(seconds=1)):
        with pytest.raises(InvalidEventError, match="grace must be a timedelta from 0 to 3650 days"):
            reg.gc(grace=grace)  # (800,000 days: the cutoff would fall before year 1, an OverflowError)
    assert reg.gc(grace=dt.timedelta(days=3650)).reclaimed_objects == 0


# --- 2. revive: a row gc collected again since the writer looked at storage --------------------------------


def test_a_revive_does_not_flip_a_row_gc_collected_again_after_the_writer_looked_at_storage(make_registry):
    """The row is ``deleted`` (gc reclaimed the object), the object was stored again by a snapshot that died
    before its append. A writer of the same bytes finds the row ``deleted`` and the object stored; a whole gc
    (tombstone, delete, finish) runs before its revive. The revive must not turn the row ``live`` (it would
    name a deleted object): the tombstone starts a new generation, revive sees it and looks again."""
    reg, other = make_registry(), make_registry()
    module = toys.spec(hidden=64).build()
    reg.snapshot("pol", module)
    reg.delete_version("pol", 1, reason="old")
    time.sleep(TICK)
    assert other.gc(grace=NOW).reclaimed_objects == 1  # the row is now 'deleted'
    from registry import api

    tensors, _ = api._split_checked("pol", module)
    reg.store.put(tensors)  # stored again by a writer killed before its append
    time.sleep(TICK)
    real_exists, collected = reg.store.exists, []

    def exists_then_gc(digests):
        found = real_exists(digests)
        if not collected:  # gc's whole cycle lands between the writer's look at storage and its revive
            collected.append(other.gc(grace=NOW).reclaimed_objects)
        return found

    reg.store.exists = exists_then_gc
    version = reg.snapshot("pol", module)
    reg.store.exists = real_exists
    assert collected == [1]  # gc did delete the object after the writer found it stored...
    assert reg.verify()["ok"]  # ...and the writer stored it again before its version committed
    assert toys.states_equal(reg.load("pol", version.version), module)
    rows = _rows(reg, _objects(reg, "pol", version.version))
    # tombstone (1), deleted; tombstone (2), deleted; revived (3)
    assert [(r.state, r.generation) for r in rows.values()] == [("live", 3)]


# --- 3. a model's deletion ends its retention policy ---------------------------------------------------


def test_deleting_a_model_ends_its_retention_policy(reg):
    module = toys.spec().build()
    for step in range(3):
        toys.train_step(module, step)
        reg.snapshot("pol", module)
    reg.set_retention("pol", keep_last=1)
    reg.delete_model("pol", reason="start over")
    for step in range(3):
        toys.train_step(module, 10 + step)
        reg.snapshot("pol", module)  # the model made again under the name
    assert [v.version for v in reg.versions("pol")] == [4, 5, 6]
    assert reg.retention("pol") is None
    reg.gc(grace=NOW)  # gc applies every policy: none is left for 'pol'
    assert [v.version for v in reg.versions("pol")] == [4, 5, 6]
    with pytest.raises(NotFoundError, match="has no retention policy to clear"):
        reg.clear_retention("pol")
    live = reg.projection_rows()
    assert not live["rlreg_retention"]
    reg.rebuild_projections()
    assert reg.projection_rows() == live


def test_a_log_that_cleared_a_policy_after_its_model_was_deleted_still_replays(reg):
    """Before deletion ended policies, a policy outlived ``ModelDeleted`` and could be cleared on the model
    made again: ``[RetentionSet, ModelDeleted, ..., RetentionCleared]``. That clear finds no policy now; it
    clears nothing (appended, or replayed by a rebuild) rather than fail. Without a deletion before it a
    clear of no policy is still refused by the projection."""
    module = toys.spec().build()
    reg.snapshot("pol", module)
    reg.set_retention("pol", keep_last=1)
    reg.delete_model("pol", reason="start over")
    reg.snapshot("pol", module)
    stream = reg.event_store.stream_version("pol")
    reg.event_store.append("pol", [NewEvent("RetentionCleared", {})], expected_version=stream)  # the old log's
    live = reg.projection_rows()
    reg.rebuild_projections()
    assert reg.projection_rows() == live
    with pytest.raises(NotFoundError, match="has no retention policy to clear"):
        reg.event_store.append("pol", [NewEvent("RetentionCleared", {})], expected_version=stream + 1)


# --- 4. deleting rows an interrupted gc left ------------------------------------------------------------


@pytest.fixture
def interrupted(reg, monkeypatch):
    """Version 1 deleted just now (its objects only its own), a gc with a 0 grace interrupted between its
    tombstone and its finish (``store.delete`` fails after deleting ``deleted_first`` objects)."""
    monkeypatch.setattr(collector, "ATTEMPTS", 3)  # a write waiting on 'deleting' rows gives up soon

    def run(deleted_first: int = 0):
        module = toys.spec(hidden=8192).build()  # three objects: two large tensors alone, a pack of the rest
        reg.snapshot("pol", module, {"v": 1})
        saved = copy.deepcopy(module)
        toys.train_step(module, 1)
        reg.snapshot("pol", module, {"v": 2})
        only_v1 = _objects(reg, "pol", 1) - _objects(reg, "pol", 2)
        reg.delete_version("pol", 1, reason="oops")
        time.sleep(TICK)
        real_delete = reg.store.delete

        def interrupted_delete(digests):
            real_delete(sorted(digests)[:deleted_first])
            raise KeyboardInterrupt("Ctrl-C during gc's storage delete")

        reg.store.delete = interrupted_delete
        with pytest.raises(KeyboardInterrupt):
            reg.gc(grace=NOW)
        reg.store.delete = real_delete
        assert len(only_v1) == 3 and {r.state for r in _rows(reg, only_v1).values()} == {"deleting"}
        return only_v1, saved

    return run


def test_gc_brings_back_the_whole_objects_an_interrupted_gc_was_deleting(reg, interrupted):
    """A later default gc (24 h grace: version 1, deleted just now, is kept) turns the rows ``live`` again:
    the version can be restored, and a snapshot of the same bytes commits."""
    only_v1, saved = interrupted()
    before = {d: r.generation for d, r in _rows(reg, only_v1).items()}
    assert reg.gc().reclaimed_objects == 0
    assert {d: (r.state, r.generation) for d, r in _rows(reg, only_v1).items()} == {
        d: ("live", g + 1) for d, g in before.items()}
    reg.restore_version("pol", 1)
    assert reg.verify()["ok"]
    assert toys.states_equal(reg.load("pol", 1), saved)
    reg.snapshot("again", saved)  # a writer of the same bytes is not held up by the rows either


def test_gc_finishes_deleting_the_objects_an_interrupted_gc_removed_and_restore_says_so(reg, interrupted):
    only_v1, _ = interrupted(deleted_first=1)
    gone = min(only_v1)
    reg.gc()
    states = {d: r.state for d, r in _rows(reg, only_v1).items()}
    assert states == {d: "deleted" if d == gone else "live" for d in only_v1}
    with pytest.raises(NotFoundError, match=f"cannot restore model 'pol' version 1: 1 of its .* objects were "
                                            f"reclaimed by gc \\(e.g. {gone}\\); it stays deleted"):
        reg.restore_version("pol", 1)
    reg.snapshot("pol", toys.spec(hidden=8192).build())  # writers are not held up by the rows any more
    assert reg.verify()["ok"]


def test_collecting_gcs_run_one_at_a_time(make_registry):
    """A ``deleting`` row a collecting gc reads must be an interrupted gc's, not one another gc is deleting
    right now (turning that one ``live`` would race its delete): a second collecting gc waits for the first."""
    reg, other, third = make_registry(), make_registry(), make_registry()
    reg.snapshot("pol", toys.spec(hidden=16).build())
    done = []
    with collector._collecting(reg):
        waiting = threading.Thread(target=lambda: done.append(other.gc(grace=NOW)))
        waiting.start()
        waiting.join(0.5)
        assert not done  # still waiting for the lock
        assert third.gc(dry_run=True).dry_run  # a dry run changes nothing: it does not wait
    waiting.join(30)
    assert len(done) == 1


# --- 5. gc --dry-run previews retention ---------------------------------------------------------------


@pytest.mark.parametrize("grace", [NOW, collector.DEFAULT_GRACE])
def test_a_dry_run_previews_what_retention_would_delete(reg, grace):
    module = toys.spec().build()
    for step in range(3):
        toys.train_step(module, step)
        reg.snapshot("pol", module)
    reg.set_alias("pol", "prod", 1)
    reg.set_retention("pol", keep_last=1)  # keeps 1 (aliased) and 3
    reg.remove_alias("pol", "prod")  # 1 is no longer kept: gc's retention deletes it
    time.sleep(TICK)
    head = reg.head()
    dry = reg.gc(grace=grace, dry_run=True)
    assert reg.head() == head and [v.version for v in reg.versions("pol")] == [1, 3]
    real = reg.gc(grace=grace)
    assert dry.retention_deleted == real.retention_deleted == {"pol": [1]}
    assert (dry.reclaimed_objects, dry.reclaimed_bytes, sorted(dry.reclaimed)) == (
        real.reclaimed_objects, real.reclaimed_bytes, sorted(real.reclaimed))
    assert real.reclaimed_objects == (2 if grace == NOW else 0)  # versions 1 and 2 (deleted by set_retention)


# --- 7. restore and delete of a version past 2^63 - 1 -----------------------------------------------------


def test_versions_past_the_integer_range_are_refused(reg):
    reg.snapshot("pol", toys.spec(hidden=16).build())
    for call in (lambda: reg.restore_version("pol", 10**20), lambda: reg.delete_version("pol", 2**63, reason="x")):
        with pytest.raises(InvalidNameError, match="version .* is out of range: expected 1 to"):
            call()
