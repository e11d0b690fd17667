"""PPO's RLModule and Catalog (RLlib's `ray.rllib.algorithms.ppo` RLModule parts)."""

from rlmodule.ppo.ppo_catalog import PPOCatalog
from rlmodule.ppo.ppo_rl_module import PPORLModule
from rlmodule.ppo.torch_ppo_rl_module import PPOTorchRLModule

__all__ = ["PPOCatalog", "PPORLModule", "PPOTorchRLModule"]
