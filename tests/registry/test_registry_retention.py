"""Retention policies: what they keep, applied after each snapshot, idempotent, safe with several writers."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import registry_toys as toys

from registry import InvalidEventError, NotFoundError, RetentionWarning
from registry.retention import kept

HERE = os.path.dirname(__file__)


def test_kept_is_the_union_of_the_rules():
    live = [(v, {"ret": float(v % 7)}) for v in range(1, 31)]
    policy = {"keep_last": 3, "keep_every": 10, "keep_best": {"key": "ret", "count": 2, "mode": "max"}}
    assert kept(policy, live, aliased={4}) == {28, 29, 30} | {10, 20} | {27, 20} | {4}  # 6.0 at 27, 20, 13, 6
    assert kept({"keep_best": {"key": "ret", "count": 1, "mode": "min"}}, live, set()) == {28, 30}  # 0.0: 28 newest
    assert kept({"keep_last": 1}, [(1, {}), (2, {})], set()) == {2}
    unscored = [(1, {"ret": "high"}), (2, {"ret": True}), (3, {})]
    assert kept({"keep_best": {"key": "ret", "count": 5, "mode": "max"}}, unscored, set()) == {3}


def test_policy_applies_after_each_snapshot_and_never_deletes_aliased_or_latest(reg):
    module = toys.spec().build()
    for step in range(1, 6):
        toys.train_step(module, step)
        reg.snapshot("pol", module, {"ret": [5, 1, 9, 2, 3][step - 1]})
    reg.set_alias("pol", "prod", 1)
    event = reg.set_retention("pol", keep_last=2, keep_best=("ret", 1))
    assert event.type == "RetentionSet" and reg.retention("pol")["keep_best"] == {"key": "ret", "count": 1, "mode": "max"}
    assert [v.version for v in reg.versions("pol")] == [1, 3, 4, 5]  # 2 deleted: not aliased, best, last
    gone = reg.versions("pol", include_deleted=True)[1].deleted
    assert gone.reason == "retention: keep_last=2, keep_best=ret:1:max"
    head = reg.head()
    assert reg.apply_retention("pol") == [] and reg.head() == head  # idempotent
    toys.train_step(module, 9)
    reg.snapshot("pol", module, {"ret": 0})
    assert [v.version for v in reg.versions("pol")] == [1, 3, 5, 6]
    reg.clear_retention("pol")
    assert reg.retention("pol") is None
    reg.snapshot("pol", module, {"ret": 0})
    assert [v.version for v in reg.versions("pol")] == [1, 3, 5, 6, 7]
    live = reg.projection_rows()
    reg.rebuild_projections()
    assert reg.projection_rows() == live


def test_bad_policies_are_refused(reg):
    reg.snapshot("pol", toys.spec().build())
    head = reg.head()
    for kwargs, message in [
        ({}, "give at least one of keep_last"),
        ({"keep_last": 0}, "keep_last must be an integer from 1 to"),
        ({"keep_every": True}, "keep_every must be an integer from 1 to"),
        ({"keep_last": 2**63}, r"keep_last must be an integer from 1 to 9223372036854775807 \(2\^63 - 1\), got 9223"),
        ({"keep_best": ("ret", 10**30)}, "keep_best's count must be an integer from 1 to"),
        ({"keep_best": "ret"}, "keep_best must be"),
        ({"keep_best": ("ret", 2, "median")}, "mode must be 'max' or 'min'"),
    ]:
        with pytest.raises(InvalidEventError, match=message):
            reg.set_retention("pol", **kwargs)
    with pytest.raises(NotFoundError, match="has no retention policy to clear"):
        reg.clear_retention("pol")
    assert reg.head() == head


def test_keep_best_on_a_key_no_version_has_deletes_nothing_until_one_has(reg):
    """A mistyped key ranks nothing: without this, every version but the newest (and aliased) went."""
    module = toys.spec().build()
    reg.snapshot("gone", module, {"ret": 1})
    reg.delete_version("gone", 1, reason="test")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RetentionWarning)
        reg.set_retention("gone", keep_best=("rte", 1))  # no live version: nothing to warn about
    for ret in (5, 1, 9):
        toys.train_step(module, ret)
        reg.snapshot("typo", module, {"ret": ret})
    with pytest.warns(RetentionWarning, match=r"retention of typo: no version has a number under metadata key "
                      r"'rte' \(keep_best\), so the policy deletes nothing until one has \(keep_last and keep_every "
                      r"wait with it\); check the key"):
        reg.set_retention("typo", keep_best=("rte", 1), keep_last=1)
    assert [v.version for v in reg.versions("typo")] == [1, 2, 3]
    with pytest.warns(RetentionWarning):
        reg.snapshot("typo", module, {"ret": 2})  # applied after each snapshot: still nothing
    assert [v.version for v in reg.versions("typo")] == [1, 2, 3, 4]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RetentionWarning)
        reg.snapshot("typo", module, {"rte": 7})  # the first version with the key: the policy applies
    assert [v.version for v in reg.versions("typo")] == [5]


def test_several_writers_with_one_policy(subprocess_env, default_env):
    """4 processes snapshot one name under keep_last=3: no double deletion, no error, 3 live at the end."""
    import registry

    reg = registry.default_registry()
    reg.snapshot("shared", toys.spec().build())
    reg.set_retention("shared", keep_last=3)
    db_url, storage_url = default_env
    worker = os.path.join(HERE, "snapshot_worker.py")
    procs = [subprocess.Popen([sys.executable, worker, db_url, storage_url, "shared", "4", str(i)], env=subprocess_env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    events = reg.history("shared")
    deleted = [e.payload["version"] for e in events if e.type == "VersionDeleted"]
    assert len(deleted) == len(set(deleted))  # no version deleted twice
    recorded = [e.payload["version"] for e in events if e.type == "VersionRecorded"]
    assert recorded == list(range(1, 18))
    assert [v.version for v in reg.versions("shared")] == [15, 16, 17]
    assert sorted(deleted) == list(range(1, 15))


def test_a_database_lost_while_retention_runs_after_a_snapshot_does_not_fail_the_recorded_snapshot(
        reg, monkeypatch, caplog):
    """The snapshot committed, then the database went away while its retention policy was applied: the
    snapshot returns its version (raising would make a caller that tries again record it twice), the
    policy is left for the next snapshot, and an explicit apply_retention still raises."""
    from registry import DatabaseUnavailableError
    from registry import retention

    module = toys.spec().build()
    reg.snapshot("pol", module)
    reg.set_retention("pol", keep_last=1)

    def lost(conn, name):
        raise DatabaseUnavailableError("database is gone (injected)")

    monkeypatch.setattr(retention, "_deletions", lost)
    toys.train_step(module, 1)
    with caplog.at_level("WARNING", logger="registry.retention"):
        version = reg.snapshot("pol", module)
    assert version.version == 2 and reg.version("pol").version == 2
    assert "left for its next snapshot or gc (the version is recorded)" in caplog.text
    with pytest.raises(DatabaseUnavailableError):
        reg.apply_retention("pol")
    monkeypatch.undo()
    assert reg.apply_retention("pol") == [1]


def test_a_version_restored_after_the_policy_was_set_is_kept_until_the_policy_is_set_again(reg):
    """``rlreg restore`` of a version the policy deleted was undone by the next snapshot or gc (which, with a
    short grace, then reclaimed its objects for good): a restore is deliberate, the policy keeps it."""
    import datetime as dt

    module = toys.spec().build()
    for step in range(1, 4):
        toys.train_step(module, step)
        reg.snapshot("pol", module)
    reg.set_retention("pol", keep_last=1)
    assert [v.version for v in reg.versions("pol")] == [3]
    reg.restore_version("pol", 2)
    toys.train_step(module, 4)
    reg.snapshot("pol", module)  # applies the policy: 3 goes, 2 stays
    assert [v.version for v in reg.versions("pol")] == [2, 4]
    reg.gc(grace=dt.timedelta(0))  # applies every policy, then reclaims
    assert [v.version for v in reg.versions("pol")] == [2, 4]
    reg.load("pol", 2)
    live = reg.projection_rows()
    reg.rebuild_projections()
    assert reg.projection_rows() == live  # the decision is the log's: a replay makes the same
    reg.set_retention("pol", keep_last=1)  # set again: applies to the restored version too
    assert [v.version for v in reg.versions("pol")] == [4]


def test_applying_a_policy_reads_no_event_of_the_models_log(reg):
    """The restored versions a policy keeps were read from the model's stream, every event since the policy
    at every snapshot (400,000 events: a snapshot 31 -> 88 ms); they are on the policy's row now."""
    import sqlalchemy as sa

    module = toys.spec().build()
    for step in range(1, 4):
        toys.train_step(module, step)
        reg.snapshot("pol", module)
    reg.set_retention("pol", keep_last=1)
    reg.restore_version("pol", 1)
    seen: list[str] = []
    sa.event.listen(reg.event_store.engine, "before_cursor_execute", lambda c, cur, stmt, *a: seen.append(stmt))
    reg.apply_retention("pol")
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert reads and not [s for s in reads if "rlreg_events" in s], reads
    assert [v.version for v in reg.versions("pol")] == [1, 3]
