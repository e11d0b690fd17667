"""Fixtures of the event-store contract suite: every test taking ``store`` runs on SQLite and PostgreSQL.

Creating a PostgreSQL database costs seconds on a busy machine, so the contract tests share one
migrated database per session and empty it before each test (the schema tests, which need empty
databases, take the shared ``db_url`` fixture instead).
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from registry import db
from registry.eventstore import EventStore
from registry.projections import Projections
from registry.schema import PROJECTION_TABLES, checkpoints, events, position_counter, streams

SCRATCH_TABLE = "consumer_seen"  # a consumer's own table, made by the checkpoint tests


@pytest.fixture(scope="session")
def _shared_pg_url(pg_admin_engine):
    name = f"rlreg_test_es_{uuid.uuid4().hex[:12]}"
    with pg_admin_engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = pg_admin_engine.url.set(database=name).render_as_string(hide_password=False)
    engine = db.create_engine(url)
    db.upgrade(engine)
    engine.dispose()
    yield url
    with pg_admin_engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _empty(url: str) -> None:
    """Empty the session's PostgreSQL database between tests."""
    engine = db.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}"))
            conn.execute(sa.text("ALTER TABLE rlreg_events DISABLE TRIGGER USER"))  # the append-only guard
            for table in (*PROJECTION_TABLES, checkpoints, events, streams):
                conn.execute(table.delete())
            conn.execute(sa.text("ALTER TABLE rlreg_events ENABLE TRIGGER USER"))
            conn.execute(position_counter.update().values(last=0))
    finally:
        engine.dispose()


@pytest.fixture
def pg_store_url(_shared_pg_url) -> str:
    """The session's migrated PostgreSQL database, emptied."""
    _empty(_shared_pg_url)
    return _shared_pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request) -> str:
    """A migrated, empty database: a fresh SQLite file, or the session's PostgreSQL database emptied."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_store_url")


@pytest.fixture
def make_store(store_url):
    """Factory: ``make_store(projector=Projections(), **kw)`` opens another store on this test's database."""
    opened: list[EventStore] = []

    def make(projector=None, **kwargs) -> EventStore:
        store = EventStore(store_url, projector=Projections() if projector is None else projector, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store) -> EventStore:
    """A store with the registry's projections on an empty database (SQLite file or PostgreSQL)."""
    return make_store()
