"""Every byte read is verified: damage in storage or in the cache is caught and never returned."""

from __future__ import annotations

import os

import pytest
import torch
from storage_helpers import count_requests, same

from storage import IntegrityError, ObjectNotFoundError, Store, manifest_objects


def object_path(store: Store, obj: str) -> str:
    h = obj.removeprefix("blake3:")
    return f"{store.location.path}/objects/{h[:2]}/{h}"


def flip(fs, path: str, offset: int) -> None:
    """Flip one bit of the file at ``path`` (through fsspec, on any backend)."""
    data = bytearray(fs.cat_file(path))
    data[offset] ^= 0x01
    fs.pipe_file(path, bytes(data))


def fresh_reader(store_url: str, tmp_path, name: str = "cache2") -> Store:
    """Another Store on the same URL with an empty cache, so reads go to storage."""
    return Store(store_url, cache_dir=str(tmp_path / name))


def test_flipped_data_byte_names_object_and_tensor(store, store_url, tmp_path):
    m = store.put({"big": torch.randn(50_000), "b": torch.randn(7)})
    obj = m["tensors"]["big"]["object"]
    flip(store.fs, object_path(store, obj), -5)
    reader = fresh_reader(store_url, tmp_path)
    with pytest.raises(IntegrityError) as info:
        reader.get(m)
    assert str(info.value).startswith(f"object {obj} at {reader.url}/objects/{obj[7:9]}/{obj[7:]} is damaged ")
    assert "(tensors 'big'): tensor " + m["tensors"]["big"]["digest"] + " hashes to blake3:" in str(info.value)
    assert str(info.value).endswith(
        "; its bytes were not returned; run Store.verify(quarantine=True) to move it aside; "
        "the next put of these tensors then rewrites it"
    )
    assert same(reader.get(m, names=["b"])["b"], store.get(m, names=["b"])["b"])  # other objects still load


def test_flipped_byte_in_a_pack_names_that_tensor(store, store_url, tmp_path):
    tensors = {"a": torch.zeros(4), "b": torch.ones(4), "c": torch.full((4,), 2.0)}
    m = store.put(tensors)
    (obj,) = manifest_objects(m)
    data = bytes(store.fs.cat_file(object_path(store, obj)))
    flip(store.fs, object_path(store, obj), data.rindex(torch.ones(4).numpy().tobytes()) + 3)
    with pytest.raises(IntegrityError, match=r"is damaged \(tensors 'b'\): tensor blake3:"):
        fresh_reader(store_url, tmp_path).get(m)


def test_flipped_header_byte(store, store_url, tmp_path):
    m = store.put({"w": torch.randn(10)})
    (obj,) = manifest_objects(m)
    flip(store.fs, object_path(store, obj), 20)
    with pytest.raises(IntegrityError, match=r"is damaged \(tensors 'w'\): its header hashes to blake3:"):
        fresh_reader(store_url, tmp_path).get(m)


@pytest.mark.parametrize("change", ["cut", "extend", "flip"])
@pytest.mark.parametrize("kind", ["pack", "lone"])
def test_an_object_read_before_is_verified_again(store, store_url, tmp_path, change, kind):
    """A header parsed at an earlier read is reused only for the same header bytes and data length:
    damage to an object read intact before is still caught (the data hashed, the length compared)."""
    tensors = {"a": torch.zeros(40), "b": torch.ones(40), "c": torch.full((40,), 2.0)}
    if kind == "lone":
        tensors = {"w": torch.randn(20_000)}
    m = store.put(tensors)
    (obj,) = manifest_objects(m)
    reader = fresh_reader(store_url, tmp_path)
    assert all(same(reader.get(m)[k], v) for k, v in tensors.items())
    data = bytes(store.fs.cat_file(object_path(store, obj)))
    damaged = {"cut": data[:-4], "extend": data + bytes(4), "flip": data[:-3] + bytes([data[-3] ^ 1]) + data[-2:]}
    store.fs.pipe_file(object_path(store, obj), damaged[change])
    with pytest.raises(IntegrityError, match=r"is damaged \(tensors "):
        fresh_reader(store_url, tmp_path, "cache3").get(m)


def test_truncated_object(store, store_url, tmp_path):
    m = store.put({"w": torch.randn(10)})
    (obj,) = manifest_objects(m)
    store.fs.pipe_file(object_path(store, obj), b"\x05\x00")
    with pytest.raises(IntegrityError, match=r"\(tensors 'w'\): 2 bytes cannot hold its header"):
        fresh_reader(store_url, tmp_path).get(m)


def test_verify_reports_damaged_and_missing(store):
    m1 = store.put({"a": torch.randn(100_000)})
    m2 = store.put({"b": torch.randn(100_000)})
    (bad,) = manifest_objects(m1)
    (good,) = manifest_objects(m2)
    flip(store.fs, object_path(store, bad), 1000)
    report = store.verify()
    assert report.checked == 2 and not report.ok
    assert list(report.damaged) == [bad] and "hashes to" in report.damaged[bad]
    assert report.damaged_tensors == {bad: [m1["tensors"]["a"]["digest"]]}
    assert report.quarantined == {} and store.list_digests() == sorted([bad, good])  # nothing moved
    gone = "blake3:" + "1" * 64
    report = store.verify([good, gone])
    assert report.damaged == {gone: report.damaged[gone]} and report.damaged[gone].startswith("missing: ")
    assert report.damaged_tensors == {gone: []}
    assert report.to_dict() == {
        "checked": 2, "damaged": report.damaged, "damaged_tensors": {gone: []}, "quarantined": {}, "cache_damaged": {}, "cache_discarded": [], "ok": False
    }


def test_verify_names_every_tensor_of_a_damaged_pack_and_none_for_a_damaged_header(store):
    m = store.put({"a": torch.zeros(4), "b": torch.ones(4), "c": torch.full((4,), 2.0)})
    (pack,) = manifest_objects(m)
    m2 = store.put({"w": torch.randn(10)})
    (lone,) = manifest_objects(m2)
    flip(store.fs, object_path(store, pack), -1)  # data
    flip(store.fs, object_path(store, lone), 20)  # header
    report = store.verify()
    assert report.damaged_tensors == {
        pack: sorted(m["tensors"][n]["digest"] for n in "abc"),
        lone: [],
    }
    assert "its header hashes to" in report.damaged[lone]


def test_quarantine_lets_the_next_put_rewrite_a_damaged_object(store, store_url, tmp_path):
    state = {"big": torch.randn(50_000), "b": torch.randn(7)}
    m = store.put(state)
    obj = m["tensors"]["big"]["object"]
    path = object_path(store, obj)
    good = bytes(store.fs.cat_file(path))
    flip(store.fs, path, -5)
    store.put(state)  # existence-only dedup: the damaged object stays
    with pytest.raises(IntegrityError, match=r"run Store\.verify\(quarantine=True\)"):
        fresh_reader(store_url, tmp_path).get(m)
    assert store.fs.cat_file(path) != good  # get moved nothing (reads are side-effect free)

    report = store.verify(quarantine=True)
    h = obj.removeprefix("blake3:")
    assert list(report.damaged) == [obj] and report.quarantined == {obj: f"{store.url}/quarantine/{h}"}
    assert not store.fs.exists(path) and obj not in store.list_digests()
    moved = bytes(store.fs.cat_file(f"{store.location.path}/quarantine/{h}"))
    assert moved != good and len(moved) == len(good)  # kept, not deleted
    assert store.verify().ok

    written = store.stats.objects_written
    assert store.put(state) == m
    assert store.stats.objects_written == written + 1  # only the quarantined object was rewritten
    assert bytes(store.fs.cat_file(path)) == good
    out = fresh_reader(store_url, tmp_path, "cache3").get(m)
    assert all(same(out[k], v) for k, v in state.items())

    flip(store.fs, path, -5)  # damaged again: the first quarantined copy is kept too
    report = store.verify([obj], quarantine=True)
    (again,) = report.quarantined.values()
    assert again.startswith(f"{store.url}/quarantine/{h}.") and store.fs.exists(f"{store.location.path}/quarantine/{h}")


def test_missing_object_names_it(store):
    m = store.put({"w": torch.randn(10)})
    (obj,) = manifest_objects(m)
    store.fs.rm_file(object_path(store, obj))
    reader = Store(store.url, cache_dir=None) if store.cache is None else store
    if reader.cache is not None:
        reader.cache.discard(obj)
    with pytest.raises(ObjectNotFoundError, match=rf"^object {obj} \(tensors 'w'\) is not in {reader.url}$"):
        reader.get(m)


@pytest.fixture
def s3_store(s3_bucket, tmp_path) -> Store:
    return Store(s3_bucket + "/store", cache_dir=str(tmp_path / "cache"))


def test_an_upload_is_not_cached(s3_store):
    m = s3_store.put({"w": torch.randn(20_000), "b": torch.randn(3)})
    assert s3_store.stats.objects_written == len(manifest_objects(m)) == 2
    assert s3_store.cache.total_bytes() == 0 and list(s3_store.cache.entries()) == []  # as `hf upload`
    s3_store.get(m)  # a read fills it
    assert {e.digest for e in s3_store.cache.entries()} == set(manifest_objects(m))


def test_damaged_cache_entry_is_refetched(s3_store, tmp_path):
    state = {"w": torch.randn(20_000), "b": torch.randn(3)}
    m = s3_store.put(state)
    s3_store.get(m)  # a read fills the cache
    obj = m["tensors"]["w"]["object"]
    path = s3_store.cache.path(obj)
    with open(path, "r+b") as f:
        f.seek(-3, os.SEEK_END)
        byte = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x10]))
    read, hits = s3_store.stats.objects_read, s3_store.stats.cache_hits
    out = s3_store.get(m)
    assert same(out["w"], state["w"])
    assert s3_store.stats.objects_read - read == 1 and s3_store.stats.cache_hits - hits == 1
    assert open(path, "rb").read() == s3_store.fs.cat_file(object_path(s3_store, obj))  # repaired


def test_damaged_cache_entry_and_no_bucket_copy_is_an_error(s3_store):
    m = s3_store.put({"w": torch.randn(20_000)})
    s3_store.get(m)  # a read fills the cache
    (obj,) = manifest_objects(m)
    with open(s3_store.cache.path(obj), "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff")
    s3_store.fs.rm_file(object_path(s3_store, obj))
    with pytest.raises(ObjectNotFoundError, match=rf"^object {obj} \(tensors 'w'\) is not in s3://"):
        s3_store.get(m)


def test_cached_load_makes_no_request(s3_store, tmp_path):
    state = {f"l{i}": torch.randn(300) for i in range(50)} | {"big": torch.randn(100_000)}
    m = s3_store.put(state)
    s3_store.get(m)  # a read fills the cache
    for obj in manifest_objects(m):
        s3_store.fs.rm_file(object_path(s3_store, obj))  # the bucket no longer has them
    assert s3_store.list_digests() == []
    requests = count_requests(s3_store)
    out = s3_store.get(m)
    assert requests[0] == 0
    assert all(same(out[k], v) for k, v in state.items())


def test_cache_fill_on_read_then_hit(s3_store, tmp_path):
    m = s3_store.put({"w": torch.randn(10_000)})
    reader = Store(s3_store.url, cache_dir=str(tmp_path / "other-cache"))
    requests = count_requests(reader)
    reader.get(m)
    first = requests[0]
    reader.get(m)
    assert first == 1 and requests[0] == 1 and reader.stats.cache_hits == 1


def test_cache_is_size_bounded(s3_bucket, tmp_path):
    store = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "c"), cache_max_bytes=1_000_000)
    for i in range(8):
        store.get(store.put({"w": torch.full((100_000,), float(i))}))  # 400 KB objects, each read once
    assert 0 < store.cache.total_bytes() <= 1_000_000
