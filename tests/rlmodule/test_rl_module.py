"""RLModuleSpec, RLModuleConfig and RLModule behaviour against the reference."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmodule import (
    DEFAULT_MODULE_ID, Columns, ModelConfigError, MultiRLModule, MultiRLModuleSpec, RLModule,
    RLModuleConfig, RLModuleSpec, SpecCheckingError, TorchRLModule, UntrustedClassError,
    ViewRequirement,
)
from rlmodule_toys import ACT_SPACE, OBS_SPACE, CountingModule, StatefulModule, ToyTorchModule, toy_batch


def test_build_errors_of_the_reference():
    with pytest.raises(ValueError, match="^RLModule class is not set.$"):
        RLModuleSpec().build()
    with pytest.raises(ValueError, match="^Observation space is not set.$"):
        RLModuleSpec(module_class=ToyTorchModule).build()
    with pytest.raises(ValueError, match="^Action space is not set.$"):
        RLModuleSpec(module_class=ToyTorchModule, observation_space=OBS_SPACE).build()


def test_get_rl_module_config_and_build(toy_spec):
    config = toy_spec.get_rl_module_config()
    assert config == RLModuleConfig(OBS_SPACE, ACT_SPACE, False, False, {"hidden": 6}, None)
    module = toy_spec.build()
    assert isinstance(module, ToyTorchModule) and module.config == config
    assert RLModuleSpec(module_class=ToyTorchModule, observation_space=OBS_SPACE,
                        action_space=ACT_SPACE).get_rl_module_config().model_config_dict == {}


def test_from_module(toy_module, toy_spec):
    assert RLModuleSpec.from_module(toy_module) == toy_spec
    with pytest.raises(ValueError, match="MultiRLModule cannot be converted to RLModuleSpec."):
        RLModuleSpec.from_module(toy_module.as_multi_rl_module())


def test_to_dict_is_the_reference_format_and_json(toy_spec):
    d = toy_spec.to_dict()
    assert set(d) == {"module_class", "module_config"}
    assert d["module_class"] == "rlmodule_toys.ToyTorchModule"
    assert set(d["module_config"]) == {"observation_space", "action_space", "inference_only",
                                       "learner_only", "model_config_dict", "catalog_class_path"}
    assert d["module_config"]["catalog_class_path"] == ""
    assert RLModuleSpec.from_dict(json.loads(json.dumps(d))) == toy_spec


def test_from_dict_reads_the_later_flat_format(toy_spec):
    flat = {"module_class": "rlmodule_toys.ToyTorchModule",
            "observation_space": toy_spec.to_dict()["module_config"]["observation_space"],
            "action_space": {"space": "discrete", "n": 3, "start": 0},
            "inference_only": True, "learner_only": False, "model_config": {"hidden": 6},
            "catalog_class": None}
    spec = RLModuleSpec.from_dict(flat)
    assert spec.module_class is ToyTorchModule and spec.inference_only
    assert spec.model_config_dict == {"hidden": 6} and spec.observation_space == OBS_SPACE


def test_from_dict_refuses_untrusted_module_class(toy_spec):
    d = toy_spec.to_dict()
    d["module_class"] = "somewhere_else.Mod"
    with pytest.raises(UntrustedClassError, match="'somewhere_else.Mod' is not trusted"):
        RLModuleSpec.from_dict(d)
    d["module_class"] = "gymnasium.spaces.Box"
    with pytest.raises(UntrustedClassError, match="is not a subclass of rlmodule.rl_module.RLModule"):
        RLModuleSpec.from_dict(d)


model_configs = st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                 | st.text(max_size=5),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                 max_leaves=5),
    max_size=4)
small_spaces = st.sampled_from([OBS_SPACE, ACT_SPACE, gym.spaces.Box(-1, 1, (2, 2)),
                                gym.spaces.MultiDiscrete([2, 3]), None])


@settings(max_examples=40, deadline=None)
@given(obs=small_spaces, act=small_spaces, inference_only=st.booleans(), learner_only=st.booleans(),
       config=st.none() | model_configs, cls=st.sampled_from([None, ToyTorchModule, CountingModule]),
       path=st.none() | st.text(min_size=1, max_size=10))
def test_spec_dict_round_trip_is_exact(obs, act, inference_only, learner_only, config, cls, path):
    spec = RLModuleSpec(module_class=cls, observation_space=obs, action_space=act,
                        inference_only=inference_only, learner_only=learner_only,
                        model_config_dict=config, load_state_path=path)
    text = json.dumps(spec.to_dict(), sort_keys=True)
    again = RLModuleSpec.from_dict(json.loads(text))
    assert again == spec
    assert json.dumps(again.to_dict(), sort_keys=True) == text


def test_config_to_dict_is_json_and_round_trips():
    config = RLModuleConfig(OBS_SPACE, ACT_SPACE, True, False, {"a": [1, 2]}, None)
    d = json.loads(json.dumps(config.to_dict()))
    assert RLModuleConfig.from_dict(d) == config


def test_model_config_with_callable_is_refused_naming_the_key():
    config = RLModuleConfig(OBS_SPACE, ACT_SPACE, model_config_dict={"layers": [1, {"act": len}]})
    with pytest.raises(ModelConfigError,
                       match=r"^model_config_dict\['layers'\]\[1\]\['act'\] is a callable; model "
                             r"configs must be JSON"):
        config.to_dict()
    with pytest.raises(ModelConfigError, match=r"model_config_dict: key 3 is not a string"):
        RLModuleConfig(model_config_dict={3: 1}).to_dict()


def test_tuples_in_model_config_are_saved_as_lists():
    assert RLModuleConfig(model_config_dict={"h": (1, 2)}).to_dict()["model_config_dict"] == {"h": [1, 2]}


class _Catalog:
    def __init__(self, observation_space, action_space, model_config_dict):
        self.args = (observation_space, action_space, model_config_dict)


def test_get_catalog():
    config = RLModuleConfig(OBS_SPACE, ACT_SPACE, model_config_dict={"x": 1}, catalog_class=_Catalog)
    assert config.get_catalog().args == (OBS_SPACE, ACT_SPACE, {"x": 1})


def test_update_override_semantics():
    a = RLModuleSpec(module_class=ToyTorchModule, inference_only=False, learner_only=True,
                     model_config_dict={"a": 1})
    b = RLModuleSpec(observation_space=OBS_SPACE, inference_only=True, learner_only=False,
                     load_state_path="/x")
    a.update(b)
    assert a.module_class is ToyTorchModule and a.observation_space == OBS_SPACE
    assert a.inference_only is True and a.learner_only is False
    assert a.model_config_dict == {"a": 1} and a.load_state_path == "/x"
    c = RLModuleSpec(module_class=CountingModule, action_space=ACT_SPACE, inference_only=False,
                     learner_only=True, model_config_dict={"c": 3}, load_state_path="/y")
    a.update(c, override=False)
    assert a.module_class is ToyTorchModule and a.action_space == ACT_SPACE
    assert a.inference_only is True and a.learner_only is False
    assert a.model_config_dict == {"a": 1} and a.load_state_path == "/x"
    with pytest.raises(ValueError, match="Can only update with another RLModuleSpec."):
        a.update({"module_class": None})


def test_as_multi_rl_module_spec_carries_load_state_path(toy_spec):
    toy_spec.load_state_path = "/ckpt"
    multi = toy_spec.as_multi_rl_module_spec()
    assert isinstance(multi, MultiRLModuleSpec)
    assert multi.module_specs == {DEFAULT_MODULE_ID: toy_spec} and multi.load_state_path == "/ckpt"


@pytest.mark.parametrize("call,message", [
    (lambda s, m: s.as_multi_agent(),
     "`as_multi_agent` has been deprecated. Use `RLModuleSpec.as_multi_rl_module_spec()` instead."),
    (lambda s, m: m.as_multi_agent(),
     "`as_multi_agent` has been deprecated. Use `RLModule.as_multi_rl_module()` instead."),
    (lambda s, m: m.save_state("x"),
     "`save_state` has been deprecated. Use `RLModule.save_to_path(...)` instead."),
    (lambda s, m: m.load_state("x"),
     "`load_state` has been deprecated. Use `RLModule.restore_from_path(...)` instead."),
    (lambda s, m: m.save_to_checkpoint("x"),
     "`save_to_checkpoint` has been deprecated. Use `RLModule.save_to_path(...)` instead."),
])
def test_deprecated_methods_raise(toy_spec, toy_module, call, message):
    with pytest.raises(ValueError) as e:
        call(toy_spec, toy_module)
    assert str(e.value) == message


def test_keyword_constructor_and_model_config_alias():
    module = ToyTorchModule(observation_space=OBS_SPACE, action_space=ACT_SPACE,
                            model_config={"hidden": 3}, inference_only=True)
    assert module.config == RLModuleConfig(OBS_SPACE, ACT_SPACE, True, False, {"hidden": 3}, None)
    assert module.observation_space == OBS_SPACE and module.action_space == ACT_SPACE
    assert module.model_config == {"hidden": 3} and module.inference_only is True
    assert module.encoder.out_features == 3 and not hasattr(module, "vf")
    spec = RLModuleSpec(module_class=ToyTorchModule, model_config={"hidden": 2})
    assert spec.model_config_dict == {"hidden": 2} and spec.model_config == {"hidden": 2}
    spec.model_config = {"hidden": 4}
    assert spec.model_config_dict == {"hidden": 4}
    assert RLModuleConfig(model_config={"k": 1}).model_config_dict == {"k": 1}
    with pytest.raises(ValueError, match="pass either `model_config` or `model_config_dict`"):
        RLModuleSpec(model_config_dict={"a": 1}, model_config={"a": 2})
    with pytest.raises(ValueError, match="pass either `config` or the keyword arguments"):
        ToyTorchModule(RLModuleConfig(OBS_SPACE, ACT_SPACE), observation_space=OBS_SPACE)


class _TwiceSetup(TorchRLModule):
    def __init__(self, config):
        super().__init__(config)
        RLModule.__init__(self, config)

    def _forward_inference(self, batch, **kw):
        return {}

    _forward_exploration = _forward_train = _forward_inference


def test_setup_runs_once():
    with pytest.raises(RuntimeError, match=r"`RLModule.setup\(\)` called twice"):
        _TwiceSetup(RLModuleConfig(OBS_SPACE, ACT_SPACE))


class _Counted(ToyTorchModule):
    post_inits = 0

    def __init__(self, config):
        super().__init__(config)
        self.extra = "set after super().__init__"

    def __post_init__(self):
        type(self).post_inits += 1
        assert self.extra == "set after super().__init__"
        super().__post_init__()


def test_post_init_runs_once_after_the_most_derived_init(toy_spec):
    toy_spec.module_class = _Counted
    module = toy_spec.build()
    assert _Counted.post_inits == 1
    assert module._input_specs_train == {"obs": None}
    assert module._output_specs_train == {"action_dist_inputs": None, "vf_preds": None}
    assert module._output_specs_inference == {"action_dist_inputs": None}


def test_default_specs(toy_module):
    assert toy_module.input_specs_inference() == [Columns.OBS]
    assert toy_module.input_specs_exploration() == [Columns.OBS]
    assert toy_module.input_specs_train() == [Columns.OBS]
    assert toy_module.output_specs_inference() == [Columns.ACTION_DIST_INPUTS]
    assert toy_module.output_specs_exploration() == [Columns.ACTION_DIST_INPUTS]
    assert RLModule.output_specs_train(toy_module) == {}


def test_forward_input_spec_error_names_the_missing_key(toy_module):
    with pytest.raises(SpecCheckingError) as e:
        toy_module.forward_inference({"x": torch.zeros(1)})
    assert str(e.value) == (
        "input spec validation failed on ToyTorchModule.forward_inference, The data dict does not "
        "match the model specs. Keys obs are in the spec dict but not on the data dict. Data keys "
        "are {('x',)}.")


class _BadOutput(ToyTorchModule):
    def _forward_exploration(self, batch, **kwargs):
        return {"something_else": 1}


def test_forward_output_spec_error(toy_spec):
    toy_spec.module_class = _BadOutput
    with pytest.raises(SpecCheckingError, match="output spec validation failed on "
                                                "_BadOutput.forward_exploration, .*Keys "
                                                "action_dist_inputs are in the spec dict"):
        toy_spec.build().forward_exploration(toy_batch())


def test_forward_passes(toy_module):
    batch = toy_batch(4)
    assert toy_module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS].shape == (4, 3)
    out = toy_module.forward_train(batch)
    assert out[Columns.VF_PREDS].shape == (4,)
    assert torch.equal(toy_module(batch)[Columns.VF_PREDS], out[Columns.VF_PREDS])


def test_forward_train_refused_on_inference_only_module(toy_spec):
    toy_spec.inference_only = True
    with pytest.raises(RuntimeError,
                       match="Calling `forward_train` on an inference_only module is not allowed!"):
        toy_spec.build().forward_train(toy_batch())


def test_state_of_the_base_class():
    module = CountingModule(observation_space=OBS_SPACE, action_space=ACT_SPACE)
    assert RLModule.get_state(module) == {}
    with pytest.raises(ValueError, match="`component` arg and `not_component` arg not supported"):
        RLModule.get_state(module, components="x")
    assert RLModule.set_state(module, {"count": 5}) is None and module.count == 0
    assert module.get_ctor_args_and_kwargs() == ((module.config,), {})
    assert module.unwrapped() is module


def test_action_dist_hooks_are_abstract_in_the_base_class(toy_module):
    for hook in ("get_train_action_dist_cls", "get_exploration_action_dist_cls",
                 "get_inference_action_dist_cls"):
        with pytest.raises(NotImplementedError):
            getattr(RLModule, hook)(toy_module)


def test_as_multi_rl_module(toy_module):
    multi = toy_module.as_multi_rl_module()
    assert isinstance(multi, MultiRLModule) and multi[DEFAULT_MODULE_ID] is toy_module
    assert multi.as_multi_rl_module() is multi


def test_initial_state_and_is_stateful(toy_module, toy_spec):
    assert toy_module.get_initial_state() == {} and toy_module.is_stateful() is False
    toy_spec.module_class = StatefulModule
    assert toy_spec.build().is_stateful() is True

    class NotADict(ToyTorchModule):
        def get_initial_state(self):
            return [1]

    toy_spec.module_class = NotADict
    with pytest.raises(AssertionError, match="The initial state of an RLModule must be a dict"):
        toy_spec.build().is_stateful()


def test_update_default_view_requirements(toy_spec, toy_module):
    assert toy_module.update_default_view_requirements({"a": 1}) == {"a": 1}
    toy_spec.module_class = StatefulModule
    toy_spec.model_config_dict = {"max_seq_len": 20, "lstm_use_prev_action": True,
                                  "lstm_use_prev_reward": False}
    reqs = toy_spec.build().update_default_view_requirements({})
    assert set(reqs) == {Columns.STATE_IN, Columns.STATE_OUT, "prev_actions"}
    state_in = reqs[Columns.STATE_IN]
    assert isinstance(state_in, ViewRequirement)
    assert (state_in.data_col, state_in.shift, state_in.batch_repeat_value) == ("state_out", -1, 20)
    assert state_in.space["h"].shape == (4,) and state_in.space["c"].shape == (2, 3)
    assert state_in.space["c"].dtype.name == "float64"
    assert reqs["prev_actions"].data_col == Columns.ACTIONS
    assert reqs[Columns.STATE_OUT].used_for_compute_actions is False
    toy_spec.model_config_dict = {"max_seq_len": 20}
    with pytest.raises(KeyError, match="lstm_use_prev_action"):
        toy_spec.build().update_default_view_requirements({})
