"""eventsourcing 9.5.6's own recorder contract tests (``eventsourcing.tests.persistence``, from the
installed package) against ``EventStore`` through ``es_adapter``, on SQLite and PostgreSQL.

Tests it cannot pass are marked ``xfail(strict=True)`` with the reason, so a change that makes one
pass (or one that breaks another) is seen: see ``CANNOT_PASS``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("eventsourcing", reason="eventsourcing is a test dependency (pip install 'rlreg[test]')")

from es_adapter import (  # noqa: E402
    EventStoreAggregateRecorder,
    EventStoreApplicationRecorder,
    EventStoreProcessRecorder,
    EventStoreTrackingRecorder,
)
from eventsourcing.tests.persistence import (  # noqa: E402
    AggregateRecorderTestCase,
    ApplicationRecorderTestCase,
    NonInterleavingNotificationIDsBaseCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)

from registry.eventstore import EventStore  # noqa: E402

PAST_HEAD = (
    "rlreg's checkpoints are positions in the store's own log and are refused past its head; "
    "eventsourcing's tracking records positions of another (upstream) application's log"
)
CANNOT_PASS = {
    "test_insert_tracking": PAST_HEAD,
    "test_wait": PAST_HEAD,
    "test_has_tracking_id": PAST_HEAD,
    "test_raises_when_lower_inserted_later": PAST_HEAD,
}


class _OnEventStore:
    """Each test gets a store on an empty database of its backend; ``create_recorder`` wraps it."""

    backend = "sqlite"
    adapter: type

    @pytest.fixture(autouse=True)
    def _database(self, request):
        url = request.getfixturevalue("sqlite_url" if self.backend == "sqlite" else "pg_store_url")
        self.store = EventStore(url)
        yield
        self.store.close()

    def create_recorder(self):
        return self.adapter(self.store)


def _cases(base: type, adapter: type, **extra) -> dict[str, type]:
    made = {}
    for backend in ("sqlite", "postgresql"):
        name = f"Test{base.__name__.removesuffix('TestCase').removesuffix('BaseCase')}{backend.title()}"
        marks = {
            test: pytest.mark.xfail(reason=reason, strict=True)(getattr(base, test))
            for test, reason in CANNOT_PASS.items() if hasattr(base, test)
        }
        made[name] = type(name, (_OnEventStore, base), {"backend": backend, "adapter": adapter, **marks, **extra})
    return made


globals().update(_cases(AggregateRecorderTestCase, EventStoreAggregateRecorder))
globals().update(_cases(ApplicationRecorderTestCase, EventStoreApplicationRecorder,
                        test_insert_subscribe=lambda self: self.optional_test_insert_subscribe()))
globals().update(_cases(NonInterleavingNotificationIDsBaseCase, EventStoreApplicationRecorder))
globals().update(_cases(TrackingRecorderTestCase, EventStoreTrackingRecorder))
globals().update(_cases(ProcessRecorderTestCase, EventStoreProcessRecorder))
