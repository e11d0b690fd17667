"""RLModuleSpec, RLModuleConfig and RLModule: RLlib 2.35's API, without ray and without pickle.

Beyond the reference (additive): `RLModule(observation_space=..., action_space=...,
model_config=...)` (RLlib 2.38's keyword constructor, kept on `self.config` too);
`model_config` as an alias of `model_config_dict` on specs, configs and modules;
`RLModuleSpec.from_dict` reads the reference's `{"module_class", "module_config"}` format and the
later flat one; `RLModuleSpec.to_dict` adds `"load_state_path"` when set so the round trip is
exact; `build()` restores state from `load_state_path`. `model_config_dict` must be JSON when
serialized (tuples become lists; callables raise `ModelConfigError` naming the key); classes in
dicts resolve only through the trusted-class rule (`rlmodule.trust`).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Collection
from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional, Type, Union

import gymnasium as gym
import numpy as np
import tree

from rlmodule.annotations import (
    ExperimentalAPI, OverrideToImplementCustomLogic,
    OverrideToImplementCustomLogic_CallToSuperRecommended, PublicAPI, override,
)
from rlmodule.checker import (
    SpecType, check_input_specs, check_output_specs, convert_to_canonical_format,
)
from rlmodule.checkpoints import Checkpointable
from rlmodule.columns import DEFAULT_MODULE_ID, Columns
from rlmodule.deprecation import Deprecated
from rlmodule.errors import ModelConfigError
from rlmodule.sample_batch import SampleBatch
from rlmodule.serialization import (
    deserialize_type, gym_space_from_dict, gym_space_to_dict, serialize_type,
)
from rlmodule.view_requirement import ViewRequirement, get_gym_space_from_struct_of_tensors

if TYPE_CHECKING:
    from rlmodule.catalog import Catalog
    from rlmodule.distributions import Distribution
    from rlmodule.multi_rl_module import MultiRLModule, MultiRLModuleSpec

StateDict = Dict[str, Any]
_CONFIG_KEYWORDS = ("observation_space", "action_space", "inference_only", "learner_only",
                    "model_config", "model_config_dict", "catalog_class")


def _catalog_base() -> type:
    from rlmodule.catalog import Catalog  # imported on use: rlmodule/__init__ loads it after us

    return Catalog


def json_model_config(config: Optional[dict], name: str = "model_config_dict") -> dict:
    """A JSON copy of a model config (tuples as lists); non-JSON values raise naming the key."""
    def convert(value, where):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)):
            return [convert(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ModelConfigError(f"{where}: key {k!r} is not a string")
                out[k] = convert(v, f"{where}[{k!r}]")
            return out
        what = "a callable" if callable(value) else f"a {type(value).__name__}"
        raise ModelConfigError(
            f"{where} is {what}; model configs must be JSON (numbers, strings, lists, dicts) "
            "to be saved")

    return convert(config or {}, name)


def _merge_alias(owner, value) -> None:
    if value is None:
        return
    if owner.model_config_dict not in (None, {}) and owner.model_config_dict != value:
        raise ValueError(
            "pass either `model_config` or `model_config_dict` (its alias), not both")
    owner.model_config_dict = value


def _alias_property():
    return property(lambda self: self.model_config_dict,
                    lambda self, value: setattr(self, "model_config_dict", value),
                    doc="Alias of `model_config_dict` (RLlib 2.38's name).")


@PublicAPI(stability="alpha")
@dataclass
class RLModuleSpec:
    """Everything needed to build one RLModule: class, spaces, flags, model config, catalog."""

    module_class: Optional[Type["RLModule"]] = None
    observation_space: Optional[gym.Space] = None
    action_space: Optional[gym.Space] = None
    inference_only: bool = False
    learner_only: bool = False
    model_config_dict: Optional[Dict[str, Any]] = None
    catalog_class: Optional[Type["Catalog"]] = None
    load_state_path: Optional[str] = None
    _: KW_ONLY
    model_config: InitVar[Optional[Dict[str, Any]]] = None

    def __post_init__(self, model_config) -> None:
        _merge_alias(self, model_config)

    def get_rl_module_config(self) -> "RLModuleConfig":
        """Returns the RLModule config for this spec."""
        return RLModuleConfig(
            observation_space=self.observation_space,
            action_space=self.action_space,
            inference_only=self.inference_only,
            learner_only=self.learner_only,
            model_config_dict=self.model_config_dict or {},
            catalog_class=self.catalog_class,
        )

    def build(self) -> "RLModule":
        """Builds the RLModule, then restores its state from `load_state_path` if set."""
        if self.module_class is None:
            raise ValueError("RLModule class is not set.")
        if self.observation_space is None:
            raise ValueError("Observation space is not set.")
        if self.action_space is None:
            raise ValueError("Action space is not set.")
        module = self.module_class(self.get_rl_module_config())
        if self.load_state_path:
            module.restore_from_path(self.load_state_path)
        return module

    @classmethod
    def from_module(cls, module: "RLModule") -> "RLModuleSpec":
        """The spec of an existing (single) module."""
        from rlmodule.multi_rl_module import MultiRLModule

        if isinstance(module, MultiRLModule):
            raise ValueError("MultiRLModule cannot be converted to RLModuleSpec.")
        return RLModuleSpec(
            module_class=type(module),
            observation_space=module.config.observation_space,
            action_space=module.config.action_space,
            inference_only=module.config.inference_only,
            learner_only=module.config.learner_only,
            model_config_dict=module.config.model_config_dict,
            catalog_class=module.config.catalog_class,
        )

    def to_dict(self) -> dict:
        """JSON of the spec in the reference's format (plus load_state_path when set)."""
        d = {
            "module_class": serialize_type(self.module_class) if self.module_class else None,
            "module_config": self.get_rl_module_config().to_dict(),
        }
        if self.model_config_dict is None:
            d["module_config"]["model_config_dict"] = None
        if self.load_state_path is not None:
            d["load_state_path"] = self.load_state_path
        return d

    @classmethod
    def from_dict(cls, d: dict, trusted_modules=None) -> "RLModuleSpec":
        """The spec from `to_dict`'s format or RLlib 2.38's flat format."""
        module_class = (deserialize_type(d["module_class"], base=RLModule,
                                         trusted_modules=trusted_modules)
                        if d.get("module_class") else None)
        if "module_config" in d:
            c = RLModuleConfig.from_dict(d["module_config"], trusted_modules=trusted_modules)
            model_config = d["module_config"].get("model_config_dict", c.model_config_dict)
        else:
            c = RLModuleConfig.from_dict(
                {**d, "catalog_class_path": d.get("catalog_class") or ""},
                trusted_modules=trusted_modules)
            model_config = d.get("model_config", d.get("model_config_dict"))
        return cls(
            module_class=module_class,
            observation_space=c.observation_space,
            action_space=c.action_space,
            inference_only=c.inference_only,
            learner_only=c.learner_only,
            model_config_dict=model_config,
            catalog_class=c.catalog_class,
            load_state_path=d.get("load_state_path"),
        )

    def update(self, other: "RLModuleSpec", override: bool = True) -> None:
        """Updates this spec from `other` like dict.update (only None fields if not override)."""
        if not isinstance(other, RLModuleSpec):
            raise ValueError("Can only update with another RLModuleSpec.")
        if override:
            self.module_class = other.module_class or self.module_class
            self.observation_space = other.observation_space or self.observation_space
            self.action_space = other.action_space or self.action_space
            self.inference_only = other.inference_only or self.inference_only
            self.learner_only = other.learner_only and self.learner_only
            self.model_config_dict = other.model_config_dict or self.model_config_dict
            self.catalog_class = other.catalog_class or self.catalog_class
            self.load_state_path = other.load_state_path or self.load_state_path
        else:
            self.module_class = self.module_class or other.module_class
            self.observation_space = self.observation_space or other.observation_space
            self.action_space = self.action_space or other.action_space
            self.model_config_dict = self.model_config_dict or other.model_config_dict
            self.catalog_class = self.catalog_class or other.catalog_class
            self.load_state_path = self.load_state_path or other.load_state_path

    def as_multi_rl_module_spec(self) -> "MultiRLModuleSpec":
        """A MultiRLModuleSpec holding this spec under DEFAULT_MODULE_ID."""
        from rlmodule.multi_rl_module import MultiRLModuleSpec

        return MultiRLModuleSpec(module_specs={DEFAULT_MODULE_ID: self},
                                 load_state_path=self.load_state_path)

    @Deprecated(new="RLModuleSpec.as_multi_rl_module_spec()", error=True)
    def as_multi_agent(self, *args, **kwargs):
        """Deprecated: raises ValueError."""


RLModuleSpec.model_config = _alias_property()


@ExperimentalAPI
@dataclass
class RLModuleConfig:
    """The constructor argument of an RLModule: spaces, flags, model config and catalog class."""

    observation_space: gym.Space = None
    action_space: gym.Space = None
    inference_only: bool = False
    learner_only: bool = False
    model_config_dict: Dict[str, Any] = field(default_factory=dict)
    catalog_class: Type["Catalog"] = None
    _: KW_ONLY
    model_config: InitVar[Optional[Dict[str, Any]]] = None

    def __post_init__(self, model_config) -> None:
        _merge_alias(self, model_config)

    def get_catalog(self) -> "Catalog":
        """Returns the catalog for this config."""
        return self.catalog_class(
            observation_space=self.observation_space,
            action_space=self.action_space,
            model_config_dict=self.model_config_dict,
        )

    def to_dict(self) -> dict:
        """A JSON-able dict (`json.dumps` works); raises ModelConfigError for non-JSON configs."""
        return {
            "observation_space": gym_space_to_dict(self.observation_space),
            "action_space": gym_space_to_dict(self.action_space),
            "inference_only": self.inference_only,
            "learner_only": self.learner_only,
            "model_config_dict": json_model_config(self.model_config_dict),
            "catalog_class_path": serialize_type(self.catalog_class) if self.catalog_class else "",
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any], trusted_modules=None) -> "RLModuleConfig":
        """The config from `to_dict`'s dict; the catalog class passes the trusted-class rule."""
        path = d.get("catalog_class_path") or ""
        catalog_class = (deserialize_type(path, base=_catalog_base(),
                                          trusted_modules=trusted_modules) if path else None)
        return cls(
            observation_space=gym_space_from_dict(d.get("observation_space")),
            action_space=gym_space_from_dict(d.get("action_space")),
            inference_only=bool(d.get("inference_only", False)),
            learner_only=bool(d.get("learner_only", False)),
            model_config_dict=d.get("model_config_dict", d.get("model_config")) or {},
            catalog_class=catalog_class,
        )


RLModuleConfig.model_config = _alias_property()


def _to_numpy(struct):
    def conv(x):
        if hasattr(x, "detach"):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    return tree.map_structure(conv, struct)


def _config_property(name: str) -> property:
    """An attribute of the module that reads and writes `self.config.<name>` (RLlib 2.38)."""
    return property(lambda self: getattr(self.config, name, None),
                    lambda self, value: setattr(self.config, name, value),
                    doc=f"`self.config.{name}` (RLlib 2.38's module attribute).")


@PublicAPI(stability="alpha")
class RLModule(Checkpointable, abc.ABC):
    """Base class of RL modules: forward passes for inference, exploration and training.

    Subclasses call `super().__init__(config)` and implement `_forward_inference`,
    `_forward_exploration` and `_forward_train` (RLlib 2.35), or one generic `_forward` that all
    three fall back to (RLlib 2.38+); `setup()` builds their components.
    """

    framework: str = None
    STATE_FILE_NAME = "module_state"

    def __init__(self, config: Optional[RLModuleConfig] = None, *,
                 observation_space: Optional[gym.Space] = None,
                 action_space: Optional[gym.Space] = None,
                 inference_only: Optional[bool] = None, learner_only: bool = False,
                 model_config: Optional[dict] = None, catalog_class=None,
                 model_config_dict: Optional[dict] = None):
        keywords = (observation_space, action_space, inference_only, model_config,
                    catalog_class, model_config_dict)
        if config is None:
            config = RLModuleConfig(
                observation_space=observation_space, action_space=action_space,
                inference_only=bool(inference_only), learner_only=learner_only,
                model_config_dict=dict(model_config or model_config_dict or {}),
                catalog_class=catalog_class)
        elif any(k is not None for k in keywords) or learner_only:
            raise ValueError("pass either `config` or the keyword arguments "
                             "(observation_space=..., action_space=..., ...), not both")
        self.config = config
        if getattr(self, "_is_setup", False):
            raise RuntimeError(
                "`RLModule.setup()` called twice within your RLModule implementation "
                f"{self}! Make sure you are using the proper inheritance order "
                "(TorchRLModule before [Algo]RLModule) or (TfRLModule before "
                "[Algo]RLModule) and that you are using `super().__init__(...)` in "
                "your custom constructor."
            )
        self.setup()
        self._is_setup = True

    observation_space = _config_property("observation_space")
    action_space = _config_property("action_space")
    inference_only = _config_property("inference_only")
    learner_only = _config_property("learner_only")
    model_config = _config_property("model_config_dict")
    catalog_class = _config_property("catalog_class")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)

        def init_decorator(previous_init):
            @functools.wraps(previous_init)
            def new_init(self, *args, **kwargs):
                previous_init(self, *args, **kwargs)
                if type(self) is cls:
                    self.__post_init__()

            return new_init

        cls.__init__ = init_decorator(cls.__init__)

    def __post_init__(self):
        """Runs after the most-derived `__init__`: caches the canonical specs."""
        self._input_specs_train = convert_to_canonical_format(self.input_specs_train())
        self._output_specs_train = convert_to_canonical_format(self.output_specs_train())
        self._input_specs_exploration = convert_to_canonical_format(
            self.input_specs_exploration())
        self._output_specs_exploration = convert_to_canonical_format(
            self.output_specs_exploration())
        self._input_specs_inference = convert_to_canonical_format(
            self.input_specs_inference())
        self._output_specs_inference = convert_to_canonical_format(
            self.output_specs_inference())

    @OverrideToImplementCustomLogic
    def setup(self):
        """Builds the module's components; called once from `__init__`."""
        return None

    @OverrideToImplementCustomLogic
    def get_train_action_dist_cls(self) -> Type["Distribution"]:
        """The action distribution class used for training."""
        raise NotImplementedError

    @OverrideToImplementCustomLogic
    def get_exploration_action_dist_cls(self) -> Type["Distribution"]:
        """The action distribution class used for exploration."""
        raise NotImplementedError

    @OverrideToImplementCustomLogic
    def get_inference_action_dist_cls(self) -> Type["Distribution"]:
        """The action distribution class used for inference."""
        raise NotImplementedError

    @OverrideToImplementCustomLogic
    def get_initial_state(self) -> Any:
        """The initial recurrent state ({} for a stateless module)."""
        return {}

    @OverrideToImplementCustomLogic
    def is_stateful(self) -> bool:
        """True unless the initial state is an empty dict."""
        initial_state = self.get_initial_state()
        assert isinstance(initial_state, dict), (
            "The initial state of an RLModule must be a dict, but is "
            f"{type(initial_state)} instead."
        )
        return bool(initial_state)

    @OverrideToImplementCustomLogic
    def update_default_view_requirements(self, defaults: dict) -> Dict[str, ViewRequirement]:
        """Adds the state (and prev action/reward) view requirements of a stateful module."""
        if self.is_stateful():
            init_state = _to_numpy(self.get_initial_state())
            init_state = tree.map_structure(lambda x: x[None], init_state)
            space = get_gym_space_from_struct_of_tensors(init_state, batched_input=True)
            max_seq_len = self.config.model_config_dict["max_seq_len"]
            assert max_seq_len is not None
            defaults[Columns.STATE_IN] = ViewRequirement(
                data_col=Columns.STATE_OUT, shift=-1, used_for_compute_actions=True,
                used_for_training=True, batch_repeat_value=max_seq_len, space=space)
            if self.config.model_config_dict["lstm_use_prev_action"]:
                defaults[SampleBatch.PREV_ACTIONS] = ViewRequirement(
                    data_col=Columns.ACTIONS, shift=-1, used_for_compute_actions=True,
                    used_for_training=True)
            if self.config.model_config_dict["lstm_use_prev_reward"]:
                defaults[SampleBatch.PREV_REWARDS] = ViewRequirement(
                    data_col=Columns.REWARDS, shift=-1, used_for_compute_actions=True,
                    used_for_training=True)
            defaults[Columns.STATE_OUT] = ViewRequirement(
                data_col=Columns.STATE_OUT, used_for_compute_actions=False,
                used_for_training=True, space=space)
        return defaults

    @OverrideToImplementCustomLogic_CallToSuperRecommended
    def output_specs_inference(self) -> SpecType:
        """Output specs of `forward_inference()`."""
        return [Columns.ACTION_DIST_INPUTS]

    @OverrideToImplementCustomLogic_CallToSuperRecommended
    def output_specs_exploration(self) -> SpecType:
        """Output specs of `forward_exploration()`."""
        return [Columns.ACTION_DIST_INPUTS]

    def output_specs_train(self) -> SpecType:
        """Output specs of `forward_train()`."""
        return {}

    @OverrideToImplementCustomLogic_CallToSuperRecommended
    def input_specs_inference(self) -> SpecType:
        """Input specs of `forward_inference()`."""
        return self._default_input_specs()

    @OverrideToImplementCustomLogic_CallToSuperRecommended
    def input_specs_exploration(self) -> SpecType:
        """Input specs of `forward_exploration()`."""
        return self._default_input_specs()

    @OverrideToImplementCustomLogic_CallToSuperRecommended
    def input_specs_train(self) -> SpecType:
        """Input specs of `forward_train()`."""
        return self._default_input_specs()

    def _default_input_specs(self) -> SpecType:
        """Returns the default input specs."""
        return [Columns.OBS]

    @OverrideToImplementCustomLogic
    def _forward(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        """The generic forward pass the three `_forward_*` fall back to (RLlib 2.38): {} here."""
        return {}

    @check_input_specs("_input_specs_inference")
    @check_output_specs("_output_specs_inference")
    def forward_inference(self, batch: dict, **kwargs) -> Dict[str, Any]:
        """Forward pass for action computation (override `_forward_inference`)."""
        return self._forward_inference(batch, **kwargs)

    @OverrideToImplementCustomLogic
    def _forward_inference(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        """Forward-pass during evaluation; defaults to the generic `_forward` (RLlib 2.38)."""
        return self._forward(batch, **kwargs)

    @check_input_specs("_input_specs_exploration")
    @check_output_specs("_output_specs_exploration")
    def forward_exploration(self, batch: dict, **kwargs) -> Dict[str, Any]:
        """Forward pass for exploration (override `_forward_exploration`)."""
        return self._forward_exploration(batch, **kwargs)

    @OverrideToImplementCustomLogic
    def _forward_exploration(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        """Forward-pass during exploration; defaults to the generic `_forward` (RLlib 2.38)."""
        return self._forward(batch, **kwargs)

    @check_input_specs("_input_specs_train")
    @check_output_specs("_output_specs_train")
    def forward_train(self, batch: dict, **kwargs) -> Dict[str, Any]:
        """Forward pass for training (override `_forward_train`); refused if inference-only."""
        if self.config.inference_only:
            raise RuntimeError(
                "Calling `forward_train` on an inference_only module is not allowed! "
                "Set the `inference_only=False` flag in the RLModule's config when "
                "building the module."
            )
        return self._forward_train(batch, **kwargs)

    @OverrideToImplementCustomLogic
    def _forward_train(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        """Forward-pass during training; defaults to the generic `_forward` (RLlib 2.38)."""
        return self._forward(batch, **kwargs)

    @OverrideToImplementCustomLogic
    @override(Checkpointable)
    def get_state(self, components: Optional[Union[str, Collection[str]]] = None, *,
                  not_components: Optional[Union[str, Collection[str]]] = None,
                  inference_only: bool = False, **kwargs) -> StateDict:
        """The module's state ({} in the base class, which supports no components)."""
        if components is not None or not_components is not None:
            raise ValueError(
                "`component` arg and `not_component` arg not supported in "
                "`RLModule.get_state()` base implementation! Override this method in "
                "your custom RLModule subclass."
            )
        return {}

    @OverrideToImplementCustomLogic
    @override(Checkpointable)
    def set_state(self, state: StateDict) -> None:
        """Sets the module's state (nothing to set in the base class)."""

    @classmethod
    @override(Checkpointable)
    def _override_ctor_args(cls, args: list, ctor_kwargs: dict, overrides: dict):
        """A stored `(config,)` gets `from_checkpoint`'s config keywords (inference_only=True, ...)."""
        if args and isinstance(args[0], RLModuleConfig):
            hits = {k: overrides.pop(k) for k in list(overrides) if k in _CONFIG_KEYWORDS}
            if "model_config" in hits:
                hits["model_config_dict"] = hits.pop("model_config")
            args[0] = dataclasses.replace(args[0], **hits)
            return args, ctor_kwargs
        return super()._override_ctor_args(args, ctor_kwargs, overrides)

    @override(Checkpointable)
    def get_ctor_args_and_kwargs(self):
        """((config,), {}): how `from_checkpoint` rebuilds the module."""
        return (self.config,), {}

    def as_multi_rl_module(self) -> "MultiRLModule":
        """A MultiRLModule holding this module under DEFAULT_MODULE_ID."""
        from rlmodule.multi_rl_module import MultiRLModule

        multi_rl_module = MultiRLModule()
        multi_rl_module.add_module(DEFAULT_MODULE_ID, self)
        return multi_rl_module

    def unwrapped(self) -> "RLModule":
        """The underlying module of a wrapper (self here)."""
        return self

    @Deprecated(new="RLModule.as_multi_rl_module()", error=True)
    def as_multi_agent(self, *args, **kwargs):
        """Deprecated: raises ValueError."""

    @Deprecated(new="RLModule.save_to_path(...)", error=True)
    def save_state(self, *args, **kwargs):
        """Deprecated: raises ValueError."""

    @Deprecated(new="RLModule.restore_from_path(...)", error=True)
    def load_state(self, *args, **kwargs):
        """Deprecated: raises ValueError."""

    @Deprecated(new="RLModule.save_to_path(...)", error=True)
    def save_to_checkpoint(self, *args, **kwargs):
        """Deprecated: raises ValueError."""
