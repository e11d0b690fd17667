"""Nested module state split into flat tensors plus JSON, and joined back.

`split_state(state)` walks nested dicts: tensor leaves (torch or numpy) go to a flat dict under
`/`-joined keys; every other leaf must be JSON (None, bool, int, float, str, lists and dicts of
those) and stays in `rest`, which keeps the nesting and marks each tensor's place with
`{"$tensor": "torch"|"numpy"}` so `join_state` restores numpy arrays as numpy. Numpy scalars are
stored as 0-d numpy tensors. Keys must be strings without "/"; anything else raises
`StateSerializationError` naming the key.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from rlmodule.errors import StateSerializationError

TENSOR_MARK = "$tensor"
SEP = "/"


def _check_json(key: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StateSerializationError(f"state key {key!r}: {value} is not valid JSON")
        return value
    if isinstance(value, (list, tuple)):
        return [_check_json(f"{key}[{i}]", v) for i, v in enumerate(value)]
    raise StateSerializationError(
        f"state key {key!r}: value of type {type(value).__name__} is neither a tensor nor JSON")


def split_state(state: dict) -> tuple[dict[str, torch.Tensor | np.ndarray], dict]:
    """(flat tensors, JSON rest) of a nested state dict."""
    tensors: dict = {}

    def walk(node: dict, prefix: str) -> dict:
        rest = {}
        for k, v in node.items():
            if not isinstance(k, str) or SEP in k or not k:
                raise StateSerializationError(
                    f"state key {prefix + str(k)!r}: keys must be non-empty strings without "
                    f"{SEP!r}")
            key = prefix + k
            if isinstance(v, torch.Tensor):
                on_cpu = not v.requires_grad and v.device.type == "cpu"
                tensors[key] = v if on_cpu else v.detach().cpu()  # (get_state's tensors are already)
                rest[k] = {TENSOR_MARK: "torch"}
            elif isinstance(v, (np.ndarray, np.generic)):
                if np.asarray(v).dtype == object:
                    raise StateSerializationError(f"state key {key!r}: object arrays are not stored")
                tensors[key] = np.asarray(v, order="C")  # (0-d stays 0-d: ascontiguousarray makes it (1,))
                rest[k] = {TENSOR_MARK: "numpy"}
            elif isinstance(v, dict):
                rest[k] = walk(v, key + SEP)
            else:
                rest[k] = _check_json(key, v)
        return rest

    if not isinstance(state, dict):
        raise StateSerializationError(f"state must be a dict, got {type(state).__name__}")
    return tensors, walk(state, "")


def split_tensors(tensors: dict) -> tuple[dict[str, torch.Tensor], dict] | None:
    """`split_state` of a flat dict of CPU torch tensors (a `state_dict`) without walking each leaf
    (a module of thousands of small tensors: several microseconds each); None unless it is one.

    The tensors are taken as they are, even those that require grad: the caller reads their bytes
    and nothing else (`split_state` would detach them).
    """
    for k, v in tensors.items():
        if type(k) is not str or not k or SEP in k or not isinstance(v, torch.Tensor) or not v.is_cpu:
            return None
    return dict(tensors), {k: {TENSOR_MARK: "torch"} for k in tensors}


def join_state(tensors: dict, rest: dict) -> dict:
    """The nested state that `split_state` split into `tensors` and `rest`."""
    used = set()

    def walk(node: dict, prefix: str) -> dict:
        out = {}
        for k, v in node.items():
            key = prefix + k
            if isinstance(v, dict) and set(v) == {TENSOR_MARK}:
                if key not in tensors:
                    raise StateSerializationError(f"state key {key!r}: its tensor is missing")
                used.add(key)
                out[k] = _as_kind(tensors[key], v[TENSOR_MARK])
            elif isinstance(v, dict):
                out[k] = walk(v, key + SEP)
            else:
                out[k] = _fresh(v)
        return out

    state = walk(rest or {}, "")
    for key in tensors:
        if key not in used:
            _insert(state, key, tensors[key])
    return state


def _fresh(value: Any) -> Any:
    """A JSON value with new lists and dicts: the state made is the module's own to change (``rest``
    may be a parse the caller keeps for the next state it joins)."""
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    return value


def _as_kind(value, kind: str):
    if kind == "numpy" and isinstance(value, torch.Tensor):
        return value.numpy()
    if kind == "torch" and isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value


def _insert(state: dict, key: str, value) -> None:
    *parents, leaf = key.split(SEP)
    node = state
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise StateSerializationError(f"state key {key!r}: {p!r} is not a dict")
    node[leaf] = value
