"""RLlib's `ViewRequirement` and the space inference `update_default_view_requirements` needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import tree


@dataclass
class ViewRequirement:
    """Which column (at which time shift) a model needs to see, and in which space."""

    data_col: Optional[str] = None
    space: Optional[gym.Space] = None
    shift: Any = 0
    index: Optional[int] = None
    batch_repeat_value: int = 1
    used_for_compute_actions: bool = True
    used_for_training: bool = True

    def __post_init__(self) -> None:
        if self.space is None:
            self.space = gym.spaces.Box(float("-inf"), float("inf"), shape=())


def _np_dtype(x) -> np.dtype:
    dtype = getattr(x, "dtype", None)
    if dtype is not None and hasattr(dtype, "is_floating_point"):  # a torch dtype
        return np.dtype(str(dtype).removeprefix("torch."))
    return np.asarray(x).dtype


def get_gym_space_from_struct_of_tensors(value: Any, batched_input: bool = True) -> gym.Space:
    """A Box per tensor leaf (leading batch axis dropped if `batched_input`), nested as given."""
    start = 1 if batched_input else 0

    def _box(x):
        shape = tuple(np.shape(x))[start:]
        return gym.spaces.Box(-1.0, 1.0, shape=shape, dtype=_np_dtype(x))

    return _struct_to_space(tree.map_structure(_box, value))


def _struct_to_space(struct) -> gym.Space:
    if isinstance(struct, dict):
        return gym.spaces.Dict({k: _struct_to_space(v) for k, v in struct.items()})
    if isinstance(struct, (list, tuple)):
        return gym.spaces.Tuple([_struct_to_space(v) for v in struct])
    return struct
