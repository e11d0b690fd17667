"""Opening a registry: ``create=False`` never turns a mistyped URL into an empty database."""

from __future__ import annotations

import re

import pytest
import registry_toys as toys
import sqlalchemy as sa

import registry
from registry import DatabaseUnavailableError, NotFoundError, Registry
from registry.db import normalize_url


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_a_missing_sqlite_file_is_refused_for_reading(tmp_path, local_storage_url):
    path = tmp_path / "typo.db"
    url = f"sqlite:///{path}"
    with pytest.raises(NotFoundError) as info:
        Registry(url, local_storage_url, create=False)
    message = str(info.value)
    assert f"no registry database at {url!r}" in message and "does not exist" in message
    assert "run `rlreg db upgrade` or record a version" in message
    assert not path.exists()


def test_a_relative_path_that_is_not_a_url_is_refused_for_reading(tmp_path, monkeypatch, local_storage_url):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotFoundError, match=re.escape(f"the file {str(tmp_path / 'notaurl')!r} does not exist")):
        Registry("notaurl", local_storage_url, create=False)
    assert list(tmp_path.iterdir()) == []


def test_a_database_without_the_schema_is_refused_for_reading(empty_db_url, local_storage_url):
    db_url = empty_db_url
    if db_url.startswith("sqlite"):
        open(normalize_url(db_url).database, "wb").close()  # an empty SQLite file
    with pytest.raises(NotFoundError, match="has no rlreg tables .*run `rlreg db upgrade`"):
        Registry(db_url, local_storage_url, create=False)
    assert not [t for t in _tables(db_url) if t.startswith("rlreg_") or t == "alembic_version"]


def test_writes_and_the_default_registry_create_on_first_use(empty_db_url, local_storage_url, monkeypatch, tmp_path):
    db_url = empty_db_url
    with Registry(db_url, local_storage_url) as reg:
        reg.snapshot("pol", toys.spec().build())
    with Registry(db_url, local_storage_url, create=False) as reader:
        assert [m.name for m in reader.models()] == ["pol"]
    monkeypatch.delenv("RLREG_DB_URL", raising=False)
    monkeypatch.delenv("RLREG_STORAGE_URL", raising=False)
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "fresh" / "home"))
    assert registry.models() == []  # the embedded default needs no setup
    assert (tmp_path / "fresh" / "home" / "rlreg.db").is_file()


@pytest.mark.parametrize("create", [True, False])
def test_a_sqlite_file_in_a_missing_folder_is_a_clear_error(tmp_path, local_storage_url, create):
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}"
    with pytest.raises(DatabaseUnavailableError) as info:
        Registry(url, local_storage_url, create=create)
    assert f"database URL {url!r}: the folder {str(tmp_path / 'no' / 'such')!r} does not exist" in str(info.value)
    assert not (tmp_path / "no").exists()
