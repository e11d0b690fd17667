"""Gym spaces to and from JSON dicts, and class paths to and from strings.

The dicts follow RLlib's `gym_space_to_dict` (arrays as base64 of zlib of `np.save` bytes), so
RLlib-written dicts of plain arrays read here, with these differences on purpose:
arrays are decoded with `allow_pickle=False`; the Text charset is a sorted string (RLlib's
frozenset is not JSON); MultiDiscrete keeps a non-zero `start` as a list of ints (RLlib 2.60 reads
it; RLlib's own dicts drop it, and with a zero start the key is left out so RLlib 2.35 reads it
too); Simplex writes `concentration` as None when uniform (which RLlib reads) and as a list
otherwise (RLlib's own writer puts a numpy array there, which is not JSON); Dict also stores
`"keys"` (its key order, which survives JSON writers that sort keys); RLlib's Simplex, Repeated
and FlexDict, and gymnasium's Sequence, Graph and OneOf are supported; `None` maps to `None`.
`space_to_dict`/`space_from_dict` keep a space's `original_space`, as RLlib's do. An unknown space raises `SpaceSerializationError` naming it.
`deserialize_type` never returns a module object or its input string: it resolves the class
through the trusted-class rule (`rlmodule.trust`) or raises `UntrustedClassError`.
"""

from __future__ import annotations

import base64
import functools
import io
import zlib
from collections import OrderedDict
from typing import Any

import gymnasium as gym
import numpy as np

from rlmodule import limits
from rlmodule.errors import SpaceSerializationError
from rlmodule.spaces import FlexDict, Repeated, Simplex
from rlmodule.trust import resolve_class

__all__ = [
    "gym_space_to_dict", "gym_space_from_dict", "space_to_dict", "space_from_dict",
    "serialize_type", "deserialize_type",
    "array_to_b64", "array_from_b64", "value_key",
]


def array_to_b64(array: np.ndarray) -> str:
    """Base64 of zlib of the `np.save` bytes of `array` (RLlib's encoding).

    Remembered by dtype, shape, order and bytes (up to `_B64_KEPT_BYTES` an array): a snapshot
    records its module's spec each time, and a space's bounds rarely change.
    """
    a = np.asarray(array)
    if a.dtype.hasobject or a.nbytes > _B64_KEPT_BYTES:
        return _npy_b64(a)
    fortran = bool(a.flags.f_contiguous and not a.flags.c_contiguous)  # np.save's fortran_order
    return _kept_b64(a.dtype.str, a.shape, fortran, a.tobytes(order="F" if fortran else "C"))


_B64_KEPT_BYTES = 1 << 20


@functools.lru_cache(maxsize=256)
def _kept_b64(dtype: str, shape: tuple, fortran: bool, data: bytes) -> str:
    order = "F" if fortran else "C"
    return _npy_b64(np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape, order=order))


def _npy_b64(a: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return base64.b64encode(zlib.compress(buf.getvalue())).decode("ascii")


def array_from_b64(text: str, max_bytes: int | None = None, field: str = "array") -> np.ndarray:
    """The array encoded by `array_to_b64`; object arrays (pickle) are refused.

    Inflation is bounded before it starts: by the shape the array's own `np.save` header declares
    (itself bounded by `limits.MAX_SPACE_ELEMENTS`) and by `max_bytes` (what a Box's declared shape
    and dtype need), so a zlib bomb stops at that many bytes.
    """
    try:
        inflater = zlib.decompressobj()
        head = inflater.decompress(base64.b64decode(text.encode("ascii"), validate=True), limits.NPY_HEADER_BYTES)
        need = limits.npy_bytes_bound(head, field)
        bound = need if max_bytes is None else min(need, max_bytes)
        rest = inflater.decompress(inflater.unconsumed_tail, bound + 1 - len(head)) if bound >= len(head) else b"?"
        if len(head) + len(rest) > bound or inflater.unconsumed_tail or not inflater.eof:
            raise SpaceSerializationError(
                f"{field} {text[:32]!r}... inflates to more than the {bound:,} bytes its declared shape needs")
        return np.load(io.BytesIO(head + rest), allow_pickle=False)
    except SpaceSerializationError:
        raise
    except ValueError as e:
        raise SpaceSerializationError(f"cannot decode array {text[:32]!r}...: {e}") from None
    except (zlib.error, OSError, AttributeError) as e:
        raise SpaceSerializationError(f"cannot decode array: {e}") from None


def _box(s: gym.spaces.Box) -> dict:
    return {"space": "box", "low": array_to_b64(s.low), "high": array_to_b64(s.high),
            "shape": list(s.shape), "dtype": s.dtype.str}


def _dict_space(s: gym.spaces.Dict) -> dict:
    bad = [k for k in s.spaces if not isinstance(k, str)]
    if bad:
        raise SpaceSerializationError(f"Dict space key {bad[0]!r} is not a string")
    return {"space": "dict", "spaces": {k: gym_space_to_dict(v) for k, v in s.spaces.items()},
            "keys": list(s.spaces)}


def _multi_discrete(s: gym.spaces.MultiDiscrete) -> dict:
    d = {"space": "multi-discrete", "nvec": array_to_b64(s.nvec), "dtype": s.dtype.str}
    if np.any(s.start != 0):  # RLlib's own dicts lose `start`; a list is what gymnasium 1.x takes
        d["start"] = np.asarray(s.start).tolist()
    return d


def _simplex(s: Simplex) -> dict:
    uniform = np.shape(s.concentration) == (s.dim,) and bool(np.all(s.concentration == 1))
    return {"space": "simplex", "shape": list(s.shape), "dtype": s.dtype.str,
            "concentration": None if uniform else np.asarray(s.concentration).tolist()}


def _flex_dict(s: FlexDict) -> dict:
    bad = [k for k in s.spaces if not isinstance(k, str) or k == "space"]
    if bad:
        raise SpaceSerializationError(
            f"FlexDict key {bad[0]!r} cannot be stored: keys must be strings other than 'space'")
    return {"space": "flex_dict", **{k: gym_space_to_dict(v) for k, v in s.spaces.items()}}


_ENCODERS = {
    gym.spaces.Box: _box,
    gym.spaces.Discrete: lambda s: {"space": "discrete", "n": int(s.n), "start": int(s.start)},
    gym.spaces.MultiBinary: lambda s: {
        "space": "multi-binary", "n": int(s.n) if np.ndim(s.n) == 0 else [int(x) for x in s.n]},
    gym.spaces.MultiDiscrete: _multi_discrete,
    gym.spaces.Tuple: lambda s: {"space": "tuple",
                                 "spaces": [gym_space_to_dict(x) for x in s.spaces]},
    gym.spaces.Dict: _dict_space,
    gym.spaces.Text: lambda s: {"space": "text", "min_length": int(s.min_length),
                                "max_length": int(s.max_length),
                                "charset": "".join(sorted(s.character_set))},
    gym.spaces.Sequence: lambda s: {"space": "sequence",
                                    "feature_space": gym_space_to_dict(s.feature_space),
                                    "stack": bool(s.stack)},
    gym.spaces.Graph: lambda s: {"space": "graph",
                                 "node_space": gym_space_to_dict(s.node_space),
                                 "edge_space": gym_space_to_dict(s.edge_space)},
    gym.spaces.OneOf: lambda s: {"space": "oneof",
                                 "spaces": [gym_space_to_dict(x) for x in s.spaces]},
    Simplex: _simplex,
    Repeated: lambda s: {"space": "repeated", "child_space": gym_space_to_dict(s.child_space),
                         "max_len": int(s.max_len)},
    FlexDict: _flex_dict,
}


class _NoKey(Exception):
    """A value ``value_key`` cannot key exactly."""


def value_key(value: Any) -> Any:
    """A hashable key of ``value`` (a gym space, a model config, a class), or None.

    Two values with equal keys are serialized alike (``gym_space_to_dict``, ``json_model_config``,
    ``serialize_type``): every leaf is keyed with its exact type (``1``, ``1.0`` and ``True`` are
    apart, a float by its hex, so ``-0.0`` is not ``0.0``), an array by its dtype, shape, order and
    bytes, a Box, Discrete, Dict or Tuple space by what its encoder reads, any other space by every
    attribute but its random generator, a class by identity. None for anything else (a subclass of
    ``float``, an object), which the caller then serializes the slow way.
    """
    try:
        key = _key(value)
        hash(key)  # (a structured dtype's descr holds lists)
        return key
    except (_NoKey, RecursionError, TypeError):
        return None


def _key(v: Any) -> Any:
    t = type(v)
    keyer = _KEYERS.get(t)
    if keyer is not None:
        return keyer(v)
    if isinstance(v, np.generic):
        return t, np.asarray(v).tobytes()
    if isinstance(v, np.dtype):
        return np.dtype, v.str, v.descr if v.fields else None
    if isinstance(v, gym.Space):  # every attribute (the encoder reads some of them)
        return t, tuple((k, _key(x)) for k, x in vars(v).items() if k != "_np_random")
    if isinstance(v, type):
        return type, v
    raise _NoKey


def _array_key(a: np.ndarray) -> Any:
    if a.dtype.hasobject:
        raise _NoKey
    fortran = bool(a.flags.f_contiguous and not a.flags.c_contiguous)  # array_to_b64 keeps the order
    return np.ndarray, a.dtype.str, a.shape, fortran, a.tobytes()


def _exact(v: Any) -> Any:
    return type(v), v


_KEYERS: dict[type, Any] = {
    str: _exact, int: _exact, bool: _exact, bytes: _exact, type(None): _exact,
    float: lambda v: (float, v.hex()),
    list: lambda v: (list, tuple(map(_key, v))),
    tuple: lambda v: (tuple, tuple(map(_key, v))),
    dict: lambda v: (dict, tuple((_key(k), _key(x)) for k, x in v.items())),
    OrderedDict: lambda v: (OrderedDict, tuple((_key(k), _key(x)) for k, x in v.items())),
    frozenset: lambda v: (frozenset, frozenset(map(_key, v))),
    set: lambda v: (set, frozenset(map(_key, v))),
    np.ndarray: _array_key,
    # what _ENCODERS reads of the common spaces
    gym.spaces.Box: lambda s: (gym.spaces.Box, s.dtype.str, tuple(map(int, s.shape)), _array_key(s.low),
                               _array_key(s.high)),
    gym.spaces.Discrete: lambda s: (gym.spaces.Discrete, int(s.n), int(s.start)),
    gym.spaces.Dict: lambda s: (gym.spaces.Dict, tuple((_key(k), _key(x)) for k, x in s.spaces.items())),
    gym.spaces.Tuple: lambda s: (gym.spaces.Tuple, tuple(map(_key, s.spaces))),
}


def gym_space_to_dict(space: gym.Space | None) -> dict | None:
    """A JSON-able dict describing `space` (None for None)."""
    if space is None:
        return None
    encoder = _ENCODERS.get(type(space))
    if encoder is None:
        raise SpaceSerializationError(
            f"cannot serialize space of type {type(space).__name__}; supported: "
            + ", ".join(t.__name__ for t in _ENCODERS)
        )
    return encoder(space)


def _decode_box(d):
    bound = limits.array_bytes_bound(d["shape"], np.dtype(d["dtype"]).itemsize, "box space 'shape'")
    return gym.spaces.Box(low=array_from_b64(d["low"], bound, "box space 'low'"),
                          high=array_from_b64(d["high"], bound, "box space 'high'"),
                          shape=tuple(d["shape"]), dtype=np.dtype(d["dtype"]))


def _decode_multi_discrete(d):
    start = d.get("start")
    if isinstance(start, str):  # rlreg < 0.2 wrote it as base64
        start = array_from_b64(start)
    return gym.spaces.MultiDiscrete(array_from_b64(d["nvec"]), dtype=np.dtype(d["dtype"]),
                                    start=start)


def _decode_dict(d):
    spaces = d["spaces"]
    keys = d.get("keys") or list(spaces)
    if sorted(keys) != sorted(spaces):
        raise SpaceSerializationError(
            f"dict space: 'keys' {keys} do not match the keys of 'spaces' {sorted(spaces)}")
    return gym.spaces.Dict(OrderedDict((k, gym_space_from_dict(spaces[k])) for k in keys))


def _decode_multi_binary(d):
    n = d["n"]
    return gym.spaces.MultiBinary(n if isinstance(n, int) else [int(x) for x in n])


def _decode_simplex(d):
    concentration = d.get("concentration")
    return Simplex(tuple(d["shape"]), dtype=np.dtype(d.get("dtype", "<f4")),
                   concentration=None if concentration is None else np.asarray(concentration))


_DECODERS = {
    "box": _decode_box,
    "discrete": lambda d: gym.spaces.Discrete(int(d["n"]), start=int(d.get("start", 0))),
    "multi-binary": _decode_multi_binary,
    "multi-discrete": _decode_multi_discrete,
    "tuple": lambda d: gym.spaces.Tuple([gym_space_from_dict(x) for x in d["spaces"]]),
    "dict": _decode_dict,
    "text": lambda d: gym.spaces.Text(int(d["max_length"]), min_length=int(d["min_length"]),
                                      charset=_charset(d["charset"])),
    "sequence": lambda d: gym.spaces.Sequence(gym_space_from_dict(d["feature_space"]),
                                              stack=bool(d.get("stack", False))),
    "graph": lambda d: gym.spaces.Graph(gym_space_from_dict(d["node_space"]),
                                        gym_space_from_dict(d["edge_space"])),
    "oneof": lambda d: gym.spaces.OneOf([gym_space_from_dict(x) for x in d["spaces"]]),
    "simplex": _decode_simplex,
    "repeated": lambda d: Repeated(gym_space_from_dict(d["child_space"]), int(d["max_len"])),
    "flex_dict": lambda d: FlexDict({k: gym_space_from_dict(v) for k, v in d.items() if k != "space"}),
}


def _charset(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(c, str) for c in value):
        return "".join(sorted(value))
    raise SpaceSerializationError(f"text space: charset {value!r} is not a string")


def gym_space_from_dict(d: dict | None) -> gym.Space | None:
    """The gym space described by `d` (a dict from `gym_space_to_dict`; None for None)."""
    if d is None:
        return None
    if not isinstance(d, dict) or "space" not in d:
        raise SpaceSerializationError(f"a space dict needs a 'space' key, got {d!r}")
    decoder = _DECODERS.get(d["space"]) if isinstance(d["space"], str) else None
    if decoder is None:
        raise SpaceSerializationError(
            f"unknown space type {d['space']!r}; known: {', '.join(_DECODERS)}")
    limits.check_space_dict(d)
    try:
        return decoder(d)
    except SpaceSerializationError:
        raise
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise SpaceSerializationError(f"invalid {d['space']!r} space dict: {detail}") from None


def space_to_dict(space: gym.Space) -> dict:
    """`{"space": gym_space_to_dict(space)}` plus `"original_space"` if the space has one (RLlib's)."""
    d = {"space": gym_space_to_dict(space)}
    if "original_space" in vars(space):
        d["original_space"] = space_to_dict(space.original_space)
    return d


def space_from_dict(d: dict) -> gym.Space:
    """The space of `space_to_dict`, with `original_space` set again (either of RLlib's forms)."""
    if not isinstance(d, dict) or "space" not in d:
        raise SpaceSerializationError(f"a space_to_dict dict needs a 'space' key, got {d!r}")
    space = gym_space_from_dict(d["space"])
    original = d.get("original_space")
    if original is not None:
        if not isinstance(original, dict) or "space" not in original:
            raise SpaceSerializationError(f"original_space {original!r} is not a space dict")
        space.original_space = (gym_space_from_dict(original) if isinstance(original["space"], str)
                                else space_from_dict(original))
    return space


def serialize_type(type_: type | str) -> str:
    """The dotted path `module.qualname` of a class; strings pass through."""
    if isinstance(type_, str):
        return type_
    return f"{type_.__module__}.{type_.__qualname__}"


def deserialize_type(module: Any, error: bool = False, *, base: type = object,
                     trusted_modules=None) -> type | None:
    """The class named by `module` under the trusted-class rule; classes pass through.

    Unlike RLlib this never returns a module object or the input string: a name that does
    not resolve raises `UntrustedClassError` whatever `error` says (kept for compatibility).
    """
    if module is None:
        return None
    if isinstance(module, type):
        return module
    return resolve_class(module, base, trusted_modules)
