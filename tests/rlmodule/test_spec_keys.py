"""``spec_key``/``value_key``: equal keys only where ``spec_to_dict`` writes the same JSON."""

from __future__ import annotations

import json
from collections import OrderedDict

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmodule import RLModuleSpec, gym_space_to_dict, spec_key, spec_to_dict
from rlmodule.rl_module import json_model_config
from rlmodule.serialization import array_to_b64, value_key
from space_kinds import space_kinds
from rlmodule_toys import ToyTorchModule

leaves = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, 1, -1, 2**70]), st.sampled_from([0.0, -0.0, 1.0, 0.5, 1e300]),
    st.sampled_from(["", "a", "1"]),
)
configs = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)), max_leaves=8)


def _json(config) -> str:
    return json.dumps(json_model_config({"k": config}))


@settings(max_examples=400, deadline=None)
@given(configs, configs)
def test_configs_with_equal_keys_serialize_alike(a, b):
    assert value_key(a) is not None and value_key(b) is not None
    if value_key(a) == value_key(b):
        assert _json(a) == _json(b)


@pytest.mark.parametrize("a, b", [(1, True), (1, 1.0), (0.0, -0.0)])
def test_values_that_python_calls_equal_have_apart_keys(a, b):
    assert a == b and hash(a) == hash(b)  # a memo keyed on the values themselves would take one for the other
    assert value_key(a) != value_key(b)
    assert _json(a) != _json(b)


def test_values_without_an_exact_key_have_none():
    class Thing:
        pass

    assert value_key({"a": Thing()}) is None
    assert value_key(np.array([object()])) is None
    assert value_key(np.float64(1.0)) is not None  # a numpy scalar: its type and bytes


def test_every_space_kind_has_a_key_that_sampling_leaves_alone():
    for name, space in space_kinds().items():
        key = value_key(space)
        assert key is not None, name
        space.seed(1)
        space.sample()
        assert value_key(space) == key, name
        hash(key)


def test_space_keys_differ_where_their_dicts_differ():
    kinds = list(space_kinds().values())
    for a in kinds:
        for b in kinds:
            if value_key(a) == value_key(b):
                assert gym_space_to_dict(a) == gym_space_to_dict(b)


def test_a_box_changed_in_place_or_stored_in_fortran_order_has_another_key():
    box = gym.spaces.Box(np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32))
    key = value_key(box)
    box.high[0, 0] = 2.0
    assert value_key(box) != key
    a = np.arange(4, dtype=np.float32).reshape(2, 2)
    f = np.asfortranarray(a)
    assert a.tobytes() == f.tobytes() and array_to_b64(a) != array_to_b64(f)  # np.save keeps the order
    assert value_key(a) != value_key(f)


def test_a_dict_space_key_keeps_its_order():
    a = gym.spaces.Dict(OrderedDict(x=gym.spaces.Discrete(2), y=gym.spaces.Discrete(3)))
    b = gym.spaces.Dict(OrderedDict(y=gym.spaces.Discrete(3), x=gym.spaces.Discrete(2)))
    assert gym_space_to_dict(a) != gym_space_to_dict(b)
    assert value_key(a) != value_key(b)


def _module(config=None, obs=None):
    return RLModuleSpec(module_class=ToyTorchModule, observation_space=obs or gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
                        action_space=gym.spaces.Discrete(2), model_config_dict=config or {"hidden": 8}).build()


def test_spec_key_follows_the_spec_a_module_would_write():
    m = _module()
    key = spec_key(m)
    assert key is not None and key == spec_key(_module())  # another module of the same spec
    m.config.model_config_dict["extra"] = 1  # changed in place
    assert spec_key(m) != key and spec_to_dict(m) != spec_to_dict(_module())
    m.config.observation_space.low[0] = -2.0
    changed = spec_key(m)
    assert changed != spec_key(_module({"hidden": 8, "extra": 1}))


def test_spec_key_of_a_multi_module_covers_each_submodule():
    from rlmodule import MultiRLModuleSpec

    multi = MultiRLModuleSpec(module_specs={"a": RLModuleSpec(
        module_class=ToyTorchModule, observation_space=gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        action_space=gym.spaces.Discrete(2), model_config_dict={"hidden": 8})}).build()
    key = spec_key(multi)
    assert key is not None
    multi["a"].config.model_config_dict["hidden"] = 9
    assert spec_key(multi) != key
