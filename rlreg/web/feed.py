"""The live event feed: server-sent events fed by ``Registry.follow``.

``follow`` blocks, so each feed runs it on a thread of its own (``_pump``), for as long as the client
stays, on one database connection of its own (``EventStore.follow``); the thread hands the messages to
the event loop through a small memory stream, and the feed's coroutine waits on that stream, holding
no worker thread: idle feeds, however many, leave the threads of the server's other requests alone
(forty feeds each holding one of anyio's forty worker threads for up to a heartbeat froze every page).
A feed sends a comment line when ``HEARTBEAT`` seconds passed without a message, filtered out or not,
which also lets the server notice a client that left. A ``threading.Event`` per feed stops its
``follow`` when the client goes away or the server shuts down (``Feeds.stop_all``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from rlreg.output import event_summary, to_jsonable

log = logging.getLogger(__name__)

HEARTBEAT = 15.0  # seconds without a message before a keep-alive comment
BUFFER = 256  # messages a slow client may fall behind before its feed's thread waits for it


def sse_message(event: Any) -> str:
    """One SSE message: the event as ``rlreg events --json`` has it plus a one-line ``summary``;
    ``id`` is the position (a reconnecting browser sends it back as ``Last-Event-ID``)."""
    data = json.dumps({**to_jsonable(event), "summary": event_summary(event)}, sort_keys=True, separators=(",", ":"))
    return f"id: {event.position}\nevent: rlreg\ndata: {data}\n\n"


def _pump(reg: Any, after: int, stop: threading.Event, send: Any, token: Any, stream: str | None,
          types: frozenset[str]) -> None:
    """On the feed's thread: follow the log after ``after`` and send each matching event's message to the
    event loop, until ``stop``, the client leaves (the stream is closed) or ``follow`` fails (logged: the
    browser reconnects after ``retry`` with ``Last-Event-ID``); then close the stream."""
    try:
        for event in reg.follow(after=after, stop=stop):
            if (stream is None or event.stream == stream) and (not types or event.type in types):
                try:
                    anyio.from_thread.run(send.send, sse_message(event), token=token)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError):
                    return  # the client left, or the event loop is gone (the server stopped)
    except Exception as exc:  # noqa: BLE001 - the database went away or the registry closed: end this feed
        log.warning("a live feed ended after position %d: %s", after, exc)
    finally:
        stop.set()
        try:
            anyio.from_thread.run_sync(send.close, token=token)
        except RuntimeError:  # (the event loop is gone)
            pass


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

    async def stream(self, reg: Any, after: int, *, stream: str | None = None,
                     types: frozenset[str] = frozenset()) -> AsyncIterator[str]:
        """Messages for one client: its events after ``after`` (filtered), a keep-alive every
        ``HEARTBEAT`` s without one; stops the feed's ``follow`` when the client goes away."""
        stop = threading.Event()
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=BUFFER)
        with self._lock:
            self._open.add(stop)
        thread = threading.Thread(target=_pump, args=(reg, after, stop, send, anyio.lowlevel.current_token(),
                                                      stream, types), name="rlreg-feed", daemon=True)
        try:
            thread.start()
            yield f": following after position {after}\nretry: 1000\n\n"
            while True:
                message = None
                with anyio.move_on_after(HEARTBEAT):
                    message = await receive.receive()
                yield ": keep-alive\n\n" if message is None else message
        except anyio.EndOfStream:  # the feed's thread ended (stopped, or follow failed)
            return
        finally:
            stop.set()
            receive.close()  # (a thread waiting to send is told the client left)
            with self._lock:
                self._open.discard(stop)
