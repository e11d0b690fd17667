"""S3 reads land in one writable buffer: one GET for a small object, ranged GETs for a large one."""

from __future__ import annotations

import pytest
import torch
from storage_helpers import count_requests, same

from storage import IntegrityError, Store, manifest_objects

_BLOCK = 5 << 20


def test_large_object_is_read_in_ranges_and_verified(s3_bucket, tmp_path):
    writer = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "w"), default_block_size=_BLOCK)
    state = {"w": torch.randn(3_000_000), "b": torch.randn(5)}  # 12 MB: three 5 MiB ranges
    m = writer.put(state)
    reader = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "r"), default_block_size=_BLOCK)
    requests = count_requests(reader)
    out = reader.get(m)
    assert requests[0] == 3 + 1  # the large object's ranges, the small one's GET; no HEAD
    assert all(same(out[k], v) for k, v in state.items())
    out["w"][0] = 1.0  # writable, and a view of the verified buffer
    assert reader.verify().ok

    (obj,) = [o for o in manifest_objects(m) if o == m["tensors"]["w"]["object"]]
    h = obj.removeprefix("blake3:")
    path = f"{reader.location.path}/objects/{h[:2]}/{h}"
    data = bytearray(reader.fs.cat_file(path))
    data[-(1 << 20)] ^= 0x04  # in the last range
    reader.fs.pipe_file(path, bytes(data))
    fresh = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "r2"), default_block_size=_BLOCK)
    with pytest.raises(IntegrityError, match=r"\(tensors 'w'\): tensor blake3:\w+ hashes to"):
        fresh.get(m, names=["w"])


def _cache_files(folder) -> tuple[list[str], list[str]]:
    """The cache's entries and its temporary files (names)."""
    import os

    entries, temporary = [], []
    for root, _, files in os.walk(os.path.join(folder, "objects")):
        for name in files:
            (temporary if name.startswith(".tmp-") else entries).append(name)
    return sorted(entries), temporary


@pytest.mark.parametrize("block", [_BLOCK, 50 << 20], ids=["ranged", "one GET"])
def test_a_cold_read_is_downloaded_into_the_cache_and_handed_out_as_a_private_map(s3_bucket, tmp_path, block):
    state = {"w": torch.randn(3_000_000), "b": torch.randn(5)}
    m = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "w"), default_block_size=block).put(state)
    reader = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "r"), default_block_size=block)
    out = reader.get(m)
    assert all(same(out[k], v) for k, v in state.items())
    entries, temporary = _cache_files(tmp_path / "r")
    assert entries == sorted(o.removeprefix("blake3:") for o in manifest_objects(m)) and temporary == []
    out["w"][0] = 1.0  # writable, and private: the cache entry keeps the verified bytes
    assert reader.cache.verify(discard=False) == {}
    offline = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "r"), offline=True)
    assert all(same(offline.get(m)[k], v) for k, v in state.items())


@pytest.mark.parametrize("block", [_BLOCK, 50 << 20], ids=["ranged", "one GET"])
def test_a_damaged_download_leaves_nothing_in_the_cache(s3_bucket, tmp_path, block):
    writer = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "w"), default_block_size=block)
    m = writer.put({"w": torch.randn(3_000_000)})
    (obj,) = manifest_objects(m)
    path = writer._path(obj)
    data = bytearray(writer.fs.cat_file(path))
    data[-100] ^= 0x01
    writer.fs.pipe_file(path, bytes(data))
    reader = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "r"), default_block_size=block)
    with pytest.raises(IntegrityError, match=r"\(tensors 'w'\): tensor blake3:\w+ hashes to"):
        reader.get(m)
    assert _cache_files(tmp_path / "r") == ([], [])
    writer.fs.pipe_file(path, bytes(data[:-10]))  # shorter than its manifest says: the read fails
    with pytest.raises(IntegrityError):
        reader.get(m)
    assert _cache_files(tmp_path / "r") == ([], [])
    writer.fs.rm_file(path)
    with pytest.raises(FileNotFoundError):
        reader.get(m)
    assert _cache_files(tmp_path / "r") == ([], [])


def test_an_object_larger_than_the_cache_is_read_into_memory(s3_bucket, tmp_path):
    state = {"w": torch.randn(300_000)}
    m = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "w")).put(state)
    reader = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "r"), cache_max_bytes=1 << 20)
    assert same(reader.get(m)["w"], state["w"])
    assert _cache_files(tmp_path / "r") == ([], [])


def _loop_thread():
    import fsspec.asyn

    fsspec.asyn.get_loop()
    return fsspec.asyn.iothread[0]


@pytest.mark.parametrize("block", [_BLOCK, 50 << 20], ids=["ranged", "one GET"])
def test_a_download_is_written_into_the_cache_by_writer_threads_never_by_the_event_loop(
        s3_bucket, tmp_path, block, monkeypatch):
    """A write into the cache file held fsspec's event loop, and with it every other download."""
    import os
    import threading

    state = {"w": torch.randn(3_000_000), "v": torch.randn(2_000_000)}
    m = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "w"), default_block_size=block).put(state)
    reader = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "r"), default_block_size=block)
    writers: list[str] = []
    real_pwrite = os.pwrite

    def pwrite(fd, data, offset):
        writers.append(threading.current_thread().name)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    out = reader.get(m)
    monkeypatch.undo()
    assert all(same(out[k], v) for k, v in state.items())
    assert writers and _loop_thread().name not in writers, set(writers)
    assert {n.rsplit("_", 1)[0] for n in writers} == {"rlreg-cache-fill"}
    assert reader.cache.verify(discard=False) == {}


@pytest.mark.parametrize("block", [_BLOCK, 50 << 20], ids=["ranged", "one GET"])
def test_a_download_waits_for_its_writes_beyond_fill_ahead(s3_bucket, tmp_path, monkeypatch, block):
    """Slow writes hold the download back (no more than FILL_AHEAD bytes of one object wait in memory,
    and a chunk for each part of a ranged read, which drain at once)."""
    import random
    import time

    from storage import cache as cache_module

    state = {"w": torch.randn(3_000_000)}  # 12 MB: three ranges, or one GET
    m = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "w"), default_block_size=block).put(state)
    reader = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "r"), default_block_size=block)
    parts = reader.fs.max_concurrency if block < (12 << 20) else 1
    monkeypatch.setattr(cache_module, "FILL_AHEAD", 1 << 20)
    real_pwrite, real_write_at = cache_module.Filling._pwrite, cache_module.Filling.write_at
    most, chunks = [0], [0]

    def slow(fd, view, offset):
        time.sleep(random.uniform(0, 0.004))  # (writes end out of order: the parts' drains interleave)
        real_pwrite(fd, view, offset)

    def write_at(self, offset, data):
        real_write_at(self, offset, data)
        chunks[0] = max(chunks[0], len(data))
        most[0] = max(most[0], self._waiting)

    monkeypatch.setattr(cache_module.Filling, "_pwrite", staticmethod(slow))
    monkeypatch.setattr(cache_module.Filling, "write_at", write_at)
    assert same(reader.get(m)["w"], state["w"])
    assert 0 < most[0] <= (1 << 20) + parts * chunks[0], (most, chunks)
    assert reader.cache.verify(discard=False) == {}


def test_a_failed_write_into_the_cache_reads_into_memory_and_leaves_no_file(s3_bucket, tmp_path, monkeypatch, caplog):
    """A full cache folder (one write of a download fails) costs that object a second download, into
    memory, and one warning: never the load (tests/cli/test_local_faults.py: a real full tmpfs)."""
    import errno
    import itertools

    from storage import cache as cache_module

    state = {"w": torch.randn(3_000_000), "v": torch.randn(2_000_000)}
    m = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "w")).put(state)
    reader = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "r"))
    calls = itertools.count(1)  # (two writer threads: each call takes its own number)
    real_pwrite = cache_module.Filling._pwrite

    def full(fd, view, offset):
        if next(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_pwrite(fd, view, offset)

    monkeypatch.setattr(cache_module.Filling, "_pwrite", staticmethod(full))
    out = reader.get(m)
    assert all(same(out[k], v) for k, v in state.items())
    assert _cache_files(tmp_path / "r")[1] == []  # no temporary file left
    warned = [r.getMessage() for r in caplog.records if "the cache folder" in r.getMessage()]
    assert len(warned) == 1 and "No space left" in warned[0], warned
    monkeypatch.undo()
    out = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "r")).get(m)
    assert all(same(out[k], v) for k, v in state.items())
