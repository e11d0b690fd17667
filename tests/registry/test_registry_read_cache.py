"""A load's read of its version (``Registry._stored``) is kept on SQLite while the database is unchanged.

The change counter is ``PRAGMA data_version`` on a connection that never writes: any commit by any
other connection, of this process or another, changes it. Every test moves an alias (or deletes
the version) between two loads by alias and expects the second load to see it; the control keeps
the counter still, and the process test then sees the stale version.
"""

from __future__ import annotations

import multiprocessing

import pytest
import registry_toys as toys
import torch

from registry import ClosedError, DeletedError, Registry
from registry import db as registry_db


def _two_versions(reg: Registry) -> tuple[torch.nn.Module, torch.nn.Module]:
    first = toys.spec().build()
    reg.snapshot("cached", first)
    second = toys.spec().build()
    toys.train_step(second, 3)
    reg.snapshot("cached", second)
    reg.set_alias("cached", "best", 1)
    return first, second


def _move_alias(db_url: str, storage_url: str) -> None:  # in another process
    other = Registry(db_url, storage_url)
    try:
        other.set_alias("cached", "best", 2)
    finally:
        other.close()


@pytest.fixture
def sqlite_reg(tmp_path, local_storage_url):
    reg = Registry(f"sqlite:///{tmp_path / 'cache.db'}", local_storage_url)
    yield reg
    reg.close()


@pytest.mark.parametrize("counted", [True, False], ids=["checked", "control: counter held still"])
def test_an_alias_moved_by_another_process_is_seen_by_the_next_load(sqlite_reg, monkeypatch, counted):
    first, second = _two_versions(sqlite_reg)
    assert toys.states_equal(sqlite_reg.load("cached", alias="best"), first)
    assert toys.states_equal(sqlite_reg.load("cached", alias="best"), first)  # kept: the same read
    if not counted:
        monkeypatch.setattr(registry_db.ChangeCounter, "value", lambda self: (1, 0))
        sqlite_reg.load("cached", alias="best")  # kept under the still counter
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_move_alias, args=(sqlite_reg.db_url, sqlite_reg.storage_url))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    loaded = sqlite_reg.load("cached", alias="best")
    assert toys.states_equal(loaded, second if counted else first)


def test_this_registrys_own_writes_and_another_registrys_are_seen(sqlite_reg, local_storage_url):
    first, second = _two_versions(sqlite_reg)
    assert toys.states_equal(sqlite_reg.load("cached", alias="best"), first)
    sqlite_reg.set_alias("cached", "best", 2)  # through this registry's own connections
    assert toys.states_equal(sqlite_reg.load("cached", alias="best"), second)
    other = Registry(sqlite_reg.db_url, local_storage_url)
    try:
        other.set_alias("cached", "best", 1)
        assert toys.states_equal(sqlite_reg.load("cached", alias="best"), first)
        assert toys.states_equal(sqlite_reg.load("cached", version=1), first)  # kept by number too
        other.delete_version("cached", 1, reason="read cache test", force=True)
        with pytest.raises(DeletedError):
            sqlite_reg.load("cached", version=1)
        assert toys.states_equal(sqlite_reg.load("cached"), second)
    finally:
        other.close()


def test_a_read_kept_before_close_is_not_served_after_it(sqlite_reg, local_storage_url):
    """close() ends the registry: the kept read is not served (the load raises ``ClosedError``), and a
    new registry on the same file reads the alias afresh."""
    first, second = _two_versions(sqlite_reg)
    assert toys.states_equal(sqlite_reg.load("cached", alias="best"), first)
    other = Registry(sqlite_reg.db_url, local_storage_url)
    other.set_alias("cached", "best", 2)
    other.close()
    sqlite_reg.close()
    with pytest.raises(ClosedError):
        sqlite_reg.load("cached", alias="best")
    with Registry(sqlite_reg.db_url, local_storage_url) as again:
        assert toys.states_equal(again.load("cached", alias="best"), second)


def _load_in_child(reg: Registry, local_storage_url: str, out) -> None:  # forked: the kept read came along
    other = Registry(reg.db_url, local_storage_url)
    other.set_alias("cached", "best", 2)
    other.close()
    out.put(reg.load("cached", alias="best").state_dict()["net.0.weight"].tolist())


def test_a_forked_child_does_not_trust_its_parents_kept_read(sqlite_reg, local_storage_url):
    first, second = _two_versions(sqlite_reg)
    assert toys.states_equal(sqlite_reg.load("cached", alias="best"), first)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_load_in_child, args=(sqlite_reg, local_storage_url, out))
    child.start()
    weight = out.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert torch.equal(torch.tensor(weight), second.state_dict()["net.0.weight"])


def test_postgresql_keeps_no_read(make_registry, db_url):
    reg = make_registry()
    assert (reg._changes is None) == db_url.startswith("postgresql")
