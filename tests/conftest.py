"""Shared fixtures: a fresh PostgreSQL database per run, moto's S3 server, clean fsspec state.

With ``CI=true`` the PostgreSQL and S3 fixtures fail instead of skipping: the team setup must be
tested for real in CI.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import threading
import uuid

import pytest

# Matrix products give the same bits on every CPU (MKL's conditional numerical reproducibility): the
# outputs real RLlib recorded (tests/fixtures/rllib) are compared bit for bit, and MKL's fastest path
# for this CPU (AVX-512 here) rounds the last bit differently. Read at MKL's first call, so set before any.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get("RLREG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: team-setup tests must run, not skip)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_admin_engine():
    """An AUTOCOMMIT engine on the server's ``test`` database, for creating databases."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'rlreg[postgres]')")
    engine = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server"
        _unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_database(pg_admin_engine, request):
    """Factory: ``pg_database()`` creates a fresh, empty database and returns its SQLAlchemy URL
    (``pg_database(copy=True)``: one holding the current schema, a copy of the session's template).

    Every database it made is dropped when the test ends (by the copies' thread, off the test's time).
    """
    made: list[str] = []
    copies: _Copies | None = None

    def make(copy: bool = False) -> str:
        nonlocal copies
        if copy:
            copies = request.getfixturevalue("_pg_copies")
            name = copies.take()
        else:
            name = f"rlreg_test_{uuid.uuid4().hex[:12]}"
            with pg_admin_engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return _pg_url_of(name)

    yield make
    if copies is not None:
        copies.drop(made)
        return
    with pg_admin_engine.connect() as conn:
        for name in made:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_url_of(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


class _Copies:
    """Copies of a migrated template database, made ahead on a thread of its own, and dropped there.

    ``CREATE DATABASE ... TEMPLATE`` costs 0.25-0.3 s of the server's writing (as much as migrating an
    empty database): made while the previous tests run, a test's copy is ready when it asks.
    """

    AHEAD = 2

    def __init__(self, engine, template: str) -> None:
        self._engine, self._template = engine, template
        self._ready: queue.Queue = queue.Queue()
        self._drops: list[str] = []
        self._lock = threading.Condition()
        self._stopped, self._error = False, None
        self._thread = threading.Thread(target=self._run, name="pg-template-copies", daemon=True)
        self._thread.start()

    def take(self) -> str:
        got = self._error or self._ready.get(timeout=120)
        if isinstance(got, BaseException):
            raise RuntimeError(f"copying the template database {self._template!r} failed: {got!r}") from got
        with self._lock:
            self._lock.notify()  # one fewer ready: make the next
        return got

    def drop(self, names: list[str]) -> None:
        with self._lock:
            self._drops.extend(names)
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()
        self._thread.join()
        while not self._ready.empty():
            got = self._ready.get()
            if isinstance(got, str):
                self._drops.append(got)
        for name in self._drops:
            self._drop(name)

    def _run(self) -> None:
        """Keep ``AHEAD`` copies ready first; drop what tests are done with when they are."""
        try:
            while True:
                with self._lock:
                    while not (self._stopped or self._drops or self._ready.qsize() < self.AHEAD):
                        self._lock.wait()
                    if self._stopped:
                        return
                    short = self._ready.qsize() < self.AHEAD
                    dropping = None if short else self._drops.pop()
                if short:
                    name = f"rlreg_test_{uuid.uuid4().hex[:12]}"
                    with self._engine.connect() as conn:
                        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
                    self._ready.put(name)
                else:
                    self._drop(dropping)
        except BaseException as exc:  # noqa: BLE001 - raised in the tests waiting for a copy
            self._error = exc
            self._ready.put(exc)

    def _drop(self, name: str) -> None:
        with self._engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database) -> str:
    """The URL of a fresh, empty PostgreSQL database for this test."""
    return pg_database()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """The URL of a fresh SQLite file database for this test."""
    return f"sqlite:///{tmp_path / 'rlreg.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """Each test using this runs once on a SQLite file and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


def _migrate(url: str) -> None:
    from registry import db

    engine = db.create_engine(url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()  # no connection may stay: PostgreSQL copies only a template nobody is connected to


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory):
    """A SQLite file migrated to the head revision once per session: the schema alone, as a registry's
    first open leaves it before it records anything."""
    path = tmp_path_factory.mktemp("schema-template") / "rlreg.db"
    _migrate(f"sqlite:///{path}")
    assert not os.path.exists(f"{path}-wal"), "the template's WAL was not checkpointed"
    return path


@pytest.fixture(scope="session")
def _pg_copies(pg_admin_engine):
    """A PostgreSQL database migrated to the head revision once per session, and its copies (``_Copies``)."""
    template = f"rlreg_test_tmpl_{uuid.uuid4().hex[:12]}"
    with pg_admin_engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{template}"')
    try:
        _migrate(_pg_url_of(template))
        copies = _Copies(pg_admin_engine, template)
        try:
            yield copies
        finally:
            copies.close()
    finally:
        with pg_admin_engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


@pytest.fixture
def schema_database(request, tmp_path):
    """Factory: ``schema_database("sqlite" | "postgresql")`` returns the URL of a fresh database holding the
    current schema and nothing else: a copy of the session's migrated template (a SQLite file copied in
    ~1 ms, where migrating one takes ~70 ms; a PostgreSQL copy made ahead by ``_Copies``)."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            target = tmp_path / "rlreg.db"
            shutil.copyfile(request.getfixturevalue("_sqlite_template"), target)
            return f"sqlite:///{target}"
        return request.getfixturevalue("pg_database")(copy=True)

    return make


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1, reached over HTTP through s3fs as a real bucket would be.

    Sets the standard AWS environment variables (and ``AWS_ENDPOINT_URL``) for the session.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        _unavailable("moto[server] is not installed (pip install 'rlreg[test]')")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the moto server; returns ``s3://<bucket>``."""
    import boto3

    name = f"rlreg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    _clear_fsspec_caches()
    return f"s3://{name}"


def _clear_fsspec_caches() -> None:
    try:
        import fsspec
        from fsspec.implementations.memory import MemoryFileSystem
    except ImportError:
        return
    for cls in list(fsspec.registry.values()) if hasattr(fsspec.registry, "values") else []:
        clear = getattr(cls, "clear_instance_cache", None)
        if clear:
            clear()
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs.clear()
    MemoryFileSystem.pseudo_dirs.append("")


@pytest.fixture(autouse=True)
def _clean_fsspec_state():
    """fsspec caches filesystem instances and ``MemoryFileSystem.store`` is global: start clean."""
    _clear_fsspec_caches()
    yield
    _clear_fsspec_caches()


@pytest.fixture(autouse=True)
def _isolated_rlreg_env(tmp_path, monkeypatch):
    """No test touches the user's real data or cache folders."""
    monkeypatch.setenv("RLREG_CACHE_DIR", str(tmp_path / "rlreg-cache"))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "rlreg-home"))
    monkeypatch.delenv("RLREG_DB_URL", raising=False)
    monkeypatch.delenv("RLREG_STORAGE_URL", raising=False)


@pytest.fixture
def syscalls(monkeypatch):
    """Every fsync (of a file or a folder, by path), rename, page drop (``posix_fadvise`` DONTNEED) and
    file opened ``O_DSYNC`` (each write to it returns once stored, as if fdatasynced), in order:
    ``("fsync", path)``, ``("replace", "src -> dst")``, ``("drop", path)``, ``("dsync", path)``; each still done."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace, real_fadvise, real_open = os.fsync, os.replace, os.posix_fadvise, os.open

    def open_(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if flags & getattr(os, "O_DSYNC", 0) and not kwargs.get("dir_fd"):
            calls.append(("dsync", os.fspath(path)))
        return fd

    def fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kwargs):
        calls.append(("replace", f"{src} -> {dst}"))
        return real_replace(src, dst, **kwargs)

    def fadvise(fd, offset, length, advice):
        if advice == os.POSIX_FADV_DONTNEED:
            calls.append(("drop", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fadvise(fd, offset, length, advice)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    monkeypatch.setattr(os, "open", open_)
    return calls
