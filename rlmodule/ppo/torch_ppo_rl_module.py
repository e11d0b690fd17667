"""PPOTorchRLModule: PPO's policy and value networks in torch."""

from __future__ import annotations

from typing import Any, Dict

import torch

from rlmodule.columns import Columns
from rlmodule.models import ACTOR, CRITIC, ENCODER_OUT
from rlmodule.ppo.ppo_rl_module import PPORLModule
from rlmodule.torch_rl_module import TorchRLModule


def _is_critic_key(key: str) -> bool:
    return key.startswith("vf.") or key.startswith("encoder.critic_encoder.")


class PPOTorchRLModule(TorchRLModule, PPORLModule):
    """PPO in torch: inference gives action_dist_inputs; exploration and train add vf_preds."""

    framework: str = "torch"

    def _inference_only_get_state_hook(self, state_dict: Dict[str, Any]) -> Dict[str, Any]:
        """`get_state(inference_only=True)`: drops the value head and the critic encoder."""
        return {k: v for k, v in state_dict.items() if not _is_critic_key(k)}

    def _forward_inference(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        output = {}
        encoder_outs = self.encoder(batch)
        if Columns.STATE_OUT in encoder_outs:
            output[Columns.STATE_OUT] = encoder_outs[Columns.STATE_OUT]
        output[Columns.ACTION_DIST_INPUTS] = self.pi(encoder_outs[ENCODER_OUT][ACTOR])
        return output

    def _forward_exploration(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        if self.config.model_config_dict.get("uses_new_env_runners"):
            return self._forward_inference(batch)
        output = {}
        encoder_outs = self.encoder(batch)
        if Columns.STATE_OUT in encoder_outs:
            output[Columns.STATE_OUT] = encoder_outs[Columns.STATE_OUT]
        if not self.config.inference_only:
            vf_out = self.vf(encoder_outs[ENCODER_OUT][CRITIC])
            output[Columns.VF_PREDS] = vf_out.squeeze(-1)
        output[Columns.ACTION_DIST_INPUTS] = self.pi(encoder_outs[ENCODER_OUT][ACTOR])
        return output

    def _forward_train(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        output = {}
        encoder_outs = self.encoder(batch)
        if Columns.STATE_OUT in encoder_outs:
            output[Columns.STATE_OUT] = encoder_outs[Columns.STATE_OUT]
        output[Columns.VF_PREDS] = self.vf(encoder_outs[ENCODER_OUT][CRITIC]).squeeze(-1)
        output[Columns.ACTION_DIST_INPUTS] = self.pi(encoder_outs[ENCODER_OUT][ACTOR])
        return output

    def compute_values(self, batch: Dict[str, Any]) -> torch.Tensor:
        """Value estimates for `batch["obs"]`, shape `[B]`."""
        if self.config.inference_only:
            raise RuntimeError(
                "compute_values() needs the value function, which an inference-only "
                "PPO module does not build; build the module with inference_only=False"
            )
        if self.encoder.config.shared:
            latent = self.encoder(batch)[ENCODER_OUT][CRITIC]
        else:
            latent = self.encoder.critic_encoder(batch)[ENCODER_OUT]
        return self.vf(latent).squeeze(-1)
