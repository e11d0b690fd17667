"""The live event feed: server-sent events fed by ``Registry.follow``.

``follow`` blocks, so it runs in a worker thread; each connection has a ``threading.Event`` that
stops its ``follow`` when the client goes away or the server shuts down. An idle feed sends a comment
line every ``HEARTBEAT`` seconds, which also lets the server notice a client that left.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio

from rlreg.output import event_summary, to_jsonable

HEARTBEAT = 15.0  # seconds without an event before a keep-alive comment


def sse_message(event: Any) -> str:
    """One SSE message: the event as ``rlreg events --json`` has it plus a one-line ``summary``;
    ``id`` is the position (a reconnecting browser sends it back as ``Last-Event-ID``)."""
    data = json.dumps({**to_jsonable(event), "summary": event_summary(event)}, sort_keys=True, separators=(",", ":"))
    return f"id: {event.position}\nevent: rlreg\ndata: {data}\n\n"


def messages(reg: Any, after: int, stop: threading.Event, *, stream: str | None = None,
             types: frozenset[str] = frozenset()) -> Iterator[str]:
    """SSE messages for events after ``after`` (filtered), with heartbeats, until ``stop`` is set."""
    yield f": following after position {after}\nretry: 1000\n\n"
    sent = time.monotonic()  # when the client last heard from us: a filtered feed of a busy log sends no
    while not stop.is_set():  # event for long while the log moves, and needs its keep-alives all the same
        for event in reg.follow(after=after, timeout=HEARTBEAT, stop=stop):
            after = event.position
            if (stream is None or event.stream == stream) and (not types or event.type in types):
                yield sse_message(event)
                sent = time.monotonic()
            elif time.monotonic() - sent >= HEARTBEAT:
                yield ": keep-alive\n\n"
                sent = time.monotonic()
        if not stop.is_set():
            yield ": keep-alive\n\n"
            sent = time.monotonic()


class Feeds:
    """The stop flags of the open feeds, so a shutdown ends every ``follow``."""

    def __init__(self) -> None:
        self._open: set[threading.Event] = set()
        self._lock = threading.Lock()

    def stop_all(self) -> None:
        """Stop every open feed (the server is shutting down)."""
        with self._lock:
            for stop in self._open:
                stop.set()

    async def stream(self, reg: Any, after: int, **filters: Any) -> AsyncIterator[str]:
        """Messages for one client, each ``next`` in a worker thread; stops ``follow`` when cancelled."""
        stop = threading.Event()
        with self._lock:
            self._open.add(stop)
        source = messages(reg, after, stop, **filters)
        try:
            while True:
                message = await anyio.to_thread.run_sync(next, source, None, abandon_on_cancel=True)
                if message is None:
                    return
                yield message
        finally:
            stop.set()
            with self._lock:
                self._open.discard(stop)
