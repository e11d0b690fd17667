"""Objects and cache entries do not stay in the page cache: a durable write drops its pages once
fsynced (POSIX_FADV_DONTNEED, after the fsync), any other goes around it (O_DIRECT) where the
filesystem allows.

The bytes of an O_DIRECT write must come out exactly as a plain write would leave them whatever the
pieces' sizes (the aligned buffer is filled piece by piece, written each time it fills, its last
block padded and the file cut back to its length), and a filesystem that takes the flag but refuses
the I/O gets the same bytes through the page cache.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import Store, filesystems

CHUNK = 3 * filesystems.DIRECT_ALIGN  # a small aligned buffer, so that pieces cross its ends often


def _pieces(sizes: list[int]) -> list[bytes]:
    return [bytes((i * 7 + j) % 251 for j in range(n)) for i, n in enumerate(sizes)]


@pytest.fixture
def direct_spy(monkeypatch):
    """Which writes went out through O_DIRECT (True) or fell back to the page cache (False)."""
    taken: list[bool] = []
    real = filesystems._write_direct

    def spy(fd, buffers):
        taken.append(real(fd, buffers))
        return taken[-1]

    monkeypatch.setattr(filesystems, "_write_direct", spy)
    return taken


sizes = st.lists(st.one_of(st.integers(0, 10), st.sampled_from([CHUNK - 1, CHUNK, CHUNK + 1, 4095, 4096, 4097]),
                           st.integers(0, 3 * CHUNK)), max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=sizes, big=st.booleans())
def test_a_direct_write_leaves_exactly_the_bytes_of_its_pieces(tmp_path, monkeypatch, direct_spy, sizes, big):
    monkeypatch.setattr(filesystems, "DIRECT_CHUNK", CHUNK)
    if big:  # every piece copied by numpy, without the GIL, instead of by a slice assignment
        monkeypatch.setattr(filesystems, "_GIL_FREE_COPY", 1)
    pieces = _pieces(sizes)
    path = str(tmp_path / f"f{len(direct_spy)}")
    filesystems.local_atomic_write(path, iter(pieces), direct=True)
    with open(path, "rb") as f:
        assert f.read() == b"".join(pieces)
    assert direct_spy[-1] is True, "the write did not go out through O_DIRECT"


def test_a_filesystem_that_refuses_the_direct_io_gets_the_bytes_through_the_page_cache(tmp_path, monkeypatch,
                                                                                       direct_spy):
    real_pwrite, refused = os.pwrite, []

    def pwrite(fd, data, offset):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(offset)
            if len(refused) > 1:  # the first chunk was written: the fallback must start over
                raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(filesystems, "DIRECT_CHUNK", CHUNK)
    monkeypatch.setattr(os, "pwrite", pwrite)
    pieces = _pieces([5000, 9000, 17])
    path = str(tmp_path / "f")
    filesystems.local_atomic_write(path, pieces, direct=True)
    assert refused == [0, CHUNK] and direct_spy == [False]
    with open(path, "rb") as f:
        assert f.read() == b"".join(pieces)


def test_another_error_of_a_direct_write_is_raised_and_leaves_no_file(tmp_path, monkeypatch):
    def pwrite(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(OSError, match="No space"):
        filesystems.local_atomic_write(str(tmp_path / "f"), [b"x" * 5000], direct=True)
    assert os.listdir(tmp_path) == []


def test_a_durable_store_drops_each_object_s_pages_once_fsynced(tmp_path, direct_spy, syscalls):
    tensors = {"big": torch.randn(2_000_000), "small": torch.randn(1000), "odd": torch.randn(12_345)}
    store = Store(tmp_path / "store")
    m = store.put(tensors)
    dropped = [path for op, path in syscalls if op == "drop"]
    assert dropped and not direct_spy
    for path in dropped:  # each once clean: after its fsync, or opened O_DSYNC (the pages of a dirty file would stay)
        synced = ("fsync", path) if ("fsync", path) in syscalls else ("dsync", path)
        assert syscalls.index(synced) < syscalls.index(("drop", path)), syscalls
    got = store.get(m)
    assert all(torch.equal(got[k], v) for k, v in tensors.items())
    assert store.verify().ok


def test_a_store_that_does_not_fsync_writes_its_objects_around_the_page_cache(tmp_path, direct_spy, syscalls):
    tensors = {"big": torch.randn(2_000_000), "small": torch.randn(1000)}
    store = Store(tmp_path / "store", durable=False)
    got = store.get(store.put(tensors))
    assert direct_spy and all(direct_spy) and not [c for c in syscalls if c[0] in ("fsync", "drop")]
    assert all(torch.equal(got[k], v) for k, v in tensors.items())


def test_with_direct_writes_switched_off_objects_stay_in_the_page_cache(tmp_path, monkeypatch, direct_spy,
                                                                         syscalls):
    monkeypatch.setattr(filesystems, "direct_writes", False)
    tensors = {"big": torch.randn(300_000), "small": torch.randn(10)}
    for durable in (True, False):
        store = Store(tmp_path / f"s{durable}", durable=durable)
        got = store.get(store.put(tensors))
        assert all(torch.equal(got[k], v) for k, v in tensors.items())
    assert direct_spy and not any(direct_spy)
    assert not [c for c in syscalls if c[0] == "drop"]


def test_a_forked_child_writes_although_the_parent_held_the_buffers_lock(tmp_path):
    """The spare buffers' lock may be held by a parent's writer thread at the fork: the child starts afresh."""
    filesystems.local_atomic_write(str(tmp_path / "warm"), [b"x" * 5000], direct=True)  # a spare exists
    path = str(tmp_path / "child")
    with filesystems._spare_lock:
        pid = os.fork()
        if pid == 0:  # the child: would wait forever on the lock its parent's thread holds
            try:
                filesystems.local_atomic_write(path, [b"y" * 9000], direct=True)
                os._exit(0)
            except BaseException:
                os._exit(1)
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the buffers' lock")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    with open(path, "rb") as f:
        assert f.read() == b"y" * 9000
