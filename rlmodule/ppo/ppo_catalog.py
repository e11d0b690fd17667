"""PPOCatalog: an actor-critic encoder, a policy head and a value head for PPO."""

from __future__ import annotations

from typing import Optional

import gymnasium as gym
from torch import nn

from rlmodule.catalog import Catalog
from rlmodule.distributions import TorchDiagGaussian
from rlmodule.models import ActorCriticEncoderConfig, FreeLogStdMLPHeadConfig, MLPHeadConfig


class PPOCatalog(Catalog):
    """Builds PPO's models (RLlib's PPOCatalog).

    - `build_actor_critic_encoder`: one encoder shared by policy and value function
      (`vf_share_layers=True`, the default) or one each;
    - `build_pi_head`: an MLP over the latent with `required_input_dim` outputs;
    - `build_vf_head`: an MLP over the latent with one output.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        model_config_dict: Optional[dict],
    ):
        super().__init__(
            observation_space=observation_space,
            action_space=action_space,
            model_config_dict=model_config_dict,
        )
        self.actor_critic_encoder_config = ActorCriticEncoderConfig(
            base_encoder_config=self._encoder_config,
            shared=bool(self._model_config_dict["vf_share_layers"]),
        )
        self.pi_and_vf_head_hiddens = list(self._model_config_dict["post_fcnet_hiddens"])
        self.pi_and_vf_head_activation = self._model_config_dict["post_fcnet_activation"]
        self.pi_head_config = None  # known only once build_pi_head knows the framework
        self.vf_head_config = MLPHeadConfig(
            input_dims=self.latent_dims,
            hidden_layer_dims=self.pi_and_vf_head_hiddens,
            hidden_layer_activation=self.pi_and_vf_head_activation,
            output_layer_activation="linear",
            output_layer_dim=1,
        )

    def build_actor_critic_encoder(self, framework: str) -> nn.Module:
        """The actor-critic encoder from `actor_critic_encoder_config`."""
        return self.actor_critic_encoder_config.build(framework=framework)

    def build_encoder(self, framework: str):
        """Not used by PPO: raises NotImplementedError pointing at the actor-critic encoder."""
        raise NotImplementedError("Use PPOCatalog.build_actor_critic_encoder() instead for PPO.")

    def build_pi_head(self, framework: str) -> nn.Module:
        """The policy head, sized for the action distribution's inputs."""
        dist_cls = self.get_action_dist_cls(framework=framework)
        free_log_std = bool(self._model_config_dict["free_log_std"])
        if free_log_std and not issubclass(dist_cls, TorchDiagGaussian):
            raise ValueError(
                "free_log_std is only supported for DiagGaussian action distributions, "
                f"found {dist_cls.__name__} for action space {self.action_space!r}"
            )
        output_dim = dist_cls.required_input_dim(
            space=self.action_space, model_config=self._model_config_dict
        )
        config_cls = FreeLogStdMLPHeadConfig if free_log_std else MLPHeadConfig
        self.pi_head_config = config_cls(
            input_dims=self.latent_dims,
            hidden_layer_dims=self.pi_and_vf_head_hiddens,
            hidden_layer_activation=self.pi_and_vf_head_activation,
            output_layer_dim=output_dim,
            output_layer_activation="linear",
            clip_log_std=issubclass(dist_cls, TorchDiagGaussian),
            log_std_clip_param=float(self._model_config_dict.get("log_std_clip_param", 20.0)),
        )
        return self.pi_head_config.build(framework=framework)

    def build_vf_head(self, framework: str) -> nn.Module:
        """The value-function head from `vf_head_config`."""
        return self.vf_head_config.build(framework=framework)
