"""Content addresses: blake3 of a tensor's dtype, shape and bytes, each byte hashed once."""

from __future__ import annotations

import functools
import re
from typing import Any

import blake3

PREFIX = "blake3:"
_THREADS_FROM = 4 << 20  # multi-threaded hashing pays off from a few MB
_DIGEST = re.compile(r"blake3:[0-9a-f]{64}")


def hasher(nbytes: int) -> blake3.blake3:
    """A blake3 hasher, multi-threaded when it will be fed ``nbytes`` or more."""
    return blake3.blake3(max_threads=blake3.blake3.AUTO if nbytes >= _THREADS_FROM else 1)


def tensor_digest(dtype: str, shape: tuple[int, ...] | list[int], data: Any) -> str:
    """The content address of one tensor: ``blake3:`` + hex of (dtype, shape, bytes).

    A small tensor is hashed in one call, joined to its prefix: each call into blake3 costs about
    2.5 us beyond its bytes (2,000 tensors of 5 KB: 15.6 ms in three calls each, 9.1 ms joined).
    """
    view = memoryview(data)
    if view.nbytes < JOIN_BELOW:
        return PREFIX + blake3.blake3(b"".join((tensor_prefix(dtype, shape), view))).hexdigest()
    h = hasher(view.nbytes)
    h.update(tensor_prefix(dtype, shape))
    h.update(view)
    return PREFIX + h.hexdigest()


JOIN_BELOW = 64 << 10  # bytes below which copying a tensor costs less than a second call into blake3


def tensor_prefix(dtype: str, shape: tuple[int, ...] | list[int]) -> bytes:
    """What is hashed before a tensor's bytes: its dtype and shape."""
    if type(shape) is tuple and all(type(n) is int for n in shape):  # (True == 1, but not in the prefix)
        return _prefix_of(dtype, shape)
    return _prefix(dtype, shape)


def _prefix(dtype: str, shape: tuple[int, ...] | list[int]) -> bytes:
    return f"rlreg.tensor/1\0{dtype}\0[{','.join(map(str, shape))}]\0".encode()


_prefix_of = functools.lru_cache(maxsize=4096)(_prefix)  # a module's shapes recur in every snapshot


def bytes_digest(data: Any) -> str:
    """The content address of an object's header bytes."""
    return PREFIX + hasher(memoryview(data).nbytes).update(data).hexdigest()


def is_digest(value: object) -> bool:
    """Whether ``value`` looks like a digest this package makes."""
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def hex_of(digest: str) -> str:
    """The 64 hex characters of ``digest``."""
    return digest[len(PREFIX) :]
