"""A thin adapter from eventsourcing 9.5.6's recorder roles onto rlreg's ``EventStore``, for its contract tests.

- An aggregate sequence is a stream named ``str(originator_id)``; a stored event is a JSON payload
  ``{"version": originator_version, "state": base64(state)}`` of type ``topic``.
- eventsourcing numbers a sequence from any first version (usually 1, sometimes 0), rlreg's stream
  versions from 1: a stream's first event fixes the offset, and an insert expects the stream at
  ``first version - offset``. A conflict (a version already taken) is eventsourcing's ``IntegrityError``.
- Notifications are positions; tracking records are consumer checkpoints, saved in the same
  transaction as the events (``append(conn=...)`` and ``set_checkpoint``).
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import groupby
from typing import Any, Optional

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    IntegrityError,
    Notification,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)

from registry import errors
from registry.eventstore import Event, EventStore, NewEvent


@contextmanager
def _integrity() -> Iterator[None]:
    try:
        yield
    except errors.ConflictError as e:
        raise IntegrityError(str(e)) from e


class EventStoreAggregateRecorder(AggregateRecorder):
    """``insert_events``/``select_events`` on an ``EventStore``."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.offsets: dict[str, int] = {}

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Optional[Sequence[int]]:
        self._insert(stored_events, kwargs.get("tracking"))
        return None

    def _insert(self, stored_events: Sequence[StoredEvent], tracking: Optional[Tracking]) -> list[Event]:
        batches = [list(group) for _, group in groupby(stored_events, key=lambda e: str(e.originator_id))]
        with _integrity():
            if len(batches) == 1 and tracking is None:
                return self._append(batches[0], None)
            with self.store.transaction() as conn:
                recorded = [e for batch in batches for e in self._append(batch, conn)]
                if tracking is not None:
                    self.store.set_checkpoint(tracking.application_name, tracking.notification_id, conn)
                return recorded

    def _append(self, batch: list[StoredEvent], conn: Any) -> list[Event]:
        stream, first = str(batch[0].originator_id), batch[0].originator_version
        if [e.originator_version for e in batch] != list(range(first, first + len(batch))):
            raise errors.ConflictError(f"{stream}: versions of one insert must follow each other")
        offset = self._offset(stream, first)
        if first < offset:
            raise errors.ConflictError(f"{stream}: version {first} is before the sequence's first ({offset})")
        new = [NewEvent(e.topic, {"version": e.originator_version, "state": base64.b64encode(e.state).decode()})
               for e in batch]
        recorded = self.store.append(stream, new, expected_version=first - offset, conn=conn)
        self.offsets.setdefault(stream, offset)
        return recorded

    def _offset(self, stream: str, first: int) -> int:
        if stream not in self.offsets:
            head = self.store.read_stream(stream)[:1]
            return head[0].payload["version"] if head else first
        return self.offsets[stream]

    def select_events(self, originator_id: Any, *, gt: Optional[int] = None, lte: Optional[int] = None,
                      desc: bool = False, limit: Optional[int] = None) -> Sequence[StoredEvent]:
        events = [
            e for e in self.store.read_stream(str(originator_id))
            if (gt is None or e.payload["version"] > gt) and (lte is None or e.payload["version"] <= lte)
        ]
        if desc:
            events.reverse()
        return [_stored(e) for e in events[:limit]]


class EventStoreApplicationRecorder(EventStoreAggregateRecorder, ApplicationRecorder):
    """Notifications are the log's positions."""

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Optional[Sequence[int]]:
        if not stored_events and kwargs.get("tracking") is None:
            return []
        return [e.position for e in self._insert(stored_events, kwargs.get("tracking"))]

    def select_notifications(self, start: Optional[int], limit: int, stop: Optional[int] = None,
                             topics: Sequence[str] = (), *, inclusive_of_start: bool = True) -> Sequence[Notification]:
        after = 0 if start is None else start - 1 if inclusive_of_start else start
        found: list[Notification] = []
        while len(found) < limit:
            page = self.store.events(after, limit=max(limit, 100))
            for event in page:
                if stop is not None and event.position > stop:
                    return found
                if not topics or event.type in topics:
                    found.append(_notification(event))
                    if len(found) == limit:
                        return found
            if not page:
                return found
            after = page[-1].position
        return found

    def max_notification_id(self) -> Optional[int]:
        return self.store.head() or None

    def subscribe(self, gt: Optional[int] = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        return FollowSubscription(self, gt, topics)


class FollowSubscription(Subscription[EventStoreApplicationRecorder]):
    """``EventStore.follow`` behind eventsourcing's subscription interface."""

    def __init__(self, recorder: EventStoreApplicationRecorder, gt: Optional[int], topics: Sequence[str]) -> None:
        super().__init__(recorder, gt, topics)
        self._stop = threading.Event()
        self._events = recorder.store.follow(gt or 0, stop=self._stop)

    def stop(self) -> None:
        super().stop()
        self._stop.set()

    def __next__(self) -> Notification:
        while not self._has_been_stopped:
            event = next(self._events)
            if not self._topics or event.type in self._topics:
                return _notification(event)
        raise StopIteration


class EventStoreTrackingRecorder(TrackingRecorder):
    """Tracking records are consumer checkpoints (positions of this store's own log)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def insert_tracking(self, tracking: Tracking) -> None:
        with _integrity():
            self.store.set_checkpoint(tracking.application_name, tracking.notification_id)

    def max_tracking_id(self, application_name: str) -> Optional[int]:
        return self.store.get_checkpoint(application_name) or None


class EventStoreProcessRecorder(EventStoreTrackingRecorder, EventStoreApplicationRecorder, ProcessRecorder):
    """Events and their tracking record in one transaction."""

    def __init__(self, store: EventStore) -> None:
        EventStoreApplicationRecorder.__init__(self, store)


def _stored(event: Event) -> StoredEvent:
    return StoredEvent(_originator(event.stream), event.payload["version"], event.type,
                       base64.b64decode(event.payload["state"]))


def _notification(event: Event) -> Notification:
    return Notification(originator_id=_originator(event.stream), originator_version=event.payload["version"],
                        topic=event.type, state=base64.b64decode(event.payload["state"]), id=event.position)


def _originator(stream: str) -> Any:
    try:
        return uuid.UUID(stream)
    except ValueError:
        return stream
