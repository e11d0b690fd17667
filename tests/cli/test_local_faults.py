"""A full disk (ENOSPC) and a read-only filesystem (EROFS), for real: a tiny tmpfs and a read-only bind
mount. The store and the SQLite registry on them give one clear line and an exit code, never a
traceback; a registry in a read-only folder can still be read.

Mounting needs root (or CAP_SYS_ADMIN); elsewhere these tests skip, saying so.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest
from clihelpers import InProcess, Runner, assert_error, small_module

from rlreg.exitcodes import DATABASE, STORAGE

pytestmark = pytest.mark.timeout(300)


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here ({proc.stderr.strip() or proc.returncode}): needs root or CAP_SYS_ADMIN")


@contextlib.contextmanager
def mounted(*args: str, target):
    target.mkdir(parents=True, exist_ok=True)
    _mount(*args, str(target))
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 512 KiB tmpfs."""
    with mounted("-t", "tmpfs", "-o", "size=512k", "tmpfs", target=tmp_path / "tiny") as target:
        yield target


def fill(folder) -> None:
    """Write zeros into ``folder`` until its filesystem has no space left."""
    with open(folder / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(bytes(4096))


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint folder of a module none of these stores holds yet."""
    return small_module(11, hidden=64).save_to_path(str(tmp_path / "ckpt"))


@pytest.fixture
def runner(tmp_path):
    """``rlreg`` in this process (Click's runner: an unexpected exception fails the test with its traceback)."""
    home = tmp_path / "home"
    home.mkdir()
    return InProcess(Runner(home, {"RLREG_CACHE_DIR": str(tmp_path / "cache")}))


def test_import_into_a_full_store_says_so_and_records_nothing(runner, tiny_tmpfs, checkpoint):
    fill(tiny_tmpfs)
    result = runner("import", "m", checkpoint, "--storage", str(tiny_tmpfs / "blobs"), code=None)
    assert_error(result, STORAGE, "no space left on the device")
    assert_error(runner("versions", "m", code=None), 3, "no model named 'm'")
    assert not [p for p in (tiny_tmpfs / "blobs").rglob("*") if p.is_file()]  # no partial object left


def test_import_into_a_read_only_store_says_so(runner, tmp_path, checkpoint):
    (tmp_path / "src").mkdir()
    with mounted("--bind", "-o", "ro", str(tmp_path / "src"), target=tmp_path / "ro") as ro:
        result = runner("import", "m", checkpoint, "--storage", str(ro / "blobs"), code=None)
    assert_error(result, STORAGE, "the filesystem is read-only")
    assert_error(runner("versions", "m", code=None), 3, "no model named 'm'")


def test_export_to_a_full_disk_says_so(runner, tiny_tmpfs, checkpoint):
    runner("import", "m", checkpoint)
    fill(tiny_tmpfs)
    assert_error(runner("export", "m:1", str(tiny_tmpfs / "out"), code=None), 4, "no space left on the device")


def test_sqlite_registry_in_a_read_only_folder_can_be_read(runner, tmp_path, checkpoint):
    db = f"sqlite:///{tmp_path / 'reg' / 'rlreg.db'}"
    (tmp_path / "reg").mkdir()
    runner("import", "m", checkpoint, "--db", db, "--storage", str(tmp_path / "reg" / "blobs"))
    # the folder made read-only in place: the database's bound storage URL names the same folder
    with mounted("--bind", "-o", "ro", str(tmp_path / "reg"), target=tmp_path / "reg") as ro:
        assert not os.access(ro / "rlreg.db", os.W_OK)
        flags = ["--db", f"sqlite:///{ro / 'rlreg.db'}"]
        assert [v["version"] for v in runner("versions", "m", "--json", *flags).json()] == [1]
        assert runner("show", "m:1", "--json", *flags).json()["version"]["name"] == "m"
        runner("export", "m:1", str(tmp_path / "out"), *flags)
        assert runner("verify", "--json", *flags).json()["ok"]
        result = runner("alias", "set", "m", "best", "1", *flags, code=None)
    assert_error(result, DATABASE, "read-only")


def test_full_sqlite_registry_says_full_not_locked(runner, tiny_tmpfs, tmp_path, checkpoint):
    db = f"sqlite:///{tiny_tmpfs / 'rlreg.db'}"
    runner("import", "m", checkpoint, "--db", db, "--storage", str(tmp_path / "blobs"))
    fill(tiny_tmpfs)
    result = runner("import", "m", checkpoint, "--db", db, "--storage", str(tmp_path / "blobs"),
                    "--metadata", '{"pad": "' + "x" * 300_000 + '"}', code=None)
    assert_error(result, DATABASE, "the database is full")
    assert "unavailable or locked" not in result.err
    os.unlink(tiny_tmpfs / "filler")
    assert [v["version"] for v in runner("versions", "m", "--json", "--db", db).json()] == [1]


# --- the read cache of a bucket: a full or read-only cache folder never fails a load ------------------


@pytest.fixture
def s3_version(runner, s3_bucket, checkpoint, tmp_path):
    """A version of ``m`` on a bucket; its objects are in no cache yet (``RLREG_CACHE_DIR`` is set per call)."""
    db = f"sqlite:///{tmp_path / 'rlreg.db'}"
    runner("import", "m", checkpoint, "--db", db, "--storage", s3_bucket + "/blobs")
    return ["--db", db]


def _load_with_cache(runner, flags, cache, out) -> str:
    runner.env["RLREG_CACHE_DIR"] = str(cache)
    result = runner("export", "m:1", str(out), *flags)
    assert (out / "module_state.safetensors").exists() or any(out.rglob("*.safetensors"))
    return result.err


def test_a_load_through_a_full_cache_folder_reads_into_memory(runner, s3_version, tiny_tmpfs, tmp_path):
    fill(tiny_tmpfs)
    err = _load_with_cache(runner, s3_version, tiny_tmpfs / "cache", tmp_path / "out")
    assert err.count("the cache folder") == 1 and "No space left" in err and "RLREG_CACHE_DIR" in err
    assert not [p for p in (tiny_tmpfs / "cache").rglob("*") if p.is_file() and p.name != ".lock"]  # no temp file
    os.unlink(tiny_tmpfs / "filler")
    assert "the cache folder" not in _load_with_cache(runner, s3_version, tiny_tmpfs / "cache", tmp_path / "again")
    assert [p for p in (tiny_tmpfs / "cache" / "objects").rglob("*") if p.is_file()]  # cached once there is room


def test_a_load_through_a_read_only_cache_folder_reads_into_memory(runner, s3_version, tmp_path):
    (tmp_path / "src").mkdir()
    with mounted("--bind", "-o", "ro", str(tmp_path / "src"), target=tmp_path / "ro") as ro:
        err = _load_with_cache(runner, s3_version, ro / "cache", tmp_path / "out")
    assert err.count("the cache folder") == 1 and "Read-only file system" in err


def test_a_damaged_entry_in_a_read_only_cache_folder_is_fetched_again(runner, s3_version, tmp_path):
    """The damaged entry cannot be discarded there: said once, and the object comes from the bucket."""
    cache = tmp_path / "src" / "cache"
    _load_with_cache(runner, s3_version, cache, tmp_path / "out")
    for entry in (p for p in (cache / "objects").rglob("*") if p.is_file()):
        data = bytearray(entry.read_bytes())
        data[-1] ^= 0x01
        entry.write_bytes(bytes(data))
    with mounted("--bind", "-o", "ro", str(tmp_path / "src"), target=tmp_path / "ro") as ro:
        err = _load_with_cache(runner, s3_version, ro / "cache", tmp_path / "again")
    assert err.count("the cache folder") == 1 and "Read-only file system" in err
