"""MultiRLModule, MultiRLModuleSpec, MultiRLModuleConfig, and the spec dict helpers.

As RLlib 2.35: state is `{module_id: sub-state}`, checkpoints hold one sub-folder per module id.
Beyond it: `MultiRLModuleSpec.build()` honours `load_state_path` (each module id in
`modules_to_load`, default all, is restored from `load_state_path/<module_id>`; a module spec's
own `load_state_path` wins), `to_dict` keeps `load_state_path`/`modules_to_load` when set, and
`from_dict` also reads RLlib 2.38's `rl_module_specs` key. `spec_to_dict`/`spec_from_dict`
serialize either kind of spec (a multi spec's dict has `multi_rl_module_class`).
"""

from __future__ import annotations

import dataclasses
import pprint
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Dict, List, Optional, Set, Tuple, Type, Union

from rlmodule.annotations import ExperimentalAPI, OverrideToImplementCustomLogic, PublicAPI, override
from rlmodule.checker import SpecType
from rlmodule.checkpoints import Checkpointable, as_location
from rlmodule.columns import validate_module_id
from rlmodule.deprecation import Deprecated
from rlmodule.rl_module import RLModule, RLModuleSpec, StateDict
from rlmodule.serialization import deserialize_type, serialize_type, value_key

ModuleID = str


def _specs_from_dict(d: dict, trusted_modules) -> Dict[ModuleID, RLModuleSpec]:
    return {mid: RLModuleSpec.from_dict(s, trusted_modules=trusted_modules)
            for mid, s in d.items()}


@ExperimentalAPI
@dataclass
class MultiRLModuleConfig:
    """The constructor argument of a MultiRLModule: its flag and one spec per module id."""

    inference_only: bool = False
    modules: Dict[ModuleID, RLModuleSpec] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON of the config (each module spec via `RLModuleSpec.to_dict`)."""
        return {"inference_only": self.inference_only,
                "modules": {mid: spec.to_dict() for mid, spec in self.modules.items()}}

    @classmethod
    def from_dict(cls, d: dict, trusted_modules=None) -> "MultiRLModuleConfig":
        """The config from `to_dict`'s dict (classes through the trusted-class rule)."""
        return cls(inference_only=d["inference_only"],
                   modules=_specs_from_dict(d["modules"], trusted_modules))

    def get_catalog(self) -> None:
        """A MultiRLModule has no catalog."""
        return None


@PublicAPI(stability="alpha")
class MultiRLModule(RLModule):
    """An RLModule holding sub-modules by module id; forward passes run per module id."""

    def __init__(self, config: Optional[MultiRLModuleConfig] = None, *,
                 rl_module_specs: Optional[Dict[ModuleID, RLModuleSpec]] = None,
                 inference_only: Optional[bool] = None) -> None:
        if config is None:
            specs = dict(rl_module_specs or {})
            config = MultiRLModuleConfig(
                inference_only=(all(s.inference_only for s in specs.values()) if specs else False)
                if inference_only is None else inference_only,
                modules=specs)
        elif rl_module_specs is not None or inference_only is not None:
            raise ValueError("pass either `config` or `rl_module_specs=`, not both")
        super().__init__(config)

    @classmethod
    @override(RLModule)
    def _override_ctor_args(cls, args: list, ctor_kwargs: dict, overrides: dict):
        """`from_checkpoint(path, inference_only=True)` makes the multi module and every sub-module
        inference-only (RLlib 2.38: None/True on a MultiRLModule applies to all sub-modules)."""
        if args and isinstance(args[0], MultiRLModuleConfig) and "inference_only" in overrides:
            flag = bool(overrides.pop("inference_only"))
            modules = {mid: dataclasses.replace(spec, inference_only=flag)
                       for mid, spec in args[0].modules.items()}
            args[0] = MultiRLModuleConfig(inference_only=flag, modules=modules)
        return super()._override_ctor_args(args, ctor_kwargs, overrides)

    @override(RLModule)
    def setup(self):
        """Builds the sub-modules of `config.modules` (all one framework or None)."""
        self._rl_modules = {}
        for module_id, spec in self.config.modules.items():
            if not isinstance(spec, RLModuleSpec):
                raise ValueError(f"Module {module_id} is not a RLModuleSpec object.")
        framework = None
        for module_id, spec in self.config.modules.items():
            self._rl_modules[module_id] = spec.build()
            if framework is None:
                framework = self._rl_modules[module_id].framework
            elif self._rl_modules[module_id].framework not in (None, framework):
                raise ValueError(
                    f"module {module_id!r} uses framework "
                    f"{self._rl_modules[module_id].framework!r}, the others {framework!r}")
        self.framework = framework

    @OverrideToImplementCustomLogic
    @override(RLModule)
    def get_initial_state(self) -> Any:
        """{module_id: initial state}."""
        return {mid: m.get_initial_state() for mid, m in self._rl_modules.items()}

    @OverrideToImplementCustomLogic
    @override(RLModule)
    def is_stateful(self) -> bool:
        """True if any sub-module is stateful."""
        initial_state = self.get_initial_state()
        assert isinstance(initial_state, dict), (
            "The initial state of an RLModule must be a dict, but is "
            f"{type(initial_state)} instead."
        )
        return bool(any(s for s in initial_state.values()))

    def items(self):
        """(module_id, module) pairs."""
        return self._rl_modules.items()

    def keys(self):
        """The module ids."""
        return self._rl_modules.keys()

    def values(self):
        """The sub-modules."""
        return self._rl_modules.values()

    def __len__(self) -> int:
        return len(self._rl_modules)

    def __contains__(self, item) -> bool:
        return item in self._rl_modules

    def __getitem__(self, module_id: ModuleID) -> RLModule:
        self._check_module_exists(module_id)
        return self._rl_modules[module_id]

    def get(self, module_id: ModuleID, default: Optional[RLModule] = None) -> Optional[RLModule]:
        """The module under `module_id`, else `default`."""
        return self._rl_modules.get(module_id, default)

    @override(RLModule)
    def as_multi_rl_module(self) -> "MultiRLModule":
        """Returns self (no double wrapping)."""
        return self

    def add_module(self, module_id: ModuleID, module: RLModule, *, override: bool = False) -> None:
        """Adds `module` under `module_id` (ValueError if present and not `override`)."""
        validate_module_id(module_id)
        if module_id in self._rl_modules and not override:
            raise ValueError(
                f"Module ID {module_id} already exists. If your intention is to "
                "override, set override=True.")
        if not module.config.inference_only:
            self.config.inference_only = False
        self._rl_modules[module_id] = module
        self.config.modules[module_id] = RLModuleSpec.from_module(module)

    def remove_module(self, module_id: ModuleID, *, raise_err_if_not_found: bool = True) -> None:
        """Removes the module under `module_id` (KeyError if absent and asked to raise)."""
        if raise_err_if_not_found:
            self._check_module_exists(module_id)
        self._rl_modules.pop(module_id, None)
        self.config.modules.pop(module_id, None)

    def foreach_module(self, func: Callable, *, return_dict: bool = False, **kwargs):
        """`func(module_id, module, **kwargs)` for each module, as a list (or dict)."""
        ret = {mid: func(mid, m.unwrapped(), **kwargs) for mid, m in self._rl_modules.items()}
        return ret if return_dict else list(ret.values())

    @override(RLModule)
    def output_specs_train(self) -> SpecType:
        """No output specs: the sub-modules check their own."""
        return []

    @override(RLModule)
    def output_specs_inference(self) -> SpecType:
        """No output specs: the sub-modules check their own."""
        return []

    @override(RLModule)
    def output_specs_exploration(self) -> SpecType:
        """No output specs: the sub-modules check their own."""
        return []

    @override(RLModule)
    def _default_input_specs(self) -> SpecType:
        """No input specs: the sub-modules check their own."""
        return []

    @override(RLModule)
    def _forward_train(self, batch, **kwargs):
        return self._run_forward_pass("forward_train", batch, **kwargs)

    @override(RLModule)
    def _forward_inference(self, batch, **kwargs):
        return self._run_forward_pass("forward_inference", batch, **kwargs)

    @override(RLModule)
    def _forward_exploration(self, batch, **kwargs):
        return self._run_forward_pass("forward_exploration", batch, **kwargs)

    def _run_forward_pass(self, name: str, batch: Dict[ModuleID, Any], **kwargs):
        outputs = {}
        for module_id in batch.keys():
            self._check_module_exists(module_id)
            outputs[module_id] = getattr(self._rl_modules[module_id], name)(
                batch[module_id], **kwargs)
        return outputs

    @override(RLModule)
    def get_state(self, components: Optional[Union[str, Collection[str]]] = None, *,
                  not_components: Optional[Union[str, Collection[str]]] = None,
                  inference_only: bool = False, **kwargs) -> StateDict:
        """{module_id: state} for the selected module ids ("mid" or "mid/sub" paths)."""
        state = {}
        for module_id, module in self.get_checkpointable_components():
            if self._check_component(module_id, components, not_components):
                state[module_id] = module.get_state(
                    components=self._get_subcomponents(module_id, components),
                    not_components=self._get_subcomponents(module_id, not_components),
                    inference_only=inference_only, **kwargs)
        return state

    @override(RLModule)
    def set_state(self, state: StateDict) -> None:
        """Sets each listed module's state; unknown module ids are ignored."""
        for module_id, module_state in state.items():
            if module_id in self:
                self._rl_modules[module_id].set_state(module_state)

    @override(Checkpointable)
    def get_checkpointable_components(self) -> List[Tuple[str, Checkpointable]]:
        """One component per module id."""
        return list(self._rl_modules.items())

    def __repr__(self) -> str:
        return f"MARL({pprint.pformat(self._rl_modules)})"

    def _check_module_exists(self, module_id: ModuleID) -> None:
        if module_id not in self._rl_modules:
            raise KeyError(
                f"Module with module_id {module_id} not found. "
                f"Available modules: {set(self.keys())}")


@PublicAPI(stability="alpha")
@dataclass
class MultiRLModuleSpec:
    """Builds a MultiRLModule from one RLModuleSpec per module id."""

    multi_rl_module_class: Type[MultiRLModule] = MultiRLModule
    inference_only: bool = False
    module_specs: Union[RLModuleSpec, Dict[ModuleID, RLModuleSpec]] = None
    load_state_path: Optional[str] = None
    modules_to_load: Optional[Set[ModuleID]] = None

    def __post_init__(self):
        if self.module_specs is None:
            raise ValueError(
                "Module_specs cannot be None. It should be either a "
                "RLModuleSpec or a dictionary mapping from module IDs to "
                "RLModuleSpecs for each individual module.")

    def get_multi_rl_module_config(self) -> MultiRLModuleConfig:
        """The MultiRLModuleConfig (inference-only only if every module spec is)."""
        return MultiRLModuleConfig(
            inference_only=all(s.inference_only for s in self.module_specs.values()),
            modules=self.module_specs)

    @OverrideToImplementCustomLogic
    def build(self, module_id: Optional[ModuleID] = None) -> RLModule:
        """The MultiRLModule (or only `module_id`'s module), with state from load_state_path."""
        self._check_before_build()
        if module_id:
            module = self.module_specs[module_id].build()
            if self.load_state_path and not self.module_specs[module_id].load_state_path \
                    and module_id in self._ids_to_load():
                module.restore_from_path(as_location(self.load_state_path).child(module_id))
            return module
        module = self.multi_rl_module_class(self.get_multi_rl_module_config())
        if self.load_state_path:
            base = as_location(self.load_state_path)
            for mid in self._ids_to_load():
                if not self.module_specs[mid].load_state_path:
                    module[mid].restore_from_path(base.child(mid))
        return module

    def _ids_to_load(self) -> list[ModuleID]:
        if self.modules_to_load is None:
            return list(self.module_specs)
        unknown = sorted(set(self.modules_to_load) - set(self.module_specs))
        if unknown:
            raise ValueError(
                f"modules_to_load names unknown module ids {unknown}; the spec has "
                f"{sorted(self.module_specs)}")
        return [mid for mid in self.module_specs if mid in self.modules_to_load]

    def add_modules(self, module_specs: Dict[ModuleID, RLModuleSpec], override: bool = True) -> None:
        """Adds module specs (or, without `override`, updates existing ones)."""
        if self.module_specs is None:
            self.module_specs = {}
        for module_id, spec in module_specs.items():
            if override or module_id not in self.module_specs:
                if not spec.inference_only:
                    self.inference_only = False
                self.module_specs[module_id] = spec
            else:
                self.module_specs[module_id].update(spec)

    def remove_modules(self, module_ids: Union[ModuleID, Collection[ModuleID]]) -> None:
        """Removes the given module ids (absent ones are ignored)."""
        for module_id in [module_ids] if isinstance(module_ids, str) else module_ids:
            self.module_specs.pop(module_id, None)

    @classmethod
    def from_module(cls, module: MultiRLModule) -> "MultiRLModuleSpec":
        """The spec of an existing MultiRLModule."""
        return MultiRLModuleSpec(
            multi_rl_module_class=type(module),
            inference_only=module.config.inference_only,
            module_specs={mid: RLModuleSpec.from_module(m.unwrapped())
                          for mid, m in module._rl_modules.items()})

    def _check_before_build(self) -> None:
        if not isinstance(self.module_specs, dict):
            raise ValueError(
                f"When build() is called on {self.__class__}, the module_specs "
                "should be a dictionary mapping from module IDs to "
                "RLModuleSpecs for each individual module.")

    def to_dict(self) -> dict:
        """JSON of the spec (RLlib's keys, plus load_state_path/modules_to_load when set)."""
        d = {
            "multi_rl_module_class": serialize_type(self.multi_rl_module_class),
            "inference_only": self.inference_only,
            "module_specs": {mid: s.to_dict() for mid, s in self.module_specs.items()},
        }
        if self.load_state_path is not None:
            d["load_state_path"] = self.load_state_path
        if self.modules_to_load is not None:
            d["modules_to_load"] = sorted(self.modules_to_load)
        return d

    @classmethod
    def from_dict(cls, d: dict, trusted_modules=None) -> "MultiRLModuleSpec":
        """The spec from `to_dict`'s dict (or RLlib 2.38's `rl_module_specs` key)."""
        specs = d["module_specs"] if "module_specs" in d else d["rl_module_specs"]
        to_load = d.get("modules_to_load")
        return cls(
            multi_rl_module_class=deserialize_type(
                d["multi_rl_module_class"], base=MultiRLModule, trusted_modules=trusted_modules),
            inference_only=bool(d.get("inference_only", False)),
            module_specs=_specs_from_dict(specs, trusted_modules),
            load_state_path=d.get("load_state_path"),
            modules_to_load=set(to_load) if to_load is not None else None)

    def update(self, other: Union["MultiRLModuleSpec", RLModuleSpec], override: bool = False) -> None:
        """Updates the module specs from `other` (see RLlib's MultiRLModuleSpec.update)."""
        if isinstance(other, RLModuleSpec):
            if not other.inference_only:
                self.inference_only = False
            for mid in self.module_specs:
                self.module_specs[mid].update(other, override=False)
        elif isinstance(other.module_specs, dict):
            self.add_modules(other.module_specs, override=override)
        else:
            if not self.module_specs:
                self.inference_only = other.inference_only
                self.module_specs = other.module_specs
            else:
                if not other.inference_only:
                    self.inference_only = False
                self.module_specs.update(other.module_specs)

    def as_multi_rl_module_spec(self) -> "MultiRLModuleSpec":
        """Returns self."""
        return self

    def __contains__(self, item) -> bool:
        return item in self.module_specs

    def __getitem__(self, item) -> RLModuleSpec:
        return self.module_specs[item]

    @Deprecated(new="MultiRLModuleSpec.as_multi_rl_module_spec()", error=True)
    def as_multi_agent(self):
        """Deprecated: raises ValueError."""

    @Deprecated(new="MultiRLModuleSpec.get_multi_rl_module_config", error=True)
    def get_marl_config(self, *args, **kwargs):
        """Deprecated: raises ValueError."""


def spec_to_dict(module_or_spec) -> dict:
    """JSON of an RLModuleSpec or MultiRLModuleSpec, or of the spec of a built module."""
    if isinstance(module_or_spec, MultiRLModule):
        module_or_spec = MultiRLModuleSpec.from_module(module_or_spec)
    elif isinstance(module_or_spec, RLModule):
        module_or_spec = RLModuleSpec.from_module(module_or_spec)
    if not isinstance(module_or_spec, (RLModuleSpec, MultiRLModuleSpec)):
        raise TypeError(
            f"spec_to_dict expects an RLModule or a spec, got {type(module_or_spec).__name__}")
    return module_or_spec.to_dict()


def spec_key(module: RLModule) -> Any:
    """A hashable key of what `spec_to_dict(module)` writes (`serialization.value_key` of each
    input: the classes, spaces, flags and model config), or None when one cannot be keyed.

    Modules with equal keys have the same `spec_to_dict`; a space or config changed in place
    changes the key. A registry keeps the spec of each key, so a snapshot of a module whose spec
    has not changed does not serialize it again.
    """
    if isinstance(module, MultiRLModule):
        parts = [type(module), value_key(module.config.inference_only)]
        for mid, sub in module._rl_modules.items():
            parts += (value_key(mid), spec_key(sub.unwrapped()))
    elif isinstance(module, RLModule):
        c = module.config
        parts = [type(module), *map(value_key, (c.observation_space, c.action_space, c.inference_only,
                                                c.learner_only, c.model_config_dict, c.catalog_class))]
    else:
        return None
    return None if None in parts else tuple(parts)


def spec_from_dict(d: dict, trusted_modules=None) -> Union[RLModuleSpec, MultiRLModuleSpec]:
    """The spec that `spec_to_dict` wrote (a dict with `multi_rl_module_class` is a multi spec)."""
    if not isinstance(d, dict):
        raise TypeError(f"spec_from_dict expects a dict, got {type(d).__name__}")
    if "multi_rl_module_class" in d:
        return MultiRLModuleSpec.from_dict(d, trusted_modules=trusted_modules)
    return RLModuleSpec.from_dict(d, trusted_modules=trusted_modules)
