"""A module whose snapshots share half their bytes with other writers' (for gc and fault tests)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlmodule import Columns, RLModuleSpec, TorchRLModule

WIDTH = 128  # a WIDTH x WIDTH float32 weight is 64 KiB: an object of its own


class SharedHalfPolicy(TorchRLModule):
    """Two 64 KiB layers: ``shared`` (the same bytes in every writer at a step) and ``own`` (per writer)."""

    def setup(self) -> None:
        self.shared = nn.Linear(WIDTH, WIDTH)
        self.own = nn.Linear(WIDTH, WIDTH)
        self.head = nn.Linear(WIDTH, 2)

    def _forward_inference(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.head(torch.tanh(self.own(torch.tanh(self.shared(batch[Columns.OBS])))))}

    _forward_exploration = _forward_train = _forward_inference


def spec() -> RLModuleSpec:
    """The spec of a SharedHalfPolicy."""
    return RLModuleSpec(
        module_class=SharedHalfPolicy, observation_space=gym.spaces.Box(-1.0, 1.0, (WIDTH,), np.float32),
        action_space=gym.spaces.Discrete(2),
    )


def step(module: SharedHalfPolicy, writer: int, k: int) -> None:
    """Step ``k`` of ``writer``: ``shared`` from ``k`` alone, ``own`` from the writer and ``k``."""
    with torch.no_grad():
        module.shared.weight.copy_(torch.randn(WIDTH, WIDTH, generator=torch.Generator().manual_seed(k)))
        module.own.weight.copy_(torch.randn(WIDTH, WIDTH, generator=torch.Generator().manual_seed(10**6 * (writer + 1) + k)))
