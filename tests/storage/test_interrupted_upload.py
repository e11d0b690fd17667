"""An upload interrupted mid-object leaves nothing at the object's path (and no open multipart upload)."""

from __future__ import annotations

import time

import pytest
import torch
from storage_helpers import same

from storage import Store, manifest_objects, objects

_BLOCK = 5 << 20  # s3fs's smallest part size: the tensor below spans several parts


def object_path(store: Store, obj: str) -> str:
    h = obj.removeprefix("blake3:")
    return f"{store.location.path}/objects/{h[:2]}/{h}"


def interrupted_chunks(real):
    """``chunks`` that yields the header and half of the first tensor, then fails."""

    def chunks(raws, order, header):
        parts = real(raws, order, header)
        yield next(parts)  # the header
        data = next(parts)
        yield data[: data.nbytes // 2]
        raise RuntimeError("interrupted mid-object")

    return chunks


@pytest.fixture
def block_store(store_url, tmp_path) -> Store:
    """A Store whose s3fs parts are 5 MiB, so that half a 12 MB tensor is one uploaded part."""
    options = {"default_block_size": _BLOCK} if store_url.startswith("s3://") else {}
    return Store(store_url, cache_dir=str(tmp_path / "cache"), **options)


def test_interrupted_upload_leaves_no_object(block_store, monkeypatch, tmp_path):
    store = block_store
    state = {"w": torch.randn(3_000_000)}  # 12 MB: one object
    parts = []
    if store.url.startswith("s3://"):
        store.fs.connect()
        store.fs.s3.meta.events.register("before-send.s3.UploadPart", lambda **_: parts.append(1))
    monkeypatch.setattr(objects, "chunks", interrupted_chunks(objects.chunks))
    with pytest.raises(RuntimeError, match="^interrupted mid-object$"):
        store.put(state)
    monkeypatch.undo()

    assert store.list_digests() == []
    assert store.stats.objects_written == 0
    if store.url.startswith("s3://"):
        assert parts, "the interruption came after a part was uploaded"
        bucket = store.location.path.split("/")[0]
        assert store.fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", []) == []
    if store.cache is not None:
        assert store.cache.total_bytes() == 0

    m = store.put(state)  # nothing claims the digest: the next put writes it
    (obj,) = manifest_objects(m)
    assert store.fs.exists(object_path(store, obj)) and store.stats.objects_written == 1
    out = Store(store.url, cache_dir=str(tmp_path / "fresh")).get(m)
    assert same(out["w"], state["w"])


def test_a_cancelled_write_stops_between_chunks_and_leaves_no_upload(s3_server, s3_bucket):
    import boto3
    import fsspec

    from storage.filesystems import WriteCancelled, atomic_write

    fs = fsspec.filesystem("s3", endpoint_url=s3_server, use_listings_cache=False)
    path = f"{s3_bucket.removeprefix('s3://')}/cancelled/object"
    chunks: list[int] = []
    data = bytes(64 << 20)  # past s3fs's 50 MiB block: a multipart upload is under way when cancelled
    with pytest.raises(WriteCancelled, match="cancelled"):
        atomic_write(fs, path, [data], cancelled=lambda: sum(chunks) >= 56 << 20, wrote=chunks.append)
    assert sum(chunks) == 56 << 20  # stopped at the chunk boundary, 8 MiB short of the end
    client = boto3.client("s3", endpoint_url=s3_server)
    assert client.list_multipart_uploads(Bucket=s3_bucket.removeprefix("s3://")).get("Uploads", []) == []
    assert not fs.exists(path)


def test_the_one_put_path_keeps_s3fs_s_limit_whatever_the_block_size(s3_server, s3_bucket, monkeypatch):
    """A body is joined for one PUT only below s3fs's own limit for one (two 50 MiB parts; scaled down
    here): with a larger block size set on the filesystem, a larger object is streamed through s3fs's
    file (a multipart upload past its block size), not joined into one request past S3's limit."""
    import fsspec

    from storage import filesystems

    fs = fsspec.filesystem("s3", endpoint_url=s3_server, use_listings_cache=False, default_block_size=1 << 30,
                           skip_instance_cache=True)
    monkeypatch.setattr(filesystems, "_ONE_PUT_BELOW", 64 << 10)
    one_put: list[str] = []
    real = filesystems._put_object
    monkeypatch.setattr(filesystems, "_put_object", lambda fs, path, body: one_put.append(path) or real(fs, path, body))
    bucket = s3_bucket.removeprefix("s3://")
    small, large = bytes(range(256)) * 200, bytes(range(256)) * 400  # 51,200 and 102,400 bytes
    filesystems.atomic_write(fs, f"{bucket}/one-put", [small[:100], small[100:]], size=len(small))
    filesystems.atomic_write(fs, f"{bucket}/in-parts", [large], size=len(large))
    assert one_put == [f"{bucket}/one-put"]
    assert fs.cat_file(f"{bucket}/one-put") == small and fs.cat_file(f"{bucket}/in-parts") == large


@pytest.mark.parametrize("how", ["cancelled", "interrupted"])
def test_a_cancelled_put_has_stopped_reading_its_body_when_the_write_returns(how, s3_server, s3_bucket,
                                                                             monkeypatch):
    """A PUT's body reads the caller's buffers in place; a cancel (or Ctrl-C in the waiting thread) takes
    effect at the request's next await, while botocore may still be checksumming the body: the write
    returns only once the request ended, so no read of the buffers comes after it (they may be freed)."""
    import fsspec

    from storage import filesystems

    reads: list[float] = []

    class Watched(filesystems.PutBody):
        def read(self, size=-1):
            reads.append(time.perf_counter())
            time.sleep(0.01)  # a slow checksum: the cancel lands while the body is still being read
            return super().read(size)

    monkeypatch.setattr(filesystems, "body_of", Watched)
    fs = fsspec.filesystem("s3", endpoint_url=s3_server, use_listings_cache=False)
    path = f"{s3_bucket.removeprefix('s3://')}/cancelled/one-put"
    data = bytes(40 << 20)  # one PUT: 40 reads of 1 MiB for botocore's checksum alone
    asked = []

    def cancelled():
        asked.append(1)
        if len(asked) >= 2:
            if how == "interrupted":
                raise KeyboardInterrupt
            return True
        return False

    with pytest.raises(filesystems.WriteCancelled if how == "cancelled" else KeyboardInterrupt):
        filesystems.atomic_write(fs, path, [data], size=len(data), cancelled=cancelled)
    returned = time.perf_counter()
    time.sleep(0.5)
    assert reads and not [t for t in reads if t > returned], "the body was read after the write returned"
    assert not fs.exists(path)
