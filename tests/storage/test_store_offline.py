"""``Store(..., offline=True)`` (``RLREG_OFFLINE=1``): a remote store reads its cache and nothing else;
``RecordCache``: the verified JSON records offline loads read."""

from __future__ import annotations

import os
import socket

import pytest
import torch
from storage import Store
from storage.errors import IntegrityError, NotCachedError, OfflineError
from storage.records import RecordCache


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_offline_remote_store_reads_the_cache_only(s3_bucket, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    online = Store(f"{s3_bucket}/s", cache_dir=cache)
    cached = online.put({"w": torch.arange(1000.0)})
    online.get(cached)  # read once online: cached
    uncached = online.put({"b": torch.ones(2000)})  # never read
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")  # the bucket is gone
    monkeypatch.setenv("RLREG_OFFLINE", "1")
    offline = Store(f"{s3_bucket}/s", cache_dir=cache)  # offline from the variable
    assert offline.offline
    assert torch.equal(offline.get(cached)["w"], torch.arange(1000.0))
    with pytest.raises(NotCachedError, match=r"tensors 'b'.*not in the cache .*RLREG_OFFLINE=1"):
        offline.get(uncached)
    for refused in (lambda: offline.put({"x": torch.zeros(3)}), offline.list_digests,
                    lambda: offline.exists(list(cached["objects"])), offline.verify):
        with pytest.raises(OfflineError, match="RLREG_OFFLINE=1, so the bucket is not contacted"):
            refused()


def test_an_offline_local_store_reads_its_folder(tmp_path):
    online = Store(str(tmp_path / "s"))
    m = online.put({"w": torch.arange(10)})
    offline = Store(str(tmp_path / "s"), offline=True)
    assert torch.equal(offline.get(m)["w"], torch.arange(10)) and offline.list_digests()


def test_records_are_verified(tmp_path):
    records = RecordCache(str(tmp_path))
    assert records.get(["a", 1]) is None
    assert records.put(["a", 1], {"x": [1, 2.5, "é"]}) is True
    assert records.put(["a", 1], {"x": [1, 2.5, "é"]}) is False  # same bytes: nothing rewritten
    assert records.get(["a", 1]) == {"x": [1, 2.5, "é"]}
    records.put(["a", 2], {"x": 2})
    path = records.path(["a", 1])
    original = open(path, "rb").read()
    open(path, "wb").write(original.replace(b"2.5", b"3.5"))
    with pytest.raises(IntegrityError, match="content hashes to"):
        records.get(["a", 1])
    open(path, "wb").write(open(records.path(["a", 2]), "rb").read())  # another key's record
    with pytest.raises(IntegrityError, match="it is the record of a/2, not of a/1"):
        records.get(["a", 1])
    assert list(records.verify()) == [path]  # (lies where its key does not put it): removed
    assert records.get(["a", 1]) is None and records.get(["a", 2]) == {"x": 2}
    assert not records.verify()


def test_a_record_put_again_is_rewritten_when_its_file_changed_meanwhile(tmp_path):
    """A put of the value this RecordCache last put skips the encoding only while the file is untouched."""
    records = RecordCache(str(tmp_path))
    value = {"manifest": {"w": [1, 2]}, "tags": {}}
    assert records.put(["v", 1], value) is True
    value["tags"]["stage"] = "eval"  # the caller's dict changes after the put: the record does not
    assert records.get(["v", 1]) == {"manifest": {"w": [1, 2]}, "tags": {}}
    assert records.put(["v", 1], value) is True
    assert records.put(["v", 1], {"manifest": {"w": [1, 2]}, "tags": {"stage": "eval"}}) is False
    os.unlink(records.path(["v", 1]))  # removed by another process (`rlreg cache verify`, a person)
    assert records.put(["v", 1], value) is True and records.get(["v", 1]) == value
    other = RecordCache(str(tmp_path))
    other.put(["v", 1], {"manifest": {}, "tags": {}})  # replaced by another process
    assert records.put(["v", 1], value) is True and records.get(["v", 1]) == value


def test_known_is_what_this_cache_put_while_its_file_is_unchanged(tmp_path):
    """``known`` answers from memory, without reading: only for a record this RecordCache put, in a file
    nobody replaced since; its value is a copy."""
    records, other = RecordCache(str(tmp_path)), RecordCache(str(tmp_path))
    assert records.known(["s"]) is None
    records.put(["s"], {"version": 1})
    found = records.known(["s"])
    assert found == {"version": 1}
    found["version"] = 9
    assert records.known(["s"]) == {"version": 1}
    assert other.known(["s"]) is None  # it did not put it
    other.put(["s"], {"version": 2})  # another process replaces the record
    assert records.known(["s"]) is None and records.get(["s"]) == {"version": 2}
    os.unlink(records.path(["s"]))
    assert other.known(["s"]) is None
