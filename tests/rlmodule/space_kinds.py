"""One space per kind that gym_space_to_dict writes, shared by the golden test and the RLlib check.

`tests/rlmodule/golden_spaces.json` holds their dicts (arrays decoded, see `normalise`);
`bench/peers/rllib_reads_our_dicts.py` feeds the same dicts to real RLlib 2.35 and 2.60.
"""

from __future__ import annotations

from collections import OrderedDict

import gymnasium as gym
import numpy as np

from rlmodule.serialization import array_from_b64
from rlmodule.spaces import FlexDict, Repeated, Simplex


def space_kinds() -> dict[str, gym.Space]:
    """name -> space; the names RLlib can read back are those without a `_rlreg_only` suffix."""
    return {
        "box": gym.spaces.Box(low=-1.0, high=np.array([1.0, 2.0], np.float32), dtype=np.float32),
        "box_int": gym.spaces.Box(0, 255, (2, 2), dtype=np.uint8),
        "discrete": gym.spaces.Discrete(3),
        "discrete_start": gym.spaces.Discrete(4, start=-2),
        "multi_binary": gym.spaces.MultiBinary(5),
        "multi_binary_shape": gym.spaces.MultiBinary([2, 3]),
        "multi_discrete": gym.spaces.MultiDiscrete([2, 3]),
        "multi_discrete_start_rlreg_only": gym.spaces.MultiDiscrete([2, 3], start=[1, -1]),
        "tuple": gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.Box(0, 1, (1,))]),
        "dict": gym.spaces.Dict(OrderedDict(b=gym.spaces.Discrete(2), a=gym.spaces.MultiBinary(2))),
        "text": gym.spaces.Text(5, min_length=1, charset="abc"),
        "simplex": Simplex((3, 4)),
        "simplex_concentration_rlreg_only": Simplex((3, 4), concentration=np.array([1.0, 2.0, 3.0])),
        "repeated": Repeated(gym.spaces.Box(-1, 1, (2,)), max_len=4),
        "flex_dict": FlexDict({"x": gym.spaces.Discrete(2), "y": Repeated(gym.spaces.Discrete(3), 2)}),
    }


def normalise(d):
    """The dict with each base64 array replaced by {"array": dtype, shape, values} (zlib-neutral)."""
    if isinstance(d, dict):
        return {k: _array(v) if k in ("low", "high", "nvec") else normalise(v) for k, v in d.items()}
    if isinstance(d, list):
        return [normalise(v) for v in d]
    return d


def _array(text: str) -> dict:
    a = array_from_b64(text)
    return {"array": a.dtype.str, "shape": list(a.shape),
            "values": [None if not np.isfinite(x) else x for x in a.ravel().tolist()]}
