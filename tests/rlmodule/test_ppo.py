"""PPOCatalog and PPOTorchRLModule: RLlib's structure, key names and forward-pass outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import pytest
import torch

from rlmodule import RLModuleSpec, SpecCheckingError
from rlmodule.catalog import Catalog
from rlmodule.distributions import TorchCategorical, TorchDiagGaussian
from rlmodule.ppo import PPOCatalog, PPORLModule, PPOTorchRLModule

CARTPOLE_OBS = gym.spaces.Box(-4.8, 4.8, (4,), dtype="float32")
TWO_ACTIONS = gym.spaces.Discrete(2)


def build(action_space=TWO_ACTIONS, inference_only=False, catalog_class=PPOCatalog, **model):
    torch.manual_seed(0)
    return RLModuleSpec(
        module_class=PPOTorchRLModule,
        observation_space=CARTPOLE_OBS,
        action_space=action_space,
        inference_only=inference_only,
        model_config_dict=model,
        catalog_class=catalog_class,
    ).build()


def shapes(module, **kwargs):
    return {k: tuple(v.shape) for k, v in module.get_state(**kwargs).items()}


OBS = {"obs": torch.randn(5, 4)}


def test_default_model_has_rllib_key_names_and_sizes():
    module = build()
    assert isinstance(module, PPORLModule) and isinstance(module, torch.nn.Module)
    assert shapes(module) == {
        "encoder.encoder.net.mlp.0.weight": (256, 4),
        "encoder.encoder.net.mlp.0.bias": (256,),
        "encoder.encoder.net.mlp.2.weight": (256, 256),
        "encoder.encoder.net.mlp.2.bias": (256,),
        "pi.log_std_clip_param_const": (1,),   # RLlib >= 2.40's buffers
        "pi.net.mlp.0.weight": (2, 256),
        "pi.net.mlp.0.bias": (2,),
        "vf.log_std_clip_param_const": (1,),
        "vf.net.mlp.0.weight": (1, 256),
        "vf.net.mlp.0.bias": (1,),
    }


def test_hidden_sizes_the_encoder():
    state = shapes(build(hidden=[128, 64]))
    assert state["encoder.encoder.net.mlp.0.weight"] == (128, 4)
    assert state["encoder.encoder.net.mlp.2.weight"] == (64, 128)
    assert state["pi.net.mlp.0.weight"] == (2, 64)


def test_post_fcnet_hiddens_give_the_heads_hidden_layers():
    state = shapes(build(hidden=[16], post_fcnet_hiddens=[8]))
    assert state["pi.net.mlp.0.weight"] == (8, 16) and state["pi.net.mlp.2.weight"] == (2, 8)
    assert state["vf.net.mlp.2.weight"] == (1, 8)


def test_forward_passes_return_rllib_columns():
    module = build(hidden=[32])
    inference = module.forward_inference(OBS)
    exploration = module.forward_exploration(OBS)
    train = module.forward_train(OBS)
    assert set(inference) == {"action_dist_inputs"}
    assert set(exploration) == set(train) == {"action_dist_inputs", "vf_preds"}
    assert train["action_dist_inputs"].shape == (5, 2) and train["vf_preds"].shape == (5,)
    assert torch.equal(inference["action_dist_inputs"], train["action_dist_inputs"])
    assert torch.equal(module.compute_values(OBS), train["vf_preds"])
    assert module.get_inference_action_dist_cls() is TorchCategorical
    assert module.get_exploration_action_dist_cls() is module.get_train_action_dist_cls()
    assert module.get_initial_state() == {} and not module.is_stateful()


def test_new_env_runners_flag_makes_exploration_inference():
    module = build(hidden=[8], uses_new_env_runners=True)
    assert set(module.forward_exploration(OBS)) == {"action_dist_inputs"}


def test_training_step_changes_every_parameter():
    module = build(hidden=[16])
    out = module.forward_train(OBS)
    dist = module.get_train_action_dist_cls().from_logits(out["action_dist_inputs"])
    loss = -dist.logp(torch.zeros(5, dtype=torch.long)).mean() + out["vf_preds"].pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_separate_encoders_and_inference_only_state():
    learner = build(hidden=[16], vf_share_layers=False)
    keys = set(learner.get_state())
    assert {k.split(".")[1] for k in keys if k.startswith("encoder.")} == {
        "actor_encoder", "critic_encoder"}
    slim = learner.get_state(inference_only=True)
    assert set(slim) == {k for k in keys if not k.startswith(("vf.", "encoder.critic_encoder."))}

    actor = build(hidden=[16], vf_share_layers=False, inference_only=True)
    assert set(actor.get_state()) == set(slim)
    assert not hasattr(actor, "vf") and actor.encoder.critic_encoder is None
    actor.set_state(slim)
    assert set(actor.forward_exploration(OBS)) == {"action_dist_inputs"}
    assert torch.equal(actor.forward_inference(OBS)["action_dist_inputs"],
                       learner.forward_inference(OBS)["action_dist_inputs"])


def test_inference_only_module_refuses_training_and_values():
    module = build(hidden=[8], inference_only=True)
    assert set(module.get_state()) == set(build(hidden=[8]).get_state(inference_only=True))
    with pytest.raises(RuntimeError, match="`forward_train` on an inference_only module"):
        module.forward_train(OBS)
    with pytest.raises(RuntimeError, match="compute_values\\(\\) needs the value function"):
        module.compute_values(OBS)


def test_box_actions_get_a_diag_gaussian_and_free_log_std():
    box = gym.spaces.Box(-1, 1, (3,), dtype="float32")
    module = build(box, hidden=[8])
    assert module.get_inference_action_dist_cls() is TorchDiagGaussian
    assert module.forward_inference(OBS)["action_dist_inputs"].shape == (5, 6)
    free = build(box, hidden=[8], free_log_std=True)
    assert shapes(free)["pi.log_std"] == (3,) and shapes(free)["pi.net.mlp.0.weight"] == (3, 8)
    assert free.forward_inference(OBS)["action_dist_inputs"].shape == (5, 6)
    with pytest.raises(ValueError, match="free_log_std is only supported for DiagGaussian"):
        build(hidden=[8], free_log_std=True)


def test_catalog_defaults_to_ppo_catalog_and_refuses_build_encoder():
    assert shapes(build(catalog_class=None, hidden=[8])) == shapes(build(hidden=[8]))
    with pytest.raises(TypeError, match="needs catalog_class=PPOCatalog or a subclass of it, got"):
        build(catalog_class=Catalog, hidden=[8])
    cat = PPOCatalog(CARTPOLE_OBS, TWO_ACTIONS, {})
    with pytest.raises(NotImplementedError, match="build_actor_critic_encoder\\(\\) instead"):
        cat.build_encoder("torch")


def test_state_transfer_and_json_spec_round_trip_reproduce_outputs():
    module = build(hidden=[16], vf_share_layers=False)
    spec = RLModuleSpec.from_module(module)
    data = json.loads(json.dumps(spec.to_dict()))
    clone = RLModuleSpec.from_dict(data).build()
    assert type(clone) is PPOTorchRLModule
    clone.set_state(module.get_state())
    ours, theirs = module.forward_train(OBS), clone.forward_train(OBS)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_missing_obs_is_named():
    with pytest.raises(SpecCheckingError, match="obs"):
        build(hidden=[8]).forward_inference({"observations": torch.zeros(1, 4)})


def test_learner_checkpoint_restores_into_an_inference_only_module(tmp_path):
    learner = build(hidden=[16], vf_share_layers=False)
    path = learner.save_to_path(tmp_path / "learner")
    actor = build(hidden=[16], vf_share_layers=False, inference_only=True)
    actor.restore_from_path(path)  # the learner's vf/critic tensors are ignored, as in RLlib
    assert torch.equal(actor.forward_inference(OBS)["action_dist_inputs"],
                       learner.forward_inference(OBS)["action_dist_inputs"])


def test_fresh_process_resolves_ppo_classes_through_the_trust_rule(tmp_path):
    module = build(hidden=[16])
    path = module.save_to_path(tmp_path / "ppo")
    code = (
        "import sys, torch\n"
        "from rlmodule import RLModule\n"
        "assert 'rlmodule.ppo' not in sys.modules\n"
        f"m = RLModule.from_checkpoint({str(path)!r})\n"
        "print(type(m).__module__, type(m).__name__, type(m.config.catalog_class).__name__,\n"
        "      m.config.catalog_class.__name__)\n"
        "torch.manual_seed(0)\n"
        "print(m.forward_train({'obs': torch.ones(2, 4)})['vf_preds'].tolist())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "rlmodule.ppo.torch_ppo_rl_module PPOTorchRLModule type PPOCatalog"
    expected = module.forward_train({"obs": torch.ones(2, 4)})["vf_preds"].tolist()
    assert lines[1] == str(expected)
