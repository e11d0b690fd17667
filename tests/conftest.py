"""Shared fixtures: a fresh PostgreSQL database per run, moto's S3 server, clean fsspec state.

With ``CI=true`` the PostgreSQL and S3 fixtures fail instead of skipping: the team setup must be
tested for real in CI.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

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
def pg_database(pg_admin_engine):
    """Factory: ``pg_database()`` creates a fresh, empty database and returns its SQLAlchemy URL.

    Every database it made is dropped when the test ends.
    """
    made: list[str] = []

    def make() -> str:
        name = f"rlreg_test_{uuid.uuid4().hex[:12]}"
        with pg_admin_engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    yield make
    with pg_admin_engine.connect() as conn:
        for name in made:
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
