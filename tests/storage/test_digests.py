"""The content addresses do not depend on how they are computed: a tensor's digest is blake3 over its
prefix and bytes, a pack's data digest blake3 over its tensors' bytes in file order, whichever path
(one call or several, a scratch copy or not) the size takes."""

from __future__ import annotations

import json
import struct
import threading

import blake3
import numpy as np
import pytest

from storage import digest, objects
from storage.dtypes import RawTensor

SIZES = [0, 4, 5240, digest.JOIN_BELOW - 4, digest.JOIN_BELOW, digest.JOIN_BELOW + 4, 1 << 20]


def raw(nbytes: int, seed: int) -> RawTensor:
    a = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)
    return RawTensor("U8", (nbytes,), memoryview(a), a)


@pytest.mark.parametrize("nbytes", SIZES)
def test_tensor_digest_is_blake3_of_prefix_and_bytes(nbytes):
    r = raw(nbytes, nbytes)
    expected = blake3.blake3(f"rlreg.tensor/1\0U8\0[{nbytes}]\0".encode() + bytes(r.data)).hexdigest()
    assert digest.tensor_digest("U8", r.shape, r.data) == "blake3:" + expected


def data_digest_in_header(obj: objects.EncodedObject) -> str:
    (n,) = struct.unpack_from("<Q", obj.header, 0)
    return json.loads(obj.header[8 : 8 + n])["__metadata__"]["data"]


@pytest.mark.parametrize("sizes", [[5240] * 300, [3, 0, 70_000, 1], [4 << 20, 4 << 20, 5]],
                         ids=["small tensors", "mixed", "past the scratch buffer's bound"])
def test_pack_data_digest_is_blake3_of_the_data_section(sizes):
    raws = {digest.tensor_digest("U8", (n,), r.data): r for n, r in ((n, raw(n, i)) for i, n in enumerate(sizes))}
    obj = objects.encode(raws)
    section = b"".join(bytes(raws[key].data) for key in obj.order)
    assert data_digest_in_header(obj) == "blake3:" + blake3.blake3(section).hexdigest()
    # a second, smaller pack reuses the scratch buffer: nothing of the first one leaks into its digest
    fewer = dict(list(raws.items())[:2])
    again = objects.encode(fewer)
    assert data_digest_in_header(again) == "blake3:" + blake3.blake3(
        b"".join(bytes(fewer[key].data) for key in again.order)).hexdigest()


def test_threads_encoding_packs_at_once_do_not_share_a_scratch_buffer():
    packs = [{digest.tensor_digest("U8", (4000,), r.data): r for r in (raw(4000, 10 * t + i) for i in range(50))}
             for t in range(4)]
    expected = [data_digest_in_header(objects.encode(p)) for p in packs]
    got: list[list[str]] = [[] for _ in packs]
    barrier = threading.Barrier(len(packs))

    def encode_often(i: int) -> None:
        barrier.wait()
        for _ in range(200):
            got[i].append(data_digest_in_header(objects.encode(packs[i])))

    threads = [threading.Thread(target=encode_often, args=(i,)) for i in range(len(packs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(set(g) == {e} for g, e in zip(got, expected))
