"""Catalog: which encoder, heads and action distribution an RLModule gets for its spaces.

Follows RLlib's `ray.rllib.core.models.catalog.Catalog` (2.35): the model config is merged over
`MODEL_DEFAULTS`, a 1-D Box observation gets an MLP encoder, and the action space picks the
distribution class. Beyond RLlib, the key `"hidden"` (used in RLModule's docstring examples)
is honoured as the encoder's layer sizes instead of being ignored.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import tree
from gymnasium.spaces import Box, Dict, Discrete, MultiDiscrete, Tuple

from rlmodule.distributions import (
    Distribution,
    TorchCategorical,
    TorchDiagGaussian,
    TorchMultiCategorical,
    TorchMultiDistribution,
)
from rlmodule import limits
from rlmodule.models import MLPEncoderConfig

# RLlib's MODEL_DEFAULTS, restricted to the keys the new-stack models read (all JSON).
MODEL_DEFAULTS: dict[str, Any] = {
    "fcnet_hiddens": [256, 256],
    "fcnet_activation": "tanh",
    "fcnet_weights_initializer": None,
    "fcnet_weights_initializer_config": None,
    "fcnet_bias_initializer": None,
    "fcnet_bias_initializer_config": None,
    "conv_filters": None,
    "conv_activation": "relu",
    "post_fcnet_hiddens": [],
    "post_fcnet_activation": "relu",
    "post_fcnet_weights_initializer": None,
    "post_fcnet_weights_initializer_config": None,
    "post_fcnet_bias_initializer": None,
    "post_fcnet_bias_initializer_config": None,
    "free_log_std": False,
    "no_final_linear": False,
    "vf_share_layers": True,
    "use_lstm": False,
    "max_seq_len": 20,
    "lstm_cell_size": 256,
    "lstm_use_prev_action": False,
    "lstm_use_prev_reward": False,
    "_time_major": False,
    "use_attention": False,
    "encoder_latent_dim": None,
    "always_check_shapes": False,
}

FRAMEWORKS = ("torch",)


def _layer_sizes(key: str, value) -> list[int]:
    """`value` as a list of positive layer sizes, else a ValueError naming `key`."""
    limits.check_layer_count(key, value)
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value
    )
    if not ok:
        raise ValueError(f"model config {key!r} must be a list of positive ints, got {value!r}")
    limits.check_layer_sizes(key, value)
    return [int(v) for v in value]


def _merged_model_config(model_config_dict: Optional[dict]) -> dict:
    """MODEL_DEFAULTS overlaid with the user's dict; `"hidden"` stands for `"fcnet_hiddens"`."""
    user = dict(model_config_dict or {})
    for key in ("hidden", "fcnet_hiddens", "post_fcnet_hiddens"):
        if key in user:
            user[key] = _layer_sizes(key, user[key])
    if "hidden" in user:
        hidden = user["hidden"]
        if "fcnet_hiddens" in user and user["fcnet_hiddens"] != hidden:
            raise ValueError(
                f"model config sets both 'hidden' {hidden} and 'fcnet_hiddens' "
                f"{user['fcnet_hiddens']}: give one of them"
            )
        user["fcnet_hiddens"] = hidden
    limits.check_total_layers({k: user[k] for k in ("fcnet_hiddens", "post_fcnet_hiddens") if k in user})
    return {**MODEL_DEFAULTS, **user}


def get_base_struct_from_space(space: gym.Space):
    """The nested struct (tuples, dicts) of a space's leaf spaces."""
    if isinstance(space, Tuple):
        return tuple(get_base_struct_from_space(s) for s in space.spaces)
    if isinstance(space, Dict):
        return {k: get_base_struct_from_space(s) for k, s in space.spaces.items()}
    return space


def flatten_space(space: gym.Space) -> list[gym.Space]:
    """The leaf spaces of a (nested) space in `tree.flatten` order."""
    return tree.flatten(get_base_struct_from_space(space))


class Catalog:
    """Describes the sub-models (encoder, heads) and action distribution of an RLModule."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        model_config_dict: Optional[dict],
        view_requirements: Optional[dict] = None,
    ):
        self.observation_space = observation_space
        self.action_space = action_space
        self._model_config_dict = _merged_model_config(model_config_dict)
        self._view_requirements = view_requirements
        self._latent_dims = None
        self._determine_components_hook()

    def _determine_components_hook(self):
        """Decides the encoder config, the action-distribution lookup and the latent dims."""
        self._encoder_config = self._get_encoder_config(
            observation_space=self.observation_space,
            action_space=self.action_space,
            model_config_dict=self._model_config_dict,
            view_requirements=self._view_requirements,
        )
        self._action_dist_class_fn = functools.partial(
            self._get_dist_cls_from_action_space, action_space=self.action_space
        )
        self.latent_dims = self._encoder_config.output_dims

    @property
    def latent_dims(self):
        """The dims of the encoder's output, which the heads take as input."""
        return self._latent_dims

    @latent_dims.setter
    def latent_dims(self, value):
        self._latent_dims = value

    def build_encoder(self, framework: str):
        """Builds the encoder from `self._encoder_config`."""
        return self._encoder_config.build(framework=framework)

    def get_action_dist_cls(self, framework: str) -> type[Distribution]:
        """The action distribution class for this catalog's action space."""
        return self._action_dist_class_fn(framework=framework)

    @classmethod
    def _get_encoder_config(
        cls,
        observation_space: gym.Space,
        model_config_dict: dict,
        action_space: Optional[gym.Space] = None,
        view_requirements=None,
    ) -> MLPEncoderConfig:
        """An MLP encoder config for a 1-D Box observation space."""
        config = _merged_model_config(model_config_dict)
        if config["use_lstm"] or config["use_attention"]:
            raise ValueError(
                "model config asks for use_lstm/use_attention: recurrent and attention "
                "encoders are not supported by rlmodule's Catalog"
            )
        if not (isinstance(observation_space, Box) and len(observation_space.shape) == 1):
            raise ValueError(
                f"no default encoder for observation space {observation_space!r}: "
                "only 1-D Box observation spaces are supported (flatten the observation)"
            )
        hiddens = [int(h) for h in config["fcnet_hiddens"]]
        latent_dim = config["encoder_latent_dim"]
        if not hiddens and not latent_dim:
            raise ValueError(
                "model config 'fcnet_hiddens' (or 'hidden') must list at least one size"
            )
        return MLPEncoderConfig(
            input_dims=list(observation_space.shape),
            hidden_layer_dims=hiddens if latent_dim else hiddens[:-1],
            hidden_layer_activation=config["fcnet_activation"],
            hidden_layer_weights_initializer=config["fcnet_weights_initializer"],
            hidden_layer_weights_initializer_config=config["fcnet_weights_initializer_config"],
            hidden_layer_bias_initializer=config["fcnet_bias_initializer"],
            hidden_layer_bias_initializer_config=config["fcnet_bias_initializer_config"],
            output_layer_dim=int(latent_dim or hiddens[-1]),
            output_layer_activation=config["fcnet_activation"],
            output_layer_weights_initializer=config["post_fcnet_weights_initializer"],
            output_layer_weights_initializer_config=config["post_fcnet_weights_initializer_config"],
            output_layer_bias_initializer=config["post_fcnet_bias_initializer"],
            output_layer_bias_initializer_config=config["post_fcnet_bias_initializer_config"],
        )

    @classmethod
    def get_tokenizer_config(cls, observation_space, model_config_dict, view_requirements=None):
        """The encoder config for `observation_space` with recurrence switched off."""
        return cls._get_encoder_config(
            observation_space=observation_space,
            model_config_dict={**model_config_dict, "use_lstm": False, "use_attention": False},
            view_requirements=view_requirements,
        )

    @classmethod
    def _get_dist_cls_from_action_space(
        cls, action_space: gym.Space, *, framework: Optional[str] = None
    ) -> type[Distribution]:
        """Box → DiagGaussian, Discrete → Categorical, MultiDiscrete → MultiCategorical,
        Tuple/Dict → MultiDistribution (partial classes bound to the space)."""
        if framework not in FRAMEWORKS:
            raise ValueError(
                f"unknown framework {framework!r}: only 'torch' is supported for RLModule Catalogs"
            )
        if isinstance(action_space, Box):
            if action_space.dtype.char in np.typecodes["AllInteger"]:
                raise ValueError(
                    f"Box(..., {action_space.dtype}) action spaces are not supported: "
                    "use MultiDiscrete or a float Box"
                )
            if len(action_space.shape) > 1:
                raise ValueError(
                    f"action space has multiple dimensions {action_space.shape}: reshape it "
                    "into one dimension, or use a Tuple action space"
                )
            return TorchDiagGaussian
        if isinstance(action_space, Discrete):
            return TorchCategorical
        if isinstance(action_space, MultiDiscrete):
            return TorchMultiCategorical.get_partial_dist_cls(
                space=action_space, input_lens=[int(n) for n in np.ravel(action_space.nvec)]
            )
        if isinstance(action_space, (Tuple, Dict)):
            return cls._multi_action_dist_partial(action_space, framework)
        raise NotImplementedError(f"unsupported action space: {action_space!r}")

    @classmethod
    def _multi_action_dist_partial(cls, action_space: gym.Space, framework: str):
        struct = tree.map_structure(
            lambda s: cls._get_dist_cls_from_action_space(s, framework=framework),
            get_base_struct_from_space(action_space),
        )
        lens = [
            int(dist_cls.required_input_dim(space))
            for dist_cls, space in zip(tree.flatten(struct), flatten_space(action_space))
        ]
        return TorchMultiDistribution.get_partial_dist_cls(
            space=action_space, child_distribution_cls_struct=struct, input_lens=lens
        )


__all__ = ["Catalog", "MODEL_DEFAULTS", "flatten_space", "get_base_struct_from_space"]
