"""The kept build's copy (registry.templates): what copy.deepcopy would make, without its generic walk."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from registry import replay, templates


def _hook(module, args, output):  # a plain function: deepcopy keeps it as it is
    return output


class OwnCopy(nn.Linear):
    """A module that copies itself its own way: left to copy.deepcopy."""

    copies = 0

    def __deepcopy__(self, memo):
        OwnCopy.copies += 1
        new = nn.Linear.__new__(OwnCopy)
        memo[id(self)] = new
        new.__setstate__({k: copy.deepcopy(v, memo) for k, v in self.__getstate__().items()})
        return new


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(3, 4)
        self.head = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), OwnCopy(2, 2))
        self.register_buffer("steps", torch.zeros(()))
        self.parts = [self.enc, self.head[0]]  # modules reached through a plain attribute too
        self.cfg = {"sizes": [3, 4, 2], "name": "net"}
        self.enc.register_forward_hook(_hook)
        self.pending = OrderedDict()  # an empty OrderedDict reached twice, as a hook dict is
        self.enc.pending = self.pending


def test_the_copy_of_a_kept_build_is_what_deepcopy_makes_of_it():
    with torch.device("meta"):
        kept = Net()
    made = templates._copy(kept)
    before = OwnCopy.copies

    assert type(made) is Net and type(made.head[2]) is OwnCopy
    assert made.parts[0] is made.enc and made.parts[1] is made.head[0], "a module reached twice must be copied once"
    assert made.enc is not kept.enc and made.head is not kept.head
    assert list(made.enc._forward_hooks.values()) == [_hook] and made.enc._forward_hooks is not kept.enc._forward_hooks
    assert made.enc.pending is made.pending is not kept.pending, "one dict reached twice must be copied once"
    assert made.cfg == kept.cfg and made.cfg is not kept.cfg and made.cfg["sizes"] is not kept.cfg["sizes"]
    tensors = [*made.parameters(), *made.buffers()]
    assert len(tensors) == len([*kept.parameters(), *kept.buffers()]) == 7
    assert all(t.device.type == "cpu" for t in tensors)
    assert all(type(p) is nn.Parameter for p in made.parameters())
    owned = templates._owned(kept, [kept])
    assert not replay.reaches(made, lambda obj: id(obj) in owned), "the copy reaches the kept build"

    templates._copy(kept)
    assert OwnCopy.copies == before + 1, "a class with its own __deepcopy__ was not copied its way"
    assert templates._plain_module(nn.Linear) and not templates._plain_module(OwnCopy)


def test_a_tensor_missing_from_the_memo_is_refused_not_copied_as_meta():
    with torch.device("meta"):
        kept = Net()
    memo = {id(p): torch.empty(p.shape) for p in kept.parameters()}  # the buffer is left out
    with pytest.raises(KeyError):
        templates._deepcopy(kept, memo)
