"""The three examples of RLlib's RLModule docstring (sampling loop, training, inference).

The texts below are RLlib 2.35's `testcode` blocks verbatim (indentation restored); `port()`
changes only their imports, from ray to rlmodule (plus `RLModuleSpec`, which the docstring takes
from the namespace of `rl_module.py` where it lives).

Two examples use names they never define: training uses `obs`; inference uses `obs`,
`terminated` and `action_dist_class`. Sphinx's doctest, which runs RLlib's docs, executes the
`testcode` blocks of one docstring in one shared namespace, in order, so those names come from
the sampling loop; `test_examples_in_one_namespace_as_sphinx_runs_them` does exactly that. Since
the sampling loop only ends once `terminated` is True, the inference loop then runs zero times;
so each example also runs on its own, with the missing names defined the minimal way:
training gets `obs` from a fresh `CartPole-v1` reset before it starts; inference gets the
sampling example's own three lines (`action_dist_class = ...`, `obs, info = env.reset()`,
`terminated = False`) right after `module = module_spec.build()`, the first point where they can
be defined.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "000_683ce21ea1e67583.txt"

HEADER = '''\
from ray.rllib.algorithms.ppo.torch.ppo_torch_rl_module import (
    PPOTorchRLModule
)
from ray.rllib.algorithms.ppo.ppo_catalog import PPOCatalog
import gymnasium as gym
import torch

env = gym.make("CartPole-v1")
# Create a single agent RL module spec.
module_spec = RLModuleSpec(
    module_class=PPOTorchRLModule,
    observation_space=env.observation_space,
    action_space=env.action_space,
    model_config_dict = {"hidden": [128, 128]},
    catalog_class = PPOCatalog,
)
module = module_spec.build()
'''

SAMPLING = HEADER + '''\
action_dist_class = module.get_inference_action_dist_cls()
obs, info = env.reset()
terminated = False

while not terminated:
    fwd_ins = {"obs": torch.Tensor([obs])}
    fwd_outputs = module.forward_exploration(fwd_ins)
    # this can be either deterministic or stochastic distribution
    action_dist = action_dist_class.from_logits(
        fwd_outputs["action_dist_inputs"]
    )
    action = action_dist.sample()[0].numpy()
    obs, reward, terminated, truncated, info = env.step(action)
'''

TRAINING = HEADER + '''\
fwd_ins = {"obs": torch.Tensor([obs])}
fwd_outputs = module.forward_train(fwd_ins)
# loss = compute_loss(fwd_outputs, fwd_ins)
# update_params(module, loss)
'''

INFERENCE = HEADER + '''\
while not terminated:
    fwd_ins = {"obs": torch.Tensor([obs])}
    fwd_outputs = module.forward_inference(fwd_ins)
    # this can be either deterministic or stochastic distribution
    action_dist = action_dist_class.from_logits(
        fwd_outputs["action_dist_inputs"]
    )
    action = action_dist.sample()[0].numpy()
    obs, reward, terminated, truncated, info = env.step(action)
'''

RAY_IMPORTS = '''\
from ray.rllib.algorithms.ppo.torch.ppo_torch_rl_module import (
    PPOTorchRLModule
)
from ray.rllib.algorithms.ppo.ppo_catalog import PPOCatalog
'''
OUR_IMPORTS = '''\
from rlmodule import RLModuleSpec
from rlmodule.ppo import PPOTorchRLModule
from rlmodule.ppo import PPOCatalog
'''
BUILD = "module = module_spec.build()\n"
SAMPLING_SETUP = '''\
action_dist_class = module.get_inference_action_dist_cls()
obs, info = env.reset()
terminated = False
'''

pytestmark = pytest.mark.filterwarnings("ignore:Creating a tensor from a list of numpy")


def port(example: str) -> str:
    """The example with its ray imports replaced by ours; nothing else changes."""
    assert example.count(RAY_IMPORTS) == 1
    ported = example.replace(RAY_IMPORTS, OUR_IMPORTS)
    assert "ray" not in ported.replace("array", "")
    return ported


def run(code: str, namespace: dict | None = None) -> dict:
    namespace = {} if namespace is None else namespace
    exec(compile(code, "<docstring example>", "exec"), namespace)
    return namespace


@pytest.mark.skipif(not SEED.exists(), reason=f"the reference text is not at {SEED}")
def test_examples_are_the_reference_texts():
    """Each example, indentation stripped, is a run of lines of the reference (which lost it)."""
    lines = [line.strip() for line in SEED.read_text().splitlines()]
    for example in (SAMPLING, TRAINING, INFERENCE):
        body = [line.strip() for line in example.splitlines() if line.strip()]
        starts = [i for i, line in enumerate(lines) if line == body[0]]
        assert any(lines[i:i + len(body)] == body for i in starts), example


def test_sampling_loop_runs_an_episode():
    ns = run(port(SAMPLING))
    assert ns["terminated"]
    assert set(ns["fwd_outputs"]) == {"action_dist_inputs", "vf_preds"}
    assert ns["module"].observation_space == ns["env"].observation_space
    assert ns["env"].action_space.contains(ns["action"])


def test_training_example_with_obs_from_a_reset():
    prelude = 'import gymnasium as gym\nobs, info = gym.make("CartPole-v1").reset(seed=0)\n'
    ns = run(prelude + port(TRAINING))
    out = ns["fwd_outputs"]
    assert set(out) == {"action_dist_inputs", "vf_preds"}
    assert out["action_dist_inputs"].shape == (1, 2) and out["vf_preds"].shape == (1,)
    out["vf_preds"].sum().backward()
    assert ns["module"].vf.net.mlp[0].weight.grad is not None


def test_inference_example_with_the_sampling_setup_lines():
    code = port(INFERENCE)
    assert code.count(BUILD) == 1
    ns = run(code.replace(BUILD, BUILD + SAMPLING_SETUP))
    assert set(ns["fwd_outputs"]) == {"action_dist_inputs"}  # the loop ran
    assert ns["terminated"]


def test_examples_in_one_namespace_as_sphinx_runs_them():
    ns: dict = {}
    run(port(SAMPLING), ns)
    sampled_obs = ns["obs"]
    run(port(TRAINING), ns)
    assert set(ns["fwd_outputs"]) == {"action_dist_inputs", "vf_preds"}
    trained = ns["fwd_outputs"]
    run(port(INFERENCE), ns)  # `terminated` is still True: the loop does not run
    assert ns["fwd_outputs"] is trained and ns["obs"] is sampled_obs
    assert isinstance(trained["action_dist_inputs"], torch.Tensor)
