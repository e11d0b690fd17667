"""Engines for SQLite and PostgreSQL URLs, and the schema's status and upgrade through Alembic."""

from __future__ import annotations

import contextlib
import ast
import dataclasses
import functools
import json
import os
import re
import sqlite3
import sys
import threading
import time
import urllib.parse
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Optional, Union

import sqlalchemy as sa
from filelock import FileLock, Timeout

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from registry import errors

SQLITE_BUSY_TIMEOUT = 60.0  # seconds a writer waits for SQLite's write lock
WRITE = "rlreg_write"  # execution option: begin with BEGIN IMMEDIATE on SQLite
UPGRADE_COMMAND = "rlreg db upgrade"
_MISSING_DATABASE = re.compile(r'database "([^"]*)" does not exist')
_ADVISORY_LOCK_KEY = zlib.crc32(b"rlreg.schema") & 0x7FFFFFFF


def normalize_url(url: Union[str, URL]) -> URL:
    """A SQLAlchemy URL: ``postgresql://`` uses psycopg 3; a plain path means a SQLite file."""
    if isinstance(url, str) and "://" not in url:
        url = f"sqlite:///{Path(url).expanduser()}"
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError) as e:
        raise errors.DatabaseUnavailableError(
            f"database URL {_shown_url(url)!r} is not a URL: expected sqlite:///path or postgresql://user@host/db"
        ) from e
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _shown_url(url: Union[str, URL]) -> str:
    """``url`` for an error message, its password hidden."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", str(url))


def is_sqlite(engine: Union[Engine, Connection]) -> bool:
    """True for a SQLite engine or connection."""
    return engine.dialect.name == "sqlite"


class ChangeCounter:
    """SQLite's ``PRAGMA data_version`` read on a connection of its own, which never writes: its value
    changes whenever any other connection, of this process or another, commits to the file. A reader
    that takes the value before it reads may keep what it read while the value stays the same."""

    def __init__(self, engine: Engine) -> None:
        self._engine, self._lock = engine, threading.Lock()
        self._conn: Any = None
        self._pid, self._opened = -1, 0

    def value(self) -> tuple[int, int]:
        """``(which connection, its data_version now)``: the counts of two connections do not compare
        (each starts afresh), so a value read on a connection opened since (after ``close()``, in a forked
        child) never equals one read before."""
        with self._lock:
            if self._conn is None or self._pid != os.getpid():  # a forked child opens its own
                if self._conn is not None and self._pid != os.getpid():  # the parent's: kept, never closed
                    _INHERITED.append(self._conn)
                conn = self._engine.pool.recreate().connect()  # a new connection, never one a parent opened
                conn.detach()  # no pool's: held until close()
                self._conn, self._pid, self._opened = conn.dbapi_connection, os.getpid(), self._opened + 1
            return self._opened, self._conn.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid != os.getpid():
                _INHERITED.append(self._conn)  # a parent's: dropped, it would be closed (by its finaliser)
            elif self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None


def change_counter(engine: Engine) -> Optional[ChangeCounter]:
    """A ``ChangeCounter`` for a SQLite file; None elsewhere (PostgreSQL has no such counter)."""
    if not is_sqlite(engine) or engine.url.database in (None, "", ":memory:"):
        return None
    return ChangeCounter(engine)


def analyze(engine: Engine, tables: Any = None) -> bool:
    """Refresh PostgreSQL's planner statistics of ``tables`` (default: every table) after a bulk fill.

    A table filled in one go (``rebuild_projections``, a bench's fill) has no statistics until
    autovacuum gets to it, and the planner then guesses about one row for every condition: sorting
    10,000 versions by a metadata key took seconds instead of milliseconds. SQLite keeps no such
    statistics unless asked and plans these queries well without them: nothing is done there.
    Returns whether anything ran.
    """
    if engine.dialect.name != "postgresql":
        return False
    names = ", ".join(engine.dialect.identifier_preparer.format_table(t) for t in tables or ())
    with translate_errors("analyzing the tables"), engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"ANALYZE {names}".strip())
    return True


# --- JSON encoded once ---------------------------------------------------------------------------

_ENCODED: ContextVar[Optional[dict[int, tuple[Any, str]]]] = ContextVar("rlreg_encoded_json", default=None)


@contextlib.contextmanager
def json_encoded(value: Any, text: str) -> Iterator[None]:
    """Within the block (this thread or task), the JSON of this very object ``value`` is ``text``: an
    append's payload encoder and the engines' JSON columns take it rather than encode it once more (a
    snapshot's manifest goes into its event and into its versions row: 2,000 tensors, ~7 ms each).
    ``value`` must not change within the block."""
    known = dict(_ENCODED.get() or {})
    known[id(value)] = (value, text)
    token = _ENCODED.set(known)
    try:
        yield
    finally:
        _ENCODED.reset(token)


def encoding_json() -> bool:
    """Whether a ``json_encoded`` block is open here (one look, before asking for each value)."""
    return bool(_ENCODED.get())


def encoded_json(value: Any) -> Optional[str]:
    """The text ``json_encoded`` gave ``value`` (this very object), else None."""
    known = _ENCODED.get()
    if known:
        hit = known.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
    return None


def json_serializer(value: Any) -> str:
    """The engines' JSON serializer: ``json.dumps``, or the text ``json_encoded`` gave ``value``."""
    text = encoded_json(value)
    return json.dumps(value) if text is None else text


def create_engine(url: Union[str, URL], *, create: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writes.

    A SQLite file is created on first use only with ``create`` (its folder must exist either way);
    without it a missing file raises ``NotFoundError`` instead of becoming an empty database.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_file(parsed, create)
        return _sqlite_engine(parsed, **kwargs)
    if parsed.get_backend_name() != "postgresql":
        raise errors.DatabaseUnavailableError(
            f"database URL {parsed.render_as_string(hide_password=True)!r}: only sqlite:/// and postgresql:// are supported"
        )
    kwargs.setdefault("json_serializer", json_serializer)
    connect_args = {"options": "-c TimeZone=UTC"}  # timestamps come back in UTC, as they went in
    connect_args.update(kwargs.pop("connect_args", {}))
    try:
        engine = sa.create_engine(parsed, connect_args=connect_args, **kwargs)
    except ImportError as e:  # postgresql+psycopg2:// without psycopg2, ...
        raise errors.DatabaseUnavailableError(
            f"database URL {parsed.render_as_string(hide_password=True)!r}: its driver "
            f"{parsed.get_driver_name()!r} is not installed ({e}): use postgresql+psycopg:// "
            "(pip install 'rlreg[postgres]') or install that driver"
        ) from e
    _refuse_once_closed(engine)
    _ping_idle_connections(engine)
    return engine


_REFUSALS: weakref.WeakKeyDictionary[Engine, Callable[[], BaseException]] = weakref.WeakKeyDictionary()


def _refuse_once_closed(engine: Engine) -> None:
    """The first ``do_connect`` listener of every engine made here: once ``close_for_good(engine)`` ran,
    no connection is made (SQLAlchemy ignores ``insert=True`` for dialect events, so it must come first)."""
    ref = weakref.ref(engine)  # (the listener lives on the engine's dialect: no cycle through it)

    @event.listens_for(engine, "do_connect")
    def _refuse(*_: Any) -> None:
        refusal = _REFUSALS.get(ref())
        if refusal is not None:
            raise refusal()


def close_for_good(engine: Engine, refusal: Callable[[], BaseException]) -> None:
    """Release ``engine``'s pooled connections; every later connection attempt raises ``refusal()``
    (a disposed engine would otherwise connect again on its next use)."""
    _REFUSALS[engine] = refusal
    engine.dispose()


PING_AFTER_IDLE = 1.0  # seconds a pooled connection may sit unused before its next checkout pings it


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection on checkout only if it sat idle (``pool_pre_ping`` pings every time).

    A ping is a round trip; an append is one, so pinging busy connections would double its cost.
    A connection idle for a while may have been dropped by the server: that one is pinged, and a
    dead one is replaced (``DisconnectionError`` makes the pool retry with a new connection).
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER_IDLE:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as e:
            raise exc.DisconnectionError(f"ping failed: {e}") from e
        if not alive:
            raise exc.DisconnectionError("ping failed")


def _check_sqlite_file(url: URL, create: bool) -> None:
    """Refuse a SQLite file whose folder is missing, or (unless ``create``) that does not exist."""
    database = url.database
    if database in (None, "", ":memory:") or database.startswith("file:"):
        return
    path = Path(database)
    where = url.render_as_string(hide_password=True)
    if path.exists():
        if path.is_dir():
            raise errors.DatabaseUnavailableError(f"database URL {where!r}: {str(path)!r} is a folder, not a SQLite file")
        return
    if not path.parent.is_dir():
        raise errors.DatabaseUnavailableError(
            f"database URL {where!r}: the folder {str(path.parent.absolute())!r} does not exist "
            "(check the URL, or create the folder first)"
        )
    if not create:
        raise errors.NotFoundError(
            f"no registry database at {where!r}: the file {str(path.absolute())!r} does not exist "
            f"(check the URL; to start a registry there run `{UPGRADE_COMMAND}` or record a version)"
        )


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False}
    connect_args.update(kwargs.pop("connect_args", {}))
    if url.database in (None, "", ":memory:"):
        kwargs.setdefault("poolclass", sa.pool.StaticPool)  # one connection: the in-memory database
    read_only = _read_only_uri(url.database)
    kwargs.setdefault("json_serializer", json_serializer)
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    _refuse_once_closed(engine)
    if read_only is not None:  # (a listener, not a creator=, which would skip the one above)
        @event.listens_for(engine, "do_connect")
        def _read_only(*_: Any) -> Any:
            return sqlite3.connect(read_only, uri=True, **connect_args)

    # pysqlite's own transaction handling is switched off so that we issue BEGIN ourselves
    # (SQLAlchemy's "Serializable isolation / Savepoints / Transactional DDL" recipe).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        if read_only is None:
            _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")  # WAL + FULL: an acknowledged commit survives power loss
        cursor.close()

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:  # lets translate_errors tell a full disk from a locked file
        with contextlib.suppress(AttributeError, TypeError):
            context.original_exception.rlreg_sqlite_file = url.database

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _read_only_uri(database: str | None) -> str | None:
    """A read-only SQLite URI for an existing file in a folder this process cannot write, else None.

    A WAL database needs its ``-shm`` file beside it, which a read-only folder cannot get: SQLite
    then opens nothing ("unable to open database file"). Read-only, and ``immutable`` unless the
    ``-wal`` and ``-shm`` files are already there, it reads; nobody can write it through this folder
    anyway, and every write is refused with ``DatabaseReadOnlyError``.
    """
    if database in (None, "", ":memory:") or database.startswith("file:") or not os.path.isfile(database):
        return None
    if os.access(os.path.dirname(os.path.abspath(database)) or ".", os.W_OK):
        return None
    wal_files = all(os.path.exists(database + suffix) for suffix in ("-wal", "-shm"))
    return f"file:{urllib.parse.quote(os.path.abspath(database))}?mode=ro" + ("" if wal_files else "&immutable=1")


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent, so usually already done).

    Changing the journal mode needs an exclusive lock, and SQLite may answer "database is locked"
    at once instead of waiting in its busy handler while other processes open the same new file
    (several processes starting on one empty database): retry until the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    delay = 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def sqlite_writer_queue(engine: Union[Engine, Connection]) -> "WriterQueue":
    """On a SQLite file, queue writers on a blocking ``flock`` beside the database (a context manager).

    ``BEGIN IMMEDIATE`` alone is correct, but a waiting writer polls in SQLite's busy handler with
    back-off sleeps of up to 100 ms, which throttles many writers to a few dozen appends per second;
    a blocking lock hands over at once. Without ``fcntl`` (Windows) the busy timeout does it alone.
    """
    database = engine.url.database if is_sqlite(engine) else None
    if fcntl is None or database in (None, "", ":memory:") or database.startswith("file:"):
        return _NO_QUEUE
    return WriterQueue(f"{database}.writer.lock")


LINGER = 0.0005  # s a writer keeps the queue after its commit, for its own next append
STREAK = 0.005  # s at most in a row: then the next writer in the queue goes
CONTENDED = 0.1  # s after a writer last found the queue taken during which it keeps it (alone: never)


class WriterQueue:
    """The writer queue of one SQLite file; re-entrant per thread (an append inside ``transaction()``).

    A writer that commits keeps the lock for ``LINGER`` (0.5 ms) in case it appends again, up to
    ``STREAK`` (5 ms) in a row: a hand-off to another process costs a wake-up and a context switch
    (~110 us an append with 8 writers on 2 cores), so writers in a burst append in streaks, as SQLite's
    busy handler makes them without a queue. A writer that stops lets go ``LINGER`` later (``_Linger``).
    A writer keeps the lock only while there are others: within ``CONTENDED`` (0.1 s) of finding it
    taken. Alone, it lets go at each commit, as no one gains from a streak and ``_Linger``'s wake-ups
    would cost it (8% of a fill's appends).

    A class, not a generator: it is entered once per append, where a ``contextmanager``'s generator
    cost as much as the lock's two system calls. Its state is the thread's ``_Held`` entry.
    """

    __slots__ = ("path",)

    def __init__(self, path: Optional[str]) -> None:
        self.path = path

    def __enter__(self) -> None:
        if self.path is None:
            return
        entries = _lock_files.__dict__.setdefault("entries", {})
        key = (_pid, self.path)  # a forked child holds none of its parent's entries
        entry = entries.get(key)
        if entry is not None:
            if entry.depth:  # this thread holds it already: re-enter without locking
                entry.depth += 1
                return
            if entry.lingering and _linger.keep(entry):  # still ours since our last commit
                return
        try:
            lock_file = _lock_file(self.path)
        except OSError:  # a read-only folder: no writer can get through, SQLite refuses the write itself
            lock_file = None
        if entry is None:
            entry = entries[key] = _Held()
        if lock_file is not None:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another writer has it: wait in the queue
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
                entry.contended = time.monotonic()
        entry.depth, entry.file, entry.since = 1, lock_file, time.monotonic()

    def __exit__(self, *exc: object) -> None:
        if self.path is None:
            return
        entry = _lock_files.__dict__["entries"][(_pid, self.path)]
        entry.depth -= 1
        if entry.depth == 0 and entry.file is not None:
            now = time.monotonic()
            if now - entry.since < STREAK and now - entry.contended < CONTENDED:
                _linger.hold(entry, now + LINGER)
            else:
                fcntl.flock(entry.file.fileno(), fcntl.LOCK_UN)


_NO_QUEUE = WriterQueue(None)


class _Held:
    """A thread's hold on one writer queue: its depth, lock file, when it took the lock, when it last had
    to wait for it, and whether it keeps it after its last commit (``lingering``, until ``until``)."""

    __slots__ = ("depth", "file", "since", "lingering", "until", "contended")

    def __init__(self) -> None:
        self.depth, self.file, self.since, self.lingering, self.until = 0, None, 0.0, False, 0.0
        self.contended = -1e9  # when it last found the queue taken (monotonic s; never: long ago)


class _Linger:
    """Lets go of the writer queues whose writers did not append again within ``LINGER`` (a daemon thread
    of this process, started on first use; its entries are only touched under ``_cond``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._held: set[_Held] = set()
        self._thread: Optional[threading.Thread] = None

    def hold(self, entry: _Held, until: float) -> None:
        with self._cond:
            entry.lingering, entry.until = True, until
            if entry in self._held:
                return
            self._held.add(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rlreg-sqlite-writer-queue", daemon=True)
                self._thread.start()
            elif len(self._held) == 1:
                self._cond.notify()

    def keep(self, entry: _Held) -> bool:
        """Take the lock back for another append, if it was not let go meanwhile."""
        with self._cond:
            if not entry.lingering:
                return False
            entry.lingering, entry.depth = False, 1
            return True

    def let_go(self) -> None:
        """Let go of every queue kept after a commit (before a fork: a child inherits the lock files, and
        a lock still held through the child's copy would outlive this process)."""
        with self._cond:
            for entry in self._held:
                if entry.lingering:
                    _let_go(entry)

    def _run(self) -> None:
        cond, held = self._cond, self._held
        with cond:
            while True:
                if not held:
                    cond.wait()
                    continue
                now = time.monotonic()
                for entry in [e for e in held if not (e.lingering and e.until > now)]:
                    held.discard(entry)
                    if entry.lingering:  # not appending again
                        _let_go(entry)
                if held:
                    cond.wait(min(max(min(e.until for e in held) - now, 0.0001), 1.0))


def _let_go(entry: _Held) -> None:
    entry.lingering = False
    try:
        fcntl.flock(entry.file.fileno(), fcntl.LOCK_UN)
    except (OSError, ValueError):  # the thread ended: closing its file let go already
        pass


_linger = _Linger()


_lock_files = threading.local()
_pid = os.getpid()  # this process's id, kept current across fork: os.getpid() is a system call per use


def _forked() -> None:
    global _pid, _linger
    _pid = os.getpid()
    _linger = _Linger()  # the parent's thread (and perhaps its lock's owner) did not come along


os.register_at_fork(before=lambda: _linger.let_go(), after_in_child=_forked)


class _HeldFile:
    """A lock file kept open for its thread's life, closed with the thread's locals (no ResourceWarning)."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "a+b")  # noqa: SIM115 - closed by __del__

    def __del__(self) -> None:
        self.file.close()


def _lock_file(path: str) -> Any:
    """This thread's open lock file (a flock belongs to an open file: one per thread and process)."""
    files = _lock_files.__dict__.setdefault("files", {})
    key = (_pid, path)  # a forked child must not share its parent's open file (nor its lock)
    if key not in files:
        files[key] = _HeldFile(path)
    return files[key].file


def is_driver_error(e: BaseException) -> bool:
    """True for a sqlite3 or psycopg error (psycopg is not imported for it: only SQLite users skip it)."""
    psycopg = sys.modules.get("psycopg")
    return isinstance(e, sqlite3.Error) or (psycopg is not None and isinstance(e, psycopg.Error))


_INHERITED: list[Any] = []  # connections a forked child inherited: kept, never closed (SQLite's advice)


class ThreadConnections:
    """One sqlite3 connection per thread (and process), set up like the engine's, kept while the thread uses it.

    A SQLite append or read costs tens of microseconds in SQLite itself; checking a connection out of
    SQLAlchemy's pool and back costs as much again. Each connection comes from the engine (so its
    connect-time settings apply) and is detached from its pool, which it then never counts against.
    A connection is only ever closed by its own thread (or with the thread): closing one another
    thread is using crashes SQLite. Not for in-memory databases, whose one connection is the database.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine, self.local, self.generation = engine, threading.local(), 0

    def get(self) -> Any:
        """This thread's connection."""
        key = (_pid, self.generation)
        if getattr(self.local, "key", None) != key:  # first use, a forked child, or reopened after close()
            if getattr(self.local, "pid", None) == os.getpid():
                with contextlib.suppress(Exception):
                    self.local.driver.close()
            elif hasattr(self.local, "driver"):  # the parent's: closing it here could drop our own locks
                _INHERITED.append(self.local.driver)
            fairy = self.engine.raw_connection()
            driver = fairy.driver_connection
            fairy.detach()
            self.local.key, self.local.pid, self.local.driver = key, os.getpid(), driver
        return self.local.driver

    def close(self) -> None:
        """Close this thread's connection; other threads' close when they next use the store, or end."""
        self.generation += 1
        if getattr(self.local, "pid", None) == os.getpid():
            with contextlib.suppress(Exception):
                self.local.driver.close()
            del self.local.key, self.local.pid, self.local.driver


@contextlib.contextmanager
def dbapi_connection(engine: Engine, what: str, *, autocommit: bool = False) -> Iterator[Any]:
    """A pooled driver connection (sqlite3 or psycopg) for hand-written SQL, errors mapped as by ``translate_errors``.

    ``autocommit`` (PostgreSQL) makes each statement its own transaction: one round trip, no BEGIN
    or COMMIT. A connection the server dropped is invalidated, never handed out again.
    """
    with translate_errors(what):
        fairy = engine.raw_connection()
        driver = fairy.driver_connection
        switch = autocommit and not is_sqlite(engine)
        try:
            if switch:
                driver.autocommit = True
            yield driver
        except Exception as e:
            if is_driver_error(e) and (getattr(driver, "broken", False) or getattr(driver, "closed", False)):
                fairy.invalidate()
            raise
        finally:
            try:
                if switch and not driver.closed:
                    driver.autocommit = False  # SQLAlchemy's transactions need it off again
            except Exception:  # noqa: BLE001 - a connection we cannot reset is never reused
                fairy.invalidate()
            fairy.close()


@contextlib.contextmanager
def own_connection(engine: Engine, what: str, *, autocommit: bool = False) -> Iterator[Any]:
    """A driver connection of the caller's own for as long as it lasts (a follower's), made as the engine
    makes its connections (its listeners run) but taken out of its pool at once: a caller that keeps
    one for hours does not hold one of the pool's connections (sixteen followers in a process held all
    fifteen, and every other read and write of the process, and on SQLite of other processes, waited
    30 s for one). Closed at the end, never given back; errors mapped as by ``translate_errors``."""
    with translate_errors(what):
        fairy = engine.raw_connection()
        driver = fairy.driver_connection
        fairy.detach()  # (the pool makes another in its place when it needs one)
        try:
            if autocommit and not is_sqlite(engine):
                driver.autocommit = True
            yield driver
        finally:
            with contextlib.suppress(Exception):  # (a connection the server dropped: nothing to close cleanly)
                driver.close()


class translate_errors:  # noqa: N801 - used as a function: ``with translate_errors("what"):``
    """Map driver and SQLAlchemy errors onto ``registry.errors`` (``raise ... from e``).

    A class, not a generator: it wraps every append and read, where a ``contextmanager`` cost more
    than the mapping it guards.
    """

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: Any, e: Optional[BaseException], tb: Any) -> bool:
        if e is None or not isinstance(e, Exception):
            return False
        if isinstance(e, UnicodeEncodeError) and "surrogates" in e.reason:  # text from bytes not UTF-8 (argv)
            raise errors.InvalidEventError(
                f"{self.what}: the text {e.object[max(0, e.start - 20):e.end + 20]!r} holds bytes that are not "
                "UTF-8 (shown as \\udcXX): give it as UTF-8 text") from None
        cause = e
        if is_driver_error(e):  # from hand-written SQL on a driver connection
            cause = _wrap_driver_error(e)
            cause.__cause__ = e
        if not isinstance(cause, exc.SQLAlchemyError):
            return False
        raise _translated(self.what, cause) from cause


def _translated(what: str, e: "exc.SQLAlchemyError") -> errors.RegistryError:
    """The ``registry.errors`` error for a SQLAlchemy error (or a driver error wrapped as one)."""
    if getattr(getattr(e, "orig", None), "sqlstate", None) in _CLASHED:  # rolled back by PostgreSQL: retry it
        return errors.ConflictError(f"{what}: a concurrent transaction clashed with this one, which was rolled "
                                    f"back (retry it): {e.orig}")
    if isinstance(e, exc.OperationalError):
        missing = _MISSING_DATABASE.search(str(e.orig))
        if missing:
            return errors.NotFoundError(
                f"{what}: database {missing.group(1)!r} does not exist on the server: create it "
                f"(`createdb {missing.group(1)}`) or check the URL"
            )
        return _operational_error(what, e)
    if isinstance(e, exc.InterfaceError):
        return errors.DatabaseUnavailableError(f"{what}: the database connection failed: {e.orig}")
    if isinstance(e, exc.IntegrityError):
        return errors.ConflictError(f"{what}: a concurrent write clashed: {e.orig}")
    if isinstance(e, exc.DBAPIError):
        if e.connection_invalidated:
            return errors.DatabaseUnavailableError(f"{what}: the database connection was lost: {e.orig}")
        return errors.RegistryError(f"{what}: database error: {e.orig}")
    return errors.RegistryError(f"{what}: {e}")


_CLASHED = {"40P01"}  # PostgreSQL's deadlock_detected (a serialization failure, 40001, stays "unavailable":
# a hot standby cancels reads with it, which a tail retries by reconnecting)


def _wrap_driver_error(e: BaseException) -> exc.DBAPIError:
    """The SQLAlchemy error a driver error would have become, so one mapping serves both."""
    return exc.DBAPIError.instance(None, None, e, Exception)  # type: ignore[arg-type]


def _operational_error(what: str, e: exc.OperationalError) -> errors.RegistryError:
    """SQLite's full disk and read-only file get errors of their own; the rest is unavailable or locked."""
    text = str(e.orig).lower()
    if "database or disk is full" in text or "no space left" in text or _disk_full(e.orig):
        return errors.DatabaseFullError(
            f"{what}: the database is full (no space left on its disk): {e.orig}; free some space and retry"
        )
    if "readonly database" in text or "read-only" in text:
        return errors.DatabaseReadOnlyError(
            f"{what}: the database is read-only here (a read-only file, folder or filesystem): {e.orig}"
        )
    return errors.DatabaseUnavailableError(f"{what}: the database is unavailable or locked: {e.orig}")


def _disk_full(error: BaseException | None) -> bool:
    """Whether the folder of the SQLite file an error came from has no space left (a "disk I/O error"
    when SQLite cannot even create its ``-shm`` file)."""
    database = getattr(error, "rlreg_sqlite_file", None)
    if not database or database.startswith("file:") or database == ":memory:":
        return False
    try:
        return os.statvfs(os.path.dirname(os.path.abspath(database))).f_bavail == 0
    except (OSError, AttributeError):
        return False


# --- schema: Alembic ------------------------------------------------------------------------


def alembic_config(connection: Optional[Connection] = None) -> Any:
    """An Alembic ``Config`` for the ``migrations`` package, usable from any cwd (no alembic.ini)."""
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).resolve().parent))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@dataclasses.dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against the migrations shipped with this rlreg."""

    current: Optional[str]
    head: str
    known: bool  # the current revision is one of ours (False: the database is newer than us)
    empty: bool  # no rlreg tables at all

    @property
    def up_to_date(self) -> bool:
        """True when the database is at this rlreg's head revision."""
        return self.current == self.head

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the CLI."""
        return dataclasses.asdict(self) | {"up_to_date": self.up_to_date}


def head_revision() -> str:
    """The head revision of the shipped migrations."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations package has no revisions"
    return head


def schema_status(engine: Engine) -> SchemaStatus:
    """The current and head revisions of ``engine``'s database."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    database = engine.url.database
    if is_sqlite(engine) and database not in (None, "", ":memory:") and not database.startswith("file:") \
            and not os.path.exists(database):  # (a connection would make the file: a mistyped path left one)
        return SchemaStatus(current=None, head=head, known=True, empty=True)
    with translate_errors("reading the schema revision"), engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        tables = [t for t in sa.inspect(conn).get_table_names() if t.startswith("rlreg_")]
    known = current is None or _is_known(script, current)
    return SchemaStatus(current=current, head=head, known=known, empty=current is None and not tables)


def _at_shipped_head(engine: Engine) -> Optional[SchemaStatus]:
    """The status when the database is at the shipped head (the usual case), read without importing
    Alembic (a third of a read command's start-up); ``None`` means: ask Alembic."""
    head = _shipped_head()
    if head is None:
        return None
    with translate_errors("reading the schema revision"), engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return SchemaStatus(current=head, head=head, known=True, empty=False) if current == [head] else None


@functools.cache
def _shipped_head() -> Optional[str]:
    """The one revision of ``migrations/versions`` that no other revision follows, read from the files
    (module-level ``revision`` / ``down_revision`` strings); ``None`` when they are not that simple."""
    import migrations

    revisions, parents = set(), set()
    for path in (Path(migrations.__file__).resolve().parent / "versions").glob("*.py"):
        found = {}
        for node in ast.parse(path.read_text()).body:
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and node.value is not None:
                found[target.id] = node.value
        if "revision" not in found:
            continue
        values = [_literal(found["revision"]), _literal(found.get("down_revision"))]
        if not isinstance(values[0], str) or not (values[1] is None or isinstance(values[1], str)):
            return None  # a merge point or a computed name: Alembic knows best
        revisions.add(values[0])
        parents.add(values[1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _literal(node: Any) -> Any:
    return node.value if isinstance(node, ast.Constant) else ...


def _is_known(script: Any, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown revision
        return False


def upgrade(engine: Engine, revision: str = "head") -> SchemaStatus:
    """Upgrade the schema to ``revision`` under a cross-process lock; returns the new status."""
    from alembic import command

    status = schema_status(engine)
    _raise_if_newer(engine, status)
    with _migration_lock(engine), _alembic_errors(f"upgrading the schema to {revision!r}", status.current):
        with _begin_write(engine) as conn:
            command.upgrade(alembic_config(conn), revision)
    return schema_status(engine)


def downgrade(engine: Engine, revision: str) -> SchemaStatus:
    """Downgrade the schema to ``revision`` (``"base"`` drops every table) under the lock."""
    from alembic import command

    current = schema_status(engine).current
    with _migration_lock(engine), _alembic_errors(f"downgrading the schema to {revision!r}", current):
        with _begin_write(engine) as conn:
            command.downgrade(alembic_config(conn), revision)
    return schema_status(engine)


@contextlib.contextmanager
def _alembic_errors(what: str, current: Optional[str]) -> Iterator[None]:
    """Alembic's refusals, and a migration whose SQL fails, are ``SchemaVersionError``s; the database's
    own failures (locked, full, read-only, unreachable) are mapped as by ``translate_errors``.

    Every migration of one call runs in one transaction (``_begin_write``; DDL is transactional on
    both backends), so a failure leaves the schema at ``current``, the revision it started from.
    """
    from alembic.util.exc import CommandError

    with translate_errors(what):
        try:
            yield
        except CommandError as e:
            raise errors.SchemaVersionError(f"{what}: {e}") from e
        except Exception as e:
            if not _failed_statement(e):
                raise
            raise errors.SchemaVersionError(
                f"{what}: a migration failed, the schema is left "
                f"{'empty' if current is None else f'at revision {current!r}'} (nothing was changed): "
                f"{getattr(e, 'orig', None) or e}"
            ) from e


def _failed_statement(e: BaseException) -> bool:
    """Whether ``e`` is a statement's own failure (a missing table, a violated constraint), not the database's.

    SQLite reports a missing table or column as an ``OperationalError`` like a locked file: its result code
    tells them apart (SQLITE_ERROR, 1, is the statement's; busy, locked, full, read-only, I/O have their own).
    """
    if is_driver_error(e):
        e = _wrap_driver_error(e)
    if not isinstance(e, exc.DBAPIError) or e.connection_invalidated or isinstance(e, exc.InterfaceError):
        return False
    if getattr(e.orig, "sqlstate", None) in _CLASHED:
        return False
    if isinstance(e, exc.OperationalError):
        return isinstance(e.orig, sqlite3.Error) and (getattr(e.orig, "sqlite_errorcode", 0) & 0xFF) == 1
    return True


def ensure_schema(engine: Engine, upgrade: bool = False, create: bool = True) -> SchemaStatus:
    """Initialise an empty database (only with ``create``); refuse an older (unless ``upgrade``) or newer schema."""
    status = _at_shipped_head(engine) or schema_status(engine)
    if status.up_to_date:
        return status
    _raise_if_newer(engine, status)
    if status.empty and not create:
        raise errors.NotFoundError(
            f"no registry in database {_where(engine)}: it has no rlreg tables (check the URL; to start "
            f"a registry there run `{UPGRADE_COMMAND}` or record a version)"
        )
    if not status.empty and not upgrade:
        raise _older_error(engine, status)
    with _migration_lock(engine):
        status = schema_status(engine)  # another process may have done it while we waited
        _raise_if_newer(engine, status)
        if not status.up_to_date and (status.empty or upgrade):
            from alembic import command

            what = "creating the schema" if status.empty else f"upgrading the schema to {status.head!r}"
            with _alembic_errors(what, status.current), _begin_write(engine) as conn:
                command.upgrade(alembic_config(conn), "head")
            status = schema_status(engine)
    if not status.up_to_date:
        raise _older_error(engine, status)
    return status


@contextlib.contextmanager
def _begin_write(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes SQLite's write lock up front (a deferred one could fail as busy)."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE: True})
        with conn.begin():
            yield conn


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _raise_if_newer(engine: Engine, status: SchemaStatus) -> None:
    if not status.known:
        raise errors.SchemaVersionError(
            f"database {_where(engine)} has schema revision {status.current!r}, newer than this rlreg "
            f"knows (its head is {status.head!r}): upgrade the rlreg package to use it"
        )


def _older_error(engine: Engine, status: SchemaStatus) -> errors.SchemaVersionError:
    current = "no rlreg revision (foreign tables present)" if status.current is None else repr(status.current)
    return errors.SchemaVersionError(
        f"database {_where(engine)} has schema revision {current}, this rlreg needs {status.head!r}: "
        f"run `{UPGRADE_COMMAND}` (or pass upgrade=True)"
    )


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialise schema changes across processes: an advisory lock (PostgreSQL) or a file lock."""
    if is_sqlite(engine):
        database = engine.url.database
        if database in (None, "", ":memory:"):
            yield
            return
        try:
            lock = FileLock(f"{database}.migrate.lock", timeout=SQLITE_BUSY_TIMEOUT)
            lock.acquire()
        except Timeout as e:
            raise errors.DatabaseUnavailableError(
                f"another process has held the schema lock {lock.lock_file} for {SQLITE_BUSY_TIMEOUT:g} s"
            ) from e
        try:
            yield
        finally:
            lock.release()
        return
    with translate_errors("taking the schema lock"):
        lock_conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        lock_conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
    try:
        yield
    finally:
        with contextlib.suppress(exc.SQLAlchemyError):
            lock_conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_LOCK_KEY})
        lock_conn.close()
