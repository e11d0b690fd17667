"""A bucket that does not exist is an error naming it, not an empty store; an empty one is empty."""

from __future__ import annotations

import pytest
import torch

from storage import Store, StorageUnavailableError

MISSING = "s3://rlreg-never-created-bucket"


@pytest.mark.parametrize("url", [MISSING, MISSING + "/prefix"])
@pytest.mark.parametrize("call", ["list_digests", "verify"])
def test_missing_bucket_is_unavailable(s3_server, url, call):
    with pytest.raises(StorageUnavailableError) as info:
        getattr(Store(url), call)()
    assert str(info.value).startswith(f"storage {url!r} is unavailable: no bucket 'rlreg-never-created-bucket'")


def test_missing_bucket_put_and_list_say_the_same(s3_server):
    with pytest.raises(StorageUnavailableError, match="rlreg-never-created-bucket"):
        Store(MISSING).put({"w": torch.ones(3)})
    with pytest.raises(StorageUnavailableError, match="rlreg-never-created-bucket"):
        Store(MISSING).list_digests()


def test_existing_empty_bucket_and_prefix_are_empty(s3_bucket):
    for url in (s3_bucket, s3_bucket + "/nothing/here/yet"):
        store = Store(url)
        assert store.list_digests() == []
        report = store.verify()
        assert (report.checked, report.ok) == (0, True)


def test_local_folder_not_created_yet_is_empty(tmp_path):
    """A store's folder is created by its first put: before that it is an empty store, not an error."""
    store = Store(str(tmp_path / "not-yet"))
    assert store.list_digests() == []
    assert store.verify().to_dict() == {"checked": 0, "damaged": {}, "damaged_tensors": {}, "quarantined": {}, "cache_damaged": {}, "cache_discarded": [], "ok": True}
    assert not (tmp_path / "not-yet").exists()  # looking did not create it


@pytest.mark.parametrize("where", ["local", "memory", "s3"])
def test_a_missing_file_whose_path_names_a_bucket_is_missing_not_a_missing_bucket(where, tmp_path, request):
    """Only S3's own NoSuchBucket makes a missing file a missing bucket, not the word in its path."""
    from storage import Location, ObjectNotFoundError

    url = {"local": lambda: str(tmp_path / "my-bucket"), "memory": lambda: "memory://bucket-words/bucket",
           "s3": lambda: request.getfixturevalue("s3_bucket") + "/bucket"}[where]()
    loc = Location(url)
    loc.write_bytes("here", b"x")
    with pytest.raises(ObjectNotFoundError, match="not found: .*bucket/nothing-bucket"):
        loc.read_bytes("nothing-bucket")
