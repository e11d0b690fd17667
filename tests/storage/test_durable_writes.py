"""Local objects are durable before ``put`` returns: file fsynced (or written ``O_DSYNC``) before its
rename, folder fsynced after.

The order of the system calls is recorded (``syscalls``, tests/conftest.py: ``os.fsync`` / ``os.replace``
/ ``os.open`` wrapped, still doing their work); a control shows the check catches a write that skips
the fsyncs.
"""

from __future__ import annotations

import os

import pytest
import torch

from storage import Store, filesystems, manifest_objects
from storage_helpers import durability_violations


def object_path(store: Store, obj: str) -> str:
    h = obj.removeprefix("blake3:")
    return f"{store.location.path}/objects/{h[:2]}/{h}"


@pytest.mark.parametrize("tensors", [{"big": torch.randn(300_000), "b": torch.randn(3)},  # threaded
                                     {"small": torch.randn(30_000), "b": torch.randn(3)}])  # inline
def test_every_object_is_fsynced_before_its_rename_and_its_folder_after(tmp_path, syscalls, tensors):
    store = Store(tmp_path / "store")
    m = store.put(tensors)
    objs = manifest_objects(m)
    assert len(objs) == 2
    for obj in objs:
        assert durability_violations(syscalls, object_path(store, obj)) == []
    # the folders this put created (store/, objects/, objects/ab/) are durable too
    assert ("fsync", str(tmp_path)) in syscalls and ("fsync", f"{store.location.path}/objects") in syscalls


def test_control_a_plain_write_is_reported(tmp_path, syscalls):
    path = str(tmp_path / "f")
    filesystems.local_atomic_write(path, [b"abc"])  # durable=False, as checkpoint files are written
    assert durability_violations(syscalls, path) == [
        f"{syscalls[0][1].split(' -> ')[0]} not fsynced before its rename",
        f"folder {tmp_path} not fsynced after the rename",
    ]


def test_the_first_put_makes_every_object_folder_so_later_writes_fsync_no_new_folder(tmp_path, syscalls):
    store = Store(tmp_path / "store")
    store.put({"a": torch.randn(30_000)})
    root = f"{store.location.path}/objects"
    assert sorted(os.listdir(root)) == [f"{i:02x}" for i in range(256)]
    assert ("fsync", root) in syscalls  # the folders' names are durable
    syscalls.clear()
    m = store.put({"b": torch.randn(30_000), "c": torch.randn(20_000)})
    folders = {os.path.dirname(object_path(store, o)) for o in manifest_objects(m)}
    assert {arg for op, arg in syscalls if op == "fsync" and "/.tmp-" not in arg} == folders


def test_begin_put_returns_the_manifest_while_writing_and_wait_raises_a_write_error(tmp_path, monkeypatch):
    """``begin_put`` hands back the manifest before the objects are stored; their error surfaces on ``wait()``."""
    import errno

    from storage import StorageWriteError

    store = Store(tmp_path / "store")
    store.put({"warm": torch.zeros(3)})  # (the first put makes the object folders)

    def full_disk(folder):
        raise OSError(errno.ENOSPC, "No space left on device", folder)

    monkeypatch.setattr(filesystems, "fsync_folder", full_disk)
    pending = store.begin_put({"big": torch.randn(300_000), "b": torch.randn(3)})
    assert len(manifest_objects(pending.manifest)) == 2
    with pytest.raises(StorageWriteError, match="no space"):
        pending.wait()
    pending.settle()  # nothing left running, nothing raised
    monkeypatch.undo()
    m = store.begin_put({"big": torch.randn(3)}).wait()
    assert store.get(m)["big"].shape == (3,)


def test_a_write_of_many_buffers_and_short_writes_keeps_every_byte_in_order(tmp_path, monkeypatch):
    """``local_atomic_write`` goes through ``writev`` (at most IOV_MAX buffers a call, resumed after short writes)."""
    buffers = [bytes([i % 251]) * (i % 7) for i in range(3000)]
    path = str(tmp_path / "many")
    filesystems.local_atomic_write(path, buffers, durable=True)
    assert open(path, "rb").read() == b"".join(buffers)
    real_writev = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, views: real_writev(fd, [memoryview(views[0])[:5]]))  # 5 bytes a call
    filesystems.local_atomic_write(path, buffers[:200], durable=False)
    assert open(path, "rb").read() == b"".join(buffers[:200])


def test_begin_put_returns_once_its_writes_are_under_way(tmp_path, monkeypatch):
    """A writer thread needs the GIL to start its write; ``begin_put`` lets it go until the bytes go out,
    so that the write overlaps what the caller does next (a snapshot's SQL) instead of waiting for it."""
    import threading

    store = Store(tmp_path / "store")
    store.put({"warm": torch.zeros(3)})
    writing: list[str] = []
    real = filesystems._writev_all

    def writev_all(fd, buffers):
        writing.append(threading.current_thread().name)
        return real(fd, buffers)

    monkeypatch.setattr(filesystems, "_writev_all", writev_all)
    for step in range(5):
        writing.clear()
        tensors = {f"w{i}": torch.full((5000,), float(step * 100 + i)) for i in range(50)}  # one pack of 1 MB
        pending = store.begin_put(tensors)
        assert writing and writing[0].startswith("rlreg-put"), step  # (a writer thread, already writing)
        pending.wait()


def test_a_durable_object_is_opened_o_dsync_before_its_rename_and_not_fsynced_again(tmp_path, monkeypatch, syscalls):
    if not filesystems._O_DSYNC:
        pytest.skip("no O_DSYNC here")
    flags: dict[str, int] = {}
    real = os.open

    def recording_open(path, flag, *args, **kwargs):
        flags[os.path.basename(path)] = flag
        return real(path, flag, *args, **kwargs)

    monkeypatch.setattr(filesystems.os, "open", recording_open)
    store = Store(tmp_path / "store")
    m = store.put({"a": torch.randn(30_000)})
    (obj,) = manifest_objects(m)
    tmp = [name for name in flags if name.startswith(".tmp-") and name.endswith(obj.removeprefix("blake3:"))]
    assert len(tmp) == 1 and flags[tmp[0]] & os.O_DSYNC
    assert durability_violations(syscalls, object_path(store, obj)) == []
    assert not [path for op, path in syscalls if op == "fsync" and os.path.basename(path) == tmp[0]]
    flags.clear()
    syscalls.clear()
    many = [bytes([i % 251]) for i in range(filesystems._IOV_MAX + 1)]  # more than one writev: fsync alone
    filesystems.local_atomic_write(str(tmp_path / "many"), many, durable=True, direct=True)
    assert not [f for f in flags.values() if f & os.O_DSYNC]
    assert durability_violations(syscalls, str(tmp_path / "many")) == []
    assert [op for op, path in syscalls if "/.tmp-" in path] == ["fsync", "drop", "replace"]


def test_a_pack_is_written_while_the_next_is_hashed(tmp_path, monkeypatch):
    """Small tensors are hashed in name order and each pack goes to a writer as its boundary is found:
    the first pack's write begins before the last tensors are hashed."""
    from storage import digest

    store = Store(tmp_path / "store")
    store.put({"warm": torch.zeros(3)})
    hashed, at_write = [0], []
    real_digest, real_writev = digest.tensor_digest, filesystems._writev_all

    def counting_digest(*args):
        hashed[0] += 1
        return real_digest(*args)

    def writev_all(fd, buffers):
        at_write.append(hashed[0])
        return real_writev(fd, buffers)

    monkeypatch.setattr(digest, "tensor_digest", counting_digest)
    monkeypatch.setattr(filesystems, "_writev_all", writev_all)
    tensors = {f"t{i:04d}": torch.full((1500,), float(i)) for i in range(2000)}  # 12 MB of 6 KB tensors
    m = store.begin_put(tensors).wait()
    assert hashed[0] == 2000 and len(at_write) == len(manifest_objects(m)) >= 3
    assert min(at_write) < 2000  # (control: hashing every tensor before the first pack gives 2000)
    assert store.get(m)["t1234"][0].item() == 1234.0


def test_an_interrupt_while_handing_over_leaves_no_write_running(tmp_path, monkeypatch):
    """Ctrl-C while ``begin_put`` waits for its writes to start: the writes are cancelled or waited for,
    so a caller that goes on changing its tensor never gets those bytes stored under the old digest."""
    import signal
    import threading
    import time

    store = Store(tmp_path / "store")
    store.put({"warm": torch.zeros(4)})
    real_intact = Store._intact_local

    def slow_intact(self, obj):  # a writer slow to get going (a busy pool, a slow disk)
        time.sleep(0.5)
        return real_intact(self, obj)

    monkeypatch.setattr(Store, "_intact_local", slow_intact)
    t = torch.ones(1 << 16)
    main = threading.main_thread().ident
    timer = threading.Timer(0.1, lambda: signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        store.begin_put({"w": t})
        time.sleep(5)  # (not reached when the interrupt comes during begin_put)
    timer.join()
    t.fill_(7.0)  # the caller goes on
    time.sleep(0.8)  # (a write still running would store the 7s now)
    assert store.verify().ok
    monkeypatch.undo()
    m = store.put({"w": torch.ones(1 << 16)})
    assert torch.equal(store.get(m)["w"], torch.ones(1 << 16))


@pytest.mark.parametrize("tensors", [{"big": torch.randn(300_000), "b": torch.randn(3)},  # threaded
                                     {"small": torch.randn(30_000), "b": torch.randn(3)}])  # inline
def test_a_put_that_finds_its_objects_stored_makes_their_names_durable(tmp_path, syscalls, tensors):
    """Another write may have renamed an object into place and not yet fsynced its folder (another
    process, another name's snapshot): a put that reuses it fsyncs that folder before it returns, or
    its caller could commit a version whose object a power loss takes away. Not a store that is not
    durable: it fsyncs nothing."""
    store = Store(tmp_path / "store")
    objs = manifest_objects(store.put(tensors))
    syscalls.clear()
    assert manifest_objects(store.put(tensors)) == objs  # every object found stored
    assert not [c for c in syscalls if c[0] == "replace"]
    for obj in objs:
        assert ("fsync", os.path.dirname(object_path(store, obj))) in syscalls
    loose = Store(tmp_path / "loose", durable=False)
    loose.put(tensors)
    syscalls.clear()
    loose.put(tensors)
    assert not [c for c in syscalls if c[0] == "fsync"]


def test_a_store_whose_folders_another_made_makes_them_durable_at_its_first_put(tmp_path, syscalls):
    """Another process may have made the 256 folders and not yet fsynced them: a store that finds them
    made fsyncs objects/ and its own folder before its first put returns."""
    Store(tmp_path / "store").put({"a": torch.randn(3)})
    syscalls.clear()
    second = Store(tmp_path / "store")
    second.put({"b": torch.randn(5)})
    assert ("fsync", f"{second.location.path}/objects") in syscalls
    assert ("fsync", second.location.path) in syscalls


def test_a_store_whose_folders_another_began_to_make_makes_them_durable(tmp_path, syscalls):
    (tmp_path / "store" / "objects" / "00").mkdir(parents=True)  # another process, part-way (or killed)
    store = Store(tmp_path / "store")
    store.put({"b": torch.randn(5)})
    assert ("fsync", f"{store.location.path}/objects") in syscalls and ("fsync", store.location.path) in syscalls
