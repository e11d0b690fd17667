"""Sizes beyond reason in a checkpoint or spec, refused before anything is decompressed or allocated.

A checkpoint is input: a 175 KB file can declare ``Discrete(10**30)``, a Box of shape ``[0, 10**30]``
or ``hidden: [10**6, 10**6]`` (a 4 TB layer), and zlib bombs whose arrays inflate to gigabytes. Each
such size is checked here against a documented bound first, and refused with an error naming the
field; decompression is bounded by what the declared shape needs.

=======================  ==========  ==========================================================
bound                    value       what it limits
=======================  ==========  ==========================================================
``MAX_SPACE_ELEMENTS``   2**24       elements of one space's shape (Box, MultiBinary, Simplex),
                                     ``Discrete.n``, ``Text.max_length``, ``Repeated.max_len``
``MAX_LAYER_SIZE``       2**16       units of one layer (``hidden``, ``fcnet_hiddens``, ...)
``MAX_LAYER_PARAMS``     2**28       weights of one dense layer (1 GiB of float32)
``MAX_LAYERS``           64          layers of one layer-size list (``fcnet_hiddens``, ...);
                                     RLlib's configs use a handful
``MAX_LAYERS_TOTAL``     96          layers of all a model config's lists together (PPO builds
                                     each list twice: actor and critic)
``NPY_HEADER_BYTES``     65,546      the ``np.save`` header before an array's bytes
=======================  ==========  ==========================================================
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from rlmodule.errors import SpaceSerializationError

MAX_SPACE_ELEMENTS = 1 << 24
MAX_LAYER_SIZE = 1 << 16
MAX_LAYER_PARAMS = 1 << 28
MAX_LAYERS = 64
MAX_LAYERS_TOTAL = 96
NPY_HEADER_BYTES = 65_546  # magic (6) + version (2) + length (2) + a header of at most 65,535 bytes + 1
_INT64 = 1 << 63


def check_space_dict(d: dict) -> None:
    """Refuse a space dict (one level: children are checked as they are decoded) whose sizes are absurd."""
    kind = d.get("space")
    if kind == "discrete":
        _count(d, "n", 1)
        _int64(d, "start")
    elif kind in ("box", "simplex"):
        check_shape(d.get("shape"), f"{kind} space 'shape'")
    elif kind == "multi-binary":
        n = d.get("n")
        if isinstance(n, list):
            check_shape(n, "multi-binary space 'n'")
        else:
            _count(d, "n", 1)
    elif kind == "text":
        _count(d, "max_length", 0)
        _count(d, "min_length", 0)
    elif kind == "repeated":
        _count(d, "max_len", 0)


def check_shape(shape: Any, field: str) -> int:
    """The number of elements of ``shape``; ``SpaceSerializationError`` naming ``field`` past the bound."""
    if not isinstance(shape, (list, tuple)) or not all(_is_int(s) and s >= 0 for s in shape):
        raise SpaceSerializationError(f"{field} must be a list of non-negative ints, got {_short(shape)}")
    shape = [int(s) for s in shape]
    big = [s for s in shape if s > MAX_SPACE_ELEMENTS]
    count = math.prod(max(s, 1) for s in shape)
    if big or count > MAX_SPACE_ELEMENTS:
        raise SpaceSerializationError(
            f"{field} {_short(shape)} is beyond reason: at most {MAX_SPACE_ELEMENTS:,} elements per space"
        )
    return math.prod(shape)


def array_bytes_bound(shape: Any, itemsize: int, field: str) -> int:
    """The most bytes ``np.save`` of an array of ``shape`` and ``itemsize`` can take (its zlib bound)."""
    return NPY_HEADER_BYTES + check_shape(shape, field) * itemsize


def npy_bytes_bound(head: bytes, field: str) -> int:
    """The bytes of the `np.save` file whose first bytes are ``head``, from the shape its header declares."""
    buf = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(buf)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, _, dtype = read(buf)
    except (KeyError, ValueError, SyntaxError, TypeError) as exc:
        raise SpaceSerializationError(f"{field}: not an np.save array ({exc})") from None
    if dtype.hasobject:
        raise SpaceSerializationError(f"cannot decode array {field}: object arrays (pickle) are never read")
    return buf.tell() + check_shape(list(shape), f"{field} shape") * dtype.itemsize


def check_layer_count(key: str, sizes: Any) -> None:
    """Refuse a layer-size list of more than ``MAX_LAYERS`` layers (before its items are looked at)."""
    if isinstance(sizes, (list, tuple)) and len(sizes) > MAX_LAYERS:
        raise ValueError(f"model config {key!r} lists {len(sizes):,} layers, beyond reason: at most "
                         f"{MAX_LAYERS} per list")


def check_total_layers(lists: dict) -> None:
    """Refuse layer-size lists (key -> sizes) of more than ``MAX_LAYERS_TOTAL`` layers together."""
    total = sum(len(sizes) for sizes in lists.values())
    if total > MAX_LAYERS_TOTAL:
        raise ValueError(f"model config {' + '.join(map(repr, lists))} list {total:,} layers together, "
                         f"beyond reason: at most {MAX_LAYERS_TOTAL}")


def check_layer_sizes(key: str, sizes: list[int]) -> None:
    """Refuse a layer-size list (``hidden``, ``fcnet_hiddens``, ...) with a layer of more than ``MAX_LAYER_SIZE``
    units (its length: ``check_layer_count``, before its items are looked at)."""
    big = [s for s in sizes if s > MAX_LAYER_SIZE]
    if big:
        raise ValueError(
            f"model config {key!r} {_short(sizes)} is beyond reason: at most {MAX_LAYER_SIZE:,} units per layer"
        )


def check_layer(in_dim: Any, out_dim: Any) -> None:
    """Refuse a dense layer of more than ``MAX_LAYER_PARAMS`` weights before it is allocated."""
    if not (_is_int(in_dim) and _is_int(out_dim)) or in_dim < 0 or out_dim < 0:
        raise ValueError(f"a dense layer of {_short(in_dim)} x {_short(out_dim)}: sizes must be non-negative ints")
    if int(in_dim) * int(out_dim) > MAX_LAYER_PARAMS:
        raise ValueError(
            f"a dense layer of {_short(in_dim)} x {_short(out_dim)} is beyond reason: at most "
            f"{MAX_LAYER_PARAMS:,} weights per layer (check the spaces and the model config's layer sizes)"
        )


def _count(d: dict, key: str, least: int) -> None:
    value = d.get(key)
    if value is None:
        return
    if not _is_int(value) or not least <= value <= MAX_SPACE_ELEMENTS:
        raise SpaceSerializationError(
            f"{d.get('space')} space {key!r} is {_short(value)}: expected an int from {least} to {MAX_SPACE_ELEMENTS:,}"
        )


def _int64(d: dict, key: str) -> None:
    value = d.get(key)
    if value is not None and (not _is_int(value) or not -_INT64 <= value < _INT64):
        raise SpaceSerializationError(f"{d.get('space')} space {key!r} is {_short(value)}: expected a 64-bit int")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
