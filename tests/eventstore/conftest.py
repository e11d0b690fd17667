"""Fixtures of the event-store contract suite: every test taking ``store`` runs on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from registry.eventstore import EventStore
from registry.projections import Projections


@pytest.fixture
def make_store(db_url):
    """Factory: ``make_store(projector=Projections(), **kw)`` opens another store on this test's database."""
    opened: list[EventStore] = []

    def make(projector=None, **kwargs) -> EventStore:
        store = EventStore(db_url, projector=Projections() if projector is None else projector, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store) -> EventStore:
    """A store with the registry's projections on a fresh database (SQLite file or PostgreSQL)."""
    return make_store()
