"""ModelDiff's building blocks: differences of tensors of every kind, nested dict changes, the report."""

from __future__ import annotations

import math

import torch

from registry.modeldiff import ModelDiff, dict_changes, max_abs_diff, same_bits


def test_max_abs_diff():
    assert max_abs_diff(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 0.0])) == 2.0
    assert max_abs_diff(torch.tensor([True, False]), torch.tensor([True, True])) == 1.0
    assert max_abs_diff(torch.tensor([3], dtype=torch.uint8), torch.tensor([1], dtype=torch.uint8)) == 2.0
    assert max_abs_diff(torch.tensor([1.0]), torch.tensor([1.0], dtype=torch.float64)) == math.inf
    assert max_abs_diff(torch.zeros(2), torch.zeros(3)) == math.inf
    assert max_abs_diff(torch.tensor([math.nan, 1.0]), torch.tensor([math.nan, 1.0])) == 0.0
    assert max_abs_diff(torch.tensor([math.nan]), torch.tensor([1.0])) == math.inf
    assert max_abs_diff(torch.zeros(0), torch.zeros(0)) == 0.0


def test_same_bits_tells_signed_zeros_and_dtypes_apart():
    assert same_bits(torch.tensor(7, dtype=torch.int64), torch.tensor(7, dtype=torch.int64))
    assert not same_bits(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert not same_bits(torch.tensor([1], dtype=torch.int32), torch.tensor([1], dtype=torch.int64))
    assert same_bits(torch.ones(2, 2, dtype=torch.bfloat16).t(), torch.ones(2, 2, dtype=torch.bfloat16))


def test_dict_changes_walks_nested_values():
    a = {"lr": 0.1, "net": {"hidden": [64], "act": "tanh"}, "gone": 1}
    b = {"lr": 0.2, "net": {"hidden": [64], "act": "relu"}, "new": True}
    assert dict_changes(a, b) == {
        "gone": (1, "<missing>"), "lr": (0.1, 0.2), "net.act": ("tanh", "relu"), "new": ("<missing>", True),
    }
    assert dict_changes({"x": 1}, {"x": 1.0}) == {"x": (1, 1.0)}
    assert dict_changes(None, None) == {}


def test_report_text():
    diff = ModelDiff("m", 1, 2, added=["new"], removed=["old"], changed={"w": 0.5, "b": math.inf},
                     unchanged=["k"], metadata_changes={"step": (1, 2)},
                     shapes={"new": ("", "float32[2]"), "old": ("int64[]", ""), "b": ("float32[2]", "float32[3]")})
    assert str(diff).splitlines() == [
        "m: version 1 -> 2",
        "  tensors: 2 changed, 1 added, 1 removed, 1 unchanged",
        "  changed   w: max |a-b| = 0.5",
        "  changed   b: float32[2] -> float32[3]",
        "  added     new: float32[2]",
        "  removed   old: int64[]",
        "  metadata  step: 1 -> 2",
    ]
    assert not diff.identical and diff.to_dict()["changed"] == {"w": 0.5, "b": "inf"}
