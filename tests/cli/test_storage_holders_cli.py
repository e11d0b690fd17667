"""``rlreg storage holders`` / ``rlreg storage forget`` and ``rlreg gc`` on a storage two databases share:
the second database opened without ``--storage`` binds the default folder the default registry holds."""

from __future__ import annotations

import warnings

import pytest
from clihelpers import assert_error, small_module

from registry import Registry, StorageSharedWarning
from storage import holders


@pytest.fixture
def second(rlreg, home_registry, monkeypatch):
    """The default registry holds its folder; a second database, opened with no --storage, shares it."""
    home_registry.snapshot("pol", small_module(1))
    url = f"sqlite:///{rlreg.home / 'project.db'}"
    monkeypatch.setenv("RLREG_HOME", str(rlreg.home))  # the runner's data folder: its default storage is blobs/
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Registry(url) as reg:
            reg.snapshot("other", small_module(2))
            reg.delete_version("other", 1, reason="test")
            reg.id_ = reg.registry_id
    assert [w.category for w in caught if issubclass(w.category, StorageSharedWarning)] == [StorageSharedWarning]
    return url, reg.id_


def test_gc_of_a_shared_storage_exits_4_and_holders_lists_both(rlreg, inproc, home_registry, second):
    url, theirs = second
    before = set(home_registry.store.list_digests())
    for db in ([], ["--db", url]):
        for dry in ([], ["--dry-run"]):
            assert_error(inproc("gc", "--grace", "0", *dry, *db, code=4), 4, "gc refused", "held by 1 other registry",
                         "rlreg storage forget HOLDER")
    assert set(home_registry.store.list_digests()) == before
    listed = inproc("storage", "holders", "--json").json()
    assert {h["holder"]: h["this"] for h in listed["holders"]} == {home_registry.registry_id: True, theirs: False}
    assert listed["collecting"] == []
    text = inproc("storage", "holders").out
    assert theirs in text and "project.db" in text and "gc refuses this storage" in text
    with holders.Lease(home_registry.store, theirs, {}):  # a gc of the other registry, running
        running = inproc("storage", "holders", "--json").json()["collecting"]
        assert [c["holder"] for c in running] == [theirs]
        assert f"gc of {theirs} running, or killed" in inproc("storage", "holders").out


def test_forget_then_gc(rlreg, inproc, home_registry, second):
    url, theirs = second
    with Registry(url) as other:
        their_objects = set(other.store.list_digests()) - set(home_registry.manifest("pol", 1)["objects"])
    assert their_objects
    assert_error(inproc("storage", "forget", "no-such-holder", code=3), 3, "records no holder 'no-such-holder'")
    assert_error(inproc("storage", "forget", home_registry.registry_id, code=4), 4, "is the registry at", "itself")
    unique = next(theirs[:n] for n in range(8, 37) if not home_registry.registry_id.startswith(theirs[:n]))
    done = inproc("storage", "forget", unique, "--yes", "--json").json()  # a unique prefix names it
    assert done["type"] == "StorageHolderForgotten" and done["payload"]["holder"] == theirs
    shown = inproc("storage", "show").out  # the forgetting is in the storage's history, with who
    line = next(x for x in shown.splitlines() if f"forgot the holder {theirs}" in x)
    assert " by " in line
    assert [h["holder"] for h in inproc("storage", "holders", "--json").json()["holders"]] == [home_registry.registry_id]
    inproc("gc", "--grace", "0", "--json")
    assert not their_objects & set(home_registry.store.list_digests())  # forgetting it said they were garbage
    assert inproc("verify", "--json").json()["ok"]
