"""Wake-ups for ``EventStore.follow``: they only say "something committed"; the follower then reads by position.

PostgreSQL: every append ``pg_notify``s a channel at commit; the follower ``LISTEN``s on a connection
of its own (taken out of the engine's pool, and read on too) and re-reads once a second even without
a notification (a lost connection or a write by another tool cannot stall it for longer). SQLite: ``PRAGMA data_version`` on a connection of its own
changes whenever another connection commits; checking it costs microseconds and reads nothing from
the log: every 2 ms while the database is busy, every 20 ms once nothing was committed for a second
(an idle follower then costs a tenth of the CPU: 60 idle feeds of the web app took 44% of a core;
the first event after a quiet second waits at most 20 ms). Positions stay the only ordering: a
wake-up carries no events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional, Protocol

from sqlalchemy.engine import Engine

from registry import db
from registry.eventlog import CHANNEL

SAFETY_READ = 1.0  # seconds: the longest a PostgreSQL follower waits without re-reading
SQLITE_CHECK = 0.002  # seconds between two data_version checks while the database is busy
SQLITE_IDLE_CHECK = 0.02  # seconds between them once it was quiet for SQLITE_QUIET
SQLITE_QUIET = 1.0  # seconds without a commit after which a follower checks less often
STOP_CHECK = 0.05  # seconds: how often a follower blocked on PostgreSQL looks at ``stop``


class Waker(Protocol):
    """Marks the log's state before a read, then waits until it may have changed; ``driver``: its own
    connection, on which the follower reads too (``None``: the follower reads through the pool)."""

    driver: Any

    def mark(self) -> None:
        """Remember the current state (call before reading the log)."""

    def wait(self, seconds: float, stop: Optional[threading.Event]) -> None:
        """Return once the log may have changed since ``mark``, after ``seconds``, or when ``stop`` is set."""


class Sleeper:
    """Plain polling: wait ``interval`` s whatever happens (``follow(poll_interval=...)``)."""

    driver = None

    def __init__(self, interval: float) -> None:
        self.interval = interval

    def mark(self) -> None:
        """Nothing to remember."""

    def wait(self, seconds: float, stop: Optional[threading.Event]) -> None:
        """Sleep ``min(seconds, interval)``."""
        _sleep(min(seconds, self.interval), stop)


class SQLiteWaker:
    """Waits for ``PRAGMA data_version`` to change on its own connection."""

    def __init__(self, driver: Any) -> None:
        self.driver, self.version = driver, None
        self.changed = time.monotonic()  # when the data version was last seen to change

    def _data_version(self) -> int:
        return self.driver.execute("PRAGMA data_version").fetchone()[0]

    def mark(self) -> None:
        """Remember the data version."""
        version = self._data_version()
        if version != self.version:
            self.version, self.changed = version, time.monotonic()

    def wait(self, seconds: float, stop: Optional[threading.Event]) -> None:
        """Check the data version (every 2 ms, or 20 ms after a quiet second) until it changes, ``seconds``
        pass or ``stop`` is set."""
        now = time.monotonic()
        deadline = now + seconds
        while self._data_version() == self.version:
            if (stop is not None and stop.is_set()) or now >= deadline:
                return
            quiet = now - self.changed >= SQLITE_QUIET
            _sleep(min(SQLITE_IDLE_CHECK if quiet else SQLITE_CHECK, deadline - now), stop)
            now = time.monotonic()


class PostgresWaker:
    """``LISTEN``s on its own autocommit connection."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        driver.execute(f"LISTEN {CHANNEL}")

    def mark(self) -> None:
        """Drop notifications already received: the read that follows covers them."""
        for _ in self.driver.notifies(timeout=0):
            pass

    def wait(self, seconds: float, stop: Optional[threading.Event]) -> None:
        """Block until a notification, ``seconds`` (at most the safety interval) or ``stop``."""
        deadline = time.monotonic() + min(seconds, SAFETY_READ)
        while (stop is None or not stop.is_set()) and (left := deadline - time.monotonic()) > 0:
            for _ in self.driver.notifies(timeout=min(left, STOP_CHECK), stop_after=1):
                return


@contextmanager
def waker(engine: Engine, poll_interval: Optional[float]) -> Iterator[Waker]:
    """The waker for ``engine``: push (LISTEN or data_version) unless ``poll_interval`` asks for polling."""
    if poll_interval is not None:
        yield Sleeper(poll_interval)
        return
    sqlite = db.is_sqlite(engine)
    if sqlite and engine.url.database in (None, "", ":memory:"):
        yield Sleeper(SQLITE_CHECK)  # one shared connection: data_version never sees "another" writer
        return
    # A connection of the follower's own, not one of the pool's: a process may follow many times at once
    # (a web page's live feeds), and a follower may run for hours. It is closed when the follower ends
    # (a LISTEN ends with it: nothing to undo, even on a connection the server dropped).
    with db.own_connection(engine, "following the log", autocommit=True) as driver:
        yield SQLiteWaker(driver) if sqlite else PostgresWaker(driver)


def _sleep(seconds: float, stop: Optional[threading.Event]) -> None:
    if stop is not None:
        stop.wait(seconds)
    else:
        time.sleep(seconds)
