"""Expected failures of the environment: one line naming what is wrong, never a traceback."""

from __future__ import annotations

import shutil
import uuid

import pytest
from clihelpers import Runner, assert_error, small_module

from rlreg import exitcodes


def test_a_postgres_driver_that_is_not_installed(inproc):
    result = inproc("models", "--db", "postgresql+psycopg2://someone:pw@127.0.0.1/rlreg", code=None)
    assert_error(result, exitcodes.DATABASE, "driver 'psycopg2' is not installed", "postgresql+psycopg://",
                 "someone:***@")


def test_a_database_url_that_is_not_a_url(inproc):
    assert_error(inproc("models", "--db", "postgresql://a:b@host:port", code=None), exitcodes.DATABASE,
                 "is not a URL")


def test_an_fsspec_protocol_whose_package_is_missing(inproc):
    # hdfs:// is known to fsspec but imports pyarrow only when the filesystem is made
    pytest.importorskip("fsspec")
    assert_error(inproc("verify", "--storage", "hdfs://namenode/rlreg", code=None), exitcodes.STORAGE,
                 "storage protocol 'hdfs'", "is not available")


@pytest.mark.postgres
def test_a_missing_postgres_database_does_not_exist(inproc, pg_url):
    missing = pg_url.rsplit("/", 1)[0] + f"/rlreg_missing_{uuid.uuid4().hex[:8]}"
    assert_error(inproc("models", "--db", missing, code=None), exitcodes.NOT_FOUND, "does not exist",
                 "createdb rlreg_missing_")


def test_verify_on_a_missing_storage_folder_says_so(inproc, home_registry, tmp_path):
    home_registry.snapshot("walk", small_module(1))
    missing = tmp_path / "home" / "blobs"  # the folder the registry's storage is bound to
    shutil.rmtree(missing)
    result = inproc("verify", code=None)
    assert_error(result, exitcodes.STORAGE, str(missing), "does not exist", "1 version(s)")


def test_verify_with_another_storage_folder_names_the_bound_one(inproc, home_registry, tmp_path):
    home_registry.snapshot("walk", small_module(1))
    other = tmp_path / "no" / "such" / "blobs"
    result = inproc("verify", "--storage", str(other), code=None)
    assert_error(result, exitcodes.INVALID, "storage mismatch", str(other), str(tmp_path / "home" / "blobs"),
                 "rlreg storage move")


@pytest.mark.s3
def test_a_missing_bucket_is_exit_7_on_reads_too(tmp_path, s3_bucket):
    import fsspec

    home = tmp_path / "home"
    home.mkdir()
    storage = f"{s3_bucket}/models"
    from registry import Registry

    with Registry(f"sqlite:///{home / 'rlreg.db'}", storage) as reg:
        reg.snapshot("walk", small_module(1))
    fs = fsspec.filesystem("s3")
    fs.rm(s3_bucket, recursive=True)  # the objects and the bucket
    runner = Runner(home, {"RLREG_CACHE_DIR": str(tmp_path / "cache"), "RLREG_STORAGE_URL": storage})
    assert_error(runner("export", "walk", str(tmp_path / "out"), code=None), exitcodes.STORAGE,
                 s3_bucket.removeprefix("s3://"))
