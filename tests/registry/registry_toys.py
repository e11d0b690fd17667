"""A user's own modules for the registry tests: Dict observations, buffers of several dtypes."""

from __future__ import annotations

import threading

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlmodule import Columns, MultiRLModuleSpec, RLModuleSpec, TorchRLModule

OBS_SPACE = gym.spaces.Dict(
    {
        "pos": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
        "grid": gym.spaces.Box(0, 255, (2, 2), np.uint8),
        "mode": gym.spaces.Discrete(4),
    }
)
ACT_SPACE = gym.spaces.Discrete(3)


class DictPolicy(TorchRLModule):
    """An MLP over a Dict observation, with float16/bfloat16/int64/bool/uint8 buffers beside it."""

    def setup(self) -> None:
        hidden = int(self.config.model_config_dict.get("hidden", 8))
        self.embed = nn.Embedding(4, 2)
        self.net = nn.Sequential(nn.Linear(3 + 4 + 2, hidden), nn.Tanh(), nn.Linear(hidden, 3))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("obs_mean", torch.zeros(3, dtype=torch.float16))
        self.register_buffer("scale", torch.ones(2, 2, dtype=torch.bfloat16))
        self.register_buffer("mask", torch.ones(3, dtype=torch.bool))
        self.register_buffer("seen", torch.zeros(4, dtype=torch.uint8))
        self.register_buffer("bias64", torch.zeros(3, dtype=torch.float64))

    def _logits(self, batch):
        obs = batch[Columns.OBS]
        grid = obs["grid"].float().reshape(-1, 4) / 255.0 * self.scale.float().reshape(1, 4)
        pos = obs["pos"] - self.obs_mean.float()
        x = torch.cat([pos, grid, self.embed(obs["mode"].long())], dim=-1)
        logits = self.net(x) + self.bias64.float()
        return logits.masked_fill(~self.mask, -1e9)

    def _forward_inference(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self._logits(batch)}

    def _forward_exploration(self, batch, **kwargs):
        return self._forward_inference(batch)

    def _forward_train(self, batch, **kwargs):
        return self._forward_inference(batch)


class ManyBlocksPolicy(DictPolicy):
    """A DictPolicy with twelve 120 KB parameters beside it: twelve objects of their own, more than the
    store has writer threads."""

    def setup(self) -> None:
        super().setup()
        self.blocks = nn.ParameterList([nn.Parameter(torch.randn(100, 300)) for _ in range(12)])


def spec(hidden: int = 8, **kwargs) -> RLModuleSpec:
    """The spec of a DictPolicy (or of ``module_class``)."""
    return RLModuleSpec(
        **{"module_class": DictPolicy, **kwargs}, observation_space=OBS_SPACE, action_space=ACT_SPACE,
        model_config_dict={"hidden": hidden},
    )


def multi_spec(hidden: int = 8) -> MultiRLModuleSpec:
    """Two DictPolicies under module ids p0 and p1."""
    return MultiRLModuleSpec(module_specs={"p0": spec(hidden), "p1": spec(hidden + 2)})


def batch(n: int = 5, seed: int = 0) -> dict:
    """A fixed observation batch."""
    g = torch.Generator().manual_seed(seed)
    return {
        Columns.OBS: {
            "pos": torch.rand(n, 3, generator=g) * 2 - 1,
            "grid": torch.randint(0, 256, (n, 2, 2), generator=g, dtype=torch.uint8),
            "mode": torch.randint(0, 4, (n,), generator=g),
        }
    }


def train_step(module: DictPolicy, seed: int) -> None:
    """Change every tensor a little, as a training step (and a counter) would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
        module.steps += 1
        module.obs_mean.add_(torch.randn(3, generator=g).half() * 0.1)
        module.scale.mul_(1.5)
        module.mask[seed % 3] = bool(seed % 2)
        module.seen[seed % 4] += 1
        module.bias64.add_(torch.randn(3, generator=g, dtype=torch.float64))


def states_equal(a, b) -> bool:
    """Bit-for-bit equality of two modules' states (dtype, shape and bytes of every tensor)."""
    sa, sb = a.get_state(), b.get_state()
    if _flat_keys(sa) != _flat_keys(sb):
        return False
    return all(_same(x, y) for x, y in zip(_leaves(sa), _leaves(sb)))


def _flat_keys(state, prefix=""):
    keys = []
    for k in sorted(state):
        if isinstance(state[k], dict):
            keys += _flat_keys(state[k], f"{prefix}{k}/")
        else:
            keys.append(prefix + k)
    return keys


def _leaves(state):
    for k in sorted(state):
        if isinstance(state[k], dict):
            yield from _leaves(state[k])
        else:
            yield state[k]


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def _same(x, y) -> bool:
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
        return x.dtype == y.dtype and x.shape == y.shape and torch.equal(_bytes(x), _bytes(y))
    return x == y


class NonPersistentBufferPolicy(DictPolicy):
    """A buffer computed in setup and kept out of the state: replay must not leave it uninitialised."""

    def setup(self) -> None:
        super().setup()
        self.register_buffer("table", torch.arange(5.0) * 3, persistent=False)


class TensorAttributePolicy(DictPolicy):
    """A plain tensor attribute made in setup (not a buffer)."""

    def setup(self) -> None:
        super().setup()
        self.consts = torch.linspace(0, 1, 4)


class ItemInSetupPolicy(DictPolicy):
    """A setup that reads a tensor's value, which the meta device cannot do."""

    def setup(self) -> None:
        super().setup()
        self.width = int(torch.tensor(4).item())


class PartialSetStatePolicy(DictPolicy):
    """A custom set_state that loads only the network: the rest must keep its initial values."""

    def set_state(self, state) -> None:
        super().set_state({k: v for k, v in state.items() if k.startswith("net.")})


class TiedPolicy(DictPolicy):
    """A second head sharing (tied to) the output layer's weight."""

    def setup(self) -> None:
        super().setup()
        self.head2 = nn.Linear(self.net[2].in_features, 3)
        self.head2.weight = self.net[2].weight


def _drop_bias(module, state_dict, prefix, local_metadata) -> None:
    del state_dict[prefix + "bias"]


class HiddenParameterPolicy(DictPolicy):
    """A parameter its state leaves out (a state_dict hook drops it), in a module another module's
    attribute reaches first: a kept build's copy would meet that parameter outside its memo."""

    def setup(self) -> None:
        super().setup()
        self.extra = nn.Linear(2, 2)
        self.net[0].peer = [self.extra]  # net comes before extra: a copy reaches extra through this list
        self.extra.register_state_dict_post_hook(_drop_bias)


class CountedPolicy(DictPolicy):
    """A DictPolicy that counts how many times its constructor ran."""

    setups = 0

    def setup(self) -> None:
        type(self).setups += 1
        super().setup()


class ClosurePolicy(DictPolicy):
    """A setup that keeps a lambda (and a forward hook) capturing ``self``: a copy of the module would
    still call the original's, so it must be built afresh."""

    def setup(self) -> None:
        super().setup()
        self.weight_sum = lambda: self.net[0].weight.sum()
        self.hooked = []
        self.net.register_forward_hook(lambda mod, args, out: self.hooked.append(float(self.net[0].weight.detach().sum())))


class Table:
    """A plain helper object holding a tensor."""

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


class DeepTensorPolicy(DictPolicy):
    """Tensors a level deeper than an attribute: in a helper object, and in a list in a dict."""

    def setup(self) -> None:
        super().setup()
        self.table = Table(torch.arange(4.0) * 3)
        self.nested = {"scales": [torch.ones(2) * 7]}


def _refresh_norm(module, incompatible) -> None:
    module.norm_cache = float(module.net[0].weight.detach().norm())


class LoadHookPolicy(DictPolicy):
    """Keeps a number derived from its weights up to date with a ``load_state_dict`` post hook."""

    def setup(self) -> None:
        super().setup()
        self.norm_cache = None
        self.register_load_state_dict_post_hook(_refresh_norm)


class HistoryPolicy(DictPolicy):
    """A JSON list in its state beside the tensors (its own get_state / set_state), kept as it is given."""

    def setup(self) -> None:
        super().setup()
        self.history: list = []

    def get_state(self, *args, **kwargs):
        return {**super().get_state(*args, **kwargs), "history": list(self.history)}

    def set_state(self, state) -> None:
        super().set_state({k: v for k, v in state.items() if k != "history"})
        self.history = state.get("history", self.history)


class ViewBufferPolicy(DictPolicy):
    """A buffer that is a view of a parameter's first row (``persistent``: in the state, or not)."""

    persistent = True

    def setup(self) -> None:
        super().setup()
        self.register_buffer("row0", self.net[0].weight.detach()[0], persistent=self.persistent)


class HiddenViewBufferPolicy(ViewBufferPolicy):
    persistent = False


def _drop_row0(module, state_dict, prefix, local_metadata) -> None:
    del state_dict[prefix + "row0"]


class DroppedViewPolicy(ViewBufferPolicy):
    """A persistent buffer viewing a parameter, which a state_dict hook leaves out of the state."""

    def setup(self) -> None:
        super().setup()
        self._register_state_dict_hook(_drop_row0)


SETTLE = 0.3  # seconds a blocked call is given to (wrongly) get through


class Gate:
    """A progress callback that blocks the snapshot's worker until ``open()``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()

    def __call__(self, done: int, total: int) -> None:
        self.entered.set()
        assert self._open.wait(30), "the gate was never opened"

    def open(self) -> None:
        self._open.set()
