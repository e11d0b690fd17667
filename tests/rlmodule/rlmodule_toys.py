"""Small RLModules for the rlmodule tests: Dict observations, buffers of several dtypes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlmodule import Columns, RLModule, TorchRLModule

OBS_SPACE = gym.spaces.Dict({
    "pos": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
    "vel": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
})
ACT_SPACE = gym.spaces.Discrete(3)


class ToyTorchModule(TorchRLModule):
    """Linear policy and value heads over concatenated Dict observations, plus odd buffers."""

    def setup(self):
        hidden = self.config.model_config_dict.get("hidden", 8)
        self.encoder = nn.Linear(5, hidden)
        self.pi = nn.Linear(hidden, self.config.action_space.n)
        if not self.config.inference_only:
            self.vf = nn.Linear(hidden, 1)
        self.register_buffer("steps", torch.arange(4, dtype=torch.int32))
        self.register_buffer("scale", torch.tensor([0.5, 2.0], dtype=torch.float64))
        self.register_buffer("bf", torch.ones(2, 2, dtype=torch.bfloat16))
        self.register_buffer("mask", torch.tensor([True, False, True]))
        self.register_buffer("codes", torch.tensor([1, 255], dtype=torch.uint8))

    def _features(self, batch):
        obs = batch[Columns.OBS]
        x = torch.cat([obs["pos"], obs["vel"]], dim=-1)
        return torch.tanh(self.encoder(x)) * self.scale.float().sum() + self.bf.float().mean()

    def _forward_inference(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(self._features(batch))}

    def _forward_exploration(self, batch, **kwargs):
        return self._forward_inference(batch)

    def _forward_train(self, batch, **kwargs):
        h = self._features(batch)
        return {Columns.ACTION_DIST_INPUTS: self.pi(h), Columns.VF_PREDS: self.vf(h).squeeze(-1)}

    def output_specs_train(self):
        return [Columns.ACTION_DIST_INPUTS, Columns.VF_PREDS]

    def _inference_only_get_state_hook(self, state_dict):
        return {k: v for k, v in state_dict.items() if not k.startswith("vf.")}


class CountingModule(RLModule):
    """A framework-free module whose state is JSON plus a numpy array."""

    def setup(self):
        self.count = 0
        self.table = np.zeros((2, 2), dtype=np.float32)
        self.label = "start"

    def _forward_inference(self, batch, **kwargs):
        self.count += 1
        return {Columns.ACTION_DIST_INPUTS: batch[Columns.OBS]}

    _forward_exploration = _forward_inference
    _forward_train = _forward_inference

    def get_state(self, components=None, *, not_components=None, inference_only=False, **kw):
        return {"count": self.count, "meta": {"label": self.label, "table": self.table.copy()}}

    def set_state(self, state):
        self.count = state.get("count", self.count)
        meta = state.get("meta", {})
        self.label = meta.get("label", self.label)
        if "table" in meta:
            self.table = np.asarray(meta["table"]).copy()


class StatefulModule(ToyTorchModule):
    """A recurrent-looking module (non-empty initial state)."""

    def get_initial_state(self):
        return {"h": torch.zeros(4), "c": torch.zeros(2, 3, dtype=torch.float64)}


def toy_batch(n: int = 5, seed: int = 0) -> dict:
    """A reproducible batch of Dict observations."""
    g = torch.Generator().manual_seed(seed)
    return {Columns.OBS: {"pos": torch.rand(n, 3, generator=g), "vel": torch.randn(n, 2, generator=g)}}
