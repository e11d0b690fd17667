"""Objects: safetensors files whose keys are tensor digests, addressed by the digest of their header.

The header names every tensor by its content address and gives its place in the file, so hashing the
header once and each tensor's bytes once verifies every byte of an object: no byte is hashed twice.
"""

from __future__ import annotations

import struct
import threading
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from storage import digest, forklocks, jsondepth
from storage.errors import IntegrityError
from storage.safetensors_format import FormatError, chunks, header_bytes, layout, parse_header
from storage.dtypes import RawTensor

FORMAT = "rlreg.object/1"
_MAX_HEADER = 100_000_000


@dataclass(frozen=True, slots=True)
class EncodedObject:
    """An object ready to write: its digest, header and the tensors it holds."""

    digest: str
    header: bytes
    raws: dict[str, RawTensor]  # tensor digest -> raw tensor
    order: list[str]

    @property
    def nbytes(self) -> int:
        return len(self.header) + sum(r.nbytes for r in self.raws.values())

    def buffers(self) -> Iterable[memoryview]:
        """The object's bytes, header first, as buffers (no copy)."""
        return chunks(self.raws, self.order, self.header)


def encode(raws: Mapping[str, RawTensor]) -> EncodedObject:
    """The object holding ``{tensor digest: raw}``.

    A pack (several tensors) also records the digest of its whole data section, so that a reader
    verifies it with one hash call rather than one per tiny tensor. Writing a pack thus hashes its
    (small) tensors twice; a lone tensor, however large, is hashed once.
    """
    order = layout(raws)
    metadata = {"format": FORMAT}
    if len(raws) > 1:
        metadata["data"] = _data_digest([raws[key].data for key in order])
    header = header_bytes(raws, order, metadata)
    return EncodedObject(digest.bytes_digest(header), header, dict(raws), order)


def _data_digest(buffers: list[memoryview]) -> str:
    """The digest of a pack's data section: its tensors copied one after the other into this thread's
    scratch buffer and hashed in one call. A call into blake3 per tensor cost more than the copy (2,000
    tensors of 5 KB: 13 ms in one call each, against 2.5 ms to copy and 2.5 ms to hash); the buffer is
    kept (a pack is at most a few MiB), as fresh pages are slow to come by on a virtual machine."""
    total = sum(b.nbytes for b in buffers)
    if total > _SCRATCH_MAX:  # not a pack of small tensors: one call each costs little beside their bytes
        h = digest.hasher(total)
        for b in buffers:
            h.update(b)
        return digest.PREFIX + h.hexdigest()
    scratch = getattr(_scratch, "buffer", None)
    if scratch is None or len(scratch) < total:
        scratch = _scratch.buffer = bytearray(total)
    with memoryview(scratch) as whole:
        offset = 0
        for b in buffers:
            whole[offset : offset + b.nbytes] = b.cast("B") if b.format != "B" else b
            offset += b.nbytes
        with whole[:total] as data:
            return digest.PREFIX + digest.hasher(total).update(data).hexdigest()


_scratch = threading.local()  # .buffer: a bytearray of the largest pack this thread encoded
_SCRATCH_MAX = 8 << 20  # packs close at 4 MiB (storage.packing.PACK_MAX)


@dataclass(frozen=True, slots=True)
class Entry:
    """Where one verified tensor lies in an object's buffer."""

    dtype: str
    shape: list[int]
    start: int
    stop: int


def decode(
    buf: Any, object_digest: str, where: str, names_of: Callable[[str], list[str]], hint: str = ""
) -> dict[str, Entry]:
    """Verify every byte of the object in ``buf``; return ``{tensor digest: Entry}``.

    ``names_of(tensor_digest)`` gives manifest names for messages (``""`` for the object as a whole);
    ``hint`` ends the message of an ``IntegrityError`` (what the caller can do about it).
    """
    view = memoryview(buf)
    try:
        return _decode(view, object_digest, where, names_of)
    except IntegrityError as exc:
        if hint:
            raise IntegrityError(f"{exc}; {hint}") from None
        raise


def held_tensors(buf: Any, object_digest: str) -> list[str]:
    """The tensor digests the object in ``buf`` holds, read from its header if that is intact (else ``[]``)."""
    view = memoryview(buf)
    try:
        header_end = _header_end(view, object_digest, "", lambda _: [])
    except IntegrityError:
        return []
    if digest.bytes_digest(view[:header_end]) != object_digest:
        return []  # a damaged header: its keys cannot be trusted
    try:
        header = jsondepth.loads(view[8:header_end], object_digest)
    except ValueError:  # not JSON, or nested too deep (JSONDepthError)
        return []
    if not isinstance(header, dict):
        return []
    return sorted(k for k in header if k != "__metadata__" and digest.is_digest(k))


class _Parsed:
    """The parsed headers of the objects read lately, by object digest: an object is immutable and its
    digest is its header's, so a header that hashes to a digest parsed before is those same bytes, and
    parsing it again (JSON, every entry checked) would give the same entries. The data are still
    hashed on every read, and the data section's length compared with the header's."""

    def __init__(self, size: int) -> None:
        self._size, self._items = size, {}
        self._lock = forklocks.new_lock(self)  # loads verify on several threads at once (the eviction iterates)

    def get(self, object_digest: str, data_len: int) -> tuple[Mapping[str, Entry], str | None] | None:
        got = self._items.get(object_digest)
        return got[1:] if got is not None and got[0] == data_len else None

    def put(self, object_digest: str, data_len: int, entries: Mapping[str, Entry], data_digest: str | None) -> None:
        with self._lock:
            self._items.pop(object_digest, None)
            self._items[object_digest] = (data_len, entries, data_digest)
            while len(self._items) > self._size:
                self._items.pop(next(iter(self._items)), None)


_PARSED = _Parsed(1024)  # a pack's entries are about 100 bytes a tensor (at most a few MB in all)



def _decode(view: memoryview, object_digest: str, where: str, names_of: Callable[[str], list[str]]) -> dict[str, Entry]:
    header_end = _header_end(view, object_digest, where, names_of)
    got = digest.bytes_digest(view[:header_end])
    if got != object_digest:
        raise _damaged(object_digest, where, names_of(""), f"its header hashes to {got}")
    parsed = _PARSED.get(object_digest, view.nbytes - header_end)
    if parsed is None:
        try:
            entries, metadata, start = parse_header(view, where)
        except FormatError as exc:  # a header with the right digest is well formed unless we wrote it wrong
            raise _damaged(object_digest, where, names_of(""), str(exc)) from None
        parsed = (types.MappingProxyType({
            key: Entry(e["dtype"], e["shape"], start + e["data_offsets"][0], start + e["data_offsets"][1])
            for key, e in entries.items()}), metadata.get("data"))
        _PARSED.put(object_digest, view.nbytes - header_end, *parsed)  # (another thread may evict it at once)
    out, data_digest = parsed
    start = header_end
    if data_digest is not None and digest.bytes_digest(view[start:]) == data_digest:
        return out  # the header (verified) holds each tensor's digest, the data section matches it
    for key, e in out.items():  # a lone tensor, or a damaged pack: find what is damaged
        got = digest.tensor_digest(e.dtype, e.shape, view[e.start : e.stop])
        if got != key:
            raise _damaged(object_digest, where, names_of(key), f"tensor {key} hashes to {got}")
    if data_digest is not None:
        raise _damaged(object_digest, where, names_of(""), f"its data section does not hash to {data_digest}")
    return out


def _header_end(view: memoryview, object_digest: str, where: str, names_of: Callable[[str], list[str]]) -> int:
    if view.nbytes >= 8:
        (n,) = struct.unpack_from("<Q", view, 0)
        if n <= _MAX_HEADER and 8 + n <= view.nbytes:
            return 8 + n
    raise _damaged(object_digest, where, names_of(""), f"{view.nbytes} bytes cannot hold its header")


def _damaged(object_digest: str, where: str, names: list[str], detail: str) -> IntegrityError:
    tensors = ", ".join(repr(n) for n in names) or "(none)"
    return IntegrityError(
        f"object {object_digest} at {where} is damaged (tensors {tensors}): {detail}; "
        "its bytes were not returned"
    )
