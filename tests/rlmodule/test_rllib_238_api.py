"""RLlib 2.38+'s module API beside 2.35's: `_forward`, default distributions, from_checkpoint
keywords, the 2.40+ PPO buffers (with 2.35 states still loading). Written after RLlib's own
RLModule tests of these behaviours (test_rl_module.py, test_torch_rl_module.py, PPO's tests)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlmodule import (
    Columns, MultiRLModule, MultiRLModuleSpec, RLModule, RLModuleSpec, TorchCategorical,
    TorchDiagGaussian, TorchRLModule,
)
from rlmodule.ppo import PPOCatalog, PPOTorchRLModule

CARTPOLE_OBS = gym.spaces.Box(-4.8, 4.8, (4,), dtype=np.float32)


class GenericForward(TorchRLModule):
    """A 2.38-style module: setup() and one generic _forward()."""

    def setup(self):
        self.policy = nn.Linear(4, 2)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.policy(batch[Columns.OBS])}


class InferenceOverride(GenericForward):
    def _forward_inference(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: torch.zeros(len(batch[Columns.OBS]), 2)}


def _module(cls=GenericForward, action_space=gym.spaces.Discrete(2), **kw):
    return cls(observation_space=CARTPOLE_OBS, action_space=action_space, **kw)


def test_the_three_forward_passes_fall_back_to_forward():
    module = _module()
    batch = {Columns.OBS: torch.randn(3, 4)}
    expected = module.policy(batch[Columns.OBS])
    for phase in ("forward_inference", "forward_exploration", "forward_train"):
        out = getattr(module, phase)(batch)[Columns.ACTION_DIST_INPUTS]
        assert torch.equal(out, expected), phase


def test_a_phase_override_wins_over_forward():
    module = _module(InferenceOverride)
    batch = {Columns.OBS: torch.randn(3, 4)}
    assert torch.equal(module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS], torch.zeros(3, 2))
    assert not torch.equal(module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS],
                           torch.zeros(3, 2))


def test_the_base_forward_returns_an_empty_dict():
    class Empty(TorchRLModule):
        def output_specs_inference(self):
            return []

    assert Empty(observation_space=CARTPOLE_OBS,
                 action_space=gym.spaces.Discrete(2)).forward_inference({"obs": torch.zeros(1, 4)}) == {}


@pytest.mark.parametrize("space, cls", [(gym.spaces.Discrete(3), TorchCategorical),
                                        (gym.spaces.Box(-1, 1, (2,)), TorchDiagGaussian)])
def test_torch_modules_default_the_action_distribution_classes(space, cls):
    module = _module(action_space=space)
    assert module.get_inference_action_dist_cls() is cls
    assert module.get_exploration_action_dist_cls() is cls
    assert module.get_train_action_dist_cls() is cls


def test_an_own_action_dist_cls_wins_and_other_spaces_are_refused():
    module = _module(action_space=gym.spaces.MultiDiscrete([2, 3]))
    with pytest.raises(ValueError, match=r"no default action distribution for action space "
                                         r"MultiDiscrete\(\[2 3\]\): set `self.action_dist_cls`"):
        module.get_inference_action_dist_cls()
    module.action_dist_cls = TorchCategorical
    assert module.get_train_action_dist_cls() is TorchCategorical


def _ppo_spec(**model):
    torch.manual_seed(0)
    return RLModuleSpec(module_class=PPOTorchRLModule, observation_space=CARTPOLE_OBS,
                        action_space=gym.spaces.Discrete(2), catalog_class=PPOCatalog,
                        model_config_dict={"fcnet_hiddens": [8], **model})


def test_from_checkpoint_keywords_override_the_stored_constructor_arguments(tmp_path):
    learner = _ppo_spec(vf_share_layers=False).build()
    learner.save_to_path(tmp_path / "m")
    actor = RLModule.from_checkpoint(tmp_path / "m", inference_only=True)
    assert actor.config.inference_only is True and not hasattr(actor, "vf")
    assert set(actor.get_state()) == set(learner.get_state(inference_only=True))
    batch = {"obs": torch.randn(4, 4)}
    assert torch.equal(actor.forward_inference(batch)["action_dist_inputs"],
                       learner.forward_inference(batch)["action_dist_inputs"])
    assert RLModule.from_checkpoint(tmp_path / "m").config.inference_only is False


def test_from_checkpoint_refuses_keywords_nothing_takes(tmp_path):
    _ppo_spec().build().save_to_path(tmp_path / "m")
    with pytest.raises(TypeError, match="from_checkpoint\\(\\) got keyword argument 'inferenceonly' "
                                        "that neither PPOTorchRLModule's constructor nor "
                                        "restore_from_path takes"):
        RLModule.from_checkpoint(tmp_path / "m", inferenceonly=True)


def test_from_checkpoint_inference_only_reaches_every_sub_module(tmp_path):
    multi = MultiRLModuleSpec(module_specs={"p0": _ppo_spec(), "p1": _ppo_spec(vf_share_layers=False)}).build()
    multi.save_to_path(tmp_path / "multi")
    actors = MultiRLModule.from_checkpoint(tmp_path / "multi", inference_only=True)
    assert actors.config.inference_only and all(m.config.inference_only for m in actors.values())
    assert not any(k.startswith("vf.") for m in actors.values() for k in m.get_state())


def test_ppo_heads_carry_rllib_240_buffers_and_a_235_state_still_loads(tmp_path):
    module = _ppo_spec().build()
    state = module.get_state()
    assert state["pi.log_std_clip_param_const"].tolist() == [20.0]
    assert state["vf.log_std_clip_param_const"].tolist() == [20.0]
    old = {k: v for k, v in state.items() if "log_std_clip_param_const" not in k}  # RLlib 2.35's keys
    fresh = _ppo_spec().build()
    fresh.save_to_path(tmp_path / "old", state={k: v * 0 for k, v in old.items()})
    fresh.restore_from_path(tmp_path / "old")
    assert all(float(v.abs().sum()) == 0 for k, v in fresh.get_state().items() if k in old)
    assert fresh.get_state()["pi.log_std_clip_param_const"].tolist() == [20.0]


def test_a_diag_gaussian_policy_head_clips_its_log_stds():
    torch.manual_seed(0)
    module = RLModuleSpec(module_class=PPOTorchRLModule, observation_space=CARTPOLE_OBS,
                          action_space=gym.spaces.Box(-1, 1, (2,)), catalog_class=PPOCatalog,
                          model_config_dict={"fcnet_hiddens": [8]}).build()
    with torch.no_grad():
        module.pi.net.mlp[0].bias.fill_(100.0)
    out = module.forward_inference({"obs": torch.zeros(1, 4)})["action_dist_inputs"]
    assert out[0, :2].min() > 50 and out[0, 2:].tolist() == [20.0, 20.0]   # means free, log stds clipped
    assert not _ppo_spec().build().pi.clip_log_std and not module.vf.clip_log_std
