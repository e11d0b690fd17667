"""``rlreg gc``'s review fixes on an embedded registry: a mistyped or missing ``--db`` deletes nothing, an
empty registry refuses a storage that is not its own, ``--grace`` is bounded, ``--dry-run`` previews
retention; ``rlreg restore``/``rm`` refuse a version past 2^63 - 1 (no traceback)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from clihelpers import InProcess, Runner, assert_error, small_module


def _age(folder: Path, days: float = 2) -> None:
    """Make every file under ``folder`` look stored ``days`` ago (a registry in use for a while)."""
    then = time.time() - days * 86400
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def test_gc_with_a_mistyped_or_missing_db_deletes_nothing(rlreg, home_registry, inproc, tmp_path):
    """gc opens the database without creating a registry: a URL that holds none is "not found" (exit 3),
    as for read commands, rather than a new, empty registry that takes the storage's objects for garbage."""
    home_registry.snapshot("pol", small_module())
    blobs = rlreg.home / "blobs"
    _age(blobs)
    before = set(home_registry.store.list_digests())
    typo = rlreg.home / "rlreg.bd"
    for dry in ([], ["--dry-run"]):
        result = inproc("gc", "--grace", "0", *dry, "--db", f"sqlite:///{typo}", "--storage", str(blobs), code=3)
        assert_error(result, 3, "no registry database", str(typo))
    assert not typo.exists()
    (tmp_path / "elsewhere").mkdir()
    elsewhere = InProcess(Runner(tmp_path / "elsewhere"))  # its RLREG_HOME holds no registry; no RLREG_DB_URL
    assert_error(elsewhere("gc", "--storage", str(blobs), code=3), 3, "no registry database", "elsewhere")
    assert not (tmp_path / "elsewhere" / "rlreg.db").exists()
    assert set(home_registry.store.list_digests()) == before
    assert inproc("verify", "--json").json()["ok"]


def test_gc_of_an_empty_registry_refuses_another_registrys_storage(rlreg, home_registry, inproc):
    """A database that holds a registry which never recorded an object (``rlreg db upgrade`` made it), given
    a storage holding older objects: exit 4, naming the cause and what to check; nothing deleted."""
    home_registry.snapshot("pol", small_module())
    blobs = rlreg.home / "blobs"
    _age(blobs)
    before = set(home_registry.store.list_digests())
    empty = f"sqlite:///{rlreg.home / 'empty.db'}"
    inproc("db", "upgrade", "--db", empty)
    for dry in ([], ["--dry-run"]):
        assert_error(inproc("gc", "--grace", "0", *dry, "--db", empty, "--storage", str(blobs), code=4), 4,
                     "gc refused", "has never recorded an object", "1 object(s) stored before", "--db")
    assert set(home_registry.store.list_digests()) == before


@pytest.mark.parametrize("grace", ["inf", "-inf", "nan", "1e400", "1e12d", "800000d", "3651d"])
def test_gc_grace_must_be_a_finite_duration_of_at_most_ten_years(inproc, grace):
    result = inproc("gc", f"--grace={grace}", code=4)
    assert_error(result, 4, f"--grace {grace!r}")


def test_gc_dry_run_says_which_versions_retention_would_delete(home_registry, inproc):
    for seed in range(3):
        home_registry.snapshot("pol", small_module(seed=seed))
    home_registry.set_alias("pol", "prod", 1)
    home_registry.set_retention("pol", keep_last=1)
    home_registry.remove_alias("pol", "prod")
    dry = inproc("gc", "--dry-run").out
    assert "retention:     1 version(s) would be deleted" in dry
    assert inproc("gc", "--dry-run", "--json").json()["retention_deleted"] == {"pol": [1]}
    assert [v.version for v in home_registry.versions("pol")] == [1, 3]
    assert "retention: 1 version(s) deleted" in inproc("gc").out


def test_restore_and_rm_refuse_a_version_past_the_integer_range(home_registry, inproc):
    home_registry.snapshot("pol", small_module())
    for args in (["restore", "pol:99999999999999999999"], ["rm", "pol:99999999999999999999", "--reason", "x"]):
        assert_error(inproc(*args, code=4), 4, "model 'pol': version 99999999999999999999 is out of range")
