"""Fixtures of the registry suite: a Registry on SQLite and PostgreSQL, over local and S3 storage."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import registry_toys

import registry
from registry import Registry

HERE = Path(__file__).resolve().parent


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, schema_database) -> str:
    """In the registry suite a test's database already holds the schema, as a registry's first open leaves
    it (a copy of a template migrated once per session); ``empty_db_url`` for tests of that first open."""
    return schema_database(request.param)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request) -> str:
    """A fresh database without any table: a SQLite file not made yet, or an empty PostgreSQL database."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def local_storage_url(tmp_path) -> str:
    """A blob folder on the local disk."""
    return str(tmp_path / "blobs")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def storage_url(request, tmp_path) -> str:
    """Each test using this runs on a local blob folder and on a bucket of moto's S3 server."""
    if request.param == "local":
        return str(tmp_path / "blobs")
    return request.getfixturevalue("s3_bucket") + "/blobs"


@pytest.fixture
def make_registry(db_url, local_storage_url):
    """Factory: ``make_registry(storage_url=None)`` opens a Registry on this test's database."""
    opened: list[Registry] = []

    def make(storage_url: str | None = None, **kwargs) -> Registry:
        reg = Registry(db_url, storage_url or local_storage_url, **kwargs)
        opened.append(reg)
        return reg

    yield make
    for reg in opened:
        reg.close()


@pytest.fixture
def reg(make_registry) -> Registry:
    """A Registry on a fresh database (SQLite file or PostgreSQL) and a local blob folder."""
    return make_registry()


@pytest.fixture
def default_env(monkeypatch, db_url, local_storage_url) -> tuple[str, str]:
    """RLREG_DB_URL / RLREG_STORAGE_URL pointing at this test's database and blob folder."""
    monkeypatch.setenv("RLREG_DB_URL", db_url)
    monkeypatch.setenv("RLREG_STORAGE_URL", local_storage_url)
    return db_url, local_storage_url


@pytest.fixture(autouse=True)
def _fresh_default_registries():
    """Default registries are cached per URL pair: close them after each test."""
    yield
    for default in list(registry._DEFAULTS.values()):
        default.close()
    registry._DEFAULTS.clear()


@pytest.fixture
def subprocess_env(default_env) -> dict[str, str]:
    """The environment for a child Python: the default registry's URLs, this folder importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHON"] = sys.executable
    return env


@pytest.fixture
def make_sqlite_registry(sqlite_url, local_storage_url):
    """Like ``make_registry``, on SQLite only (the call-order test runs on both databases)."""
    opened: list[Registry] = []

    def make(storage_url: str | None = None, **kwargs) -> Registry:
        opened.append(Registry(sqlite_url, storage_url or local_storage_url, **kwargs))
        return opened[-1]

    yield make
    for reg in opened:
        try:
            reg.close()
        except OSError:
            pass  # the failing snapshots of the error tests, already checked


@pytest.fixture
def module():
    return registry_toys.spec(hidden=16).build()
