"""Deleting and restoring versions and models: events, DeletedError, numbering, aliases (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import registry_toys as toys

from registry import ConflictError, DeletedError, InvalidEventError, NotFoundError
from rlmodule import RLModule


@pytest.fixture
def three(reg):
    module = toys.spec().build()
    for step in (1, 2, 3):
        toys.train_step(module, step)
        reg.snapshot("pol", module, {"step": step})
    return reg, module


def test_deleted_version_is_named_with_when_who_why_everywhere(three):
    reg, _ = three
    event = reg.delete_version("pol", 2, reason="written to the wrong model")
    assert (event.type, event.payload) == ("VersionDeleted", {"version": 2, "reason": "written to the wrong model"})
    pattern = r"model 'pol' version 2 was deleted at \d{4}-\d\d-\d\d .* UTC by .+ \(event \d+\): written to the wrong model"
    for read in (lambda: reg.load("pol", 2), lambda: reg.version("pol", 2), lambda: reg.manifest("pol", 2),
                 lambda: reg.spec("pol", 2), lambda: reg.diff("pol", 1, 2), lambda: reg.export("pol", 2, "memory://x")):
        with pytest.raises(DeletedError, match=pattern) as info:
            read()
        assert isinstance(info.value, NotFoundError)
        assert (info.value.name, info.value.version, info.value.reason) == ("pol", 2, "written to the wrong model")
        assert info.value.position == event.position
    assert [v.version for v in reg.versions("pol")] == [1, 3]
    listed = reg.versions("pol", include_deleted=True)
    assert [(v.version, v.deleted is not None) for v in listed] == [(1, False), (2, True), (3, False)]
    assert listed[1].deleted.reason == "written to the wrong model"
    assert listed[1].to_dict()["deleted"]["position"] == event.position
    assert reg.history("pol")[-1].type == "VersionDeleted"
    assert reg.models()[0].versions == 2


def test_numbers_are_never_reused_and_latest_skips_deleted(three):
    reg, module = three
    reg.delete_version("pol", 3, reason="bad run")
    assert reg.version("pol").version == 2  # the newest live version
    toys.train_step(module, 9)
    assert reg.snapshot("pol", module).version == 4
    reg.delete_version("pol", 4, reason="x")
    reg.delete_version("pol", 2, reason="x")
    reg.delete_version("pol", 1, reason="last one")
    with pytest.raises(DeletedError, match="model 'pol' version 4 was deleted"):
        reg.load("pol")
    assert reg.versions("pol") == []


def test_restore_brings_a_version_back(three):
    reg, _ = three
    before = reg.load("pol", 2)
    reg.delete_version("pol", 2, reason="oops")
    event = reg.restore_version("pol", 2)
    assert (event.type, event.payload) == ("VersionRestored", {"version": 2})
    assert toys.states_equal(reg.load("pol", 2), before)
    with pytest.raises(ConflictError, match="model 'pol' version 2 is not deleted"):
        reg.restore_version("pol", 2)
    with pytest.raises(NotFoundError, match="model 'pol' has no version 7"):
        reg.restore_version("pol", 7)


def test_restore_refuses_a_version_whose_objects_are_gone(three):
    reg, _ = three
    reg.delete_version("pol", 1, reason="old")
    objects = set(reg.store.list_digests())
    reg.store.delete(objects)  # as gc would, past the grace period
    head = reg.head()
    with pytest.raises(NotFoundError, match=r"cannot restore model 'pol' version 1: \d+ of its \d+ objects were reclaimed"):
        reg.restore_version("pol", 1)
    assert reg.head() == head


def test_an_aliased_version_is_refused_unless_forced(three):
    reg, _ = three
    reg.set_alias("pol", "prod", 2)
    reg.set_alias("pol", "best", 2)
    head = reg.head()
    with pytest.raises(ConflictError, match=r"cannot delete model 'pol' version 2: aliases point at it \(pol@best, pol@prod\)"):
        reg.delete_version("pol", 2, reason="x")
    assert reg.head() == head
    reg.delete_version("pol", 2, reason="superseded", force=True)
    tail = reg.history("pol")[-3:]
    assert [e.type for e in tail] == ["AliasRemoved", "AliasRemoved", "VersionDeleted"]
    assert len({e.timestamp for e in tail}) == 1  # one append
    assert reg.aliases("pol") == {}
    with pytest.raises(DeletedError):
        reg.set_alias("pol", "prod", 2)


def test_delete_model_and_reuse_its_name(three):
    reg, module = three
    reg.set_alias("pol", "prod", 1)
    with pytest.raises(ConflictError, match=r"cannot delete model 'pol': aliases point at it \(pol@prod\)"):
        reg.delete_model("pol", reason="junk")
    event = reg.delete_model("pol", reason="junk", force=True)
    assert event.payload == {"reason": "junk", "versions": [1, 2, 3]}
    with pytest.raises(DeletedError, match=r"model 'pol' was deleted at .* junk"):
        reg.load("pol")
    with pytest.raises(DeletedError):
        reg.versions("pol")
    assert reg.models() == [] and not reg.exists("pol")
    assert len(reg.versions("pol", include_deleted=True)) == 3
    with pytest.raises(DeletedError, match="model 'pol' version 1 was deleted"):
        reg.load("pol", 1)
    assert reg.snapshot("pol", module).version == 4  # the name is used again, numbering continues
    assert [v.version for v in reg.versions("pol")] == [4]
    assert reg.models()[0].versions == 1 and reg.models()[0].latest_version == 4


def test_bad_deletions_change_nothing(three):
    reg, _ = three
    head = reg.head()
    for reason in ("", "   ", None, 3, "x" * 1001):
        with pytest.raises(InvalidEventError, match="reason must be a non-empty text"):
            reg.delete_version("pol", 1, reason=reason)
    with pytest.raises(NotFoundError, match="model 'pol' has no version 9"):
        reg.delete_version("pol", 9, reason="x")
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        reg.delete_model("nope", reason="x")
    with pytest.raises(ValueError, match="not a positive integer"):
        reg.delete_version("pol", "2", reason="x")
    assert reg.head() == head
    reg.delete_version("pol", 1, reason="once")
    with pytest.raises(DeletedError, match="model 'pol' version 1 was deleted"):
        reg.delete_version("pol", 1, reason="twice")


def test_projections_rebuild_to_the_same_rows(three):
    reg, module = three
    reg.set_alias("pol", "a", 3)
    reg.delete_version("pol", 3, reason="x", force=True)
    reg.delete_version("pol", 1, reason="y")
    reg.restore_version("pol", 1)
    reg.delete_model("pol", reason="z")
    reg.snapshot("pol", module)
    live = reg.projection_rows()
    assert live["rlreg_deleted_versions"] and not live["rlreg_deleted_models"]
    reg.rebuild_projections()
    assert reg.projection_rows() == live


def test_deleted_version_is_not_loadable_through_rlreg_url(default_env, make_registry):
    reg = make_registry()
    module = toys.spec().build()
    for _ in range(3):
        reg.snapshot("pol", module)
    reg.delete_version("pol", 3, reason="bad")
    with pytest.raises(Exception, match="version 3 was deleted") as info:
        RLModule.from_checkpoint("rlreg://pol/3")
    assert isinstance(info.value, FileNotFoundError)


def test_a_refused_write_is_not_retried_as_a_race(three):
    """A ConflictError from the write's own checks (aliases point at it) escapes at once; only clashes
    with another writer are retried (it used to be retried 200 times, about 10 s)."""
    reg, _ = three
    reg.set_alias("pol", "prod", 2)
    attempts = []
    real = reg._append_resending

    def counted(*args, **kwargs):
        attempts.append(1)
        return real(*args, **kwargs)

    reg._append_resending = counted
    with pytest.raises(ConflictError, match="aliases point at it"):
        reg.delete_version("pol", 2, reason="x")
    assert len(attempts) == 1
