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
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from rlreg.output import event_summary, to_jsonable
from rlreg.web.errors import TooManyFeedsError

log = logging.getLogger(__name__)

HEARTBEAT = 15.0  # seconds without a message before a keep-alive comment
BUFFER = 256  # messages a slow client may fall behind before its feed's thread waits for it
MAX_FEEDS = 64  # feeds open at once: each holds a thread and a database connection (PostgreSQL: a session)
RETRY = (0.5, 5.0)  # seconds: first and longest wait before following again once the database went away


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
    from registry.errors import DatabaseUnavailableError

    wait = RETRY[0]
    try:
        while not stop.is_set():
            try:
                for event in reg.follow(after=after, stop=stop):
                    wait = RETRY[0]
                    if (stream is None or event.stream == stream) and (not types or event.type in types):
                        try:
                            anyio.from_thread.run(send.send, sse_message(event), token=token)
                        except (anyio.BrokenResourceError, anyio.ClosedResourceError, RuntimeError):
                            return  # the client left, or the event loop is gone (the server stopped)
                    after = event.position
                return  # (stopped)
            except DatabaseUnavailableError as exc:  # (a restart: follow again after the last event sent, as
                log.warning("a live feed lost the database after position %d (%s): following again in %.1f s",
                            after, exc, wait)  # the CLI's tail does; the client hears keep-alives meanwhile)
                stop.wait(wait)
                wait = min(wait * 2, RETRY[1])
    except Exception as exc:  # noqa: BLE001 - the registry closed, or another failure: end this feed
        log.warning("a live feed ended after position %d: %s", after, exc)
    finally:
        stop.set()
        try:
            anyio.from_thread.run_sync(send.close, token=token)
        except RuntimeError:  # (the event loop is gone)
            pass


class Feeds:
    """The open feeds (each its stop flag and its stream's receiving end), so that a shutdown ends every
    one, and no more than ``MAX_FEEDS`` are open at once."""

    def __init__(self) -> None:
        self._open: dict[threading.Event, Any] = {}
        self._reserved = 0  # feeds admitted whose stream has not started yet
        self._lock = threading.Lock()

    def stop_all(self) -> None:
        """Stop every open feed (the server is shutting down; on the event loop): each ``follow`` is told to
        stop, and each stream closed, so that a feed's thread waiting to send to a client that stopped
        reading is let go too (it held the shutdown until uvicorn cancelled the feed, with a traceback)."""
        with self._lock:
            opened = list(self._open.items())
        for stop, receive in opened:
            stop.set()
            receive.close()

    def open(self, reg: Any, after: int, **filters: Any) -> AsyncIterator[str]:
        """``stream(...)`` for a new client, refused (``TooManyFeedsError``, 503) while ``MAX_FEEDS`` are open
        or admitted. The slot is taken here, at once (requests arriving together all passed a count of
        the feeds already streaming), and handed to the stream when it starts, or given back if it never
        does (the client left before its response began)."""
        with self._lock:
            if len(self._open) + self._reserved >= MAX_FEEDS:
                raise TooManyFeedsError(f"{MAX_FEEDS} live feeds are open on this server, as many as it keeps: "
                                        "try again later (a page reconnects by itself)")
            self._reserved += 1
        held = [True]

        def unreserve() -> None:
            with self._lock:
                if held[0]:
                    held[0] = False
                    self._reserved -= 1

        messages = self.stream(reg, after, started=unreserve, **filters)
        weakref.finalize(messages, unreserve)  # (never started: given back once the response is dropped)
        return messages

    async def stream(self, reg: Any, after: int, *, stream: str | None = None,
                     types: frozenset[str] = frozenset(), started: Any = None) -> AsyncIterator[str]:
        """Messages for one client: its events after ``after`` (filtered), a keep-alive every
        ``HEARTBEAT`` s without one; stops the feed's ``follow`` when the client goes away."""
        stop = threading.Event()
        send, receive = anyio.create_memory_object_stream[str](max_buffer_size=BUFFER)
        if started is not None:
            started()  # (its reservation becomes the open feed below)
        with self._lock:
            self._open[stop] = receive
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
        except (anyio.EndOfStream, anyio.ClosedResourceError):  # the feed's thread ended, or stop_all closed it
            return
        finally:
            stop.set()
            receive.close()  # (a thread waiting to send is told the client left)
            with self._lock:
                self._open.pop(stop, None)


