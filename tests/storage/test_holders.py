"""Holder records (``storage.holders``): who references a store's objects from outside it, on a local folder,
``memory://`` and S3 alike; a record is durable on a local folder; a damaged one still counts."""

from __future__ import annotations

import json

import pytest
from storage import Store, holders
from storage.errors import OfflineError
from storage_helpers import count_requests, durability_violations


def test_holders_are_recorded_once_each_listed_and_released(store):
    assert holders.holders(store) == {}
    assert holders.hold(store, "reg-a", {"database": "sqlite:///a.db"}) is True
    assert holders.hold(store, "reg-a", {"database": "changed"}) is False  # recorded already: kept as it was
    assert holders.hold(store, "reg-b", {"database": "sqlite:///b.db"}) is True
    found = holders.holders(store)
    assert found == {"reg-a": {"database": "sqlite:///a.db", "holder": "reg-a"},
                     "reg-b": {"database": "sqlite:///b.db", "holder": "reg-b"}}
    assert store.list_digests() == []  # records are no objects (nor leftovers): gc never sees them
    assert holders.release(store, "reg-a") is True
    assert holders.release(store, "reg-a") is False
    assert list(holders.holders(store)) == ["reg-b"]


def test_a_client_sees_a_holder_another_machine_recorded_after_its_first_look(s3_bucket, s3_server, tmp_path):
    """s3fs keeps listings: a client that listed the holders before another machine recorded one (here
    boto3, beside s3fs) must not answer from that listing (gc would miss a registry that began to share)."""
    import boto3

    store = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "cache"))
    holders.hold(store, "reg-a", {})
    assert list(holders.holders(store)) == ["reg-a"]
    boto3.client("s3", endpoint_url=s3_server).put_object(
        Bucket=s3_bucket.removeprefix("s3://"), Key=f"store/{holders.FOLDER}/reg-b.json", Body=b"{}")
    assert list(holders.holders(store)) == ["reg-a", "reg-b"]


def test_a_damaged_record_still_names_a_holder(store):
    holders.hold(store, "reg-a", {})
    store.fs.pipe_file(f"{store.location.path}/{holders.FOLDER}/reg-b.json", b"{not json")
    found = holders.holders(store)
    assert set(found) == {"reg-a", "reg-b"}
    assert "damaged" in found["reg-b"] and "JSONDecodeError" in found["reg-b"]["damaged"]


@pytest.mark.parametrize("bad", ["", ".hidden", "a/b", "../x", "a.json", "x" * 129, 7])
def test_a_holder_id_that_is_not_a_plain_file_name_is_refused(store, bad):
    with pytest.raises(ValueError, match="is not a holder id"):
        holders.hold(store, bad, {})
    assert holders.holders(store) == {}


def test_a_local_record_is_durable_before_hold_returns(tmp_path, syscalls):
    """The record and its folder's entry are on disk before the holder stores any object."""
    store = Store(tmp_path / "store")
    holders.hold(store, "reg-a", {})
    path = str(tmp_path / "store" / holders.FOLDER / "reg-a.json")
    assert json.loads(open(path).read()) == {"holder": "reg-a"}
    assert durability_violations(syscalls, path) == []
    assert ("fsync", str(tmp_path / "store")) in syscalls  # the new folder holders/ is named durably too


def test_an_offline_client_does_not_contact_the_bucket(s3_bucket, tmp_path):
    store = Store(s3_bucket + "/store", cache_dir=str(tmp_path / "cache"), offline=True)
    sent = count_requests(store)
    for call in (lambda: holders.hold(store, "reg-a", {}), lambda: holders.holders(store),
                 lambda: holders.release(store, "reg-a"), lambda: holders.collecting(store),
                 lambda: holders.Lease(store, "reg-a", {}).__enter__()):
        with pytest.raises(OfflineError):
            call()
    assert sent == [0]


def test_files_that_no_holder_id_names_are_not_holders(store):
    """Only rlreg writes records, each named by a valid id: anything else there (a stray file, a temporary
    name, ``x.json.json``) is ignored, so gc is never refused by a holder ``storage forget`` cannot name."""
    holders.hold(store, "reg-a", {})
    for name in ("foo bar.json", ".hidden.json", "y.json.json", "notes.txt"):
        store.fs.pipe_file(f"{store.location.path}/{holders.FOLDER}/{name}", b"{}")
    assert list(holders.holders(store)) == ["reg-a"]


def test_a_lease_is_listed_while_held_and_gone_after(store):
    """Two gcs of one holder at once: the first to end leaves the other's lease in place."""
    assert holders.collecting(store) == {}
    with holders.Lease(store, "reg-a", {"database": "x"}):
        with holders.Lease(store, "reg-a", {"database": "x"}):
            assert list(holders.collecting(store)) == ["reg-a"]
        assert list(holders.collecting(store)) == ["reg-a"]
        assert holders.holders(store) == {}  # a lease is no record
    assert holders.collecting(store) == {}


def test_listing_the_holders_of_a_missing_bucket_says_so(s3_bucket, tmp_path):
    from storage.errors import StorageUnavailableError

    store = Store("s3://rlreg-no-such-bucket-here/store", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(StorageUnavailableError, match="no bucket"):
        holders.holders(store)
