"""A registry the web tests look at: a small PPO module snapshotted a few times, aliases moved."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from registry import Registry
from rlmodule import RLModuleSpec
from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

MODEL = "team/cartpole"
OTHER = "walker"
HOSTILE = "<script>alert('x')</script>"  # a metadata value and a tag that must render as text


def spec(hidden: int = 8) -> RLModuleSpec:
    """PPO's module on a 4-float observation and 2 actions."""
    return RLModuleSpec(
        module_class=PPOTorchRLModule, catalog_class=PPOCatalog,
        observation_space=gym.spaces.Box(-1.0, 1.0, (4,), np.float32), action_space=gym.spaces.Discrete(2),
        model_config_dict={"fcnet_hiddens": [hidden]},
    )


def nudge(module, step: int) -> None:
    """Change the first parameter a little (a training step stand-in), deterministically."""
    with torch.no_grad():
        first = next(iter(module.parameters()))
        first.add_(0.01 * (step + 1))


RETURNS = [12.5, 30.0, 18.25, 95.5, 61.0]  # version 4 is the best


def populate(reg: Registry) -> None:
    """``team/cartpole`` versions 1-5 (``mean_return`` per RETURNS), aliases best/prod; ``walker`` 1."""
    torch.manual_seed(0)
    module = spec().build()
    for i, value in enumerate(RETURNS):
        nudge(module, i)
        reg.snapshot(MODEL, module, metadata={"mean_return": value, "iteration": i * 10, "note": HOSTILE if i == 2 else "ok"})
    reg.set_alias(MODEL, "prod", 2)
    reg.set_alias(MODEL, "best", 4)
    reg.set_alias(MODEL, "prod", 4)
    reg.snapshot(OTHER, spec(hidden=4).build(), metadata={"mean_return": 1.0})
