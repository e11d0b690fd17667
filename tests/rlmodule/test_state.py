"""split_state / join_state: nested state to flat tensors plus JSON and back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmodule import StateSerializationError, join_state, split_state, split_tensors

keys = st.text(alphabet="abcxyz._-0", min_size=1, max_size=5)
tensors = st.one_of(
    st.integers(0, 4).map(lambda n: torch.arange(n, dtype=torch.float64)),
    st.integers(0, 4).map(lambda n: np.arange(n, dtype=np.int16)),
    st.just(torch.ones(2, 2, dtype=torch.bfloat16)),
)
json_leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=4) | st.floats(
    allow_nan=False, allow_infinity=False) | st.lists(st.integers(), max_size=3)
states = st.recursive(st.dictionaries(keys, tensors | json_leaves, max_size=4),
                      lambda c: st.dictionaries(keys, c | tensors | json_leaves, max_size=3),
                      max_leaves=8)


def _equal(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _equal(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b


@settings(max_examples=50, deadline=None)
@given(states)
def test_round_trip(state):
    flat, rest = split_state(state)
    assert all(isinstance(v, (torch.Tensor, np.ndarray)) for v in flat.values())
    _equal(join_state(flat, json.loads(json.dumps(rest, sort_keys=True))), state)


def test_keys_are_slash_joined():
    flat, rest = split_state({"a": {"b": torch.zeros(1)}, "n": 3})
    assert list(flat) == ["a/b"] and rest == {"a": {"b": {"$tensor": "torch"}}, "n": 3}


@pytest.mark.parametrize("state,message", [
    ({"a": {"f": print}}, "state key 'a/f': value of type builtin_function_or_method is neither a tensor nor JSON"),
    ({"a/b": 1}, "state key 'a/b': keys must be non-empty strings without '/'"),
    ({1: 1}, "state key '1': keys must be non-empty strings"),
    ({"x": float("nan")}, "state key 'x': nan is not valid JSON"),
    ({"o": np.array([{}], dtype=object)}, "state key 'o': object arrays are not stored"),
    ([1], "state must be a dict, got list"),
])
def test_refusals_name_the_key(state, message):
    with pytest.raises(StateSerializationError, match=message.replace("(", r"\(")):
        split_state(state)


def test_missing_tensor_is_refused():
    with pytest.raises(StateSerializationError, match="state key 'a/b': its tensor is missing"):
        join_state({}, {"a": {"b": {"$tensor": "torch"}}})


def test_split_tensors_is_split_state_of_a_flat_dict_of_cpu_tensors():
    lin = torch.nn.Linear(3, 2)
    lin.register_buffer("steps", torch.arange(4))
    flat = lin.state_dict(keep_vars=True)
    tensors, rest = split_tensors(flat)
    want_tensors, want_rest = split_state({k: v.detach() for k, v in flat.items()})
    assert rest == want_rest and list(tensors) == list(want_tensors)
    assert all(tensors[k] is flat[k] for k in flat)  # as they are: the caller reads their bytes
    assert json.loads(json.dumps(rest)) == rest


@pytest.mark.parametrize("flat", [{"a/b": torch.zeros(1)}, {"": torch.zeros(1)}, {1: torch.zeros(1)},
                                  {"a": np.zeros(1)}, {"a": {"b": torch.zeros(1)}}, {"a": 3}],
                         ids=["slash", "empty key", "int key", "numpy", "nested", "json"])
def test_split_tensors_leaves_anything_else_to_split_state(flat):
    assert split_tensors(flat) is None


def test_a_0d_numpy_leaf_keeps_its_shape():
    """A numpy scalar or 0-d array (a step count, a temperature) comes back 0-d, not as shape (1,)."""
    state = {"count": np.int64(7), "temp": np.array(0.5, dtype=np.float32), "w": np.ones((2, 3)).T}
    tensors, rest = split_state(state)
    assert tensors["count"].shape == () and tensors["temp"].shape == ()
    assert tensors["w"].flags.c_contiguous and tensors["w"].shape == (3, 2)
    back = join_state(tensors, json.loads(json.dumps(rest)))
    assert back["temp"].shape == () and float(back["temp"]) == 0.5 and int(back["count"]) == 7
