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
