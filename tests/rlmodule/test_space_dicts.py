"""gym_space_to_dict per space kind against golden dicts; RLlib's spaces; space_to_dict.

The same dicts are read by real RLlib 2.35 and 2.60 in `make rllib-check`
(bench/peers/rllib_reads_our_dicts.py)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlmodule import (
    FlexDict, Repeated, Simplex, SpaceSerializationError, gym_space_from_dict, gym_space_to_dict,
    space_from_dict, space_to_dict,
)
from space_kinds import normalise, space_kinds

GOLDEN = json.loads((Path(__file__).parent / "golden_spaces.json").read_text())


@pytest.mark.parametrize("name", sorted(space_kinds()))
def test_each_space_kind_writes_its_golden_dict_and_reads_back(name):
    space = space_kinds()[name]
    d = gym_space_to_dict(space)
    assert normalise(d) == GOLDEN[name]
    assert json.loads(json.dumps(d)) == d
    back = gym_space_from_dict(json.loads(json.dumps(d)))
    assert type(back) is type(space) and back == space


def test_the_golden_file_covers_every_kind():
    assert set(GOLDEN) == set(space_kinds())


def test_multi_discrete_writes_start_only_when_set_and_reads_the_old_base64_form():
    assert "start" not in gym_space_to_dict(gym.spaces.MultiDiscrete([2, 3]))
    old = gym_space_to_dict(gym.spaces.MultiDiscrete([2, 3]))
    from rlmodule.serialization import array_to_b64
    old["start"] = array_to_b64(np.array([1, 1]))
    assert gym_space_from_dict(old) == gym.spaces.MultiDiscrete([2, 3], start=[1, 1])


def test_simplex_follows_rllib_235s_constructor():
    assert Simplex((3, 4)).concentration.tolist() == [1, 1, 1, 1]
    Simplex((3, 4), concentration=np.array([1.0, 2.0, 3.0]))        # shape == shape[:-1]
    with pytest.raises(AssertionError, match=r"\(4,\) vs \(3,\)"):
        Simplex((3, 4), concentration=np.ones(4))
    sample = Simplex((2, 3))
    sample.seed(0)
    assert sample.contains(sample.sample())


def test_repeated_and_flex_dict():
    rep = Repeated(gym.spaces.Discrete(3), max_len=2)
    assert rep.contains([0, 2]) and not rep.contains([0, 1, 2])
    flex = FlexDict({})
    flex["k"] = gym.spaces.Discrete(2)
    assert gym_space_from_dict(gym_space_to_dict(flex)) == flex
    with pytest.raises(SpaceSerializationError, match="FlexDict key 'space' cannot be stored"):
        gym_space_to_dict(FlexDict({"space": gym.spaces.Discrete(2)}))


def test_space_to_dict_keeps_original_space_in_both_rllib_forms():
    inner = gym.spaces.Dict({"x": gym.spaces.Discrete(2)})
    inner.original_space = gym.spaces.Tuple([gym.spaces.Discrete(2)])
    flat = gym.spaces.Box(0, 1, (2,))
    flat.original_space = inner
    d = space_to_dict(flat)
    assert set(d) == {"space", "original_space"} and "original_space" in d["original_space"]
    back = space_from_dict(json.loads(json.dumps(d)))
    assert back == flat and back.original_space == inner
    assert back.original_space.original_space == inner.original_space
    old_form = {"space": gym_space_to_dict(flat), "original_space": gym_space_to_dict(inner)}
    assert space_from_dict(old_form).original_space == inner
    assert space_to_dict(gym.spaces.Discrete(2)) == {"space": gym_space_to_dict(gym.spaces.Discrete(2))}
    with pytest.raises(SpaceSerializationError, match="needs a 'space' key"):
        space_from_dict({"original_space": {}})
