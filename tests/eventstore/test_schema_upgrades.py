"""A registry at any revision rlreg ever shipped upgrades to the head with the head's schema, and its read
models equal what ``rebuild_projections`` makes of its log (nothing to rebuild by hand).

Two histories were shipped. The first-parent history of main had ``0001 .. 0003 -> 0004_event_actor ->
0005_tags_descriptions``; the lifecycle branch had ``0003 -> 0005_lifecycle``, and their merge re-parented
``0004_event_actor`` after ``0005_lifecycle``. A database stamped ``0004_event_actor`` or
``0005_tags_descriptions`` by the first history has no lifecycle tables, though Alembic now counts
``0005_lifecycle`` as applied to it.

Each registry here is recorded by this rlreg (through the store and its projector, as a writer of that
time did), then taken down to the old revision with the shipped downgrades; the first history's schema is
that one without what ``0005_lifecycle`` created (it never ran there).
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import sqlalchemy as sa
from alembic import command
from eventstore_helpers import spec_event, version_event

from registry import db, errors, retention
from registry.eventstore import EventStore, NewEvent
from registry.projections import Projections

SPEC = {"module": "ppo", "hidden": [4]}
LIFECYCLE_TABLES = ("rlreg_objects", "rlreg_retention", "rlreg_deleted_models", "rlreg_deleted_versions")
METADATA = [
    {"r": 0.0, "env": "CartPole", "nested": {"k": 0, "deeper": {"ok": True}}},
    {"r": 10.5, "env": "CartPole", "nested": {"k": 1}, "list": [1, 2], "long": "x" * 1001, "none": None},
    {"r": 21, "env": "Acrobot", "ünï": "ø", "neg": -3.25, "huge": 10**400},
    {"r": 31.5, "flag": False, "empty": {}},
]


@pytest.fixture
def engine(db_url):
    engine = db.create_engine(db_url)
    yield engine
    engine.dispose()


def _record(engine, *, tags: bool, lifecycle: bool) -> None:
    """Versions with metadata (and tags and descriptions, deletions and a policy), as a writer records them."""
    db.upgrade(engine)
    with EventStore(engine, projector=Projections()) as store:
        store.append("team/a", [spec_event(SPEC)])
        for i, metadata in enumerate(METADATA, start=1):
            store.append("team/a", [version_event(i, SPEC, metadata)])
        store.append("team/b", [spec_event(SPEC), version_event(1, SPEC, {"r": 99})])
        store.append("team/a", [NewEvent("AliasSet", {"alias": "best", "version": 3})])
        if tags:
            store.append("team/a", [NewEvent("TagsSet", {"version": 2, "tags": {"stage": "eval", "seed": "3"}}),
                                    NewEvent("TagsRemoved", {"version": 2, "keys": ["seed"]}),
                                    NewEvent("DescriptionSet", {"version": None, "text": "model a"}),
                                    NewEvent("DescriptionSet", {"version": 4, "text": "v4"})])
        if lifecycle:
            store.append("team/a", [NewEvent("VersionDeleted", {"version": 4, "reason": "bad"}),
                                    NewEvent("RetentionSet", retention.make_policy("team/a", keep_last=3))])
            store.append("team/b", [NewEvent("ModelDeleted", {"reason": "gone", "versions": [1]})])


def _take_down_to(engine, revision: str, *, first_parent_history: bool = False) -> None:
    db.downgrade(engine, revision)
    if first_parent_history:  # 0005_lifecycle never ran on it: its tables are not there
        with engine.begin() as conn:
            for table in LIFECYCLE_TABLES:
                conn.execute(sa.text(f"DROP TABLE {table}"))
    assert db.schema_status(engine).current == revision


def _check_upgraded(engine, matches_r_over_20: list[int]) -> None:
    """At the head, no drift from the models, live read models == a rebuild, and metadata is searchable."""
    status = db.upgrade(engine)
    assert status.up_to_date, status
    with engine.begin() as conn, redirect_stdout(io.StringIO()):
        command.check(db.alembic_config(conn))  # every table, column and index of the head schema
    with EventStore(engine, projector=Projections()) as store:
        with engine.connect() as conn:
            live = Projections().dump(conn)
        assert live["rlreg_version_fields"], "the search projection was left empty"
        store.rebuild_projections()
        with engine.connect() as conn:
            rebuilt = Projections().dump(conn)
    for table in live:
        assert live[table] == rebuilt[table], table
    with engine.connect() as conn:
        found = conn.execute(sa.text(
            "SELECT version FROM rlreg_version_fields WHERE name = 'team/a' AND source = 'metadata' "
            "AND key = '[\"r\"]' AND kind = 'number' AND num > 20 ORDER BY version")).scalars().all()
    assert found == matches_r_over_20


@pytest.mark.parametrize("revision", ["0004_event_actor", "0005_tags_descriptions"])
def test_a_database_of_the_first_parent_history_upgrades(engine, revision):
    """Before: 0007 failed on the missing rlreg_retention (SQLite: 'unavailable or locked'), for good."""
    _record(engine, tags=revision == "0005_tags_descriptions", lifecycle=False)
    _take_down_to(engine, revision, first_parent_history=True)
    _check_upgraded(engine, [3, 4])
    with engine.connect() as conn:
        for table in LIFECYCLE_TABLES:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0


@pytest.mark.parametrize("revision", ["0004_event_actor", "0005_tags_descriptions"])
def test_a_database_of_the_merged_history_at_the_same_revision_keeps_its_lifecycle_rows(engine, revision):
    _record(engine, tags=revision == "0005_tags_descriptions", lifecycle=True)
    _take_down_to(engine, revision)
    _check_upgraded(engine, [3, 4])  # version 4 is deleted: its row stays, as a rebuild keeps it
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name, version FROM rlreg_deleted_versions ORDER BY name")).all() == [
            ("team/a", 4), ("team/b", 1)]
        assert conn.execute(sa.text("SELECT name FROM rlreg_retention")).scalars().all() == ["team/a"]


@pytest.mark.parametrize("revision", ["0002_projections", "0003_append_only_events", "0005_lifecycle"])
def test_an_upgrade_across_0005_tags_descriptions_fills_the_search_projection(engine, revision):
    """Before: rlreg_version_fields came out empty: every metadata filter found nothing until a rebuild."""
    _record(engine, tags=False, lifecycle=revision == "0005_lifecycle")
    _take_down_to(engine, revision)
    _check_upgraded(engine, [3, 4])


def test_a_database_upgraded_before_the_fix_gets_its_missing_search_rows(engine):
    """A registry upgraded past 0005_tags_descriptions with the empty projection, then used (a tag set on
    an old version, a new version recorded), is filled at its next upgrade; rows already there stay."""
    _record(engine, tags=True, lifecycle=True)
    db.downgrade(engine, "0009_old_versions_searchable")  # (0010's column: not yet at that time)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM rlreg_version_fields WHERE NOT (name = 'team/a' AND version = 3)"
                             " AND source = 'metadata'"))
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0008_events_by_stream'"))
    _check_upgraded(engine, [3, 4])


def test_a_failing_migration_is_a_schema_error_and_changes_nothing(engine):
    """Before: SQLite said 'the database is unavailable or locked' (exit 6), PostgreSQL 'database error'."""
    db.upgrade(engine, "0006_sqlite_rowid_log")
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE rlreg_retention"))
    with pytest.raises(errors.SchemaVersionError,
                       match=r"upgrading the schema to 'head': a migration failed, the schema is left at revision "
                             r"'0006_sqlite_rowid_log' \(nothing was changed\): .*rlreg_retention") as raised:
        db.upgrade(engine)
    assert not isinstance(raised.value, errors.DatabaseUnavailableError)
    assert db.schema_status(engine).current == "0006_sqlite_rowid_log"
    with pytest.raises(errors.SchemaVersionError, match=r"a migration failed.*rlreg_retention"):
        EventStore(engine, upgrade=True)


def test_every_revision_id_fits_the_version_table():
    """alembic_version.version_num is VARCHAR(32): PostgreSQL refuses a longer id (SQLite does not check)."""
    from alembic.script import ScriptDirectory

    ids = [r.revision for r in ScriptDirectory.from_config(db.alembic_config()).walk_revisions()]
    assert {"0005_lifecycle_tables_if_missing", "0009_old_versions_searchable"} <= set(ids)
    assert [i for i in ids if len(i) > 32] == []


def test_an_upgrade_to_0010_keeps_the_versions_restored_since_the_policy_on_its_row(engine):
    """Revision 0010 fills ``rlreg_retention.restored`` from the log: a version restored after the policy was
    set is kept by it (one restored before the policy is not), as a rebuild makes the row."""
    _record(engine, tags=True, lifecycle=True)  # team/a: version 4 deleted, then a policy keep_last=3
    with EventStore(engine, projector=Projections()) as store:
        store.append("team/a", [NewEvent("VersionDeleted", {"version": 1, "reason": "old"}),
                                NewEvent("VersionRestored", {"version": 4})])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT restored FROM rlreg_retention")).scalar() in ([4], "[4]")
    _take_down_to(engine, "0009_old_versions_searchable")
    _check_upgraded(engine, [3, 4])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT restored FROM rlreg_retention")).scalar() in ([4], "[4]")
