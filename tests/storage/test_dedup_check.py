"""A dedup hit checks the stored object is a regular file of the right size, and rewrites it if not.

Before this check, a truncated object made the next put of the same tensors succeed while its
manifest could not be read back (IntegrityError). What a hit does not prove: that the object's
bytes are right (a bit flipped in place keeps its size); reads and ``verify`` hash every byte.
"""

from __future__ import annotations

import os

import pytest
import torch
from storage_helpers import same

from storage import IntegrityError, Store, manifest_objects

TENSORS = {"big": torch.arange(40_000, dtype=torch.float32), "b": torch.ones(7)}


def object_path(store: Store, obj: str) -> str:
    h = obj.removeprefix("blake3:")
    return f"{store.location.path}/objects/{h[:2]}/{h}"


def fresh(store_url: str, tmp_path, name: str) -> Store:
    return Store(store_url, cache_dir=str(tmp_path / name))


def test_a_truncated_object_is_rewritten_by_the_next_put(store, store_url, tmp_path):
    m = store.put(TENSORS)
    obj = m["tensors"]["big"]["object"]
    path = object_path(store, obj)
    store.fs.pipe_file(path, bytes(store.fs.cat_file(path))[:1000])  # truncated in place
    with pytest.raises(IntegrityError):
        fresh(store_url, tmp_path, "c1").get(m)
    writer = fresh(store_url, tmp_path, "c2")
    assert writer.put(TENSORS) == m
    assert writer.stats.objects_written == 1  # the damaged object only; the intact pack was reused
    got = fresh(store_url, tmp_path, "c3").get(m)
    assert all(same(got[k], v) for k, v in TENSORS.items())


def test_an_empty_object_file_is_rewritten(store, store_url, tmp_path):
    m = store.put(TENSORS)
    for obj in manifest_objects(m):
        store.fs.pipe_file(object_path(store, obj), b"")
    writer = fresh(store_url, tmp_path, "c2")
    writer.put(TENSORS)
    assert writer.stats.objects_written == 2
    assert fresh(store_url, tmp_path, "c3").verify().ok


def test_an_intact_object_is_reused_without_rewriting(store, store_url, tmp_path):
    store.put(TENSORS)
    writer = fresh(store_url, tmp_path, "c2")
    writer.put(TENSORS)
    assert writer.stats.objects_written == 0


def test_control_a_flipped_byte_keeps_its_size_and_is_not_caught_by_a_dedup_hit(store, store_url, tmp_path):
    """What a dedup hit does not prove: the check is about type and size, reads verify the bytes."""
    m = store.put(TENSORS)
    path = object_path(store, m["tensors"]["big"]["object"])
    data = bytearray(store.fs.cat_file(path))
    data[-3] ^= 1
    store.fs.pipe_file(path, bytes(data))
    writer = fresh(store_url, tmp_path, "c2")
    writer.put(TENSORS)
    assert writer.stats.objects_written == 0
    with pytest.raises(IntegrityError):
        fresh(store_url, tmp_path, "c3").get(m)


@pytest.mark.parametrize("kind", ["folder", "fifo", "symlink"])
def test_a_local_non_regular_file_in_place_of_an_object_is_replaced(tmp_path, kind):
    store = Store(tmp_path / "store")
    m = store.put(TENSORS)
    path = object_path(store, m["tensors"]["big"]["object"])
    os.unlink(path)
    if kind == "folder":
        os.makedirs(os.path.join(path, "inside"))
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(tmp_path / "elsewhere", path)
    Store(tmp_path / "store").put(TENSORS)
    assert os.path.isfile(path) and not os.path.islink(path)
    got = Store(tmp_path / "store").get(m)
    assert same(got["big"], TENSORS["big"])
    if kind == "folder":  # moved aside, never deleted
        assert os.listdir(tmp_path / "store" / "quarantine")
