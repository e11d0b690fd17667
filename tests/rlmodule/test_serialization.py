"""Gym spaces to JSON and back exactly; class paths; and the refusals."""

from __future__ import annotations

import base64
import io
import json
import zlib
from collections import OrderedDict

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmodule import (
    SpaceSerializationError, UntrustedClassError, deserialize_type, gym_space_from_dict,
    gym_space_to_dict, serialize_type,
)
from rlmodule.serialization import array_to_b64

FLOAT_DTYPES = [np.float16, np.float32, np.float64]
INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8]
shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


@st.composite
def boxes(draw):
    shape = draw(shapes)
    if draw(st.booleans()):
        dtype = draw(st.sampled_from(FLOAT_DTYPES))
        values = [-np.inf, np.inf, 0.0, -1.5, 2.25, -3.0] + ([] if dtype == np.float16 else [1e30])
        lo, hi = sorted([draw(st.sampled_from(values)), draw(st.sampled_from(values))])
    else:
        dtype = draw(st.sampled_from(INT_DTYPES))
        lo = draw(st.integers(0 if dtype == np.uint8 else -100, 10))
        hi = lo + draw(st.integers(0, 100))
    return gym.spaces.Box(lo, hi, shape=shape, dtype=dtype)


leaves = st.one_of(
    boxes(),
    st.builds(gym.spaces.Discrete, st.integers(1, 50), start=st.integers(-5, 5)),
    st.builds(lambda n, s: gym.spaces.MultiDiscrete(n, start=s[: len(n)]),
              st.lists(st.integers(1, 9), min_size=1, max_size=3),
              st.lists(st.integers(-3, 3), min_size=3, max_size=3)),
    st.builds(gym.spaces.MultiBinary, st.one_of(st.integers(1, 8),
                                                st.lists(st.integers(1, 3), min_size=1, max_size=2))),
    st.builds(lambda lo, extra, chars: gym.spaces.Text(lo + extra, min_length=lo, charset=chars),
              st.integers(0, 3), st.integers(0, 5),
              st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
                      min_size=1, max_size=12)),
    st.builds(lambda n: gym.spaces.Graph(gym.spaces.Box(0, 1, (2,)), gym.spaces.Discrete(n)),
              st.integers(1, 4)),
)


def _containers(children):
    keys = st.text(alphabet="abcxyz_", min_size=1, max_size=4)
    return st.one_of(
        st.lists(children, min_size=1, max_size=3).map(gym.spaces.Tuple),
        st.dictionaries(keys, children, min_size=1, max_size=3).map(
            lambda d: gym.spaces.Dict(OrderedDict(d))),
        st.builds(gym.spaces.Sequence, children, stack=st.just(False)),
        st.builds(gym.spaces.Sequence, boxes(), stack=st.just(True)),
    )


spaces = st.recursive(leaves, _containers, max_leaves=6)


def assert_same_space(a: gym.Space, b: gym.Space) -> None:
    assert type(a) is type(b)
    if isinstance(a, gym.spaces.Box):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.low.tobytes() == b.low.tobytes() and a.high.tobytes() == b.high.tobytes()
    elif isinstance(a, gym.spaces.Dict):
        assert list(a.spaces) == list(b.spaces)
        for k in a.spaces:
            assert_same_space(a[k], b[k])
    elif isinstance(a, (gym.spaces.Tuple, gym.spaces.OneOf)):
        assert len(a.spaces) == len(b.spaces)
        for x, y in zip(a.spaces, b.spaces):
            assert_same_space(x, y)
    elif isinstance(a, gym.spaces.Sequence):
        assert a.stack == b.stack
        assert_same_space(a.feature_space, b.feature_space)
    elif isinstance(a, gym.spaces.Graph):
        assert_same_space(a.node_space, b.node_space)
        assert_same_space(a.edge_space, b.edge_space)
    elif isinstance(a, gym.spaces.MultiDiscrete):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.nvec, b.nvec)
        np.testing.assert_array_equal(a.start, b.start)
    elif isinstance(a, gym.spaces.Text):
        assert (a.min_length, a.max_length, a.character_set) == (
            b.min_length, b.max_length, b.character_set)
    assert a == b


@settings(max_examples=60, deadline=None)
@given(spaces)
def test_space_round_trip_through_sorted_json_is_exact(space):
    text = json.dumps(gym_space_to_dict(space), sort_keys=True)
    restored = gym_space_from_dict(json.loads(text))
    assert_same_space(space, restored)
    assert json.dumps(gym_space_to_dict(restored), sort_keys=True) == text


def test_dict_key_order_survives_sorted_json():
    space = gym.spaces.Dict(OrderedDict([("zeta", gym.spaces.Discrete(2)),
                                         ("alpha", gym.spaces.Discrete(3))]))
    restored = gym_space_from_dict(json.loads(json.dumps(gym_space_to_dict(space), sort_keys=True)))
    assert list(restored.spaces) == ["zeta", "alpha"]


def test_box_encoding_is_rllibs():
    space = gym.spaces.Box(-1.0, np.inf, (2,), np.float32)
    d = gym_space_to_dict(space)
    assert d["space"] == "box" and d["shape"] == [2] and d["dtype"] == "<f4"
    raw = zlib.decompress(base64.b64decode(d["low"]))
    np.testing.assert_array_equal(np.load(io.BytesIO(raw)), space.low)


def test_reads_rllib_dicts_without_start_and_with_list_charset():
    md = {"space": "multi-discrete", "nvec": array_to_b64(np.array([3, 4])), "dtype": "<i8"}
    assert gym_space_from_dict(md) == gym.spaces.MultiDiscrete([3, 4])
    text = {"space": "text", "min_length": 1, "max_length": 4, "charset": ["b", "a"]}
    assert gym_space_from_dict(text).character_set == frozenset("ab")
    assert gym_space_from_dict({"space": "discrete", "n": 4}) == gym.spaces.Discrete(4)
    assert gym_space_from_dict(None) is None and gym_space_to_dict(None) is None


def test_unknown_space_type_is_refused():
    with pytest.raises(SpaceSerializationError,
                       match="unknown space type 'hyperbox'; known: box, discrete"):
        gym_space_from_dict({"space": "hyperbox"})


def test_unserializable_space_is_refused():
    class Odd(gym.Space):
        pass

    with pytest.raises(SpaceSerializationError, match="cannot serialize space of type Odd"):
        gym_space_to_dict(Odd())


def test_malformed_space_dicts_are_refused():
    with pytest.raises(SpaceSerializationError, match="a space dict needs a 'space' key"):
        gym_space_from_dict({"n": 3})
    with pytest.raises(SpaceSerializationError, match="invalid 'discrete' space dict: missing key 'n'"):
        gym_space_from_dict({"space": "discrete"})


def test_pickled_object_arrays_are_refused():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    payload = base64.b64encode(zlib.compress(buf.getvalue())).decode()
    d = {"space": "box", "low": payload, "high": payload, "shape": [1], "dtype": "<f4"}
    with pytest.raises(SpaceSerializationError, match="cannot decode array"):
        gym_space_from_dict(d)


def test_serialize_type_and_deserialize_type():
    assert serialize_type(gym.spaces.Box) == "gymnasium.spaces.box.Box"
    assert serialize_type("a.b.C") == "a.b.C"
    assert deserialize_type("gymnasium.spaces.box.Box") is gym.spaces.Box
    assert deserialize_type(gym.spaces.Box) is gym.spaces.Box


@pytest.mark.parametrize("name,message", [
    ("gymnasium.spaces.box.NotThere", "'gymnasium.spaces.box' has no attribute 'NotThere'"),
    ("gymnasium.spaces", "'gymnasium.spaces' is not a class (it is a module)"),
    ("os.path.join", "'os.path.join' is not a class (it is a function)"),
    ("nopackage_xyz.Cls", "module 'nopackage_xyz' is not imported and matches no trusted prefix"),
])
def test_deserialize_type_raises_instead_of_returning_modules_or_strings(name, message):
    with pytest.raises(UntrustedClassError, match=message.replace("(", r"\(").replace(")", r"\)")):
        deserialize_type(name, error=False)
