"""Two registries (two databases) on one storage: each records itself as a holder of the storage
(``storage.holders``) before it stores an object, and gc refuses a storage another registry holds,
since that one's versions may use any object this one's no longer do. A control shows what gc
deletes without the records (a storage written before them): another registry's live objects."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import warnings
from pathlib import Path

import pytest
import registry_toys as toys
import sqlalchemy as sa
import storage
from storage import holders

from registry import (
    ConflictError, InvalidNameError, StorageMoveError, NotFoundError, Registry, StorageMismatchError, StorageSharedError, StorageSharedWarning,
)
from registry import binding
from registry import gc as collector
from registry.schema import objects

NOW = dt.timedelta(0)


def _objects(reg, name, version):
    return set(storage.manifest_objects(reg.manifest(name, version)))


@pytest.fixture
def owner(tmp_path, local_storage_url):
    """Another registry (its own SQLite file) on this test's storage, holding a live version of ``pol``."""
    with Registry(f"sqlite:///{tmp_path / 'owner.db'}", local_storage_url) as reg:
        reg.snapshot("pol", toys.spec(hidden=16).build())
        yield reg


@pytest.fixture
def mine(make_registry):
    """This test's registry (SQLite or PostgreSQL) on the same storage, with a deleted version of ``own``: gc
    (grace 0) would collect its objects (``mine.collectable``), and every object of the storage it does not know."""
    reg = make_registry()
    reg.module = toys.spec(hidden=8).build()  # (the weights of own:1: a newcomer may snapshot the same)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StorageSharedWarning)
        reg.snapshot("own", reg.module)
    reg.collectable = _objects(reg, "own", 1)
    reg.delete_version("own", 1, reason="test")
    return reg


def test_a_registry_records_itself_before_its_first_object_once_for_all_its_clients(make_registry, local_storage_url):
    collecting = make_registry()
    collecting.gc(grace=NOW, dry_run=True)  # a dry run changes nothing: no record either
    assert collecting.storage_holders() == []
    collecting.gc(grace=NOW)
    assert [h["holder"] for h in collecting.storage_holders()] == [collecting.registry_id]
    holders.release(collecting.store, collecting.registry_id)
    reg = make_registry()  # a client that has not recorded the registry yet
    seen = []
    original = storage.Store.begin_put

    def begin_put(self, *args, **kwargs):  # what the storage holds when the first object is about to be stored
        seen.append([h["holder"] for h in holders.holders(self).values()])
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(storage.Store, "begin_put", begin_put)
        reg.snapshot("pol", toys.spec(hidden=8).build())
    assert seen == [[reg.registry_id]]
    [record] = reg.storage_holders()
    assert record["holder"] == reg.registry_id and record["this"] is True
    assert record["database"] == reg._where() and record["actor"]["pid"] > 0 and record["since"]
    other_client = make_registry()  # another process of the same registry: the same id, no second record
    with warnings.catch_warnings():
        warnings.simplefilter("error", StorageSharedWarning)
        other_client.snapshot("pol", toys.spec(hidden=8).build())
    assert other_client.registry_id == reg.registry_id
    assert [h["holder"] for h in other_client.storage_holders()] == [reg.registry_id]
    assert reg.registry_id == str(reg.event_store.events(limit=1)[0].id)
    reg.delete_version("pol", 1, reason="test")
    assert len(reg.gc(grace=NOW).reclaimed) >= 1  # alone on its storage: gc collects as ever


def test_the_second_registry_on_a_storage_is_warned_at_its_first_snapshot(owner, make_registry):
    reg = make_registry()
    with pytest.warns(StorageSharedWarning, match=r"now shares its storage .* with " + owner.registry_id
                      + r" \(database sqlite:///.*owner\.db, since .*\): gc is refused there"):
        reg.snapshot("own", toys.spec(hidden=8).build())
    with warnings.catch_warnings():
        warnings.simplefilter("error", StorageSharedWarning)  # once: recorded now, not warned again
        reg.snapshot("own", toys.spec(hidden=8).build())
    assert {h["holder"]: h["this"] for h in reg.storage_holders()} == {owner.registry_id: False, reg.registry_id: True}


def test_gc_refuses_a_storage_another_registry_holds_and_deletes_nothing(owner, mine, local_storage_url):
    stored = set(mine.store.list_digests())
    for reg, other in ((mine, owner), (owner, mine)):
        for run in (lambda: reg.gc(grace=NOW), lambda: reg.gc(grace=NOW, dry_run=True),
                    lambda: collector.collect(reg, grace=NOW)):
            with pytest.raises(StorageSharedError, match=rf"gc refused: the storage .* is held by 1 other registry "
                                                         rf"too: {other.registry_id} .*no object was deleted"):
                run()
    assert isinstance(StorageSharedError("x"), StorageMismatchError)  # exit 4 / HTTP 400, as a mismatch
    assert set(mine.store.list_digests()) == stored
    assert owner.verify()["ok"]
    assert owner.load("pol", 1) is not None


def test_control_without_the_records_gc_deletes_another_registrys_live_objects(owner, mine, local_storage_url):
    """What the refusal prevents (a storage written before holder records: nothing tells gc it is shared)."""
    theirs = _objects(owner, "pol", 1)
    shutil.rmtree(Path(local_storage_url) / holders.FOLDER)
    mine.gc(grace=NOW)
    assert not theirs & set(mine.store.list_digests())
    assert not owner.verify()["ok"]


@pytest.mark.parametrize("when", ["listing", "deleting"])
def test_a_registry_that_begins_to_share_while_gc_runs_stores_nothing_until_it_ends(mine, local_storage_url, tmp_path,
                                                                                   monkeypatch, when):
    """A newcomer records itself while another registry's gc lists the storage, or deletes (past its looks),
    and snapshots the very weights gc is deleting (an imported checkpoint: the same objects): its record
    comes after gc's lease, so it sees the lease and is refused, storing and recording nothing; its record
    stays (a gc that looks again refuses). Once gc has ended, the same snapshot stores its objects again
    if gc deleted them (f3dc966 acknowledged the version, then gc deleted its object)."""
    newcomer = Registry(f"sqlite:///{tmp_path / 'late.db'}", local_storage_url)
    refused = []

    def interleave(real):
        def call(*args, **kwargs):
            if not refused:
                with pytest.raises(ConflictError, match=r"whose gc is deleting objects there now: "
                                   + mine.registry_id + r".*Nothing was stored or recorded") as info, \
                        pytest.warns(StorageSharedWarning):
                    newcomer.snapshot("pol", mine.module)
                refused.append(info.value)
            return real(*args, **kwargs)
        return call

    owner_of, target = (collector.listing, "scan") if when == "listing" else (collector, "_reclaim")
    monkeypatch.setattr(owner_of, target, interleave(getattr(owner_of, target)))
    if when == "listing":  # the look after the listing sees the newcomer's record: gc stops there
        with pytest.raises(StorageSharedError):
            mine.gc(grace=NOW)
        assert mine.collectable <= set(mine.store.list_digests())
    else:  # past its looks: it deletes its garbage, which the newcomer was kept from reusing
        assert mine.collectable <= set(mine.gc(grace=NOW).reclaimed)
    assert refused and newcomer.models() == []
    assert holders.collecting(mine.store) == {}  # the lease ended with gc
    v = newcomer.snapshot("pol", mine.module)
    assert set(storage.manifest_objects(newcomer.manifest("pol", v.version))) == mine.collectable
    assert newcomer.verify()["ok"] and toys.states_equal(newcomer.load("pol", v.version), mine.module)
    with pytest.raises(StorageSharedError):
        mine.gc(grace=NOW)
    newcomer.close()


def test_a_lapsed_lease_does_not_count(mine, local_storage_url, tmp_path):
    """A gc killed while it held its lease: the lease counts no more once not renewed for LEASE_SECONDS."""
    lease = holders.Lease(mine.store, mine.registry_id, {})
    lease.renew()  # (written, never renewed again, never removed: a killed gc)
    newcomer = Registry(f"sqlite:///{tmp_path / 'late.db'}", local_storage_url)
    with pytest.raises(ConflictError), pytest.warns(StorageSharedWarning):
        newcomer.snapshot("pol", toys.spec(hidden=8).build())
    stale = time.time() - holders.LEASE_SECONDS - 5
    os.utime(Path(local_storage_url) / holders.LEASES / f"{lease.name}.json", (stale, stale))
    newcomer.snapshot("pol", toys.spec(hidden=8).build())
    newcomer.close()


def test_gc_of_an_empty_registry_leaves_no_record_on_a_storage_another_holds(owner, make_registry):
    """A mistyped database URL's new registry: refused, and it does not record itself on the other's storage
    (whose own gc would then be refused too)."""
    stranger = make_registry()
    with pytest.raises(StorageSharedError):
        stranger.gc(grace=NOW)
    assert [h["holder"] for h in owner.storage_holders()] == [owner.registry_id]


def test_a_damaged_record_counts_as_a_holder(mine, local_storage_url):
    (Path(local_storage_url) / holders.FOLDER / "someone.json").write_text("{not json")
    with pytest.raises(StorageSharedError, match=r"someone \(its record is unreadable: JSONDecodeError"):
        mine.gc(grace=NOW)


def test_forgetting_a_gone_registry_is_recorded_and_lets_gc_collect(owner, mine):
    theirs = owner.registry_id
    for bad, error in ((mine.registry_id, StorageMismatchError), ("no-such-holder", NotFoundError),
                       ("../x", InvalidNameError)):
        with pytest.raises(error):
            mine.forget_storage_holder(bad)
    assert len(mine.storage_holders()) == 2
    event = mine.forget_storage_holder(theirs)
    assert event.type == "StorageHolderForgotten" and event.payload["holder"] == theirs
    assert event.payload["record"]["database"].endswith("owner.db") and event.actor
    assert mine.storage_events()[-1] == event and event not in mine.storage_history()
    assert [h["holder"] for h in mine.storage_holders()] == [mine.registry_id]
    assert mine.collectable <= set(mine.gc(grace=NOW).reclaimed)


def test_a_moved_registry_holds_its_new_storage_and_not_its_old_one(mine, local_storage_url, tmp_path):
    new = tmp_path / "moved"
    shutil.copytree(Path(local_storage_url) / "objects", new / "objects")
    mine.move_storage(str(new))
    assert [h["holder"] for h in mine.storage_holders()] == [mine.registry_id]
    assert holders.holders(storage.Store(local_storage_url)) == {}
    assert len(mine.gc(grace=NOW).reclaimed) >= 1


# --- fixes from the review of f3dc966 -----------------------------------------------------------------


def test_a_client_whose_record_was_forgotten_records_itself_again_at_its_next_write(owner, mine):
    """A live registry forgotten by mistake: its next snapshot (on a local folder: every write looks) records
    it again, so the other's gc is refused again rather than deleting its versions' objects."""
    mine.forget_storage_holder(owner.registry_id)
    with pytest.warns(StorageSharedWarning):  # (recorded again: sharing again)
        owner.snapshot("pol", toys.spec(hidden=16).build())
    assert owner.registry_id in [h["holder"] for h in mine.storage_holders()]
    with pytest.raises(StorageSharedError):
        mine.gc(grace=NOW)
    assert owner.verify()["ok"]


def test_a_move_holds_the_new_storage_before_it_checks_it_and_only_if_it_moves(mine, local_storage_url, tmp_path):
    """Held first: a gc of the registry already there, run between the move's check and its record, is refused
    (not deleting the objects just copied); a refused move leaves no record there."""
    new = tmp_path / "theirs"
    with Registry(f"sqlite:///{tmp_path / 'there.db'}", str(new)) as there:
        there.snapshot("x", toys.spec(hidden=4).build())
        empty_dir = tmp_path / "empty"
        with pytest.raises(StorageMoveError, match="storage move to"):
            mine.move_storage(str(empty_dir))
        assert holders.holders(storage.Store(str(empty_dir))) == {}
        shutil.copytree(Path(local_storage_url) / "objects", new / "objects", dirs_exist_ok=True)
        real = storage.Store.exists

        def exists(store, digests):  # the other registry's gc while the move checks the objects there
            if store.url == storage.Store(str(new)).url:
                with pytest.raises(StorageSharedError):
                    there.gc(grace=NOW)
            return real(store, digests)

        with pytest.MonkeyPatch.context() as mp, pytest.warns(StorageSharedWarning):
            mp.setattr(storage.Store, "exists", exists)
            mine.move_storage(str(new))
    assert mine.verify()["ok"]


def test_forget_records_the_event_only_once_the_record_is_gone(mine, local_storage_url):
    (Path(local_storage_url) / holders.FOLDER / "stuck.json").mkdir()  # a folder in the way: cannot be removed
    before = len(mine.storage_events())
    with pytest.raises(storage.StorageWriteError, match="folder"):
        mine.forget_storage_holder("stuck")
    assert len(mine.storage_events()) == before


def test_a_record_copied_with_the_objects_is_named_so(owner, mine, local_storage_url, tmp_path):
    """Copying the whole storage folder copies the other registry's record: the refusal says where it was
    recorded and what to do."""
    copy = tmp_path / "copy"
    shutil.copytree(local_storage_url, copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StorageSharedWarning)
        mine.move_storage(str(copy))
    with pytest.raises(StorageSharedError, match=rf"recorded at {storage.Store(local_storage_url).url}: copied "
                                                 rf"here with the objects\? if so, `rlreg storage forget {owner.registry_id}`"):
        mine.gc(grace=NOW)


def test_a_holder_record_names_the_database_without_its_password_or_query():
    assert binding.public_url("postgresql://u:pw@h/db?password=s3cret&sslmode=require") == "postgresql+psycopg://u:***@h/db"


# --- fixes from the review of b7f424a -----------------------------------------------------------------


def test_a_refused_client_leaves_its_registrys_record(mine, tmp_path, local_storage_url):
    """The record is the registry's: another client of it may have found it and stored already, counting
    on it; a client refused by a lease removes nothing, and the gc holding the lease refuses at its next look."""
    newcomer = Registry(f"sqlite:///{tmp_path / 'late.db'}", local_storage_url)
    with holders.Lease(mine.store, mine.registry_id, {}):
        with pytest.raises(ConflictError), pytest.warns(StorageSharedWarning):
            newcomer.snapshot("pol", toys.spec(hidden=8).build())
    assert newcomer.registry_id in [h["holder"] for h in mine.storage_holders()]
    with pytest.raises(StorageSharedError):
        mine.gc(grace=NOW)
    newcomer.close()


def test_gc_stops_deleting_once_its_lease_may_have_lapsed(mine, monkeypatch):
    """Renewals that fail, or a process stopped (Ctrl-Z, a paused machine), past LEASE_SECONDS - MARGIN:
    others may take the lease for lapsed and record themselves unseen, so gc stops before its next delete."""
    clock = [1000.0]
    monkeypatch.setattr(holders, "_clock", lambda: clock[0])
    real_scan = collector.listing.scan

    def scan(store):  # the listing took (or the process stood still for) longer than the lease
        found = real_scan(store)
        clock[0] += holders.LEASE_SECONDS - holders.MARGIN_SECONDS + 1
        return found

    monkeypatch.setattr(collector.listing, "scan", scan)
    with pytest.raises(storage.StorageUnavailableError, match="lease there was last renewed 481 s ago"):
        mine.gc(grace=NOW)
    assert mine.collectable <= set(mine.store.list_digests())
    monkeypatch.setattr(collector.listing, "scan", real_scan)
    assert mine.collectable <= set(mine.gc(grace=NOW).reclaimed)  # the next gc, on time, collects


def test_a_refused_gc_lets_go_of_the_rows_an_interrupted_gc_left_deleting(mine, tmp_path, local_storage_url):
    """An interrupted gc left rows 'deleting' (its writers wait for a gc to finish them); then the storage
    became shared, so gc is refused: it marks them 'deleted' (objects left alone) and the registry's next
    write of those weights goes through (it looks at storage and uploads what is missing)."""
    with mine.event_store.engine.connect() as conn:
        cutoff = collector.db_now(conn)
    sizes = {d: 1 for d in mine.collectable}
    assert set(collector._tombstone(mine.event_store, sizes, cutoff + dt.timedelta(seconds=1))) == mine.collectable
    newcomer = Registry(f"sqlite:///{tmp_path / 'late.db'}", local_storage_url)
    with pytest.warns(StorageSharedWarning):
        newcomer.snapshot("pol", toys.spec(hidden=4).build())
    with pytest.raises(StorageSharedError):
        mine.gc(grace=NOW)
    with mine.event_store.engine.connect() as conn:
        states = {r.state for r in conn.execute(sa.select(objects.c.state).where(objects.c.digest.in_(mine.collectable)))}
    assert states == {"deleted"}
    assert mine.collectable <= set(mine.store.list_digests())  # marked collected, not deleted
    v = mine.snapshot("own", mine.module)
    assert mine.verify()["ok"] and toys.states_equal(mine.load("own", v.version), mine.module)
    newcomer.close()


# --- fixes from the review of bdb8d02 -----------------------------------------------------------------


def test_a_client_refused_by_a_lease_asks_again_at_its_next_write(mine, tmp_path, local_storage_url, monkeypatch):
    """A client that held the storage, whose registry's record was forgotten meanwhile: refused by a gc's
    lease, it asks for leases again at its next write (32cff3f let that write through, and the gc then
    deleted the object the acknowledged version used)."""
    newcomer = Registry(f"sqlite:///{tmp_path / 'late.db'}", local_storage_url)
    with pytest.warns(StorageSharedWarning):
        newcomer.snapshot("x", toys.spec(hidden=4).build())
    mine.forget_storage_holder(newcomer.registry_id)
    outcomes = []
    real = collector._reclaim

    def reclaim(*args, **kwargs):  # past gc's looks: the newcomer writes the weights gc is deleting, twice
        if not outcomes:
            for _ in range(2):
                try:
                    newcomer.snapshot("pol", mine.module)
                    outcomes.append("stored")
                except ConflictError:
                    outcomes.append("refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(collector, "_reclaim", reclaim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StorageSharedWarning)
        mine.gc(grace=NOW)
    assert outcomes == ["refused", "refused"]
    assert [m.name for m in newcomer.models()] == ["x"]  # (x:1, stored before it was forgotten, was gc's to take)
    v = newcomer.snapshot("pol", mine.module)  # gc has ended: stored anew
    assert toys.states_equal(newcomer.load("pol", v.version), mine.module)
    newcomer.close()


def test_a_renewal_that_outlasts_the_lease_does_not_put_it_back(tmp_path, monkeypatch):
    store = storage.Store(str(tmp_path / "store"))
    monkeypatch.setattr(holders, "RENEW_SECONDS", 0.1)
    real = holders._write
    writes = []

    def slow(*args, **kwargs):  # every renewal after the first write hangs for a while
        writes.append(1)
        if len(writes) > 1:
            time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(holders, "_write", slow)
    with holders.Lease(store, "reg-a", {}):
        time.sleep(0.15)  # a renewal is under way
    time.sleep(0.8)  # it ended after __exit__
    assert len(writes) >= 2
    assert holders.collecting(store) == {}
    assert not list((tmp_path / "store" / holders.LEASES).glob("*.json"))


def test_a_restore_records_the_registry_again(owner, mine):
    """A restored version uses its objects again: a registry whose record was forgotten (its database looked
    gone) records itself before the restore, and the other's gc is then refused (b6a0216: deleted them)."""
    mine.restore_version("own", 1)
    mine.delete_version("own", 1, reason="again")
    owner.forget_storage_holder(mine.registry_id)
    with pytest.warns(StorageSharedWarning):
        mine.restore_version("own", 1)
    assert mine.registry_id in [h["holder"] for h in owner.storage_holders()]
    with pytest.raises(StorageSharedError):
        owner.gc(grace=NOW)
    assert mine.verify()["ok"]
