"""A read cache that misbehaves never fails a load or a delete: a write error that comes while a download
waits (nothing printed by asyncio), an entry that cannot be read (offline: said so), a cache "folder"
that is a file, an entry that is a symbolic-link loop. (Full and read-only folders, for real: tests/cli/
test_local_faults.py.)"""

from __future__ import annotations

import errno
import gc
import logging
import os
import time

import pytest
import torch
from storage_helpers import same

from storage import NotCachedError, Store
from storage import cache as cache_module


@pytest.fixture
def stored(s3_bucket, tmp_path):
    state = {f"t{i}": torch.randn(200_000) for i in range(6)}  # 6 objects of 800 KB: 6 downloads
    m = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "w")).put(state)
    return s3_bucket + "/store", state, m


def test_a_write_error_while_a_download_waits_for_it_is_not_printed_by_asyncio(stored, tmp_path, monkeypatch, caplog):
    """The download's coroutine waits on a write that then fails: its error is read there, not left for
    asyncio to print ('Future exception was never retrieved') once the future is collected."""
    url, state, m = stored
    monkeypatch.setattr(cache_module, "FILL_AHEAD", 0)  # every chunk waits for its write
    real = cache_module.Filling._pwrite

    def slow_then_full(fd, view, offset):
        time.sleep(0.05)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module.Filling, "_pwrite", staticmethod(slow_then_full))
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        out = Store(url, cache_dir=str(tmp_path / "r")).get(m)
        gc.collect()
    assert all(same(out[k], v) for k, v in state.items())
    assert not [r for r in caplog.records if r.name == "asyncio"], [r.getMessage() for r in caplog.records]
    monkeypatch.setattr(cache_module.Filling, "_pwrite", staticmethod(real))


def test_offline_an_entry_that_cannot_be_read_is_said_to_be_unreadable(stored, tmp_path, monkeypatch):
    url, _, m = stored
    Store(url, cache_dir=str(tmp_path / "c")).get(m)  # cached
    real = cache_module.map_file

    def denied(path):
        if "/objects/" in path:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(cache_module, "map_file", denied)  # (root reads any file: the error is made here)
    with pytest.raises(NotCachedError, match=r"are in the cache .* but cannot be read .*PermissionError.*fix the "
                                             r"cache folder's permissions"):
        Store(url, cache_dir=str(tmp_path / "c"), offline=True).get(m)


def test_deleting_through_a_cache_folder_that_is_a_file_deletes(stored, tmp_path, caplog):
    """gc deletes from the bucket, then from the cache: a cache that refuses is said, not a failed gc (whose
    report would lose what it reclaimed)."""
    url, _, m = stored
    (tmp_path / "afile").write_text("not a folder")
    store = Store(url, cache_dir=str(tmp_path / "afile"))
    objs = [e["object"] for e in m["tensors"].values()]
    assert store.delete(objs) == set(objs)
    assert store.exists(objs) == set()
    assert any("the cache folder" in r.getMessage() for r in caplog.records)


def test_an_entry_that_is_a_link_loop_is_skipped_by_listings(stored, tmp_path):
    url, _, m = stored
    store = Store(url, cache_dir=str(tmp_path / "c"))
    store.get(m)
    loop = tmp_path / "c" / "objects" / "ab" / ("ab" + "0" * 62)
    loop.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(loop.name, loop)  # a link to itself: stat() says ELOOP
    assert len(store.cache.entries()) == len(m["objects"])
    assert store.cache.prune(dry_run=True) == []
