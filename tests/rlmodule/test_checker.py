"""Spec checking: canonical format, SpecDict/TypeSpec and the forward decorators."""

from __future__ import annotations

import pytest

from rlmodule import (
    SpecCheckingError, SpecDict, TypeSpec, check_input_specs, check_output_specs,
    convert_to_canonical_format,
)
from rlmodule.checker import is_input_decorated, is_output_decorated


def test_canonical_format():
    spec = convert_to_canonical_format(["obs", ("state", "h"), ("a",)])
    assert isinstance(spec, SpecDict)
    assert spec == {"obs": None, "state": {"h": None}, "a": None}
    mapping = convert_to_canonical_format({"x": int, "y": None, "z": ["k"]})
    assert mapping["x"] == TypeSpec(int) and mapping["y"] is None and mapping["z"] == {"k": None}
    assert convert_to_canonical_format(int) == TypeSpec(int)
    assert convert_to_canonical_format(None) is None


def test_spec_dict_validation_messages():
    spec = convert_to_canonical_format({"obs": None, "n": int, "nested": ["h"]})
    spec.validate({"obs": 1, "n": 2, "nested": {"h": 0}, "extra": 3})
    with pytest.raises(ValueError, match=r"Keys nested are in the spec dict but not on the data dict"):
        spec.validate({"obs": 1, "n": 2})
    with pytest.raises(ValueError, match="Mismatch found in data element n, which is a TensorSpec: "
                                         "Expected data type <class 'int'> but found <class 'str'>"):
        spec.validate({"obs": 1, "n": "2", "nested": {"h": 0}})
    with pytest.raises(ValueError, match="Keys h are in the spec dict"):
        spec.validate({"obs": 1, "n": 2, "nested": {"g": 0}})


class _Model:
    def __init__(self):
        self.calls = 0
        self._in = convert_to_canonical_format(["obs"])
        self._out = convert_to_canonical_format(["out"])

    @check_input_specs("_in")
    @check_output_specs("_out")
    def forward(self, batch):
        self.calls += 1
        if "crash" in batch:
            raise RuntimeError("inner failure")
        return {"out": batch["obs"]} if "obs" in batch else {"other": 1}

    @check_input_specs("_in", only_check_on_retry=False, cache=False)
    def strict(self, batch):
        return batch

    @check_input_specs("_missing")
    def missing(self, batch):
        raise RuntimeError("x")


def test_input_checked_only_on_retry():
    model = _Model()
    with pytest.raises(SpecCheckingError, match="input spec validation failed on _Model.forward"):
        model.forward({"crash": 1})
    with pytest.raises(RuntimeError, match="inner failure"):
        model.forward({"obs": 1, "crash": 1})
    assert model.forward({"obs": 2}) == {"out": 2}


def test_output_checked_once_per_method():
    model = _Model()
    with pytest.raises(SpecCheckingError, match="output spec validation failed on _Model.forward, "
                                                ".*Keys out are in the spec dict"):
        model.forward({"nothing": 1})
    model2 = _Model()
    model2.forward({"obs": 1})
    assert model2.forward({"nothing": 1}) == {"other": 1}


def test_strict_checking_and_non_mapping_data():
    model = _Model()
    with pytest.raises(SpecCheckingError, match="Keys obs are in the spec dict"):
        model.strict({})
    with pytest.raises(ValueError, match="^input must be a Mapping, got list$"):
        model.strict([1])
    with pytest.raises(SpecCheckingError, match="has no attribute _missing"):
        model.missing({})
    assert is_input_decorated(_Model.forward) and is_output_decorated(_Model.forward)
    assert not is_output_decorated(_Model.strict)
