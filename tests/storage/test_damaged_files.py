"""Damaged storage never hangs and never succeeds silently: FIFOs and folders in place of objects or
cache entries, planted objects with hostile headers, objects far larger than their manifest says."""

from __future__ import annotations

import json
import os
import shutil
import struct

import pytest
import torch
from storage_helpers import same

from storage import IntegrityError, Store, manifest_objects
from storage.digest import bytes_digest

pytestmark = pytest.mark.timeout(60)  # today's failure mode is a hang: make it a failure instead


def object_path(root: str, obj: str) -> str:
    h = obj.removeprefix("blake3:")
    return os.path.join(root, "objects", h[:2], h)


def plant(path: str, kind: str) -> None:
    """Put a FIFO, an empty folder or a folder with a file at ``path`` (replacing what is there)."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.mkdir(path)
        if kind == "full folder":
            with open(os.path.join(path, "x"), "w") as f:
                f.write("x")


KINDS = {"fifo": "a FIFO", "folder": "a folder", "full folder": "a folder"}


@pytest.fixture
def two_objects(tmp_path):
    store = Store(str(tmp_path / "store"))
    state = {"big": torch.randn(40_000), "small": torch.randn(5)}
    m = store.put(state)
    big = m["tensors"]["big"]["object"]
    return store, m, state, big


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_non_regular_object_is_damaged_on_get(two_objects, kind):
    store, m, state, big = two_objects
    plant(object_path(store.location.path, big), kind)
    with pytest.raises(IntegrityError, match=rf"object {big} at .* is damaged \(tensors 'big'\): .* is {KINDS[kind]}, not a regular file"):
        store.get(m)
    assert same(store.get(m, names=["small"])["small"], state["small"])  # the rest still loads


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_verify_reports_non_regular_object_and_repair_plus_put_heals_it(two_objects, kind):
    store, m, state, big = two_objects
    path = object_path(store.location.path, big)
    plant(path, kind)
    report = store.verify()
    assert report.checked == 2 and list(report.damaged) == [big]
    assert f"is {KINDS[kind]}, not a regular file" in report.damaged[big]
    repaired = store.verify(quarantine=True)
    assert list(repaired.quarantined) == [big] and not os.path.lexists(path)
    store.put(state)  # the next put writes the object again
    assert store.verify().ok and all(same(store.get(m)[k], v) for k, v in state.items())


def hostile_object(root: str, header: dict | list | str) -> str:
    """Plant an object whose header is ``header`` and whose name is the digest of that header."""
    text = header if isinstance(header, str) else json.dumps(header)
    raw = text.encode()
    raw += b" " * (-len(raw) % 8)
    head = struct.pack("<Q", len(raw)) + raw
    obj = bytes_digest(head)
    path = object_path(root, obj)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(head)
    return obj


HOSTILE_HEADERS = {
    "nested 20,000 deep": "[" * 20_000 + "]" * 20_000,
    "nested 20,000 deep in an object": '{"a":' + "[" * 20_000 + "]" * 20_000 + "}",
    "__metadata__ a list": {"__metadata__": [1, 2]},
    "__metadata__ holds a number": {"__metadata__": {"format": 1}},
    "an entry that is a string": {"k": "x"},
    "a shape past 2^63": {"k": {"dtype": "F32", "shape": [0, 10**30], "data_offsets": [0, 0]}},
    "a header that is a list": [],
    "not JSON": "{]",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HEADERS))
def test_verify_reports_hostile_header_damaged_and_goes_on(two_objects, name):
    store, m, state, big = two_objects
    planted = hostile_object(store.location.path, HOSTILE_HEADERS[name])
    report = store.verify()
    assert report.checked == 3 and list(report.damaged) == [planted]
    assert report.damaged[planted].startswith(f"object {planted} at ") and "is damaged" in report.damaged[planted]
    assert report.damaged_tensors[planted] == []
    assert list(store.verify(quarantine=True).quarantined) == [planted]
    assert store.verify().ok


def test_oversized_s3_object_reads_at_most_one_byte_more(s3_bucket, tmp_path):
    store = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "cache"))
    m = store.put({"w": torch.randn(2000)})
    (obj,) = manifest_objects(m)
    size = m["objects"][obj]["nbytes"]
    h = obj.removeprefix("blake3:")
    path = f"{store.location.path}/objects/{h[:2]}/{h}"
    store.fs.pipe_file(path, bytes(store.fs.cat_file(path)) + b"\0" * (8 << 20))  # 8 MB served for 8 KB
    reader = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "cache2"))
    reader.fs.connect()
    lengths = []
    reader.fs.s3.meta.events.register(
        "after-call.s3.GetObject", lambda parsed, **_: lengths.append(int(parsed.get("ContentLength", -1)))
    )
    with pytest.raises(IntegrityError, match=rf"object {obj} at .* is damaged"):
        reader.get(m)
    assert lengths == [size + 1]


@pytest.fixture
def cached(s3_bucket, tmp_path):
    """An S3 store whose read cache holds both objects of a version."""
    store = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "cache"))
    state = {"big": torch.randn(40_000), "small": torch.randn(5)}
    m = store.put(state)
    store.get(m)  # a read fills the cache (an upload does not)
    assert {e.digest for e in store.cache.entries()} == set(manifest_objects(m))
    return store, m, state


@pytest.mark.parametrize("kind", ["fifo", "folder", "full folder", "flipped byte"])
def test_damaged_cache_entry_is_refetched_reported_and_repaired(cached, kind):
    store, m, state = cached
    big = m["tensors"]["big"]["object"]
    path = store.cache.path(big)
    if kind == "flipped byte":
        data = bytearray(open(path, "rb").read())
        data[-3] ^= 1
        with open(path, "wb") as f:
            f.write(data)
    else:
        plant(path, kind)
    report = store.verify()
    assert report.ok and list(report.cache_damaged) == [big] and report.cache_discarded == []
    assert os.path.lexists(path)  # verify without repair changes nothing
    repaired = store.verify(quarantine=True)
    assert repaired.cache_discarded == [big] and not os.path.lexists(path)
    assert store.verify().cache_damaged == {}


@pytest.mark.parametrize("kind", ["fifo", "full folder"])
def test_get_discards_a_non_regular_cache_entry_and_fetches_again(cached, kind):
    store, m, state = cached
    big = m["tensors"]["big"]["object"]
    plant(store.cache.path(big), kind)
    out = store.get(m)
    assert all(same(out[k], v) for k, v in state.items())
    assert os.path.isfile(store.cache.path(big))  # cached again, as a file
