"""gc's review fixes (SQLite and PostgreSQL): a registry that never recorded an object does not collect a
storage holding some (bound to it when made, or by a move); a revive after gc collected the object again;
retention ends with its model (migration 0007 for read models projected before); gcs running at once, and
an interrupted gc's ``deleting`` rows, finished by the next; a dry run previews retention; grace and version
bounds."""

from __future__ import annotations

import copy
import datetime as dt
import os
import shutil
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
from storage import holders

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


def _written_before_holders(folder) -> None:
    """Make a storage look written by an rlreg from before holder records (``storage.holders``): the
    refusal below is what guards such a storage."""
    shutil.rmtree(Path(folder) / holders.FOLDER)


def test_gc_refuses_a_storage_holding_objects_its_registry_never_recorded(make_registry, local_storage_url, tmp_path):
    """A new, empty registry (what a mistyped database URL opens) given another registry's storage: gc
    would delete every object there older than the grace. Both the API and ``collect`` refuse, dry run too.
    (Objects younger than the registry are its own first snapshot's: test_registry_gc's stalled writer.)"""
    with Registry(f"sqlite:///{tmp_path / 'owner.db'}", local_storage_url) as owner:
        owner.snapshot("pol", toys.spec(hidden=16).build())
        theirs = set(owner.store.list_digests())
    _age(local_storage_url)
    _written_before_holders(local_storage_url)
    stranger = make_registry(local_storage_url)  # this test's database (SQLite or PostgreSQL): no events
    for run in (lambda: stranger.gc(grace=NOW), lambda: stranger.gc(grace=NOW, dry_run=True),
                lambda: collector.collect(stranger, grace=NOW)):
        with pytest.raises(StorageMismatchError, match=r"has never recorded an object, but its storage .* holds \d+ object"):
            run()
    assert set(stranger.store.list_digests()) == theirs
    with Registry(f"sqlite:///{tmp_path / 'owner.db'}", local_storage_url) as owner:
        assert owner.verify()["ok"]


def _backdate_events(reg, days: float) -> None:
    """Make every event of ``reg`` look recorded ``days`` earlier (a registry made, and bound, long ago),
    past the log's append-only guard."""
    engine = reg.event_store.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            triggers = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'rlreg_events'").all()
            for name, _ in triggers:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
            conn.exec_driver_sql(f"UPDATE rlreg_events SET timestamp = datetime(timestamp, '-{days} days')")
            for _, sql in triggers:
                conn.exec_driver_sql(sql)
        else:
            conn.exec_driver_sql("ALTER TABLE rlreg_events DISABLE TRIGGER USER")
            conn.exec_driver_sql(f"UPDATE rlreg_events SET timestamp = timestamp - interval '{days} days'")
            conn.exec_driver_sql("ALTER TABLE rlreg_events ENABLE TRIGGER USER")


def test_gc_refuses_the_storage_an_empty_registry_made_long_ago_was_moved_onto(make_registry, tmp_path):
    """A registry made 30 days ago and left empty is moved (``rlreg storage move``: no version needs any object,
    so the move checks nothing) onto a storage another registry has used for 2 days. Its objects are younger
    than the registry but older than the move that bound it there: gc refuses them, dry run too. (e44cd5f
    dated them from the registry's first event, and the default gc deleted the other registry's objects.)"""
    team = str(tmp_path / "team-blobs")
    with Registry(f"sqlite:///{tmp_path / 'owner.db'}", team) as owner:
        owner.snapshot("pol", toys.spec(hidden=16).build())
        theirs = set(owner.store.list_digests())
    _age(team, days=2)
    _written_before_holders(team)
    mine = make_registry(str(tmp_path / "mine-blobs"))  # this test's database: bound to its own folder
    _backdate_events(mine, days=30)
    mine.move_storage(team)
    for run in (lambda: mine.gc(), lambda: mine.gc(dry_run=True), lambda: mine.gc(grace=NOW)):
        with pytest.raises(StorageMismatchError, match=r"has never recorded an object, but its storage .* holds \d+ "
                                                       r"object\(s\) stored before the registry was bound to it"):
            run()
    assert set(mine.store.list_digests()) == theirs
    with Registry(f"sqlite:///{tmp_path / 'owner.db'}", team) as owner:
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


def test_migration_0007_ends_the_policies_models_deleted_before_the_rule_kept(reg):
    """Read models projected before ``ModelDeleted`` ended policies still hold a deleted model's policy: the
    writer (and gc) applied it to the model made again, and a rebuild disagreed with them. Revision 0007
    deletes such a policy, and only it: a policy set again after the deletion, or of a model never deleted,
    stays; afterwards the read models are what a rebuild makes."""
    from registry import db
    from registry.schema import retention

    module = toys.spec().build()

    def snapshot(name, step):
        toys.train_step(module, step)
        return reg.snapshot(name, module).version

    for name, keep in (("pol", 1), ("again", 5), ("kept", 5)):
        snapshot(name, 0)
        snapshot(name, 1)
        reg.set_retention(name, keep_last=keep)
    old_rows = {r["name"]: r for r in reg.projection_rows()["rlreg_retention"]}
    for name in ("pol", "again"):
        reg.delete_model(name, reason="start over")
        snapshot(name, 2)  # made again
    reg.set_retention("again", keep_last=2)
    # The read models as the projection before the rule left them: the deleted model's policy still there.
    with reg.event_store.engine.begin() as conn:
        conn.execute(retention.insert().values(**old_rows["pol"]))
    snapshot("pol", 3)
    assert [v.version for v in reg.versions("pol")] == [4]  # the old policy applied to the model made again
    assert reg.retention("pol") is not None
    with reg.event_store.engine.begin() as conn:  # back at 0006, as such a registry is
        conn.exec_driver_sql("DROP INDEX ix_rlreg_events_stream_position")  # (0008's)
        conn.exec_driver_sql("ALTER TABLE rlreg_retention DROP COLUMN restored")  # (0010's)
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0006_sqlite_rowid_log'")
    assert reg.upgrade_schema().current == db.head_revision() == "0010_retention_keeps_restored"
    assert reg.retention("pol") is None
    assert reg.retention("again")["keep_last"] == 2 and reg.retention("kept")["keep_last"] == 5
    live = reg.projection_rows()
    reg.rebuild_projections()
    assert reg.projection_rows() == live
    snapshot("pol", 4)
    assert [v.version for v in reg.versions("pol")] == [4, 5]  # no policy any more


# --- 4. gcs at once, and the deleting rows an interrupted gc left ----------------------------------------


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


@pytest.mark.parametrize("deleted_first", [0, 1])
def test_the_next_gc_finishes_what_an_interrupted_gc_was_deleting_and_restore_says_so(reg, interrupted, deleted_first):
    """The rows stay ``deleting`` (writers and restore are held) until a gc claims them again; even a default gc
    (24 h grace: version 1, deleted just now, is kept) deletes what is left and finishes them: no row an
    interrupted gc condemned turns ``live`` again (that gc may still be running: module docstring, 4). A
    restore then says the objects were reclaimed, and a snapshot of the same weights stores them again."""
    only_v1, saved = interrupted(deleted_first)
    before = {d: r.generation for d, r in _rows(reg, only_v1).items()}
    held = ("1 of its \\d+ objects were reclaimed by gc" if deleted_first
            else "gc kept collecting the objects .* run `rlreg gc` to finish the collection an interrupted gc left")
    with pytest.raises(NotFoundError, match=f"cannot restore model 'pol' version 1: .*{held}"):
        reg.restore_version("pol", 1)
    assert set(reg.gc().reclaimed) == only_v1 - set(sorted(only_v1)[:deleted_first])  # what storage still held
    assert {d: (r.state, r.generation) for d, r in _rows(reg, only_v1).items()} == {
        d: ("deleted", g + 1) for d, g in before.items()}  # claimed again (a generation), finished
    assert not only_v1 & set(reg.store.list_digests())
    with pytest.raises(NotFoundError, match="cannot restore model 'pol' version 1: 3 of its \\d+ objects were "
                                            "reclaimed by gc .*; it stays deleted"):
        reg.restore_version("pol", 1)
    version = reg.snapshot("again", saved)  # writers are not held up by the rows any more: stored again
    assert reg.verify()["ok"]
    assert toys.states_equal(reg.load("again", version.version), saved)


class _Pausing:
    """gc runs, each in a thread of its own, paused right after its tombstone (its claim) until resumed."""

    def __init__(self, monkeypatch) -> None:
        self.paused: dict[int, threading.Event] = {}
        self.resumed: dict[int, threading.Event] = {}
        real = collector._tombstone

        def tombstone(event_store, batch, cutoff, *more):
            claimed = real(event_store, batch, cutoff, *more)
            key = id(event_store)
            if key in self.paused and not self.paused[key].is_set():
                self.paused[key].set()
                assert self.resumed[key].wait(60), "never resumed"
            return claimed

        monkeypatch.setattr(collector, "_tombstone", tombstone)

    def start(self, reg, grace=NOW) -> tuple[threading.Thread, list]:
        """Start ``reg.gc(grace=grace)``; return (its thread, [its report] once done) when it has claimed."""
        key = id(reg.event_store)
        self.paused[key], self.resumed[key] = threading.Event(), threading.Event()
        report: list = []
        thread = threading.Thread(target=lambda: report.append(reg.gc(grace=grace)), daemon=True)
        thread.start()
        assert self.paused[key].wait(30), "gc did not claim anything"
        return thread, report

    def resume(self, reg) -> None:
        self.resumed[id(reg.event_store)].set()

    def resume_all(self) -> None:
        for event in self.resumed.values():
            event.set()


@pytest.fixture
def deleted_v1(make_registry):
    """Version 1 (its objects its own) deleted just now; returns (registry, version 1's objects, its weights)."""
    reg = make_registry()
    module = toys.spec(hidden=64).build()
    reg.snapshot("pol", module)
    saved = copy.deepcopy(module)
    toys.train_step(module, 1)
    reg.snapshot("pol", module)
    only_v1 = _objects(reg, "pol", 1) - _objects(reg, "pol", 2)
    assert only_v1
    reg.delete_version("pol", 1, reason="oops")
    time.sleep(TICK)
    return reg, only_v1, saved


@pytest.mark.parametrize("grace", [NOW, collector.DEFAULT_GRACE])
def test_a_gc_paused_after_its_tombstone_does_not_delete_what_a_writer_stored_again_since(
        make_registry, monkeypatch, deleted_v1, grace):
    """gc1 claims version 1's objects and pauses (a slow or stopped process: nothing makes other gcs wait for
    it); gc2 runs to the end: it claims them again, deletes and finishes them; a writer snapshots the same
    weights (stores them again, turns the rows live, commits); gc1 resumes. Its claim is no longer the latest:
    it deletes nothing, and every live version loads. (With e44cd5f's code and its gc lock not held, as with a
    ``file:`` URI, a dropped PostgreSQL session or a gc of the release before: gc2 turned the rows live again,
    24 h grace, or finished them, 0 grace; either way gc1 then deleted the objects of the committed version.)"""
    reg, only_v1, saved = deleted_v1
    other, writer = make_registry(), make_registry()
    pausing = _Pausing(monkeypatch)
    try:
        gc1, first = pausing.start(reg)
        assert {r.state for r in _rows(reg, only_v1).values()} == {"deleting"}
        second: list = []
        gc2 = threading.Thread(target=lambda: second.append(other.gc(grace=grace)), daemon=True)
        gc2.start()
        gc2.join(30)
        assert second, "gc2 waited for gc1"
        version = writer.snapshot("pol", saved)  # the same weights as version 1
    finally:
        pausing.resume_all()
    gc1.join(60)
    assert writer.verify()["ok"]
    for v in writer.versions("pol"):
        writer.load("pol", v.version)
    assert toys.states_equal(writer.load("pol", version.version), saved)
    assert set(second[0].reclaimed) == only_v1 and first[0].reclaimed_objects == 0  # gc1 deleted nothing
    assert {r.state for r in _rows(reg, only_v1).values()} == {"live"}


def test_a_gc_whose_claim_another_gc_took_over_leaves_the_rows_to_it(make_registry, monkeypatch, deleted_v1):
    """Both gcs pause after their tombstones: gc2's claims the rows gc1 claimed (a new generation). gc1 resumes
    first: its claim is stale, so it neither deletes the objects nor finishes the rows; a writer of the same
    weights waits for the rows (``deleting``) while gc2 resumes, deletes and finishes them, then stores the
    objects again and commits. (e44cd5f: gc1 finished the rows, the writer committed on them, and gc2 deleted
    the objects and marked the live rows deleted.)"""
    reg, only_v1, saved = deleted_v1
    other, writer = make_registry(), make_registry()
    pausing = _Pausing(monkeypatch)

    def generations():
        return {d: r.generation for d, r in _rows(reg, only_v1).items()}

    try:
        gc1, first = pausing.start(reg)
        claimed_by_gc1 = generations()
        gc2, second = pausing.start(other)
        claimed_by_gc2 = generations()  # claimed again, though gc1's claim is not finished
        pausing.resume(reg)
        gc1.join(30)
        after_gc1 = (only_v1 <= set(reg.store.list_digests()), {r.state for r in _rows(reg, only_v1).values()})
        threading.Timer(0.3, pausing.resume, [other]).start()  # gc2 resumes while the writer waits
        version = writer.snapshot("pol", saved)
    finally:
        pausing.resume_all()
    gc2.join(60)
    assert writer.verify()["ok"]
    assert toys.states_equal(writer.load("pol", version.version), saved)
    assert claimed_by_gc2 == {d: g + 1 for d, g in claimed_by_gc1.items()}
    assert first[0].reclaimed_objects == 0 and after_gc1 == (True, {"deleting"})  # gc1 left it all to gc2
    assert set(second[0].reclaimed) == only_v1
    assert {r.state for r in _rows(reg, only_v1).values()} == {"live"}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # a server-side timeout: PostgreSQL's
def test_a_server_idle_timeout_does_not_end_a_gc_deleting_from_storage(db_url, deleted_v1, make_registry):
    """PostgreSQL: the finish holds the rows' locks while storage deletes (so that no other gc claims them and
    no writer stores them again meanwhile): a server's ``idle_in_transaction_session_timeout`` (a DBA setting)
    must not end its session, which would free the rows while the delete goes on."""
    reg, only_v1, _ = deleted_v1
    assert reg.event_store.engine.dialect.name == "postgresql"
    name = reg.event_store.engine.url.database
    with reg.event_store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET idle_in_transaction_session_timeout = \'500ms\'')
    fresh = make_registry()  # its sessions start with the setting
    real_delete = fresh.store.delete

    def slow_delete(digests):
        time.sleep(1.5)  # a big batch on S3
        return real_delete(digests)

    fresh.store.delete = slow_delete
    assert set(fresh.gc(grace=NOW).reclaimed) == only_v1
    assert {r.state for r in _rows(fresh, only_v1).values()} == {"deleted"}


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


def test_a_gc_with_no_grace_during_a_snapshots_commit_leaves_the_objects_it_names(make_registry, monkeypatch):
    """A writer touches its objects' rows in its append's transaction, before it commits (here its fsyncs
    are slow): a gc with grace 0 took its cutoff after that touch and read the references before that
    commit, then claimed the rows once the commit let go of them, and deleted the objects of a version
    ``snapshot()`` had returned. The tombstone now re-reads the references of models written to since."""
    writer, gc_reg = make_registry(), make_registry()
    module = toys.spec(hidden=32).build()
    writer.snapshot("walk", module)
    toys.train_step(module, 1)
    touched, read = threading.Event(), threading.Event()
    real_candidates = collector._candidates
    monkeypatch.setattr(collector, "_candidates", lambda *a: (read.set(), real_candidates(*a))[1])
    real_put = writer.store.begin_put

    def slow_put(tensors, **kwargs):
        put = real_put(tensors, **kwargs)
        wait = put.wait

        def stored():  # called in the append's transaction, after the touch, before the commit
            touched.set()
            assert read.wait(30), "gc never read the references"
            time.sleep(0.5)  # gc's tombstone now waits for this transaction's locks
            return wait()

        put.wait = stored
        return put

    writer.store.begin_put = slow_put
    reports = []
    collecting = threading.Thread(target=lambda: touched.wait(30) and reports.append(gc_reg.gc(grace=NOW)))
    collecting.start()
    version = writer.snapshot("walk", module)
    collecting.join(60)
    assert reports and version.version == 2
    assert writer.verify()["ok"], "a committed version names objects gc deleted"
    assert toys.states_equal(writer.load("walk", 2), module)
    # the control: the version this snapshot replaced had objects of its own, which a later gc does reclaim
    writer.delete_version("walk", 1, reason="old")
    assert gc_reg.gc(grace=NOW).reclaimed_objects > 0 and writer.verify()["ok"]
