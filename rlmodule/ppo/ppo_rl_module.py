"""PPORLModule: the framework-agnostic part of PPO's RLModule (what it builds, its specs)."""

from __future__ import annotations

import abc
from typing import Any, Type

from rlmodule.columns import Columns
from rlmodule.distributions import Distribution
from rlmodule.rl_module import RLModule


class PPORLModule(RLModule, abc.ABC):
    """Builds `encoder`, `pi` and (unless inference-only under torch) `vf` from the catalog."""

    def setup(self):
        """Builds the models; an inference-only torch module gets no value function."""
        catalog = self._ppo_catalog()
        if self.config.inference_only and self.framework == "torch":
            # No critic encoder when actor and critic do not share one.
            catalog.actor_critic_encoder_config.inference_only = True
        self.encoder = catalog.build_actor_critic_encoder(framework=self.framework)
        self.pi = catalog.build_pi_head(framework=self.framework)
        if not self.config.inference_only or self.framework != "torch":
            self.vf = catalog.build_vf_head(framework=self.framework)
        self.action_dist_cls = catalog.get_action_dist_cls(framework=self.framework)

    def _ppo_catalog(self):
        from rlmodule.ppo.ppo_catalog import PPOCatalog  # RLlib's default for PPO modules

        catalog_class = self.config.catalog_class or PPOCatalog
        if not (isinstance(catalog_class, type) and issubclass(catalog_class, PPOCatalog)):
            raise TypeError(
                f"{type(self).__name__} needs catalog_class=PPOCatalog or a subclass of it, "
                f"got {catalog_class!r}"
            )
        return catalog_class(
            observation_space=self.config.observation_space,
            action_space=self.config.action_space,
            model_config_dict=self.config.model_config_dict,
        )

    def get_train_action_dist_cls(self) -> Type[Distribution]:
        """The catalog's action distribution class."""
        return self.action_dist_cls

    def get_exploration_action_dist_cls(self) -> Type[Distribution]:
        """The catalog's action distribution class."""
        return self.action_dist_cls

    def get_inference_action_dist_cls(self) -> Type[Distribution]:
        """The catalog's action distribution class."""
        return self.action_dist_cls

    def get_initial_state(self) -> dict:
        """The encoder's initial state ({} for the MLP encoder)."""
        if hasattr(self.encoder, "get_initial_state"):
            return self.encoder.get_initial_state()
        return {}

    def input_specs_inference(self):
        """`[obs]`."""
        return [Columns.OBS]

    def output_specs_inference(self):
        """`[action_dist_inputs]`."""
        return [Columns.ACTION_DIST_INPUTS]

    def input_specs_exploration(self):
        """`[obs]`."""
        return self.input_specs_inference()

    def output_specs_exploration(self):
        """`[action_dist_inputs]` (vf_preds too, unless inference-only, but not required)."""
        return self.output_specs_inference()

    def input_specs_train(self):
        """`[obs]`."""
        return self.input_specs_exploration()

    def output_specs_train(self):
        """`[vf_preds, action_dist_inputs]`."""
        return [Columns.VF_PREDS, Columns.ACTION_DIST_INPUTS]

    @abc.abstractmethod
    def compute_values(self, batch: dict) -> Any:
        """Value estimates for `batch` (squeezed on the single value output)."""
