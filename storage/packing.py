"""Which tensors share an object: large ones alone, small ones packed at content-defined boundaries.

A pack boundary falls after a small tensor whose digest meets a condition (once the pack is big
enough), so packs are stable across snapshots: changing one small tensor rewrites one pack, and
adding or removing one shifts at most its neighbours, not every pack after it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from storage import digest, objects
from storage.dtypes import RawTensor

ALONE_FROM = 64 << 10  # tensors of this many bytes or more get an object of their own
PACK_MIN = 1 << 20  # a pack may close once it holds this much ...
PACK_MAX = 4 << 20  # ... and must close at this much
_CUT_ONE_IN = 4


def packs(raws: Mapping[str, RawTensor], digests: Mapping[str, str]) -> Iterator[objects.EncodedObject]:
    """The packs that hold the small tensors of ``raws`` (each distinct one once, in name order), each
    encoded as its boundary is found: a writer may store one while the next is made, and ``digests``
    is asked for each small tensor's digest only as its turn comes (it may hash it then)."""
    pack: dict[str, RawTensor] = {}
    size = 0
    seen: set[str] = set()
    for name in sorted(raws):
        r = raws[name]
        if r.nbytes >= ALONE_FROM:  # (a large tensor never shares a digest with a small one: same bytes)
            continue
        d = digests[name]
        if d in seen:
            continue
        seen.add(d)
        pack[d] = r
        size += r.nbytes
        if size >= PACK_MAX or (size >= PACK_MIN and int(digest.hex_of(d)[:8], 16) % _CUT_ONE_IN == 0):
            yield objects.encode(pack)
            pack, size = {}, 0
    if pack:
        yield objects.encode(pack)

